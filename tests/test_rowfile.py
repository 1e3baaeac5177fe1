"""A segment's records a line a row (clipsearch/store/rowfile.py): what a hit reads is what the Arrow
records file holds, value for value and type for type; segments without one (written before it, or
of columns it can't keep) read the Arrow file."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pytest

from clipsearch.ann import segment
from clipsearch.ann.segments import Segments
from clipsearch.store import rowfile


def _records(n: int) -> pa.Table:
    """Every kind of column a records file holds, with the awkward values: nulls, bytes that aren't
    UTF-8, times before 1970, NaN, floats that print long, text with newlines and accents."""
    i = np.arange(n)
    return pa.table({
        "id": pa.array(i, pa.int64()),
        "path": [f"/photos/Île {k}\n\"q\".jpg" for k in i],
        "path_raw": [b"\xff\xfe/x" + bytes([k % 256]) if k % 3 == 0 else None for k in i],
        "width": pa.array(i % 4000, pa.int32()),
        "time_s": [None if k % 2 else k / 3 for k in i],
        "taken": pa.array([None if k % 5 == 0 else datetime(1950 + k % 100, 1 + k % 12, 1, 7, 8, 9) for k in i],
                          pa.timestamp("s")),
        "at_ms": pa.array(1_700_000_000_123 - i, pa.int64()).cast(pa.timestamp("ms")),
        "lat": [float("nan") if k == 4 else 2.4065000000000003 + k for k in i],
        "ok": [bool(k % 2) for k in i],
        "nothing": pa.nulls(n),
    })


def test_reads_back_what_arrow_holds(tmp_path):
    table = _records(600)
    path = tmp_path / "x.rec"
    with open(path, "wb") as f:
        w = rowfile.Writer(f, table.schema, rowfile.kinds(table.schema))
        for start in (0, 7, 300):  # appended in chunks
            w.append(table.slice(start, {0: 7, 7: 293, 300: 300}[start]))
        w.close()
    positions = np.array([599, 0, 4, 5, 255, 4, 300])
    got = rowfile.Reader(path, 600).at(positions)
    want = table.take(positions).to_pylist()
    assert got[2]["lat"] != got[2]["lat"] and want[2]["lat"] != want[2]["lat"]  # NaN both
    for g, w in zip(got, want):
        g.pop("lat"), w.pop("lat")
    assert got == want
    assert [type(v) for v in got[1].values()] == [type(v) for v in want[1].values()]
    with pytest.raises(ValueError, match="doesn't hold 601 records"):
        rowfile.Reader(path, 601)


def test_columns_it_cant_keep_mean_no_file():
    assert rowfile.kinds(pa.schema([("id", pa.int64()), ("tags", pa.list_(pa.string()))])) is None
    assert rowfile.kinds(pa.schema([("t", pa.timestamp("s", tz="UTC"))])) is None
    assert rowfile.kinds(_records(1).schema) == ["value", "value", "bytes", "value", "value", "s", "ms",
                                                 "value", "value", "value"]


def test_hits_read_the_rec_file_and_segments_without_one_read_arrow(tmp_path):
    dim, n = 8, 700
    xb = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    segs = Segments.create(tmp_path / "x.ann", dim)
    segs.add(np.arange(n), xb, _records(n))
    segs.sync(1, "a")
    folder = segs.folder
    ids = [699, 3, 5, 300, 12345]
    opened = Segments.open(folder)
    got = opened.records_of(ids)
    assert opened.segments[0]._lines  # from the .rec file
    (rec,) = folder.glob("*.rec")
    rec.unlink()  # as a segment written before .rec files
    older = Segments.open(folder)
    want = older.records_of(ids)
    assert older.segments[0]._lines is False and want[-1] is None and got[-1] is None
    assert [r["id"] for r in got[:-1]] == ids[:-1]
    assert str(got[:-1]) == str(want[:-1])  # NaN != NaN: compared as text


def test_a_segment_of_columns_it_cant_keep_writes_none(tmp_path):
    rows = pa.table({"id": pa.array([0, 1], pa.int64()), "tags": [["a"], []]})
    with segment.Writer(tmp_path, 3, 2, 4, rows.schema) as w:
        w.append(np.arange(2), np.ones((2, 4), np.float32), rows)
    assert not list(tmp_path.glob("*.rec"))
    s = segment.Segment.open(tmp_path, segment.Part(3, 2, 0), 4)
    assert s.records_at(np.array([1])) is None and s.records.at([1]) == [{"id": 1, "tags": []}]
