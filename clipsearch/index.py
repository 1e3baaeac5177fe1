"""The index: a directory joining the manifest, the LanceDB store and the FAISS ANN index.

Layout of an index directory:
    manifest.json   schema version, model identity, ANN spec and generation
    lance/          LanceDB tables (metadata + full vectors)
    images.faiss    the ANN index over the images table's vectors
The ANN index is derived data: its generation must equal the table version it was built from,
otherwise it is rebuilt from the stored vectors (a crash between the two writes, a hand edit).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import manifest as mf
from .ann import RERANK_FACTOR, AnnIndex, choose_spec
from .ann import rerank as rerank_exact
from .errors import IndexDirError, ModelError
from .model import ModelIdentity
from .store import IMAGES, FailureTable, ImageTable, Row, Store

ANN_FILE = "images.faiss"


@dataclass(frozen=True)
class Hit:
    """One search result."""

    path: str
    score: float
    id: int
    width: int
    height: int


class Index:
    """An open index directory. Use `open_index` (read) or `create_index` (read-write)."""

    def __init__(self, root: Path, manifest: mf.Manifest, store: Store, writable: bool):
        self.root, self.manifest, self.writable = root, manifest, writable
        self.images = ImageTable(store.table(IMAGES, manifest.model.dim))
        self.failures = FailureTable(store)  # files that could not be indexed, with why
        self._ann: AnnIndex | None = None
        self.nprobe: int | None = None  # search defaults of this handle: None = the spec's nprobe
        self.rerank: int = RERANK_FACTOR
        self.notes: list[str] = []  # what sync_ann did that a user should hear about

    @property
    def identity(self) -> ModelIdentity:
        return self.manifest.model

    def __len__(self) -> int:
        return len(self.images)

    def check_model(self, identity: ModelIdentity) -> None:
        """ModelError unless `identity` is the model this index was built with."""
        if not self.identity.same_model(identity):
            raise ModelError(f"the index at {self.root} was built with {self.identity.describe()}, "
                             f"not {identity.describe()}: query it without --model/--pretrained, or "
                             "build a separate index with --index DIR")

    # --- writing -------------------------------------------------------------------------

    def add(self, rows: list[Row], xb: np.ndarray) -> None:
        """Append rows (their ids are assigned here) with their vectors: one table commit, and
        the same vectors added to the ANN index in memory (saved by `sync_ann`)."""
        self._require_writable()
        ann = self.ann()  # before the commit, so that loading it doesn't see a moved table
        start = self.images.max_id() + 1
        rows = [replace(r, id=start + i) for i, r in enumerate(rows)]
        self.images.add(rows, xb)
        if rows:
            ann.add(xb, np.array([r.id for r in rows], np.int64))

    def remove(self, ids) -> None:
        self._require_writable()
        ann = self.ann()
        self.images.delete_ids(ids)
        ann.remove(np.asarray(ids, np.int64))

    def reload(self) -> None:
        """See what other processes committed: latest table version and manifest; ANN reloaded on use."""
        self.images.refresh()
        self.manifest = mf.read(self.root)
        self._ann = None

    def add_roots(self, roots: list[str]) -> None:
        self.manifest.roots = sorted(set(self.manifest.roots) | set(roots))
        mf.write(self.root, self.manifest)

    def adopt_ann(self, ann: AnnIndex) -> None:
        """Use `ann`, built elsewhere from the table's current rows (a sharded build); saved by `sync_ann`."""
        self._require_writable()
        self._ann = ann

    def sync_ann(self) -> str | None:
        """Save the ANN index for the table's current version (atomically, then the manifest).

        Rebuilds it first when the collection outgrew what it was trained on; returns a
        sentence saying so, else None.
        """
        self._require_writable()
        ann, note = self.ann(), None
        if ann.needs_rebuild(len(ann)):
            old = ann.spec.describe()
            ann = self._ann = self._build_ann()
            note = f"ANN index rebuilt for {len(ann)} images: {old} -> {ann.spec.describe()}"
            self.notes.append(note)
        ann.save(self.root / ANN_FILE)
        self.manifest.ann = {"spec": ann.spec.to_dict(), "trained_on": ann.trained_on,
                             "generation": self.images.version}
        mf.write(self.root, self.manifest)
        return note

    # --- reading -------------------------------------------------------------------------

    def search(self, xq: np.ndarray, k: int, nprobe: int | None = None,
               rerank: int | None = None) -> list[list[Hit]]:
        """(nq, D) float32 unit vectors -> per query the k best hits, best first.

        An approximate index gives `rerank`·k candidates, re-scored exactly with the full
        vectors from the table, so the top k are exact among the candidates.
        """
        ann = self.ann()
        k = min(k, len(ann))
        if k <= 0:
            return [[] for _ in range(len(xq))]
        xq = np.ascontiguousarray(xq, np.float32)
        nprobe, rerank = nprobe or self.nprobe, rerank or self.rerank
        exact = ann.spec.kind == "flat" or rerank <= 1
        D, I = ann.search(xq, k if exact else min(len(ann), rerank * k), nprobe)
        if not exact:
            D, I = rerank_exact(xq, I, self.images.vectors_of, k)
        rows = self.images.rows(np.unique(I[I >= 0]))
        return [[Hit(rows[i].path, float(d), int(i), rows[i].width, rows[i].height)
                 for d, i in zip(ds, ids) if i in rows] for ds, ids in zip(D, I)]

    def ann(self) -> AnnIndex:
        """The ANN index, loaded from disk, or rebuilt when it doesn't match the table."""
        if self._ann is None:
            self._ann = self._load_ann()
        return self._ann

    def info(self) -> dict:
        ann = self.ann()
        return {"index": str(self.root), "images": len(self), "model": self.identity.to_dict(),
                "ann": ann.spec.describe(), "ann_spec": ann.spec.to_dict(),
                "ann_trained_on": ann.trained_on, "schema_version": self.manifest.schema_version,
                "roots": self.manifest.roots, "bytes_on_disk": _disk_usage(self.root)}

    def _load_ann(self) -> AnnIndex:
        if self.manifest.ann.get("generation") == self.images.version:
            try:
                return AnnIndex.load(self.root / ANN_FILE)
            except IndexDirError:
                pass  # damaged file: the stored vectors are the truth, rebuild below
        self._ann = self._build_ann()
        if self.writable:  # a reader never writes: it rebuilds in memory only
            self.sync_ann()
        return self._ann

    def _build_ann(self) -> AnnIndex:
        ids, xb = self.images.vectors()
        return AnnIndex.build(xb, ids, choose_spec(len(ids), self.identity.dim))

    def _require_writable(self) -> None:
        if not self.writable:
            raise IndexDirError(f"the index at {self.root} was opened read-only")


def open_index(root: Path | str, writable: bool = False) -> Index:
    """Open an existing index; IndexDirError (saying what to do) if there is none."""
    root = Path(root).expanduser()
    if root.exists() and not os.access(root, os.R_OK | os.X_OK):
        raise IndexDirError(f"the index directory {root} is not readable: fix its permissions")
    manifest = mf.read(root)
    if writable and not os.access(root, os.W_OK):
        raise IndexDirError(f"the index directory {root} is not writable: fix its permissions "
                            "or pass another --index DIR")
    return Index(root, manifest, Store(root / "lance"), writable)


def create_index(root: Path | str, identity: ModelIdentity) -> Index:
    """Open the index at `root` for writing, creating it for `identity` if it doesn't exist."""
    root = Path(root).expanduser()
    if (root / mf.FILENAME).exists():
        index = open_index(root, writable=True)
        index.check_model(identity)
        return index
    if root.exists() and any(root.iterdir()):
        raise IndexDirError(f"{root} exists and is not a clipsearch index: pass an empty or new "
                            "--index DIR")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise IndexDirError(f"can't create the index directory {root}: {e}") from e
    manifest = mf.Manifest(model=identity)
    mf.write(root, manifest)  # first: a crash after this leaves a valid, empty index
    return Index(root, manifest, Store(root / "lance"), writable=True)


def _disk_usage(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
