"""What a query reads instead of LanceDB: a collection's records as of its ANN index's generation.

Importing LanceDB's Python package takes half as long as importing torch (bench/results/cold_query.md),
while a query needs only the FAISS index and, for its k hits, what a hit shows (an image's path and
size, a text). So every ANN sync of a collection also writes `<name>.rows`: an Arrow IPC file of
those columns (`VectorTable.SNAPSHOT`) sorted by id. A reader maps it (zero copy, no LanceDB) and
finds its hits by binary search, O(k log N).

Like the ANN file it is derived data, written atomically. It records the table's `stamp` (the
listing of its committed versions, which every commit, delete or compaction changes) and the
generation (table version) it was written at; a reader uses it only while the stamp is current and
the ANN file has the same generation, and otherwise reads the table as before (a crash between a
commit and the sync, a hand edit, another writer).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from clipsearch.durable import atomic_write

SUFFIX = ".rows"


def stamp(table_dir: Path) -> str:
    """A digest of the table's committed versions (Lance's `_versions/*.manifest`); "" if none."""
    try:
        names = sorted(n for n in os.listdir(table_dir / "_versions") if n.endswith(".manifest"))
    except OSError:
        return ""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:24] if names else ""


def write(path: Path, rows, table_stamp: str, generation: int) -> None:
    """Save `rows` (a pyarrow Table with an int64 "id" column) atomically, sorted by id."""
    import pyarrow as pa

    rows = rows.sort_by("id")
    meta = {b"stamp": table_stamp.encode(), b"generation": str(generation).encode()}
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, rows.schema.with_metadata(meta)) as w:
        w.write_table(rows.combine_chunks())
    atomic_write(path, memoryview(sink.getvalue()))


class Snapshot:
    """The records of one written snapshot, memory-mapped."""

    def __init__(self, table, generation: int):
        self._t, self.generation = table, generation
        # Straight from the mapped buffers: pyarrow's to_numpy would import pandas (~0.5 s).
        chunks = [np.frombuffer(c.buffers()[1], np.int64, len(c), c.offset * 8)
                  for c in table.column("id").chunks if len(c)]
        self._ids = chunks[0] if len(chunks) == 1 else np.concatenate([np.zeros(0, np.int64), *chunks])

    @classmethod
    def open(cls, path: Path, table_stamp: str) -> Snapshot | None:
        """The snapshot at `path` if it was written at `table_stamp`; None if absent, stale or damaged."""
        import pyarrow as pa

        try:
            reader = pa.ipc.open_file(pa.memory_map(str(path)))
            meta = reader.schema.metadata or {}
            if not table_stamp or meta.get(b"stamp", b"").decode() != table_stamp:
                return None
            return cls(reader.read_all(), int(meta[b"generation"]))
        except (OSError, ValueError, KeyError, pa.ArrowException):
            return None

    def __len__(self) -> int:
        return len(self._ids)

    def records(self, ids) -> list[dict]:
        """The records (column -> value) of the `ids` present."""
        ids = np.asarray(ids, np.int64)
        if not len(ids) or not len(self._ids):
            return []
        pos = np.searchsorted(self._ids, ids).clip(0, len(self._ids) - 1)
        # Slices, not Table.take: pyarrow.compute would import pandas (~0.5 s).
        return [self._t.slice(int(p), 1).to_pylist()[0] for p in pos[self._ids[pos] == ids]]
