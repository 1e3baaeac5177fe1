"""The one query method: what the CLI, the UI and the server run for a query, with calibrated scores.

`Matcher.run(Request)` reads a query (algebra words, or a vector), narrows its filter by the dates in
its words, searches the images or a text collection, calibrates, sorts and collapses, and answers
with what it understood and the matches. Where words were read in the pictures (`clipsearch ocr`),
a query's words are also looked for in that text and the two rankings are fused (fusion.py):
`mode` HYBRID (the default), VISUAL (CLIP alone) or TEXT (the words alone).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from clipsearch.errors import ImageError, InputError
from clipsearch.index import Index
from clipsearch.media.image import to_pixels
from clipsearch.media.photometa import PhotoMeta
from clipsearch.media.picture import load_picture
from clipsearch.models.encoder import Encoder
from clipsearch.models.ocr import Line
from clipsearch.search.algebra import IMAGE, TEXT, Term, embed_query, parse_query, query_kind
from clipsearch.search.calibration import Calibrator
from clipsearch.search.collapse import FETCH_FACTOR, collapse
from clipsearch.search.fusion import VISUAL_CANDIDATES, TextMatch, fuse, text_matches
from clipsearch.search.querydates import split_date
from clipsearch.search.textquery import TextQuery, text_query
from clipsearch.store.filters import SORTS, Filter
from clipsearch.store.records import Hit, TextHit


HYBRID, VISUAL, TEXT_ONLY = "hybrid", "visual", "text"
MODES = (HYBRID, VISUAL, TEXT_ONLY)


@dataclass(frozen=True)
class Match:
    """A hit (an image or a text) and, for a cross-modal query, its calibrated score in (0, 1)."""

    hit: Hit | TextHit
    calibrated: float | None = None
    group: int | None = None  # images in its near-duplicate group, when results are collapsed
    lines: tuple[Line, ...] = ()  # the lines read in the picture that hold the query's words
    text_score: float | None = None  # BM25 of the picture's text for the query's words

    @property
    def score(self) -> float:
        return self.hit.score

    def to_dict(self) -> dict:
        """JSON-ready, as `query --json` and the server answer it: the hit's fields (an image's
        metadata flattened in, null where unknown), the score rounded, "calibrated", "group_size",
        and "text_score" with the matched "lines" if any."""
        d = dict(vars(self.hit))  # shallow: a hit's fields are scalars and its PhotoMeta (asdict deep-copies)
        if "meta" in d:
            d.pop("meta")
            d |= (self.hit.meta or PhotoMeta()).to_dict()
        d["score"] = round(self.hit.score, 6)
        if self.calibrated is not None:
            d["calibrated"] = round(self.calibrated, 6)
        if self.group is not None:
            d["group_size"] = self.group
        if self.text_score is not None:  # its words matched: the lines that did, with boxes in the picture's pixels
            d["text_score"] = round(self.text_score, 6)
            d["lines"] = [{"text": x.text, "score": x.score, "box": x.corners(self.hit.width, self.hit.height)}
                          for x in self.lines]
        return d


@dataclass(frozen=True)
class Understood:
    """A query as it will be run: its words without the dates typed into it, and the filter."""

    query: str | list[str] | list[Term] | None  # None: the query was a vector
    where: Filter | None
    note: str | None = None  # what was read from the words: "searching 'beach' taken in July 2023"
    words: str | None = None  # what was looked for in the pictures' text (normalised), if anything


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
    mode: str = HYBRID  # HYBRID: CLIP and the pictures' text fused; VISUAL: CLIP alone; TEXT: text alone
    words: str | None = None  # what to look for in the text ("quotes" for phrases); None: the query's words


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
        """The one query path: understand, embed, search (and search the pictures' text), fuse,
        calibrate, sort, collapse."""
        r = request
        _check(r)
        texts = None if r.texts is None else self.index.texts(r.texts or None)
        understood = (self.understand(r.query, r.where, r.parse_dates and texts is None) if r.query is not None
                      else Understood(None, r.where))
        words = self._words(r, understood, texts)
        if words:
            understood = replace(understood, words=words.describe())
        fetch = r.k * FETCH_FACTOR if r.collapse else r.k
        if r.mode == TEXT_ONLY:
            found = self._text_only(words, understood.where, fetch, r.sort)
        else:
            xq, kind = (self.vector(understood.query) if r.query is not None
                        else (np.asarray(r.vector, np.float32).reshape(-1), r.kind))
            text = text_matches(self.index, words, understood.where) if words else []
            found = (self._hybrid(xq, kind, text, fetch, r, understood.where) if text else
                     self._search(xq[None, :], [kind], fetch, texts, r.min_score, r.nprobe, r.rerank,
                                  understood.where, r.sort)[0])
        if r.collapse:
            found = collapse(found, self.index.images, r.k, self.duplicate_threshold)
        return Answer(understood, found)

    def _words(self, r: Request, understood: Understood, texts) -> TextQuery:
        """What to look for in the pictures' text; empty when the query is visual only."""
        why = ("--texts ranks a text collection" if texts is not None else
               "an image or vector query has no words" if r.query is None else
               f"no text has been read in the pictures of {self.index.root}: run `clipsearch ocr`"
               if not self.index.ocr.exists else None)
        if r.mode == TEXT_ONLY and why:
            raise InputError(f"--text-only looks for words in the pictures, but {why}")
        if r.mode == VISUAL or why:
            return TextQuery()
        own = r.words is not None and understood.query is r.query  # no date was taken out of the words
        words = text_query(r.words if own else understood.query)
        if not words and r.mode == TEXT_ONLY:
            raise InputError("the query has no words to look for in the pictures (stop words such as "
                             "'the' and 'a' are left out): type the words printed on the picture")
        return words

    def _hybrid(self, xq: np.ndarray, kind: str, text: list[TextMatch], fetch: int, r: Request,
                where: Filter | None) -> list[Match]:
        """The CLIP ranking fused with the text ranking (fusion.py); `min_score` spares text matches."""
        _check_min_score([kind], False, r.min_score)
        visual = self._search(xq[None, :], [kind], max(fetch, VISUAL_CANDIDATES), None, None, r.nprobe,
                              r.rerank, where, "score")[0]
        order = fuse([m.hit.id for m in visual], text)[:fetch]
        by_id = {m.hit.id: m for m in visual}
        missing = [i for i, _ in order if i not in by_id]
        if missing:  # found by their text alone: their cosine (and calibrated score) all the same
            hits = self.index.images.hits(missing, self.index.images.vectors_of(missing) @ xq)
            cal = self._calibrated(xq, hits, False) if kind == TEXT else [None] * len(hits)
            by_id |= {h.id: Match(h, c) for h, c in zip(hits, cal)}
        matched = {m.id: m for m in reversed(text)}
        found = [replace(by_id[i], lines=matched[i].lines, text_score=matched[i].score) if i in matched
                 else by_id[i] for i, _ in order if i in by_id]
        if r.min_score is not None:
            found = [m for m in found if m.text_score is not None or m.calibrated >= r.min_score]
        return newest_first(found, lambda m: m.hit) if r.sort == "date" else found

    def _text_only(self, words: TextQuery, where: Filter | None, fetch: int, sort: str) -> list[Match]:
        """The pictures whose text matches, those holding every word first, then by BM25 (the score)."""
        text = text_matches(self.index, words, where)[:fetch]
        hits = {h.id: h for h in self.index.images.hits([m.id for m in text], [m.score for m in text])}
        found = [Match(hits[m.id], None, lines=m.lines, text_score=m.score) for m in text if m.id in hits]
        return newest_first(found, lambda m: m.hit) if sort == "date" else found

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
        calibrate = _check_min_score(kinds, texts is not None, min_score)
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


def newest_first(items: list, hit_of=lambda item: item) -> list:
    """Hits (or what `hit_of` takes a hit from) by the time they were taken, newest first; those
    without a date last."""
    return sorted(items, key=lambda x: getattr(getattr(hit_of(x), "meta", None), "taken", None) or datetime.min,
                  reverse=True)


def _check(r: Request) -> None:
    """InputError for a request that can't be run as it is."""
    if r.k < 1:
        raise InputError(f"--top must be at least 1 (got {r.k})")
    if (r.query is None) == (r.vector is None):
        raise InputError("give a query or a vector (one of them)")
    if r.collapse and r.texts is not None:
        raise InputError("--collapse groups near-duplicate images; drop it with --texts")
    if r.mode not in MODES:
        raise InputError(f"mode {r.mode!r}: use one of {', '.join(MODES)}")
    if r.mode == TEXT_ONLY and r.min_score is not None:
        raise InputError("--min-score applies to calibrated CLIP scores, which --text-only has none of: drop one")


def _check_min_score(kinds: list[str], over_texts: bool, min_score: float | None) -> list[bool]:
    """Which queries of `kinds` get calibrated scores; InputError if `min_score` needs one that doesn't."""
    target_kind = TEXT if over_texts else IMAGE
    calibrate = [kind not in ("mixed", target_kind) for kind in kinds]
    if min_score is not None and not all(calibrate):
        raise InputError("--min-score applies to calibrated scores, which only text queries over "
                         "images and image queries over --texts have: drop --min-score")
    return calibrate
