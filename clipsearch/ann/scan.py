"""Searching a collection's segments (segments.py): every segment's IVF lists in one faiss call, then
the exact re-rank with the candidates' stored vectors; or, for a Flat index, every vector exactly.
Both answer in labels (segments.py says why); `Segments.search_exact` turns them into ids and adds
the rows not written yet."""

from __future__ import annotations

import numpy as np

from clipsearch.ann.lists import bitmap_selector
from clipsearch.ann.pending import exact_top_k
from clipsearch.ann.refine import search as refine_search


def ivf(segs, xq: np.ndarray, k: int, nprobe: int | None, depth: int,
        labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k labels of xq (nq, D) among the live rows (those of `labels`): D, L (nq, <=k). At least
    `depth` candidates re-ranked exactly (refine.search), codes only when depth <= k."""
    n = sum(len(s) for s in segs.segments) - len(segs.dead) if labels is None else len(labels)
    if n <= 0:
        return np.full((len(xq), 0), -np.inf, np.float32), np.full((len(xq), 0), -1, np.int64)
    stack = segs.lists()
    nprobe = min(max(1, nprobe or segs.spec.nprobe or 1), stack.nlist)
    sel = segs.live_selector() if labels is None else bitmap_selector(labels)

    def candidates(x, d):
        return stack.search(x, d, nprobe, sel and sel[0])

    if depth <= k:
        return candidates(xq, k)
    return refine_search(candidates, segs.candidate_vectors, xq, k, depth, n)


def flat(segs, xq: np.ndarray, k: int, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k labels of xq among the live rows (those of `labels`)."""
    L, xb = segs.flat_rows()
    if labels is not None:
        keep = np.isin(L, labels)
        L, xb = L[keep], xb[keep]
    return exact_top_k(xq, xb, L, min(k, len(L)))
