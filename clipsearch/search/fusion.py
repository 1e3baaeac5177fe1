"""Hybrid ranking: the CLIP ranking and the full-text ranking of the words read in the pictures, fused.

Reciprocal rank fusion (Cormack, Clarke and Buettcher, SIGIR 2009): an image scores the sum, over
the two rankings, of 1 / (RRF_K + its rank there), ranks from 1; an image missing from a ranking
gets nothing from it. Ranks, not scores: cosines and BM25 live on unrelated scales.

One rule on top, measured better in bench/results/ocr.md: images whose text holds *every* word of
the query and every quoted phrase come first (fused among themselves), then the rest. With plain
RRF an image bearing the query's words that CLIP ranks far down only ties with the best look-alike
(1 / (RRF_K + 1) each), and a look-alike with a partial text match can pass it; the user who typed
the words printed on a picture wants that picture. Where no text matches, the order is CLIP's.
"""

from __future__ import annotations

from dataclasses import dataclass

from clipsearch.index import Index
from clipsearch.models.ocr import Line
from clipsearch.search.textquery import TextQuery, tokens
from clipsearch.store.filters import Filter
from clipsearch.store.ocr import Found, picture_key

RRF_K = 60  # the constant of the RRF paper, robust across its test collections
#: Pictures taken from the full-text ranking, and images from the CLIP ranking, that a hybrid query
#: fuses: an image below rank 100 in a ranking adds < 1/160 there, less than any top-40 rank.
TEXT_CANDIDATES = 100
VISUAL_CANDIDATES = 100


@dataclass(frozen=True)
class TextMatch:
    """An image whose text matched: its BM25 score, whether it holds the whole query, the lines that matched."""

    id: int
    score: float
    full: bool
    lines: tuple[Line, ...]


def text_matches(index: Index, query: TextQuery, where: Filter | None, limit: int = TEXT_CANDIDATES) -> list[TextMatch]:
    """The images whose text matches `query`, among those `where` lets through: those holding it all
    first, then by BM25."""
    found = index.ocr.search(list(query.words), [" ".join(p) for p in query.phrases], limit)
    ids = _image_ids(index, found)
    allowed = set(index.images.matching(where).tolist()) if where else None
    out = []
    for f in found:
        all_tokens = [t for line in f.lines for t in tokens(line.text)]
        lines = tuple(line for line in f.lines if query.tokens & set(tokens(line.text)))
        out += [TextMatch(i, f.score, query.holds(all_tokens), lines)
                for i in ids.get(f.key, ()) if allowed is None or i in allowed]
    return sorted(out, key=lambda m: (not m.full, -m.score))


def fuse(visual: list[int], text: list[TextMatch], tiered: bool = True) -> list[tuple[int, float]]:
    """(image id, RRF score) of every image of the two rankings (ids best first), best first;
    `tiered`: images holding the whole query first (the rule above; False: plain RRF)."""
    score: dict[int, float] = {}
    for ranking in (visual, [m.id for m in text]):
        for rank, i in enumerate(dict.fromkeys(ranking), 1):
            score[i] = score.get(i, 0.0) + 1.0 / (RRF_K + rank)
    full = {m.id for m in text if m.full} if tiered else set()
    at = {i: r for r, i in enumerate(visual)}
    order = sorted(score, key=lambda i: (i not in full, -score[i], at.get(i, len(at))))
    return [(i, score[i]) for i in order]


def _image_ids(index: Index, found: list[Found]) -> dict[str, list[int]]:
    """Text key -> the ids of the images now holding that picture (copies share their text)."""
    out: dict[str, list[int]] = {}
    for i, h, t in index.images.with_hashes({f.key.split("@")[0] for f in found}):
        out.setdefault(picture_key(h, t, i), []).append(int(i))
    for f in found:
        if f.key.startswith("id:"):  # a schema-1 row without a hash: its id, if it is still there
            out[f.key] = [int(f.key[3:])]
    return out
