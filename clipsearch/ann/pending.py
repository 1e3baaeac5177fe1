"""Rows added to a collection's ANN index since its last sync: in memory, searched exactly, written
as a segment by the next sync (or sooner, when many: segments.SPILL_ROWS)."""

from __future__ import annotations

import numpy as np


class Pending:
    """Ids (n,) int64, vectors (n, D) float32 and records (a pyarrow Table) of rows not yet written."""

    def __init__(self, dim: int, rows_schema):
        self.ids, self.xb, self.rows, self._schema = np.zeros(0, np.int64), np.zeros((0, dim), np.float32), None, rows_schema

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, ids: np.ndarray, xb: np.ndarray, rows) -> None:
        """Rows whose ids this doesn't hold (the caller removed them first)."""
        import pyarrow as pa

        rows = rows.select(self._schema.names).cast(self._schema)
        self.ids, self.xb = np.concatenate([self.ids, ids]), np.concatenate([self.xb, xb])
        self.rows = rows if self.rows is None else pa.concat_tables([self.rows, rows])

    def remove(self, ids: np.ndarray) -> int:
        """Drop the rows of `ids`; how many there were."""
        gone = np.isin(self.ids, ids)
        if gone.any():
            import pyarrow as pa

            keep = ~gone
            self.ids, self.xb, self.rows = self.ids[keep], self.xb[keep], self.rows.filter(pa.array(keep))
        return int(gone.sum())

    def take(self) -> tuple[np.ndarray, np.ndarray, object]:
        """(ids ascending, their vectors, their records) of every row, and forget them."""
        import pyarrow as pa

        order = np.argsort(self.ids, kind="stable")
        out = self.ids[order], self.xb[order], self.rows.take(pa.array(order))
        self.ids, self.xb, self.rows = self.ids[:0], self.xb[:0], None
        return out

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        """Row of each of `ids`, -1 where not held."""
        if not len(self.ids):
            return np.full(len(ids), -1, np.int64)
        order = np.argsort(self.ids)
        pos = np.searchsorted(self.ids[order], ids).clip(0, len(order) - 1)
        return np.where(self.ids[order][pos] == ids, order[pos], -1)

    def vectors_of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """((len(ids), D) float32, zeros where not held; which are held)."""
        pos = self._positions(ids)
        out = np.zeros((len(ids), self.xb.shape[1]), np.float32)
        out[pos >= 0] = self.xb[pos[pos >= 0]]
        return out, pos >= 0

    def records_of(self, ids: np.ndarray) -> list[dict | None]:
        return [None if p < 0 else self.rows.slice(int(p), 1).to_pylist()[0] for p in self._positions(ids)]

    def search(self, xq: np.ndarray, k: int, subset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k (at most k columns) among these rows (those of `subset`)."""
        ids, xb = self.ids, self.xb
        if subset is not None and len(ids):
            keep = np.isin(ids, subset)
            ids, xb = ids[keep], xb[keep]
        S = xq @ xb.T
        kk = min(k, len(ids))
        part = np.argsort(-S, axis=1, kind="stable")[:, :kk]
        return np.take_along_axis(S, part, axis=1).astype(np.float32), ids[part]
