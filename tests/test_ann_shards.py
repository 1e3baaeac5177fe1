"""The sharded ANN build (train once, a segment per shard, adopted and merged) against a single build
of the same vectors."""

from __future__ import annotations

import numpy as np
import pytest

from dataclasses import replace

import pyarrow as pa

from clipsearch import AnnIndex, AnnSpec, choose_spec
from clipsearch.ann import compaction
from clipsearch.ann.segments import Segments
from clipsearch.ann.shards import plan, sample_positions, scale_spec, write_segment

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


def _same_results(a, b, xq, nprobe):
    Da, Ia = a.search(xq, 10, nprobe)
    Db, Ib = b.search(xq, 10, nprobe)
    np.testing.assert_allclose(Da, Db, rtol=0, atol=1e-5)
    for ra, rb, da in zip(Ia, Ib, Da):  # ties may swap places: compare as sets per distinct score
        assert sorted(ra[da > da[-1] + 1e-5]) == sorted(rb[da > da[-1] + 1e-5])


@pytest.mark.parametrize("n_shards", [1, 3])
def test_sharded_build_equals_single_build(data, n_shards, tmp_path):
    """plan -> write_segment per shard -> adopt -> sync, as indexer/ray_ann.py runs them on Ray tasks."""
    ids, xb, xq = data
    single = AnnIndex.build(xb, ids, SPEC)
    segs = Segments.create(tmp_path / "images.ann", 32)
    cuts = np.array_split(np.arange(len(ids)), n_shards)
    catalog, jobs = plan(segs.folder, segs.catalog, SPEC, xb[sample_positions(len(xb), SPEC)], [len(c) for c in cuts])
    parts = [write_segment(job, ids[c], xb[c], pa.table({"id": ids[c], "text": ids[c].astype(str)}))
             for job, c in zip(jobs, cuts)]  # shards' rows in any order
    segs.adopt(replace(catalog, parts=tuple(parts)))
    assert len(segs.segments) == n_shards and len(segs) == len(single) == len(xb)
    assert segs.trained_on == single.trained_on
    for merged in (False, True):  # the shards searched together, then merged into one segment
        _same_results(single, segs, xq, nprobe=SPEC.nlist)  # exhaustive: exactly the same
        _same_results(single, segs, xq, nprobe=SPEC.nprobe)  # same lists, so the same at any nprobe
        compaction.tidy(segs, everything=True)  # lists renumbered, not encoded again
    assert len(segs.segments) == 1 and segs.records_of(ids[:1]) == [{"id": ids[0], "text": str(ids[0])}]


def test_scale_spec_follows_the_faiss_guidelines():
    assert scale_spec(5_000_000, 512) == choose_spec(5_000_000, 512)  # measured sizes below 10M
    assert scale_spec(50_000_000, 512).factory() == "IVF262144_HNSW32,PQ64"
    assert scale_spec(100_000_000, 512).nlist == 262_144
    assert scale_spec(1_000_000_000, 512).factory() == "IVF1048576_HNSW32,PQ64"
    assert scale_spec(1_000_000_000, 512).train_size == 64 * 1_048_576
