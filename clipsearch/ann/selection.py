"""Searching a subset of the vectors (the images a filter lets through): the true top k among them,
by the cheaper of two plans chosen from how many match.

- few match (<= EXACT_MAX) in an IVF-PQ index: every matching vector is scored exactly (the exact
  re-rank, `refine.rerank`, over all of them);
- else the index itself, with an id selector (a bitmap over the ids): a Flat index is exact; IVF-PQ
  probes more lists the rarer the matches (`probes_for`), then re-ranks exactly as deep as an
  unfiltered search (`AnnIndex.search_exact`).
Numbers behind the constants: bench/results/filters.md (bench/filter_bench.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from clipsearch.ann.index import AnnIndex
from clipsearch.ann.refine import rerank

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
                 depth: int | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Top-k among `ids` (sorted unique int64): xq (nq, D) -> D (nq, k), I (nq, k) (-inf/-1 pad), plan.

    `vectors_of(ids)` -> (len(ids), D) float32 full vectors, from the store; `nprobe` and `depth`
    (candidates re-ranked at least) as in `AnnIndex.search_exact`, nprobe before its boost.
    """
    xq = np.ascontiguousarray(xq, np.float32)
    ids = np.asarray(ids, np.int64)
    if len(ids) == 0:
        return np.full((len(xq), k), -np.inf, np.float32), np.full((len(xq), k), -1, np.int64), EXACT
    if ann.spec.kind == "flat":
        return (*ann.search(xq, k, subset=ids), EXACT)
    if len(ids) <= EXACT_MAX:
        D, I, _ = rerank(xq, np.broadcast_to(ids, (len(xq), len(ids))), vectors_of, k)
        return D, I, EXACT
    probes = probes_for(nprobe or ann.spec.nprobe, len(ids) / max(len(ann), 1), ann.spec.nlist)
    return (*ann.search_exact(xq, k, probes, depth, vectors_of, subset=ids), SELECTOR)


def probes_for(nprobe: int, share: float, nlist: int) -> int:
    """Lists to probe when `share` (0-1] of the vectors may be returned."""
    boost = min(PROBE_BOOST_MAX, 1 / max(share, 1e-9))
    return int(min(nlist, max(nprobe, round(nprobe * boost))))
