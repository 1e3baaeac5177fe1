"""Text collections: named sets of texts beside the images, for image -> text queries.

Each is a `Collection` of the index (table `texts_<name>`, ANN file `texts_<name>.faiss`).
"""

from __future__ import annotations

from dataclasses import dataclass

from clipsearch.collection import Collection
from clipsearch.index import Index, check_name
from clipsearch.models.encoder import Encoder
from clipsearch.store.records import TextHit

__all__ = ["TextHit", "TextSummary", "add_texts", "check_name", "collection_names", "open_texts"]


@dataclass(frozen=True)
class TextSummary:
    """What adding texts to a collection did."""

    name: str
    added: int
    unchanged: int
    removed: int
    total: int


def collection_names(index: Index) -> list[str]:
    """Names of the text collections in `index`."""
    return index.text_names()


def open_texts(index: Index, name: str | None = None) -> Collection:
    """An existing collection; with no name, the only one. InputError (saying which exist) if none."""
    return index.texts(name)


def add_texts(index: Index, encoder: Encoder, name: str, texts: list[str],
              prune: bool = False) -> TextSummary:
    """Add `texts` to collection `name` (created when missing), encoding only those not in it yet.

    With `prune`, texts of the collection that are not in `texts` are removed. Runs under the
    index's write lock (IndexDirError if another process is writing); the ANN index is brought up
    to date. Texts are matched exactly (after stripping).
    """
    check_name(name)
    index.check_model(encoder.identity)
    with index.writing():
        coll = index.texts(name, create=True)
        known = {t: i for i, t in coll.texts().items()}
        wanted = list(dict.fromkeys(t.strip() for t in texts if t and t.strip()))
        new = [t for t in wanted if t not in known]
        gone = sorted(set(known) - set(wanted)) if prune else []
        for s in range(0, len(new), encoder.batch_size):  # one commit per batch: a crash keeps the work done
            chunk = new[s:s + encoder.batch_size]
            coll.add(chunk, encoder.encode_texts(chunk))
        coll.remove([known[t] for t in gone])
        coll.sync()
    return TextSummary(name, len(new), len(wanted) - len(new), len(gone), len(coll))
