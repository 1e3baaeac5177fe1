"""The LanceDB store, for real, on tmp_path."""

import numpy as np

from clipsearch.store import ImageTable, Row, Store


def _table(tmp_path, dim=8):
    return ImageTable(Store(tmp_path / "lance").table("images", dim))


def _rows(n, start=0):
    return [Row(start + i, f"/p/{start + i}.jpg", 100 + i, 1.5 + i, 640, 480) for i in range(n)]


def _unit(n, dim=8, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_rows_and_vectors_stay_together(tmp_path):
    t = _table(tmp_path)
    xb = _unit(5)
    t.add(_rows(5), xb)
    ids, got = t.vectors()
    order = np.argsort(ids)
    np.testing.assert_array_equal(ids[order], np.arange(5))
    np.testing.assert_array_equal(got[order], xb)
    assert t.rows([3])[3] == Row(3, "/p/3.jpg", 103, 4.5, 640, 480)


def test_vectors_by_id_and_delete(tmp_path):
    t = _table(tmp_path)
    xb = _unit(6)
    t.add(_rows(6), xb)
    t.delete_ids([1, 4])
    assert len(t) == 4 and t.max_id() == 5
    ids, got = t.vectors([5, 0, 4])
    assert sorted(ids.tolist()) == [0, 5]
    np.testing.assert_array_equal(got[ids.tolist().index(5)], xb[5])


def test_each_add_is_one_new_version_and_reopen_sees_it(tmp_path):
    t = _table(tmp_path)
    v0 = t.version
    t.add(_rows(2), _unit(2))
    t.add(_rows(2, start=2), _unit(2, seed=1))
    assert t.version == v0 + 2
    again = _table(tmp_path)
    assert len(again) == 4 and again.version == t.version
    t.compact()
    assert len(_table(tmp_path)) == 4


def test_empty_table_reads(tmp_path):
    t = _table(tmp_path)
    ids, xb = t.vectors()
    assert ids.shape == (0,) and xb.shape == (0, 8) and t.max_id() == -1 and t.all_rows() == []
