"""Indexes written by older clipsearch code (tests/fixtures/schemaN-index), copied for a test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def copy_fixture_index(name: str, tiny_model, root: Path) -> Path:
    """A copy of fixtures/`name` at `root`, its manifest pointed at the tiny model's files here
    (it names them where they were when it was written)."""
    shutil.copytree(FIXTURES / name, root)
    d = json.loads((root / "manifest.json").read_text())
    d["model"] |= {"model": str(tiny_model.config), "pretrained": str(tiny_model.weights)}
    (root / "manifest.json").write_text(json.dumps(d))
    return root
