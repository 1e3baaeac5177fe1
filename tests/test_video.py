"""Videos: sampled frames as rows with their time, found by text and by image, kept incremental."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from support import shapes
from support.clips import write_video
from clipsearch import Decoded, Failure, Matcher, Request, Term, add_paths, create_index, decode_file, load_encoder
from clipsearch.search.algebra import IMAGE
from clipsearch.ingest.changes import find_changes
from support.clirun import Cli, model_args
from clipsearch.config import VideoSampling
from clipsearch.media.files import Scan
from clipsearch.store.records import Row
from clipsearch.media.video import frame_at, sample_video

SCENES = [("red", "circle", 3.0), ("blue", "star", 3.0)]  # a red circle for 3 s, then a blue star
OTHERS = [("green", "square"), ("yellow", "triangle"), ("red", "circle"), ("purple", "star")]


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return load_encoder(str(tiny_model.config), str(tiny_model.weights))


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    shapes.write_folder(root, n_per_label=1, labels=OTHERS)
    write_video(root / "clip.mp4", SCENES)
    return root


def _keep(img):
    return np.asarray(img.resize((8, 8)))


def test_sampling_takes_periodic_frames_and_the_cut(tmp_path):
    write_video(tmp_path / "v.mkv", [("red", "circle", 3.0), ("blue", "star", 7.0)], codec="mpeg4")
    frames = sample_video(tmp_path / "v.mkv", _keep, max_pixels=10**8, sampling=VideoSampling(every_s=2.0))
    times = [f.time_s for f in frames]
    assert 3.0 in times  # the cut
    assert times == sorted(times) and times[0] == 0.0 and times[-1] >= 8.0
    assert all(b - a <= 2.5 for a, b in zip(times, times[1:]))  # none of the 10 s left unsampled
    capped = sample_video(tmp_path / "v.mkv", _keep, max_pixels=10**8, sampling=VideoSampling(max_frames=3))
    assert len(capped) == 3 and 3.0 in [f.time_s for f in capped]
    blue = frame_at(tmp_path / "v.mkv", 5.0, max_pixels=10**8)
    r, g, b = np.asarray(blue, np.float32).reshape(-1, 3).mean(0)
    assert b > r  # the star's scene


def test_blue_star_query_lands_on_the_video_near_3_s(tiny_model, photos, tmp_path):
    run = Cli(tiny_model, tmp_path / "idx", ok=True)
    out = run("index", photos, "--workers", "1", "--quiet", "--json")
    summary = json.loads(out.output)
    assert summary["new"] == len(OTHERS) + 1 and summary["videos"] == 1 and summary["frames"] >= 2
    hits = json.loads(run("query", "a blue star", "-k", "3", "--json").output)
    assert hits[0]["path"] == str(photos / "clip.mp4") and abs(hits[0]["time_s"] - 3.0) <= 1.0, hits
    assert all(h["time_s"] is None for h in hits if h["path"] != str(photos / "clip.mp4"))
    lines = run("query", "a blue star", "-k", "1").output.splitlines()
    assert lines[0].endswith(f"clip.mp4@00:0{int(hits[0]['time_s'])}")
    red = run("query", "a red circle", "-k", "5", "--json").output
    assert any(h["path"].endswith("clip.mp4") and h["time_s"] < 3.0 for h in json.loads(red))


def test_image_queries_find_frames_and_frames_find_texts(encoder, photos, tmp_path):
    from clipsearch import add_texts, open_texts

    index = create_index(tmp_path / "idx", encoder.identity)
    add_paths(index, encoder, [str(photos)])
    shapes.draw("blue", "star", size=64, seed=5).save(tmp_path / "query.png")
    matcher = Matcher(encoder, index, max_pixels=10**8, duplicate_threshold=1.0)
    hit = matcher.run(Request([Term(IMAGE, str(tmp_path / "query.png"))], k=1)).matches[0].hit
    assert hit.path.endswith("clip.mp4") and abs(hit.time_s - 3.0) <= 1.0
    add_texts(index, encoder, "captions", [shapes.caption(c, s) for c, s in shapes.LABELS])
    frame = index.images.vectors_of(np.array([hit.id]))[0]  # image -> text from a frame's vector
    best = open_texts(index, "captions").search(frame[None], k=1)[0][0]
    assert best.text == "a blue star"


def test_changed_moved_and_removed_videos(encoder, photos, tmp_path):
    index = create_index(tmp_path / "idx", encoder.identity)
    first = add_paths(index, encoder, [str(photos)])
    clip = str(photos / "clip.mp4")
    frames = sorted(r.time_s for r in index.images.all_rows() if r.path == clip)
    assert first.videos == 1 and first.frames == len(frames) >= 2

    write_video(photos / "clip.mp4", [("blue", "star", 1.0), ("red", "circle", 5.0)])  # edited
    changed = add_paths(index, encoder, [str(photos)])
    assert (changed.changed, changed.new, changed.videos) == (1, 0, 1)
    rows = [r for r in index.images.all_rows() if r.path == clip]
    assert sorted(r.time_s for r in rows) != frames and len({r.time_s for r in rows}) == len(rows)
    assert len({(r.size, r.mtime) for r in rows}) == 1  # only the new version's frames

    shutil.move(clip, photos / "renamed.mp4")
    moved = add_paths(index, encoder, [str(photos)])
    assert (moved.moved, moved.new, moved.removed, moved.frames) == (1, 0, 0, 0)
    assert sorted(r.time_s for r in index.images.all_rows() if r.path.endswith("renamed.mp4")) == sorted(
        r.time_s for r in rows)
    (photos / "renamed.mp4").unlink()
    gone = add_paths(index, encoder, [str(photos)])
    assert gone.removed == 1 and not [r for r in index.images.all_rows() if r.path.endswith(".mp4")]
    assert len(index) == len(OTHERS) == gone.unchanged


def test_a_killed_run_leaving_two_versions_of_a_video_keeps_the_newer():
    old = [Row(i, "/v/clip.mp4", 100, 1.0, 64, 64, "aa", t) for i, t in enumerate((0.0, 2.0, 4.0))]
    new = [Row(10 + i, "/v/clip.mp4", 120, 2.0, 64, 64, "bb", t) for i, t in enumerate((0.0, 3.0))]
    found = Scan(paths=[])
    work = find_changes(old + new, [], found, ["/v"], lambda paths: [])
    assert sorted(work.stale) == [0, 1, 2] and sorted(work.gone) == [10, 11] and work.removed == 1


@pytest.mark.parametrize("name, make, reason", [
    ("truncated.mp4", lambda p: p.write_bytes(_clip_bytes(p)[:2000]), "not a video"),
    ("zero.mp4", lambda p: p.write_bytes(b""), "not a video"),
    ("unknown_codec.mkv", lambda p: p.write_bytes(_clip_bytes(p, ".mkv").replace(b"V_MPEG4/ISO/AVC", b"V_NO/SUCH/CODEC")),
     "video"),
    ("sound.webm", lambda p: p.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(200)), "video"),
])
def test_hostile_videos_are_one_recorded_failure(encoder, tmp_path, name, make, reason):
    path = tmp_path / name
    make(path)
    f = decode_file(str(path), encoder.preprocess, 10**8)
    assert isinstance(f, Failure) and reason in f.reason, f


def test_enormous_video_is_refused_before_decoding(encoder, tmp_path):
    write_video(tmp_path / "v.mp4", SCENES, size=64)
    assert isinstance(decode_file(str(tmp_path / "v.mp4"), encoder.preprocess, 10**8), Decoded)
    f = decode_file(str(tmp_path / "v.mp4"), encoder.preprocess, 64 * 64 - 1)
    assert isinstance(f, Failure) and "too large" in f.reason


def _clip_bytes(path, suffix: str = ".mp4") -> bytes:
    tmp = path.with_name("whole" + suffix)
    write_video(tmp, SCENES)
    return tmp.read_bytes()


@pytest.mark.slow
def test_killed_while_replacing_a_changed_video_then_resumed(tiny_model, tiny_towers, photos, tmp_path):
    """SIGKILL after a changed video's new frames are committed, before its old ones leave."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from clipsearch import open_index
    from clipsearch.indexer.pipeline import FAILPOINT_ENV

    root = Path(__file__).resolve().parents[1]

    def run(failpoint=""):
        return subprocess.run(
            [sys.executable, "-m", "clipsearch.cli", "index", str(photos), "--index", str(tmp_path / "idx"),
             "--workers", "1", "--quiet", "--json", *model_args(tiny_model, tmp_path / "idx")],
            capture_output=True, text=True, timeout=600,
            env=os.environ | {"PYTHONPATH": str(root), FAILPOINT_ENV: failpoint})

    def versions():
        rows = [r for r in open_index(tmp_path / "idx").images.all_rows() if r.path.endswith("clip.mp4")]
        return {(r.size, r.mtime) for r in rows}, rows

    assert run().returncode == 0
    write_video(photos / "clip.mp4", [("blue", "star", 2.0), ("green", "square", 2.0)])
    assert run("added:1").returncode == -signal.SIGKILL
    assert len(versions()[0]) == 2  # both versions' frames, for now
    again = json.loads(run().stdout)
    keys, rows = versions()
    assert again["changed"] == 0 and again["new"] == 0 and keys == {(os.stat(photos / "clip.mp4").st_size,
                                                                     os.stat(photos / "clip.mp4").st_mtime)}
    index = open_index(tmp_path / "idx")
    assert len(index.images.ann()) == len(index.images.all_rows())  # the ANN index dropped the old frames
