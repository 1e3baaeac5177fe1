"""`clipsearch index --ray` on a local three-node Ray cluster against the single-machine `index`.

One folder of shape images plus every kind of broken file (corpus.py). The Ray index must equal
the single-machine one (same paths, vectors within cosine 0.9999, same failures), also when a
worker node is removed mid-run and when the driver is killed between and inside chunks and run
again (then also: no duplicates, and no committed row encoded twice).
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from support import corpus
from support import shapes
from clipsearch import AnnIndex, ModelIdentity, Settings, create_index, load_encoder, open_index
from clipsearch.ann import catalog
from clipsearch.cli import main
from clipsearch.indexer.pipeline import FAILPOINT_ENV

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 24  # files per chunk (= per commit): 5 chunks of 118 files


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-photos")
    shapes.write_folder(root / "shapes", n_per_label=4, size=64)
    corpus.write_corpus(root / "odd")
    yield root
    corpus.unlock(root / "odd")


def _model_args(tiny_model) -> list[str]:
    return ["--model", str(tiny_model.config), "--pretrained", str(tiny_model.weights)]


def _index(tiny_model, photos: Path, index_dir: Path, *extra: str):
    args = ["index", str(photos), "--index", str(index_dir), "--commit-every", str(CHUNK), "--quiet",
            *_model_args(tiny_model), *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def reference(tiny_model, photos, tmp_path_factory) -> dict:
    """What the single-machine `clipsearch index` makes of `photos`."""
    idx = tmp_path_factory.mktemp("ray-reference") / "index"
    _index(tiny_model, photos, idx, "--workers", "1")
    return _contents(idx)


def _contents(index_dir: Path, finished: bool = True) -> dict:
    """path -> unit vector, and path -> failure reason, of an index (asserting it has no duplicates,
    and, after a run that `finished`, that its saved ANN index is current)."""
    index = open_index(index_dir)
    rows = index.images.all_rows()
    ids, xb = index.images.vectors()
    vec = dict(zip(ids.tolist(), xb))
    assert len({(r.path, r.time_s) for r in rows}) == len(rows), "duplicate rows"
    if finished:
        saved = catalog.read(index.images.ann_folder)  # committed for this very table version
        assert saved.generation == index.images.version and len(index.images.ann()) == len(rows)
    return {"vectors": {(r.path, r.time_s): vec[r.id] for r in rows},  # a video: a row per frame
            "ids": {(r.path, r.time_s): r.id for r in rows},
            "failed": {f.path: f.reason for f in index.failures.all()}}


def _assert_same(got: dict, want: dict) -> None:
    assert sorted(got["vectors"], key=str) == sorted(want["vectors"], key=str)
    cos = [float(got["vectors"][p] @ want["vectors"][p]) for p in want["vectors"]]
    assert min(cos) >= 0.9999
    assert got["failed"] == want["failed"]


def test_ray_index_equals_single_machine_index(tiny_model, photos, reference, ray_cluster, tmp_path):
    _index(tiny_model, f"file://{photos}", tmp_path / "index", "--ray-address", ray_cluster.address)
    got = _contents(tmp_path / "index")
    _assert_same(got, reference)
    assert len(got["vectors"]) > 100 and len(got["failed"]) >= 10  # the corpus did its job
    assert len({p for p, _ in got["vectors"]}) < len(got["vectors"])  # a video's frames among them
    query = CliRunner().invoke(main, ["query", "a red circle", "--index", str(tmp_path / "index"),
                                      *_model_args(tiny_model)])
    assert query.exit_code == 0 and "red_circle" in query.output.splitlines()[0], query.output


def test_worker_node_removed_mid_run_changes_nothing(tiny_model, photos, reference, ray_cluster, tmp_path):
    from clipsearch.indexer.ray_pipeline import Cluster, run

    make_encoder = functools.partial(load_encoder, str(tiny_model.config), str(tiny_model.weights))
    encoder = make_encoder()
    removed = []

    def remove_a_worker(stage: str) -> None:
        if stage == "written" and not removed:  # the first chunk is under way, the others queued
            removed.append(ray_cluster.worker_nodes and next(iter(ray_cluster.worker_nodes)))
            ray_cluster.remove_node(removed[0])

    try:
        run(create_index(tmp_path / "index", encoder.identity), encoder, make_encoder, [str(photos)],
            Settings(commit_every=CHUNK), Cluster(ray_cluster.address), checkpoint=remove_a_worker)
    finally:
        if removed:
            ray_cluster.add_node(num_cpus=2, object_store_memory=150 * 1024 * 1024)
            ray_cluster.wait_for_nodes()
    assert removed
    _assert_same(_contents(tmp_path / "index"), reference)


def test_a_repeated_write_output_is_dropped_not_committed_twice():
    """A retried write task can hand back rows already received: they must not become rows twice."""
    from clipsearch import Failure, IndexDirError
    from clipsearch.indexer.ray_pipeline import _chunks
    from clipsearch.store.records import Row

    chunk = _chunks(["/a", "/b", "/c", "/d"], 4, np.array([10, 74, 138, 202]))[0]
    a, b, bad = Row(10, "/a", 1, 0.0, 8, 8), Row(74, "/b", 1, 0.0, 8, 8), Failure("/c", "not an image")
    assert chunk.take([a], ["frag-a"], []) and not chunk.complete
    assert not chunk.take([a], ["frag-a-again"], [])  # the retry's output: dropped
    assert chunk.take([b], ["frag-b"], [bad]) and not chunk.complete
    with pytest.raises(IndexDirError):
        chunk.take([b, Row(202, "/d", 1, 0.0, 8, 8)], ["frag-bd"], [])  # partly new: refused
    assert chunk.take([Row(202, "/d", 1, 0.0, 8, 8)], ["frag-d"], []) and chunk.complete
    assert chunk.fragments == ["frag-a", "frag-b", "frag-d"] and chunk.failures == [bad]


def _killed_run(tiny_model, photos: Path, index_dir: Path, address: str, failpoint: str | None):
    env = os.environ | {"PYTHONPATH": str(ROOT), FAILPOINT_ENV: failpoint or ""}
    proc = subprocess.run(
        [sys.executable, "-m", "clipsearch.cli", "index", str(photos), "--index", str(index_dir),
         "--commit-every", str(CHUNK), "--quiet", "--ray-address", address, *_model_args(tiny_model)],
        capture_output=True, text=True, errors="replace", env=env, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode


def test_driver_killed_between_and_inside_chunks_then_rerun(tiny_model, photos, reference, ray_cluster,
                                                             tmp_path):
    idx = tmp_path / "index"
    # between chunks (the second's rows committed, its failures not yet), then, on the re-run, inside
    # one (the third batch of fragments written, not committed; at most 3 of its 3 chunks done)
    seen: dict[str, int] = {}
    for failpoint in ("added:2", "written:3"):
        assert _killed_run(tiny_model, photos, idx, ray_cluster.address, failpoint) == -signal.SIGKILL
        now = _contents(idx, finished=False)["ids"]
        assert now, "nothing was committed before the kill"
        for path, id_ in seen.items():
            assert now.get(path) == id_, f"{path} was encoded again (or lost)"
        seen |= now
        assert len(now) < len(reference["vectors"])  # killed part way
    assert _killed_run(tiny_model, photos, idx, ray_cluster.address, None) == 0
    final = _contents(idx)
    assert all(final["ids"][p] == i for p, i in seen.items()), "a committed row was encoded again"
    _assert_same(final, reference)


def test_sharded_ann_build_on_ray_equals_single_build(ray_cluster, tmp_path, monkeypatch):
    """Ray tasks each read their own Lance fragments (deleted rows excluded) and write them as segments
    under the same trained quantizer; the adopted segments answer as one build does, exactly at
    nprobe = nlist."""
    import ray

    from clipsearch import AnnSpec
    from clipsearch.indexer import ray_ann
    from clipsearch.store.records import Row

    rng = np.random.default_rng(0)
    xb = rng.normal(size=(12_000, 16)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    index = create_index(tmp_path / "index", ModelIdentity("synthetic", "random", 16))
    images = index.images
    for part in np.array_split(np.arange(len(xb)), 4):  # 4 commits: 4 fragments; ids 0..11999
        images.add([Row(-1, f"/p/{i}.jpg", 1, 0.0, 64, 64, "") for i in part], xb[part])
    images.remove(list(range(0, 12_000, 7)))
    keep = np.array([i for i in range(12_000) if i % 7], np.int64)
    spec = AnnSpec("ivfpq", 16, nlist=16, m=4, nbits=8, train_size=len(keep), nprobe=4)
    monkeypatch.setattr(ray_ann, "SHARD_ROWS", 2_000)  # a shard per fragment (2,571 rows each)
    ray.init(address=ray_cluster.address, log_to_driver=False)
    try:
        with index.writing():
            ray_ann.build(images, spec)
    finally:
        ray.shutdown()
    sharded = images.ann()
    assert len(sharded.segments) == 4  # one segment a shard
    single = AnnIndex.build(xb[keep], keep, spec)
    xq = xb[rng.integers(0, 12_000, 20)]
    Ds, Is = sharded.search(xq, 5, spec.nlist)
    D1, I1 = single.search(xq, 5, spec.nlist)
    assert len(sharded) == len(keep)
    np.testing.assert_allclose(Ds, D1, atol=1e-5)
    assert (Is == I1).mean() > 0.98  # equal but for ties between equal codes
    assert images.search(xq[:1], 1)[0][0].path == f"/p/{int(I1[0, 0])}.jpg"  # records from the segments
