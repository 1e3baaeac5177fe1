"""The LanceDB tables, for real, on tmp_path, written through the images collection of an index."""

import numpy as np

from clipsearch import ModelIdentity, create_index, open_index
from clipsearch.store.records import Row


def _images(tmp_path, dim=8):
    return create_index(tmp_path / "idx", ModelIdentity("m", "w", dim)).images


def _rows(n, start=0):
    return [Row(-1, f"/p/{start + i}.jpg", 100 + i, 1.5 + i, 640, 480) for i in range(n)]


def _unit(n, dim=8, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_rows_and_vectors_stay_together(tmp_path):
    images = _images(tmp_path)
    xb = _unit(5)
    assert images.add(_rows(5), xb).tolist() == [0, 1, 2, 3, 4]  # ids assigned in order
    ids, got = images.vectors()
    order = np.argsort(ids)
    np.testing.assert_array_equal(ids[order], np.arange(5))
    np.testing.assert_array_equal(got[order], xb)
    assert images.rows([3])[3] == Row(3, "/p/3.jpg", 103, 4.5, 640, 480)


def test_vectors_by_id_and_delete(tmp_path):
    images = _images(tmp_path)
    xb = _unit(6)
    images.add(_rows(6), xb)
    images.remove([1, 4])
    assert len(images) == 4 and images.table.max_id() == 5
    ids, got = images.vectors([5, 0, 4])
    assert sorted(ids.tolist()) == [0, 5]
    np.testing.assert_array_equal(got[ids.tolist().index(5)], xb[5])
    np.testing.assert_array_equal(images.vectors_of([4, 5, 0]), np.stack([np.zeros(8), xb[5], xb[0]]))


def test_lookups_by_id_after_deletes_and_compaction(tmp_path):
    """The BTREE index on id answers lookups that must see deletes, and survives compaction."""
    images = _images(tmp_path)
    xb = _unit(300, seed=1)
    for s in range(0, 300, 50):  # six commits: six fragments
        images.add(_rows(50, start=s), xb[s:s + 50])
    images.sync()  # builds the id index
    gone = list(range(0, 300, 7))
    images.remove(gone)
    images.add(_rows(10, start=300), _unit(10, seed=2))  # rows the id index hasn't seen yet
    kept = [i for i in range(300) if i not in gone]
    assert set(images.rows(list(range(310)))) == set(kept) | set(range(300, 310))
    images.compact()
    reader = open_index(tmp_path / "idx")
    assert [list(i.columns) for i in reader.images.table._t.list_indices()] == [["id"]]
    np.testing.assert_array_equal(reader.images.vectors_of(kept[::5]), xb[kept[::5]])
    assert reader.images.rows(gone) == {} and reader.images.rows([305])[305].path == "/p/305.jpg"


def test_each_add_is_one_new_version_and_reopen_sees_it(tmp_path):
    images = _images(tmp_path)
    v0 = images.version
    images.add(_rows(2), _unit(2))
    images.add(_rows(2, start=2), _unit(2, seed=1))
    assert images.version == v0 + 2
    again = open_index(tmp_path / "idx").images
    assert len(again) == 4 and again.version == images.version
    images.compact()
    assert len(open_index(tmp_path / "idx").images) == 4


def test_empty_table_reads(tmp_path):
    images = _images(tmp_path)
    ids, xb = images.vectors()
    assert ids.shape == (0,) and xb.shape == (0, 8) and images.table.max_id() == -1 and images.all_rows() == []
