"""The query of the page: a text, an uploaded image or an indexed image, ready to search with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipsearch import InputError, Settings, Term, parse_query
from clipsearch.search.algebra import IMAGE
from clipsearch.errors import ImageError
from clipsearch.media.files import display_path
from clipsearch.media.image import open_upload
from clipsearch.media.video import timestamp

from clipsearch.app.resources import Resources


@dataclass(frozen=True)
class Query:
    """What to search with: algebra terms (typed), or an image vector with a preview of the image."""

    title: str
    terms: list[Term] | None = None
    vector: np.ndarray | None = None
    preview: bytes | None = None
    words: str | None = None  # as typed, "quotes" and all: what is looked for in the pictures' text


def typed_query(typed: str, res: Resources) -> Query:
    """A typed query, read as `clipsearch query` reads its words (the same algebra). Image terms
    must lie inside the indexed folders: the page reads no other file of the server's."""
    terms = parse_query(typed)
    terms = [Term(IMAGE, str(res.roots.resolve(t.value)), t.weight) if t.kind == IMAGE else t for t in terms]
    return Query(f"Images matching “{typed.strip()}”", terms=terms, words=typed)


def upload_query(data: bytes, name: str, res: Resources, settings: Settings) -> Query:
    """A query from uploaded bytes, size- and pixel-capped, decoded by the indexer's own loader."""
    try:
        img = open_upload(data, max_bytes=settings.upload_max_bytes, max_pixels=settings.upload_max_pixels)
    except ImageError as e:
        raise InputError(f"can't search with {name}: {e}") from e
    return Query(f"Images like {name}", vector=res.matcher.embed(img), preview=res.thumbs.encode(img))


def like_query(hit_id: int, path: str, time_s: float | None, res: Resources) -> Query:
    """A query from an indexed image's (or video frame's) stored vector."""
    name = Path(display_path(path)).name + ("" if time_s is None else f"@{timestamp(time_s)}")
    ids, xb = res.index.images.vectors([hit_id])
    if not len(ids):
        raise InputError(f"{name} is no longer in the index: search again")
    return Query(f"Images like {name}", vector=xb[0], preview=res.thumbs.get(res.roots.resolve(path), time_s))
