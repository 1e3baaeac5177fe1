"""The one query method: what the CLI, the UI and the server run for a query, with calibrated scores.

`Matcher.run(Request)` reads a query (algebra words, or a vector), narrows its filter by the dates in
its words, searches the images or a text collection, calibrates, sorts and collapses, and answers
with what it understood and the matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from clipsearch.errors import ImageError, InputError
from clipsearch.index import Index
from clipsearch.media.image import to_pixels
from clipsearch.media.picture import load_picture
from clipsearch.models.encoder import Encoder
from clipsearch.search.algebra import IMAGE, TEXT, Term, embed_query, parse_query, query_kind
from clipsearch.search.calibration import Calibrator
from clipsearch.search.collapse import FETCH_FACTOR, collapse
from clipsearch.search.querydates import split_date
from clipsearch.store.filters import SORTS, Filter
from clipsearch.store.records import Hit, TextHit


@dataclass(frozen=True)
class Match:
    """A hit (an image or a text) and, for a cross-modal query, its calibrated score in (0, 1)."""

    hit: Hit | TextHit
    calibrated: float | None = None
    group: int | None = None  # images in its near-duplicate group, when results are collapsed

    @property
    def score(self) -> float:
        return self.hit.score


@dataclass(frozen=True)
class Understood:
    """A query as it will be run: its words without the dates typed into it, and the filter."""

    query: str | list[str] | list[Term] | None  # None: the query was a vector
    where: Filter | None
    note: str | None = None  # what was read from the words: "searching 'beach' taken in July 2023"


@dataclass(frozen=True)
class Request:
    """One query, as every front end states it: algebra words (`query`) or a (D,) unit `vector` that
    came from a `kind` (IMAGE or TEXT); the images are searched unless `texts` names a collection
    ("" for the index's default one)."""

    query: str | list[str] | list[Term] | None = None
    vector: np.ndarray | None = None
    kind: str = IMAGE
    k: int = 10
    texts: str | None = None
    where: Filter | None = None
    sort: str = "score"
    min_score: float | None = None
    nprobe: int | None = None
    rerank: int | None = None
    collapse: bool = False
    parse_dates: bool = True


@dataclass(frozen=True)
class Answer:
    """What a query was understood as, and its matches, best first."""

    understood: Understood
    matches: list[Match]


class Matcher:
    """Joins an encoder, an index built with the same model and a calibrator."""

    def __init__(self, encoder: Encoder, index: Index, calibrator: Calibrator | None = None, *,
                 max_pixels: int, duplicate_threshold: float):
        index.check_model(encoder.identity)
        self.encoder, self.index = encoder, index
        self.calibrator = calibrator or Calibrator(encoder)
        self.max_pixels, self.duplicate_threshold = max_pixels, duplicate_threshold

    def run(self, request: Request) -> Answer:
        """The one query path: understand, embed, search, calibrate, sort, collapse."""
        r = request
        if r.k < 1:
            raise InputError(f"--top must be at least 1 (got {r.k})")
        if (r.query is None) == (r.vector is None):
            raise InputError("give a query or a vector (one of them)")
        if r.collapse and r.texts is not None:
            raise InputError("--collapse groups near-duplicate images; drop it with --texts")
        texts = None if r.texts is None else self.index.texts(r.texts or None)
        if r.query is not None:
            understood = self.understand(r.query, r.where, r.parse_dates and texts is None)
            xq, kind = self.vector(understood.query)
        else:
            understood = Understood(None, r.where)
            xq, kind = np.asarray(r.vector, np.float32).reshape(-1), r.kind
        fetch = r.k * FETCH_FACTOR if r.collapse else r.k
        found = self._search(xq[None, :], [kind], fetch, texts, r.min_score, r.nprobe, r.rerank,
                             understood.where, r.sort)[0]
        if r.collapse:
            found = collapse(found, self.index.images, r.k, self.duplicate_threshold)
        return Answer(understood, found)

    def vector(self, query: str | list[str] | list[Term]) -> tuple[np.ndarray, str]:
        """(D,) unit vector of a query and its kind (TEXT, IMAGE or "mixed")."""
        terms = query if query and isinstance(query[0], Term) else parse_query(query)
        return embed_query(terms, self.encoder.encode_texts, self.embed_image), query_kind(terms)

    def embed_image(self, path: str | Path) -> np.ndarray:
        """(D,) float32 unit vector of the file at `path`, decoded as indexing decodes it."""
        if not Path(path).is_file():
            raise InputError(f"query image {path} does not exist: check the path")
        try:
            img = load_picture(path, max_pixels=self.max_pixels, size=self.encoder.preprocess.size)
        except ImageError as e:
            raise InputError(f"can't use {path} as a query image: {e}") from e
        return self.embed(img)

    def embed(self, img) -> np.ndarray:
        """(D,) float32 unit vector of a decoded RGB PIL image (e.g. from `image.open_upload`)."""
        p = self.encoder.preprocess
        return self.encoder.encode_pixels(to_pixels(img, p.size, p.resize_mode, p.interpolation)[None])[0]

    def understand(self, query: str | list[str] | list[Term], where: Filter | None = None,
                   parse_dates: bool = True) -> Understood:
        """A one-text query with a date in its words ("beach July 2023") -> its other words, and
        `where` narrowed to that date; anything else (algebra, images, no date) as it is."""
        terms = query if query and isinstance(query[0], Term) else parse_query(query) if query else []
        if not parse_dates or len(terms) != 1 or terms[0].kind != TEXT or terms[0].weight != 1:
            return Understood(query, where)
        found = split_date(terms[0].value)
        if found is None:
            return Understood(query, where)
        narrowed = (where or Filter()).with_dates(found.after, found.before)
        return Understood([found.text], narrowed, found.message())  # one word: no re-splitting

    def _search(self, xq: np.ndarray, kinds: list[str], k: int, texts, min_score: float | None,
                nprobe: int | None, rerank: int | None, where: Filter | None, sort: str) -> list[list[Match]]:
        """(nq, D) query vectors of `kinds` (TEXT, IMAGE, "mixed") -> per query the k best matches.

        Calibrated scores come with text queries over images and image queries over texts;
        `min_score` drops matches calibrated below it (InputError for other queries). With `where`,
        the k best among the images it lets through; sort="date" orders those k newest first.
        """
        if sort not in SORTS:
            raise InputError(f"--sort {sort!r}: use one of {', '.join(SORTS)}")
        if where and texts is not None:
            raise InputError("filters (dates, camera, place, folder ...) apply to images, not to --texts: drop them")
        target_kind = TEXT if texts is not None else IMAGE
        calibrate = [kind not in ("mixed", target_kind) for kind in kinds]
        if min_score is not None and not all(calibrate):
            raise InputError("--min-score applies to calibrated scores, which only text queries over "
                             "images and image queries over --texts have: drop --min-score")
        target = texts if texts is not None else self.index.images
        hits = target.search(np.asarray(xq, np.float32).reshape(len(kinds), -1), k, nprobe, rerank,
                             where=where or None)
        if sort == "date":
            hits = [newest_first(row) for row in hits]
        out = []
        for q, row, cal in zip(xq, hits, calibrate):
            scores = self._calibrated(q, row, texts is not None) if cal else [None] * len(row)
            out.append([Match(h, s) for h, s in zip(row, scores)
                        if min_score is None or s >= min_score])
        return out

    def _calibrated(self, q: np.ndarray, row: list, over_texts: bool) -> list[float]:
        cos = np.array([h.score for h in row], np.float64)
        if over_texts:  # the query is the image
            return self.calibrator(cos, q).tolist()
        return self.calibrator(cos, self.index.images.vectors_of([h.id for h in row])).tolist()


def newest_first(hits: list) -> list:
    """Hits by the time they were taken, newest first; those without a date last."""
    return sorted(hits, key=lambda h: getattr(getattr(h, "meta", None), "taken", None) or datetime.min,
                  reverse=True)
