"""Filters through the CLI on a real index of JPEGs with EXIF: dates, camera, place, folder, kind,
size, dates typed into the query, sorting, JSON fields, injection attempts, and the upgrade of an
index from before schema 3 (metadata read from headers, nothing re-encoded)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime

import lancedb
import pyarrow as pa
import pytest

from support.clirun import Cli
from clipsearch import open_index
from clipsearch.errors import InputError
from clipsearch.store.filters import Filter, date_bounds, make_filter
from clipsearch.store.manifest import SCHEMA_VERSION
from clipsearch.media.photometa import FIELDS
from support.exifphotos import PHOTOS

@pytest.fixture
def lib(tiny_model, library) -> tuple:
    """(photos folder, Cli) on the library's index (read only)."""
    return library[0], Cli(tiny_model, library[1])


@pytest.fixture
def lib_copy(tiny_model, library, tmp_path) -> tuple:
    """(photos folder, Cli) on a private copy of the library's index (tests may change it)."""
    shutil.copytree(library[1], tmp_path / "index")
    return library[0], Cli(tiny_model, tmp_path / "index")


def names(hits) -> set[str]:
    return {h["path"].rsplit("/", 1)[1][:-4] for h in hits}


def query(cli, *args) -> list[dict]:
    return cli.json("query", "a shape", "-k", "10", *args)


@pytest.mark.parametrize("options, expected", [
    ({"after": "2023"}, {"paris", "sydney"}),
    ({"after": "2023-07-15"}, {"sydney"}),
    ({"before": "2019"}, {"nyc", "garden"}),
    ({"after": "2019-08-09", "before": "2019-08-09"}, {"garden"}),
    ({"after": "2020", "before": "2021"}, {"scan", "rio"}),  # the scan by its mtime
    ({"camera": "PIXEL"}, {"sydney"}),
    ({"place": "new york"}, {"nyc"}),
    ({"place": "Brazil"}, {"rio"}),
    ({"near": "48.85,2.35"}, {"paris"}),
    ({"kind": "photo"}, set(PHOTOS)),
    ({"kind": "raw"}, set()),
    ({"camera": "canon", "after": "2020"}, {"paris"}),
    ({"camera": "x' OR 1=1 --"}, set()), ({"place": "' OR '1'='1"}, set()), ({"camera": "%"}, set()),
    ({"folders": ["x' OR 1=1 --"]}, set()),
])
def test_filters_in_the_library(library, options, expected):
    idx = open_index(library[1])
    rows = idx.images.rows(idx.images.matching(make_filter(**options)))
    assert {r.path.rsplit("/", 1)[1][:-4] for r in rows.values()} == expected


@pytest.mark.parametrize("args, expected", [
    ((), set(PHOTOS)),
    (("--before", "2019-03"), {"nyc"}),
    (("--camera", "canon"), {"paris", "nyc"}),
    (("--place", "france"), {"paris"}),
    (("--near", "-33.87,151.21,30"), {"sydney"}),
    (("--min-size", "300x200"), {"paris"}),
])
def test_filters_on_the_command_line(lib, args, expected):
    photos, cli = lib
    assert names(query(cli, *args)) == expected


def test_in_folder(lib):
    photos, cli = lib
    assert names(query(cli, "--in", photos / "home")) == {"nyc", "garden", "rio", "scan"}
    assert names(query(cli, "--in", photos / "home" / "old", "--in", photos / "trips")) == {"scan", "paris", "sydney"}
    idx = open_index(cli.index_dir)
    assert len(idx.images.matching(make_filter(folders=[str(photos / "hom")]))) == 0  # a folder, not a name prefix


def test_top_k_is_filled_from_the_matching_images(lib):
    photos, cli = lib
    assert len(query(cli, "--in", photos / "home", "-k", "3")) == 3  # not fewer: no post-filtering


@pytest.mark.parametrize("option, value", [
    ("--camera", "x' OR 1=1 --"), ("--place", "canon'; DROP TABLE images; --"), ("--in", "x' OR 1=1 --")])
def test_injection_is_data(lib_copy, option, value):
    photos, cli = lib_copy
    result = cli("query", "a shape", option, value, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    assert len(query(cli)) == len(PHOTOS)  # nothing broke


def test_json_carries_metadata(lib):
    photos, cli = lib
    (hit,) = query(cli, "--place", "france")
    assert hit["taken"] == "2023-07-14T12:00:00+02:00" and hit["taken_source"] == "exif"
    assert (hit["camera"], hit["city"], hit["country"], hit["kind"]) == ("Canon EOS R5", "Paris", "France", "photo")
    assert hit["lat"] == pytest.approx(48.8566, abs=1e-3) and hit["folder"] == str(photos / "trips")
    assert (hit["width"], hit["height"]) == (320, 240)
    scan = query(cli, "--in", photos / "home" / "old")[0]
    assert scan["taken"] == "2020-05-06T07:08:09" and scan["taken_source"] == "mtime" and scan["camera"] is None


def test_sort_by_date_newest_first(lib):
    photos, cli = lib
    taken = [h["taken"][:19] for h in query(cli, "--sort", "date")]
    assert taken == sorted(taken, reverse=True) and len(taken) == len(PHOTOS)


def test_dates_typed_into_the_query(lib):
    photos, cli = lib
    result = cli("query", "a", "red", "circle", "July", "2023", "--json")
    assert result.exit_code == 0
    assert "searching 'a red circle' taken in July 2023" in result.stderr
    assert names(json.loads(result.stdout)) == {"paris", "sydney"}
    literal = cli("query", "a red circle July 2023", "--no-parse-dates", "--json")
    assert "searching" not in literal.stderr and len(json.loads(literal.stdout)) == len(PHOTOS)


def test_empty_filter_result_says_so(lib):
    photos, cli = lib
    result = cli("query", "a shape", "--type", "raw")
    assert result.exit_code == 0 and "no results among the images" in result.stderr


@pytest.mark.parametrize("args, message", [
    (("--after", "July"), "is not a date"), (("--before", "2023-13"), "is not a date"),
    (("--near", "91,0"), "--near"), (("--near", "1,2,3,4"), "--near"), (("--min-size", "big"), "--min-size")])
def test_bad_filter_values(lib, args, message):
    photos, cli = lib
    assert message in cli.fails("query", "a shape", *args)


def test_classify_indexed_with_filter(lib):
    photos, cli = lib
    out = cli.json("classify", "--indexed", "--labels", "a red circle,a blue square", "--camera", "canon")
    assert names(out) == {"paris", "nyc"}
    assert "--indexed" in cli.fails("classify", photos, "--labels", "a,b", "--camera", "canon")


def test_old_index_gets_metadata_without_reencoding(lib_copy):
    photos, cli = lib_copy
    db = lancedb.connect(str(cli.index_dir / "lance"))
    old = db.open_table("images").to_arrow().drop_columns(list(FIELDS))  # as schema 3 wrote it
    db.drop_table("images")
    db.create_table("images", old)
    manifest = cli.index_dir / "manifest.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"schema_version": 3}))
    assert query(cli, "--camera", "canon") == []  # read as it is: no metadata yet, nothing matches
    assert len(query(cli)) == len(PHOTOS)

    summary = cli.json("index", photos, "--workers", "1")
    assert summary["indexed"] == 0 and summary["unchanged"] == len(PHOTOS)
    assert summary["notes"] == [f"metadata (dates, cameras, places) read from the headers of {len(PHOTOS)} older images"]
    assert json.loads(manifest.read_text())["schema_version"] == SCHEMA_VERSION
    idx = open_index(cli.index_dir)
    assert idx.images.ann().generation == idx.images.version  # the ANN file matches the table
    assert names(query(cli, "--camera", "canon")) == {"paris", "nyc"}
    assert names(query(cli, "--place", "brazil")) == {"rio"}
    assert cli.json("index", photos, "--workers", "1")["indexed"] == 0


def test_filter_values_are_never_sql():
    t = pa.table({"id": [1, 2], "camera_make": ["Canon", "x' OR 1=1 --"], "camera_model": [None, None],
                  "lens": [None, None], "taken": pa.array([datetime(2020, 1, 1), None], pa.timestamp("s"))})
    assert Filter(camera="x' OR 1=1 --").mask(t).tolist() == [False, True]  # literal text, matched as such
    assert Filter(after=datetime(2019, 1, 1)).mask(t).tolist() == [True, False]  # no date: no match
    assert not make_filter() and make_filter(camera="a")


def test_date_bounds():
    assert date_bounds("2023") == (datetime(2023, 1, 1), datetime(2024, 1, 1))
    assert date_bounds("2023-12") == (datetime(2023, 12, 1), datetime(2024, 1, 1))
    assert date_bounds("2024-02-29") == (datetime(2024, 2, 29), datetime(2024, 3, 1))
    with pytest.raises(InputError):
        date_bounds("2023-02-30")
