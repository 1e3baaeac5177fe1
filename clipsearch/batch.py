"""The per-batch work of indexing: files in, aligned records (metadata + vector) or failures out.

Plain functions of their arguments, no global state: `decode_file` runs in worker processes
(it must stay picklable), `embed_decoded` on the encoder's device, and `embed_files` joins them
so a distributed engine can map it over shards of a file list.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

import numpy as np

from .errors import ImageError
from .files import content_hash, stat_key
from .image import FULL_SIZE, load_image, to_pixels
from .model import Encoder, Preprocess
from .photometa import read_meta
from .store import Failure, Row


#: Reason prefix of files that could not be opened: cheap to retry, and fixing permissions
#: changes no mtime, so such failures are retried on every run.
UNREADABLE = "can't read"


DRAFT_OVERSAMPLE = 2


@dataclass(frozen=True)
class Decoded:
    """A decoded file: its row (id unassigned) and the model-ready pixels."""

    row: Row
    pixels: np.ndarray  # (S, S, 3) uint8


@dataclass(frozen=True)
class Hashed:
    """A file's identity: (size, mtime) and content hash."""

    path: str
    size: int
    mtime: float
    hash: str


@dataclass
class Batch:
    """Records ready to store: rows[i] belongs to vectors[i]; failures beside them."""

    rows: list[Row] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    failures: list[Failure] = field(default_factory=list)


def decode_file(path: str, preprocess: Preprocess, max_pixels: int) -> Decoded | Failure:
    """Decode one file for the model, with its content hash; never raises for a bad file.

    A file that changes while it is read is a failure keyed by its old (size, mtime), so the
    next run, seeing the new ones, tries it again.
    """
    hashed = hash_file(path)
    if isinstance(hashed, Failure):
        return hashed
    try:
        # Draft-decode JPEGs to >= 2x the model's size, not 1x: the bicubic downscale that follows
        # then still antialiases as open_clip's full decode would (fidelity), at most of the speed.
        img = load_image(path, max_pixels=max_pixels, draft_size=DRAFT_OVERSAMPLE * preprocess.size)
        width, height = img.info.get(FULL_SIZE, img.size)
        pixels = to_pixels(img, preprocess.size, preprocess.resize_mode, preprocess.interpolation)
        meta = read_meta(img, path, hashed.mtime)  # from the image just decoded: no second read
    except ImageError as e:
        return Failure(path, str(e), hashed.size, hashed.mtime)
    if stat_key(path) != (hashed.size, hashed.mtime):
        return Failure(path, "changed while being read: run `clipsearch index` again", hashed.size, hashed.mtime)
    return Decoded(Row(-1, path, hashed.size, hashed.mtime, width, height, hashed.hash, meta), pixels)


def hash_file(path: str) -> Hashed | Failure:
    """The file's (size, mtime) and content hash; a Failure saying why if it can't be read."""
    try:
        st = os.stat(path)
    except (OSError, ValueError) as e:
        return failure(path, f"{UNREADABLE} (can't stat): {getattr(e, 'strerror', None) or e}")
    if not stat.S_ISREG(st.st_mode):
        return Failure(path, "not a regular file", st.st_size, st.st_mtime)
    try:
        digest = content_hash(path)
    except OSError as e:
        return failure(path, f"{UNREADABLE}: {e.strerror or e}")
    return Hashed(path, st.st_size, st.st_mtime, digest)


def failure(path: str, reason: str) -> Failure:
    """A Failure for `path` keyed by its current (size, mtime), NO_STAT if it has none."""
    size, mtime = stat_key(path)
    return Failure(path, reason, size, mtime)


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

