"""Queries in other languages: a hint for an English-only model, none for a multilingual one."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from clipsearch.cli import main
from clipsearch.config import PRESETS
from clipsearch.search.language import language_hint, query_language
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


def _run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_query_prints_the_hint_and_still_answers(offline, tiny_model, shapes_dir, tmp_path):
    index = tmp_path / "index"
    model = ["--model", tiny_model.config, "--pretrained", tiny_model.weights]
    _run("index", shapes_dir, "--index", index, *model, "--workers", "1", "--quiet")
    ru = _run("query", "красный круг на картинке", "--index", index, *model, "--json", "-k", "2")
    assert len(json.loads(ru.stdout)) == 2 and "hint: this query looks like Cyrillic text" in ru.stderr
    en = _run("query", "a red circle", "--index", index, *model, "-k", "2")
    assert "hint" not in en.stderr
    # The same index content under the multilingual preset (tiny weights, imported): no hint.
    make_bundle(tmp_path / "multi.clipmodel", tiny_model, *PRESETS[MULTI])
    _run("models", "import", tmp_path / "multi.clipmodel")
    multi = tmp_path / "multi-index"
    _run("index", shapes_dir, "--index", multi, "--model", MULTI, "--workers", "1", "--quiet")
    ru = _run("query", "красный круг на картинке", "--index", multi, "--json", "-k", "2")
    assert len(json.loads(ru.stdout)) == 2 and "hint" not in ru.stderr
