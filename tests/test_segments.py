"""The ANN index as segments (clipsearch/ann/segments.py): exact when searched exhaustively whatever
its segments, dead rows and rows not synced; merges that change no answer; a sync that writes what
changed; an open that reads no vector; readers that keep the version they opened."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from clipsearch.ann import compaction, lists, segment
from clipsearch.ann import spec as annspec
from clipsearch.ann import segments as segments_module
from clipsearch.ann.segments import Segments

DIM = 16
N = 12_000  # above what IVF-PQ needs to train (39 x 256)

pytestmark = pytest.mark.usefixtures("faiss_one_thread")


def _mixture(n, seed=0, centres=64):
    rng = np.random.default_rng(seed)
    c = np.random.default_rng(99).standard_normal((centres, DIM)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + 0.35 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _rows(ids):
    ids = np.asarray(ids, np.int64)
    return pa.table({"id": ids, "text": [f"t{i}" for i in ids]})


def _truth(xq, held: dict[int, np.ndarray], k):
    ids = np.array(sorted(held), np.int64)
    S = xq @ np.stack([held[i] for i in ids]).T
    return ids[np.argsort(-S, axis=1, kind="stable")[:, :k]]


@pytest.fixture
def small_flat_max(monkeypatch):
    monkeypatch.setattr(annspec, "FLAT_MAX", 1000)  # IVF-PQ from 1,000 vectors on


@pytest.fixture
def churned(tmp_path, small_flat_max):
    """An IVF-PQ index of several segments, with dead rows, an id added again with another vector,
    and rows not synced yet; and what it should hold (id -> vector)."""
    segs, held = Segments.create(tmp_path / "x.ann", DIM), {}

    def add(ids, xb):
        segs.add(ids, xb, _rows(ids))
        held.update(zip(ids.tolist(), xb))

    add(np.arange(N), _mixture(N))
    segs.sync(1, "a")
    for b in range(3):  # small syncs: small segments
        add(np.arange(N + 100 * b, N + 100 * (b + 1)), _mixture(100, seed=10 + b))
        segs.sync(2 + b, "b")
    gone = np.arange(0, N, 97)
    segs.remove(gone)
    for i in gone.tolist():
        del held[i]
    add(np.array([5]), -held[5][None])  # an id added again, with another vector
    add(np.arange(20_000, 20_050), _mixture(50, seed=20))  # not synced
    assert len(segs.segments) == 4 and len(segs.dead) == len(gone) + 1 and len(segs.pending) == 51
    return segs, held


def test_exhaustive_search_is_exact_across_segments_dead_and_pending_rows(churned):
    segs, held = churned
    assert segs.spec.kind == "ivfpq" and len(segs) == len(held)
    xq = np.vstack([_mixture(20, seed=3), held[5][None], -held[5][None]])  # id 5's new vector, its old one
    D, I = segs.search_exact(xq, 10, nprobe=segs.spec.nlist, depth=len(held))
    assert I.tolist() == _truth(xq, held, 10).tolist()
    exact = np.array([[float(held[i] @ q) for i in row] for q, row in zip(xq, I)])
    np.testing.assert_allclose(D, exact, atol=1e-5)  # the scores are exact
    assert I[-2, 0] == 5 and 5 not in I[-1]  # found by its new vector, not by its dead copy
    np.testing.assert_array_equal(segs.vectors_of([5, 0, 20_049]), np.stack([held[5], np.zeros(DIM), held[20_049]]))
    assert segs.records_of([5, 0, 20_049]) == [{"id": 5, "text": "t5"}, None, {"id": 20_049, "text": "t20049"}]


def test_default_search_recall_and_subsets(churned):
    segs, held = churned
    xq = _mixture(50, seed=4)
    _, I = segs.search_exact(xq, 10)
    truth = _truth(xq, held, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(I.tolist(), truth.tolist())]) >= 0.9
    subset = np.array(sorted(i for i in held if i % 3 == 0), np.int64)
    _, I = segs.search_exact(xq, 5, subset=subset, nprobe=segs.spec.nlist, depth=len(subset))
    assert I.tolist() == _truth(xq, {i: held[i] for i in subset.tolist()}, 5).tolist()


def test_sync_merges_and_optimize_change_no_answer(churned):
    segs, held = churned
    xq = _mixture(20, seed=5)
    before = segs.search_exact(xq, 10, nprobe=segs.spec.nlist, depth=len(held))
    segs.sync(9, "c")
    assert len(segs.pending) == 0 and len(segs.segments) == 5
    reopened = Segments.open(segs.folder)
    after = reopened.search_exact(xq, 10, nprobe=reopened.spec.nlist, depth=len(held))
    np.testing.assert_array_equal(after[1], before[1])
    reopened.optimize(10, "d")
    assert len(reopened.segments) == 1 and len(reopened.dead) == 0 and len(reopened) == len(held)
    merged = Segments.open(segs.folder)
    np.testing.assert_array_equal(merged.search_exact(xq, 10, nprobe=merged.spec.nlist, depth=len(held))[1], before[1])
    s = merged.segments[0]  # stored list by list: a query's candidates lie in few runs
    assert np.all(np.diff(lists.assignment(segs.folder / s.part.lists, s.label, len(s))) >= 0)
    assert sorted(p.name for p in segs.folder.iterdir()) == sorted(merged.catalog.files())  # the rest deleted


def test_a_sync_writes_what_changed(churned, tmp_path):
    segs, _ = churned
    segs.sync(9, "c")
    sizes = {p.name: p.stat().st_size for p in segs.folder.iterdir()}
    segs.add(np.arange(30_000, 30_010), _mixture(10, seed=6), _rows(np.arange(30_000, 30_010)))
    segs.sync(10, "e")
    new = {p.name: p.stat().st_size for p in segs.folder.iterdir() if p.name not in sizes or p.name == "catalog.json"}
    assert sum(new.values()) < 60_000  # ten rows' files and the catalog, not the 12k rows' 1 MB
    assert sum(sizes.values()) > 1_000_000


def test_open_reads_no_vector_and_readers_keep_their_version(churned, monkeypatch):
    segs, held = churned
    segs.sync(9, "c")
    reads = []
    monkeypatch.setattr(segment, "_read_into", _counting(segment._read_into, reads))  # every read of a vector
    reader = Segments.open(segs.folder)
    assert reads == [] and len(reader) == len(held)
    xq = _mixture(5, seed=7)
    want = reader.search_exact(xq, 5, nprobe=reader.spec.nlist, depth=len(held))
    assert reads  # the re-rank reads its candidates
    segs.optimize(10, "d")  # merges, and deletes the files the reader opened
    assert set(p.name for p in segs.folder.iterdir()).isdisjoint({f"{p.serial:06d}.vec" for p in reader.catalog.parts})
    np.testing.assert_array_equal(reader.search_exact(xq, 5, nprobe=reader.spec.nlist, depth=len(held))[1], want[1])


def test_candidates_are_read_from_every_segment_into_memory_a_thread_reuses(churned):
    segs, held = churned
    segs.sync(9, "c")
    reader = Segments.open(segs.folder)
    labels = np.concatenate([s.label + np.arange(len(s)) for s in reader.segments])
    labels = labels[~np.isin(labels, reader.dead)]
    ids = reader.ids_of(labels)
    rng = np.random.default_rng(0)
    picks = [rng.choice(len(labels), 300, replace=False) for _ in range(2)]  # across segments, any order
    first = reader.candidate_vectors(labels[picks[0]])
    np.testing.assert_array_equal(first, np.stack([held[i] for i in ids[picks[0]]]))
    np.testing.assert_array_equal(first, reader.vectors_at_labels(labels[picks[0]]))
    second = reader.candidate_vectors(labels[picks[1]])
    np.testing.assert_array_equal(second, np.stack([held[i] for i in ids[picks[1]]]))
    assert np.shares_memory(first, second)  # no fresh memory (page faults) for the next query
    ordered = np.sort(labels[picks[0]])  # as a re-rank asks: read into place, with no gather
    np.testing.assert_array_equal(reader.candidate_vectors(ordered), reader.vectors_at_labels(ordered))


def test_a_reader_catching_up_never_writes(churned, monkeypatch):
    segs, _ = churned
    segs.sync(9, "c")
    before = sorted(p.name for p in segs.folder.iterdir())
    monkeypatch.setattr(segments_module, "SPILL_ROWS", 10)
    reader = Segments.open(segs.folder, spills=False)  # how a reader opens an index's own folder
    reader.add(np.arange(40_000, 40_100), _mixture(100, seed=8), _rows(np.arange(40_000, 40_100)))
    assert len(reader.pending) == 100 and sorted(p.name for p in segs.folder.iterdir()) == before
    segs.add(np.arange(40_000, 40_100), _mixture(100, seed=8), _rows(np.arange(40_000, 40_100)))
    assert len(segs.pending) == 0 and len(segs.segments) == 6  # a writer writes them as it goes


def _counting(fn, calls):
    def wrapped(*args, **kwargs):
        calls.append(fn.__name__)
        return fn(*args, **kwargs)
    return wrapped


class _FakeSegment:  # what `plan` reads of a segment
    def __init__(self, n, label):
        self.part, self.label = None, label
        self._n = n

    def __len__(self):
        return self._n


class _FakeSegs:
    def __init__(self, sizes, dead=0):
        labels = np.cumsum([0, *sizes[:-1]])
        self.segments = [_FakeSegment(n, int(lo)) for n, lo in zip(sizes, labels)]
        self.dead = np.arange(dead, dtype=np.int64)


def test_merge_policy():
    Segs = _FakeSegs
    assert compaction.plan(Segs([1000, 10, 10])) is None  # small next to the largest: wait
    assert compaction.plan(Segs([1000, 200, 60])) == [0, 1, 2]  # a quarter of it: merge all
    assert compaction.plan(Segs([1000] + [10, 3, 20, 5, 8, 9, 7, 6])) == [2, 4]  # too many: two smallest
    assert compaction.plan(Segs([1000, 10], dead=300)) == [0, 1]  # many dead rows
    assert compaction.plan(Segs([1000]), everything=True) is None  # nothing to gain
    assert compaction.plan(Segs([1000], dead=1), everything=True) == [0]


def test_merge_policy_caps_what_a_merge_writes(monkeypatch):
    monkeypatch.setattr(compaction, "MAX_SEGMENT_ROWS", 1000)
    Segs = _FakeSegs
    assert compaction.plan(Segs([600, 600, 600, 600])) is None  # full: never joined
    assert compaction.plan(Segs([100] * 20)) == list(range(10))  # the smallest that fit, not all
    assert compaction.plan(Segs([1000, 990], dead=300)) == [0]  # worn: written again alone
    assert compaction.plan(Segs([600, 600, 300, 50]), everything=True) == [0, 2, 3]  # optimize: what fits


def test_a_big_sync_merges_in_capped_steps_each_committed(tmp_path, small_flat_max, monkeypatch):
    """Past MAX_SEGMENT_ROWS a sync leaves several segments, each at most that big and stored list by
    list, and commits each merge before the next: the disk never holds the collection twice."""
    monkeypatch.setattr(compaction, "MAX_SEGMENT_ROWS", 3000)
    monkeypatch.setattr(segments_module, "SPILL_ROWS", 1000)
    segs, xb = Segments.create(tmp_path / "x.ann", DIM), _mixture(N)
    segs.add(np.arange(1000), xb[:1000], _rows(np.arange(1000)))
    segs.sync(1, "a")  # IVF-PQ from 1,000 on: the later spills are encoded as they are written
    for b in range(1000, N, 1000):
        segs.add(np.arange(b, b + 1000), xb[b:b + 1000], _rows(np.arange(b, b + 1000)))
    vec_files = []
    segs.sync(2, "b", checkpoint=lambda stage: vec_files.append(len(list(segs.folder.glob("*.vec")))))
    assert max(vec_files) <= N // 1000 + 1  # the spilled segments, and one merge being written
    sizes = [len(s) for s in segs.segments]
    assert sum(sizes) == N and max(sizes) <= 3000 and len(sizes) == N // 3000
    reader = Segments.open(segs.folder)
    for s in reader.segments:
        assert np.all(np.diff(lists.assignment(segs.folder / s.part.lists, s.label, len(s))) >= 0)
    xq = _mixture(20, seed=3)
    _, I = reader.search_exact(xq, 10, nprobe=reader.spec.nlist, depth=N)
    assert I.tolist() == _truth(xq, dict(enumerate(xb)), 10).tolist()


def test_records_of_older_segments_get_new_columns_as_nulls(tmp_path):
    segs = Segments.create(tmp_path / "x.ann", DIM)
    segs.add(np.arange(3), _mixture(3), _rows(np.arange(3)))
    segs.sync(1, "a")
    wider = _rows(np.arange(3, 6)).append_column("lang", pa.array(["en", "fr", "de"]))
    segs.add(np.arange(3, 6), _mixture(3, seed=1), wider)
    segs.sync(2, "b")
    segs.optimize(3, "c")
    assert Segments.open(segs.folder).records_of([1, 4]) == [{"id": 1, "text": "t1", "lang": None},
                                                            {"id": 4, "text": "t4", "lang": "fr"}]


@pytest.mark.parametrize("rows", [[5, 1, 2, 3, 900, 2, 6, 400], list(range(0, 1000, 3)), [999, 0]])
def test_vectors_are_read_in_runs_and_come_back_in_order(tmp_path, rows):
    xb = _mixture(1000)
    with segment.Writer(tmp_path, 7, 1000, DIM, _rows([0]).schema) as w:
        w.append(np.arange(1000)[::-1], xb, _rows(np.arange(1000)[::-1]))  # ids in any order
    s = segment.Segment.open(tmp_path, segment.Part(7, 1000, 0), DIM)
    np.testing.assert_array_equal(s.vectors_at(np.array(rows)), xb[rows])
    assert s.find(np.array([999, 0, 5000])).tolist() == [0, 999, -1]


def test_a_hit_reads_its_records_batch_and_older_files_still_read(tmp_path):
    """Records files are written in batches of BATCH_ROWS, and a hit reads its batch (no mapping of
    the file: mapped pages count in a query process's memory); files of before are mapped."""
    from clipsearch.store import snapshot

    segs = Segments.create(tmp_path / "x.ann", DIM)
    for start in (0, 300, 301):  # chunks that don't fall on batch boundaries
        ids = np.arange(start, {0: 300, 300: 301, 301: 1000}[start])
        segs.add(ids, _mixture(len(ids), seed=start), _rows(ids))
    segs.sync(1, "a")
    seg = Segments.open(segs.folder).segments[0]
    reader = pa.ipc.open_file(pa.OSFile(str(seg._rows_path)))
    sizes = [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
    assert sizes == [snapshot.BATCH_ROWS] * (1000 // snapshot.BATCH_ROWS) + [1000 % snapshot.BATCH_ROWS]
    pos = seg.find(np.array([999, 3, 700, 256]))
    assert [r["text"] for r in seg.records.at(pos)] == ["t999", "t3", "t700", "t256"]
    assert seg.records._t is None  # read by batch, never mapped whole
    old = tmp_path / "old.rows"  # as written before: one batch, no layout in its schema
    with pa.ipc.new_file(str(old), _rows([0]).schema) as w:
        w.write_table(_rows(np.arange(1000)))
    records = snapshot.Records.open(old)
    assert len(records) == 1000 and [r["text"] for r in records.at([999, 3])] == ["t999", "t3"]
