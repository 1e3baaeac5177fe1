"""Image -> text: zero-shot classification against typed labels, and ranking a text collection.

Thin on purpose: `classify` is the seam that `clipsearch.classify` replaces when it lands, and
`rank_texts` is the seam for the index's text collections (`clipsearch.texts`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEMPLATE = "a photo of a {}."
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
    """(D,) float32 image vector against `labels` -> labels with softmax probabilities, most likely first."""
    if not labels:
        return []
    xt = encoder.encode_texts([TEMPLATE.format(t) for t in labels])
    logits = encoder.logit_scale * (xt @ np.asarray(v, np.float32))
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return sorted((Label(t, float(q)) for t, q in zip(labels, p)), key=lambda x: -x.probability)


def rank_texts(index, v: np.ndarray, k: int) -> dict[str, list[tuple[str, float]]]:
    """{collection: [(text, score)] best first} over the index's text collections; {} when it has none.

    Uses `clipsearch.texts` when this clipsearch has it (expected: `collections(index)` -> names and
    `search(index, name, xq, k)` -> hits with `.text` and `.score`); without it there are no collections.
    """
    try:
        from clipsearch import texts
    except ImportError:
        return {}
    xq = np.asarray(v, np.float32)[None, :]
    return {name: [(h.text, h.score) for h in texts.search(index, name, xq, k)[0]]
            for name in texts.collections(index)}
