"""Query algebra (grammar and combination) and calibrated scores with --min-score."""

from pathlib import Path

import numpy as np
import pytest

from clipsearch import BACKGROUND_PROMPTS, Calibrator, InputError, Term, embed_query, load_encoder, parse_query
from support.clirun import CAPTIONS, image_of


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return load_encoder(str(tiny_model.config), str(tiny_model.weights))


def _names(hits):
    return [Path(h["path"]).name for h in hits]


# --- grammar -------------------------------------------------------------------------------------

def test_parse_words_of_a_command_line(tmp_path):
    pool = tmp_path / "pool.jpg"
    pool.write_bytes(b"")
    terms = parse_query(["golden retriever", "+", str(pool), "-", "indoors"])
    assert terms == [Term("text", "golden retriever", 1.0), Term("image", str(pool), 1.0),
                     Term("text", "indoors", -1.0)]


@pytest.mark.parametrize("query, expected", [
    ("2:beach - people", [Term("text", "beach", 2.0), Term("text", "people", -1.0)]),
    ('"a red circle"', [Term("text", "a red circle")]),
    ("a red circle", [Term("text", "a red circle")]),
    ("- 0.5:indoors + sunny day", [Term("text", "indoors", -0.5), Term("text", "sunny day")]),
    ("t-shirt + 10:30 pm", [Term("text", "t-shirt"), Term("text", "30 pm", 10.0)]),
])
def test_parse_strings(query, expected):
    assert parse_query(query) == expected


@pytest.mark.parametrize("query, message", [
    ("red -", "ends the query"),
    ("red + + blue", "follows another operator"),
    ("", "query is empty"),
    ("0:red + blue", "weight of 'red' is 0"),
    ("2: + blue", "has no term after it"),
    ("red + ./nowhere.jpg", "query image ./nowhere.jpg does not exist"),
    ('"red', "close its quotes"),
])
def test_parse_errors_say_what_to_fix(query, message):
    with pytest.raises(InputError, match=message):
        parse_query(query)


# --- combination ---------------------------------------------------------------------------------

def test_embedding_is_the_normalised_weighted_sum(encoder):
    a, b = encoder.encode_texts(["red", "circle"])
    q = embed_query(parse_query("2:red - circle"), encoder.encode_texts, embed_image=None)
    expected = 2 * a - b
    np.testing.assert_allclose(q, expected / np.linalg.norm(expected), atol=1e-6)
    assert q.dtype == np.float32


def test_terms_that_cancel_are_refused(encoder):
    with pytest.raises(InputError, match="cancel out"):
        embed_query(parse_query("red - red"), encoder.encode_texts, embed_image=None)


def test_red_minus_circle_puts_red_non_circles_above_red_circles(cli):
    hits = cli.json("query", "red", "-", "circle", "-k", "48")
    names = _names(hits)
    red_other = [i for i, n in enumerate(names) if n.startswith("red_") and not n.startswith("red_circle")]
    red_circle = [i for i, n in enumerate(names) if n.startswith("red_circle")]
    assert len(red_other) == 6 and len(red_circle) == 2
    assert max(red_other) < min(red_circle), names


def test_image_and_text_terms_combine(cli, shapes_dir):
    blue_square = image_of(shapes_dir, "blue", "square")
    plain = _names(cli.json("query", "--image", blue_square, "-k", "4"))
    mixed = _names(cli.json("query", blue_square, "-", "blue", "+", "red", "-k", "4"))
    assert plain[0] == blue_square.name
    assert sum(n.startswith("red_square") for n in mixed) > sum(n.startswith("red_square") for n in plain)


def test_weights_change_the_ranking(cli):
    red = _names(cli.json("query", "4:red", "+", "star", "-k", "2"))
    star = _names(cli.json("query", "red", "+", "4:star", "-k", "8"))
    assert all(n.startswith("red_") for n in red)
    assert all(n.split("_")[1] == "star" for n in star[:6])


# --- calibration and --min-score -----------------------------------------------------------------

def test_calibrated_score_formula(encoder):
    cal = Calibrator(encoder, ["a photo.", "an image."])
    x = encoder.encode_texts(["a red circle"])[0]  # any unit vector stands in for an image
    bg = cal.scale * (cal.background @ x)
    expected = 1 / (1 + np.exp(-(cal.scale * 0.3 - np.log(np.exp(bg).mean()))))
    assert cal(np.array([0.3]), x)[0] == pytest.approx(expected, rel=1e-6)


@pytest.fixture
def background(tmp_path):
    """Calibration prompts from the tiny model's world (it never saw "a photo." or "an image.")."""
    (tmp_path / "background.txt").write_text("\n".join(CAPTIONS))
    return tmp_path / "background.txt"


def test_min_score_keeps_the_matching_images(cli, background):
    hits = cli.json("query", "a green triangle", "-k", "48", "--background", background)
    assert all(0 <= h["calibrated"] <= 1 for h in hits)
    kept = cli.json("query", "a green triangle", "-k", "48", "--background", background, "--min-score", "0.9")
    assert {h["path"] for h in kept} == {h["path"] for h in hits if h["calibrated"] >= 0.9}
    assert kept and all(n.startswith("green_triangle") for n in _names(kept))
    assert any(h["calibrated"] < 0.9 for h in hits)


def test_min_score_means_the_same_across_queries(cli, background):
    """The same cutoff keeps each query's own matches, though raw cosines differ between queries."""
    for query, prefix in [("a yellow star", "yellow_star"), ("a blue circle", "blue_circle")]:
        kept = _names(cli.json("query", query, "-k", "48", "--min-score", "0.9", "--background", background))
        assert kept and all(n.startswith(prefix) for n in kept), (query, kept)


def test_default_background_is_generic_photo_prompts(cli):
    hits = cli.json("query", "a red circle", "-k", "3")
    assert all(0 <= h["calibrated"] <= 1 for h in hits)
    assert "a photo." in BACKGROUND_PROMPTS


def test_min_score_refused_where_there_is_no_calibration(cli, shapes_dir):
    image = image_of(shapes_dir, "red", "circle")
    assert "drop --min-score" in cli.fails("query", "--image", image, "--min-score", "0.5")
    assert "drop --min-score" in cli.fails("query", "red", "+", image, "--min-score", "0.5")
    assert "drop --min-score" in cli.fails("query", "red", "--texts", "--min-score", "0.5")
