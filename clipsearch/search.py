"""Searching an index by text, by image or by vector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .errors import ImageError, InputError
from .image import to_pixels
from .media import load_picture
from .index import Index
from .store import Hit
from .model import Encoder


class Searcher:
    """Joins an encoder and an index built with the same model."""

    def __init__(self, encoder: Encoder, index: Index, max_pixels: int):
        index.check_model(encoder.identity)
        self.encoder, self.index, self.max_pixels = encoder, index, max_pixels

    def by_text(self, text: str, k: int) -> list[Hit]:
        if not text or not text.strip():
            raise InputError("the query is empty: describe what you are looking for, e.g. "
                             "`clipsearch query \"a dog on a beach\"`")
        return self.by_vector(self.encoder.encode_texts([text.strip()])[0], k)

    def by_image(self, path: str | Path, k: int) -> list[Hit]:
        return self.by_vector(self.embed_image(path), k)

    def by_vector(self, v: np.ndarray, k: int) -> list[Hit]:
        """(D,) float32 unit vector -> the k best hits, best first."""
        return self.index.images.search(np.asarray(v, np.float32)[None, :], k)[0]

    def embed_image(self, path: str | Path) -> np.ndarray:
        """(D,) float32 unit vector of the image file at `path`."""
        if not Path(path).is_file():
            raise InputError(f"query image {path} does not exist: check the path")
        try:
            img = load_picture(path, max_pixels=self.max_pixels, size=self.encoder.preprocess.size)
        except ImageError as e:
            raise InputError(f"can't use {path} as a query image: {e}") from e
        return self.embed(img)

    def embed(self, img: Image.Image) -> np.ndarray:
        """(D,) float32 unit vector of a decoded RGB image (e.g. from `image.open_upload`)."""
        p = self.encoder.preprocess
        return self.encoder.encode_pixels(to_pixels(img, p.size, p.resize_mode, p.interpolation)[None])[0]
