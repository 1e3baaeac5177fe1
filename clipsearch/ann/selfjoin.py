"""Every pair of vectors at or above a cosine threshold, without comparing all N² pairs.

An IVF self-join (as SemDeDup does at web scale): the vectors are split into the cells of a coarse
quantizer (the ANN index's centroids when it is an IVF index, else k-means on a sample); each vector
is compared exactly, by BLAS, with the vectors whose nearest cell is one of its PROBES nearest. A pair is found when
one vector's nearest cell is among the other's PROBES nearest, which near-duplicates (cos >= 0.9:
closer to each other than to almost anything else) nearly always satisfy. This is the range search
of an IVF-Flat index with nprobe = PROBES, done as cell-by-cell matrix products (BLAS), with no
second copy of the vectors. Numbers: bench/results/dupes.md.
"""

from __future__ import annotations

import math
import os

import numpy as np

#: Cells each vector is compared in: 2 found 4911 of the 4912 pairs at cos >= 0.95 of 60k synthetic
#: vectors with planted duplicates (bench/dupes_bench.py; 4 found all 4912 for 1.5x the time).
PROBES = 2
#: Below this many vectors every pair is compared (one cell): 4096² products take ~1 s on 2 cores.
ALL_PAIRS_MAX = 4096
#: Vectors per block of a matrix product: bounds its temporaries to ~130 MB at 2048 cells.
BLOCK = 16_384


def cell_count(n: int) -> int:
    """Cells for n vectors: the power of two near sqrt(PROBES * n), which balances the cost of
    assigning vectors to cells (n * cells) against the cost of the join (n * PROBES * n / cells)."""
    return 1 if n <= ALL_PAIRS_MAX else 2 ** round(math.log2(math.sqrt(PROBES * n)))


def train_cells(xb: np.ndarray, n_cells: int, seed: int = 0) -> np.ndarray:
    """(n_cells, D) float32 k-means centroids of a sample of xb (N, D) float32, 32 points a cell."""
    import faiss

    rng = np.random.default_rng(seed)
    n = min(len(xb), 32 * n_cells)
    xt = xb if n == len(xb) else xb[np.sort(rng.choice(len(xb), n, replace=False))]
    km = faiss.Kmeans(xb.shape[1], n_cells, niter=8, seed=seed, max_points_per_centroid=32,
                     min_points_per_centroid=1)
    km.train(np.ascontiguousarray(xt, np.float32))
    return km.centroids


def nearest_cells(xb: np.ndarray, C: np.ndarray, probes: int = PROBES, rows: np.ndarray | None = None) -> np.ndarray:
    """(n, probes) int64: for each row of xb (those of `rows` if given), its `probes` best cells by
    inner product, best first."""
    probes = min(probes, len(C))
    n = len(xb) if rows is None else len(rows)
    out = np.empty((n, probes), np.int64)
    for s in range(0, n, BLOCK):
        x = xb[s : s + BLOCK] if rows is None else xb[rows[s : s + BLOCK]]
        out[s : s + BLOCK] = _top(x @ C.T, probes)
    return out


def pairs_above(xb: np.ndarray, threshold: float, cells: np.ndarray,
                rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, s): every pair i < j of the rows of xb (N, D) float32 unit vectors (positions in
    `rows` if given, which saves copying them) with cos >= threshold that share a cell, where
    `cells` (n, p) lists each one's cells, best first; s float32 exact."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    n_cells = int(cells.max()) + 1 if len(cells) else 0
    by_first = _buckets(cells[:, 0], n_cells)
    by_any = _buckets(cells.ravel(), n_cells)

    def join(c: int):
        return _join_cell(xb, threshold, by_first[c], by_any[c] // cells.shape[1], rows)

    # One BLAS thread per cell, cells in parallel: the products are small (a few hundred rows), and
    # multi-threaded OpenBLAS on them ran 10x slower on a busy 2-core machine (thread hand-offs).
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        parts = list(pool.map(join, range(n_cells)))
    I, J, S = (np.concatenate([p[k] for p in parts] or [np.zeros(0, t)])
               for k, t in enumerate((np.int64, np.int64, np.float32)))
    return _unique_pairs(I, J, S)


def _join_cell(xb, threshold, P, Q, rows):
    """Pairs at or above threshold between P (this cell first) and Q (this cell among theirs)."""
    out = [], [], []
    xq = xb[Q] if rows is None else xb[rows[Q]]
    for s in range(0, len(P), 2048):  # bounds the (|P|, |Q|) block of a crowded cell
        p = P[s : s + 2048]
        G = (xb[p] if rows is None else xb[rows[p]]) @ xq.T
        a, b = np.nonzero(G >= threshold)
        out[0].append(p[a]), out[1].append(Q[b]), out[2].append(G[a, b])
    return tuple(np.concatenate(o) if o else np.zeros(0) for o in out)


def _buckets(keys: np.ndarray, n: int) -> list[np.ndarray]:
    """Positions of `keys` grouped by key value 0..n-1."""
    order = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[order], np.arange(n + 1))
    return [order[bounds[c] : bounds[c + 1]] for c in range(n)]


def _unique_pairs(i, j, s):
    keep = i != j
    lo, hi, s = np.minimum(i[keep], j[keep]), np.maximum(i[keep], j[keep]), s[keep]
    key = lo.astype(np.int64) * (int(hi.max()) + 1 if len(hi) else 1) + hi
    key, first = np.unique(key, return_index=True)
    return lo[first].astype(np.int64), hi[first].astype(np.int64), s[first].astype(np.float32)


def _top(S: np.ndarray, k: int) -> np.ndarray:
    """(n, k) column indices of the k largest of each row of S, largest first (k small; argmax
    passes: numpy's argpartition is 100x slower on wide float32 rows)."""
    S = np.array(S, np.float32, copy=True)
    out = np.empty((len(S), k), np.int64)
    rows = np.arange(len(S))
    for r in range(k):
        out[:, r] = S.argmax(1)
        S[rows, out[:, r]] = -np.inf
    return out
