"""The store: one LanceDB table per collection, each row a file's metadata with its full vector."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import IndexDirError

IMAGES = "images"
_META = ("id", "path", "size", "mtime", "width", "height")


@dataclass(frozen=True)
class Row:
    """One indexed image, without its vector."""

    id: int
    path: str
    size: int
    mtime: float
    width: int
    height: int


def image_schema(dim: int):
    import pyarrow as pa

    return pa.schema([
        pa.field("id", pa.int64()), pa.field("path", pa.string()),
        pa.field("size", pa.int64()), pa.field("mtime", pa.float64()),
        pa.field("width", pa.int32()), pa.field("height", pa.int32()),
        pa.field("vector", pa.list_(pa.float32(), dim)),
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
        """The table `name`, created empty (`schema`, else the images') for `dim`-d vectors when missing."""
        return self._db.create_table(name, schema=schema or image_schema(dim), exist_ok=True)

    def names(self) -> list[str]:
        """Names of the tables in the store."""
        out, token = [], None
        while True:
            page = self._db.list_tables(page_token=token)
            out += page.tables
            if not (token := page.page_token):
                return sorted(out)

    def drop(self, name: str) -> None:
        self._db.drop_table(name)


class ImageTable:
    """Typed access to the images table: rows in, rows and vectors out."""

    def __init__(self, table):
        self._t = table

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
        cols = {name: [getattr(r, name) for r in rows] for name in _META}
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
        t = self._query(f"id IN ({','.join(str(int(i)) for i in ids)})", list(_META))
        return {r["id"]: Row(**r) for r in t.to_pylist()}

    def all_rows(self) -> list[Row]:
        return [Row(**r) for r in self._query(None, list(_META)).to_pylist()]

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

    def max_id(self) -> int:
        ids = self._query(None, ["id"]).column("id").to_numpy()
        return int(ids.max()) if len(ids) else -1

    def compact(self) -> None:
        """Merge the small fragments that batch commits leave behind."""
        self._t.optimize()

    def _query(self, where: str | None, columns: list[str]):
        q = self._t.search().select(columns)
        if where:
            q = q.where(where)
        return q.limit(None).to_arrow()
