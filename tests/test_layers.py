"""The layers, read off the import graph: the core imports none of the outer layers, and nothing
but the clipsearch package is installed."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTER = ("clipsearch.cli", "clipsearch.indexer", "clipsearch.app")


def _imports(path: Path, package: str) -> set[str]:
    """Absolute names of the modules `path` imports (relative imports resolved against `package`)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module) if p)
            names |= {module} | {f"{module}.{a.name}" for a in node.names}
    return names


def test_the_core_imports_no_outer_layer():
    core = sorted((ROOT / "clipsearch").glob("*.py"))
    assert len(core) > 20
    leaks = {p.name: sorted(n for n in _imports(p, "clipsearch") if n.startswith(OUTER) or
                            n.split(".")[0] in ("indexer", "app"))
             for p in core}
    assert {k: v for k, v in leaks.items() if v} == {}


def test_outer_layers_import_each_other_only_downwards():
    app = [n for p in (ROOT / "app").glob("*.py") for n in _imports(p, "clipsearch.app")]
    assert not [n for n in app if n.startswith(("clipsearch.cli", "clipsearch.indexer"))]
    indexer = [n for p in (ROOT / "indexer").glob("*.py") for n in _imports(p, "clipsearch.indexer")]
    assert not [n for n in indexer if n.startswith(("clipsearch.cli", "clipsearch.app"))]
    cli = [n for p in (ROOT / "clipsearch" / "cli").glob("*.py") for n in _imports(p, "clipsearch.cli")]
    assert not [n for n in cli if n.startswith("clipsearch.app.")]  # `ui` runs the page by its path


def test_only_the_clipsearch_package_is_installed():
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert all(p == "clipsearch" or p.startswith("clipsearch.") for p in setup["packages"])
    assert setup["package-dir"] == {"clipsearch.indexer": "indexer", "clipsearch.app": "app"}
