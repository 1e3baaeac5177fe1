"""Text encodings kept by a server: the same words asked again cost a dictionary look-up.

A service hears the same texts over and over (the calibration prompts on every reload, popular
queries, classification labels in their templates); encoding one costs milliseconds of both cores.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


class TextCache:
    """An encoder whose `encode_texts` remembers the last `size` texts' unit vectors (LRU); everything
    else passes through to `encoder`. Safe to share between threads."""

    def __init__(self, encoder, size: int):
        self.encoder, self.size = encoder, size
        self._kept: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.encoder, name)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """N strings -> (N, D) float32 unit vectors; only the texts not kept are encoded (in one call)."""
        with self._lock:
            found = {t: self._kept[t] for t in texts if t in self._kept}
            for t in found:
                self._kept.move_to_end(t)
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            found |= dict(zip(missing, self.encoder.encode_texts(missing)))
            with self._lock:
                for t in missing:
                    self._kept[t] = found[t]
                while len(self._kept) > self.size:
                    self._kept.popitem(last=False)
        self.hits, self.misses = self.hits + len(texts) - len(missing), self.misses + len(missing)
        if not texts:
            return np.zeros((0, self.encoder.dim), np.float32)
        return np.stack([found[t] for t in texts]).astype(np.float32, copy=False)
