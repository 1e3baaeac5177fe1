"""Running algebra queries against the images or a text collection, with calibrated scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .algebra import IMAGE, TEXT, Term, embed_query, kind_of, parse_query
from .calibration import Calibrator
from .errors import InputError
from .collection import Collection
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

    def search(self, queries: list, k: int, texts: Collection | None = None,
               min_score: float | None = None, nprobe: int | None = None,
               rerank: int | None = None) -> list[list[Match]]:
        """Per query (algebra: a string, command-line words or Terms) the k best images (or texts
        of `texts`), best first by cosine. See `search_vectors`."""
        if k < 1:
            raise InputError(f"--top must be at least 1 (got {k})")
        vecs, kinds = zip(*(self.vector(q) for q in queries)) if queries else ((), ())
        xq = np.stack(vecs) if vecs else np.zeros((0, self.searcher.encoder.dim), np.float32)
        return self.search_vectors(xq, list(kinds), k, texts, min_score, nprobe, rerank)

    def search_vectors(self, xq: np.ndarray, kinds: list[str], k: int, texts: Collection | None = None,
                       min_score: float | None = None, nprobe: int | None = None,
                       rerank: int | None = None) -> list[list[Match]]:
        """(nq, D) query vectors of `kinds` (TEXT, IMAGE, "mixed") -> per query the k best matches.

        Calibrated scores come with text queries over images and image queries over texts;
        `min_score` drops matches calibrated below it (InputError for other queries). `nprobe` and
        `rerank` tune an approximate ANN index (images or texts alike).
        """
        target_kind = TEXT if texts is not None else IMAGE
        calibrate = [kind not in ("mixed", target_kind) for kind in kinds]
        if min_score is not None and not all(calibrate):
            raise InputError("--min-score applies to calibrated scores, which only text queries over "
                             "images and image queries over --texts have: drop --min-score")
        target = texts if texts is not None else self.searcher.index.images
        hits = target.search(np.asarray(xq, np.float32).reshape(len(kinds), -1), k, nprobe, rerank)
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

