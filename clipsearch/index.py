"""The index: a directory joining the manifest, the images collection and named text collections.

Layout of an index directory:
    manifest.json        schema version, model identity, indexed roots
    lance/               LanceDB tables: images, texts_<name>..., failures, unread_headers, ocr
    images.ann/          the images' ANN index: segments and the catalog naming them, with the
                         table stamp it matches; what hits show, read by queries without LanceDB
    texts_<name>.ann/    each text collection's ANN index
    write.lock           held by the one process writing (see `lock.WriteLock`)
Writes go through a writable handle (`create_index`, or `open_index(..., writable=True)`); each
takes the write lock, so a second writer is refused however it writes. Readers never write.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from clipsearch.store import manifest as mf
from clipsearch.collection import Collection
from clipsearch.errors import IndexDirError, InputError, ModelError
from clipsearch.store.lock import WriteLock
from clipsearch.models.encoder import ModelIdentity
from clipsearch.store.ocr import OcrTable
from clipsearch.store.skipped import SkippedTable
from clipsearch.store.tables import FailureTable, ImageTable, Later, Store, TextTable
from clipsearch.store.records import IMAGES, UNREAD, Hit

TEXTS_PREFIX = "texts_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

__all__ = ["Hit", "Index", "create_index", "open_index"]


class Index:
    """An open index directory. Use `open_index` (read) or `create_index` (read-write)."""

    def __init__(self, root: Path, manifest: mf.Manifest, store: Store, writable: bool):
        self.root, self.manifest, self.writable = root, manifest, writable
        self.lock = WriteLock(root, on_acquire=self._start_writing)
        self._store = store
        self._open_collections()
        self.failures = FailureTable(store, self.lock)  # files that could not be indexed, with why
        self.unread = FailureTable(store, self.lock, UNREAD)  # rows whose file's header could not be read
        self.skipped = SkippedTable(store, self.lock)  # files that are not images, RAW photos or videos
        self.ocr = OcrTable(store, self.lock)  # the words read in the pictures (`clipsearch ocr`)

    def _open_collections(self) -> None:
        """The active vector set's collections (see vectorsets.py): images, and texts on demand."""
        manifest, name = self.manifest, self.manifest.prefix + IMAGES
        table = self._store.open_table(name) if self.writable else Later(self._store, name)  # readers: on first use
        if table is None and self.writable:  # a crash right after the manifest was written
            with WriteLock(self.root):
                table = self._store.create_table(name, ImageTable(None, manifest.model.dim).schema)
        self.images = Collection(self.root, ImageTable(table, manifest.model.dim, name), self._store,
                                 self.lock, self.writable)
        self._texts: dict[str, Collection] = {}

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

    # --- text collections --------------------------------------------------------------------

    def text_names(self) -> list[str]:
        """Names of the text collections."""
        prefix = self.manifest.prefix + TEXTS_PREFIX
        return [n[len(prefix):] for n in self._store.names() if n.startswith(prefix)]

    def texts(self, name: str | None = None, create: bool = False) -> Collection:
        """The text collection `name` (the only one when None); with `create`, made when missing.
        InputError, saying which exist, when there is no such collection."""
        names = self.text_names()
        if name is None:
            if len(names) != 1:
                raise InputError(_which_collection(self.root, names))
            name = names[0]
        check_name(name)
        if name not in names and not create:
            raise InputError(_which_collection(self.root, names, name))
        if name not in self._texts:
            self._texts[name] = self._text_collection(name)
        coll = self._texts[name]
        if create and not coll.table.exists:
            with self.writing():
                coll.table._create(self._store)
        return coll

    def _text_collection(self, name: str) -> Collection:
        table = self.manifest.prefix + TEXTS_PREFIX + name
        return Collection(self.root, TextTable(table, self._store.open_table(table), self.identity.dim),
                          self._store, self.lock, self.writable)

    # --- the directory as a whole -------------------------------------------------------------

    def collections(self) -> list[Collection]:
        return [self.images, *(self.texts(n) for n in self.text_names())]

    def writing(self) -> WriteLock:
        """The write lock, for a `with` block spanning several writes; IndexDirError if this handle
        is read-only or another process is writing."""
        if not self.writable:
            raise IndexDirError(f"the index at {self.root} was opened read-only")
        return self.lock

    def _start_writing(self) -> None:
        """Run when this handle takes the write lock: see what others committed, and bring an index
        of an older schema up to this one before anything is written to it."""
        model = self.identity
        self.reload()
        if not self.identity.same_model(model):
            raise ModelError(f"the index at {self.root} was switched to {self.identity.describe()} "
                             "(clipsearch reindex) after this run loaded its model: run it again")
        if self.manifest.schema_version < mf.SCHEMA_VERSION:
            self.upgrade()

    def reload(self) -> None:
        """See what other processes committed: the manifest and every collection's latest version."""
        active = (self.manifest.prefix, self.identity)
        self.manifest = mf.read(self.root)
        self.ocr.refresh()
        if (self.manifest.prefix, self.identity) != active:  # a re-index switched the vector set
            self._open_collections()
            return
        self.images.reload()
        for coll in self._texts.values():
            coll.reload()

    def add_roots(self, roots: list[str]) -> None:
        with self.writing():
            self.manifest.roots = sorted(set(self.manifest.roots) | set(roots))
            self.write_manifest()

    def write_manifest(self) -> None:
        """Save the manifest at this schema version (under the write lock)."""
        with self.writing():
            self.manifest.schema_version = mf.SCHEMA_VERSION
            self.manifest.legacy_ann = {}
            mf.write(self.root, self.manifest)

    def upgrade(self) -> bool:
        """Bring an index of an older schema up to this one, in place; True if it had to. Every
        writer does it when it takes the lock."""
        with self.writing():
            changed = any([c.upgrade() for c in self.collections()])
            if self.manifest.schema_version < mf.SCHEMA_VERSION or changed:
                for coll in self.collections():  # ANN segments built from the table (schema 7)
                    coll.sync()
                self.write_manifest()
                return True
            return False

    def info(self) -> dict:
        images = self.images.info()
        return {"index": str(self.root), "images": len(self), "model": self.identity.to_dict(),
                "ann": images["ann"], "ann_spec": images["ann_spec"], "ann_segments": images["ann_segments"],
                "ann_trained_on": images["ann_trained_on"], "schema_version": self.manifest.schema_version,
                "texts": {n: len(self.texts(n)) for n in self.text_names()},
                "roots": self.manifest.roots, "bytes_on_disk": _disk_usage(self.root), "ocr": self.ocr.stats()}


def open_index(root: Path | str, writable: bool = False) -> Index:
    """Open an existing index; IndexDirError (saying what to do) if there is none."""
    root = Path(root).expanduser()
    if root.exists() and not os.access(root, os.R_OK | os.X_OK):
        raise IndexDirError(f"the index directory {root} is not readable: fix its permissions")
    manifest = mf.read(root)
    if writable and not os.access(root, os.W_OK):
        raise IndexDirError(f"the index directory {root} is not writable: fix its permissions "
                            "or pass another --index DIR")
    return Index(root, manifest, Store(root / "lance", create=writable), writable)


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
    with WriteLock(root):
        mf.write(root, mf.Manifest(model=identity))  # first: a crash after this leaves a valid, empty index
    return open_index(root, writable=True)


def check_name(name: str) -> str:
    """`name` if it can name a text collection; InputError otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InputError(f"{name!r} can't name a text collection: use letters, digits, '_', '-' "
                         "or '.', starting with a letter or digit (at most 64)")
    return name


def _which_collection(root: Path, names: list[str], wanted: str | None = None) -> str:
    if not names:
        return (f"the index at {root} has no text collections: add one with "
                "`clipsearch index-texts FILE --name NAME`")
    if wanted is None:
        return (f"the index has several text collections ({', '.join(names)}): "
                "name one, e.g. --texts " + names[0])
    return (f"no text collection {wanted!r} (there are: {', '.join(names)}): "
            f"add it with `clipsearch index-texts FILE --name {wanted}`")


def _disk_usage(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
