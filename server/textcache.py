"""Text encodings kept by a server, and the texts of concurrent requests encoded together.

A service hears the same texts over and over (the calibration prompts on every reload, popular
queries, classification labels in their templates): those cost a dictionary look-up. New texts
that arrive while an encoding runs wait for it to end and are then encoded in one batch by one of
their threads (leader and followers, no timer): a lone request pays nothing extra, and under load
the text tower runs one batch at a time on all cores instead of many single texts fighting over
them. Batched or alone, a text gets the same vector (the tower pads every text to its context).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future

import numpy as np

#: Most texts encoded in one call: a batch of 64 ViT-B-32 texts is ~0.5 GB of activations at most.
MAX_BATCH = 64


class TextCache:
    """An encoder whose `encode_texts` remembers the last `size` texts' unit vectors (LRU) and
    batches concurrent callers' new texts; everything else passes through to `encoder`. Thread-safe."""

    def __init__(self, encoder, size: int):
        self.encoder, self.size = encoder, size
        self._kept: OrderedDict[str, np.ndarray] = OrderedDict()
        self._waiting: dict[str, Future] = {}  # texts queued or being encoded
        self._queue: list[str] = []
        self._busy = False
        self._cv = threading.Condition()
        self.hits = self.misses = self.batches = 0

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.encoder, name)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """N strings -> (N, D) float32 unit vectors; only texts not kept are encoded."""
        if not texts:
            return np.zeros((0, self.encoder.dim), np.float32)
        with self._cv:
            found = {t: self._kept[t] for t in texts if t in self._kept}
            for t in found:
                self._kept.move_to_end(t)
            self.hits += sum(t in found for t in texts)
            futures = {t: self._enqueue(t) for t in dict.fromkeys(texts) if t not in found}
        if futures:
            self._lead_until_done(list(futures.values()))
            found |= {t: f.result() for t, f in futures.items()}
        return np.stack([found[t] for t in texts]).astype(np.float32, copy=False)

    def _enqueue(self, text: str) -> Future:
        if text not in self._waiting:
            self._waiting[text] = Future()
            self._queue.append(text)
            self.misses += 1
        return self._waiting[text]

    def _lead_until_done(self, futures: list[Future]) -> None:
        """Wait for `futures`; whenever no encoding runs, encode the queued texts (a batch) here."""
        while True:
            with self._cv:
                while self._busy and not all(f.done() for f in futures):
                    self._cv.wait()
                if all(f.done() for f in futures):
                    return
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                self._busy = bool(batch)
            if batch:
                self._encode(batch)

    def _encode(self, batch: list[str]) -> None:
        try:
            xb, error = self.encoder.encode_texts(batch), None
        except BaseException as e:  # every waiter hears of it, none waits forever
            xb, error = None, e
        with self._cv:
            for i, t in enumerate(batch):
                future = self._waiting.pop(t)
                if error is None:
                    self._kept[t] = xb[i]
                    future.set_result(xb[i])
                else:
                    future.set_exception(error)
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
            self.batches += 1
            self._busy = False
            self._cv.notify_all()
