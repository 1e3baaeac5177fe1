"""The per-batch work of indexing: files in, aligned records (metadata + vector) or failures out.

Plain functions of their arguments, no global state: `decode_file` runs in worker processes
(it must stay picklable), `embed_decoded` on the encoder's device, and `embed_files` joins them
so a distributed engine can map it over shards of a file list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .errors import ImageError
from .image import FULL_SIZE, load_image, to_pixels
from .model import Encoder, Preprocess
from .store import Row


@dataclass(frozen=True)
class Decoded:
    """A decoded file: its row (id unassigned) and the model-ready pixels."""

    row: Row
    pixels: np.ndarray  # (S, S, 3) uint8


@dataclass(frozen=True)
class Failure:
    """A file that could not be indexed, and why."""

    path: str
    reason: str
    size: int = -1
    mtime: float = 0.0


@dataclass
class Batch:
    """Records ready to store: rows[i] belongs to vectors[i]; failures beside them."""

    rows: list[Row] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    failures: list[Failure] = field(default_factory=list)


def decode_file(path: str, preprocess: Preprocess, max_pixels: int) -> Decoded | Failure:
    """Decode one file for the model; never raises for a bad file."""
    try:
        st = os.stat(path)
    except OSError as e:
        return Failure(path, f"can't stat: {e.strerror or e}")
    try:
        img = load_image(path, max_pixels=max_pixels, draft_size=preprocess.size)
        width, height = img.info.get(FULL_SIZE, img.size)
        pixels = to_pixels(img, preprocess.size, preprocess.resize_mode, preprocess.interpolation)
    except ImageError as e:
        return Failure(path, str(e), st.st_size, st.st_mtime)
    return Decoded(Row(-1, path, st.st_size, st.st_mtime, width, height), pixels)


def embed_decoded(items: list[Decoded | Failure], encoder: Encoder) -> Batch:
    """Encode the decoded items in one forward pass; failures pass through untouched."""
    ok = [d for d in items if isinstance(d, Decoded)]
    failures = [d for d in items if isinstance(d, Failure)]
    if not ok:
        return Batch([], np.zeros((0, encoder.dim), np.float32), failures)
    vectors = encoder.encode_pixels(np.stack([d.pixels for d in ok]))
    return Batch([d.row for d in ok], vectors, failures)


def embed_files(paths: list[str], encoder: Encoder, max_pixels: int) -> Batch:
    """Files -> records, in this process: the unit of work for a distributed indexer."""
    return embed_decoded([decode_file(p, encoder.preprocess, max_pixels) for p in paths], encoder)

