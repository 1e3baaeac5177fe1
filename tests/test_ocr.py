"""The parts of OCR beside CLIP: the real reader (RapidOCR's bundled models, offline), the text table
with Lance's native full-text index on tmp_path, the query's words, and the fusion of rankings."""

from __future__ import annotations

import numpy as np
import pytest

from clipsearch.config import OcrSettings, Settings
from clipsearch.errors import ModelError
from clipsearch.ingest.ocr import Job, read_job
from clipsearch.models import ocr as ocr_model
from clipsearch.models.ocr import Line, load_reader
from clipsearch.search.fusion import RRF_K, TextMatch, fuse
from clipsearch.search.textquery import text_query, tokens
from clipsearch.store.lock import WriteLock
from clipsearch.store.ocr import OcrTable, Reading, picture_key
from clipsearch.store.tables import Store
from support import signs


@pytest.fixture(scope="module")
def reader():
    return load_reader(OcrSettings(), device="cpu", threads=1)


# --- the reader -------------------------------------------------------------------------------


def test_reader_reads_a_rotated_accented_sign_offline(offline):
    if signs.font_path() is None:
        pytest.skip("no font with accented letters (DejaVu or Liberation) is installed")
    img = signs.draw_sign(signs.ACCENTED, seed=7, angle=4.0)
    lines = load_reader(OcrSettings(), device="cpu", threads=1).read(np.asarray(img))  # no network
    assert [x.text for x in lines] == [signs.ACCENTED]
    assert signs.panel_share(img, lines[0].corners(*img.size)) > 0.4  # the box lies on the sign
    assert lines[0].score > 0.9


def test_a_picture_without_text_gives_no_lines(reader):
    img = signs.background(np.random.default_rng(3), 480, 360)
    assert reader.read(np.asarray(img)) == []


def test_a_picture_without_text_costs_the_detector_alone():
    fresh = load_reader(OcrSettings(), device="cpu", threads=1)
    assert fresh.read(np.full((600, 800, 3), 128, np.uint8)) == []
    assert fresh._engine.text_det is not None and fresh._engine.text_rec is None  # never even loaded


def test_a_missing_model_names_what_to_install(monkeypatch):
    monkeypatch.setitem(ocr_model.BUNDLED, "Det", "PP-OCRv6_det_gone.onnx")
    with pytest.raises(ModelError, match=r"pip install 'rapidocr>=3\.9'") as e:
        load_reader(OcrSettings(), device="cpu")
    assert "PP-OCRv6_det_gone.onnx" in str(e.value)


def test_a_huge_picture_is_bounded_before_the_detector_sees_it(reader, tmp_path):
    path = tmp_path / "huge.jpg"
    signs.draw_sign("Vexmuroth", size=(800, 600), seed=2).resize((4000, 3000)).save(path, quality=80)
    seen = []

    class Spy:  # the real reader, watched
        def read(self, pixels):
            seen.append(pixels.shape)
            return reader.read(pixels)

    settings = OcrSettings()
    st = path.stat()
    out = read_job(Job("k", str(path), None, st.st_size, st.st_mtime), Spy(), settings, Settings().max_pixels)
    assert max(seen[0][:2]) <= settings.read_side
    assert "Vexmuroth" in [x.text for x in out.lines]
    capped = read_job(Job("k", str(path), None, st.st_size, st.st_mtime), Spy(), settings, max_pixels=1_000_000)
    assert capped.error.startswith("too large") and len(seen) == 1  # refused from the header


# --- the query's words ------------------------------------------------------------------------


@pytest.mark.parametrize("query, words, phrases", [
    ("invoice 4471", ("invoice", "4471"), ()),
    ("the a of", (), ()),  # stop words only: nothing to look for
    ("a red circle", ("red", "circle"), ()),
    ('"Quarterly Roadmap" 2024', ("2024",), (("quarterly", "roadmap"),)),
    (["Crème", "BRÛLÉE"], ("creme", "brulee"), ()),
    ("2:beach - night + ./pool.jpg", ("beach",), ()),  # weights and images out, negative terms too
    ("Øresund Straße", ("oresund", "strasse"), ()),
])
def test_text_query_reads_words_as_the_index_does(query, words, phrases):
    q = text_query(query)
    assert (q.words, q.phrases) == (words, phrases)


def test_a_phrase_holds_only_in_order():
    q = text_query('"plumbic tarvola"')
    assert q.holds(tokens("Plumbic Tarvola")) and not q.holds(tokens("Tarvola Plumbic"))


# --- fusion -------------------------------------------------------------------------------------


def test_fusion_puts_pictures_holding_every_word_first():
    visual = [1, 2, 3, 4]
    text = [TextMatch(9, 3.0, True, ()), TextMatch(2, 1.0, False, ())]  # 9: CLIP never saw it
    plain = [i for i, _ in fuse(visual, text, tiered=False)]
    assert plain[:2] == [2, 1] and plain.index(9) == 2  # plain RRF: 9 ties with CLIP's best (1/(K+1))
    assert [i for i, _ in fuse(visual, text)] == [9, 2, 1, 3, 4]
    assert dict(fuse(visual, text))[2] == pytest.approx(1 / (RRF_K + 2) + 1 / (RRF_K + 2))


def test_fusion_without_text_keeps_the_visual_order():
    assert [i for i, _ in fuse([5, 3, 8], [])] == [5, 3, 8]


# --- the table ----------------------------------------------------------------------------------


@pytest.fixture
def table(tmp_path):
    return OcrTable(Store(tmp_path / "lance", create=True), WriteLock(tmp_path))


def _reading(key: str, *texts: str) -> Reading:
    return Reading(key, tuple(Line(t, 0.99, (0, 0, 1, 0, 1, 0.1, 0, 0.1)) for t in texts))


def test_the_table_finds_words_phrases_and_folded_accents(table):
    table.add([_reading("aa", "The Quarterly Roadmap", "2024"), _reading("bb", "roadmap quarterly"),
               _reading("cc", "Crème Brûlée", "INVOICE 4471"), _reading("dd")], reader="r")
    assert table.stats() == {"read": 4, "with_text": 3, "failed": 0}

    def keys(words=(), phrases=()):
        return [f.key for f in table.search(list(words), list(phrases), 10)]

    assert sorted(keys(["roadmap"])) == ["aa", "bb"]
    assert keys(phrases=["quarterly roadmap"]) == ["aa"]
    assert keys(["creme"]) == ["cc"] and keys(["4471"]) == ["cc"]
    assert keys(["the"]) == []  # a stop word matches nothing, though "The" is on a sign
    table.optimize()  # the rows move from the scanned tail into the index: the same answers
    assert keys(["the"]) == [] and keys(phrases=["quarterly roadmap"]) == ["aa"]
    assert [x.text for x in table.lines(["cc"])["cc"]] == ["Crème Brûlée", "INVOICE 4471"]


def test_pruning_and_failures(table):
    table.add([_reading("aa", "zorblax"), Reading("bb", error="took over 60 s"), _reading("cc", "quorvanth")], "r")
    assert table.failures() == {"bb": "took over 60 s"}
    assert table.prune({"aa", "bb"}) == 1 and table.keys() == {"aa", "bb"}
    assert table.search(["quorvanth"], [], 5) == []
    assert table.drop_failures() == 1 and table.keys() == {"aa"}


def test_picture_keys_follow_the_content():
    assert picture_key("ab12", None, 7) == "ab12"
    assert picture_key("ab12", 2.0, 7) == "ab12@2.000"
    assert picture_key("", None, 7) == "id:7"  # a schema-1 row: no hash
