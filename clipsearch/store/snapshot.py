"""What hits show, kept beside the ANN segments, so that a query reads no LanceDB.

Importing LanceDB's Python package takes half as long as importing torch (bench/results/cold_query.md),
while a query needs only the ANN index and, for its k hits, what a hit shows (an image's path and
size, a text). So each ANN segment (clipsearch/ann/segment.py) keeps its rows' records: an Arrow IPC
file of those columns (`VectorTable.SNAPSHOT`) in the segment's row order, in batches of BATCH_ROWS.
A reader opens its footer (nothing per row) and reads the batches of the k records it needs. Written
once, atomically, with its segment; never rewritten (a changed record goes to a newer segment).

`stamp` tells a reader whether the table moved since the ANN catalog was committed, from a listing of
its versions, without opening LanceDB.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np


def stamp(table_dir: Path) -> str:
    """A digest of the table's committed versions (Lance's `_versions/*.manifest`); "" if none."""
    try:
        names = sorted(n for n in os.listdir(table_dir / "_versions") if n.endswith(".manifest"))
    except OSError:
        return ""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:24] if names else ""


def conform(rows, schema):
    """`rows` (a pyarrow Table) with the columns of `schema`, in its order: columns it lacks (a
    segment written before a schema upgrade) come as nulls."""
    import pyarrow as pa

    cols = [rows.column(f.name).cast(f.type) if f.name in rows.column_names else pa.nulls(rows.num_rows, f.type)
            for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


#: Rows in each record batch of a records file, the unit a hit reads: a hit's record is one batch
#: read with pread (~64 KB), not pages of every column of a mapped file, which the kernel maps as
#: whole large folios (10M bench: 1.3 GB of a query process's RSS after 200 queries). Files whose
#: schema doesn't say so (written before) are mapped instead.
BATCH_ROWS = 256
_LAYOUT = b"clipsearch.batch_rows"


def layout(schema):
    """`schema` (of a records file) marked as written in batches of BATCH_ROWS (segment.Writer)."""
    return schema.with_metadata({**(schema.metadata or {}), _LAYOUT: str(BATCH_ROWS).encode()})


class Records:
    """The records of one segment: `at(positions)` reads the few a query needs, batch by batch;
    `table` maps the whole file (merges)."""

    def __init__(self, path: Path, reader, rows: int, table=None):
        self._path, self._reader, self._rows, self._t = path, reader, rows, table
        self._lock = threading.Lock()  # one reader, shared by a server's threads

    @classmethod
    def open(cls, path: Path) -> Records:
        """The records written at `path`; OSError or ValueError if missing or damaged."""
        import pyarrow as pa

        try:
            reader = pa.ipc.open_file(pa.OSFile(str(path)))  # its footer: nothing per row
            if (reader.schema.metadata or {}).get(_LAYOUT) != str(BATCH_ROWS).encode():
                table = _mapped(path)  # written before batches of BATCH_ROWS
                return cls(path, None, table.num_rows, table)
            n = reader.num_record_batches
            return cls(path, reader, (n - 1) * BATCH_ROWS + reader.get_batch(n - 1).num_rows if n else 0)
        except pa.ArrowException as e:
            raise ValueError(f"{path}: {e}") from e

    @property
    def table(self):
        """All of them, as a pyarrow Table (mapped, not read)."""
        if self._t is None:
            self._t = _mapped(self._path)
        return self._t

    def __len__(self) -> int:
        return self._rows

    def at(self, positions) -> list[dict]:
        """The records (column -> value) at these row positions, in their order."""
        return as_dicts(self.slices(positions))

    def slices(self, positions) -> list:
        """The records at these row positions as one-row pyarrow RecordBatches, in their order."""
        positions = np.asarray(positions, np.int64)
        if not len(positions):
            return []
        if self._reader is None:  # an older file: slices of the mapped table
            return [self.table.slice(int(p), 1).combine_chunks().to_batches()[0] for p in positions]
        with self._lock:
            batches = {int(b): self._reader.get_batch(int(b)) for b in np.unique(positions // BATCH_ROWS)}
        return [batches[int(p) // BATCH_ROWS].slice(int(p) % BATCH_ROWS, 1) for p in positions]


def as_dicts(rows: list) -> list[dict]:
    """Records (column -> value) of one-row RecordBatches, in their order. Joined, so that their
    Python objects are made in one call: 10 hits in 5 segments take 0.3 ms, against 1.4 ms a segment
    at a time (and `take` would import pandas through pyarrow.compute: ~0.5 s)."""
    import pyarrow as pa

    if not rows:
        return []
    try:
        return pa.concat_batches(rows).to_pylist()
    except pa.ArrowInvalid:  # a segment written before a schema change: one at a time
        return [r.to_pylist()[0] for r in rows]


def _mapped(path: Path):
    import pyarrow as pa

    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()
