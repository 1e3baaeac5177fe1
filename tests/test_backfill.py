"""Backfilling metadata (ingest/backfill.py) reads a file's header once while it can't be read: a
drive that isn't mounted, a reader that crashed. It reads it again when the file comes back or
changes. Header reads are counted through the `decode_map` they go through, on real files."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime

import numpy as np
import pytest

from clipsearch import ModelIdentity, add_paths, create_index, load_encoder
from clipsearch.ingest.backfill import backfill_meta
from clipsearch.media.files import NO_STAT
from clipsearch.media.photometa import read_header
from clipsearch.store.records import Failure, Row
from support.exifphotos import exif_jpeg


class Reads:
    """A `decode_map` that runs `map` and keeps the paths of every header read; `fail`: paths whose
    reader "crashed" (a Failure comes back, as from the indexer's guarded pool)."""

    def __init__(self, fail=()):
        self.paths: list[str] = []
        self.fail = set(fail)

    def __call__(self, fn, paths):
        paths = list(paths)
        if fn is not read_header:
            return map(fn, paths)
        self.paths += paths
        return (Failure(p, "decoder crashed (signal 11)") if p in self.fail else fn(p) for p in paths)


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return load_encoder(str(tiny_model.config), str(tiny_model.weights), "cpu")


def _photos(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    return [exif_jpeg(folder / f"{n}.jpg", when=f"2019:08:0{i + 1} 10:00:00", make="Canon", model="EOS R",
                      size=(48, 32)) for i, n in enumerate(names)]


def _run(index, encoder, folder) -> tuple[list[str], list[str]]:
    """`index` of `folder` -> (the headers it read, its notes)."""
    reads = Reads()
    summary = add_paths(index, encoder, [str(folder)], decode_map=reads)
    return reads.paths, summary.notes


def test_headers_of_an_unmounted_drive_are_read_once_and_again_when_it_is_back(encoder, tmp_path):
    drive = _photos(tmp_path / "drive", ["a", "b"])
    _photos(tmp_path / "new", ["c"])
    index = create_index(tmp_path / "index", encoder.identity)
    add_paths(index, encoder, [str(tmp_path / "drive")])
    index.images.update([replace(r, meta=None) for r in index.images.all_rows()])  # as indexed before schema 6
    (tmp_path / "drive").rename(tmp_path / "drive.unmounted")

    reads, notes = _run(index, encoder, tmp_path / "new")
    assert sorted(reads) == drive and not any("older images" in n for n in notes)
    assert _run(index, encoder, tmp_path / "new")[0] == []  # not read again while the drive is away
    assert sorted((f.path, f.size, f.mtime) for f in index.unread.all()) == [(p, *NO_STAT) for p in drive]
    assert all("mounted" in f.reason for f in index.unread.all())

    (tmp_path / "drive.unmounted").rename(tmp_path / "drive")
    reads, notes = _run(index, encoder, tmp_path / "new")
    assert sorted(reads) == drive and "metadata (dates, cameras, places) read from the headers of 2 older images" in notes
    rows = {r.path: r for r in index.images.rows([r.id for r in index.images.all_rows()]).values()}
    assert [(rows[p].meta.taken_source, rows[p].meta.camera_model) for p in drive] == [("exif", "EOS R")] * 2
    assert rows[drive[1]].meta.taken == datetime(2019, 8, 2, 10, 0)
    assert index.unread.all() == []
    assert _run(index, encoder, tmp_path / "new")[0] == []


def _index_of(tmp_path, paths):
    """A writable index whose rows (without metadata) are `paths`, with made-up vectors."""
    index = create_index(tmp_path / "index", ModelIdentity("m", "w", 8))
    xb = np.random.default_rng(0).standard_normal((len(paths), 8)).astype(np.float32)
    rows = [Row(-1, p, os.stat(p).st_size, os.stat(p).st_mtime, 48, 32) for p in paths]
    index.images.add(rows, xb / np.linalg.norm(xb, axis=1, keepdims=True))
    return index


def test_a_header_whose_reader_crashed_is_read_again_once_the_file_changes(tmp_path):
    x, y = _photos(tmp_path / "old", ["x", "y"])
    index = _index_of(tmp_path, [x, y])
    crashing = Reads(fail=[x])
    assert backfill_meta(index.images, index.unread, crashing) == 1  # y
    assert backfill_meta(index.images, index.unread, crashing) == 0
    assert crashing.paths == [x, y]  # x once: its failure holds while the file is as it was
    assert [(f.path, f.reason, f.size, f.mtime) for f in index.unread.all()] == [
        (x, "decoder crashed (signal 11)", os.stat(x).st_size, os.stat(x).st_mtime)]

    os.utime(x, (1.6e9, 1.6e9))  # replaced by another copy, say
    reads = Reads()
    assert backfill_meta(index.images, index.unread, reads) == 1
    assert reads.paths == [x] and index.unread.all() == []
    assert {r.meta.taken_source for r in index.images.rows([0, 1]).values()} == {"exif"}


def test_a_remembered_header_failure_goes_with_its_row(tmp_path):
    (gone,) = _photos(tmp_path / "old", ["gone"])
    index = _index_of(tmp_path, [gone])
    os.remove(gone)
    backfill_meta(index.images, index.unread, Reads())
    assert [f.path for f in index.unread.all()] == [gone]
    index.images.remove([0])
    reads = Reads()
    assert backfill_meta(index.images, index.unread, reads) == 0
    assert reads.paths == [] and index.unread.all() == []
