"""Shared fixtures: the tiny test model and a folder of synthetic shape images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

import shapes
from exifphotos import BIG, PHOTOS, exif_jpeg

FIXTURES = Path(__file__).parent / "fixtures"


class TinyModel(NamedTuple):
    """The committed tiny open_clip model: register `config` with open_clip, load `weights`."""

    config: Path  # open_clip model config JSON; its stem ("tiny-clip") is the model name
    weights: Path  # float32 safetensors, for create_model(..., pretrained=str(weights))

    @property
    def name(self) -> str:
        return self.config.stem


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
def shapes_dir(tmp_path_factory) -> Path:
    """A folder of 2 PNGs (64x64) per colour x shape label, named like red_circle_000.png."""
    root = tmp_path_factory.mktemp("shapes")
    shapes.write_folder(root, n_per_label=2, size=64)
    return root


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
