"""Queries in other languages: a hint for an English-only model, none for a multilingual one."""

from __future__ import annotations

import json

import pytest
from clipsearch.config import PRESETS
from clipsearch.search.language import language_hint, query_language
from support.clirun import Cli
from support.modelfiles import make_bundle

MULTI = "siglip2-b16"


@pytest.mark.parametrize("text, expected", [
    ("a dog playing music", None), ("kids at the beach", None), ("golden retriever", None),
    ("a red circle", None), ("собака на пляже", "CYRILLIC"), ("犬と猫", "CJK"),
    ("un perro jugando en el parque", "es"), ("eine rote Katze auf dem Sofa", "de"),
])
def test_query_language(text, expected):
    assert query_language(text) == expected


def test_hint_only_for_english_only_models():
    assert "clipsearch reindex --model siglip2-b16" in language_hint("собака на пляже", "ViT-B-32")
    assert language_hint("собака на пляже", PRESETS[MULTI][0]) is None
    assert language_hint("a dog on the beach", "ViT-B-32") is None


def test_query_prints_the_hint_and_still_answers(offline, tiny_model, shapes_dir, tmp_path):
    run = Cli(tiny_model, tmp_path / "index", ["--workers", "1", "--quiet"], ok=True)
    run("index", shapes_dir)
    ru = run("query", "красный круг на картинке", "--json", "-k", "2")
    assert len(json.loads(ru.stdout)) == 2 and "hint: this query looks like Cyrillic text" in ru.stderr
    en = run("query", "a red circle", "-k", "2")
    assert "hint" not in en.stderr
    # The same index content under the multilingual preset (tiny weights, imported): no hint.
    make_bundle(tmp_path / "multi.clipmodel", tiny_model, *PRESETS[MULTI])
    multi = Cli(tiny_model, tmp_path / "multi-index", ["--workers", "1", "--quiet"], ok=True)
    Cli(None, None, ok=True)("models", "import", tmp_path / "multi.clipmodel")
    multi("index", shapes_dir, "--model", MULTI, model=False)
    ru = multi("query", "красный круг на картинке", "--json", "-k", "2", model=False)
    assert len(json.loads(ru.stdout)) == 2 and "hint" not in ru.stderr
