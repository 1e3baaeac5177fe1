"""Thumbnails: small JPEGs of indexed images, made once and kept on disk beside the index."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from PIL import Image

from clipsearch.errors import ImageError
from clipsearch.media.picture import load_picture
from clipsearch.durable import atomic_write

THUMBNAIL_DIR = "thumbnails"  # inside the index directory
_QUALITY = 85


class Thumbnails:
    """JPEG bytes of an image file, at most `px` on the longest side, cached under `cache_dir`.

    The cache key is the file's path, size and mtime plus `px`, so a changed file gets a new
    thumbnail. With `cache_dir` None, or not writable, thumbnails are made but not kept.
    """

    def __init__(self, cache_dir: str | os.PathLike | None, px: int, max_pixels: int):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.px, self.max_pixels = px, max_pixels

    def get(self, path: str | os.PathLike, time_s: float | None = None) -> bytes:
        """JPEG bytes for the image at `path` (a video's frame at `time_s`); ImageError (with the
        reason) if it can't be read."""
        try:
            st = os.stat(path)
        except OSError as e:
            raise ImageError(f"can't read file: {e.strerror or e}") from e
        at = "" if time_s is None else f"\0{time_s!r}"
        cached = self._cached(f"{os.fspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\0{self.px}{at}")
        if cached is not None and cached.is_file():
            return cached.read_bytes()
        data = self.make(path, time_s)
        if cached is not None:
            self._keep(cached, data)
        return data

    def make(self, path: str | os.PathLike, time_s: float | None = None) -> bytes:
        """A fresh thumbnail of `path` (an image, a RAW photo, or a video's frame at `time_s`),
        decoded with the same loaders as indexing."""
        return self.encode(load_picture(path, max_pixels=self.max_pixels, size=self.px, time_s=time_s))

    def encode(self, img: Image.Image) -> bytes:
        """JPEG bytes of an already decoded RGB image, at most `px` on the longest side."""
        img = img.copy()
        img.thumbnail((self.px, self.px))
        out = io.BytesIO()
        img.save(out, "JPEG", quality=_QUALITY)
        return out.getvalue()

    def _cached(self, key: str) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.jpg"

    @staticmethod
    def _keep(path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)
        except OSError:
            pass  # a read-only index still gets thumbnails, just not cached ones
