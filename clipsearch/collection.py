"""A vector collection: a LanceDB table, the ANN index derived from it, and the index's write lock.
The images of an index are one collection, each text collection another.

Files, in the index directory: the table under `lance/<name>.lance`, the ANN index in the folder
`<name>.ann/` (segments and their catalog: clipsearch/ann/segments.py), which also keeps what hits
show, so that a query reads no LanceDB. The table is the truth; the catalog records the table's
stamp (the listing of its versions) when it was committed. A reader whose table still has that stamp
uses the segments as they are, without LanceDB; else (another process wrote since, a crash between
the two writes) it catches up in memory (ann/catchup.py). A writer catches up the same way and
commits the result with its next `sync`; before a table change that may touch rows the segments hold
(remove, update, an id added again) it marks their ids dirty in the catalog, so that a crash before
the sync cannot leave old rows looking current. Every write takes the write lock (reentrant).
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

from clipsearch.ann.catchup import catch_up, take_in
from clipsearch.ann.refine import RERANK_FACTOR
from clipsearch.ann.segments import Segments
from clipsearch.ann.selection import search_among
from clipsearch.errors import IndexDirError, InputError
from clipsearch.store import snapshot
from clipsearch.store.filters import Filter
from clipsearch.store.lock import WriteLock
from clipsearch.store.records import Row
from clipsearch.store.tables import Store, VectorTable


class Collection:
    """One table + ANN index. Open it through `Index` (images, `Index.texts(name)`)."""

    def __init__(self, root: Path, table: VectorTable, store: Store, lock: WriteLock, writable: bool):
        self.root, self.table, self.writable = root, table, writable
        self._store, self._lock = store, lock
        self._ann: Segments | None = None
        self._seen: tuple | None = None  # (table stamp, catalog file state) when `_ann` was opened
        self._next_id: int | None = None
        self._columns: dict = {}  # (table version, column names) -> those columns, for filters
        self._ann_pending: list[np.ndarray] = []  # ids committed as fragments, not yet in the ANN
        self.notes: list[str] = []  # what `sync` did that a user should hear about
        self.checkpoint = lambda stage: None  # fault injection for tests (indexer failpoints)

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def ann_folder(self) -> Path:
        return self.root / f"{self.name}.ann"

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
        None); the same rows join the ANN index in memory (written by `sync`). -> the ids."""
        with self._writing():
            ann = self.ann()  # caught up before the commit, which it then follows
            self.table._create(self._store)
            ids = self.reserve_ids(len(records)) if ids is None else np.asarray(ids, np.int64)
            if len(records):
                if ann.holds_any(ids):  # ids added again (a re-index): say so before the commit
                    ann.mark_dirty(ids)
                table = self.table.arrow(records, ids, xb)
                self.table._append_arrow(table)
                ann.add(ids, xb, table.select(self.table.snapshot_columns()))
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
        rows `ids` (from `reserve_ids`): one atomic append. Their rows join the ANN index when it is
        next used (read back from the table), or through `adopt_ann`."""
        with self._writing():
            self.ann()  # caught up before the commit, as in `add`
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

    def adopt_ann(self, catalog) -> None:
        """Make the ANN index's rows those of `catalog`'s segments, written from the table's current
        rows elsewhere (a sharded build: indexer/ray_ann.py); committed by `sync`."""
        with self._writing():
            self._ann_pending = []  # in the segments already
            self.ann().adopt(catalog)

    def remove(self, ids) -> None:
        with self._writing():
            if len(ids) and self.table.exists:
                ann = self.ann()
                ann.mark_dirty(ids)
                self.table._delete(ids)
                ann.remove(np.asarray(ids, np.int64))

    def update(self, records: list[Row]) -> None:
        """Replace the columns (not the vectors) of existing image records, by id, in one commit; the
        ANN index takes their new records with their stored vectors (written by `sync`)."""
        with self._writing():
            if not records:
                return
            ann, ids = self.ann(), np.array([r.id for r in records], np.int64)
            ann.mark_dirty(ids)
            self.table._update(records)
            held = np.array([r is not None for r in ann.records_of(ids)], bool)
            kept = [r for r, h in zip(records, held) if h]
            if kept:
                xb = ann.vectors_of(ids[held])
                ann.add(ids[held], xb, self.table.arrow(kept, ids[held], xb).select(self.table.snapshot_columns()))

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

    def sync(self, checkpoint=None, optimize: bool = False) -> str | None:
        """Commit the ANN index for the table's current version (rows added since the last sync as a
        segment, merges and training when the sizes ask for them; `optimize`: all merged into one).
        Returns a sentence when the index was built again for its size, else None."""
        with self._writing():
            ann = self.ann()
            self.table._ensure_id_index()
            commit = ann.optimize if optimize else ann.sync
            note = commit(self.table.version, self._stamp(), checkpoint or self.checkpoint)
            self._seen = self._state()
            for legacy in (".faiss", ".rows", ".json"):  # before schema 7: one file, rewritten whole
                (self.root / f"{self.name}{legacy}").unlink(missing_ok=True)
            if note:
                self.notes.append(note := f"ANN index of {self.name} {note}")
            return note

    def reload(self) -> None:
        """See what other processes committed: the ANN index is opened again when its catalog or the
        table changed; a writer also works out the next id again."""
        if not self.writable:
            self.table.refresh()
            if self._ann is not None and self._state() != self._seen:
                self._ann = None
            return
        seen = self.table.version
        self.table.refresh()
        if self.table.version != seen or not self.table.exists:
            self._ann, self._next_id, self._ann_pending = None, None, []

    # --- reading -------------------------------------------------------------------------

    def search(self, xq: np.ndarray, k: int, nprobe: int | None = None,
               rerank: int | None = None, where: Filter | None = None) -> list[list]:
        """(nq, D) float32 unit vectors -> per query the k best hits (Hit or TextHit), best first.

        An approximate index re-scores at least `rerank`·k candidates, and 1,024, exactly with their
        stored vectors (refine.py), so the top k are exact among the candidates. With `where`, the k
        best among the records it lets through (selection.py).
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
            D, I = ann.search_exact(xq, k, nprobe, depth)
        return [self.table.hits(ids[ids >= 0], ds[ids >= 0], ann.records_of(ids[ids >= 0]))
                for ds, ids in zip(D, I)]

    def vectors_of(self, ids) -> np.ndarray:
        """(len(ids), D) float32 stored vectors, zeros for ids not stored (from the ANN segments)."""
        return self.ann().vectors_of(np.asarray(ids, np.int64))

    def vectors(self, ids=None) -> tuple[np.ndarray, np.ndarray]:
        """(ids (N,) int64, vectors (N, D) float32) read from the table: all of them or those of `ids`
        still stored, in no particular order."""
        return self.table.vectors(ids)

    def rows(self, ids) -> dict[int, Row]:
        """Images only: rows by id, with their metadata; ids not stored are absent."""
        return self.table.rows(ids)

    def all_rows(self) -> list[Row]:
        """Images only: every row without its metadata (`meta` None)."""
        return self.table.all_rows()

    def rows_under(self, folders: list[str]) -> list[Row]:
        """Images only: the rows of the files at or under `folders`, without their metadata."""
        return self.table.rows_under(folders)

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

    def max_id(self) -> int:
        """The largest id stored, -1 when there is none."""
        return self.table.max_id()

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

    def ann(self) -> Segments:
        """The ANN index: its committed segments, caught up with the table when it moved since."""
        if self._ann is None:
            self._seen = self._state()
            self._ann = self._open_ann()
        while self._ann_pending:  # reserved ids that failed to decode are simply not found
            take_in(self._ann, self._ann_pending.pop(), self.table.rows_with_vectors, len(self.table))
        return self._ann

    def info(self) -> dict:
        ann = self.ann()
        return {"name": self.name, "count": len(self), "ann": ann.spec.describe(),
                "ann_spec": ann.spec.to_dict(), "ann_trained_on": ann.trained_on,
                "ann_segments": len(ann.segments)}

    def _open_ann(self) -> Segments:
        try:
            ann = Segments.open(self.ann_folder, spills=self.writable)
        except IndexDirError:
            ann = None  # damaged: the table is the truth, built again below
        if ann is not None and ann.committed.stamp and ann.committed.stamp == self._stamp():
            return ann  # current: no look at the table
        if ann is None:
            ann = Segments.create(self.ann_folder if self.writable else self._scratch(), self.dim)
        catch_up(ann, self.table.ids(), self.table.rows_with_vectors)
        return ann

    def _stamp(self) -> str:
        """"" for a table outside a store (a server's shard): never current, caught up in memory."""
        return snapshot.stamp(self._store.table_dir(self.name)) if self._store is not None else ""

    def _state(self) -> tuple:
        """What a reader compares to see whether another process committed since."""
        try:
            st = (self.ann_folder / "catalog.json").stat()
            return self._stamp(), st.st_mtime_ns, st.st_size
        except OSError:
            return self._stamp(), None, None

    def _scratch(self) -> Path:
        """A folder of this process for the segments a reader builds (never committed)."""
        folder = Path(tempfile.mkdtemp(prefix=f"clipsearch-{self.name}-"))
        weakref.finalize(self, shutil.rmtree, folder, True)
        return folder / "ann"

    def _writing(self):
        if not self.writable:
            raise IndexDirError(f"the index at {self.root} was opened read-only")
        return self._lock
