"""The real CLI on an index of the shape images, for the image -> text tests (fixtures to import)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from clipsearch.cli import main
from shapes import LABELS, caption

CAPTIONS = [caption(c, s) for c, s in LABELS]
_NO_MODEL_OPTIONS = {"texts", "info"}


class Cli:
    """`cli(*args)` runs `clipsearch ARGS --index DIR` with the tiny model; `cli.json(...)` parses."""

    def __init__(self, tiny_model, index_dir: Path):
        self.model_args = ["--model", str(tiny_model.config), "--pretrained", str(tiny_model.weights)]
        self.index_dir = index_dir

    def __call__(self, *args):
        extra = [] if args[0] in _NO_MODEL_OPTIONS else self.model_args
        result = CliRunner().invoke(main, [*map(str, args), "--index", str(self.index_dir), *extra])
        assert "Traceback" not in result.output
        return result

    def json(self, *args):
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def fails(self, *args) -> str:
        """The one-line error of a run that must fail."""
        result = self(*args)
        assert result.exit_code != 0, result.output
        assert [line.startswith("Error: ") for line in result.output.splitlines()].count(True) == 1, result.output
        return result.output


@pytest.fixture(scope="module")
def shapes_index(tiny_model, shapes_dir, tmp_path_factory) -> Path:
    """An index of the shape images with a "captions" collection of every shape's caption."""
    root = tmp_path_factory.mktemp("shapes-index")
    cli = Cli(tiny_model, root / "index")
    assert cli("index", shapes_dir, "--workers", "1", "--quiet").exit_code == 0
    (root / "captions.txt").write_text("\n".join(CAPTIONS) + "\n")
    result = cli("index-texts", root / "captions.txt")
    assert result.exit_code == 0, result.output
    return root / "index"


@pytest.fixture
def cli(tiny_model, shapes_index, tmp_path) -> Cli:
    """A Cli on a private copy of `shapes_index` (tests may change it)."""
    shutil.copytree(shapes_index, tmp_path / "index")
    return Cli(tiny_model, tmp_path / "index")


def image_of(shapes_dir: Path, colour: str, shape: str, n: int = 0) -> Path:
    return sorted(shapes_dir.glob(f"{colour}_{shape}_*.png"))[n]
