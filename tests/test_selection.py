"""Filtered search against brute force: the true top k among the matching vectors, at 0.1 %, 1 %,
10 % and 50 % selectivity, by both plans (exact scoring of the matches; IVF-PQ with an id selector
and the exact re-rank)."""

from __future__ import annotations

import numpy as np
import pytest

from clipsearch.ann import selection
from clipsearch.ann.index import AnnIndex
from clipsearch.ann.refine import RERANK_FACTOR
from clipsearch.ann.selection import EXACT, SELECTOR, probes_for, search_among
from clipsearch.ann.spec import AnnSpec

N, D, K, NQ = 20_000, 64, 10, 40


@pytest.fixture(scope="module")
def data():
    """Clustered unit vectors (ids offset, not 0..N-1), held-out queries, and an IVF-PQ index."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((200, D)).astype(np.float32)
    x = centres[rng.integers(0, 200, N + NQ)] + 0.6 * rng.standard_normal((N + NQ, D)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    xb, xq = x[:N], x[N:]
    ids = np.arange(N, dtype=np.int64) * 2 + 7
    ivf = AnnIndex.build(xb, ids, AnnSpec("ivfpq", D, nlist=64, m=8, train_size=10_000, nprobe=4))
    flat = AnnIndex.build(xb, ids, AnnSpec("flat", D))
    return xb, xq, ids, ivf, flat


def lookup(xb, ids):
    pos = {int(i): n for n, i in enumerate(ids)}
    return lambda wanted: xb[[pos[int(i)] for i in wanted]]


def truth(xb, xq, ids, subset):
    """numpy's exact top K among `subset`: D, I (nq, K)."""
    keep = np.isin(ids, subset)
    S = xq @ xb[keep].T
    order = np.argsort(-S, axis=1, kind="stable")[:, :K]
    return np.take_along_axis(S, order, axis=1), ids[keep][order]


def recall(I, gt) -> float:
    return np.mean([len(set(a[a >= 0]) & set(b[b >= 0])) / max(1, (b >= 0).sum()) for a, b in zip(I, gt)])


@pytest.mark.parametrize("share", [0.001, 0.01, 0.1, 0.5])
def test_exact_plan_is_exact(data, share, monkeypatch):
    xb, xq, ids, ivf, flat = data
    monkeypatch.setattr(selection, "EXACT_MAX", N)
    subset = np.sort(np.random.default_rng(1).choice(ids, int(share * N), replace=False))
    gt_D, gt_I = truth(xb, xq, ids, subset)
    for index in (flat, ivf):  # Flat: its own selector; IVF-PQ: the matching vectors scored exactly
        D, I, plan = search_among(index, xq, K, subset, lookup(xb, ids))
        assert plan == EXACT
        np.testing.assert_array_equal(I, gt_I)
        np.testing.assert_allclose(D, gt_D, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("share, plan, bound", [
    (0.001, EXACT, 1.0), (0.01, SELECTOR, 0.9), (0.1, SELECTOR, 0.9), (0.5, SELECTOR, 0.9)])
def test_planned_search_recall(data, share, plan, bound, monkeypatch):
    """The planner at N=20k with EXACT_MAX scaled as at 1M (2,000 of 1M = 0.2 %)."""
    xb, xq, ids, ivf, flat = data
    monkeypatch.setattr(selection, "EXACT_MAX", int(0.002 * N))
    subset = np.sort(np.random.default_rng(2).choice(ids, int(share * N), replace=False))
    gt_D, gt_I = truth(xb, xq, ids, subset)
    D, I, chosen = search_among(ivf, xq, K, subset, lookup(xb, ids))
    assert chosen == plan
    assert np.isin(I[I >= 0], subset).all()  # nothing outside the filter, ever
    assert recall(I, gt_I) >= bound
    assert (I >= 0).sum(axis=1).min() == K  # never short: k results when k match


def test_no_match_and_fewer_than_k():
    xb = np.eye(4, 8, dtype=np.float32)
    index = AnnIndex.build(xb, np.arange(4, dtype=np.int64), AnnSpec("flat", 8))
    D, I, _ = search_among(index, xb[:1], 3, np.array([], np.int64), lambda i: xb[i])
    assert (I == -1).all() and np.isneginf(D).all()
    D, I, _ = search_among(index, xb[:1], 3, np.array([2], np.int64), lambda i: xb[i])
    assert I.tolist() == [[2, -1, -1]]


def test_rarer_matches_probe_more_lists():
    assert probes_for(64, 1.0, 2048) == 64
    assert probes_for(64, 0.25, 2048) == 256
    assert probes_for(64, 0.001, 2048) == 2048
    assert probes_for(4, 0.001, 2048) == 4 * selection.PROBE_BOOST_MAX
    assert probes_for(64, 0.001, 100) == 100


@pytest.fixture(scope="module")
def bursts():
    """Bursts of near-identical shots (25 of ~400, spread 0.03) under coarse 4-byte codes: the codes
    can't order a burst, so its true top 10 lie anywhere in its first few hundred candidates."""
    rng = np.random.default_rng(3)
    n, d = 10_000, 32
    centres = rng.standard_normal((25, d)).astype(np.float32)
    x = centres[rng.integers(0, 25, n + NQ)] + 0.03 * rng.standard_normal((n + NQ, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.arange(n, dtype=np.int64) * 3 + 1
    return x[:n], x[n:], ids, AnnIndex.build(x[:n], ids, AnnSpec("ivfpq", d, 32, 4, 8, 5000, 4))


def test_filtered_search_reranks_as_deep_as_unfiltered(bursts):
    """Half the vectors match: RERANK_FACTOR x k candidates found 0.51 of the true top 10 here, an
    adaptive depth that stopped where the codes had underrated the candidates seen 0.81; the depth
    of an unfiltered search (MAX_DEPTH) finds them all."""
    xb, xq, ids, ivf = bursts
    subset = np.sort(np.random.default_rng(4).choice(ids, len(ids) // 2, replace=False))
    _, gt_I = truth(xb, xq, ids, subset)
    D, I, plan = search_among(ivf, xq, K, subset, lookup(xb, ids))
    assert plan == SELECTOR and np.isin(I, subset).all()
    assert recall(I, gt_I) >= 0.98
    exact = np.take_along_axis(xq @ xb.T, np.searchsorted(ids, I), axis=1)
    np.testing.assert_allclose(D, exact, rtol=1e-5, atol=1e-6)  # exact scores, not code scores
    D1, I1, _ = search_among(ivf, xq, K, subset, lookup(xb, ids), depth=RERANK_FACTOR * K * 40)
    assert recall(I1, gt_I) >= 0.99  # asked for more candidates, it takes them
