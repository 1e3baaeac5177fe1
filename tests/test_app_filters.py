"""The page's filters, sort toggle, timeline and per-result date and place, through Streamlit's AppTest
on the library of JPEGs with EXIF (exifphotos.PHOTOS)."""

from __future__ import annotations

import sys
from datetime import date, datetime

import pytest
from streamlit.testing.v1 import AppTest

from clipsearch import open_index
from clipsearch.app import filterpanel
from clipsearch.store.filters import Filter
from support.ui_support import APP

TIMEOUT = 120


@pytest.fixture(autouse=True)
def _keep_main_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])


@pytest.fixture
def page(library, monkeypatch) -> AppTest:
    monkeypatch.setenv("CLIPSEARCH_INDEX", str(library[1]))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    at.text_input(key="text").input("a shape").run()
    return at


def shown(at: AppTest) -> list[str]:
    assert not at.exception, [e.value for e in at.exception]
    return [im.proto.imgs[0].alt[:-4] for im in at.get("image") if im.proto.imgs[0].alt]


def test_sidebar_filters_narrow_the_results(page):
    assert set(shown(page)) == {"paris", "sydney", "nyc", "garden", "rio", "scan"}
    page.sidebar.text_input(key="camera").input("canon").run()
    assert set(shown(page)) == {"paris", "nyc"}
    page.sidebar.text_input(key="place").input("france").run()
    assert shown(page) == ["paris"]
    assert "2023-07-14 · Paris, Ile-de-France, France" in [t.value for t in page.main.text]


def test_date_range_type_folder_and_sort(page, library):
    page.sidebar.date_input(key="dates").set_value((date(2023, 7, 1), date(2023, 7, 31))).run()
    assert set(shown(page)) == {"paris", "sydney"}
    page.sidebar.date_input(key="dates").set_value(()).run()
    page.sidebar.selectbox(key="kind").set_value("raw").run()
    assert shown(page) == [] and "no results among the images" in page.info[0].value
    page.sidebar.selectbox(key="kind").set_value("photo").run()
    page.sidebar.radio(key="sort").set_value("date").run()
    assert shown(page) == ["sydney", "paris", "rio", "scan", "garden", "nyc"]  # newest first


def test_dates_typed_into_the_query_say_so(page):
    page.text_input(key="text").input("a shape July 2023").run()
    assert set(shown(page)) == {"paris", "sydney"}
    assert "searching 'a shape' taken in July 2023" in [c.value for c in page.caption]


def test_timeline_chart_of_matches_per_month(page, library):
    (chart,) = page.get("vega_lite_chart")  # drawn above the results, clickable by month
    assert list(chart.proto.selection_mode) == ["month"] and '"month"' in chart.proto.spec
    counts = filterpanel.month_counts(open_index(library[1]).images, Filter(camera="canon"))
    assert counts == [{"month": "2019-03-01", "photos": 1}, {"month": "2023-07-01", "photos": 1}]


def test_a_click_on_a_month_narrows_the_date_range():
    july = datetime(2023, 7, 1).timestamp() * 1000  # Vega-Lite sends epoch milliseconds
    event = {"selection": {"month": [{"month": july}]}}
    assert filterpanel.month_range(event) == (date(2023, 7, 1), date(2023, 7, 31))
    assert filterpanel.month_range({"selection": {"month": [{"month": "2024-02-01"}]}}) == (
        date(2024, 2, 1), date(2024, 2, 29))
    assert filterpanel.month_range({"selection": {"month": []}}) is None
    where = filterpanel.with_range(Filter(), (date(2023, 7, 1), date(2023, 7, 31)))
    assert (where.after, where.before) == (datetime(2023, 7, 1), datetime(2023, 8, 1))
