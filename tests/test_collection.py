"""One collection type for images and texts: the write lock on every writer, readers that never
write, and indexes of the previous schema opened and upgraded in place."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from support.clirun import CAPTIONS, Cli, image_of
from clipsearch import IndexDirError, ModelIdentity, add_texts, create_index, load_encoder, open_index
from clipsearch.ann import catalog
from clipsearch.store import manifest as mf
from clipsearch.indexer.pipeline import FAILPOINT_ENV
from support.fixtureindex import copy_fixture_index

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]
IDENTITY = ModelIdentity("m", "w", 16)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root` with its size and mtime: what a reader must leave as it was."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def schema2(tiny_model, tmp_path) -> Path:
    """A copy of an index written by clipsearch at schema 2 (tests/fixtures/schema2-index: the 24
    shapes, one each, and a "captions" collection, made with the tiny model before the collection
    type existed). Its manifest names the model files where they were then: point it at them here."""
    return copy_fixture_index("schema2-index", tiny_model, tmp_path / "index")


def test_schema2_index_is_read_as_it_is_without_a_write(schema2):
    before = _tree(schema2)
    index = open_index(schema2)
    assert index.manifest.schema_version == 2 and len(index) == 24
    ids, xb = index.images.vectors()
    hits = index.images.search(xb[:3], 1)
    assert [h[0].id for h in hits] == ids[:3].tolist()  # each image finds itself
    texts = index.texts("captions")
    text_ids, tb = texts.vectors()
    assert [h[0].id for h in texts.search(tb[:3], 1)] == text_ids[:3].tolist()
    assert texts.ann().generation is None  # no catalog: caught up from the table in memory
    assert _tree(schema2) == before


def test_schema2_index_is_upgraded_in_place_by_a_writer(schema2, tiny_model, tmp_path):
    ids_before, xb_before = open_index(schema2).images.vectors()
    (tmp_path / "more.txt").write_text("a grey cloud\n")
    Cli(tiny_model, schema2)("index-texts", tmp_path / "more.txt", ok=True)
    index = open_index(schema2)
    assert json.loads((schema2 / "manifest.json").read_text())["schema_version"] == mf.SCHEMA_VERSION
    assert "ann" not in json.loads((schema2 / "manifest.json").read_text())
    assert not (schema2 / "texts_captions.json").exists()  # the generation lives in the ANN catalog now
    for coll in index.collections():
        assert catalog.read(coll.ann_folder).generation == coll.version, coll.name
        assert not (schema2 / f"{coll.name}.faiss").exists()  # built into the segments
    assert sorted(index.text_names()) == ["captions", "more"] and len(index.texts("captions")) == 24
    ids, xb = index.images.vectors()  # the images are kept as they were, nothing re-encoded
    assert ids.tolist() == ids_before.tolist() and np.array_equal(xb, xb_before)
    indices = index.images.table._t.list_indices()
    assert [list(i.columns) for i in indices] == [["id"]]  # lookups by id use the BTREE index


def test_a_reader_never_writes(tmp_path):
    root = tmp_path / "index"
    root.mkdir()
    mf.write(root, mf.Manifest(model=IDENTITY))  # a writer killed right after creating the manifest
    before = _tree(root)
    index = open_index(root)
    assert len(index) == 0 and index.images.search(np.ones((1, 16), np.float32) / 4, 5) == [[]]
    assert index.text_names() == [] and index.failures.all() == []
    with pytest.raises(IndexDirError, match="read-only"):
        index.images.add([], np.zeros((0, 16), np.float32))
    with pytest.raises(IndexDirError, match="read-only"):
        index.texts("new", create=True)
    assert _tree(root) == before and not (root / "lance").exists()


def test_every_collection_write_takes_the_lock(tmp_path):
    index = create_index(tmp_path / "index", IDENTITY)
    other = open_index(index.root, writable=True)
    coll = other.texts("tags", create=True)
    with index.writing():  # held by one handle: every write through another is refused
        with pytest.raises(IndexDirError, match="another clipsearch process"):
            coll.add(["x"], np.ones((1, 16), np.float32) / 4)
        with pytest.raises(IndexDirError, match="another clipsearch process"):
            other.images.remove([0])
        with pytest.raises(IndexDirError, match="another clipsearch process"):
            other.failures.replace([])
    coll.add(["x"], np.ones((1, 16), np.float32) / 4)
    assert len(open_index(index.root).texts("tags")) == 1


def test_two_index_texts_at_once_the_second_is_refused(tiny_model, shapes_index, tmp_path):
    """A run holding the lock (stopped inside its encoding) refuses another; ids stay unique."""
    root = tmp_path / "index"
    shutil.copytree(shapes_index, root)
    enc = load_encoder(str(tiny_model.config), str(tiny_model.weights), "cpu")
    inside, go_on = threading.Event(), threading.Event()
    real = enc.encode_texts

    def slow_encode(texts):
        inside.set()
        assert go_on.wait(120)
        return real(texts)

    enc.encode_texts = slow_encode
    first = threading.Thread(target=add_texts, args=(open_index(root, writable=True), enc, "tags",
                                                     ["sky", "sea", "sand"]))
    first.start()
    try:
        assert inside.wait(120)
        (tmp_path / "tags.txt").write_text("grass\nsnow\n")
        error = Cli(tiny_model, root).fails("index-texts", tmp_path / "tags.txt")
        assert "another clipsearch process" in error and "wait for it to finish" in error
    finally:
        go_on.set()
        first.join()
    Cli(tiny_model, root)("index-texts", tmp_path / "tags.txt", ok=True)  # now it runs
    texts = open_index(root).texts("tags").texts()
    assert sorted(texts.values()) == ["grass", "sand", "sea", "sky", "snow"]
    assert len(set(texts)) == 5  # five ids for five texts


def test_index_texts_during_index_is_refused(tiny_model, shapes_dir, tmp_path):
    root, photos = tmp_path / "index", tmp_path / "photos"
    shutil.copytree(shapes_dir, photos)
    env = os.environ | {"PYTHONPATH": str(ROOT), FAILPOINT_ENV: "added:1:stop"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "clipsearch.cli", "index", str(photos), "--index", str(root), "--workers", "1",
         "--commit-every", "4", "--quiet", "--model", str(tiny_model.config), "--pretrained", str(tiny_model.weights)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _, status = os.waitpid(proc.pid, os.WUNTRACED)  # stopped after its first commit, lock held
        assert os.WIFSTOPPED(status), f"the indexer ended before its failpoint (status {status})"
        (tmp_path / "captions.txt").write_text("\n".join(CAPTIONS) + "\n")
        error = Cli(tiny_model, root).fails("index-texts", tmp_path / "captions.txt")
        assert "another clipsearch process" in error
        assert open_index(root).text_names() == []
    finally:
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert len(open_index(root)) == len(list(photos.glob("*.png")))
    Cli(tiny_model, root)("index-texts", tmp_path / "captions.txt", ok=True)
    hits = Cli(tiny_model, root).json("query", "--image", image_of(photos, "red", "circle"), "--texts", "-k", "1")
    assert hits[0]["text"] == "a red circle"
