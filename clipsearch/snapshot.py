"""What a query reads instead of LanceDB: the images' rows as of the ANN index's generation.

Importing LanceDB's Python package takes half as long as importing torch (bench/results/cold_query.md),
while a text query needs only the FAISS index and, for its k hits, their path and size. So every ANN
sync also writes `images.rows`: an Arrow IPC file of (id, path, path_raw, width, height) sorted by
id. A query maps it (zero copy, no LanceDB) and finds its hits by binary search, O(k log N).

Like the ANN file it is derived data, written atomically. It records the table's `stamp` (the
listing of its committed versions, which every commit, delete or compaction changes) and the ANN
generation it was written with; a reader uses it only while both are current, and otherwise
opens LanceDB as before (a crash between a commit and the sync, a hand edit).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .durable import atomic_write

FILE = "images.rows"
_COLUMNS = ("id", "path", "path_raw", "width", "height")


def stamp(table_dir: Path) -> str:
    """A digest of the table's committed versions (Lance's `_versions/*.manifest`); "" if none."""
    try:
        names = sorted(n for n in os.listdir(table_dir / "_versions") if n.endswith(".manifest"))
    except OSError:
        return ""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:24] if names else ""


def write(path: Path, rows, table_stamp: str, generation: int) -> None:
    """Save `rows` (a pyarrow Table with id, path, width, height and maybe path_raw) atomically."""
    import pyarrow as pa

    if "path_raw" not in rows.schema.names:  # a schema-1 table
        rows = rows.append_column("path_raw", pa.nulls(len(rows), pa.binary()))
    rows = rows.select(list(_COLUMNS)).sort_by("id")
    meta = {b"stamp": table_stamp.encode(), b"generation": str(generation).encode()}
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, rows.schema.with_metadata(meta)) as w:
        w.write_table(rows.combine_chunks())
    atomic_write(path, memoryview(sink.getvalue()))


class Snapshot:
    """The rows of one written snapshot, memory-mapped; `rows(ids)` like `store.ImageTable.rows`."""

    def __init__(self, table, generation: int):
        self._t, self.generation = table, generation
        # Straight from the mapped buffers: pyarrow's to_numpy would import pandas (~0.5 s).
        chunks = [np.frombuffer(c.buffers()[1], np.int64, len(c), c.offset * 8)
                  for c in table.column("id").chunks]
        self._ids = np.concatenate(chunks) if len(chunks) != 1 else chunks[0]

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

    def rows(self, ids) -> dict[int, tuple[str, int, int]]:
        """{id: (path, width, height)} of the `ids` present."""
        from .store import _path_from_columns

        ids = np.asarray(ids, np.int64)
        pos = np.searchsorted(self._ids, ids).clip(0, max(len(self._ids) - 1, 0))
        found = pos[(len(self._ids) > 0) & (self._ids[pos] == ids)] if len(ids) else pos[:0]
        out = {}
        for p in found:  # slices, not Table.take: pyarrow.compute would import pandas (~0.5 s)
            r = _path_from_columns(self._t.slice(int(p), 1).to_pylist()[0])
            out[r["id"]] = (r["path"], r["width"], r["height"])
        return out
