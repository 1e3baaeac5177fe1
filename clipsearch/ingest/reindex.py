"""Vector sets: an index's images and texts under another model, built beside the active set.

A vector set is one model's collections: the images and every text collection, as tables named
with the set's prefix ("" for the first set: `images`, `texts_<name>`; then `s1_images`...). The
manifest names the active set (`prefix`, `model`), the set a re-index is building (`pending`) and
sets kept to switch back to (`kept`).

`reindex` fills the pending set with the active set's records re-encoded by a new model, under
the same ids, while `query`, the UI and `index` go on with the active set: it holds its own lock
(reindex.lock), and the index's write lock only to register the set and to switch. Each commit is
kept, so a killed run goes on where it stopped and encodes nothing twice; each round it catches up
with what `index` added, changed or removed meanwhile. When a round finds nothing left, it takes
the write lock, catches up one last time and switches by rewriting the manifest (atomic).
"""

from __future__ import annotations

import functools
import shutil
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from clipsearch.ingest.batch import Decoded, decode_file
from clipsearch.collection import Collection
from clipsearch.errors import InputError, LockedError
from clipsearch.index import TEXTS_PREFIX, Index
from clipsearch.store.lock import WriteLock
from clipsearch.models.encoder import Encoder, ModelIdentity
from clipsearch.store.tables import ImageTable, Store, TextTable
from clipsearch.store.records import IMAGES, Row

REINDEX_LOCK = "reindex.lock"
WAIT_S = 0.5  # between tries for the write lock, which an `index` run may hold for a while


@dataclass
class ReindexSummary:
    """What a re-index run did."""

    model: str
    encoded: int = 0  # images encoded by this run
    texts: int = 0  # texts encoded by this run
    unreadable: list[str] = field(default_factory=list)  # files that could not be re-encoded
    switched: bool = False
    kept: str = ""  # the --model/--pretrained of the set kept to switch back to
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class VectorSet:
    """One model's collections under a table prefix (written under `lock`)."""

    def __init__(self, index: Index, prefix: str, dim: int, lock: WriteLock):
        self.index, self.prefix, self.dim, self.lock = index, prefix, dim, lock
        self._store = Store(index.root / "lance", create=index.writable)
        name = prefix + IMAGES
        self.images = Collection(index.root, ImageTable(self._store.open_table(name), dim, name),
                                 self._store, lock, index.writable)
        self._texts: dict[str, Collection] = {}

    def texts(self, name: str) -> Collection:
        if name not in self._texts:
            table = self.prefix + TEXTS_PREFIX + name
            self._texts[name] = Collection(self.index.root, TextTable(table, self._store.open_table(table), self.dim),
                                           self._store, self.lock, self.index.writable)
        return self._texts[name]

    def text_names(self) -> list[str]:
        start = self.prefix + TEXTS_PREFIX
        return [n[len(start):] for n in self._store.names() if n.startswith(start)]

    def drop(self) -> None:
        """Delete the set's tables and ANN files."""
        for coll in [self.images, *(self.texts(n) for n in self.text_names())]:
            self._store.drop_table(coll.name)
            shutil.rmtree(coll.ann_folder, ignore_errors=True)


def reindex(index: Index, encoder: Encoder, *, keep: bool = False, max_pixels: int = 100_000_000,
            commit_every: int = 2048, decode_map=map, on_progress: Callable[[int, int], None] | None = None,
            checkpoint: Callable[[str], None] = lambda stage: None) -> ReindexSummary:
    """Re-encode `index` (opened writable) with `encoder`'s model into a pending set, then switch to
    it; with `keep`, the old set stays to switch back to (a re-index to its model then only catches
    up). LockedError if another re-index of this index is running."""
    start, summary = time.perf_counter(), ReindexSummary(encoder.identity.describe())
    with WriteLock(index.root, filename=REINDEX_LOCK) as lock:
        target = _locked(index, lambda: _begin(index, encoder.identity))
        work = VectorSet(index, target["prefix"], encoder.dim, lock)
        failed: set[int] = set()
        round_ = functools.partial(_catch_up, index, work, encoder, summary, failed, max_pixels,
                                   commit_every, decode_map, on_progress or (lambda d, t: None), checkpoint)
        while round_():  # without the write lock: `index` and queries go on meanwhile
            pass
        _locked(index, lambda: (round_(), _switch(index, work, encoder.identity, keep, summary, checkpoint)))
    summary.seconds = time.perf_counter() - start
    return summary


def abort(index: Index) -> str | None:
    """Drop the pending set of an interrupted re-index; the model it was for, or None if none."""
    with WriteLock(index.root, filename=REINDEX_LOCK) as lock, index.writing():
        pending = index.manifest.pending
        if not pending:
            return None
        model = ModelIdentity.from_dict(pending["model"])
        VectorSet(index, pending["prefix"], model.dim, lock).drop()
        index.manifest.pending = {}
        index.write_manifest()
        return model.describe()


def describe(index: Index) -> dict:
    """The vector sets of `index`: active, pending (with progress) and kept ones."""
    m = index.manifest
    out = {"active": {"model": m.model.to_dict(), "images": len(index.images)}, "kept": []}
    if m.pending:
        model = ModelIdentity.from_dict(m.pending["model"])
        pending = VectorSet(index, m.pending["prefix"], model.dim, index.lock)
        out["pending"] = {"model": model.to_dict(), "images_done": len(pending.images),
                          "images_total": len(index.images),
                          "texts_done": sum(len(pending.texts(n)) for n in index.text_names()),
                          "texts_total": sum(len(index.texts(n)) for n in index.text_names())}
    for kept in m.kept:
        model = ModelIdentity.from_dict(kept["model"])
        out["kept"].append({"model": model.to_dict(),
                            "images": len(VectorSet(index, kept["prefix"], model.dim, index.lock).images)})
    return out


def _locked(index: Index, fn):
    """`fn()` under the index's write lock, waiting for a running `index` to release it."""
    while True:
        try:
            with index.writing():
                return fn()
        except LockedError:
            time.sleep(WAIT_S)


def _begin(index: Index, identity: ModelIdentity) -> dict:
    """The pending set for `identity`: the one under way, a kept one, or a new one (in the manifest)."""
    m = index.manifest
    if m.model.same_model(identity) and not m.pending:
        raise InputError(f"the index at {index.root} already uses {identity.describe()}")
    if m.pending:
        if ModelIdentity.from_dict(m.pending["model"]).same_model(identity):
            return m.pending
        other = ModelIdentity.from_dict(m.pending["model"]).describe()
        raise InputError(f"a re-index to {other} is under way: finish it by running "
                         "`clipsearch reindex` with that model again, or drop it with `clipsearch reindex --abort`")
    kept = [k for k in m.kept if ModelIdentity.from_dict(k["model"]).same_model(identity)]
    used = [m.prefix, *(k["prefix"] for k in m.kept)]
    m.pending = kept[0] if kept else {"prefix": next(f"s{n}_" for n in range(1, len(used) + 2)
                                                     if f"s{n}_" not in used), "model": identity.to_dict()}
    m.kept = [k for k in m.kept if k is not m.pending]
    index.write_manifest()
    return m.pending


def _catch_up(index, work, encoder, summary, failed, max_pixels, commit_every, decode_map, on_progress,
              checkpoint) -> int:
    """One round: bring `work` level with the active set; -> how many records it encoded."""
    index.reload()
    n = _catch_up_texts(index, work, encoder, summary)
    active = {r.id: r for r in index.images.all_rows()}
    done = {r.id: r for r in work.images.all_rows()}
    work.images.remove([i for i, r in done.items() if active.get(i) != r])  # gone, changed, id reused
    todo: dict[str, list[Row]] = {}  # path -> its rows (a video has one a sampled frame)
    for i, r in sorted(active.items()):
        if done.get(i) != r and i not in failed:
            todo.setdefault(r.path, []).append(r)
    paths = list(todo)
    decode = functools.partial(decode_file, preprocess=encoder.preprocess, max_pixels=max_pixels)
    items = iter(decode_map(decode, paths))
    for s in range(0, len(paths), commit_every):
        rows, pixels = [], []
        for path in paths[s:s + commit_every]:
            decoded = next(items)
            for r in todo[path]:
                px = _pixels_of(decoded, r)
                if px is None:
                    failed.add(r.id)
                    summary.unreadable.append(r.path if r.time_s is None else f"{r.path} at {r.time_s:g} s")
                else:
                    rows.append(r)
                    pixels.append(px)
        for b in range(0, len(rows), encoder.batch_size):
            xb = encoder.encode_pixels(np.stack(pixels[b:b + encoder.batch_size]))
            work.images.add(rows[b:b + encoder.batch_size], xb,
                            ids=np.array([r.id for r in rows[b:b + encoder.batch_size]]))
        summary.encoded += len(rows)
        n += len(rows)
        on_progress(len(work.images), len(active))
        checkpoint("reindex-commit")
    return n


def _pixels_of(decoded, row: Row) -> np.ndarray | None:
    """The model-ready pixels of `row` (a still image, or the video frame at its time) in a decoded file."""
    if not isinstance(decoded, Decoded):
        return None
    for i, r in enumerate(decoded.rows):
        if r.time_s == row.time_s or (r.time_s is not None and row.time_s is not None
                                      and abs(r.time_s - row.time_s) < 1e-6):
            return decoded.pixels[i]
    return None


def _catch_up_texts(index: Index, work: VectorSet, encoder: Encoder, summary: ReindexSummary) -> int:
    n = 0
    for name in index.text_names():
        active, coll = index.texts(name).texts(), work.texts(name)
        done = coll.texts()
        coll.remove([i for i, t in done.items() if active.get(i) != t])
        todo = [(i, t) for i, t in sorted(active.items()) if done.get(i) != t]
        for s in range(0, len(todo), encoder.batch_size):  # one commit a batch: a kill keeps them
            ids, texts = zip(*todo[s:s + encoder.batch_size])
            coll.add(list(texts), encoder.encode_texts(list(texts)), ids=np.array(ids))
        n += len(todo)
        summary.texts += len(todo)
    for name in set(work.text_names()) - set(index.text_names()):
        coll = work.texts(name)
        coll.remove(np.array(list(coll.texts())))
    return n


def _switch(index: Index, work: VectorSet, identity: ModelIdentity, keep: bool,
            summary: ReindexSummary, checkpoint: Callable[[str], None]) -> None:
    """Make `work` the active set (one manifest write), keeping or dropping the old one."""
    for coll in [work.images, *(work.texts(n) for n in work.text_names())]:
        coll.sync()
    checkpoint("reindex-switch")
    m = index.manifest
    old = {"prefix": m.prefix, "model": m.model.to_dict()}
    m.model, m.prefix, m.pending = identity, work.prefix, {}
    if keep:
        m.kept = [*m.kept, old]
    index.write_manifest()
    summary.switched = True
    if keep:
        summary.kept = f"--model {old['model']['model']} --pretrained {old['model']['pretrained']}"
    if not keep:
        VectorSet(index, old["prefix"], ModelIdentity.from_dict(old["model"]).dim, index.lock).drop()
