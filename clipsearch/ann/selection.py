"""Searching a subset of the vectors (the images a filter lets through): the true top k among them,
by the cheaper of two plans chosen from how many match.

- few match (<= EXACT_MAX), or the index is an exact Flat one: score the matching vectors exactly
  (the Flat index's own, through an id selector; else read from the table);
- many match: the IVF-PQ index with an id selector (a bitmap over the ids), more lists probed the
  rarer the matches (`probes_for`), then the usual exact re-rank of rerank*k candidates.
Numbers behind the constants: bench/results/filters.md (bench/filter_bench.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from clipsearch.ann.index import AnnIndex, rerank as rerank_exact

#: Score the matching vectors exactly, read from the table, when at most this many match: reading
#: 3,000 vectors by id from LanceDB takes ~50 ms, 30,000 over 1 s (300k-row table, 2 cores).
EXACT_MAX = 2_000
#: With a filter of selectivity s, probe nprobe/s lists (all of them at most): the k best matching
#: vectors rank ~1/s times further down than the k best overall, and this visits as many matching
#: vectors as an unfiltered search visits vectors. Membership is a bitmap test, done before any
#: distance is computed, so skipped vectors cost next to nothing. Capped at PROBE_BOOST_MAX x.
PROBE_BOOST_MAX = 64
EXACT, SELECTOR = "exact", "ann+selector"


def search_among(ann: AnnIndex, xq: np.ndarray, k: int, ids: np.ndarray,
                 vectors_of: Callable[[np.ndarray], np.ndarray], nprobe: int | None = None,
                 rerank: int = 10) -> tuple[np.ndarray, np.ndarray, str]:
    """Top-k among `ids` (sorted unique int64): xq (nq, D) -> D (nq, k), I (nq, k) (-inf/-1 pad), plan.

    `vectors_of(ids)` -> (len(ids), D) float32 full vectors, from the store.
    """
    xq = np.ascontiguousarray(xq, np.float32)
    ids = np.asarray(ids, np.int64)
    if len(ids) == 0:
        return np.full((len(xq), k), -np.inf, np.float32), np.full((len(xq), k), -1, np.int64), EXACT
    if ann.spec.kind == "flat":
        D, I = ann.search(xq, k, subset=ids)
        return D, I, EXACT
    if len(ids) <= EXACT_MAX:
        return (*exact_top_k(xq, vectors_of(ids), ids, k), EXACT)
    share = len(ids) / max(len(ann), 1)
    D, I = ann.search(xq, max(k, rerank * k), probes_for(nprobe or ann.spec.nprobe, share, ann.spec.nlist),
                      subset=ids)
    D, I = rerank_exact(xq, I, vectors_of, k)
    return D, I, SELECTOR


def probes_for(nprobe: int, share: float, nlist: int) -> int:
    """Lists to probe when `share` (0-1] of the vectors may be returned."""
    boost = min(PROBE_BOOST_MAX, 1 / max(share, 1e-9))
    return int(min(nlist, max(nprobe, round(nprobe * boost))))


def exact_top_k(xq: np.ndarray, xb: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of xq (nq, D) over xb (n, D) whose ids are `ids` (n,)."""
    nq, n = len(xq), len(ids)
    D = np.full((nq, k), -np.inf, np.float32)
    I = np.full((nq, k), -1, np.int64)
    if n == 0:
        return D, I
    S = xq @ np.ascontiguousarray(xb, np.float32).T
    kk = min(k, n)
    part = np.argpartition(-S, kk - 1, axis=1)[:, :kk]
    top = np.take_along_axis(S, part, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    D[:, :kk] = np.take_along_axis(top, order, axis=1)
    I[:, :kk] = ids[np.take_along_axis(part, order, axis=1)]
    return D, I
