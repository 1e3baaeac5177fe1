"""A collection's ANN index as segments on disk, plus the rows added since the last sync.

Costs follow the work, not the collection:
- opening maps the committed segments (catalog.py, segment.py, lists.py): nothing per row is read;
- a query scans the probed lists of every segment in one faiss call, re-ranks its candidates with
  their exact vectors (read from their segments) and reads the records of its k hits;
- new rows wait in memory (searched exactly) until `sync` writes them as a new segment, encoded with
  the trained quantizer; removed rows are marked dead (a list of labels, applied at search);
- segments are merged, and the quantizer trained again, by `compaction.py` when their sizes ask
  for it: the work of a sync is what changed, plus now and then a merge.
Rows are labelled in the faiss lists (a segment's first label + row position), so that a row
removed and added again (a re-index, a metadata update) has a dead copy and a live one, told
apart by label; ids come back through the segments.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipsearch.ann import catalog as cat
from clipsearch.ann.catalog import Catalog
from clipsearch.ann import compaction, scan
from clipsearch.ann.lists import Stack, bitmap_selector
from clipsearch.ann.pending import Pending, top_k
from clipsearch.ann.refine import RERANK_FACTOR
from clipsearch.ann.segment import CHUNK, VECTOR_DTYPE, Scratch, Segment, read_rows
from clipsearch.ann.spec import AnnSpec
from clipsearch.errors import IndexDirError, InputError
from clipsearch.store import snapshot

#: Rows waiting for a sync are written as a segment once this many wait (128 MB at 512-d): a long
#: run's memory stays flat, and a crash loses no more than the table lets a writer catch up on.
SPILL_ROWS = 65_536


class Segments:
    """The committed segments of a collection (mapped) and the rows not yet in one (in memory)."""

    def __init__(self, folder: Path, catalog: Catalog, spills: bool = True):
        """`spills`: whether many pending rows may be written as a segment before a sync (a writer's,
        or a reader's private folder); a reader of an index's folder never writes to it."""
        self.folder, self.committed, self.catalog, self.spills = folder, catalog, catalog, spills
        self.dim = catalog.dim
        self.segments = [Segment.open(folder, p, self.dim) for p in catalog.parts]
        self.dead = np.load(folder / catalog.dead) if catalog.dead else np.zeros(0, np.int64)
        self.pending = Pending(self.dim)
        self._stack: Stack | None = None
        if catalog.quantizer:
            self.lists()  # maps the lists files now: a damaged one shows at open
        self._flat: tuple[np.ndarray, np.ndarray] | None = None  # labels, vectors of a Flat index
        self._not_dead = None  # faiss selector of live labels, built when first needed
        self._scratch = Scratch()  # what queries read their candidates into

    @classmethod
    def open(cls, folder: Path, spills: bool = True) -> Segments | None:
        """The committed version in `folder`, None if there is none; IndexDirError if damaged."""
        for _ in range(3):  # a writer may replace a version between its catalog and its files
            catalog = cat.read(folder)
            if catalog is None:
                return None
            try:
                return cls(folder, catalog, spills)
            except FileNotFoundError:
                continue
            except (OSError, ValueError, RuntimeError) as e:
                raise IndexDirError(f"the ANN index in {folder} is damaged ({e}): run `clipsearch "
                                    "optimize` to rebuild it from the table") from e
        raise IndexDirError(f"the ANN index in {folder} keeps changing under this reader: try again")

    @classmethod
    def create(cls, folder: Path, dim: int) -> Segments:
        """An empty index in `folder` (made if missing), not committed until `sync`."""
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder, Catalog(dim, VECTOR_DTYPE, AnnSpec("flat", dim).to_dict()))

    # --- what it is ------------------------------------------------------------------------

    @property
    def spec(self) -> AnnSpec:
        return AnnSpec.from_dict(self.catalog.spec)

    @property
    def trained_on(self) -> int:
        return self.catalog.trained_on

    @property
    def generation(self) -> int | None:
        return self.catalog.generation

    def __len__(self) -> int:
        return sum(len(s) for s in self.segments) - len(self.dead) + len(self.pending)

    def centroids(self) -> np.ndarray | None:
        """(nlist, D) float32 centroids of the IVF lists; None for an exact (Flat) index."""
        return self.lists().centroids() if self.catalog.quantizer else None

    # --- changes (in memory until `sync`) --------------------------------------------------

    def add(self, ids: np.ndarray, xb: np.ndarray, rows) -> None:
        """Rows (ids (n,) int64, xb (n, D) float32, their records as a pyarrow Table); an id already
        held is replaced."""
        xb = _matrix(xb, self.dim, "xb")
        ids = np.asarray(ids, np.int64)
        if len(np.unique(ids)) != len(ids) or rows.num_rows != len(ids) or len(xb) != len(ids):
            raise InputError("add needs unique ids, one vector and one record each")
        self.remove(ids)
        self.pending.add(ids, xb, rows)
        if len(self.pending) >= SPILL_ROWS and self.spills:
            compaction.spill(self)

    def holds_any(self, ids) -> bool:
        """Whether any of these ids is held (a row added again under its id)."""
        ids = np.asarray(ids, np.int64)
        return bool(len(self.labels_of(ids)) or np.isin(self.pending.ids, ids).any())

    def remove(self, ids) -> int:
        """Remove these ids (unknown ones are ignored); how many were held."""
        ids = np.unique(np.asarray(ids, np.int64))
        labels = self.labels_of(ids)
        if len(labels):
            self.kill(labels)
        return self.pending.remove(ids) + len(labels)

    def kill(self, labels: np.ndarray) -> None:
        """Mark these live labels dead."""
        self.dead = np.union1d(self.dead, labels)
        self._flat = self._not_dead = None

    def changed(self, catalog: Catalog, segments: list[Segment]) -> None:
        """Take a new working version (compaction.py): its segments; dead labels of gone ones drop."""
        for seg, part in zip(segments, catalog.parts, strict=True):
            seg.part = part  # the same rows; its lists may be new
        self.catalog, self.segments = catalog, segments
        starts = np.array([s.label for s in segments], np.int64)
        ends = starts + [len(s) for s in segments]
        seg = np.searchsorted(starts, self.dead, "right") - 1
        self.dead = self.dead[(seg >= 0) & (self.dead < ends[seg.clip(0)])] if len(segments) else self.dead[:0]
        self._stack = self._flat = self._not_dead = None

    def adopt(self, catalog: Catalog) -> None:
        """Hold the rows of `catalog`'s segments instead of every row held now (a sharded build of
        the table's current rows: shards.py); committed by the next sync."""
        self.pending, self.dead = Pending(self.dim), np.zeros(0, np.int64)
        self.changed(catalog, [Segment.open(self.folder, p, self.dim) for p in catalog.parts])

    def sync(self, generation: int, stamp: str, checkpoint=lambda stage: None) -> str | None:
        """Write the pending rows as a segment, merge or train again when the sizes ask for it,
        and commit the version (atomically) as the table's `generation` at `stamp`. -> a note
        ("rebuilt for N vectors: OLD -> NEW") when the index was built again for its size."""
        return compaction.commit(self, generation, stamp, checkpoint)

    def optimize(self, generation: int, stamp: str, checkpoint=lambda stage: None) -> str | None:
        """`sync`, with every segment merged into one (dead rows dropped) and the index trained again
        when its size asks for another spec."""
        return compaction.commit(self, generation, stamp, checkpoint, everything=True)

    def mark_dirty(self, ids) -> None:
        """Commit, before a table change that may touch rows held here, that these ids may differ from
        the table until the next sync: a reader, or the next writer after a crash, reads them again."""
        compaction.mark_dirty(self, np.union1d(self.dirty_ids(), np.asarray(ids, np.int64)))

    def dirty_ids(self) -> np.ndarray:
        """Ids marked dirty in the committed version (sorted int64)."""
        d = self.committed.dirty
        return np.load(self.folder / d) if d else np.zeros(0, np.int64)

    # --- reading ---------------------------------------------------------------------------

    def labels_of(self, ids: np.ndarray) -> np.ndarray:
        """Sorted labels of the live segment rows of `ids` (int64)."""
        found = [s.label + p[p >= 0] for s in self.segments for p in [s.find(ids)]]
        labels = np.sort(np.concatenate([np.zeros(0, np.int64), *found]))
        return labels[~isin_sorted(labels, self.dead)]

    def ids_of(self, labels: np.ndarray) -> np.ndarray:
        """Ids of these labels (any shape), -1 for -1."""
        labels = np.asarray(labels, np.int64)
        out = np.full(labels.shape, -1, np.int64)
        seg, row, ok = self._rows_of(labels)
        for i in np.unique(seg[ok]):
            mask = ok & (seg == i)
            out[mask] = self.segments[i].ids[row[mask]]
        return out

    def vectors_of(self, ids) -> np.ndarray:
        """(len(ids), D) float32 stored vectors, zeros for ids not held."""
        ids = np.asarray(ids, np.int64)
        if len(ids) > CHUNK:  # bounds what is read at once
            return np.concatenate([self.vectors_of(ids[s:s + CHUNK]) for s in range(0, len(ids), CHUNK)])
        out, held = self.pending.vectors_of(ids)
        for s in self.segments:
            pos = s.find(ids)
            ok = (pos >= 0) & ~held
            ok[ok] = ~isin_sorted(s.label + pos[ok], self.dead)
            out[ok], held = s.vectors_at(pos[ok]), held | ok
        return out

    def records_of(self, ids) -> list[dict | None]:
        """What a hit shows of each id (its record), None for ids not held."""
        ids = np.asarray(ids, np.int64)
        out = self.pending.records_of(ids)
        where, rows = [], []
        for s in self.segments:
            pos = s.find(ids)
            j = np.flatnonzero(pos >= 0)
            if not len(j):
                continue
            j = [x for x in j[~isin_sorted(s.label + pos[j], self.dead)] if out[x] is None]
            found = s.records_at(pos[j])
            if found is not None:
                for x, r in zip(j, found):
                    out[x] = r
            else:  # an older segment: from its Arrow file, joined with the others' (as_dicts)
                where += j
                rows += s.records.slices(pos[j])
        for x, r in zip(where, snapshot.as_dicts(rows)):
            out[x] = r
        return out

    def live_ids(self) -> np.ndarray:
        """Every id held, sorted int64."""
        parts = [self.pending.ids]
        for s in self.segments:
            for start in range(0, len(s), 1 << 20):
                ids = np.asarray(s.ids[start:start + (1 << 20)])
                parts.append(ids[~isin_sorted(s.label + start + np.arange(len(ids)), self.dead)])
        return np.sort(np.concatenate(parts))

    def search(self, xq: np.ndarray, k: int, nprobe: int | None = None,
               subset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: exact for a Flat index, code scores for IVF-PQ (rows not yet
        synced exactly). xq (nq, D) -> D (nq, k) float32, I (nq, k) int64 ids, -inf/-1 padded.
        `subset` (sorted unique int64 ids): only these may be returned."""
        return self.search_exact(xq, k, nprobe, depth=k, subset=subset)

    def search_exact(self, xq: np.ndarray, k: int, nprobe: int | None = None, depth: int | None = None,
                     lookup=None, subset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by exact inner product: Flat exactly; IVF-PQ re-ranks max(`depth`, MAX_DEPTH)
        candidates (`depth` default RERANK_FACTOR·k) with their stored vectors (refine.search);
        depth <= k: code scores. `lookup` is not needed (kept for AnnIndex's
        signature). `subset` as in `search`."""
        xq = _matrix(xq, self.dim, "xq")
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        labels = None if subset is None else self.labels_of(np.asarray(subset, np.int64))
        if self.catalog.quantizer is None:
            D, L = scan.flat(self, xq, k, labels)
        else:
            D, L = scan.ivf(self, xq, k, nprobe, depth or RERANK_FACTOR * k, labels)
        if not len(self.pending):  # nothing to merge in: the segments' top k as they are
            return _padded(D, k, -np.inf), _padded(self.ids_of(L), k, -1)
        D2, I2 = self.pending.search(xq, k, subset)
        return top_k(np.hstack([D, D2]), np.hstack([self.ids_of(L), I2]), k)

    def flat_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(labels, float32 vectors) of every live segment row, read once (a Flat index is small)."""
        if self._flat is None:
            parts = []
            for s in self.segments:
                for start, _, xb in s.chunks():
                    labels = s.label + start + np.arange(len(xb))
                    keep = ~isin_sorted(labels, self.dead)
                    parts.append((labels[keep], xb[keep]))
            self._flat = (np.concatenate([np.zeros(0, np.int64), *[a for a, _ in parts]]),
                          np.concatenate([np.zeros((0, self.dim), np.float32), *[b for _, b in parts]]))
        return self._flat

    def live_selector(self):
        """A faiss selector of the labels not dead (with what it points to), None when none is dead."""
        if len(self.dead) == 0:
            return None
        if self._not_dead is None:
            import faiss

            bitmap = bitmap_selector(self.dead)
            self._not_dead = (faiss.IDSelectorNot(bitmap[0]), bitmap)
        return self._not_dead

    def vectors_at_labels(self, labels: np.ndarray) -> np.ndarray:
        """(len(labels), D) float32 stored vectors of these labels, read in one pass over the
        segments; zeros for labels no segment holds."""
        labels = np.asarray(labels, np.int64)
        out = np.zeros((len(labels), self.dim), np.float32)
        seg, row, ok = self._rows_of(labels)
        if ok.any():
            out[ok] = read_rows([s.vectors for s in self.segments], seg[ok], row[ok])
        return out

    def candidate_vectors(self, labels: np.ndarray) -> np.ndarray:
        """`vectors_at_labels` of labels the lists returned (every one held), for the re-rank: in
        memory this thread reuses, valid until its next call."""
        seg, row, _ = self._rows_of(np.asarray(labels, np.int64))
        return read_rows([s.vectors for s in self.segments], seg, row, self._scratch)

    def _rows_of(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(segment, row in it, whether one holds it) of each label (any shape; -1: none)."""
        if not self.segments:
            return labels * 0, labels * 0, np.zeros(labels.shape, bool)
        starts = np.array([s.label for s in self.segments], np.int64)
        seg = (np.searchsorted(starts, labels, "right") - 1).clip(0)
        row = labels - starts[seg]
        return seg, row, (row >= 0) & (row < np.array([len(s) for s in self.segments])[seg])

    def lists(self) -> Stack:
        """The IVF lists of every segment, searched as one index (IVF-PQ only)."""
        if self._stack is None:
            q = self.folder / self.catalog.quantizer
            self._stack = Stack(q, [self.folder / p.lists for p in self.catalog.parts if p.rows])
        return self._stack


def _padded(a: np.ndarray, k: int, fill) -> np.ndarray:
    """(nq, k): a (nq, <=k) with `fill` in the columns it lacks."""
    if a.shape[1] == k:
        return a
    return np.hstack([a, np.full((len(a), k - a.shape[1]), fill, a.dtype)])


def isin_sorted(x: np.ndarray, sorted_: np.ndarray) -> np.ndarray:
    if not len(sorted_) or not len(x):
        return np.zeros(len(x), bool)
    pos = np.searchsorted(sorted_, x).clip(0, len(sorted_) - 1)
    return sorted_[pos] == x


def _matrix(x: np.ndarray, dim: int, name: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != dim:
        raise InputError(f"{name} must have shape (n, {dim}), got {x.shape}")
    return x
