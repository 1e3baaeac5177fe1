"""The image tower on ONNX Runtime: exported by a `clipsearch index` run on the CPU, faithful to the
open_clip model, used only for exactly its model's files, and then indexing without torch."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from support.clirun import Cli
from support.shapes import LABELS, write_folder

from clipsearch import Encoder, ModelIdentity, Settings, load_encoder, open_index
from clipsearch.cli.options import encoder_loader, image_tower
from clipsearch.config import CACHE_ENV
from clipsearch.errors import ModelError
from clipsearch.ingest.batch import decode_file
from clipsearch.models import imagetower
from clipsearch.models.towerfiles import META
from clipsearch.models.weights import fingerprint

HEAVY = ("torch", "open_clip", "torchvision")


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return load_encoder(str(tiny_model.config), str(tiny_model.weights), "cpu")


@pytest.fixture(scope="module")
def run(tiny_model, tower_cache, tmp_path_factory):
    """A first `clipsearch index` run (the open_clip model, on the CPU) into a new index, with a cache
    of its own: it exports the image tower there. `second` holds photos for a later run."""
    root = tmp_path_factory.mktemp("imagetower")
    if (tower_cache / "text-towers").is_dir():  # text towers this session exported: not exported again
        shutil.copytree(tower_cache / "text-towers", root / "cache" / "text-towers")
    first = write_folder(root / "first", n_per_label=1, labels=list(LABELS[:4]), seed=1)
    second = write_folder(root / "second", n_per_label=1, labels=list(LABELS[4:10]), seed=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(root / "cache"))
        Cli(tiny_model, root / "index", ["--workers", "1", "--quiet"], ok=True)("index", root / "first")
    return SimpleNamespace(root=root, cache=root / "cache", index=root / "index", first=first,
                           second=[p for p, _, _ in second])


@pytest.fixture(scope="module")
def tower(run, encoder):
    return imagetower.ImageTower.load(run.cache, encoder.identity)


def _pixels(paths, preprocess) -> np.ndarray:
    return np.concatenate([decode_file(str(p), preprocess, 10**8).pixels for p in paths])


def test_a_cpu_run_exports_a_tower_that_encodes_like_open_clip(encoder, tower, run, shapes_dir):
    assert tower is not None and imagetower.exported(run.cache, encoder.identity)
    assert (tower.identity, tower.preprocess, tower.dim, tower.device, tower.fast) == (
        encoder.identity, encoder.preprocess, encoder.dim, "cpu", "")
    assert tower.batch_size == encoder.batch_size
    pixels = np.concatenate([_pixels(sorted(shapes_dir.glob("*.png"))[:7], encoder.preprocess),
                             imagetower.probes(encoder.preprocess.size)])
    fast, exact = tower.encode_pixels(pixels), encoder.encode_pixels(pixels)
    assert fast.shape == exact.shape == (10, encoder.dim) and fast.dtype == np.float32
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    assert np.sum(fast * exact, axis=1).min() >= 0.999
    assert np.allclose(tower.encode_pixels(pixels[3:4]), fast[3:4], atol=1e-5)  # any batch size
    assert tower.encode_pixels(pixels[:0]).shape == (0, encoder.dim)


def test_the_next_index_run_uses_the_export_without_torch(run, encoder):
    code = ("import io, json, sys, contextlib\nfrom clipsearch.cli import main\nout = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            f"    main(['index', {str(run.root / 'second')!r}, '--index', {str(run.index)!r}, '--workers', '1',"
            " '--quiet', '--json'], standalone_mode=False)\n"
            f"print(json.dumps([json.loads(out.getvalue()), sorted(m for m in {HEAVY!r} if m in sys.modules)]))")
    env = {**os.environ, CACHE_ENV: str(run.cache)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    summary, loaded = json.loads(done.stdout)
    assert loaded == [] and summary["new"] == len(run.second) and summary["notes"] == []
    rows = sorted(open_index(run.index).images.rows_under([str(run.root / "second")]), key=lambda r: r.path)
    assert [r.path for r in rows] == sorted(str(p) for p in run.second)
    stored = open_index(run.index).images.vectors_of(np.array([r.id for r in rows]))
    exact = encoder.encode_pixels(_pixels([r.path for r in rows], encoder.preprocess))
    assert np.sum(stored * exact, axis=1).min() >= 0.999


def test_index_takes_the_export_only_for_a_cpu_fp32_run_of_the_index_model(run, tiny_model, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(run.cache))
    cpu = Settings().with_(device="cpu")
    assert isinstance(image_tower(run.index, None, None, cpu), imagetower.ImageTower)
    assert image_tower(run.index, None, None, cpu.with_(device="cuda")) is None
    assert image_tower(run.index, None, None, cpu.with_(fast_encoder=True)) is None
    assert image_tower(run.index, str(tiny_model.config), str(tiny_model.weights), cpu) is None
    assert image_tower(run.root / "no-index", None, None, cpu) is None
    # What an `index` run and its Ray encode actors load, each where it runs: the same choice.
    assert isinstance(encoder_loader(run.index, None, None, cpu)(), imagetower.ImageTower)
    assert isinstance(encoder_loader(run.index, str(tiny_model.config), str(tiny_model.weights), cpu)(), Encoder)
    bare = run.root / "cache-without-text-tower"  # the run couldn't export it without the model
    shutil.copytree(run.cache / "image-towers", bare / "image-towers", dirs_exist_ok=True)
    monkeypatch.setenv(CACHE_ENV, str(bare))
    assert image_tower(run.index, None, None, cpu) is None


def test_an_export_is_used_only_for_its_model_and_files(encoder, tower, run, tiny_model, tmp_path):
    other = ModelIdentity(encoder.identity.model, encoder.identity.pretrained, encoder.dim + 1,
                          encoder.identity.fingerprint)
    assert imagetower.ImageTower.load(run.cache, other) is None
    # The export of a copy of the weights, then the copy changes on disk: the export must not be used.
    weights = tmp_path / "copy.safetensors"
    shutil.copy(tiny_model.weights, weights)
    ident = ModelIdentity(encoder.identity.model, str(weights), encoder.dim, fingerprint(weights))
    where = imagetower.folder(tmp_path, ident)
    shutil.copytree(imagetower.folder(run.cache, encoder.identity), where)
    meta = json.loads((where / META).read_text())
    meta["model"], meta["sources"]["weights"] = ident.to_dict(), ident.fingerprint
    (where / META).write_text(json.dumps(meta))
    assert imagetower.ImageTower.load(tmp_path, ident) is not None
    with weights.open("r+b") as f:
        f.seek(-16, 2)
        f.write(b"\x01" * 16)
    assert imagetower.ImageTower.load(tmp_path, ident) is None and not imagetower.exported(tmp_path, ident)


class _WrongMean:
    """The encoder, but its export normalises pixels with another mean than the model's."""

    def __init__(self, encoder, good: Path):
        self._encoder, self._good = encoder, good

    def __getattr__(self, name):
        return getattr(self._encoder, name)

    def export_image(self, path: Path) -> bool:
        import onnx
        from onnx import numpy_helper

        for f in self._good.iterdir():
            shutil.copy(f, path.parent / f.name)
        graph = onnx.load(path, load_external_data=False)
        init = next(i for i in graph.graph.initializer if i.name == "pixel_mean")
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init)[:, ::-1].copy() + 0.3, init.name))
        onnx.save(graph, path)
        return True


def test_an_unfaithful_export_is_refused(encoder, tower, run, tmp_path):
    with pytest.raises(ModelError, match="doesn't match open_clip's within cosine 0.999"):
        imagetower.export(_WrongMean(encoder, imagetower.folder(run.cache, encoder.identity)), tmp_path)
    assert not imagetower.exported(tmp_path, encoder.identity)
    assert list((tmp_path / "image-towers").iterdir()) == []  # nothing half-built left behind


def test_a_sped_up_tower_is_not_exported(encoder, tmp_path):
    fast = copy.copy(encoder)
    fast.fast = "int8"
    with pytest.raises(ModelError, match="image tower the fast path doesn't cover"):
        imagetower.export(fast, tmp_path)
    assert not imagetower.exported(tmp_path, encoder.identity)
    assert list((tmp_path / "image-towers").iterdir()) == []
