"""The layers, read off the import graph of every module of every subpackage (imports inside functions
included): no cycles, and each layer imports only its own floor and the floors below it."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Floors, inside out: a module may import its own floor and those below it, never one above.
FLOORS = [
    {"clipsearch.config", "clipsearch.errors", "clipsearch.durable"},
    {"clipsearch.models"},
    {"clipsearch.media"},
    {"clipsearch.store"},
    {"clipsearch.ann"},
    {"clipsearch.collection", "clipsearch.index"},
    {"clipsearch.ingest", "clipsearch.duplicates"},
    {"clipsearch.search"},
    {"clipsearch"},  # the package's __init__: the public API, re-exported
    {"clipsearch.cli", "clipsearch.indexer", "clipsearch.app", "clipsearch.server"},
]


def modules(root: Path, package: str, dirs: dict[str, Path] | None = None) -> dict[str, Path]:
    """Every module of `package` under `root` (and of the extra package dirs), by absolute name."""
    found = {}
    for name, base in {package: root, **(dirs or {})}.items():
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([name, *parts])] = path
    return found


def imports(path: Path, name: str) -> set[str]:
    """Absolute names that the module `name` at `path` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module) if p)
            names |= {module} | {f"{module}.{a.name}" for a in node.names}
    return names


def graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of `mods` it imports (a name resolves to its longest known prefix)."""
    def resolve(n: str) -> str | None:
        while n and n not in mods:
            n = n.rpartition(".")[0]
        return n or None

    return {m: {t for t in map(resolve, imports(p, m)) if t and t != m} for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of `g` (one path per strongly connected component of several modules)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v), on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def floor_of(module: str) -> int:
    best = max((f for f in FLOORS for p in f if module == p or module.startswith(p + ".")),
               key=lambda f: max(len(p) for p in f if module == p or module.startswith(p + ".")))
    return FLOORS.index(best)


def upward(g: dict[str, set[str]]) -> dict[str, list[str]]:
    """Module -> the modules it imports from a floor above its own."""
    bad = {m: sorted(t for t in ts if floor_of(t) > floor_of(m)) for m, ts in g.items()}
    return {m: ts for m, ts in bad.items() if ts}


def project_graph() -> dict[str, set[str]]:
    mods = modules(ROOT / "clipsearch", "clipsearch",
                   {"clipsearch.indexer": ROOT / "indexer", "clipsearch.app": ROOT / "app",
                    "clipsearch.server": ROOT / "server"})
    return graph(mods)


def test_every_subpackage_is_walked():
    g = project_graph()
    assert {"clipsearch.ann.refine", "clipsearch.media.kinds", "clipsearch.search.matcher",
            "clipsearch.cli.core", "clipsearch.app.main", "clipsearch.indexer.pipeline",
            "clipsearch.server.app", "clipsearch.server.rayserve"} <= set(g)
    assert len(g) > 60


def test_no_import_cycles():
    assert cycles(project_graph()) == []


def test_no_module_imports_a_floor_above_its_own():
    assert upward(project_graph()) == {}


def test_a_planted_cycle_and_an_upward_import_are_caught(tmp_path):
    pkg = tmp_path / "clipsearch"
    (pkg / "media").mkdir(parents=True)
    (pkg / "store").mkdir()
    for d in (pkg, pkg / "media", pkg / "store"):
        (d / "__init__.py").write_text("")
    (pkg / "media" / "kinds.py").write_text("def f():\n    from .image import g\n")  # inside a function
    (pkg / "media" / "image.py").write_text("from clipsearch.media.kinds import f\n")
    (pkg / "media" / "raw.py").write_text("from clipsearch.store.tables import T\n")
    (pkg / "store" / "tables.py").write_text("T = 1\n")
    g = graph(modules(pkg, "clipsearch"))
    assert cycles(g) == [["clipsearch.media.image", "clipsearch.media.kinds"]]
    assert upward(g) == {"clipsearch.media.raw": ["clipsearch.store.tables"]}


def test_the_core_stays_ray_free():
    """Ray lives in the outer layers only (the indexer, the server): no core module imports it."""
    mods = modules(ROOT / "clipsearch", "clipsearch")
    core = {m: p for m, p in mods.items() if floor_of(m) < len(FLOORS) - 1}
    assert "clipsearch.ann.shards" in core
    assert {m: "ray" for m, p in core.items() if any(n.split(".")[0] == "ray" for n in imports(p, m))} == {}


def test_outer_layers_import_each_other_only_downwards():
    """The CLI starts the server and the UI (by its path); the server, the UI and the indexer
    import none of the outer layers."""
    g = project_graph()

    def reached(layer: str) -> set[str]:
        return {t for m, ts in g.items() if m.startswith(layer) for t in ts}

    assert not {t for t in reached("clipsearch.app") if t.startswith(("clipsearch.cli", "clipsearch.indexer",
                                                                     "clipsearch.server"))}
    assert not {t for t in reached("clipsearch.indexer") if t.startswith(("clipsearch.cli", "clipsearch.app",
                                                                         "clipsearch.server"))}
    assert not {t for t in reached("clipsearch.server") if t.startswith(("clipsearch.cli", "clipsearch.app",
                                                                        "clipsearch.indexer"))}
    cli = reached("clipsearch.cli")
    assert not {t for t in cli if t.startswith("clipsearch.app.")}  # `ui` runs the page by its path
    assert "clipsearch.server.app" in cli  # `serve` builds the server's app


def test_only_the_clipsearch_package_is_installed():
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert all(p == "clipsearch" or p.startswith("clipsearch.") for p in setup["packages"])
    assert setup["package-dir"] == {"clipsearch.indexer": "indexer", "clipsearch.app": "app",
                                    "clipsearch.server": "server"}
    on_disk = {".".join(p.relative_to(ROOT).parent.parts) for p in (ROOT / "clipsearch").rglob("__init__.py")}
    assert on_disk <= set(setup["packages"])  # a new subpackage that is not installed fails here
