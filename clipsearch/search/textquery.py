"""The words of a query that are looked for in the pictures' text: plain words and "quoted phrases".

Read from the same query the CLIP side reads: the text terms with a positive weight ("a dog + beach
- night" looks for "dog" and "beach", never "night"); image terms and weights are left out. Words
are normalised as the full-text index normalises them (store/ocr.py): lower case, accents folded,
split at anything not a letter or digit, stop words out.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from clipsearch.config import IMAGE_SUFFIXES, RAW_SUFFIXES
from clipsearch.search.algebra import TEXT, Term
from clipsearch.store.ocr import STOP_WORDS

_STOP = frozenset(STOP_WORDS)
_TOKEN = re.compile(r"[^\W_]+")
_PIECE = re.compile(r'"([^"]*)"|(\S+)')
_WEIGHT = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*:")
#: Letters NFKD leaves whole, folded as Lance's ASCII folding does.
_FOLD = str.maketrans({"ø": "o", "ß": "ss", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "þ": "th", "ı": "i"})
_MAX_TOKEN = 40  # Lance's max_token_length: longer tokens aren't indexed


@dataclass(frozen=True)
class TextQuery:
    """Normalised words (any may match) and phrases (each must match, in order)."""

    words: tuple[str, ...] = ()
    phrases: tuple[tuple[str, ...], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.words or self.phrases)

    @property
    def tokens(self) -> set[str]:
        return set(self.words) | {t for p in self.phrases for t in p}

    def describe(self) -> str:
        return " ".join([*self.words, *(f'"{" ".join(p)}"' for p in self.phrases)])

    def holds(self, text_tokens: list[str]) -> bool:
        """Whether a text of these tokens holds every word and every phrase."""
        have = set(text_tokens)
        return all(w in have for w in self.words) and all(_contains(text_tokens, p) for p in self.phrases)


def text_query(query: str | list[str] | list[Term] | None) -> TextQuery:
    """The text-search part of a query: a string (quotes kept), the words of a command line, or terms."""
    if not query:
        return TextQuery()
    if not isinstance(query, str) and isinstance(query[0], Term):
        raw = " ".join(t.value for t in query if t.kind == TEXT and t.weight > 0)
    else:
        raw = query if isinstance(query, str) else " ".join(query)
    words, phrases, sign, first = [], [], 1, True
    for m in _PIECE.finditer(raw):
        quoted, piece = m.group(1), m.group(2)
        if piece in ("+", "-"):
            sign, first = (1 if piece == "+" else -1), True
            continue
        if quoted is None and first:  # a weight ("2:beach") starts a term
            piece = _WEIGHT.sub("", piece, count=1)
        piece, first = quoted if quoted is not None else piece, False
        if sign < 0 or _looks_like_path(piece):
            continue
        found = tokens(piece)
        if quoted is not None and len(found) > 1:
            phrases.append(tuple(found))
        else:
            words += [w for w in found if w not in words]
    return TextQuery(tuple(words), tuple(dict.fromkeys(phrases)))


def tokens(text: str) -> list[str]:
    """`text` as the full-text index sees it: folded, lower-case words, stop words left out."""
    folded = unicodedata.normalize("NFKD", text.lower().translate(_FOLD))
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return [t for t in _TOKEN.findall(folded) if t not in _STOP and len(t) <= _MAX_TOKEN]


def _contains(seq: list[str], part: tuple[str, ...]) -> bool:
    n = len(part)
    return any(tuple(seq[i:i + n]) == part for i in range(len(seq) - n + 1))


def _looks_like_path(word: str) -> bool:
    return word.startswith(("/", "./", "../", "~")) or Path(word).suffix.lower() in IMAGE_SUFFIXES | RAW_SUFFIXES
