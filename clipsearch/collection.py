"""A vector collection: a LanceDB table, the FAISS index derived from it, their generation and the
index's write lock. The images of an index are one collection, each text collection another.

Files, in the index directory: the table under `lance/<name>.lance`, the ANN index in `<name>.faiss`.
The ANN file records the table version it was built from (its generation); when that isn't the
table's current version (a crash between the two writes, a hand edit) or the file is damaged, the
index is rebuilt from the stored vectors -- in memory for a reader, on disk for a writer.
Every write takes the write lock (reentrant: a run that holds it across many writes keeps it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .ann import RERANK_FACTOR, AnnIndex, choose_spec
from .ann import rerank as rerank_exact
from .errors import IndexDirError, InputError
from .lock import WriteLock
from .store import Store, VectorTable

LegacyGeneration = Callable[[], "int | None"]


class Collection:
    """One table + ANN index. Open it through `Index` (images, `Index.texts(name)`)."""

    def __init__(self, root: Path, table: VectorTable, store: Store, lock: WriteLock, writable: bool,
                 legacy_generation: LegacyGeneration = lambda: None):
        self.root, self.table, self.writable = root, table, writable
        self._store, self._lock, self._legacy = store, lock, legacy_generation
        self._ann: AnnIndex | None = None
        self._next_id: int | None = None
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

    def __getattr__(self, name: str):
        """Reads (rows, all_rows, texts, vectors, vectors_of ...) pass through to the typed table;
        its writes are private to this class, which takes the lock and keeps the ANN index in step."""
        if name.startswith("_") or name == "table":
            raise AttributeError(name)
        return getattr(self.table, name)

    # --- writing -------------------------------------------------------------------------

    def add(self, records: list, xb: np.ndarray) -> np.ndarray:
        """Append records (their ids are assigned here) with their (N, D) vectors in one commit;
        the same vectors go into the ANN index in memory (saved by `sync`). -> the new ids."""
        with self._writing():
            ann = self.ann()  # before the commit, so that loading it doesn't see a moved table
            self.table._create(self._store)
            if self._next_id is None:
                self._next_id = self.table.max_id() + 1
            ids = np.arange(self._next_id, self._next_id + len(records), dtype=np.int64)
            if len(records):
                self.table._append(self.table._columns(records), ids, xb)
                ann.add(xb, ids)
                self._next_id += len(records)
            return ids

    def remove(self, ids) -> None:
        with self._writing():
            if len(ids) and self.table.exists:
                ann = self.ann()
                self.table._delete(ids)
                ann.remove(np.asarray(ids, np.int64))

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
            if ann.needs_rebuild(len(ann)):
                old = ann.spec.describe()
                ann = self._ann = self._build_ann()
                note = f"ANN index of {self.name} rebuilt for {len(ann)} vectors: {old} -> {ann.spec.describe()}"
                self.notes.append(note)
            self.table._ensure_id_index()
            ann.save(self.ann_file, generation=self.table.version)
            return note

    def reload(self) -> None:
        """See what other processes committed: the latest table version; the ANN index and the next
        id are worked out again when someone else changed the table."""
        seen = self.table.version
        self.table.refresh()
        if self.table.version != seen or not self.table.exists:
            self._ann, self._next_id = None, None

    # --- reading -------------------------------------------------------------------------

    def search(self, xq: np.ndarray, k: int, nprobe: int | None = None,
               rerank: int | None = None) -> list[list]:
        """(nq, D) float32 unit vectors -> per query the k best hits (Hit or TextHit), best first.

        An approximate index gives `rerank`·k candidates, re-scored exactly with the full
        vectors from the table, so the top k are exact among the candidates.
        """
        if k < 1:
            raise InputError(f"--top must be at least 1 (got {k})")
        ann = self.ann()
        k = min(k, len(ann))
        if k <= 0:
            return [[] for _ in range(len(xq))]
        xq = np.ascontiguousarray(xq, np.float32)
        rerank = rerank or RERANK_FACTOR
        exact = ann.spec.kind == "flat" or rerank <= 1
        D, I = ann.search(xq, k if exact else min(len(ann), rerank * k), nprobe)
        if not exact:
            D, I = rerank_exact(xq, I, self.table.vectors_of, k)
        return [self.table.hits(ids[ids >= 0], ds[ids >= 0]) for ds, ids in zip(D, I)]

    def ann(self) -> AnnIndex:
        """The ANN index, loaded from disk, or rebuilt when it doesn't match the table."""
        if self._ann is None:
            self._ann = self._load_ann()
        return self._ann

    def info(self) -> dict:
        ann = self.ann()
        return {"name": self.name, "count": len(self), "ann": ann.spec.describe(),
                "ann_spec": ann.spec.to_dict(), "ann_trained_on": ann.trained_on}

    def _load_ann(self) -> AnnIndex:
        try:
            ann = AnnIndex.load(self.ann_file)
            generation = ann.generation if ann.generation is not None else self._legacy()
            if generation == self.table.version:
                return ann
        except IndexDirError:
            pass  # missing or damaged: the stored vectors are the truth, rebuild below
        return self._build_ann()  # in memory; a writer saves it with its next `sync`

    def _build_ann(self) -> AnnIndex:
        ids, xb = self.table.vectors()
        return AnnIndex.build(xb, ids, choose_spec(len(ids), self.table.dim))

    def _writing(self):
        if not self.writable:
            raise IndexDirError(f"the index at {self.root} was opened read-only")
        return self._lock
