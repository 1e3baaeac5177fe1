"""The index's ANN side: IVF-PQ with exact re-rank, incremental adds, rebuild when outgrown."""

import shutil

import numpy as np
import pytest

from clipsearch import ModelIdentity, create_index, open_index
from clipsearch.ann import catalog
from clipsearch.ann import spec as annspec
from clipsearch.store.records import Row

DIM = 16
N = 10_000  # just above what IVF-PQ needs to train (39 x 256)


def _mixture(n, seed=0, centres=64):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, DIM)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + 0.35 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _rows(n, start=0):
    return [Row(-1, f"/p/{start + i}.jpg", 1, 0.0, 1, 1) for i in range(n)]


@pytest.fixture(scope="module")
def small_flat_max():
    # IVF-PQ from 1,000 vectors on, so a test-sized collection takes the approximate path.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(annspec, "FLAT_MAX", 1000)
        yield


@pytest.fixture(scope="module")
def ivf(tmp_path_factory, small_flat_max):
    """An IVF-PQ index of N mixture vectors (built once: training is the slow part)."""
    xb = _mixture(N)
    return _index(tmp_path_factory.mktemp("ivf"), xb), xb


def _index(tmp_path, xb):
    index = create_index(tmp_path / "idx", ModelIdentity("m", "w", DIM))
    index.images.add(_rows(len(xb)), xb)
    index.images.sync()
    return index


def test_ivfpq_with_rerank_returns_exact_scores_and_high_recall(ivf):
    index, xb = ivf
    assert index.images.ann().spec.kind == "ivfpq"
    xq = _mixture(50, seed=1)
    hits = index.images.search(xq, 10)
    truth = np.argsort(-(xq @ xb.T), axis=1)[:, :10]
    found = [[int(h.path[3:-4]) for h in row] for row in hits]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
    assert recall >= 0.9
    for q, row in zip(xq, hits):  # re-ranked: every score is the exact inner product, sorted
        exact = [float(xb[int(h.path[3:-4])] @ q) for h in row]
        np.testing.assert_allclose([h.score for h in row], exact, rtol=1e-5, atol=1e-6)
        assert exact == sorted(exact, reverse=True)


def test_exhaustive_probe_with_full_rerank_equals_brute_force(ivf):
    index, xb = ivf
    nlist = index.images.ann().spec.nlist
    xq = _mixture(10, seed=2)
    # nprobe = nlist visits every list; re-ranking every vector makes the answer exact.
    hits = index.images.search(xq, 5, nprobe=nlist, rerank=len(xb) // 5)
    truth = np.argsort(-(xq @ xb.T), axis=1)[:, :5]
    assert [[int(h.path[3:-4]) for h in row] for row in hits] == truth.tolist()


def test_adds_go_into_the_trained_index_without_retraining(ivf, tmp_path):
    shutil.copytree(ivf[0].root, tmp_path / "copy")
    index = open_index(tmp_path / "copy", writable=True)
    trained = (index.images.ann().spec, index.images.ann().trained_on)
    extra = _mixture(200, seed=3)
    index.images.add(_rows(200, start=N), extra)
    assert index.images.sync() is None
    again = open_index(index.root)
    assert (again.images.ann().spec, again.images.ann().trained_on) == trained
    assert again.images.search(extra[:1], 1)[0][0].path == f"/p/{N}.jpg"


def test_outgrown_index_is_rebuilt_and_says_so(tmp_path, small_flat_max):
    index = _index(tmp_path, _mixture(500))
    assert index.images.ann().spec.kind == "flat"
    index.images.add(_rows(N - 500, start=500), _mixture(N - 500, seed=4))
    note = index.images.sync()
    assert note and "rebuilt" in note and index.images.ann().spec.kind == "ivfpq"
    assert index.images.notes == [note]  # what `clipsearch index` prints after its summary
    saved = catalog.read(index.images.ann_folder)  # committed for this very table version
    assert saved.spec["kind"] == "ivfpq" and saved.generation == index.images.version


def test_removed_rows_leave_the_ann_index(tmp_path):
    xb = _mixture(100)
    index = _index(tmp_path, xb)
    index.images.remove([0])
    index.images.sync()
    assert open_index(index.root).images.search(xb[:1], 1)[0][0].path != "/p/0.jpg"
    assert len(open_index(index.root).images.ann()) == 99
