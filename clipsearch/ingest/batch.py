"""The per-batch work of indexing: files in, aligned records (metadata + vector) or failures out.

Plain functions of their arguments, no global state: `decode_file` runs in worker processes
(it must stay picklable), `embed_decoded` on the encoder's device, and `embed_files` joins them
so a distributed engine can map it over shards of a file list.
"""

from __future__ import annotations

import functools
import os
import stat
from dataclasses import dataclass, field

import numpy as np

from clipsearch.config import VideoSampling
from clipsearch.errors import ImageError
from clipsearch.media.files import content_hash, stat_key
from clipsearch.media.image import to_pixels
from clipsearch.media.photometa import read_header
from clipsearch.media.picture import frames_of
from clipsearch.models.encoder import Encoder, Preprocess
from clipsearch.store.records import Failure, Row


#: Reason prefix of files that could not be opened: cheap to retry, and fixing permissions
#: changes no mtime, so such failures are retried on every run.
UNREADABLE = "can't read"


@dataclass(frozen=True)
class Decoded:
    """A decoded file: its rows (ids unassigned), one per picture -- one for an image, one per
    sampled frame of a video -- and their model-ready pixels, pixels[i] for rows[i]."""

    rows: tuple[Row, ...]
    pixels: np.ndarray  # (N, S, S, 3) uint8

    @property
    def path(self) -> str:
        return self.rows[0].path


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


def decode_file(path: str, preprocess: Preprocess, max_pixels: int,
                video: VideoSampling = VideoSampling()) -> Decoded | Failure:
    """Decode one file for the model (an image, a RAW photo, or a video's sampled frames), with
    its content hash; never raises for a bad file.

    A file that changes while it is read is a failure keyed by its old (size, mtime), so the
    next run, seeing the new ones, tries it again.
    """
    hashed = hash_file(path)
    if isinstance(hashed, Failure):
        return hashed
    prepare = functools.partial(to_pixels, size=preprocess.size, resize_mode=preprocess.resize_mode,
                                interpolation=preprocess.interpolation)
    try:  # decoded exactly as a query with this file will be (media.picture)
        frames = frames_of(path, prepare, max_pixels=max_pixels, size=preprocess.size, video=video)
    except ImageError as e:
        return Failure(path, str(e), hashed.size, hashed.mtime)
    if stat_key(path) != (hashed.size, hashed.mtime):
        return Failure(path, "changed while being read: run `clipsearch index` again", hashed.size, hashed.mtime)
    meta = read_header(path, hashed.mtime)[0]  # EXIF or a video's tags: the header only, no pixels
    rows = tuple(Row(-1, path, hashed.size, hashed.mtime, f.width, f.height, hashed.hash, f.time_s, meta)
                 for f in frames)
    return Decoded(rows, np.stack([f.pixels for f in frames]))


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
    vectors = encoder.encode_pixels(np.concatenate([d.pixels for d in ok]))
    return Batch([r for d in ok for r in d.rows], vectors, failures)


def embed_files(paths: list[str], encoder: Encoder, max_pixels: int) -> Batch:
    """Files -> records, in this process: the unit of work for a distributed indexer."""
    return embed_decoded([decode_file(p, encoder.preprocess, max_pixels) for p in paths], encoder)

