"""Records: what a row of each table holds (dataclasses), its Arrow schema, and the conversions
between the two that keep exact file names (non-UTF-8 bytes) and photo metadata."""

from __future__ import annotations

import os
from dataclasses import dataclass

from clipsearch.media.files import display_path
from clipsearch.media.photometa import FIELDS as META_FIELDS
from clipsearch.media.photometa import PhotoMeta

IMAGES = "images"
FAILURES = "failures"
#: Rows whose file's header (metadata) could not be read: not read again until the file changes.
UNREAD = "unread_headers"
ROW_COLUMNS = ("id", "path", "size", "mtime", "width", "height", "hash", "time_s")
#: Columns added by schemas 2 and 4 (older tables get them, empty, on upgrade): SQL defaults.
ADDED_COLUMNS = {"hash": "CAST(NULL AS STRING)", "path_raw": "CAST(NULL AS BINARY)", "time_s": "CAST(NULL AS DOUBLE)"}


@dataclass(frozen=True)
class Row:
    """One indexed image, without its vector."""

    id: int
    path: str
    size: int
    mtime: float
    width: int
    height: int
    hash: str = ""  # hex content hash; "" for rows of schema-1 indexes
    time_s: float | None = None  # a video frame's time in its video; None for a still image
    meta: PhotoMeta | None = None  # None: not read (yet): rows of schema 1-5 indexes, moved files


@dataclass(frozen=True)
class Hit:
    """One image (or video frame) found for a query."""

    path: str
    score: float
    id: int
    width: int
    height: int
    time_s: float | None = None  # a video frame's time in its video; None for a still image
    meta: PhotoMeta | None = None  # when, where, which camera; None for rows not read yet


@dataclass(frozen=True)
class TextHit:
    """One text found for a query."""

    text: str
    score: float
    id: int


@dataclass(frozen=True)
class Failure:
    """A file that could not be indexed, and why; (size, mtime) tell when it is worth a retry."""

    path: str
    reason: str
    size: int = -1
    mtime: float = 0.0


def image_schema(dim: int):
    import pyarrow as pa

    return pa.schema([
        pa.field("id", pa.int64()), pa.field("path", pa.string()),
        pa.field("size", pa.int64()), pa.field("mtime", pa.float64()),
        pa.field("width", pa.int32()), pa.field("height", pa.int32()),
        pa.field("vector", pa.list_(pa.float32(), dim)),
        pa.field("hash", pa.string()), pa.field("path_raw", pa.binary()), pa.field("time_s", pa.float64()),
        *meta_fields(),
    ])


def meta_fields():
    """The photo metadata columns (schema 6), nullable: `taken` is the local wall-clock time."""
    import pyarrow as pa

    types = {"taken": pa.timestamp("s"), "lat": pa.float64(), "lon": pa.float64()}
    return [pa.field(name, types.get(name, pa.string())) for name in META_FIELDS]


def text_schema(dim: int):
    import pyarrow as pa

    return pa.schema([pa.field("id", pa.int64()), pa.field("text", pa.string()),
                      pa.field("vector", pa.list_(pa.float32(), dim))])


def failure_schema():
    import pyarrow as pa

    return pa.schema([
        pa.field("path", pa.string()), pa.field("path_raw", pa.binary()), pa.field("reason", pa.string()),
        pa.field("size", pa.int64()), pa.field("mtime", pa.float64()),
    ])


def path_columns(paths: list[str]) -> dict[str, list]:
    """path (printable) and path_raw (the OS bytes, only where the path is not valid UTF-8)."""
    shown = [display_path(p) for p in paths]
    return {"path": shown, "path_raw": [None if s == p else os.fsencode(p) for s, p in zip(shown, paths)]}


def meta_columns(rows: list[Row]) -> dict[str, list]:
    return {c: [getattr(r.meta, c) if r.meta else None for r in rows] for c in META_FIELDS}


def meta_from_columns(r: dict) -> dict:
    """A stored record with its metadata columns gathered into `meta` (None when all are empty)."""
    m = {c: r.pop(c) for c in META_FIELDS if c in r}
    r["meta"] = PhotoMeta(**m) if any(v is not None for v in m.values()) else None
    return r


def path_from_columns(r: dict) -> dict:
    """A stored record with "path" back to the OS string (surrogate escapes for non-UTF-8 bytes)."""
    raw = r.pop("path_raw", None)
    if raw is not None:
        r["path"] = os.fsdecode(raw)
    if r.get("hash", "") is None:
        r["hash"] = ""
    return r
