"""The encoder of a query process: texts through the exported text tower, the model only when needed.

A text query is answered by `texttower.TextTower` (ONNX Runtime, no torch); the open_clip model is
loaded on first use of what only it has (the image tower, its preprocessing), or for texts when
the model has no export yet. It stands in for `model.Encoder` wherever a query needs one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from clipsearch.models.encoder import Encoder, ModelIdentity
from clipsearch.models.texttower import TextTower


class QueryEncoder:
    """`model.Encoder`'s query interface over a text tower and a model loaded on demand."""

    def __init__(self, identity: ModelIdentity, tower: TextTower | None, load: Callable[[], Encoder]):
        self.identity, self.tower, self._load, self._full = identity, tower, load, None

    @property
    def dim(self) -> int:
        return self.identity.dim

    def full(self) -> Encoder:
        """The open_clip model, loaded now if it wasn't (ModelError if it doesn't match the index)."""
        if self._full is None:
            enc = self._load()
            if not enc.identity.same_model(self.identity):
                from clipsearch.errors import ModelError

                raise ModelError(f"loaded {enc.identity.describe()} for an index of "
                                 f"{self.identity.describe()}: query it without --model/--pretrained")
            self._full = enc
        return self._full

    @property
    def logit_scale(self) -> float:
        return self.tower.logit_scale if self.tower is not None else self.full().logit_scale

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """N strings -> (N, D) float32 unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return (self.tower or self.full()).encode_texts(texts)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return self.full().encode_pixels(pixels)

    @property
    def preprocess(self):
        return self.full().preprocess

    @property
    def batch_size(self) -> int:
        return self.full().batch_size


def query_encoder(identity: ModelIdentity, cache: Path, load: Callable[[], Encoder]) -> QueryEncoder:
    """The query encoder of an index built with `identity`; `load` loads its open_clip model."""
    return QueryEncoder(identity, TextTower.load(cache, identity), load)
