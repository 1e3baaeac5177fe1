"""What the UI tests share: an index of the shape images built with the tiny model, once a session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from clipsearch import add_paths, create_index, load_encoder

APP = Path(__file__).resolve().parents[1] / "app" / "main.py"


def build_index(root: Path, tiny_model, folders: list[Path]) -> Path:
    """An index at `root` of the images in `folders`, made with the tiny model."""
    enc = load_encoder(str(tiny_model.config), str(tiny_model.weights), "cpu")
    add_paths(create_index(root, enc.identity), enc, [str(f) for f in folders])
    return root


@pytest.fixture
def ui_index(tiny_model, shapes_dir, tmp_path_factory) -> Path:
    """The index of `shapes_dir`, built once per session (test_app and test_browser share it)."""
    root, done = tmp_path_factory.getbasetemp() / "ui-index", tmp_path_factory.getbasetemp() / "ui-index.ok"
    if not done.exists():  # not the manifest: a build that failed half way must not be reused
        shutil.rmtree(root, ignore_errors=True)
        build_index(root, tiny_model, [shapes_dir])
        done.touch()
    return root
