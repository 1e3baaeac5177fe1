"""The store: one LanceDB table per collection, each row a file's metadata with its full vector."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import IndexDirError
from .files import display_path

IMAGES = "images"
FAILURES = "failures"
_META = ("id", "path", "size", "mtime", "width", "height", "hash")
#: Columns added by schema 2 (older tables get them, empty, when first written): SQL defaults.
_ADDED = {"hash": "CAST(NULL AS STRING)", "path_raw": "CAST(NULL AS BINARY)"}


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
        pa.field("hash", pa.string()), pa.field("path_raw", pa.binary()),
    ])


def failure_schema():
    import pyarrow as pa

    return pa.schema([
        pa.field("path", pa.string()), pa.field("path_raw", pa.binary()), pa.field("reason", pa.string()),
        pa.field("size", pa.int64()), pa.field("mtime", pa.float64()),
    ])


class Store:
    """LanceDB tables in one directory (embedded, no server)."""

    def __init__(self, root: Path):
        import lancedb

        try:
            self._db = lancedb.connect(str(root))
        except Exception as e:  # lancedb wraps OS errors in several types
            raise IndexDirError(f"can't open the index store at {root}: {e}. "
                                "Check the directory's permissions") from e

    def table(self, name: str, dim: int, schema=None):
        """The table `name`, created empty (`schema`, else the images') for `dim`-d vectors when missing
        (opened as it is if not: a schema-1 table lacks the newer columns until `ImageTable.upgrade`)."""
        try:
            return self._db.open_table(name)
        except ValueError:  # lancedb: "Table 'images' was not found"
            return self._db.create_table(name, schema=schema or image_schema(dim), exist_ok=True)

    def names(self) -> list[str]:
        """Names of the tables in the store."""
        out, token = [], None
        while True:
            page = self._db.list_tables(page_token=token)
            out += page.tables
            if not (token := page.page_token):
                return sorted(out)

    def failures_table(self, create: bool):
        """The failures table; None when it doesn't exist and `create` is False (a reader never writes)."""
        if create:
            return self._db.create_table(FAILURES, schema=failure_schema(), exist_ok=True)
        try:
            return self._db.open_table(FAILURES)
        except (ValueError, FileNotFoundError):  # lancedb: "Table 'failures' was not found"
            return None


class ImageTable:
    """Typed access to the images table: rows in, rows and vectors out."""

    def __init__(self, table):
        self._t = table

    def upgrade(self) -> bool:
        """Add the columns a schema-1 table lacks (empty); True if it had to."""
        missing = {c: sql for c, sql in _ADDED.items() if c not in self._t.schema.names}
        if missing:
            self._t.add_columns(missing)
        return bool(missing)

    def fragments(self) -> int:
        """How many small fragments the table holds (one per commit until compacted)."""
        return int(self._t.stats()["fragment_stats"]["num_small_fragments"])

    @property
    def version(self) -> int:
        return int(self._t.version)

    def __len__(self) -> int:
        return self._t.count_rows()

    def refresh(self) -> None:
        """See the latest committed state (another process may have written)."""
        self._t.checkout_latest()

    def add(self, rows: list[Row], xb: np.ndarray) -> None:
        """Append rows with their (N, D) float32 vectors in one commit."""
        import pyarrow as pa

        if not rows:
            return
        cols = _path_columns([r.path for r in rows])
        cols |= {name: [getattr(r, name) for r in rows] for name in _META if name not in ("path", "hash")}
        cols["hash"] = [r.hash or None for r in rows]
        cols = {c: v for c, v in cols.items() if c in self._t.schema.names}  # a schema-1 table: fewer
        flat = pa.array(np.ascontiguousarray(xb, np.float32).ravel())
        cols["vector"] = pa.FixedSizeListArray.from_arrays(flat, xb.shape[1])
        self._t.add(pa.table(cols, schema=self._t.schema))

    def delete_ids(self, ids) -> None:
        if len(ids):
            self._t.delete(f"id IN ({','.join(str(int(i)) for i in ids)})")

    def rows(self, ids) -> dict[int, Row]:
        """Rows by id (missing ids are absent from the result)."""
        if len(ids) == 0:
            return {}
        rows = self._rows(f"id IN ({','.join(str(int(i)) for i in ids)})")
        return {r.id: r for r in rows}

    def all_rows(self) -> list[Row]:
        return self._rows(None)

    def vectors(self, ids=None) -> tuple[np.ndarray, np.ndarray]:
        """(ids (N,) int64, vectors (N, D) float32), all of them or those of `ids`."""
        where = None if ids is None else f"id IN ({','.join(str(int(i)) for i in ids) or '-1'})"
        t = self._query(where, ["id", "vector"])
        dim = t.schema.field("vector").type.list_size
        xb = t.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return t.column("id").to_numpy().astype(np.int64), xb.reshape(-1, dim).astype(np.float32)

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), D) float32 vectors in the order of `ids`; zeros for ids no longer stored."""
        found, xb = self.vectors(ids)
        out = np.zeros((len(ids), xb.shape[1]), np.float32)
        pos = {int(i): n for n, i in enumerate(found)}
        for n, i in enumerate(ids):
            if int(i) in pos:
                out[n] = xb[pos[int(i)]]
        return out

    def columns(self, names) -> "pa.Table":
        """Those of the named columns the table has, for every row, as one arrow table."""
        return self._query(None, [c for c in names if c in self._t.schema.names])

    def max_id(self) -> int:
        ids = self._query(None, ["id"]).column("id").to_numpy()
        return int(ids.max()) if len(ids) else -1

    def compact(self) -> None:
        """Merge the small fragments that batch commits leave behind."""
        self._t.optimize()

    def _rows(self, where: str | None) -> list[Row]:
        names = self._t.schema.names
        t = self._query(where, [c for c in (*_META, "path_raw") if c in names]).to_pylist()
        return [Row(**_path_from_columns(r)) for r in t]

    def _query(self, where: str | None, columns: list[str]):
        q = self._t.search().select(columns)
        if where:
            q = q.where(where)
        return q.limit(None).to_arrow()


class FailureTable:
    """The files that could not be indexed: loaded whole, replaced whole (one commit, small)."""

    def __init__(self, store: Store):
        self._store = store

    def all(self) -> list[Failure]:
        t = self._store.failures_table(create=False)
        if t is None:
            return []
        rows = t.search().limit(None).to_arrow().to_pylist()
        return [Failure(**_path_from_columns(r)) for r in rows]

    def replace(self, failures: list[Failure]) -> None:
        """Store exactly `failures`, atomically (readers see the old list or the new one)."""
        import pyarrow as pa

        t = self._store.failures_table(create=True)
        cols = _path_columns([f.path for f in failures])
        cols |= {c: [getattr(f, c) for f in failures] for c in ("reason", "size", "mtime")}
        t.add(pa.table(cols, schema=failure_schema()), mode="overwrite")


def _path_columns(paths: list[str]) -> dict[str, list]:
    """path (printable) and path_raw (the OS bytes, only where the path is not valid UTF-8)."""
    shown = [display_path(p) for p in paths]
    return {"path": shown, "path_raw": [None if s == p else os.fsencode(p) for s, p in zip(shown, paths)]}


def _path_from_columns(r: dict) -> dict:
    """A stored record with "path" back to the OS string (surrogate escapes for non-UTF-8 bytes)."""
    raw = r.pop("path_raw", None)
    if raw is not None:
        r["path"] = os.fsdecode(raw)
    if r.get("hash", "") is None:
        r["hash"] = ""
    return r
