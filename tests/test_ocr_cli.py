"""OCR beside CLIP end to end: a folder of signs and shapes indexed with `--ocr`, or read later by
`clipsearch ocr`, searched through the CLI and the page. Real rapidocr, a real Lance FTS index."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsearch import open_index
from clipsearch.config import OcrSettings, Settings
from clipsearch.indexer.pipeline import FAILPOINT_ENV
from clipsearch.ingest.ocr import plan, read_pictures, reading_map, worker
from clipsearch.models.ocr import identity
from support import shapes, signs
from support.clirun import Cli

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [("red", "circle"), ("blue", "square"), ("yellow", "star"), ("green", "triangle")]
VIDEO_WORD = "Vexmuroth"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """signs/ (one made-up word or phrase each), shapes/ (the tiny model's shapes) and video/sign.mp4
    (a bare scene, then a sign: two sampled frames)."""
    root = tmp_path_factory.mktemp("ocr-photos").resolve()
    signs.write_signs(root / "signs")
    shapes.write_folder(root / "shapes", n_per_label=1, size=64, labels=SHAPES)
    (root / "video").mkdir()
    signs.write_sign_video(root / "video" / "sign.mp4", [(None, 2.0), (VIDEO_WORD, 2.0)])
    return root


@pytest.fixture(scope="module")
def ocr_cli(tiny_model, photos, tmp_path_factory) -> Cli:
    """The CLI on an index of `photos` made with `index --ocr` (read-only: tests don't change it)."""
    cli = Cli(tiny_model, tmp_path_factory.mktemp("ocr-index") / "index")
    cli("index", photos, "--workers", "1", "--ocr", "--ocr-workers", "1", "--quiet", ok=True)
    return cli


def sign(photos: Path, text: str) -> str:
    return str(photos / "signs" / f"sign_{(*signs.WORDS, signs.PHRASE, signs.REVERSED).index(text)}.jpg")


def paths(cli: Cli, *args) -> list[str]:
    return [h["path"] for h in cli.json("query", *args, model=False)]


def test_each_sign_is_found_by_its_word_and_each_shape_by_its_description(ocr_cli, photos):
    for text in signs.WORDS:
        for word in text.split():
            assert paths(ocr_cli, word, "-k", "3")[0] == sign(photos, text), word
    assert paths(ocr_cli, "fevrunel", "-k", "1") == [sign(photos, signs.ACCENTED)]  # typed without accents
    for colour, shape in SHAPES:
        assert Path(paths(ocr_cli, f"a {colour} {shape}", "-k", "1")[0]).name.startswith(f"{colour}_{shape}_")


def test_an_index_made_without_ocr_gets_there_with_clipsearch_ocr(tiny_model, photos, ocr_cli, tmp_path):
    cli = Cli(tiny_model, tmp_path / "index")
    cli("index", photos, "--workers", "1", "--quiet", ok=True)
    assert "run `clipsearch ocr`" in cli.fails("query", "Zorblax", "--text-only", model=False)
    ids, before = open_index(cli.index_dir).images.vectors()
    done = cli.json("ocr", "--ocr-workers", "1")
    assert (done["read"], done["with_text"], done["failed"]) == (len(SHAPES) + 6 + 2, 7, [])  # 2 video frames
    for q in ("Zorblax", "4471", "Févrünel", "plumbic", "a red circle", "a blue square"):
        assert paths(cli, q, "-k", "6") == paths(ocr_cli, q, "-k", "6"), q
    after_ids, after = open_index(cli.index_dir).images.vectors()
    assert np.array_equal(ids, after_ids) and np.array_equal(before, after)  # text never touches a CLIP row
    assert cli.json("ocr")["read"] == 0  # nothing left to read


def test_a_video_frame_is_found_by_the_words_in_it(ocr_cli, photos):
    [hit] = ocr_cli.json("query", VIDEO_WORD.lower(), "--text-only", model=False)
    assert hit["path"] == str(photos / "video" / "sign.mp4") and hit["time_s"] == pytest.approx(2.0)
    assert [line["text"] for line in hit["lines"]] == [VIDEO_WORD]


def test_json_results_carry_the_matched_lines_and_their_boxes(ocr_cli, photos):
    hit = ocr_cli.json("query", "Quorvanth", "-k", "1", model=False)[0]
    assert [line["text"] for line in hit["lines"]] == ["Quorvanth"] and hit["text_score"] > 0
    corners = np.array(hit["lines"][0]["box"])
    assert corners.shape == (4, 2) and (corners >= 0).all() and (corners <= [hit["width"], hit["height"]]).all()
    assert signs.panel_share(Image.open(hit["path"]), corners) > 0.4  # the box lies on the sign
    shape_hit = ocr_cli.json("query", "a red circle", "-k", "1", model=False)[0]
    assert "lines" not in shape_hit  # nothing read matched


def test_quoted_phrases_match_exactly(ocr_cli, photos):
    assert paths(ocr_cli, '"Plumbic Tarvola"', "--text-only") == [sign(photos, signs.PHRASE)]
    assert sorted(paths(ocr_cli, "plumbic tarvola", "--text-only")) == sorted(
        [sign(photos, signs.PHRASE), sign(photos, signs.REVERSED)])
    assert paths(ocr_cli, '"Tarvola Plumbic"', "-k", "1") == [sign(photos, signs.REVERSED)]


def test_stop_words_and_visual_queries_rank_as_without_the_text(ocr_cli):
    for q in ("a red circle", "the", "a yellow star on the"):
        assert paths(ocr_cli, q, "-k", "10") == paths(ocr_cli, q, "-k", "10", "--visual-only"), q
    assert "no words to look for" in ocr_cli.fails("query", "the a of", "--text-only", model=False)


def test_text_only_visual_only_and_filters(ocr_cli, photos):
    assert paths(ocr_cli, "zorblax", "--text-only") == [sign(photos, "Zorblax")]
    visual = ocr_cli.json("query", "zorblax", "-k", "10", "--visual-only", model=False)
    assert all("lines" not in h for h in visual)
    only_shapes = paths(ocr_cli, "zorblax", "-k", "3", "--in", photos / "shapes")
    assert all("/shapes/" in p for p in only_shapes)  # the filter holds for text matches too
    assert paths(ocr_cli, "zorblax", "--text-only", "--in", photos / "shapes") == []
    assert paths(ocr_cli, "zorblax - a red circle", "-k", "1") == [sign(photos, "Zorblax")]  # algebra too


def test_the_text_follows_moves_removals_changes_and_reindex(tiny_model, tiny_model_b, photos, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(photos / "signs", folder)
    cli = Cli(tiny_model, tmp_path / "index")
    cli("index", folder, "--workers", "1", "--ocr", "--ocr-workers", "1", "--quiet", ok=True)
    (folder / "moved").mkdir()
    (folder / "sign_0.jpg").rename(folder / "moved" / "renamed.jpg")  # Zorblax
    (folder / "sign_1.jpg").unlink()  # Quorvanth
    signs.draw_sign("Glimmerdax", seed=5).save(folder / "sign_2.jpg", quality=90)  # was Blinteky 4471
    summary = cli.json("index", folder, "--workers", "1", "--quiet")
    assert (summary["moved"], summary["removed"], summary["changed"], summary["text_pending"]) == (1, 1, 1, 1)
    assert cli.json("ocr", "--ocr-workers", "1")["read"] == 1  # the changed file alone: moves keep their text
    assert paths(cli, "zorblax", "--text-only") == [str(folder.resolve() / "moved" / "renamed.jpg")]
    assert paths(cli, "quorvanth", "--text-only") == [] and paths(cli, "blinteky", "--text-only") == []
    assert paths(cli, "glimmerdax", "--text-only") == [str(folder.resolve() / "sign_2.jpg")]
    assert open_index(cli.index_dir).ocr.stats()["read"] == 5  # the removed and replaced texts pruned
    cli("remove", folder / "moved", ok=True)  # `remove` takes the text along
    assert open_index(cli.index_dir).ocr.stats()["read"] == 4 and paths(cli, "zorblax", "--text-only") == []
    cli("reindex", "--model", tiny_model_b.config, "--pretrained", tiny_model_b.weights, "--workers", "1",
        "--quiet", ok=True)
    assert paths(cli, "glimmerdax", "-k", "1") == [str(folder.resolve() / "sign_2.jpg")]


def test_a_picture_that_hangs_or_crashes_the_reader_is_recorded_and_its_row_stays(tiny_model, tmp_path):
    folder = tmp_path / "photos"
    texts = {"ok_0.jpg": "Zorblax", "hang.jpg": "Quorvanth", "segv.jpg": "Févrünel"}
    folder.mkdir()
    for name, text in texts.items():
        signs.draw_sign(text, seed=len(name)).save(folder / name)
    cli = Cli(tiny_model, tmp_path / "index")
    cli("index", folder, "--workers", "1", "--quiet", ok=True)
    index = open_index(cli.index_dir, writable=True)
    settings = Settings().with_(device="cpu", ocr=OcrSettings(file_timeout_s=5.0))
    read = worker(settings, threads=plan(settings, 1)[1])

    def run(read, retry=False):
        with reading_map(settings, 1, read=read) as read_map:
            return read_pictures(index, read_map, identity(settings.ocr), retry_failed=retry)

    summary = run(functools.partial(signs.sabotaged, read=read))
    reasons = {Path(p).name: why for p, why in summary.failed}
    assert "took over 5 s to read (hung reader?)" in reasons.pop("hang.jpg")
    assert "killed by SIGSEGV" in reasons.pop("segv.jpg")
    assert reasons == {} and summary.with_text == 1
    assert len(open_index(cli.index_dir)) == 3  # the CLIP rows stay
    listed = cli("ocr", "--failed", ok=True).output
    assert "hang.jpg: took over 5 s" in listed and "segv.jpg: crashed" in listed
    assert run(read).read == 0  # recorded failures are not retried on their own ...
    again = run(read, retry=True)  # ... but on request
    assert (again.read, again.with_text, again.failed) == (2, 2, [])


def test_a_killed_run_keeps_its_groups_and_the_next_reads_only_the_rest(tiny_model, photos, tmp_path):
    cli = Cli(tiny_model, tmp_path / "index")
    cli("index", photos / "signs", "--workers", "1", "--quiet", ok=True)

    def ocr(failpoint: str = "") -> subprocess.CompletedProcess:
        env = os.environ | {"PYTHONPATH": str(ROOT), FAILPOINT_ENV: failpoint}
        return subprocess.run([sys.executable, "-m", "clipsearch.cli", "ocr", "--index", str(cli.index_dir),
                               "--ocr-workers", "1", "--commit-every", "2", "--quiet", "--json"],
                              capture_output=True, text=True, env=env, timeout=600)

    killed = ocr("ocr-added:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert open_index(cli.index_dir).ocr.stats()["read"] == 4  # two groups of two committed
    assert paths(cli, "zorblax", "--text-only") == [sign(photos, "Zorblax")]  # read in the first group, searchable
    rest = ocr()
    assert rest.returncode == 0 and '"read": 2' in rest.stdout, rest.stderr
    both = sorted([sign(photos, signs.PHRASE), sign(photos, signs.REVERSED)])
    assert sorted(paths(cli, "tarvola", "--text-only")) == both


def test_the_page_shows_the_matched_line_and_draws_its_box(ocr_cli, photos, monkeypatch):
    import io

    import streamlit
    from streamlit.testing.v1 import AppTest

    from clipsearch.app.views import BOX_COLOUR
    from clipsearch.media.thumbnail import Thumbnails
    from support.ui_support import APP

    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])  # AppTest replaces it
    monkeypatch.setenv("CLIPSEARCH_INDEX", str(ocr_cli.index_dir))
    shown, real = [], streamlit.image
    monkeypatch.setattr(streamlit, "image",
                        lambda data, *a, **kw: shown.append((kw.get("alt"), data)) or real(data, *a, **kw))
    page = AppTest.from_file(str(APP), default_timeout=120).run()
    page.text_input(key="text").input('"Plumbic Tarvola"').run()  # quotes typed on the page: a phrase
    assert not page.exception, [e.value for e in page.exception]
    alt, data = [s for s in shown if s[0]][0]
    assert alt == Path(sign(photos, signs.PHRASE)).name
    assert "“Plumbic Tarvola”" in [t.value for t in page.main.text]

    def amber(jpeg: bytes) -> int:
        px = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), int)
        return int((np.abs(px - BOX_COLOUR).max(-1) < 40).sum())

    plain = Thumbnails(None, Settings().thumbnail_px, Settings().max_pixels).make(sign(photos, signs.PHRASE))
    assert amber(data) > amber(plain) + 100  # the line's box, drawn on the thumbnail
