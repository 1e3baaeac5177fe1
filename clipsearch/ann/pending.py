"""Rows added to a collection's ANN index since its last sync: in memory, searched exactly, written
as a segment by the next sync (or sooner, when many: segments.SPILL_ROWS)."""

from __future__ import annotations

import numpy as np


class Pending:
    """Ids (n,) int64, vectors (n, D) float32 and records (a pyarrow Table) of rows not yet written."""

    def __init__(self, dim: int):
        self.ids, self.xb, self.rows = np.zeros(0, np.int64), np.zeros((0, dim), np.float32), None

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, ids: np.ndarray, xb: np.ndarray, rows) -> None:
        """Rows whose ids this doesn't hold (the caller removed them first)."""
        import pyarrow as pa

        self.ids, self.xb = np.concatenate([self.ids, ids]), np.concatenate([self.xb, xb])
        self.rows = rows if self.rows is None else pa.concat_tables([self.rows, rows], promote_options="default")

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
        return exact_top_k(xq, xb, ids, min(k, len(ids)))


def exact_top_k(xq: np.ndarray, xb: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of xq (nq, D) over xb (n, D) whose ids are `ids` (n,)."""
    S = xq @ np.ascontiguousarray(xb, np.float32).T
    return top_k(S, np.broadcast_to(ids, S.shape), k)


def top_k(D: np.ndarray, I: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each row of scores D (nq, m) with their ids I, best first, -inf/-1 padded."""
    out_D, out_I = np.full((len(D), k), -np.inf, np.float32), np.full((len(D), k), -1, np.int64)
    kk = min(k, D.shape[1])
    if kk:
        part = np.argpartition(-D, kk - 1, axis=1)[:, :kk] if D.shape[1] > kk else np.tile(np.arange(kk), (len(D), 1))
        top = np.take_along_axis(D, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        out_D[:, :kk] = np.take_along_axis(top, order, axis=1)
        out_I[:, :kk] = np.take_along_axis(np.take_along_axis(I, part, axis=1), order, axis=1)
    out_I[np.isneginf(out_D)] = -1
    return out_D, out_I
