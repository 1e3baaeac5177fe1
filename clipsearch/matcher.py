"""Running algebra queries against the images or a text collection, with calibrated scores."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from .algebra import IMAGE, TEXT, Term, embed_query, kind_of, parse_query
from .calibration import Calibrator
from .errors import InputError
from .collection import Collection
from .filters import SORTS, Filter
from .querydates import split_date
from .search import Searcher
from .store import Hit, TextHit


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

    query: str | list[str] | list[Term]
    where: Filter | None
    note: str | None = None  # what was read from the words: "searching 'beach' taken in July 2023"


class Matcher:
    """Joins a searcher (encoder + index) and a calibrator; queries are algebra expressions."""

    def __init__(self, searcher: Searcher, calibrator: Calibrator | None = None):
        self.searcher = searcher
        self.calibrator = calibrator or Calibrator(searcher.encoder)

    def vector(self, query: str | list[str] | list[Term]) -> tuple[np.ndarray, str]:
        """(D,) unit vector of a query and its kind (TEXT, IMAGE or "mixed")."""
        terms = query if query and isinstance(query[0], Term) else parse_query(query)
        enc = self.searcher.encoder
        return embed_query(terms, enc.encode_texts, self.searcher.embed_image), kind_of(terms)

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

    def search(self, queries: list, k: int, texts: Collection | None = None,
               min_score: float | None = None, nprobe: int | None = None,
               rerank: int | None = None, where: Filter | None = None,
               sort: str = "score") -> list[list[Match]]:
        """Per query (algebra: a string, command-line words or Terms) the k best images (or texts
        of `texts`), best first by cosine. See `search_vectors`."""
        if k < 1:
            raise InputError(f"--top must be at least 1 (got {k})")
        vecs, kinds = zip(*(self.vector(q) for q in queries)) if queries else ((), ())
        xq = np.stack(vecs) if vecs else np.zeros((0, self.searcher.encoder.dim), np.float32)
        return self.search_vectors(xq, list(kinds), k, texts, min_score, nprobe, rerank, where, sort)

    def search_vectors(self, xq: np.ndarray, kinds: list[str], k: int, texts: Collection | None = None,
                       min_score: float | None = None, nprobe: int | None = None,
                       rerank: int | None = None, where: Filter | None = None,
                       sort: str = "score") -> list[list[Match]]:
        """(nq, D) query vectors of `kinds` (TEXT, IMAGE, "mixed") -> per query the k best matches.

        Calibrated scores come with text queries over images and image queries over texts;
        `min_score` drops matches calibrated below it (InputError for other queries). `nprobe` and
        `rerank` tune an approximate ANN index (images or texts alike). With `where` (a Filter over
        the images' metadata), the k best among the images it lets through; sort="date" orders
        those k newest first.
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
        target = texts if texts is not None else self.searcher.index.images
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
        return self.calibrator(cos, self.searcher.index.images.vectors_of([h.id for h in row])).tolist()


def newest_first(hits: list) -> list:
    """Hits by the time they were taken, newest first; those without a date last."""
    return sorted(hits, key=lambda h: getattr(getattr(h, "meta", None), "taken", None) or datetime.min,
                  reverse=True)
