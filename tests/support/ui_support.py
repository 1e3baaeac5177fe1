"""What the UI tests share: the page's script, and indexes built with the tiny model."""

from __future__ import annotations

from pathlib import Path

from clipsearch import add_paths, create_index, load_encoder

APP = Path(__file__).resolve().parents[2] / "app" / "main.py"


def build_index(root: Path, tiny_model, folders: list[Path]) -> Path:
    """An index at `root` of the images in `folders`, made with the tiny model."""
    enc = load_encoder(str(tiny_model.config), str(tiny_model.weights), "cpu")
    add_paths(create_index(root, enc.identity), enc, [str(f) for f in folders])
    return root
