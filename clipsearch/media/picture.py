"""Decoding any indexed file to one picture: the same path for indexing and for queries."""

from __future__ import annotations

import os

from clipsearch.media import kinds


def load_picture(path: str | os.PathLike, *, max_pixels: int, size: int, time_s: float | None = None):
    """One upright RGB PIL image of `path`, whatever it holds: an image (JPEGs draft-decoded to >=
    `size`), a RAW photo (its preview if >= `size`), or a video's frame at `time_s` (0 if None).
    ImageError if it can't be decoded."""
    kind = kinds.kind_of(os.fspath(path))
    if kind == kinds.VIDEO:
        from clipsearch.media.video import frame_at

        return frame_at(path, time_s or 0.0, max_pixels=max_pixels)
    if kind == kinds.RAW:
        from clipsearch.media.raw import load_raw

        return load_raw(path, max_pixels=max_pixels, min_preview=size)
    from clipsearch.media.image import load_image

    return load_image(path, max_pixels=max_pixels, draft_size=size)
