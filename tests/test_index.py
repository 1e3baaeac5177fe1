"""The index directory: manifest, store and ANN index kept consistent."""

import json

import numpy as np
import pytest

from clipsearch import IndexDirError, ModelError, ModelIdentity, create_index, open_index
from clipsearch.ann import catalog
from clipsearch.store.records import Row

IDENTITY = ModelIdentity("test-arch", "test-weights", 16)


def _unit(n, dim=16, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _filled(tmp_path, n=50):
    index = create_index(tmp_path / "idx", IDENTITY)
    xb = _unit(n)
    index.images.add([Row(-1, f"/photos/{i}.jpg", 1, 0.0, 10, 10) for i in range(n)], xb)
    index.images.sync()
    return index, xb


def test_search_equals_brute_force(tmp_path):
    index, xb = _filled(tmp_path)
    xq = _unit(3, seed=7)
    hits = index.images.search(xq, 5)
    for q, row in zip(xq, hits):
        expected = np.argsort(-(xb @ q))[:5]
        assert [h.path for h in row] == [f"/photos/{i}.jpg" for i in expected]
        np.testing.assert_allclose([h.score for h in row], np.sort(xb @ q)[::-1][:5], rtol=1e-5)


def test_reopen_reads_the_same_index(tmp_path):
    index, xb = _filled(tmp_path)
    again = open_index(index.root)
    assert len(again) == 50 and again.identity == IDENTITY
    assert again.images.search(xb[:1], 1)[0][0].path == "/photos/0.jpg"


def test_other_model_is_refused(tmp_path):
    index, _ = _filled(tmp_path)
    with pytest.raises(ModelError, match="was built with"):
        create_index(index.root, ModelIdentity("other", "w", 16))


def test_newer_schema_is_refused(tmp_path):
    index, _ = _filled(tmp_path)
    path = index.root / "manifest.json"
    d = json.loads(path.read_text())
    d["schema_version"] = 999
    path.write_text(json.dumps(d))
    with pytest.raises(IndexDirError, match="newer clipsearch"):
        open_index(index.root)


def test_stale_ann_is_rebuilt_from_the_table(tmp_path):
    index, xb = _filled(tmp_path)
    # A crash after the table commit but before the ANN write: the table moved on alone.
    index.images.add([Row(-1, "/photos/new.jpg", 1, 0.0, 10, 10)], -xb[:1])
    reader = open_index(index.root)
    assert reader.images.search(-xb[:1], 1)[0][0].path == "/photos/new.jpg"
    writer = open_index(index.root, writable=True)
    assert len(writer.images.ann()) == 51
    writer.images.sync()
    assert catalog.read(writer.images.ann_folder).generation == writer.images.version


@pytest.mark.parametrize("damage", ["catalog.json", ".vec", ".ids", ".rows", "missing .vec"])
def test_damaged_ann_files_are_rebuilt_from_the_table(tmp_path, damage):
    index, xb = _filled(tmp_path)
    folder = index.images.ann_folder
    name = damage.split()[-1]
    victim = folder / name if name == "catalog.json" else next(folder.glob(f"*{name}"))
    if damage.startswith("missing"):
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    assert open_index(index.root).images.search(xb[7:8], 1)[0][0].path == "/photos/7.jpg"
    writer = open_index(index.root, writable=True)
    writer.images.sync()  # the writer commits segments built again from the table
    assert len(open_index(index.root).images.ann()) == 50
    assert open_index(index.root).images.search(xb[9:10], 1)[0][0].path == "/photos/9.jpg"


def test_non_index_directory_is_not_touched(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "keep.txt").write_text("mine")
    with pytest.raises(IndexDirError, match="not a clipsearch index"):
        create_index(tmp_path / "stuff", IDENTITY)
    assert (tmp_path / "stuff" / "keep.txt").read_text() == "mine"


def test_empty_index_searches_to_nothing(tmp_path):
    index = create_index(tmp_path / "idx", IDENTITY)
    assert index.images.search(_unit(1), 5) == [[]]
