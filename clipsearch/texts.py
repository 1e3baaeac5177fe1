"""Text collections: named sets of texts beside the images, for image -> text queries.

Each collection lives in the index directory as a LanceDB table `texts_<name>` (id, text, vector)
and a FAISS file `texts_<name>.faiss`, whose sidecar `texts_<name>.json` records the table version it
was built from; like the images' ANN index it is derived data, rebuilt when it doesn't match.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .ann import RERANK_FACTOR, AnnIndex, choose_spec, rerank
from .errors import IndexDirError, InputError
from .index import Index
from .durable import atomic_write
from .model import Encoder
from .store import ImageTable, Store

PREFIX = "texts_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class TextHit:
    """One text found for a query."""

    text: str
    score: float
    id: int


@dataclass(frozen=True)
class TextSummary:
    """What adding texts to a collection did."""

    name: str
    added: int
    unchanged: int
    removed: int
    total: int


def text_schema(dim: int):
    import pyarrow as pa

    return pa.schema([pa.field("id", pa.int64()), pa.field("text", pa.string()),
                      pa.field("vector", pa.list_(pa.float32(), dim))])


class TextTable(ImageTable):
    """Typed access to a texts table; ids, vectors and deletes work as for images."""

    def add_texts(self, ids: np.ndarray, texts: list[str], xb: np.ndarray) -> None:
        """Append texts under `ids` with their (N, D) float32 vectors in one commit."""
        import pyarrow as pa

        if not texts:
            return
        flat = pa.array(np.ascontiguousarray(xb, np.float32).ravel())
        vec = pa.FixedSizeListArray.from_arrays(flat, xb.shape[1])
        self._t.add(pa.table({"id": np.asarray(ids, np.int64), "text": texts, "vector": vec},
                             schema=self._t.schema))

    def texts(self, ids=None) -> dict[int, str]:
        """id -> text, for all rows or those of `ids`."""
        where = None if ids is None else f"id IN ({','.join(str(int(i)) for i in ids) or '-1'})"
        t = self._query(where, ["id", "text"])
        return dict(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))


class TextCollection:
    """One named collection in an index directory. Use `open_texts` or `add_texts`."""

    def __init__(self, index: Index, name: str, store: Store, writable: bool):
        self.index, self.name, self.writable = index, name, writable
        self.table = TextTable(store.table(PREFIX + name, index.identity.dim, text_schema(index.identity.dim)))
        self._ann: AnnIndex | None = None

    def __len__(self) -> int:
        return len(self.table)

    @property
    def _files(self) -> tuple[Path, Path]:
        base = self.index.root / f"{PREFIX}{self.name}"
        return base.with_name(base.name + ".faiss"), base.with_name(base.name + ".json")

    def search(self, xq: np.ndarray, k: int) -> list[list[TextHit]]:
        """(nq, D) float32 unit vectors -> per query the k best texts, best first."""
        if k < 1:
            raise InputError(f"--top must be at least 1 (got {k})")
        ann = self.ann()
        k = min(k, len(ann))
        if k <= 0:
            return [[] for _ in range(len(xq))]
        xq = np.ascontiguousarray(xq, np.float32)
        if ann.spec.kind == "flat":
            D, I = ann.search(xq, k)
        else:  # approximate: re-score RERANK_FACTOR·k candidates exactly with the stored vectors
            _, cand = ann.search(xq, min(len(ann), RERANK_FACTOR * k))
            D, I = rerank(xq, cand, self.table.vectors_of, k)
        texts = self.table.texts(np.unique(I[I >= 0]))
        return [[TextHit(texts[i], float(d), int(i)) for d, i in zip(ds, ids) if i in texts]
                for ds, ids in zip(D, I)]

    def ann(self) -> AnnIndex:
        """The ANN index, loaded from disk, or rebuilt when it doesn't match the table."""
        if self._ann is None:
            self._ann = self._load_ann()
        return self._ann

    def sync_ann(self) -> None:
        """Rebuild the ANN index from the table and save it with the table version it matches."""
        ann_file, state_file = self._files
        ids, xb = self.table.vectors()
        self._ann = AnnIndex.build(xb, ids, choose_spec(len(ids), self.index.identity.dim))
        self._ann.save(ann_file)
        atomic_write(state_file, json.dumps({"generation": self.table.version}).encode())

    def _load_ann(self) -> AnnIndex:
        ann_file, state_file = self._files
        try:
            if json.loads(state_file.read_text()).get("generation") == self.table.version:
                return AnnIndex.load(ann_file)
        except (OSError, ValueError, AttributeError, IndexDirError):
            pass  # missing or damaged: the stored vectors are the truth, rebuild below
        if self.writable:
            self.sync_ann()
            return self._ann
        ids, xb = self.table.vectors()
        return AnnIndex.build(xb, ids, choose_spec(len(ids), self.index.identity.dim))


def collection_names(index: Index) -> list[str]:
    """Names of the text collections in `index`."""
    return [n[len(PREFIX):] for n in Store(index.root / "lance").names() if n.startswith(PREFIX)]


def open_texts(index: Index, name: str | None = None) -> TextCollection:
    """An existing collection; with no name, the only one. InputError (saying which exist) if none."""
    names = collection_names(index)
    if not names:
        raise InputError(f"the index at {index.root} has no text collections: add one with "
                         "`clipsearch index-texts FILE --name NAME`")
    if name is None and len(names) > 1:
        raise InputError(f"the index has several text collections ({', '.join(names)}): "
                         "name one, e.g. --texts " + names[0])
    name = name or names[0]
    if name not in names:
        raise InputError(f"no text collection {name!r} (there are: {', '.join(names)}): "
                         "add it with `clipsearch index-texts FILE --name " + name + "`")
    return TextCollection(index, name, Store(index.root / "lance"), writable=index.writable)


def add_texts(index: Index, encoder: Encoder, name: str, texts: list[str],
              prune: bool = False) -> TextSummary:
    """Add `texts` to collection `name` (created when missing), encoding only those not in it yet.

    With `prune`, texts of the collection that are not in `texts` are removed. The ANN index is
    brought up to date. Texts are matched exactly (after stripping).
    """
    check_name(name)
    index.check_model(encoder.identity)
    if not index.writable:
        raise IndexDirError(f"the index at {index.root} was opened read-only")
    coll = TextCollection(index, name, Store(index.root / "lance"), writable=True)
    known = {t: i for i, t in coll.table.texts().items()}
    wanted = list(dict.fromkeys(t.strip() for t in texts if t and t.strip()))
    new = [t for t in wanted if t not in known]
    gone = sorted(set(known) - set(wanted)) if prune else []
    start = coll.table.max_id() + 1
    for s in range(0, len(new), encoder.batch_size):  # one commit per batch: a crash keeps the work done
        chunk = new[s:s + encoder.batch_size]
        coll.table.add_texts(np.arange(start + s, start + s + len(chunk)), chunk, encoder.encode_texts(chunk))
    coll.table.delete_ids([known[t] for t in gone])
    coll.sync_ann()
    return TextSummary(name, len(new), len(wanted) - len(new), len(gone), len(coll))


def check_name(name: str) -> str:
    """`name` if it can name a collection; InputError otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InputError(f"{name!r} can't name a text collection: use letters, digits, '_', '-' "
                         "or '.', starting with a letter or digit (at most 64)")
    return name
