"""Hostile and odd inputs: every file of a generated corpus is indexed or recorded with a reason."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from support import corpus
from support import faulty
from clipsearch import Settings, add_paths, create_index, load_encoder, open_index
from clipsearch.ingest.batch import decode_file
from clipsearch.store.records import Failure
from support.clirun import Cli
from clipsearch.media.files import display_path, scan
from clipsearch.ingest.pool import decoding_pool, guarded_map

ROOT = Path(__file__).resolve().parents[1]
# Root reads anything, chmod 000 or not: run the CLI without the two capabilities that allow it.
_NO_DAC = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
           "--bounding-set=-dac_override,-dac_read_search", "--"]


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return load_encoder(str(tiny_model.config), str(tiny_model.weights))


def _unprivileged() -> tuple[list[str], bool]:
    """(command prefix, whether permissions will deny reads) for this user."""
    if os.geteuid() != 0:
        return [], True
    return (_NO_DAC, True) if shutil.which("setpriv") else ([], False)


def test_hostile_corpus_every_file_indexed_or_recorded(tiny_model, tmp_path):
    photos, idx = tmp_path / "photos", tmp_path / "idx"
    c = corpus.write_corpus(photos)
    prefix, denied = _unprivileged()
    if not denied:  # root without setpriv: permissions deny nothing, so those files are good
        c.good.append(c.bad.pop(str(photos / corpus.UNREADABLE_FILE)))
        c.good += c.locked_files
        c.locked_dirs, c.locked_files = [], []
    try:
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "clipsearch.cli", "index", str(photos), "--index", str(idx),
             "--workers", "2", "--json", "--quiet", "--model", str(tiny_model.config),
             "--pretrained", str(tiny_model.weights)],
            capture_output=True, text=True, errors="replace", env=os.environ | {"PYTHONPATH": str(ROOT)},
            timeout=600)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        summary = json.loads(proc.stdout)

        # Every good file indexed, under its exact path (non-UTF-8 bytes included) ...
        rows = open_index(idx).images.all_rows()
        assert sorted({r.path for r in rows}) == sorted(c.good)  # a video: several rows, one path
        assert all(os.path.lexists(r.path) and r.hash for r in rows)
        # ... every bad one recorded with its reason, size and mtime, and nothing unaccounted for.
        failed = Cli(tiny_model, idx).json("info", "--failed")
        assert {f["path"]: f["reason"] for f in failed}.keys() == {display_path(p) for p in c.bad}
        for f in failed:
            phrase = next(v for p, v in c.bad.items() if display_path(p) == f["path"])
            assert phrase in f["reason"], f
        found = scan([photos])
        assert sorted(found.paths) == sorted(c.good + list(c.bad) + c.locked_files)
        assert dict(found.not_media) == c.not_media
        assert [d["path"] for d in summary["skipped_dirs"]] == c.locked_dirs
        assert summary["new"] == len(c.good) and len(summary["failed"]) == len(c.bad)
        assert summary["skipped"] == dict(Counter(c.not_media.values()))
        # Scanned = indexed + recorded failures + skipped as not images; nothing unaccounted for.
        assert len(found.paths) + len(found.not_media) == (
            summary["new"] + len(failed) + summary["skipped_total"] + len(c.locked_files))
    finally:
        corpus.unlock(photos)

    # Re-run (permissions back): known failures are not retried, unreadable ones are, and now pass.
    again = Cli(tiny_model, idx).json("index", photos, "--workers", "1")
    retried = {p for p, v in c.bad.items() if "can't read" in v}
    assert again["known_failed"] == len(c.bad) - len(retried)
    assert again["unchanged"] == len(c.good) and again["new"] == (2 if denied else 0)
    assert {f["path"] for f in again["failed"]} == {display_path(p) for p in retried} - {
        str(photos / corpus.UNREADABLE_FILE)}


def test_hanging_and_crashing_decoders_cost_one_file_each(encoder, shapes_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    good = sorted(shapes_dir.glob("*.png"))[:4]
    for p in good:
        shutil.copy(p, photos / p.name)
    for name, src in zip(("hang.png", "segv.png", "exit.png"), sorted(shapes_dir.glob("*.png"))[4:]):
        shutil.copy(src, photos / name)
    index = create_index(tmp_path / "idx", encoder.identity)
    settings = Settings().with_(file_timeout_s=10.0)

    def run():
        with decoding_pool(1) as pool:
            return add_paths(index, encoder, [str(photos)], settings, decode_map=lambda fn, xs: guarded_map(
                pool, functools.partial(faulty.sabotage, fn), xs, 4, settings.file_timeout_s))

    summary = run()

    reasons = {Path(f.path).name: f.reason for f in summary.failed}
    assert "took over 10 s" in reasons.pop("hang.png")
    assert "killed by SIGSEGV" in reasons.pop("segv.png")
    assert "exit code 3" in reasons.pop("exit.png")
    assert reasons == {} and summary.new == len(good) == len(index)
    again = run()  # recorded failures of unchanged files are not retried: no second wait
    assert again.failed == [] and again.known_failed == 3 and again.unchanged == len(good)


def test_file_changing_while_read_is_retried_next_run(encoder, shapes_dir, tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    shutil.copytree(shapes_dir, photos)
    victim = sorted(photos.glob("*.png"))[0]
    import clipsearch.ingest.batch as batch

    real = batch.frames_of

    def load_and_edit(path, *args, **kw):
        frames = real(path, *args, **kw)
        if Path(path) == victim:
            with open(victim, "ab") as f:
                f.write(b"appended while it was being read")
        return frames

    monkeypatch.setattr(batch, "frames_of", load_and_edit)
    index = create_index(tmp_path / "idx", encoder.identity)
    first = add_paths(index, encoder, [str(photos)])
    assert [(Path(f.path), "changed while being read" in f.reason) for f in first.failed] == [(victim, True)]
    monkeypatch.setattr(batch, "frames_of", real)
    second = add_paths(index, encoder, [str(photos)])
    assert second.new == 1 and second.failed == [] and index.failures.all() == []


def test_file_vanishing_mid_run_is_recorded_then_forgotten(encoder, shapes_dir, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(shapes_dir, photos)
    victim = sorted(photos.glob("*.png"))[3]

    def delete_then_map(fn, paths):
        victim.unlink(missing_ok=True)
        return map(fn, paths)

    index = create_index(tmp_path / "idx", encoder.identity)
    first = add_paths(index, encoder, [str(photos)], decode_map=delete_then_map)
    assert [Path(f.path) for f in first.failed] == [victim] and "can't read" in first.failed[0].reason
    assert [Path(f.path) for f in index.failures.all()] == [victim]
    second = add_paths(index, encoder, [str(photos)])
    assert second.failed == [] and index.failures.all() == [] and second.unchanged == len(index)


def test_decode_file_never_raises_for_odd_paths(encoder, tmp_path):
    weird = tmp_path / os.fsdecode(b"\xff\xfe.png")
    for path in (weird, tmp_path, tmp_path / "nul\0byte.png"):
        assert isinstance(decode_file(str(path), encoder.preprocess, 10**8), Failure)
