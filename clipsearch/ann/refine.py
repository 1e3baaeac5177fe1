"""The exact stage of an approximate search: full vectors in memory by id, the exact re-rank (the only
one: unfiltered, filtered and brute-force-over-a-subset search all go through `rerank`), and a
re-rank depth that adapts.

IVF-PQ ranks candidates by 64-byte codes. Bursts of near-identical shots differ by less than the
codes' error, so a fixed number of re-ranked candidates misses true neighbours (recall@10 0.68 at
1M with 10x in the bursty benchmark). So:
- `Refine` keeps every vector's float32 values by id (a FAISS IDMap2,Flat: 4·D + ~16 bytes a
  vector, saved in the ANN file), so a candidate costs a memory read, not a table lookup;
- `search` takes MAX_DEPTH candidates in one scan of the lists, re-ranks the best `depth` of them
  exactly, and goes deeper into them (x GROWTH) for the queries where a vector outside those could
  still beat the k-th: where the last one's code score plus twice the largest code error seen
  among them reaches the k-th exact score. Easy queries stop at the first depth; near-ties pay for
  what they need.
The scores returned are exact inner products, so the top k are exact among the candidates.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from clipsearch.errors import InputError

#: Candidates re-ranked at first: RERANK_FACTOR * k. PQ alone gives recall@10 0.5-0.7; re-ranking
#: 10x brings it to 0.96-0.98 (4x: 0.88-0.96, 20x: +0.01 at most) for <0.5 ms (bench/results/ann.md).
RERANK_FACTOR = 10
#: Depth grows by this factor while near-ties remain open, up to MAX_DEPTH candidates a query
#: (100 x k: recall@10 1.00 on 1M bursty vectors, where 10 x k gave 0.68 and 40 x k 0.94). From
#: 10 x k straight to MAX_DEPTH: a query that needs more than its first depth usually needs them all,
#: and each step costs a read of its candidates' vectors from disk (segment.py).
GROWTH = 16
MAX_DEPTH = 1024
#: A query goes deeper when a candidate not scored yet could be underrated by its code by this many
#: times the largest code error seen, either way. The candidates seen are those the codes ranked
#: first, so mostly ones they overrated, and the ones not seen are many more: judged by how far codes
#: underrated those seen (the rule before), 18 % of the 10M bench's queries stopped at 10 x k and
#: recall@10 was 0.83; by the error either way, 17.5 %; from 1.1 times it, none (0.995).
ERROR_MARGIN = 2.0
_GATHER = 1 << 17  # candidate vectors gathered at once: bounds the (chunk, D) temporary


class Refine:
    """Exact vectors by id: add, remove, `vectors_of`; serialisable into the ANN file."""

    def __init__(self, index):
        self._index = index

    @classmethod
    def build(cls, xb: np.ndarray, ids: np.ndarray) -> Refine:
        import faiss

        refine = cls(faiss.IndexIDMap2(faiss.IndexFlatIP(xb.shape[1])))
        refine.add(xb, ids)
        return refine

    def add(self, xb: np.ndarray, ids: np.ndarray) -> None:
        if len(xb):
            self._index.add_with_ids(np.ascontiguousarray(xb, np.float32), np.ascontiguousarray(ids, np.int64))

    def remove(self, ids: np.ndarray) -> None:
        self._index.remove_ids(np.ascontiguousarray(ids, np.int64).ravel())

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), D) float32 vectors of `ids`; zeros for ids not held."""
        ids = np.ascontiguousarray(ids, np.int64)
        try:
            return self._index.reconstruct_batch(ids)
        except RuntimeError:  # some id is not held: one by one
            out = np.zeros((len(ids), self._index.d), np.float32)
            for n, i in enumerate(ids):
                try:
                    out[n] = self._index.reconstruct(int(i))
                except RuntimeError:
                    pass
            return out

    def serialize(self) -> np.ndarray:
        import faiss

        return faiss.serialize_index(self._index)

    @classmethod
    def deserialize(cls, blob: np.ndarray) -> Refine:
        import faiss

        return cls(faiss.deserialize_index(blob))


def rerank(xq: np.ndarray, C: np.ndarray, lookup: Callable[[np.ndarray], np.ndarray],
           k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k among candidates: xq (nq, D) float32, C (nq, kc) int64 ids, -1 padded;
    lookup(sorted unique ids) -> (len(ids), D) float32 vectors.
    -> D, I (nq, k), -inf/-1 padded, and S (nq, kc): every candidate's exact score (-inf: padding)."""
    S = scores(np.ascontiguousarray(xq, np.float32), np.asarray(C, np.int64), lookup)
    return (*best(S, C, k), S)


def scores(xq: np.ndarray, C: np.ndarray, lookup: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """(nq, kc) float32 exact scores of the candidates C (nq, kc) of xq, -inf for -1 padding; each
    distinct candidate's vector looked up once."""
    nq, kc = C.shape
    pos = np.flatnonzero(C >= 0)
    uniq, inv = np.unique(C.ravel()[pos], return_inverse=True)
    xc = np.asarray(lookup(uniq), np.float32)
    if xc.shape != (len(uniq), xq.shape[1]):
        raise InputError(f"lookup returned shape {xc.shape}, expected {(len(uniq), xq.shape[1])}")
    S = np.full(nq * kc, -np.inf, np.float32)
    if len(uniq) * nq <= _GATHER:  # few queries (a user's): every pair in one product, no gather
        S[pos] = (xc @ xq.T)[inv, pos // kc]
        return S.reshape(nq, kc)
    for s in range(0, len(pos), _GATHER):  # bounds the gathered (chunk, D) temporary
        p = pos[s:s + _GATHER]
        S[p] = np.einsum("ij,ij->i", xc[inv[s:s + _GATHER]], xq[p // kc])
    return S.reshape(nq, kc)


def best(S: np.ndarray, C: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each row of scores S (nq, kc) with their ids C: D, I (nq, k), -inf/-1 padded."""
    kk = min(k, S.shape[1])
    part = np.argpartition(-S, kk - 1, axis=1)[:, :kk] if S.shape[1] > kk else np.tile(np.arange(kk), (len(S), 1))
    top = np.take_along_axis(S, part, axis=1)
    order = np.take_along_axis(part, np.argsort(-top, axis=1, kind="stable"), axis=1)
    D = np.full((len(S), k), -np.inf, np.float32)
    I = np.full((len(S), k), -1, np.int64)
    D[:, :kk] = np.take_along_axis(S, order, axis=1)
    I[:, :kk] = np.take_along_axis(C, order, axis=1)
    I[np.isneginf(D)] = -1
    return D, I


def search(candidates: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
           lookup: Callable[[np.ndarray], np.ndarray], xq: np.ndarray, k: int, depth: int,
           n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of xq (nq, D) among adaptively many candidates -> D, I (nq, k), -inf/-1 padded.

    candidates(xq, depth) -> (code scores, ids) (nq, depth), best first, -1 padded;
    lookup(ids) -> their exact vectors; n: how many vectors may be returned. At least `depth`
    candidates are re-ranked, MAX_DEPTH (or `depth`, or k, when larger) at most. Going deeper scores
    only the candidates not scored yet (each looked up once: a lookup may be a read from disk).
    """
    nq, cap = len(xq), min(n, max(MAX_DEPTH, depth, k))
    D, I = np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)
    first = min(max(depth, k), cap)
    step = max(1, _GATHER // max(cap, 1))
    for s in range(0, nq, step):
        q = np.arange(s, min(s + step, nq))
        Dc, C = candidates(xq[q], cap)  # one scan of the lists; the depth grows over its prefixes
        S = np.full(C.shape, -np.inf, np.float32)
        done, d, todo = 0, first, np.arange(len(q))
        while len(todo):
            S[todo, done:d] = scores(xq[q[todo]], C[todo, done:d], lookup)
            D[q[todo]], I[q[todo]] = best(S[todo, :d], C[todo, :d], k)
            todo = todo[_open(Dc[todo, :d], C[todo, :d], S[todo, :d], D[q[todo], -1])]
            if d >= cap:
                break
            done, d = d, min(cap, d * GROWTH)
    return D, I


def _open(Dc: np.ndarray, C: np.ndarray, S: np.ndarray, kth: np.ndarray) -> np.ndarray:
    """Which queries could still gain from more candidates than C: where the last one's code score
    plus ERROR_MARGIN times the largest code error seen among them, either way, reaches the k-th
    exact score `kth`."""
    valid = C >= 0
    with np.errstate(invalid="ignore"):  # padding: -inf - -inf, masked out
        error = np.where(valid, np.abs(S - Dc), -np.inf).max(axis=1)
    full = valid.all(axis=1)  # a short list has no vectors left outside it
    return full & (Dc[:, -1] + ERROR_MARGIN * error >= kth)
