"""What hits show, kept beside the ANN segments, so that a query reads no LanceDB.

Importing LanceDB's Python package takes half as long as importing torch (bench/results/cold_query.md),
while a query needs only the ANN index and, for its k hits, what a hit shows (an image's path and
size, a text). So each ANN segment (clipsearch/ann/segment.py) keeps its rows' records: an Arrow IPC
file of those columns (`VectorTable.SNAPSHOT`) in the segment's row order. A reader maps it (zero
copy, nothing read at open) and reads the k records it needs by position. Written once, atomically,
with its segment; never rewritten (a changed record goes to a newer segment).

`stamp` tells a reader whether the table moved since the ANN catalog was committed, from a listing of
its versions, without opening LanceDB.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from clipsearch.durable import atomic_write


def stamp(table_dir: Path) -> str:
    """A digest of the table's committed versions (Lance's `_versions/*.manifest`); "" if none."""
    try:
        names = sorted(n for n in os.listdir(table_dir / "_versions") if n.endswith(".manifest"))
    except OSError:
        return ""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:24] if names else ""


def write(path: Path, rows) -> None:
    """Save `rows` (a pyarrow Table) atomically, in their order."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, rows.schema) as w:
        w.write_table(rows.combine_chunks())
    atomic_write(path, memoryview(sink.getvalue()))


def conform(rows, schema):
    """`rows` (a pyarrow Table) with the columns of `schema`, in its order: columns it lacks (a
    segment written before a schema upgrade) come as nulls."""
    import pyarrow as pa

    cols = [rows.column(f.name).cast(f.type) if f.name in rows.column_names else pa.nulls(rows.num_rows, f.type)
            for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


class Records:
    """The records of one segment, memory-mapped; `at(positions)` reads the few a query needs."""

    def __init__(self, table):
        self._t = table

    @classmethod
    def open(cls, path: Path) -> Records:
        """The records written at `path`; OSError or ValueError if missing or damaged."""
        import pyarrow as pa

        try:
            return cls(pa.ipc.open_file(pa.memory_map(str(path))).read_all())
        except pa.ArrowException as e:
            raise ValueError(f"{path}: {e}") from e

    @property
    def table(self):
        """All of them, as a pyarrow Table (mapped, not read)."""
        return self._t

    def __len__(self) -> int:
        return self._t.num_rows

    def at(self, positions) -> list[dict]:
        """The records (column -> value) at these row positions, in their order."""
        import pyarrow as pa

        positions = np.asarray(positions, np.int64)
        if not len(positions):
            return []
        # Slices, not Table.take: pyarrow.compute would import pandas (~0.5 s); joined, so that the
        # Python objects are made in one call (a tenth of the time of one call per row).
        return pa.concat_tables([self._t.slice(int(p), 1) for p in positions]).to_pylist()
