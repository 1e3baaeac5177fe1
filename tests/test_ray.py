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
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from support import corpus
from support import shapes
from support.clirun import Cli, model_args
from clipsearch import AnnIndex, ModelIdentity, Settings, create_index, load_encoder, open_index
from clipsearch.ann import catalog
from clipsearch.indexer.pipeline import FAILPOINT_ENV
from clipsearch.indexer.ray_tables import Written

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 24  # files per chunk (= per commit): 5 chunks of 118 files


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-photos")
    shapes.write_folder(root / "shapes", n_per_label=4, size=64)
    corpus.write_corpus(root / "odd")
    yield root
    corpus.unlock(root / "odd")


def _index(tiny_model, photos: Path, index_dir: Path, *extra: str):
    return Cli(tiny_model, index_dir)("index", photos, "--commit-every", CHUNK, "--quiet", *extra, ok=True)


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
    query = Cli(tiny_model, tmp_path / "index")("query", "a red circle", ok=True)
    assert "red_circle" in query.output.splitlines()[0], query.output


def test_ray_index_names_places_as_the_single_machine_index(tiny_model, library, ray_cluster, tmp_path):
    """Both commit paths store the place names of GPS photos, so `--place` finds them after `--ray`."""
    photos, single = library
    cli = Cli(tiny_model, tmp_path / "index")
    cli("index", photos, "--quiet", "--ray-address", ray_cluster.address, ok=True)
    found = cli.json("query", "a shape", "--place", "paris")
    assert [h["path"] for h in found] == [str(photos / "trips" / "paris.jpg")]

    def places(c: Cli) -> dict:
        return {h["path"]: (h["city"], h["region"], h["country"]) for h in c.json("query", "a shape", "-k", "10")}

    got = places(cli)
    assert got == places(Cli(tiny_model, single))
    assert sum(city is not None for city, _, _ in got.values()) == 4  # paris, sydney, nyc, rio


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


def _part(chunk: int, fragment: str, rows=(), failures=(), frames=None) -> Written:
    """A write task's output for `chunk` (a failure's id: its path's number)."""
    ids = frozenset([r.id for r in rows] + [int(f.path[2:]) for f in failures])
    frames = frames or {p: 1 for p in [r.path for r in rows] + [f.path for f in failures]}
    return Written(chunk, [fragment], list(rows), list(failures), ids, frames)


def test_a_repeated_write_output_is_dropped_not_committed_twice():
    """A retried write task can hand back rows already received: they must not become rows twice;
    a video's frames may come back in parts: its chunk is complete once all are in."""
    from clipsearch import Failure, IndexDirError
    from clipsearch.indexer.ray_pipeline import _chunks
    from clipsearch.store.records import Row

    chunk = _chunks(["/a", "/b", "/c", "/d"], 4, np.array([10, 74, 138, 202]))[0]
    a, b, bad = Row(10, "/a", 1, 0.0, 8, 8), Row(74, "/b", 1, 0.0, 8, 8), Failure("/138", "not an image")
    d0, d1 = (Row(202 + n, "/d", 1, 0.0, 8, 8, "", float(n)) for n in range(2))
    assert chunk.take(_part(0, "frag-a", [a])) and not chunk.complete
    assert not chunk.take(_part(0, "frag-a-again", [a]))  # the retry's output: dropped
    assert chunk.take(_part(0, "frag-b", [b], [bad])) and not chunk.complete
    with pytest.raises(IndexDirError):
        chunk.take(_part(0, "frag-bd", [b, d0]))  # partly new: refused
    assert chunk.take(_part(0, "frag-d0", [d0], frames={"/d": 2})) and not chunk.complete  # 1 of 2 frames
    assert chunk.take(_part(0, "frag-d1", [d1], frames={"/d": 2})) and chunk.complete
    assert chunk.fragments == ["frag-a", "frag-b", "frag-d0", "frag-d1"] and chunk.failures == [bad]


def test_stage_tables_carry_rows_exactly_as_arrow_and_tensors():
    """Files -> picture table (pixels a tensor column) -> with vectors -> rows to store, and a write
    task's output back at the driver: every field as it was (a non-UTF-8 path, a video's frames
    numbered from its first id, photo metadata, a failure), and no column of pickled objects."""
    from datetime import datetime

    import pyarrow as pa

    from clipsearch import Failure
    from clipsearch.indexer import ray_tables
    from clipsearch.ingest.batch import Decoded
    from clipsearch.media.photometa import PhotoMeta
    from clipsearch.store.records import Row

    meta = PhotoMeta(taken=datetime(2023, 7, 14, 12), taken_source="exif", lat=48.8566, lon=2.3522, kind="photo")
    photo = Decoded((Row(-1, "/p/caf\udce9.jpg", 9, 1.5, 64, 48, "ab", None, meta),), np.full((1, 4, 4, 3), 1, np.uint8))
    video = Decoded(tuple(Row(-1, "/p/v.mp4", 7, 2.5, 32, 24, "cd", t, meta) for t in (0.0, 2.0)),
                    np.full((2, 4, 4, 3), 2, np.uint8))
    bad = Failure("/p/bad.png", "not an image", 3, 4.5)
    table = ray_tables.pictures([(0, 10, photo), (1, 20, video), (1, 30, bad)], 4)
    assert not any(pa.types.is_binary(f.type) for f in table.schema if f.name != "path")
    assert isinstance(table.schema.field("pixels").type, pa.ExtensionType)
    np.testing.assert_array_equal(ray_tables.tensor(table, "pixels")[:, 0, 0, 0], [1, 2, 2, 0])

    xb = np.arange(8, dtype=np.float32).reshape(4, 2)
    table = ray_tables.with_tensor(table.drop_columns(["pixels"]), "vector", xb)
    parts = dict(ray_tables.by_chunk(table))
    rows, vectors = ray_tables.stored(parts[1])
    assert rows == [replace(r, id=20 + n) for n, r in enumerate(video.rows)]
    np.testing.assert_array_equal(vectors, xb[1:3])
    assert ray_tables.stored(parts[0])[0] == [replace(photo.rows[0], id=10)]

    out = ray_tables.written([(c, [], t) for c, t in parts.items()])
    got = {w.chunk: w for w in ray_tables.read_written(out)}
    assert got[0].rows == [replace(photo.rows[0], id=10, meta=None)] and got[0].frames == {"/p/caf\udce9.jpg": 1}
    assert got[1].failures == [bad] and got[1].ids == {20, 21, 30} and got[1].frames == {"/p/v.mp4": 2, "/p/bad.png": 1}


def test_without_an_address_a_run_starts_its_own_cluster(monkeypatch):
    """Not the last cluster started on this machine (Ray's choice for address None): someone else's."""
    from clipsearch.indexer.ray_pipeline import _init_options

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert _init_options(None)["address"] == "local"
    assert _init_options("10.0.0.1:6379")["address"] == "10.0.0.1:6379"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.2:6379")
    assert _init_options(None)["address"] == "10.0.0.2:6379"


def _killed_run(tiny_model, photos: Path, index_dir: Path, address: str, failpoint: str | None):
    env = os.environ | {"PYTHONPATH": str(ROOT), FAILPOINT_ENV: failpoint or ""}
    proc = subprocess.run(
        [sys.executable, "-m", "clipsearch.cli", "index", str(photos), "--index", str(index_dir),
         "--commit-every", str(CHUNK), "--quiet", "--ray-address", address, *model_args(tiny_model, index_dir)],
        capture_output=True, text=True, errors="replace", env=env, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode


def test_driver_killed_between_and_inside_chunks_then_rerun(tiny_model, tiny_towers, photos, reference,
                                                             ray_cluster, tmp_path):
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
