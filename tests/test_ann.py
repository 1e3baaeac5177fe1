"""clipsearch.ann (spec, index, the exact re-rank) checked against exact (numpy) search on seeded
Gaussian-mixture data."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from clipsearch.ann import spec as annspec
from clipsearch.ann.index import AnnIndex
from clipsearch.ann.refine import RERANK_FACTOR, rerank
from clipsearch.ann.spec import AnnSpec, choose_spec, outgrown
from clipsearch.errors import IndexDirError, InputError


def mixture(n, d=64, nc=40, spread=0.6, seed=0):
    """(n, d) float32, L2-normalised: uneven clusters, spectrum decaying like CLIP embeddings."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(np.arange(1, d + 1))
    centres = rng.standard_normal((nc, d)) * scale
    w = rng.lognormal(0.0, 1.0, nc)
    x = centres[rng.choice(nc, n, p=w / w.sum())] + spread * rng.standard_normal((n, d)) * scale
    x = (x @ np.linalg.qr(rng.standard_normal((d, d)))[0]).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(xq, xb, ids, k):
    """Exact D, I by inner product in numpy."""
    S = xq @ xb.T
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(S, order, axis=1), ids[order]


def recall(I, gt):
    return np.mean([len(np.intersect1d(a, b)) / gt.shape[1] for a, b in zip(I, gt)])


def lookup_for(xb, ids):
    row = {int(i): r for r, i in enumerate(ids)}
    return lambda want: xb[[row[int(i)] for i in want]]


pytestmark = pytest.mark.usefixtures("faiss_one_thread")


@pytest.fixture(scope="module")
def data():
    """xb, ids (not row numbers), xq held out from the same mixture."""
    x = mixture(20_100, d=128)
    ids = 1_000_000 + 7 * np.arange(20_000, dtype=np.int64)
    return x[:20_000], ids, x[20_000:]


@pytest.fixture(scope="module")
def ivfpq(data):
    xb, ids, _ = data
    spec = AnnSpec("ivfpq", 128, nlist=64, m=16, train_size=8192, nprobe=16)
    return AnnIndex.build(xb, ids, spec)


def test_flat_equals_brute_force(data):
    xb, ids, xq = data
    index = AnnIndex.build(xb[:5000], ids[:5000], AnnSpec("flat", 128))
    D, I = index.search(xq, 10)
    D0, I0 = brute_force(xq, xb[:5000], ids[:5000], 10)
    np.testing.assert_array_equal(I, I0)
    np.testing.assert_allclose(D, D0, atol=1e-5)


@pytest.mark.parametrize("n", [10, 1000])
def test_small_collections_are_flat_and_pad(n):
    xb, xq = mixture(n + 5, d=64)[:n], mixture(5, d=64, seed=1)
    ids = np.arange(n, dtype=np.int64) * 3
    index = AnnIndex.build(xb, ids)
    assert index.spec.kind == "flat" and index.spec.describe() == "Flat (exact)"
    assert len(index) == n and index.trained_on == 0
    k = n + 5 if n < 100 else 10
    D, I = index.search(xq, k)
    assert D.shape == I.shape == (5, k) and D.dtype == np.float32 and I.dtype == np.int64
    D0, I0 = brute_force(xq, xb, ids, min(k, n))
    np.testing.assert_array_equal(I[:, : min(k, n)], I0)
    np.testing.assert_allclose(D[:, : min(k, n)], D0, atol=1e-5)
    assert (I[:, n:] == -1).all() and np.isneginf(D[:, n:]).all()


def test_ivfpq_rerank_recall_above_bound(data, ivfpq):
    xb, ids, xq = data
    _, gt = brute_force(xq, xb, ids, 10)
    _, I_raw = ivfpq.search(xq, 10)
    _, C = ivfpq.search(xq, RERANK_FACTOR * 10)
    D, I, _ = rerank(xq, C, lookup_for(xb, ids), 10)
    assert recall(I, gt) >= 0.9
    assert recall(I, gt) >= recall(I_raw, gt)
    assert (np.diff(D, axis=1) <= 0).all()


def test_exhaustive_probe_with_rerank_is_exact():
    """With nprobe = nlist the index scores every vector up to a PQ error eps that we measure; when
    the kc-th approximate score is below (true k-th score - eps), the true top-k are among the kc
    candidates, so re-ranking them must give exactly the brute-force result."""
    x = mixture(3040, d=64, seed=2)
    xb, xq, ids = x[:3000], x[3000:], np.arange(3000, dtype=np.int64) + 5
    spec = AnnSpec("ivfpq", 64, nlist=16, m=32, train_size=3000, nprobe=16)
    index = AnnIndex.build(xb, ids, spec)
    k, kc = 10, 300
    A, J = index.search(xq, len(xb), nprobe=spec.nlist)  # every vector's approximate score
    assert (np.sort(J, axis=1) == ids).all()
    exact = np.take_along_axis(xq @ xb.T, J - 5, axis=1)
    eps = np.abs(A - exact).max(axis=1)
    D0, I0 = brute_force(xq, xb, ids, k)
    assert (A[:, kc - 1] < D0[:, k - 1] - eps).all(), "candidate set not provably large enough"
    _, C = index.search(xq, kc, nprobe=spec.nlist)
    D, I, _ = rerank(xq, C, lookup_for(xb, ids), k)
    np.testing.assert_array_equal(I, I0)
    np.testing.assert_allclose(D, D0, atol=1e-5)


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_add_is_searchable_without_retraining(data, kind):
    xb, ids, _ = data
    spec = AnnSpec("flat", 128) if kind == "flat" else AnnSpec("ivfpq", 128, 32, 16, 8, 4096, 8)
    index = AnnIndex.build(xb[:8000], ids[:8000], spec)
    trained_on = index.trained_on
    index.add(xb[8000:9000], ids[8000:9000])
    assert len(index) == 9000 and index.trained_on == trained_on
    _, C = index.search(xb[8000:9000], 40)
    _, I, _ = rerank(xb[8000:9000], C, lookup_for(xb, ids), 1)
    assert (I[:, 0] == ids[8000:9000]).mean() >= 0.99


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_remove(data, kind):
    xb, ids, _ = data
    spec = AnnSpec("flat", 128) if kind == "flat" else AnnSpec("ivfpq", 128, 16, 16, 8, 3000, 16)
    index = AnnIndex.build(xb[:3000], ids[:3000], spec)
    gone = ids[:3000:2]
    assert index.remove(gone) == len(gone)
    assert len(index) == 3000 - len(gone)
    _, I = index.search(xb[:100], 50)
    assert not np.isin(I, gone).any()
    assert np.isin(I[I >= 0], ids[1:3000:2]).all()


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_save_load_round_trip(data, ivfpq, tmp_path, kind):
    xb, ids, xq = data
    index = (
        ivfpq if kind == "ivfpq" else AnnIndex.build(xb[:2000], ids[:2000], AnnSpec("flat", 128))
    )
    index.save(tmp_path / "ann.bin")
    index.save(tmp_path / "ann.bin")  # overwriting is atomic too
    assert os.listdir(tmp_path) == ["ann.bin"]
    back = AnnIndex.load(tmp_path / "ann.bin")
    assert back.spec == index.spec and back.trained_on == index.trained_on
    assert len(back) == len(index)
    for a, b in zip(index.search(xq, 20), back.search(xq, 20)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("damage", ["missing", "truncated", "flipped", "garbage", "empty"])
def test_load_damaged_file_raises(data, tmp_path, damage):
    xb, ids, _ = data
    path = tmp_path / "ann.bin"
    AnnIndex.build(xb[:500], ids[:500], AnnSpec("flat", 128)).save(path)
    blob = path.read_bytes()
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "flipped":
        path.write_bytes(blob[:-100] + bytes([blob[-100] ^ 0xFF]) + blob[-99:])
    else:
        path.write_bytes(b"not an index" * 10 if damage == "garbage" else b"")
    with pytest.raises(IndexDirError, match=r"ann\.bin"):
        AnnIndex.load(path)


def test_choose_spec_flat_below_threshold():
    for n in (0, 10, 1000, annspec.FLAT_MAX):
        assert choose_spec(n, 512) == AnnSpec("flat", 512)
    assert choose_spec(annspec.FLAT_MAX + 1, 512).kind == "ivfpq"


@pytest.mark.parametrize("n", [annspec.FLAT_MAX + 1, 100_000, 300_000, 1_000_000, 4_000_000, 10**7])
def test_choose_spec_ivfpq_sizes(n):
    spec = choose_spec(n, 512)
    assert spec.kind == "ivfpq" and spec.nbits == 4 and spec.fast_scan and spec.factory().endswith("fs")
    assert 2 ** round(math.log2(spec.nlist)) == spec.nlist
    assert 4 * math.sqrt(n) / 2 <= spec.nlist <= 4 * math.sqrt(n) * 1.5
    assert spec.m == 128 and spec.code_bytes() == 64  # 64 bytes a vector, as PQ64 with 8 bits
    assert min(n, 30 * spec.nlist) <= spec.train_size <= min(n, 256 * spec.nlist)
    assert 1 <= spec.nprobe <= spec.nlist
    visited = spec.nprobe * n / spec.nlist  # vectors a query's probes visit, about
    assert annspec.NPROBE_VISIT <= visited <= annspec.NPROBE_CODES_MAX  # enough for recall, in the time budget
    assert spec.describe() == f"{spec.factory()} (nprobe {spec.nprobe})"
    assert AnnSpec.from_dict(spec.to_dict()) == spec


def test_choose_spec_nlist_grows_with_n():
    nlists = [choose_spec(n, 512).nlist for n in (10**5, 10**6, 10**7, 10**8)]
    assert nlists == sorted(nlists) and nlists[-1] >= 16 * nlists[0]


@pytest.mark.parametrize("budget", [10**8, 5 * 10**7, 2 * 10**7])
def test_choose_spec_respects_memory_budget(budget):
    free = choose_spec(10**6, 512)
    spec = choose_spec(10**6, 512, memory_budget=budget)
    assert annspec.estimate_bytes(spec, 10**6) <= budget
    assert spec.m <= free.m and 512 % spec.m == 0
    with pytest.raises(InputError, match="budget"):
        choose_spec(10**6, 512, memory_budget=10**6)
    small = choose_spec(20_000, 512, memory_budget=budget // 10)
    assert annspec.estimate_bytes(small, 20_000) <= budget // 10


def test_outgrown():
    flat = choose_spec(1000, 512)
    assert not outgrown(flat, annspec.FLAT_MAX) and outgrown(flat, annspec.FLAT_MAX + 1)
    ivf = choose_spec(100_000, 512)
    assert not outgrown(ivf, 100_000) and not outgrown(ivf, 500_000)
    assert outgrown(ivf, 5_000_000)  # nlist would be 4x
    assert outgrown(ivf, annspec.FLAT_MAX // 4) and not outgrown(ivf, annspec.FLAT_MAX - 1)


@pytest.mark.parametrize("nq", [1, 7])
def test_rerank_of_every_vector_is_brute_force(data, nq):
    """The one exact re-rank, handed every vector as a candidate (shuffled, -1 padded): its top k are
    numpy's exact top k, the same ids in the same order, and S holds every candidate's exact score."""
    xb, ids, xq = data
    xb, ids = xb[:3000], ids[:3000]
    rng = np.random.default_rng(5)
    C = np.stack([np.concatenate([rng.permutation(ids), np.full(7, -1)]) for _ in range(nq)])
    rng.shuffle(C, axis=1)
    D, I, S = rerank(xq[:nq], C, lookup_for(xb, ids), 25)
    D0, I0 = brute_force(xq[:nq], xb, ids, 25)
    np.testing.assert_array_equal(I, I0)
    np.testing.assert_allclose(D, D0, rtol=0, atol=1e-6)
    row = {int(i): r for r, i in enumerate(ids)}
    exact = np.array([[xb[row[int(c)]] @ q if c >= 0 else -np.inf for c in cs] for q, cs in zip(xq[:nq], C)])
    np.testing.assert_allclose(S, exact, rtol=0, atol=1e-6)


def test_rerank_pads_and_skips_missing():
    xb = mixture(50, d=16)
    cand = np.array([[3, -1, 7, 1], [-1, -1, -1, -1]], dtype=np.int64)
    seen = []
    D, I, S = rerank(xb[:2], cand, lambda ids: seen.append(ids) or xb[ids], 6)
    np.testing.assert_array_equal(seen[0], [1, 3, 7])
    order = np.argsort(-(xb[[3, 7, 1]] @ xb[0]))
    np.testing.assert_array_equal(I[0], [*np.array([3, 7, 1])[order], -1, -1, -1])
    assert (I[1] == -1).all() and np.isneginf(D[1]).all() and np.isneginf(D[0, 3:]).all()
    np.testing.assert_array_equal(np.isneginf(S), cand < 0)  # every candidate scored, padding -inf


def test_hnsw_coarse_quantizer(data, monkeypatch, tmp_path):
    """Large nlist switches to an HNSW coarse quantizer; same API, recall and round trip."""
    xb, ids, xq = data
    monkeypatch.setattr(annspec, "HNSW_NLIST", 64)
    spec = AnnSpec("ivfpq", 128, nlist=64, m=16, train_size=8192, nprobe=16)
    assert spec.factory() == "IVF64_HNSW32,PQ16"
    index = AnnIndex.build(xb, ids, spec)
    _, C = index.search(xq, 100)
    _, I, _ = rerank(xq, C, lookup_for(xb, ids), 10)
    assert recall(I, brute_force(xq, xb, ids, 10)[1]) >= 0.9
    index.save(tmp_path / "ann.bin")
    np.testing.assert_array_equal(AnnIndex.load(tmp_path / "ann.bin").search(xq, 100)[1], C)


def test_bad_shapes_raise(ivfpq):
    with pytest.raises(InputError):
        ivfpq.search(np.zeros((2, 64), np.float32), 10)
    with pytest.raises(InputError):
        ivfpq.add(np.zeros((2, 128), np.float32), np.arange(3))
    with pytest.raises(InputError, match="too few"):
        AnnIndex.build(mixture(100, d=128), np.arange(100), AnnSpec("ivfpq", 128, 64, 16, 8, 0, 8))
    with pytest.raises(InputError, match="invalid"):
        AnnSpec("ivfpq", 128, nlist=64, m=48)  # 128 is not a multiple of 48
    with pytest.raises(InputError, match="invalid"):
        AnnSpec.from_dict({"kind": "hnsw", "dim": 128})


@pytest.mark.gpu
def test_gpu_build_matches_cpu_recall(data):
    faiss = pytest.importorskip("faiss")
    if faiss.get_num_gpus() == 0:
        pytest.skip("no GPU")
    xb, ids, xq = data
    index = AnnIndex.build(xb, ids, AnnSpec("ivfpq", 128, 64, 16, 8, 8192, 16))
    _, C = index.search(np.repeat(xq, 3, axis=0), 100)  # big batch: searched on the GPU
    _, I, _ = rerank(np.repeat(xq, 3, axis=0), C, lookup_for(xb, ids), 10)
    assert recall(I[: len(xq)], brute_force(xq, xb, ids, 10)[1]) >= 0.9
