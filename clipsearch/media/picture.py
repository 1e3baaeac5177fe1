"""Decoding any indexed file to its pictures: the one path for indexing, image queries and thumbnails.

Indexing, a query with a file and a thumbnail all decode here with the same parameters, so a file
used as a query reproduces the vector stored for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from PIL import Image

from clipsearch.config import VideoSampling
from clipsearch.media.image import FULL_SIZE, load_image
from clipsearch.media.kinds import RAW, VIDEO, file_kind
from clipsearch.media.raw import load_raw
from clipsearch.media.video import Frame, frame_at, sample_video

#: Pictures are decoded at >= this many times the model's input size, not 1x: JPEG drafts, RAW
#: previews and FFmpeg's scaled video frames then leave the final bicubic downscale enough pixels to
#: antialias as open_clip's full decode would (tests/test_fidelity.py: cosine 0.9999 at 2x, 0.974 at 1x).
DRAFT_OVERSAMPLE = 2


def load_picture(path: str | os.PathLike, *, max_pixels: int, size: int, time_s: float | None = None) -> Image.Image:
    """One upright RGB PIL image of `path` for a model (or thumbnail) of `size` pixels, decoded as
    indexing decodes it: a photo (JPEGs drafted), a RAW photo (its preview if large enough) or a
    video's frame at `time_s` (0 if None), all at >= DRAFT_OVERSAMPLE * `size` where they can be
    reduced. Its full size, oriented, in info[FULL_SIZE]. ImageError if it can't be decoded."""
    path = os.fspath(path)
    kind = file_kind(path)
    if kind == VIDEO:
        return frame_at(path, time_s or 0.0, max_pixels=max_pixels, draft_size=DRAFT_OVERSAMPLE * size)
    return _still(path, kind, max_pixels, size)


def frames_of(path: str, prepare: Callable[[Image.Image], np.ndarray], *, max_pixels: int, size: int,
              video: VideoSampling) -> list[Frame]:
    """The file's pictures, each passed through `prepare` (to model-ready pixels): one for a photo
    or a RAW, a video's frames sampled as `video` says. ImageError if there is none."""
    kind = file_kind(path)
    if kind == VIDEO:
        return sample_video(path, prepare, max_pixels=max_pixels, sampling=video,
                            draft_size=DRAFT_OVERSAMPLE * size)
    img = _still(path, kind, max_pixels, size)
    width, height = img.info.get(FULL_SIZE, img.size)
    return [Frame(None, width, height, prepare(img))]


def _still(path: str, kind: str | None, max_pixels: int, size: int) -> Image.Image:
    draft = DRAFT_OVERSAMPLE * size
    if kind == RAW:
        return load_raw(path, max_pixels=max_pixels, min_preview=draft)
    return load_image(path, max_pixels=max_pixels, draft_size=draft)
