"""Kill a real `clipsearch index` process at several points, run it again, and check the index.

Each run is a subprocess that a fault-injection hook (CLIPSEARCH_FAILPOINT) kills, stops or
interrupts at a chosen commit, between runs the photo folder changes. After every run: each row's
hash matches its file, rows of unchanged files keep their ids (nothing committed is encoded
again), and the ANN index holds exactly the table's ids and vectors. After the last: no
duplicates, nothing lost, every failure recorded, and the saved ANN index is current.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from support import shapes
from clipsearch import open_index
from clipsearch.ann import catalog
from support.clirun import Cli, model_args
from clipsearch.media.files import content_hash, stat_key
from clipsearch.indexer.pipeline import FAILPOINT_ENV

ROOT = Path(__file__).resolve().parents[1]


class Runner:
    """Starts `clipsearch index` subprocesses on one folder and index; remembers what it saw."""

    def __init__(self, model, photos: Path, idx: Path):
        self.model, self.photos, self.idx = model, photos, idx
        self.ids: dict[str, tuple[int, tuple]] = {}  # path -> (row id, stat key) when first seen

    def start(self, failpoint: str | None = None) -> subprocess.Popen:
        env = os.environ | {"PYTHONPATH": str(ROOT), FAILPOINT_ENV: failpoint or ""}
        return subprocess.Popen(
            [sys.executable, "-m", "clipsearch.cli", "index", str(self.photos), "--index", str(self.idx),
             "--workers", "1", "--batch-size", "4", "--commit-every", "4", "--quiet", "--json",
             *model_args(self.model, self.idx)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace", env=env,
            start_new_session=True)  # its own process group, as a terminal's Ctrl-C would reach it

    def run(self, failpoint: str | None = None) -> tuple[int, str, str]:
        proc = self.start(failpoint)
        out, err = proc.communicate(timeout=600)
        assert "Traceback" not in err, err
        return proc.returncode, out, err

    def killed(self, failpoint: str) -> None:
        code, _, err = self.run(failpoint)
        assert code == -signal.SIGKILL, f"exit {code}: {err}"

    def check(self, duplicates_ok: bool = False) -> dict:
        """The invariants that hold after any run, killed or not; returns path -> newest row."""
        index = open_index(self.idx)
        rows = index.images.all_rows()
        newest = {}
        for r in rows:
            if r.path not in newest or r.id > newest[r.path].id:
                newest[r.path] = r
        if not duplicates_ok:
            assert len(newest) == len(rows), Counter(r.path for r in rows).most_common(3)
        for path, r in newest.items():
            key = stat_key(path)
            if key == (r.size, r.mtime):
                assert r.hash == content_hash(path), path  # the row holds this very content
                first = self.ids.setdefault(path, (r.id, key))
                if first[1] == key:
                    assert first[0] == r.id, f"{path} was encoded again"
        _check_ann(index)
        return newest


def _check_ann(index) -> None:
    """The ANN index holds exactly the table's ids, each with its stored vector."""
    ids, xb = index.images.vectors()
    ann = index.images.ann()
    assert len(ann) == len(ids), f"ANN index holds {len(ann)} vectors, the table {len(ids)}"
    if len(ids):
        D, I = ann.search(xb, len(ids))
        wrong = [sorted(set(row) ^ set(ids.tolist())) for row in I if set(row) != set(ids.tolist())]
        assert not wrong, f"ANN ids differ from the table's: {wrong[:3]}"
        self_score = D[I == ids[:, None]]
        np.testing.assert_allclose(self_score, 1.0, atol=1e-4)


def _wait_stopped(proc: subprocess.Popen) -> None:
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), f"the indexer ended before its failpoint (status {status})"


@pytest.mark.slow
def test_kill_and_resume(tiny_model, tiny_towers, tmp_path):
    photos, idx = tmp_path / "photos", tmp_path / "idx"
    shapes.write_folder(photos, n_per_label=2, seed=7)  # 48 files: 12 groups of 4, enough for every kill
    (photos / "b_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    r = Runner(tiny_model, photos, idx)
    files = sorted(photos.glob("*.png"))

    # 1. SIGKILL after the third group's rows are committed.
    r.killed("added:3")
    committed = r.check()
    assert 0 < len(committed) < len(files), f"{len(committed)} of {len(files)} committed"

    # 2. Change committed files, then SIGKILL after moved files' rows went in, before the old ones left.
    changed = [p for p in files if str(p) in committed][:2]
    for i, p in enumerate(changed):
        shapes.draw("purple", "star", seed=200 + i).save(p)
    moved = [p for p in files if str(p) in committed][2:4]
    (photos / "sub").mkdir()
    moved_to = [photos / "renamed.png", photos / "sub" / moved[1].name]
    for src, dst in zip(moved, moved_to):
        src.rename(dst)
    deleted = [p for p in files if str(p) in committed][4]
    deleted.unlink()
    for i in range(3):
        shapes.draw("yellow", "circle", seed=300 + i).save(photos / f"zz_new_{i}.png")
    r.killed("relinked:1")
    rows = r.check()
    for src, dst in zip(moved, moved_to):  # moved by content: same vector, no encoding
        assert rows[str(dst)].hash == committed[str(src)].hash, f"{dst}: {rows[str(dst)]} vs {committed[str(src)]}"

    # 3. SIGKILL between a changed file's new row and its old row's removal: two rows, for now.
    r.killed("added:1")
    rows = r.check(duplicates_ok=True)
    counts = Counter(x.path for x in open_index(idx).images.all_rows())
    assert counts[str(changed[0])] == 2, f"rows of {changed[0]}: {counts[str(changed[0])]}"

    # 4. A new broken file; SIGKILL right after its failure record is committed.
    (photos / "0_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    r.killed("failures:1")
    r.check()
    failed = {f.path for f in open_index(idx).failures.all()}
    assert str(photos / "0_broken.png") in failed, failed

    # 5. Stopped mid-run, holding the lock: queries see the last commit, a second writer is refused.
    proc = r.start("removed:2:stop")
    _wait_stopped(proc)
    try:
        cli = Cli(tiny_model, idx)
        hits = cli.json("query", "a red circle", "-k", "100", model=False)
        assert len(hits) == len(open_index(idx)) > 0, f"{len(hits)} hits, {len(open_index(idx))} rows"
        assert "another clipsearch process" in cli.fails("index", photos, "--quiet")
        r.check()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # 6. ... and SIGKILLed while stopped
        proc.communicate()

    # 7. Ctrl-C: SIGINT to the whole process group (workers included) while it runs.
    proc = r.start("removed:1:stop")
    _wait_stopped(proc)
    os.killpg(proc.pid, signal.SIGINT)
    os.killpg(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, (
        f"exit {proc.returncode}, stderr: {err!r}")
    before = r.check()

    # 8. The last run finishes the job, encoding only what is still missing.
    code, out, err = r.run()
    assert code == 0, f"exit {code}, stderr: {err!r}"
    summary = json.loads(out)
    final = r.check()
    good = sorted(str(p) for p in photos.rglob("*.png") if "broken" not in p.name)
    missing = [p for p in good if p not in before or stat_key(p) != (before[p].size, before[p].mtime)]
    assert summary["indexed"] == len(missing) > 0, f"indexed {summary['indexed']}, missing {missing}"
    assert sorted(final) == good, sorted(set(final) ^ set(good))
    failures = open_index(idx).failures.all()
    assert sorted(f.path for f in failures) == sorted(str(p) for p in photos.glob("*broken*")), failures
    saved, version = catalog.read(idx / "images.ann").generation, open_index(idx).images.version
    assert saved == version, f"committed ANN index is of table version {saved}, the table is at {version}"
