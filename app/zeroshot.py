"""Image -> text: zero-shot classification against typed labels, and ranking a text collection.

Thin on purpose: the work is done by `clipsearch.search.classify` and `clipsearch.ingest.texts`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_TEXTS = "no text collections in this index; add one with clipsearch index-texts"


@dataclass(frozen=True)
class Label:
    """One label with its probability for an image."""

    text: str
    probability: float


def parse_labels(typed: str) -> list[str]:
    """Comma- or newline-separated labels, stripped, empty and repeated ones dropped, order kept."""
    parts = (p.strip() for chunk in typed.splitlines() for p in chunk.split(","))
    return list(dict.fromkeys(p for p in parts if p))


def classify(encoder, v: np.ndarray, labels: list[str]) -> list[Label]:
    """(D,) float32 image vector against `labels` -> labels with softmax probabilities, most likely first
    (prompt templates ensembled by `clipsearch.Classifier`)."""
    from clipsearch import Classifier

    if not labels:
        return []
    if len(labels) == 1:  # a softmax over one label says nothing: it is certain
        return [Label(labels[0], 1.0)]
    pred = Classifier(encoder, labels).predict([""], np.asarray(v, np.float32)[None, :])[0]
    return [Label(t, p) for t, p in pred.probs.items()]


def rank_texts(matcher, v: np.ndarray, k: int) -> dict[str, list]:
    """{collection: [Match] best first, calibrated} over the index's text collections, as
    `clipsearch query --image IMG --texts NAME` ranks them; {} when it has none."""
    from clipsearch import Request

    return {name: matcher.run(Request(vector=v, k=k, texts=name)).matches for name in matcher.index.text_names()}
