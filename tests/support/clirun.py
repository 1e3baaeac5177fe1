"""The one CLI runner of the tests: the real `clipsearch` command, in-process, with the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from clipsearch.cli import main
from support.shapes import LABELS, caption

CAPTIONS = [caption(c, s) for c, s in LABELS]
#: The commands that load a model: they get the tiny model's --model/--pretrained.
MODEL_COMMANDS = {"index", "query", "index-texts", "classify"}


def model_args(tiny_model, idx: Path) -> list[str]:
    """The tiny model's --model/--pretrained for a `clipsearch index` subprocess that creates `idx`;
    none once it exists: the run then uses the index's own model, on ONNX Runtime without torch when
    the `tiny_towers` fixture exported it (as a user's later runs do), ~10 s less a process."""
    from clipsearch.store.manifest import FILENAME

    return [] if (idx / FILENAME).exists() else _model_options(tiny_model)


def _model_options(tiny_model) -> list[str]:
    return ["--model", str(tiny_model.config), "--pretrained", str(tiny_model.weights)]


class Cli:
    """`cli(*args)` runs `clipsearch ARGS [--index DIR] [tiny model options]` and returns click's Result.

    Every run must end without a traceback; `ok=True/False` also checks its exit status, `json`
    parses its `--json` output and `fails` returns the one-line error of a run that must fail.
    """

    def __init__(self, tiny_model, index_dir: Path | None, index_options=(), ok: bool | None = None):
        self.model_args = [] if tiny_model is None else _model_options(tiny_model)
        self.index_dir, self.index_options, self.ok = index_dir, list(index_options), ok

    def __call__(self, *args, model: bool | None = None, ok: bool | None = None):
        """`index_options` go to every `index` run; `ok` (else the runner's default) checks the exit."""
        args = [str(a) for a in args]
        ok = self.ok if ok is None else ok
        extra = ["--index", str(self.index_dir)] if self.index_dir is not None else []
        if model if model is not None else args[0] in MODEL_COMMANDS:
            extra += self.model_args
        if args[0] == "index":
            extra += self.index_options
        result = CliRunner().invoke(main, [*args, *extra])
        assert "Traceback" not in result.output, result.output
        if ok is not None:
            assert (result.exit_code == 0) == ok, result.output
        return result

    def json(self, *args, **kw):
        result = self(*args, "--json", ok=True, **kw)
        return json.loads(result.stdout)

    def fails(self, *args, **kw) -> str:
        """The one-line error of a run that must fail."""
        result = self(*args, ok=False, **kw)
        assert [line.startswith("Error: ") for line in result.output.splitlines()].count(True) == 1, result.output
        return result.output


def image_of(shapes_dir: Path, colour: str, shape: str, n: int = 0) -> Path:
    return sorted(shapes_dir.glob(f"{colour}_{shape}_*.png"))[n]
