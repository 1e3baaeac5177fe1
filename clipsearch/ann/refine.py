"""The exact stage of an approximate search: full vectors in memory by id, and the exact re-rank
(the only one: unfiltered, filtered and brute-force-over-a-subset search all go through `rerank`).

IVF-PQ ranks candidates by 64-byte codes. Bursts of near-identical shots differ by less than the
codes' error, so a few re-ranked candidates miss true neighbours (recall@10 0.68 at 1M with 10 x k
in the bursty benchmark). So:
- `Refine` keeps every vector's float32 values by id (a FAISS IDMap2,Flat: 4·D + ~16 bytes a
  vector, saved in the ANN file), so a candidate costs a memory read, not a table lookup;
- `search` re-ranks MAX_DEPTH candidates (or more, when asked) exactly, in one step. A depth that
  adapted (10 x k first, all of them only where a candidate not scored yet could still beat the
  k-th) saved nothing: judged soundly (the codes' largest error seen, either way, twice), 99 % of the
  queries went on to all of them on clustered vectors and 100 % on bursty ones (200k x 128-d,
  10M x 512-d), so the first step cost 6-10 % of every query (bench/scale_bench.py's indexes). Judged
  by how far codes underrated the candidates seen (the ones they ranked first, so mostly overrated),
  18 % of the 10M bench's queries stopped early and recall@10 was 0.83.
The scores returned are exact inner products, so the top k are exact among the candidates.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from clipsearch.errors import InputError

#: The default `--rerank`: at least RERANK_FACTOR x k candidates are re-ranked, and MAX_DEPTH
#: whatever k. PQ alone gives recall@10 0.5-0.7; 10 x k brings it to 0.96-0.98 on clustered vectors
#: (bench/results/ann.md), but bursts need MAX_DEPTH.
RERANK_FACTOR = 10
#: Candidates re-ranked at least (100 x k: recall@10 1.00 on 1M bursty vectors, where 10 x k gave
#: 0.68 and 40 x k 0.94; at 10M 0.995, the 1,024 holding 0.996 of the true top 10).
MAX_DEPTH = 1024
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
    uniq, inv = _distinct(C.ravel()[pos], nq)
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


def _distinct(c: np.ndarray, nq: int) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(c, return_inverse=True). One query's candidates are distinct already: a sort
    does (np.unique costs ~0.1 ms more a query)."""
    if nq == 1:
        order = np.argsort(c)
        uniq = c[order]
        if not np.any(uniq[1:] == uniq[:-1]):
            inv = np.empty_like(order)
            inv[order] = np.arange(len(order))
            return uniq, inv
    return np.unique(c, return_inverse=True)


def best(S: np.ndarray, C: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each row of scores S (nq, kc) with their ids C: D, I (nq, k), -inf/-1 padded."""
    kk = min(k, S.shape[1])
    if len(S) == 1 and S.shape[1] > kk:  # a user's query: 1-D, without take_along_axis (~0.1 ms)
        part = np.argpartition(-S[0], kk - 1)[:kk]
        order = part[np.argsort(-S[0, part], kind="stable")]
        D, I = np.full((1, k), -np.inf, np.float32), np.full((1, k), -1, np.int64)
        D[0, :kk], I[0, :kk] = S[0, order], C[0, order]
        I[np.isneginf(D)] = -1
        return D, I
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
    """Exact top-k of xq (nq, D) among its best candidates -> D, I (nq, k), -inf/-1 padded.

    candidates(xq, d) -> (code scores, ids) (nq, d), best first, -1 padded; lookup(ids) -> their
    exact vectors; n: how many vectors may be returned. max(MAX_DEPTH, depth, k) candidates, at most
    n, are re-ranked, a chunk of queries at a time (bounds the gathered vectors).
    """
    nq, d = len(xq), min(n, max(MAX_DEPTH, depth, k))
    D, I = np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)
    step = max(1, _GATHER // max(d, 1))
    for s in range(0, nq, step):
        q = slice(s, s + step)
        D[q], I[q], _ = rerank(xq[q], candidates(xq[q], d)[1], lookup, k)
    return D, I
