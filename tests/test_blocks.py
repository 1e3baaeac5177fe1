"""Fast-scan lists (clipsearch/ann/blocks.py): codes encoded and packed here search exactly as
faiss's own fast-scan index; lists written, mapped, stacked and merged find every row they hold,
with or without a selector, and never a block's unused place; an index written with 8-bit codes
is trained into fast-scan ones by `optimize`."""

from __future__ import annotations

import numpy as np
import pytest

from clipsearch.ann import blocks, lists
from clipsearch.ann import spec as annspec
from clipsearch.ann.segments import Segments
from clipsearch.ann.spec import AnnSpec

DIM = 16


def _unit(n, seed):
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def trained(tmp_path, faiss_one_thread):
    spec = AnnSpec("ivfpq", DIM, nlist=32, m=4, nbits=4, train_size=4000, nprobe=8)
    assert spec.fast_scan and spec.factory() == "IVF32,PQ4x4fs"
    lists.save_trained(tmp_path / "q.faiss", lists.train(spec, _unit(4000, 0)))
    return lists.Quantizer(tmp_path / "q.faiss")


def test_codes_packed_here_search_as_faiss_own(trained, tmp_path):
    import faiss

    xb, xq = _unit(3000, 1), _unit(20, 2)
    own = faiss.clone_index(trained.index)
    own.add_with_ids(xb, np.arange(3000))
    trained.write(tmp_path / "a.ivf", [(np.arange(1000), xb[:1000], None), (np.arange(1000, 3000), xb[1000:], None)])
    stack = lists.Stack(tmp_path / "q.faiss", [tmp_path / "a.ivf"])
    for nprobe, k in ((4, 10), (32, 3500)):
        D1, I1 = own.search(xq, k, params=faiss.SearchParametersIVF(nprobe=nprobe))
        D2, I2 = stack.search(xq, k, nprobe)
        np.testing.assert_array_equal(np.where(I2 >= 0, I2, -1), np.where(np.isinf(D2), -1, I1))
        np.testing.assert_allclose(D2[I2 >= 0], D1[I2 >= 0])


def test_stacked_and_merged_lists_find_every_row_and_no_padding(trained, tmp_path):
    import faiss

    xb, xq = _unit(5000, 3), _unit(5, 4)
    trained.write(tmp_path / "a.ivf", [(np.arange(3000), xb[:3000], None)])
    trained.write(tmp_path / "b.ivf", [(np.arange(3000, 5000), xb[3000:], None)])
    dead = np.arange(0, 5000, 7)
    bitmap, _ = lists.bitmap_selector(dead)
    not_dead = faiss.IDSelectorNot(bitmap)  # lets -1 through: the stack must keep padding out
    stack = lists.Stack(tmp_path / "q.faiss", [tmp_path / "a.ivf", tmp_path / "b.ivf"])
    _, I = stack.search(xq, 6000, 32)
    assert sorted(I[0][I[0] >= 0]) == list(range(5000)) and np.all(I[:, 5000:] == -1)
    live = 5000 - len(dead)
    _, I = stack.search(xq, live, 32, not_dead)  # padding let through would take places in the top k
    assert sorted(I[0][I[0] >= 0]) == sorted(set(range(5000)) - set(dead.tolist()))
    relabel = np.arange(3000)
    relabel[dead[dead < 3000]] = -1
    lists.merge(tmp_path / "m.ivf", tmp_path / "q.faiss", [(tmp_path / "a.ivf", 0, relabel),
                                                        (tmp_path / "b.ivf", 3000, np.arange(3000, 5000))])
    merged = lists.Stack(tmp_path / "q.faiss", [tmp_path / "m.ivf"])
    D1, I1 = merged.search(xq, 6000, 32)
    D2, I2 = stack.search(xq, 6000, 32)
    assert merged.index.ntotal == 5000 - len(dead[dead < 3000])
    keep = set(range(5000)) - set(dead[dead < 3000].tolist())
    for q in range(len(xq)):
        want = {i: d for i, d in zip(I2[q].tolist(), D2[q].tolist()) if i in keep}
        got = {i: d for i, d in zip(I1[q].tolist(), D1[q].tolist()) if i >= 0}
        assert set(got) == set(want) and all(abs(got[i] - want[i]) < 1e-5 for i in got)
    assign = lists.assignment(tmp_path / "m.ivf", 0, 5000)
    assert sorted(np.flatnonzero(assign >= 0).tolist()) == sorted(keep)


def test_an_index_of_8_bit_codes_still_searches_and_optimize_makes_it_fast_scan(tmp_path, monkeypatch, faiss_one_thread):
    monkeypatch.setattr(annspec, "FLAT_MAX", 1000)
    monkeypatch.setattr(annspec, "NBITS", 8)  # as indexes were built before fast-scan
    xb, xq = _unit(12_000, 5), _unit(10, 6)
    segs = Segments.create(tmp_path / "x.ann", DIM)
    import pyarrow as pa

    segs.add(np.arange(12_000), xb, pa.table({"id": np.arange(12_000)}))
    segs.sync(1, "a")
    assert segs.spec.nbits == 8 and not segs.spec.fast_scan
    truth = np.argsort(-(xq @ xb.T), axis=1)[:, :10]
    old = Segments.open(segs.folder)
    np.testing.assert_array_equal(old.search_exact(xq, 10, nprobe=old.spec.nlist, depth=12_000)[1], truth)
    monkeypatch.setattr(annspec, "NBITS", 4)
    assert old.optimize(2, "b").startswith("rebuilt")
    new = Segments.open(segs.folder)
    assert new.spec.fast_scan and blocks.packer(new.lists().index) is not None
    np.testing.assert_array_equal(new.search_exact(xq, 10, nprobe=new.spec.nlist, depth=12_000)[1], truth)
