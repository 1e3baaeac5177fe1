"""Zero-shot classification: labels -> prompt-ensembled text vectors -> per-image label probabilities.

As in the CLIP paper: each label is written into every template ("a photo of a {}."), the prompts'
unit vectors are averaged and renormalised into one vector per label, and an image's probabilities
are softmax(logit_scale * cos(image, label)) over the labels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from itertools import islice
from typing import Iterator

import numpy as np

from clipsearch.ingest.batch import decode_file, embed_decoded
from clipsearch.store.records import Failure
from clipsearch.config import CLASSIFY_TEMPLATES
from clipsearch.errors import InputError
from clipsearch.store.filters import Filter
from clipsearch.index import Index
from clipsearch.models.encoder import Encoder
from clipsearch.ingest.pool import DecodeMap



@dataclass(frozen=True)
class Prediction:
    """One image's labels with their probabilities, best first."""

    path: str
    probs: dict[str, float]  # label -> probability, best first; they sum to 1

    @property
    def label(self) -> str:
        return next(iter(self.probs))

    @property
    def probability(self) -> float:
        return next(iter(self.probs.values()))


class Classifier:
    """One unit vector per label (templates ensembled) and the model's logit scale."""

    def __init__(self, encoder: Encoder, labels: list[str], templates=CLASSIFY_TEMPLATES):
        self.labels = check_labels(labels)
        self.templates = check_templates(templates)
        prompts = [t.replace("{}", label) for label in self.labels for t in self.templates]
        x = encoder.encode_texts(prompts).reshape(len(self.labels), len(self.templates), -1)
        w = x.mean(axis=1)
        self.weights = (w / np.linalg.norm(w, axis=1, keepdims=True)).astype(np.float32)  # (L, D)
        self.scale = encoder.logit_scale

    def probs(self, xb: np.ndarray) -> np.ndarray:
        """(N, D) float32 image unit vectors -> (N, L) float64 probabilities, rows summing to 1."""
        logits = self.scale * (np.asarray(xb, np.float64) @ self.weights.T.astype(np.float64))
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, paths: list[str], xb: np.ndarray) -> list[Prediction]:
        """A Prediction per (path, vector) pair."""
        out = []
        for path, p in zip(paths, self.probs(xb)):
            order = np.argsort(-p, kind="stable")
            out.append(Prediction(path, {self.labels[j]: float(p[j]) for j in order}))
        return out


def classify_files(paths: list[str], encoder: Encoder, classifier: Classifier, max_pixels: int, *,
                   decode_map: DecodeMap = map) -> Iterator[Prediction | Failure]:
    """Predictions for image files, decoded as indexing does (`decode_map`: e.g. a process pool's)
    and encoded a batch at a time; a file that can't be decoded yields a Failure, in order."""
    decode = functools.partial(decode_file, preprocess=encoder.preprocess, max_pixels=max_pixels)
    it = iter(decode_map(decode, paths))
    while items := list(islice(it, encoder.batch_size)):
        batch = embed_decoded(items, encoder)
        done = {p.path: p for p in classifier.predict([r.path for r in batch.rows], batch.vectors)}
        done |= {f.path: f for f in batch.failures}
        yield from (done[d.path] for d in items)


def classify_index(index: Index, classifier: Classifier, where: Filter | None = None) -> list[Prediction]:
    """Predictions for every image of `index` (those `where` lets through) from its stored vectors
    (nothing is re-encoded)."""
    ids, xb = index.images.vectors(index.images.matching(where) if where else None)
    rows = index.images.rows(ids)
    order = sorted(range(len(ids)), key=lambda n: rows[int(ids[n])].path)
    return classifier.predict([rows[int(ids[n])].path for n in order], xb[order])


def check_labels(labels: list[str]) -> list[str]:
    """Stripped, distinct labels; InputError unless there are at least two."""
    labels = list(dict.fromkeys(s.strip() for s in labels if s and s.strip()))
    if len(labels) < 2:
        raise InputError('give at least two labels to choose between, e.g. --labels "cat,dog,car"')
    return labels


def check_templates(templates) -> list[str]:
    templates = [t.strip() for t in templates if t and t.strip()]
    if not templates:
        raise InputError("no prompt templates: give at least one, e.g. 'a photo of a {}.'")
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise InputError(f"template {bad[0]!r} must contain '{{}}' exactly once, where the label goes")
    return templates

