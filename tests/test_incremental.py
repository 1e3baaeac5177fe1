"""Incremental re-runs: only new and changed files are encoded; moves are recognised by content."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter

import lancedb
import numpy as np
import pytest

from support import shapes
from support.clirun import Cli
from clipsearch import Settings, add_paths, create_index, load_encoder, open_index
from clipsearch.ingest import update as ingest
from clipsearch.store.manifest import SCHEMA_VERSION


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return load_encoder(str(tiny_model.config), str(tiny_model.weights))


@pytest.fixture
def photos(shapes_dir, tmp_path):
    root = tmp_path / "photos"
    shutil.copytree(shapes_dir, root)
    return root


@pytest.fixture
def cli(tiny_model, tmp_path):
    """The CLI on a fresh index; `index` runs decode in one worker, quietly; every run must succeed
    unless told `ok=False`."""
    return Cli(tiny_model, tmp_path / "idx", index_options=("--workers", "1", "--quiet"), ok=True)


def _rows(index_dir) -> dict[str, object]:
    rows = open_index(index_dir).images.all_rows()
    assert len({r.path for r in rows}) == len(rows), "duplicate rows"
    return {r.path: r for r in rows}


def _vectors_by_path(index_dir) -> dict[str, np.ndarray]:
    index = open_index(index_dir)
    ids, xb = index.images.vectors()
    paths = index.images.rows(ids)
    return {paths[int(i)].path: x for i, x in zip(ids, xb)}


def test_rerun_counts_new_changed_moved_removed_unchanged(cli, photos):
    first = json.loads(cli("index", str(photos), "--json").output)
    before, vectors = _rows(cli.index_dir), _vectors_by_path(cli.index_dir)
    files = sorted(photos.glob("*.png"))
    shapes.draw("red", "star", seed=1).save(photos / "added_1.png")
    shapes.draw("blue", "circle", seed=2).save(photos / "added_2.png")
    shapes.draw("green", "square", seed=3).save(files[0])  # modified in place
    files[1].unlink()  # deleted
    files[2].rename(photos / "renamed.png")
    (photos / "sub").mkdir()
    files[3].rename(photos / "sub" / files[3].name)  # moved to another folder
    os.utime(files[4], (1e9, 1e9))  # touched: same bytes, new mtime

    again = json.loads(cli("index", str(photos), "--json").output)

    counts = {k: again[k] for k in ("new", "changed", "moved", "removed", "unchanged", "indexed")}
    assert counts == {"new": 2, "changed": 1, "moved": 2, "removed": 1,
                      "unchanged": first["new"] - 4, "indexed": 3}
    after = _rows(cli.index_dir)
    assert sorted(after) == sorted(str(p) for p in photos.rglob("*.png"))
    moved = {str(photos / "renamed.png"): str(files[2]), str(photos / "sub" / files[3].name): str(files[3])}
    new_vectors = _vectors_by_path(cli.index_dir)
    for new, old in moved.items():  # not encoded again: the very vector, under the new name
        np.testing.assert_array_equal(new_vectors[new], vectors[old])
        assert after[new].hash == before[old].hash
    assert after[str(files[4])].mtime == 1e9 and after[str(files[4])].id != before[str(files[4])].id
    for p in files[5:]:  # untouched files keep their rows
        assert after[str(p)] == before[str(p)]
    third = json.loads(cli("index", str(photos), "--json").output)
    assert third["indexed"] == third["moved"] == third["removed"] == 0


def test_failed_file_is_recorded_and_retried_only_when_it_changes(cli, photos):
    broken = photos / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    cli("index", str(photos))
    listing = cli("info", "--failed")
    assert f"{broken}: " in listing.output and "1 files could not be indexed" in listing.output
    recorded = json.loads(cli("info", "--failed", "--json").output)
    assert recorded == [{"path": str(broken), "reason": recorded[0]["reason"],
                         "size": broken.stat().st_size, "mtime": broken.stat().st_mtime}]

    again = json.loads(cli("index", str(photos), "--json").output)
    assert again["failed"] == [] and again["known_failed"] == 1 and again["indexed"] == 0

    shapes.draw("red", "circle", seed=5).save(broken, "PNG")  # fixed (a PNG named .jpg: fine)
    fixed = json.loads(cli("index", str(photos), "--json").output)
    assert fixed["new"] == 1 and fixed["known_failed"] == 0
    assert json.loads(cli("info", "--failed", "--json").output) == []


def test_remove_and_subfolder_reindex_keep_the_rest(cli, photos):
    (photos / "a").mkdir()
    (photos / "b").mkdir()
    files = sorted(photos.glob("*.png"))
    for i, f in enumerate(files):
        f.rename(photos / "ab"[i % 2] / f.name)
    (photos / "b" / "broken.png").write_bytes(b"nope")
    cli("index", str(photos))
    in_a = sorted(str(p) for p in (photos / "a").glob("*.png"))
    in_b = sorted(str(p) for p in (photos / "b").glob("*.png") if p.name != "broken.png")

    next(iter((photos / "a").glob("*.png"))).unlink()  # gone, but only `b` is re-indexed
    sub = json.loads(cli("index", str(photos / "b"), "--json").output)
    assert sub["removed"] == 0 and sub["unchanged"] == len(in_b)
    assert sorted(_rows(cli.index_dir)) == sorted(in_a + in_b)

    out = json.loads(cli("remove", str(photos / "b"), "--json").output)
    assert out["removed"] == len(in_b) and sorted(_rows(cli.index_dir)) == in_a
    assert json.loads(cli("info", "--failed", "--json").output) == []  # b's failure record went too
    hits = json.loads(cli("query", "a red circle", "--json", "-k", "50", model=False).output)
    assert sorted(h["path"] for h in hits) == in_a  # the ANN index agrees with the table
    assert "nothing in the index" in cli("remove", str(photos / "b"), ok=False).output
    assert "nothing in the index" in cli("remove", "/no/such/place", ok=False).output


def test_emptied_folder_drops_its_rows(cli, photos, shapes_dir):
    cli("index", str(photos))
    for p in photos.glob("*.png"):
        p.unlink()
    out = json.loads(cli("index", str(photos), "--json").output)
    assert out["total"] == 0 and out["removed"] == len(list(shapes_dir.glob("*.png")))


def test_non_utf8_and_odd_names_round_trip(cli, photos):
    odd = [os.fsdecode(b"caf\xe9 latin-1.png"), "new\nline.png", "tab\t and 😀.png", "-dash.png",
           "back\\xe9slash.png"]
    for i, name in enumerate(odd):
        shapes.draw("orange", "star", seed=100 + i).save(photos / name, "PNG")
    (photos / os.fsdecode(b"bad\xff.png")).write_bytes(b"garbage")
    cli("index", str(photos))
    rows = _rows(cli.index_dir)
    for name in odd:  # exact OS names, so the files can be opened again
        assert str(photos / name) in rows and os.path.exists(str(photos / name))
    # the non-UTF-8 name and the one that spells its escape literally stay two distinct files
    assert rows[str(photos / odd[0])].id != rows[str(photos / odd[4])].id
    failed = cli("info", "--failed").output
    assert f"{photos}/bad\\xff.png: " in failed
    again = json.loads(cli("index", str(photos), "--json").output)
    assert again["indexed"] == 0 and again["known_failed"] == 1
    listing = cli("query", "an orange star", "-k", "100").output  # printable, one line per hit
    assert f"{photos}/caf\\xe9 latin-1.png" in listing and f"{photos}/new\nline.png" in listing
    hits = json.loads(cli("query", "an orange star", "-k", "100", "--json").output)
    assert str(photos / odd[0]) in {h["path"] for h in hits}  # JSON keeps the exact OS name


def test_schema_1_index_is_read_then_upgraded(cli, photos, encoder, tmp_path):
    index = create_index(tmp_path / "old", encoder.identity)
    batch = add_paths(index, encoder, [str(photos)])
    assert batch.new > 0
    db = lancedb.connect(str(tmp_path / "old" / "lance"))
    old = db.open_table("images").to_arrow().drop_columns(["hash", "path_raw", "time_s"])  # as schema 1 wrote it
    db.drop_table("images")
    db.create_table("images", old)
    manifest = tmp_path / "old" / "manifest.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"schema_version": 1}))

    reader = open_index(tmp_path / "old")
    assert len(reader.images.all_rows()) == batch.new and all(r.hash == "" for r in reader.images.all_rows())
    assert all(r.time_s is None for r in reader.images.all_rows())
    writer = open_index(tmp_path / "old", writable=True)
    shapes.draw("red", "star", seed=9).save(photos / "one_more.png")
    summary = add_paths(writer, encoder, [str(photos)])
    assert summary.new == 1 and summary.unchanged == batch.new
    assert json.loads(manifest.read_text())["schema_version"] == SCHEMA_VERSION
    assert {"hash", "path_raw", "time_s"} <= set(db.open_table("images").schema.names)


def test_fragments_are_compacted_when_they_pile_up(tiny_model, photos, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "COMPACT_AT", 4)
    encoder = load_encoder(str(tiny_model.config), str(tiny_model.weights), batch_size=2)
    for p in sorted(photos.glob("*.png"))[12:]:
        p.unlink()  # 12 files: 6 commits of 2, past COMPACT_AT
    index = create_index(tmp_path / "idx", encoder.identity)
    summary = add_paths(index, encoder, [str(photos)], Settings().with_(commit_every=2))
    assert summary.new == len(list(photos.glob("*.png"))) == len(index)
    assert index.images.fragments() <= 1
    paths = Counter(r.path for r in index.images.all_rows())
    assert set(paths.values()) == {1}


def test_a_run_over_one_folder_reads_only_that_folders_rows(encoder, shapes_dir, tmp_path, monkeypatch):
    """Planning a run reads the rows under its folders (a Lance filter), not the whole library's:
    names with quotes and LIKE wildcards included, a sibling that shares a prefix left out."""
    from clipsearch.store.tables import ImageTable

    index = create_index(tmp_path / "idx", encoder.identity)
    folders = [tmp_path / name for name in ("it's 100%_done", "it's 100%_done too", "other")]
    for f in folders:
        shutil.copytree(shapes_dir, f)
        add_paths(index, encoder, [str(f)])
    read = []
    real = ImageTable._rows

    def counting(self, where, meta=True):
        rows = real(self, where, meta)
        read.extend(r.path for r in rows)
        return rows

    monkeypatch.setattr(ImageTable, "_rows", counting)
    shapes.draw("red", "star", seed=9).save(folders[0] / "added.png")
    summary = add_paths(index, encoder, [str(folders[0])])
    assert (summary.new, summary.unchanged) == (1, len(list(shapes_dir.glob("*.png"))))
    assert read and all(p.startswith(str(folders[0]) + os.sep) for p in read)
    under_first = index.images.rows_under([str(folders[0])])
    assert sorted(r.path for r in under_first) == sorted(str(p) for p in folders[0].glob("*.png"))
