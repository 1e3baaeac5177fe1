"""The Streamlit page, driven by Streamlit's AppTest with the tiny model and a real index."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import streamlit
from streamlit.testing.v1 import AppTest

from clipsearch import InputError, Matcher, Settings, create_index, load_encoder
from clipsearch.media.thumbnail import Thumbnails
from support.clirun import image_of
from support.ui_support import APP, build_index

from clipsearch.app import query, views, zeroshot

TIMEOUT = 120  # the first run loads the model on a busy 2-core machine


@pytest.fixture(autouse=True)
def _keep_main_module(monkeypatch):
    """AppTest installs the page as sys.modules["__main__"]; put pytest's back for later tests."""
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])


@pytest.fixture
def page(ui_index, monkeypatch):
    """A fresh page over the shapes index, run once."""
    return _open(ui_index, monkeypatch)


def _open(index_dir: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("CLIPSEARCH_INDEX", str(index_dir))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    _assert_clean(at)
    return at


def _assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _search(at: AppTest, text: str) -> AppTest:
    at.text_input(key="text").input(text).run()
    _assert_clean(at)
    return at


def _results(at: AppTest) -> list[str]:
    """File names of the result thumbnails, in page order (the query preview has no alt text)."""
    return [im.proto.imgs[0].alt for im in at.get("image") if im.proto.imgs[0].alt]


def _scores(at: AppTest) -> list[float]:
    return [float(im.proto.imgs[0].caption) for im in at.get("image") if im.proto.imgs[0].alt]


def test_text_query_shows_matching_thumbnails_best_first(page, shapes_dir):
    _search(page, "a red circle")
    names, scores = _results(page), _scores(page)
    assert len(names) == Settings().top_k
    assert names[0].startswith("red_circle_") and names[1].startswith("red_circle_")
    assert scores == sorted(scores, reverse=True)
    paths = [t.value for t in page.main.text if t.value.endswith(".png")]
    assert [Path(p).name for p in paths] == names  # each thumbnail with its path
    assert Path(paths[0]).parent == shapes_dir.resolve()


def test_result_count_control(page):
    page.slider(key="k").set_value(3).run()
    _search(page, "a green star")
    assert len(_results(page)) == 3


def test_similar_button_searches_with_that_image(page):
    _search(page, "a blue square")
    target = _results(page)[0]
    like = [b for b in page.button if b.key and b.key.startswith("like-")][0]
    like.click().run()
    _assert_clean(page)
    assert [s.value for s in page.subheader] == [f"Images like {target}"]
    assert _results(page)[0] == target and _scores(page)[0] == pytest.approx(1.0, abs=1e-3)


def test_labels_are_classified_and_text_collections_ranked(page, cli, shapes_dir):
    _search(page, "a yellow star")
    target = _results(page)[0]
    [b for b in page.button if b.key and b.key.startswith("like-")][0].click().run()
    page.text_input(key="labels").input("blue square, yellow star, red circle").run()
    _assert_clean(page)
    texts = [t.value for t in page.main.text]
    assert "most likely: yellow star" in " ".join(texts)
    assert page.get("vega_lite_chart") or page.get("arrow_vega_lite_chart")  # the bar chart
    assert "texts in captions, best first:" in texts
    table = page.main.dataframe[0].value  # the captions ranked as `query --image --texts` ranks them
    expected = cli.json("query", "--image", shapes_dir / target, "--texts", "captions", "-k", str(Settings().top_k))
    assert table["text"].tolist() == [h["text"] for h in expected]
    assert table["calibrated"].tolist() == pytest.approx([h["calibrated"] for h in expected], abs=1e-3)


@pytest.mark.parametrize("typed", ["2:red circle - square", "a blue star + {image}", "- green"])
def test_the_page_reads_queries_as_the_cli_does(page, cli, shapes_dir, typed):
    """Query algebra means the same in both: weights, + and -, and image terms (inside the indexed
    folders) give the CLI's results, in its order, with its scores."""
    typed = typed.format(image=image_of(shapes_dir, "yellow", "circle"))
    page.slider(key="k").set_value(8).run()
    _search(page, typed)
    expected = cli.json("query", *shlex.split(typed), "-k", "8")
    assert _results(page) == [Path(h["path"]).name for h in expected]
    assert _scores(page) == pytest.approx([h["score"] for h in expected], abs=1e-3)


def test_image_terms_outside_the_indexed_folders_are_refused(page, tmp_path, shapes_dir):
    outside = tmp_path / "elsewhere.png"
    shutil.copy(image_of(shapes_dir, "red", "circle"), outside)
    _search(page, f"a cat + {outside}")
    assert "not inside the indexed folders" in page.error[0].value and not _results(page)


def test_index_panel_tells_what_the_index_holds(page, shapes_dir):
    assert page.sidebar.get("metric")[0].proto.body == str(len(list(shapes_dir.glob("*.png"))))
    panel = page.sidebar.text[0].value
    assert "tiny-clip" in panel and "Flat" in panel and str(shapes_dir.resolve()) in panel


def test_only_image_bytes_reach_st_image(page, monkeypatch):
    seen = []
    real = streamlit.image
    monkeypatch.setattr(streamlit, "image", lambda data, *a, **kw: seen.append(type(data)) or real(data, *a, **kw))
    _search(page, "a purple triangle")
    [b for b in page.button if b.key and b.key.startswith("like-")][0].click().run()
    _assert_clean(page)
    assert seen and set(seen) == {bytes}


def test_missing_index_is_a_message_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPSEARCH_INDEX", str(tmp_path / "nowhere"))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    _assert_clean(at)
    assert "no index at" in at.error[0].value and "clipsearch index" in at.error[0].value


def test_empty_index_says_how_to_fill_it(tiny_model, tmp_path, monkeypatch):
    enc = load_encoder(str(tiny_model.config), str(tiny_model.weights), "cpu")
    create_index(tmp_path / "empty", enc.identity)
    at = _open(tmp_path / "empty", monkeypatch)
    assert views.EMPTY_INDEX in [i.value for i in at.info]


def test_symlink_out_of_the_indexed_folder_is_hidden_and_failures_listed(tiny_model, shapes_dir, tmp_path, monkeypatch):
    inside, outside = tmp_path / "photos", tmp_path / "private"
    inside.mkdir(), outside.mkdir()
    for p in sorted(shapes_dir.glob("red_*.png")):
        (inside / p.name).write_bytes(p.read_bytes())
    secret = outside / "secret.png"
    secret.write_bytes(next(shapes_dir.glob("red_circle_*.png")).read_bytes())
    os.symlink(secret, inside / "link.png")
    (inside / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    at = _open(build_index(tmp_path / "index", tiny_model, [inside]), monkeypatch)
    assert [e.label for e in at.sidebar.expander] == ["1 files could not be indexed"]
    _search(at, "a red circle")
    assert "link.png" not in _results(at) and len(_results(at)) == len(list(inside.glob("red_*.png")))
    assert not [t for t in at.main.text if "link.png" in t.value or "secret" in t.value]
    assert "1 results are outside the indexed folders" in at.warning[0].value


def test_upload_is_capped_and_decoded_with_the_guarded_loader(tiny_model, shapes_dir):
    enc = load_encoder(str(tiny_model.config), str(tiny_model.weights), "cpu")
    res = SimpleNamespace(matcher=SimpleNamespace(embed=lambda img: enc.encode_texts(["x"])[0]),
                          thumbs=Thumbnails(None, 32, Settings().max_pixels))
    png = next(shapes_dir.glob("*.png")).read_bytes()
    q = query.upload_query(png, "shape.png", res, Settings())
    assert q.vector.shape == (enc.dim,) and q.preview[:2] == b"\xff\xd8"  # a JPEG preview
    with pytest.raises(InputError, match="can't search with big.png: too large"):
        query.upload_query(png, "big.png", res, Settings().with_(upload_max_bytes=len(png) - 1))
    with pytest.raises(InputError, match="can't search with huge.png: too large"):
        query.upload_query(png, "huge.png", res, Settings().with_(upload_max_pixels=64 * 64 - 1))
    with pytest.raises(InputError, match="not an image"):
        query.upload_query(b"%!PS-Adobe-3.0 EPSF", "x.eps", res, Settings())


def test_labels_are_parsed_and_classified(tiny_model):
    assert zeroshot.parse_labels(" red circle, ,blue square\nred circle ") == ["red circle", "blue square"]
    enc = load_encoder(str(tiny_model.config), str(tiny_model.weights), "cpu")
    v = Matcher.embed(SimpleNamespace(encoder=enc), _draw("green", "triangle"))
    ranked = zeroshot.classify(enc, v, ["red circle", "green triangle", "blue star"])
    assert ranked[0].text == "green triangle"
    assert sum(r.probability for r in ranked) == pytest.approx(1.0)
    assert zeroshot.classify(enc, v, []) == []


def _draw(colour, shape):
    from support import shapes

    return shapes.draw(colour, shape, seed=123)


def test_a_video_frame_is_shown_played_from_its_moment_and_searched_with(tiny_model, tmp_path, monkeypatch):
    from support import shapes
    from support.clips import write_video

    photos = tmp_path / "photos"
    shapes.write_folder(photos, n_per_label=1, labels=[("green", "square"), ("red", "circle")])
    write_video(photos / "clip.mp4", [("red", "circle", 3.0), ("blue", "star", 3.0)])
    at = _search(_open(build_index(tmp_path / "idx", tiny_model, [photos]), monkeypatch), "a blue star")
    assert _results(at)[0] == "clip.mp4@00:03"
    assert [t.value for t in at.main.text][0] == f"{photos.resolve() / 'clip.mp4'}@00:03"
    at.toggle(key=[t.key for t in at.toggle if t.key.startswith("play-")][0]).set_value(True).run()
    _assert_clean(at)
    videos = at.get("video")
    assert len(videos) == 1 and videos[0].proto.start_time == 3
    [b for b in at.button if b.key and b.key.startswith("like-")][0].click().run()  # image -> image on a frame
    _assert_clean(at)
    assert at.subheader[0].value == "Images like clip.mp4@00:03" and _results(at)[0] == "clip.mp4@00:03"
    at.text_input(key="labels").input("a blue star, a red circle").run()  # image -> text on a frame
    assert "most likely: a blue star" in " ".join(t.value for t in at.text)
