"""A cheap guess at a query's language, to warn when the model was trained on English only.

Letters of a non-Latin script (Cyrillic, CJK, Arabic...) are told by `unicodedata` at no cost; a
Latin-script query of a few words goes to py3langid (a small naive-Bayes model, langid.py's), and
only a confident guess counts: short queries like "golden retriever" are too ambiguous to judge.
"""

from __future__ import annotations

import threading
import unicodedata
from functools import lru_cache

from clipsearch.config import MULTILINGUAL, PRESETS

MIN_WORDS = 3  # fewer words give py3langid too little to go on (it calls "sunset over water" Dutch)
MIN_CONFIDENCE = 0.75  # normalised probability; English phrases of 3+ words stay below it as non-English


def query_language(text: str) -> str | None:
    """A language (ISO 639-1 code) or script name (e.g. "CYRILLIC") that `text` is clearly in, when
    it is not English; None when it is English, or too short or mixed to say."""
    script = _script(text)
    if script != "LATIN":
        return script
    if len(text.split()) < MIN_WORDS:
        return None
    lang, p = _identifier().classify(text)
    return lang if lang != "en" and p >= MIN_CONFIDENCE else None


def language_hint(text: str, model: str) -> str | None:
    """A sentence for the user when `text` looks non-English and `model` (an open_clip architecture)
    was trained on English captions; None otherwise."""
    if model in MULTILINGUAL:
        return None
    lang = query_language(text)
    if lang is None:
        return None
    multi = next(name for name, (arch, _) in PRESETS.items() if arch in MULTILINGUAL)
    what = f"language {lang!r}" if lang.islower() else lang if len(lang) <= 3 else lang.title()  # a script
    return (f"hint: this query looks like {what} text, but the index's model was trained on English "
            f"captions, so results may be poor: ask in English, or move the index to the "
            f"multilingual preset with `clipsearch reindex --model {multi}`")


def _script(text: str) -> str | None:
    """The script of most of `text`'s letters ("LATIN", "CYRILLIC", "CJK"...), None without letters."""
    counts: dict[str, int] = {}
    for ch in text:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            script = name.split(" ")[0] if name else "UNKNOWN"
            counts[script] = counts.get(script, 0) + 1
    return max(counts, key=counts.get) if counts else None


def prefetch(text: str) -> None:
    """Start loading py3langid's model (~0.35 s, mostly LZMA, which frees the GIL) in a thread when
    `query_language(text)` will need it, so that a cold query overlaps it with its own start-up."""
    if _script(text) == "LATIN" and len(text.split()) >= MIN_WORDS:
        threading.Thread(target=_identifier, daemon=True).start()


_loading = threading.Lock()


def _identifier():
    with _loading:  # the prefetch thread and the caller share one load
        return _load_identifier()


@lru_cache(maxsize=1)
def _load_identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
