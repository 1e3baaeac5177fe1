"""The fast query path: open_clip's tokenizer without torch, the text tower on ONNX Runtime, the
records kept by the ANN segments, and a `clipsearch query` that imports neither torch nor LanceDB yet
answers like the model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from clipsearch import BACKGROUND_PROMPTS, ModelIdentity, create_index, load_encoder, open_index
from clipsearch.models import texttower
from clipsearch.store.records import Row
from clipsearch.models.tokenizer import simple_tokenizer
from clipsearch.models.weights import fingerprint
from support.clirun import Cli

TEXTS = ["a red circle", "A BLUE   square!", "", "crème brûlée ☕ at 5 o'clock", "triangle " * 40,
         "&amp; <b>html</b> entities", "ümlaut ÆØÅ 日本語"]
HEAVY = ("torch", "open_clip", "lancedb", "pandas")


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return load_encoder(str(tiny_model.config), str(tiny_model.weights), "cpu")


@pytest.fixture(scope="module")
def tower(encoder, tower_cache):
    texttower.export(encoder, tower_cache)
    return texttower.TextTower.load(tower_cache, encoder.identity)


def test_tokenizer_is_open_clips_without_torch(encoder):
    import open_clip

    assert np.array_equal(simple_tokenizer(16)(TEXTS), encoder.tokenizer(TEXTS).numpy())
    assert np.array_equal(simple_tokenizer(77)(TEXTS), open_clip.get_tokenizer("ViT-B-32")(TEXTS).numpy())
    code = ("import sys; from clipsearch.models.tokenizer import simple_tokenizer; ids = simple_tokenizer(77)(['a dog']); "
            "print(ids.tolist()[0][:4], 'torch' in sys.modules, 'open_clip' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[49406,", "320,", "1929,", "49407]", "False", "False"]


def test_text_tower_matches_open_clip(encoder, tower):
    assert tower is not None and tower.dim == encoder.dim
    fast, exact = tower.encode_texts(TEXTS), encoder.encode_texts(TEXTS)
    assert fast.shape == exact.shape and fast.dtype == np.float32
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    assert np.sum(fast * exact, axis=1).min() >= 0.999
    assert tower.logit_scale == pytest.approx(encoder.logit_scale)
    prompts = list(BACKGROUND_PROMPTS)  # kept from the export, not encoded again
    assert np.sum(tower.encode_texts(["x", *prompts]) * encoder.encode_texts(["x", *prompts]), axis=1).min() >= 0.999


def test_export_is_used_only_for_its_model_and_files(encoder, tower, tower_cache, tiny_model, tmp_path):
    other = ModelIdentity(encoder.identity.model, encoder.identity.pretrained, encoder.dim + 1,
                          encoder.identity.fingerprint)
    assert texttower.TextTower.load(tower_cache, other) is None
    # An export of a copy of the weights, then the copy changes on disk: the export must not be used.
    weights = tmp_path / "copy.safetensors"
    shutil.copy(tiny_model.weights, weights)
    ident = ModelIdentity(encoder.identity.model, str(weights), encoder.dim, fingerprint(weights))
    where = texttower.folder(tower_cache, ident)
    shutil.copytree(texttower.folder(tower_cache, encoder.identity), where)
    meta = json.loads((where / texttower.META).read_text())
    meta["model"], meta["sources"]["weights"] = ident.to_dict(), ident.fingerprint
    (where / texttower.META).write_text(json.dumps(meta))
    assert texttower.TextTower.load(tower_cache, ident) is not None
    with weights.open("r+b") as f:
        f.seek(-16, 2)
        f.write(b"\x01" * 16)
    assert texttower.TextTower.load(tower_cache, ident) is None


def test_cold_query_loads_neither_torch_nor_lancedb_and_answers_like_the_model(tiny_model, shapes_dir, tmp_path, tower):
    index = tmp_path / "index"
    cli = Cli(tiny_model, index, ["--workers", "1", "--quiet"], ok=True)
    cli("index", shapes_dir)
    query = ["query", "a red circle", "--index", str(index), "-k", "5", "--json"]
    exact = cli("query", "a red circle", "-k", "5", "--json")  # the open_clip model, as before
    code = ("import io, json, sys, contextlib\nfrom clipsearch.cli import main\nout = io.StringIO()\n"
            f"with contextlib.redirect_stdout(out):\n    main({query!r}, standalone_mode=False)\n"
            f"print(json.dumps([json.loads(out.getvalue()), sorted(m for m in {HEAVY!r} if m in sys.modules)]))")
    fast, loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                             check=True).stdout)
    assert loaded == []
    want = json.loads(exact.stdout)
    assert [h["path"] for h in fast] == [h["path"] for h in want]
    for f, w in zip(fast, want):
        assert f["score"] == pytest.approx(w["score"], abs=1e-4)
        assert f["calibrated"] == pytest.approx(w["calibrated"], abs=1e-3)
        assert (f["width"], f["height"]) == (w["width"], w["height"])
    image = sorted(shapes_dir.glob("*.png"))[0]  # an image query loads the model on demand
    found = cli("query", "--image", image, "-k", "1", "--json", model=False)
    assert json.loads(found.stdout)[0]["path"] == str(image)


def _rows(n, start=0):
    return [Row(-1, f"/p/{start + i}.jpg", 1, 0.0, 3, 2) for i in range(n)]


def test_a_commit_after_the_last_sync_is_seen_by_readers(tmp_path):
    """The ANN segments serve readers as they are only while the table is at the stamp of their
    catalog (e.g. not after a crash between a commit and the sync): a fresh reader then catches up."""
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((60, 16)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    writer = create_index(tmp_path / "idx", ModelIdentity("m", "w", 16))
    with writer.writing():
        writer.images.add(_rows(50), xb[:50])
        writer.images.sync()
    assert (tmp_path / "idx" / "images.ann" / "catalog.json").is_file()
    hit = open_index(tmp_path / "idx").images.search(xb[7:8], 1)[0][0]
    assert (hit.path, hit.id, hit.width, hit.height) == ("/p/7.jpg", 7, 3, 2)
    with writer.writing():
        writer.images.add(_rows(10, start=50), xb[50:])  # committed, never synced
        writer.images.remove([7])
    reader = open_index(tmp_path / "idx")
    assert reader.images.search(xb[55:56], 1)[0][0].path == "/p/55.jpg"
    assert "/p/7.jpg" not in [h.path for h in reader.images.search(xb[7:8], 3)[0]]
    with writer.writing():
        writer.images.sync()  # current again: served from the segments, same answers
    reader = open_index(tmp_path / "idx")
    assert reader.images.search(xb[55:56], 1)[0][0].path == "/p/55.jpg"
    assert reader.images.vectors_of([55, 7]).tolist() == [xb[55].tolist(), [0.0] * 16]
