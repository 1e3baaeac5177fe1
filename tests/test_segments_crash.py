"""SIGKILL real processes at the ANN index's failpoints: while a segment's files are being written,
after they are written but before the catalog names them, after a merge, and between a table change
and the sync that follows it. After each kill the next open serves the last committed catalog,
caught up with the table: every row found once, with its own vector and record; the next writer
commits it and deletes what the killed one left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from support import shapes
from support.clirun import model_args
from clipsearch import open_index
from clipsearch.ann import catalog
from clipsearch.indexer.pipeline import FAILPOINT_ENV

ROOT = Path(__file__).resolve().parents[1]


def _cli(model, idx: Path, *args: str, failpoint: str | None = None) -> int:
    env = os.environ | {"PYTHONPATH": str(ROOT), FAILPOINT_ENV: failpoint or ""}
    proc = subprocess.run([sys.executable, "-m", "clipsearch.cli", *args, "--index", str(idx),
                           *(["--workers", "1", "--quiet", *model_args(model, idx)] if args[0] == "index" else [])],
                          capture_output=True, text=True, errors="replace", env=env, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode


def _killed_python(idx: Path, code: str) -> None:
    """Run `code` (with `index`, writable, and numpy as np) in a process that then SIGKILLs itself."""
    script = f"import os, signal, numpy as np\nfrom clipsearch import open_index\n" \
             f"index = open_index({str(idx)!r}, writable=True)\n{textwrap.dedent(code)}\n" \
             "os.kill(os.getpid(), signal.SIGKILL)\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=os.environ | {"PYTHONPATH": str(ROOT)}, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _leftovers(idx: Path) -> set[str]:
    folder = idx / "images.ann"
    return set(os.listdir(folder)) - catalog.read(folder).files()


def _check(idx: Path) -> dict[str, int]:
    """What holds after any kill: the ANN index holds each row of the table once, with its stored
    vector and record; returns path -> id."""
    index = open_index(idx)
    rows = {r.id: r for r in index.images.all_rows()}
    ids, xb = index.images.vectors()
    ann = index.images.ann()
    assert sorted(ann.live_ids().tolist()) == sorted(ids.tolist()) == sorted(rows), "ANN rows differ from the table's"
    assert len(ann) == len(ids)
    np.testing.assert_allclose(index.images.vectors_of(ids), xb, atol=0)
    hits = index.images.search(xb, 1)
    for i, row in zip(ids, hits):
        assert row[0].score == pytest.approx(1.0, abs=1e-4)
        assert row[0].path == rows[row[0].id].path and (row[0].width, row[0].height) == (rows[row[0].id].width, rows[row[0].id].height)
    assert len({r.path for r in rows.values()}) == len(rows), "duplicate rows"
    return {r.path: r.id for r in rows.values()}


@pytest.mark.slow
def test_kill_during_segment_writes_and_merges(tiny_model, tiny_towers, tmp_path):
    photos, idx = tmp_path / "photos", tmp_path / "idx"
    shapes.write_folder(photos, n_per_label=1, seed=3)
    assert _cli(tiny_model, idx, "index", str(photos)) == 0
    first = _check(idx)
    generation = catalog.read(idx / "images.ann").generation

    # 1. New photos; killed while their segment's files are being written (temp files, not in place).
    for i in range(4):
        shapes.draw("purple", "star", seed=40 + i).save(photos / f"new_{i}.png")
    assert _cli(tiny_model, idx, "index", str(photos), failpoint="ann-writing") == -signal.SIGKILL
    assert catalog.read(idx / "images.ann").generation == generation  # the last committed version
    assert any(n.startswith(".") for n in _leftovers(idx))
    now = _check(idx)  # caught up from the table: the new rows too
    assert len(now) == len(first) + 4 and all(now[p] == i for p, i in first.items())

    # 2. Killed after the segment is written, before the catalog names it.
    assert _cli(tiny_model, idx, "index", str(photos), failpoint="ann-segment") == -signal.SIGKILL
    assert catalog.read(idx / "images.ann").generation == generation
    assert _check(idx) == now

    # 3. The next run commits it and deletes what the killed ones left.
    assert _cli(tiny_model, idx, "index", str(photos)) == 0
    assert catalog.read(idx / "images.ann").generation == open_index(idx).images.version
    assert not _leftovers(idx) and _check(idx) == now

    # 4. Removed and changed photos of the first segment (too few to rewrite it: merge_policy):
    # several segments and dead rows; a merge killed before its commit.
    *gone, changed = [Path(p) for p in sorted(first)[:3]]
    for p in gone:
        p.unlink()
    shapes.draw("yellow", "circle", seed=77).save(changed)
    assert _cli(tiny_model, idx, "index", str(photos)) == 0
    after = _check(idx)
    assert not {str(p) for p in gone} & set(after) and after[str(changed)] != now[str(changed)]
    committed = catalog.read(idx / "images.ann")
    assert len(committed.parts) > 1 and committed.dead
    assert _cli(tiny_model, idx, "optimize", failpoint="ann-merged") == -signal.SIGKILL
    assert catalog.read(idx / "images.ann") == committed and _check(idx) == after
    assert _cli(tiny_model, idx, "optimize") == 0
    merged = catalog.read(idx / "images.ann")
    assert len(merged.parts) == 1 and merged.dead is None and not _leftovers(idx)
    assert _check(idx) == after


@pytest.mark.slow
def test_kill_between_a_table_change_and_its_sync(tiny_model, tiny_towers, tmp_path):
    """Rows changed in place (a metadata update), and an id removed and added again with another
    vector (a re-index): marked dirty before the table commit, so the next open reads them again."""
    photos, idx = tmp_path / "photos", tmp_path / "idx"
    shapes.write_folder(photos, n_per_label=1, seed=5)
    assert _cli(tiny_model, idx, "index", str(photos)) == 0
    paths = _check(idx)
    a, b = sorted(paths.values())[:2]
    _killed_python(idx, f"""
        from dataclasses import replace
        rows = index.images.rows([{a}])
        with index.writing():
            index.images.update([replace(rows[{a}], width=999, height=111)])
            xb = index.images.vectors_of([{b}])
            row = index.images.rows([{b}])[{b}]
            index.images.remove([{b}])
            index.images.add([row], -xb, ids=np.array([{b}]))
    """)
    index = open_index(idx)
    assert (index.images.rows([a])[a].width, index.images.rows([a])[a].height) == (999, 111)
    _check(idx)  # the new width in the hit, the new vector found
    new = index.images.vectors_of([b])
    assert index.images.search(new, 1)[0][0].id == b
    assert _cli(tiny_model, idx, "optimize") == 0
    assert _check(idx) == paths and not _leftovers(idx)
