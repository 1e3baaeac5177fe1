"""The sharded ANN build (train once, add in shards, merge) against a single build of the same vectors."""

from __future__ import annotations

import numpy as np
import pytest

from clipsearch import AnnIndex, AnnSpec, choose_spec
from clipsearch.ann.shards import add_shard, merge, sample_positions, scale_spec, train

SPEC = AnnSpec("ivfpq", 32, nlist=32, m=4, nbits=8, train_size=10_000, nprobe=4)
N = 12_000


pytestmark = pytest.mark.usefixtures("faiss_one_thread")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(50, 32))
    xb = (centres[rng.integers(0, 50, N)] + 0.3 * rng.normal(size=(N, 32))).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    ids = rng.permutation(100_000)[:N].astype(np.int64)  # ids from a table: sparse, unordered
    xq = xb[rng.integers(0, N, 50)] + 0.05 * rng.normal(size=(50, 32)).astype(np.float32)
    return ids, xb, xq.astype(np.float32)


def _shards(ids, xb, n):
    cuts = np.array_split(np.arange(len(ids)), n)
    return [lambda c=c: (ids[c], xb[c]) for c in cuts]


def _same_results(a: AnnIndex, b: AnnIndex, xq, nprobe):
    Da, Ia = a.search(xq, 10, nprobe)
    Db, Ib = b.search(xq, 10, nprobe)
    np.testing.assert_allclose(Da, Db, rtol=0, atol=1e-5)
    for ra, rb, da in zip(Ia, Ib, Da):  # ties may swap places: compare as sets per distinct score
        assert sorted(ra[da > da[-1] + 1e-5]) == sorted(rb[da > da[-1] + 1e-5])


@pytest.mark.parametrize("n_shards", [1, 3])
def test_sharded_build_equals_single_build(data, n_shards):
    """train -> add_shard per shard -> merge, as indexer/ray_ann.py runs them on Ray tasks."""
    ids, xb, xq = data
    single = AnnIndex.build(xb, ids, SPEC)
    xt = xb[sample_positions(len(xb), SPEC)]
    trained = train(SPEC, xt)
    sharded = merge(trained, [add_shard(trained, s) for s in _shards(ids, xb, n_shards)], SPEC, len(xt))
    assert len(sharded) == len(single) == len(xb) and sharded.trained_on == single.trained_on
    _same_results(single, sharded, xq, nprobe=SPEC.nlist)  # exhaustive: exactly the same
    _same_results(single, sharded, xq, nprobe=SPEC.nprobe)  # same lists, so the same at any nprobe


def test_scale_spec_follows_the_faiss_guidelines():
    assert scale_spec(5_000_000, 512) == choose_spec(5_000_000, 512)  # measured sizes below 10M
    assert scale_spec(50_000_000, 512).factory() == "IVF262144_HNSW32,PQ64"
    assert scale_spec(100_000_000, 512).nlist == 262_144
    assert scale_spec(1_000_000_000, 512).factory() == "IVF1048576_HNSW32,PQ64"
    assert scale_spec(1_000_000_000, 512).train_size == 64 * 1_048_576
