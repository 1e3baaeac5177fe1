"""Lookups by id: through the table's BTREE index after deletes and compaction, and through the ANN
segments for readers (records and exact vectors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipsearch import ModelIdentity, create_index, open_index
from clipsearch.ann import spec as annspec
from clipsearch.store.records import Row

FIXTURES = Path(__file__).parent / "fixtures"
DIM = 16


def _unit(n, seed):
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _rows(n, tag):
    return [Row(-1, f"/p/{tag}_{i}.jpg", 1, 0.0, 10 + i, 20 + i) for i in range(n)]


@pytest.fixture
def churned(tmp_path):
    """An index after three commits, deletes across them, a compaction and one more commit."""
    xb = _unit(400, 0)
    index = create_index(tmp_path / "idx", ModelIdentity("m", "w", DIM))
    with index.writing():
        for b in range(3):
            index.images.add(_rows(100, b), xb[100 * b:100 * (b + 1)])
        index.images.sync()
        index.images.remove([5, 150, 299])
        index.images.compact()
        index.images.add(_rows(100, 3), xb[300:])  # after the compaction: not in the id index yet
        index.images.sync()
    return index, xb


def test_lookups_by_id_after_deletes_and_compaction(churned):
    index, xb = churned
    want = [0, 5, 150, 151, 299, 300, 399, 400]
    rows = index.images.rows(want)
    assert sorted(rows) == [0, 151, 300, 399]
    assert (rows[151].path, rows[151].width, rows[151].height) == ("/p/1_51.jpg", 61, 71)
    assert rows[300].path == "/p/3_0.jpg"
    got = index.images.table.vectors_of(np.array(want))
    assert np.array_equal(got[[0, 3, 5, 6]], xb[[0, 151, 300, 399]])
    assert not got[[1, 2, 4, 7]].any()  # deleted or never stored: zeros
    plan = index.images.table._t.search().where("id IN (3, 151)").explain_plan(verbose=True)
    assert "ScalarIndexQuery" in plan and "BTree" in plan  # the BTREE on id, not a scan


def test_readers_find_the_same_rows_from_the_snapshot(churned):
    index, xb = churned
    reader = open_index(index.root)
    for q in (0, 151, 300, 399):
        hit = reader.images.search(xb[q:q + 1], 1)[0][0]
        assert (hit.id, hit.score) == (q, pytest.approx(1.0, abs=1e-5))
        row = index.images.rows([q])[q]
        assert (hit.path, hit.width, hit.height) == (row.path, row.width, row.height)
    assert 5 not in [h.id for h in reader.images.search(xb[5:6], 5)[0]]


def test_refine_holds_exact_vectors_by_id(monkeypatch, tmp_path):
    monkeypatch.setattr(annspec, "FLAT_MAX", 1000)
    xb = _unit(12_000, 1)
    index = create_index(tmp_path / "idx", ModelIdentity("m", "w", DIM))
    with index.writing():
        index.images.add(_rows(len(xb), "r"), xb)
        index.images.sync()
        index.images.remove([7])
        index.images.sync()
    reader = open_index(index.root)
    ann = reader.images.ann()
    assert ann.spec.kind == "ivfpq" and len(ann) == len(xb) - 1
    assert np.array_equal(reader.images.vectors_of([8, 7, 11_999]), np.stack([xb[8], np.zeros(DIM), xb[11_999]]))
    xq = xb[100:120]
    hits = reader.images.search(xq, 10)
    scores = xq @ xb.T
    scores[:, 7] = -np.inf  # removed
    truth = np.argsort(-scores, axis=1)[:, :10]
    for q, row, t in zip(xq, hits, truth):
        assert [h.score for h in row] == sorted((h.score for h in row), reverse=True)
        assert all(h.score == pytest.approx(float(xb[h.id] @ q), abs=1e-5) for h in row)  # exact scores
    recall = np.mean([len({h.id for h in row} & set(t.tolist())) / 10 for row, t in zip(hits, truth)])
    assert recall >= 0.95
