"""Shared fixtures: the tiny test model, the shape images, and indexes of them built once a session."""

from __future__ import annotations

import os
import signal
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from support import shapes
from support.clirun import CAPTIONS, Cli
from support.exifphotos import BIG, PHOTOS, exif_jpeg
from support.modelfiles import block_network, make_second_model
from support.server import Server

FIXTURES = Path(__file__).parent / "fixtures"


class TinyModel(NamedTuple):
    """The committed tiny open_clip model: register `config` with open_clip, load `weights`."""

    config: Path  # open_clip model config JSON; its stem ("tiny-clip") is the model name
    weights: Path  # float32 safetensors, for create_model(..., pretrained=str(weights))

    @property
    def name(self) -> str:
        return self.config.stem


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_reaches_subprocesses():
    """A suite started in the background by a script (`pytest &`) ignores SIGINT, and the
    `clipsearch` processes it starts inherit that: the Ctrl-C tests' runs would never see one.
    They get the default, as from a terminal."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def tower_cache(tmp_path_factory) -> Path:
    """Exported text towers go to a folder of this run, never the user's cache (one export per run)."""
    from clipsearch.config import CACHE_ENV

    old, folder = os.environ.get(CACHE_ENV), tmp_path_factory.mktemp("cache")
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if old is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = old


@pytest.fixture(scope="session")
def tiny_model() -> TinyModel:
    """The tiny model's files; built (a few CPU minutes) if a checkout lacks them."""
    folder = FIXTURES / "tiny-clip"
    model = TinyModel(folder / "tiny-clip.json", folder / "tiny-clip.safetensors")
    if not (model.config.is_file() and model.weights.is_file()):
        subprocess.run([sys.executable, str(FIXTURES / "make_tiny_model.py"), "--out", str(folder)],
                       check=True)
    return model


@pytest.fixture(scope="session")
def tiny_towers(tiny_model, tower_cache) -> Path:
    """The tiny model's text and image towers exported into the session's cache, once: `index` runs
    into an existing index of it then encode on ONNX Runtime, not loading torch."""
    from clipsearch import load_encoder
    from clipsearch.models import imagetower, texttower

    encoder = load_encoder(str(tiny_model.config), str(tiny_model.weights), "cpu")
    for tower in (texttower, imagetower):
        tower.export(encoder, tower_cache)
    return tower_cache


@pytest.fixture(scope="session")
def tiny_model_b(tiny_model, tmp_path_factory) -> TinyModel:
    """A second tiny model whose embeddings disagree with the first's (48-d, another direction)."""
    return TinyModel(*make_second_model(tiny_model, tmp_path_factory.mktemp("tiny-clip-b")))


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """A folder of 2 PNGs (64x64) per colour x shape label, named like red_circle_000.png."""
    root = tmp_path_factory.mktemp("shapes")
    shapes.write_folder(root, n_per_label=2, size=64)
    return root


@pytest.fixture(scope="session")
def captions_file(tmp_path_factory) -> Path:
    """Every shape's caption ("a red circle"), one a line."""
    path = tmp_path_factory.mktemp("captions") / "captions.txt"
    path.write_text("\n".join(CAPTIONS) + "\n")
    return path


@pytest.fixture(scope="session")
def shapes_index(tiny_model, shapes_dir, captions_file, tmp_path_factory) -> Path:
    """An index of the shape images with a "captions" collection of every shape's caption (read-only:
    tests that change an index take a copy, see `cli`)."""
    cli = Cli(tiny_model, tmp_path_factory.mktemp("shapes-index") / "index")
    cli("index", shapes_dir, "--workers", "1", "--quiet", ok=True)
    cli("index-texts", captions_file, ok=True)
    return cli.index_dir


@pytest.fixture
def cli(tiny_model, shapes_index, tmp_path) -> Cli:
    """The CLI on a private copy of `shapes_index` (tests may change it)."""
    shutil.copytree(shapes_index, tmp_path / "index")
    return Cli(tiny_model, tmp_path / "index")


@pytest.fixture
def fresh_cli(tiny_model, tmp_path) -> Cli:
    """The CLI on an index directory that doesn't exist yet."""
    return Cli(tiny_model, tmp_path / "index")


@pytest.fixture(scope="session")
def ui_index(shapes_index) -> Path:
    """The index the UI tests (test_app, test_browser) open; they only read it."""
    return shapes_index


@pytest.fixture
def offline(monkeypatch, tmp_path) -> Path:
    """No network (any internet connection fails, as on an air-gapped machine), an empty Hugging Face
    cache and an empty models directory; returns the models directory."""
    import huggingface_hub.constants

    block_network(monkeypatch)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("CLIPSEARCH_MODELS", str(tmp_path / "models"))
    return tmp_path / "models"


@pytest.fixture(scope="session")
def served(tiny_model, shapes_index, tmp_path_factory) -> Server:
    """`clipsearch serve` (with a token, on a free port of 127.0.0.1) over a copy of `shapes_index`,
    started once a session; tests only read through it."""
    root = tmp_path_factory.mktemp("served") / "index"
    shutil.copytree(shapes_index, root)
    with Server(root, tiny_model) as server:
        yield server


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster of a head (the driver's; no CPUs, so work runs on the workers) and two
    worker nodes, started once per session: small, so that it fits beside everything else."""
    from ray.cluster_utils import Cluster

    mib = 1024 * 1024
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "object_store_memory": 150 * mib, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=2, object_store_memory=150 * mib)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


@pytest.fixture(scope="session")
def library(tiny_model, tmp_path_factory):
    """(photos folder, index dir) of exifphotos.PHOTOS (JPEGs with EXIF dates, cameras, GPS), indexed once."""
    root = tmp_path_factory.mktemp("library")
    for seed, (name, (folder, colour, shape, exif)) in enumerate(PHOTOS.items()):
        (root / "photos" / folder).mkdir(parents=True, exist_ok=True)
        img = shapes.draw(colour, shape, size=320 if name == BIG else 64, seed=seed)
        if name == BIG:
            img = img.resize((320, 240))
        exif_jpeg(root / "photos" / folder / f"{name}.jpg", img=img, **exif)
    from clipsearch import add_paths, create_index, load_encoder

    enc = load_encoder(str(tiny_model.config), str(tiny_model.weights), "cpu")
    add_paths(create_index(root / "index", enc.identity), enc, [str(root / "photos")])
    return root / "photos", root / "index"


@pytest.fixture(scope="module")
def faiss_one_thread():
    """FAISS on one OpenMP thread for a module of small indexes: fork/join costs more than it saves,
    and spinning threads crawl on a loaded 2-core machine."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)
