"""`clipsearch reindex`: a second vector set beside the first, while the index stays in use.

Two tiny models whose embeddings disagree (64-d and 48-d): the index starts on A (`cli`'s copy of
the shapes index, with a "captions" text collection) and moves to B.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support import shapes
from clipsearch import load_encoder, open_index
from clipsearch.media.image import load_image, to_pixels
from clipsearch.indexer.pipeline import FAILPOINT_ENV

ROOT = Path(__file__).resolve().parents[1]


def _model_args(model) -> list[str]:
    return ["--model", str(model.config), "--pretrained", str(model.weights)]


def _start_reindex(index_dir: Path, model, failpoint: str, *extra) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(ROOT), FAILPOINT_ENV: failpoint}
    return subprocess.Popen(
        [sys.executable, "-m", "clipsearch.cli", "reindex", "--index", str(index_dir), *_model_args(model),
         "--workers", "1", "--batch-size", "4", "--commit-every", "8", "--quiet", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


def _wait_stopped(proc: subprocess.Popen) -> None:
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), f"reindex ended before its failpoint (status {status}): {proc.stderr.read()}"


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    os.waitpid(proc.pid, 0)


def _vectors_match(index_dir: Path, model, paths: list[Path], prefix: str | None = None) -> None:
    """The vectors stored for `paths` in the set with table `prefix` (the active set when None) are
    `model`'s encodings."""
    from clipsearch.ingest.reindex import VectorSet

    enc = load_encoder(str(model.config), str(model.weights))
    idx = open_index(index_dir)
    images = idx.images if prefix is None else VectorSet(idx, prefix, enc.dim, idx.lock).images
    by_path = {r.path: r.id for r in images.all_rows()}
    stored = images.vectors_of(np.array([by_path[str(p)] for p in paths]))
    px = np.stack([to_pixels(load_image(str(p)), enc.preprocess.size) for p in paths])
    np.testing.assert_allclose(stored, enc.encode_pixels(px), atol=1e-4)


@pytest.mark.slow
def test_killed_half_way_while_queries_and_index_go_on(cli, tiny_model, tiny_model_b, tmp_path):
    before = cli.json("query", "a red circle", "-k", "5")
    proc = _start_reindex(cli.index_dir, tiny_model_b, "reindex-commit:2:stop")
    try:
        _wait_stopped(proc)  # half-way: 16 of 48 images re-encoded, the texts all done
        pending = cli.json("info", model=False)["vector_sets"]["pending"]
        assert (pending["images_done"], pending["images_total"]) == (16, 48)
        assert (pending["texts_done"], pending["texts_total"]) == (24, 24)
        assert pending["model"]["dim"] == 48
        # Queries answer from the old model, exactly as before; `index` adds files meanwhile.
        assert cli.json("query", "a red circle", "-k", "5") == before
        new = tmp_path / "new"
        new.mkdir()
        added = [new / "red_circle_new.png", new / "blue_square_new.png"]
        shapes.draw("red", "circle", seed=99).save(added[0])
        shapes.draw("blue", "square", seed=98).save(added[1])
        cli("index", new, "--workers", "1", "--quiet", ok=True)
    finally:
        _kill(proc)
    assert open_index(cli.index_dir).identity.dim == 64  # killed: nothing switched
    out = cli.json("reindex", *_model_args(tiny_model_b), "--workers", "1", "--keep", model=False)
    assert out["switched"] and out["unreadable"] == []
    assert (out["encoded"], out["texts"]) == (48 + 2 - 16, 0)  # nothing encoded twice
    info = cli.json("info", model=False)
    assert info["model"]["dim"] == 48 and info["images"] == 50 and "pending" not in info["vector_sets"]
    assert [k["images"] for k in info["vector_sets"]["kept"]] == [50]
    # The files added during the re-index have both embeddings: B's (active) and A's (kept).
    _vectors_match(cli.index_dir, tiny_model_b, added)
    _vectors_match(cli.index_dir, tiny_model, added, prefix="")  # A's set kept the old table names
    hits = cli.json("query", "a red circle", "-k", "5", model=False)
    assert {Path(h["path"]).name for h in hits[:3]} >= {"red_circle_new.png"}
    assert [h["score"] for h in hits] != [h["score"] for h in before]  # now B's scores


@pytest.mark.slow
def test_switch_is_atomic_keep_and_switch_back(cli, tiny_model, tiny_model_b):
    before = cli.json("query", "a red circle", "-k", "5")
    texts_before = cli.json("query", "--image", next(iter(_shape_files(cli))), "--texts", "-k", "3")
    # Killed after everything was encoded, just before the manifest is rewritten: still on A.
    proc = _start_reindex(cli.index_dir, tiny_model_b, "reindex-switch:1:kill", "--keep")
    proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL
    assert cli.json("query", "a red circle", "-k", "5") == before
    out = cli.json("reindex", *_model_args(tiny_model_b), "--keep", model=False)
    assert out["switched"] and (out["encoded"], out["texts"]) == (0, 0)
    on_b = cli.json("query", "a red circle", "-k", "5", model=False)
    assert on_b != before and open_index(cli.index_dir).identity.dim == 48
    # Switch back: the kept set is current, so nothing is encoded, and A answers exactly as before.
    out = cli.json("reindex", *_model_args(tiny_model), model=False)
    assert out["switched"] and (out["encoded"], out["texts"]) == (0, 0) and out["kept"] == ""
    assert cli.json("query", "a red circle", "-k", "5") == before
    assert cli.json("query", "--image", next(iter(_shape_files(cli))), "--texts", "-k", "3") == texts_before
    # Without --keep the old set is gone: B's tables were dropped.
    info = cli.json("info", model=False)
    assert info["vector_sets"]["kept"] == [] and not list(cli.index_dir.glob("s1_*"))  # its ANN folders too
    assert not [p for p in (cli.index_dir / "lance").iterdir() if p.name.startswith("s1_")]


class _Interrupted(Exception):
    pass


def _interrupt(stage: str) -> None:
    raise _Interrupted(stage)


def test_abort_drops_the_pending_set(cli, tiny_model_b):
    from clipsearch.ingest.reindex import reindex

    encoder = load_encoder(str(tiny_model_b.config), str(tiny_model_b.weights))
    with pytest.raises(_Interrupted):  # stopped after its first commit
        reindex(open_index(cli.index_dir, writable=True), encoder, commit_every=8, checkpoint=_interrupt)
    assert cli.json("info", model=False)["vector_sets"]["pending"]["images_done"] == 8
    assert "dropped the unfinished re-index" in cli("reindex", "--abort", ok=True).output
    assert "pending" not in cli.json("info", model=False)["vector_sets"]
    assert not [p for p in (cli.index_dir / "lance").iterdir() if p.name.startswith("s1_")]


def _shape_files(cli) -> list[Path]:
    return sorted(Path(r.path) for r in open_index(cli.index_dir).images.all_rows())


def test_video_frames_are_re_encoded_from_their_file(tiny_model, tiny_model_b, tmp_path):
    from support.clips import write_video
    from clipsearch import add_paths, create_index
    from clipsearch.ingest.reindex import reindex

    photos = tmp_path / "photos"
    photos.mkdir()
    write_video(photos / "clip.mp4", [("red", "circle", 3.0), ("blue", "star", 3.0)])
    shapes.draw("green", "square", seed=1).save(photos / "square.png")
    a = load_encoder(str(tiny_model.config), str(tiny_model.weights))
    add_paths(create_index(tmp_path / "idx", a.identity), a, [str(photos)])
    rows = open_index(tmp_path / "idx").images.all_rows()
    frames = [r for r in rows if r.time_s is not None]
    assert len(frames) >= 2
    b = load_encoder(str(tiny_model_b.config), str(tiny_model_b.weights))
    out = reindex(open_index(tmp_path / "idx", writable=True), b)
    assert out.switched and out.encoded == len(rows) and out.unreadable == []
    idx = open_index(tmp_path / "idx")
    assert sorted((r.id, r.time_s) for r in idx.images.all_rows()) == sorted((r.id, r.time_s) for r in rows)
    hits = idx.images.search(b.encode_texts(["a blue star"]), 1)[0]
    assert hits[0].path.endswith("clip.mp4") and hits[0].time_s >= 2.0
