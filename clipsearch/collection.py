"""A vector collection: a LanceDB table, the FAISS index derived from it, their generation and the
index's write lock. The images of an index are one collection, each text collection another.

Files, in the index directory: the table under `lance/<name>.lance`, the ANN index in `<name>.faiss`.
The ANN file records the table version it was built from (its generation); when that isn't the
table's current version (a crash between the two writes, a hand edit) or the file is damaged, the
index is rebuilt from the stored vectors -- in memory for a reader, on disk for a writer.
Every write takes the write lock (reentrant: a run that holds it across many writes keeps it).
Each sync also writes `<name>.rows`, the records hits show (see snapshot.py): a reader whose ANN
file and snapshot are current answers queries without opening LanceDB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from clipsearch.ann.index import AnnIndex
from clipsearch.ann.refine import RERANK_FACTOR, Refine
from clipsearch.ann.selection import search_among
from clipsearch.ann.spec import choose_spec, outgrown
from clipsearch.errors import IndexDirError, InputError
from clipsearch.store import snapshot
from clipsearch.store.filters import Filter
from clipsearch.store.lock import WriteLock
from clipsearch.store.records import Row
from clipsearch.store.tables import Store, VectorTable

LegacyGeneration = Callable[[], "int | None"]


class Collection:
    """One table + ANN index. Open it through `Index` (images, `Index.texts(name)`)."""

    def __init__(self, root: Path, table: VectorTable, store: Store, lock: WriteLock, writable: bool,
                 legacy_generation: LegacyGeneration = lambda: None):
        self.root, self.table, self.writable = root, table, writable
        self._store, self._lock, self._legacy = store, lock, legacy_generation
        self._ann: AnnIndex | None = None
        self._snapshot: snapshot.Snapshot | None = None  # set by _load_ann when current (readers)
        self._next_id: int | None = None
        self._columns: dict = {}  # (table version, column names) -> those columns, for filters
        self._ann_pending: list[np.ndarray] = []  # ids committed as fragments, not yet in the ANN
        self.notes: list[str] = []  # what `sync` did that a user should hear about

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def ann_file(self) -> Path:
        return self.root / f"{self.name}.faiss"

    @property
    def version(self) -> int:
        return self.table.version

    def __len__(self) -> int:
        return len(self.table)

    @property
    def dim(self) -> int:
        return self.table.dim

    # --- writing -------------------------------------------------------------------------

    def add(self, records: list, xb: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
        """Append records with their (N, D) vectors in one commit, under `ids` (assigned here when
        None); the same vectors go into the ANN index in memory (saved by `sync`). -> the ids."""
        with self._writing():
            ann = self.ann()  # before the commit, so that loading it doesn't see a moved table
            self.table._create(self._store)
            ids = self.reserve_ids(len(records)) if ids is None else np.asarray(ids, np.int64)
            if len(records):
                self.table._append(self.table._columns(records), ids, xb)
                ann.add(xb, ids)
                if self._next_id is not None:  # else worked out from the table, these ids included
                    self._next_id = max(self._next_id, int(ids.max()) + 1)
            return ids

    def reserve_ids(self, n: int) -> np.ndarray:
        """n fresh ids, for rows written elsewhere and committed with `add_fragments`."""
        with self._writing():
            if self._next_id is None:
                self._next_id = self.table.max_id() + 1
            self._next_id += n
            return np.arange(self._next_id - n, self._next_id, dtype=np.int64)

    def add_fragments(self, fragments: list, ids: np.ndarray) -> None:
        """Commit Lance fragments written elsewhere (lance.fragment.write_fragments) that hold the
        rows `ids` (from `reserve_ids`): one atomic append. Their vectors join the ANN index when it
        is next used (read back from the table), or through `adopt_ann`."""
        with self._writing():
            if self._ann is None:
                self._ann = self._load_ann()  # before the commit, as in `add`
            self.table._create(self._store)
            if fragments:
                self.table._append_fragments(fragments)
                self._ann_pending.append(np.asarray(ids, np.int64))

    def lance_target(self) -> tuple[str, object, str]:
        """(uri, Arrow schema, storage version) for writers of fragments elsewhere; the table is
        created first if this is its first write."""
        with self._writing():
            self.table._create(self._store)
            return self.table.lance_target()

    @property
    def ann_pending(self) -> int:
        """How many committed rows (`add_fragments`) the ANN index has yet to take in."""
        return sum(map(len, self._ann_pending))

    def adopt_ann(self, ann: AnnIndex) -> None:
        """Use `ann`, built elsewhere from the table's current rows (a sharded build); saved by `sync`."""
        with self._writing():
            self._ann, self._ann_pending = ann, []

    def remove(self, ids) -> None:
        with self._writing():
            if len(ids) and self.table.exists:
                ann = self.ann()
                self.table._delete(ids)
                ann.remove(np.asarray(ids, np.int64))

    def update(self, records: list) -> None:
        """Replace the columns (not the vectors) of existing records, by id, in one commit; the ANN
        index stays valid (same ids and vectors) and `sync` saves it for the new version."""
        with self._writing():
            if records:
                self.ann()  # loaded for the version it matches, before the commit moves the table
                self.table._update(records)

    def compact(self) -> None:
        """Merge the small fragments batch commits leave behind, and update the id index."""
        with self._writing():
            if self.table.exists:
                self.table._compact()

    def upgrade(self) -> bool:
        """Bring an older table up to this schema (columns, id index); True if anything changed."""
        with self._writing():
            if not self.table.exists:
                return False
            return self.table._upgrade() | self.table._ensure_id_index()

    def sync(self) -> str | None:
        """Save the ANN index for the table's current version (atomically).

        Rebuilds it first when the collection outgrew what it was trained on; returns a
        sentence saying so, else None.
        """
        with self._writing():
            ann, note = self.ann(), None
            if outgrown(ann.spec, len(ann)):
                old = ann.spec.describe()
                ann = self._ann = self._build_ann()
                note = f"ANN index of {self.name} rebuilt for {len(ann)} vectors: {old} -> {ann.spec.describe()}"
                self.notes.append(note)
            if ann.spec.kind == "ivfpq" and ann.spec.refine and ann.refine is None:  # an older file
                ids, xb = self.table.vectors()
                ann.refine = Refine.build(xb, ids)
            self.table._ensure_id_index()
            generation = self.table.version
            ann.save(self.ann_file, generation=generation)
            snapshot.write(self.root / f"{self.name}{snapshot.SUFFIX}", self.table.records(),
                           snapshot.stamp(self._store.table_dir(self.name)), generation)
            return note

    def reload(self) -> None:
        """See what other processes committed: the latest table version; the ANN index and the next
        id are worked out again when someone else changed the table."""
        if self._snapshot is not None:  # a reader that hasn't opened the table: look again
            self._ann, self._snapshot = None, None
            return
        seen = self.table.version
        self.table.refresh()
        if self.table.version != seen or not self.table.exists:
            self._ann, self._next_id, self._ann_pending = None, None, []

    # --- reading -------------------------------------------------------------------------

    def search(self, xq: np.ndarray, k: int, nprobe: int | None = None,
               rerank: int | None = None, where: Filter | None = None) -> list[list]:
        """(nq, D) float32 unit vectors -> per query the k best hits (Hit or TextHit), best first.

        An approximate index re-scores at least `rerank`·k candidates exactly with the full vectors
        it holds in memory (or, in a file of before that, from the table), more where near-ties
        need it (refine.py), so the top k are exact among the candidates. With `where`, the k best
        among the records it lets through (plan chosen by selectivity: selection.py).
        """
        if k < 1:
            raise InputError(f"--top must be at least 1 (got {k})")
        ann = self.ann()
        k = min(k, len(ann))
        if k <= 0:
            return [[] for _ in range(len(xq))]
        xq = np.ascontiguousarray(xq, np.float32)
        depth = (rerank or RERANK_FACTOR) * k
        if where:
            D, I, _ = search_among(ann, xq, k, self.matching(where), self.vectors_of, nprobe, depth)
        else:
            D, I = ann.search_exact(xq, k, nprobe, depth, self.table.vectors_of)
        snap = self._snapshot
        return [self.table.hits(ids[ids >= 0], ds[ids >= 0], snap and snap.records(ids[ids >= 0]))
                for ds, ids in zip(D, I)]

    def vectors_of(self, ids) -> np.ndarray:
        """(len(ids), D) float32 stored vectors, zeros for ids not stored; from an exact ANN index
        when it holds them (no table read)."""
        xb = self.ann().vectors_of(np.asarray(ids, np.int64))
        return xb if xb is not None else self.table.vectors_of(ids)

    def vectors(self, ids=None) -> tuple[np.ndarray, np.ndarray]:
        """(ids (N,) int64, vectors (N, D) float32) read from the table: all of them or those of `ids`
        still stored, in no particular order."""
        return self.table.vectors(ids)

    def rows(self, ids) -> dict[int, Row]:
        """Images only: rows by id, with their metadata; ids not stored are absent."""
        return self.table.rows(ids)

    def all_rows(self) -> list[Row]:
        """Images only: every row without its metadata (`meta` None), what planning an `index` run needs."""
        return self.table.all_rows()

    def hits(self, ids, scores) -> list:
        """Hits of `ids` with `scores`, their paths and metadata read from the table (missing ids left out)."""
        return self.table.hits(ids, scores)

    def with_hashes(self, hashes) -> list[tuple[int, str, float | None]]:
        """Images only: (id, hash, time_s) of the rows whose content hash is one of `hashes`."""
        return self.table.with_hashes(hashes)

    def paths_without_meta(self) -> dict[int, str]:
        """id -> path of the images whose metadata was never read (older indexes, moved files)."""
        return self.table.paths_without_meta()

    def texts(self, ids=None) -> dict[int, str]:
        """Text collections only: id -> text, for every row or those of `ids`."""
        return self.table.texts(ids)

    def batches(self, names):
        """Those of the named columns the table has, for every row, as Arrow record batches."""
        return self.table.batches(names)

    def fragments(self) -> int:
        """How many small fragments the table holds: `compact` merges them."""
        return self.table.fragments()

    def matching(self, where: Filter) -> np.ndarray:
        """Sorted int64 ids of the records `where` lets through (none when the table lacks its
        columns: a text collection, an index not re-indexed since schema 4)."""
        t = self.columns(where.columns())
        if any(c not in t.column_names for c in where.columns()):
            return np.zeros(0, np.int64)
        return np.sort(t["id"].to_numpy()[where.mask(t)]).astype(np.int64)

    def columns(self, names: list[str]):
        """These columns (and "id") of every record as a pyarrow Table, read once per table version
        (a UI asks again and again); those the table lacks are absent."""
        key = (self.table.version, tuple(names))
        if key not in self._columns:
            self._columns = {k: v for k, v in self._columns.items() if k[0] == key[0]}
            self._columns[key] = self.table.meta_table(list(names))
        return self._columns[key]

    def ann(self) -> AnnIndex:
        """The ANN index, loaded from disk, or rebuilt when it doesn't match the table."""
        if self._ann is None:
            self._ann = self._load_ann()
        while self._ann_pending:  # reserved ids that failed to decode are simply not found
            ids = self._ann_pending.pop()
            found, xb = self.table.vectors(ids)
            self._ann.add(xb, found)
        return self._ann

    def info(self) -> dict:
        ann = self.ann()
        return {"name": self.name, "count": len(self), "ann": ann.spec.describe(),
                "ann_spec": ann.spec.to_dict(), "ann_trained_on": ann.trained_on}

    def _load_ann(self) -> AnnIndex:
        try:
            ann = AnnIndex.load(self.ann_file)
            if self._current_snapshot(ann) is not None:
                return ann  # current without a look at the table
            generation = ann.generation if ann.generation is not None else self._legacy()
            if generation == self.table.version:
                return ann
        except IndexDirError:
            pass  # missing or damaged: the stored vectors are the truth, rebuild below
        return self._build_ann()  # in memory; a writer saves it with its next `sync`

    def _current_snapshot(self, ann: AnnIndex) -> snapshot.Snapshot | None:
        """For a reader: the snapshot, if the table is still at its stamp and `ann` is of its generation."""
        snap = None if self.writable or ann.generation is None else snapshot.Snapshot.open(
            self.root / f"{self.name}{snapshot.SUFFIX}", snapshot.stamp(self._store.table_dir(self.name)))
        self._snapshot = snap if snap is not None and snap.generation == ann.generation else None
        return self._snapshot

    def _build_ann(self) -> AnnIndex:
        ids, xb = self.table.vectors()
        return AnnIndex.build(xb, ids, choose_spec(len(ids), self.table.dim))

    def _writing(self):
        if not self.writable:
            raise IndexDirError(f"the index at {self.root} was opened read-only")
        return self._lock
