"""The Arrow tables that pass between the Ray pipeline's stages, so that Ray sees (and shares
without copying) what they hold: no pickled Python objects.

A picture table has a row per picture (an image, or one sampled frame of a video) and a row per
file that failed, with the image table's row fields as scalar columns, the pipeline's own (`chunk`,
`frames`, `reason`) beside them, and the pixels, then the vectors, as Ray tensor columns. A write
task's output has a row per chunk it wrote: the Lance fragments (`FragmentMetadata` JSON) and what
the driver needs to commit them.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, fields
from collections.abc import Iterable, Iterator

import numpy as np

from clipsearch.ingest.batch import Decoded
from clipsearch.media.photometa import FIELDS as META_FIELDS
from clipsearch.store.records import Failure, Row, meta_fields, meta_from_columns

PIXELS, VECTOR = "pixels", "vector"
#: What the driver gets back of each picture: enough to commit, count and report it (no metadata).
_RECORD = ("id", "chunk", "frames", "path", "reason", "size", "mtime", "width", "height", "hash", "time_s")
_ROW_FIELDS = frozenset(f.name for f in fields(Row)) - {"meta"}


@functools.cache
def _schema():
    """A picture row: `id` its own (a failure: its file's first), `frames` the rows of its file,
    `path` the OS bytes, `reason` null unless the file failed."""
    import pyarrow as pa

    return pa.schema([
        pa.field("id", pa.int64()), pa.field("chunk", pa.int64()), pa.field("frames", pa.int32()),
        pa.field("path", pa.binary()), pa.field("reason", pa.string()),
        pa.field("size", pa.int64()), pa.field("mtime", pa.float64()),
        pa.field("width", pa.int32()), pa.field("height", pa.int32()),
        pa.field("hash", pa.string()), pa.field("time_s", pa.float64()), *meta_fields()])


def pictures(files: Iterable[tuple[int, int, Decoded | Failure]], size: int):
    """(chunk, first id, decoded file or failure) -> a picture table with its `pixels` (N, size,
    size, 3) uint8; a file's rows take the ids from its first on, a failure's pixels are zeros."""
    import pyarrow as pa

    records, pixels = [], [np.zeros((0, size, size, 3), np.uint8)]
    for chunk, first, item in files:
        if isinstance(item, Failure):
            records.append({"id": first, "chunk": chunk, "frames": 1, "path": os.fsencode(item.path),
                            "reason": item.reason, "size": item.size, "mtime": item.mtime})
            pixels.append(np.zeros((1, size, size, 3), np.uint8))
            continue
        for n, row in enumerate(item.rows):
            records.append({f.name: getattr(row, f.name) for f in fields(Row) if f.name != "meta"}
                           | {m: getattr(row.meta, m, None) for m in META_FIELDS}
                           | {"id": first + n, "chunk": chunk, "frames": len(item.rows), "path": os.fsencode(row.path)})
        pixels.append(item.pixels)
    return with_tensor(pa.Table.from_pylist(records, schema=_schema()), PIXELS, np.concatenate(pixels))


def tensor(table, name: str) -> np.ndarray:
    """A tensor column as one ndarray (no copy when it is one chunk)."""
    chunks = table.column(name).chunks
    return chunks[0].to_numpy() if len(chunks) == 1 else np.concatenate([c.to_numpy() for c in chunks])


def with_tensor(table, name: str, array: np.ndarray):
    """`table` with `array` (N, ...) as its tensor column `name`."""
    from ray.data.extensions import ArrowTensorArray

    return table.append_column(name, ArrowTensorArray.from_numpy(np.ascontiguousarray(array)))


def failed(table) -> np.ndarray:
    """(N,) bool: the rows of files that failed."""
    return table.column("reason").is_valid().to_numpy(zero_copy_only=False)


def by_chunk(table) -> Iterator[tuple[int, object]]:
    """(chunk, its rows of `table`), chunk by chunk."""
    import pyarrow.compute as pc

    for chunk in sorted(set(table.column("chunk").to_pylist())):
        yield chunk, table.filter(pc.equal(table.column("chunk"), chunk))


def stored(table) -> tuple[list[Row], np.ndarray]:
    """The rows to store of a picture table with `vector`s (its pictures, metadata included) and
    their (N, D) float32 vectors."""
    keep = ~failed(table)
    rows = table.drop_columns([c for c in (PIXELS, VECTOR) if c in table.column_names]).filter(keep)
    return [_row(r) for r in rows.to_pylist()], tensor(table, VECTOR)[keep]


def _row(record: dict) -> Row:
    """A picture's row from its record (its metadata when the record has it)."""
    r = meta_from_columns({k: v for k, v in record.items() if k in _ROW_FIELDS or k in META_FIELDS})
    return Row(**r | {"path": os.fsdecode(r["path"])})


@dataclass(frozen=True)
class Written:
    """What one write task wrote for one chunk: Lance fragments, not yet committed, and the rows
    and failures they account for (the rows without metadata: that is in the fragments)."""

    chunk: int
    fragments: list[str]  # lance.FragmentMetadata JSON
    rows: list[Row]
    failures: list[Failure]
    ids: frozenset[int]  # of its rows, and of its failed files (their first ids)
    frames: dict[str, int]  # its files: path -> how many rows each has in all


def lance_fragments(fragments: list[str]) -> list:
    """FragmentMetadata JSON (`Written.fragments`) -> lance.FragmentMetadata, to commit."""
    from lance import FragmentMetadata

    return [FragmentMetadata.from_json(f) for f in fragments]


def written(parts: list[tuple[int, list, object]]):
    """(chunk, lance.FragmentMetadata written, its picture table) -> a write task's output table."""
    import pyarrow as pa

    record = pa.struct([_schema().field(c) for c in _RECORD])
    return pa.table({
        "chunk": pa.array([c for c, _, _ in parts], pa.int64()),
        "fragments": pa.array([[json.dumps(f.to_json()) for f in frags] for _, frags, _ in parts],
                              pa.list_(pa.string())),
        "records": pa.array([t.select(list(_RECORD)).to_pylist() for _, _, t in parts], pa.list_(record))})


def read_written(table) -> Iterator[Written]:
    """A write task's output table -> what it wrote, chunk by chunk."""
    for out in table.to_pylist():
        records = out["records"]
        rows = [_row(r) for r in records if r["reason"] is None]
        failures = [Failure(os.fsdecode(r["path"]), r["reason"], r["size"], r["mtime"])
                    for r in records if r["reason"] is not None]
        yield Written(out["chunk"], out["fragments"], rows, failures, frozenset(r["id"] for r in records),
                      {os.fsdecode(r["path"]): r["frames"] for r in records})
