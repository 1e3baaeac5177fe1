"""An index of before the ANN segments, as clipsearch wrote it at schema 6 (one ANN file per
collection, read whole, beside its rows snapshot: tests/fixtures/schema6-index, made by
make_schema6_index.py): read as it is without a write, then upgraded in place by the first writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from support.clirun import Cli
from clipsearch import open_index
from clipsearch.ann import catalog
from clipsearch.store import manifest as mf
from support.fixtureindex import copy_fixture_index

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def schema6(tiny_model, tmp_path) -> Path:
    """A copy of the schema-6 fixture, its manifest pointed at the tiny model's files here."""
    return copy_fixture_index("schema6-index", tiny_model, tmp_path / "index")


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def _answers(root: Path) -> tuple[list, list]:
    """Each image's and each text's nearest neighbour (itself): (id, path or text, score)."""
    index = open_index(root)
    ids, xb = index.images.vectors()
    images = [(h[0].id, h[0].path, round(h[0].score, 5)) for h in index.images.search(xb, 1)]
    texts = index.texts("captions")
    tids, tb = texts.vectors()
    return images, [(h[0].id, h[0].text, round(h[0].score, 5)) for h in texts.search(tb, 1)]


def test_schema6_index_is_read_as_it_is_without_a_write(schema6):
    before = _tree(schema6)
    index = open_index(schema6)
    assert index.manifest.schema_version == 6 and len(index) == 24
    images, texts = _answers(schema6)
    ids, _ = index.images.vectors()
    assert [i for i, _, _ in images] == ids.tolist()  # each image finds itself
    assert all(s == pytest.approx(1.0, abs=1e-4) for _, _, s in images + texts)
    rows = index.images.rows(ids)
    assert [p for _, p, _ in images] == [rows[i].path for i in ids.tolist()]
    assert _tree(schema6) == before  # no segment written by a reader


def test_schema6_index_is_upgraded_in_place_by_a_writer(schema6, tiny_model):
    before = _answers(schema6)
    ids_before, xb_before = open_index(schema6).images.vectors()
    out = Cli(tiny_model, schema6).json("optimize")
    assert [c["count"] for c in out["collections"]] == [24, 24]
    assert json.loads((schema6 / "manifest.json").read_text())["schema_version"] == mf.SCHEMA_VERSION
    index = open_index(schema6)
    for coll in index.collections():
        assert catalog.read(coll.ann_folder).generation == coll.version, coll.name
        assert not (schema6 / f"{coll.name}.faiss").exists() and not (schema6 / f"{coll.name}.rows").exists()
    assert _answers(schema6) == before  # the same answers, from the segments now
    ids, xb = index.images.vectors()  # the images are kept as they were, nothing re-encoded
    assert ids.tolist() == ids_before.tolist() and np.array_equal(xb, xb_before)
    hits = Cli(tiny_model, schema6).json("query", "a red circle", "-k", "3")
    assert len(hits) == 3 and hits[0]["path"].endswith(".png")
