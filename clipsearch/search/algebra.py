"""Query algebra: weighted sums and differences of text and image terms, as one unit vector.

Grammar (the words of a command line, or a string split like a shell does):

    query  := [op] term (op term)*
    op     := "+" | "-"                       a word of its own
    term   := [weight ":"] (image | text)     weight: a number such as 2 or 0.5 (default 1)
    image  := a path: ends in an image suffix (.jpg, .png ...) or starts with / ./ ../ ~
    text   := anything else; words in a row without an operator form one text

    "golden retriever" + ./pool.jpg - indoors      2:beach - people      a red circle

The query vector is normalise(sum of weight * sign * normalise(embedding)).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from clipsearch.config import IMAGE_SUFFIXES, RAW_SUFFIXES
from clipsearch.errors import InputError

TEXT, IMAGE = "text", "image"
_OPS = {"+": 1.0, "-": -1.0}
_WEIGHT = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*:\s*(.*)", re.S)
_PATH_STARTS = ("/", "./", "../", "~", ".\\", "..\\")


@dataclass(frozen=True)
class Term:
    """One term of a query: a text or an image path, with its signed weight."""

    kind: str  # TEXT or IMAGE
    value: str
    weight: float = 1.0


def parse_query(query: str | list[str] | tuple[str, ...]) -> list[Term]:
    """Terms of `query` (a string, or the words of a command line); InputError when malformed."""
    words = _split(query) if isinstance(query, str) else [w for w in query]
    terms, sign, pending = [], 1.0, []
    for i, word in enumerate(words + ["+"]):
        if word.strip() in _OPS:
            if not pending and (terms or i > 0):
                raise InputError(f"'{word.strip()}' follows another operator or ends the query: "
                                 'put a term between operators, e.g. "red" - "circle"')
            if pending:
                terms.append(_term(" ".join(pending), sign))
            sign, pending = _OPS[word.strip()], []
        elif word.strip():
            pending.append(word.strip())
    if not terms:
        raise InputError('the query is empty: describe what you are looking for, e.g. '
                         'clipsearch query "a dog on a beach"')
    return terms


def query_kind(terms: list[Term]) -> str:
    """TEXT or IMAGE when every term is of that kind, else "mixed"."""
    kinds = {t.kind for t in terms}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def embed_query(terms: list[Term], encode_texts: Callable[[list[str]], np.ndarray],
                embed_image: Callable[[str], np.ndarray]) -> np.ndarray:
    """(D,) float32 unit vector of the weighted sum of the terms' unit embeddings."""
    texts = [t.value for t in terms if t.kind == TEXT]
    vecs = iter(encode_texts(texts)) if texts else iter(())
    parts = [next(vecs) if t.kind == TEXT else embed_image(t.value) for t in terms]
    x = np.stack([p / max(np.linalg.norm(p), 1e-12) for p in parts]).astype(np.float64)
    q = np.asarray([t.weight for t in terms]) @ x
    norm = np.linalg.norm(q)
    if norm < 1e-6:
        raise InputError("the query's terms cancel out (their weighted sum is zero): change a weight "
                         "or a sign")
    return (q / norm).astype(np.float32)


def _term(word: str, sign: float) -> Term:
    weight = 1.0
    if m := _WEIGHT.fullmatch(word):
        weight, word = float(m.group(1)), m.group(2).strip()
        if not word:
            raise InputError(f"the weight {m.group(1)}: has no term after it: write e.g. 2:beach")
    if weight == 0:
        raise InputError(f"the weight of {word!r} is 0: drop the term, or give a positive weight")
    kind = IMAGE if _looks_like_path(word) else TEXT
    if kind == IMAGE and not Path(word).expanduser().is_file():
        raise InputError(f"query image {word} does not exist: check the path (a term that ends in an "
                         "image suffix or starts with / ./ ~ is read as an image)")
    return Term(kind, str(Path(word).expanduser()) if kind == IMAGE else word, sign * weight)


def _looks_like_path(word: str) -> bool:
    return word.startswith(_PATH_STARTS) or Path(word).suffix.lower() in IMAGE_SUFFIXES | RAW_SUFFIXES


def _split(query: str) -> list[str]:
    try:
        return shlex.split(query)
    except ValueError as e:
        raise InputError(f"can't split the query ({e}): close its quotes") from e
