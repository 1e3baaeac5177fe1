"""EXIF and file metadata: times with and without offsets, cameras, GPS in every hemisphere, damage."""

from __future__ import annotations

import os
from datetime import datetime
from fractions import Fraction

import pytest
from PIL import Image

from support.exifphotos import MTIME_2020, exif_jpeg

from clipsearch.media.image import load_image
from clipsearch.media.kinds import PHOTO, RAW, VIDEO
from clipsearch.media.photometa import (SOURCE_EXIF, SOURCE_MTIME, SOURCE_VIDEO_TAGS, PhotoMeta, dms_to_degrees,
                                        parse_exif_time, read_header, read_meta)
from clipsearch.media.places import country_name, name_places

def meta_of(path) -> PhotoMeta:
    return read_meta(load_image(path), path, os.stat(path).st_mtime)


def test_time_camera_and_lens_from_exif(tmp_path):
    p = exif_jpeg(tmp_path / "a.jpg", when="2023:07:14 12:30:05", offset="+02:00", make="Canon",
                  model="Canon EOS R5", lens="RF24-105mm F4 L IS USM")
    m = meta_of(p)
    assert (m.taken, m.taken_offset, m.taken_source) == (datetime(2023, 7, 14, 12, 30, 5), "+02:00", SOURCE_EXIF)
    assert (m.camera_make, m.camera_model, m.lens, m.camera) == (
        "Canon", "Canon EOS R5", "RF24-105mm F4 L IS USM", "Canon EOS R5")
    assert (m.kind, m.folder) == (PHOTO, str(tmp_path))
    assert m.to_dict()["taken"] == "2023-07-14T12:30:05+02:00"


@pytest.mark.parametrize("offset, expected", [
    ("-07:00", "-07:00"), ("+05:30", "+05:30"), ("+0930", "+09:30"), ("   :  ", None), ("garbage", None), (None, None)])
def test_time_offsets(tmp_path, offset, expected):
    m = meta_of(exif_jpeg(tmp_path / "a.jpg", when="2019:12:31 23:59:59", offset=offset))
    assert m.taken == datetime(2019, 12, 31, 23, 59, 59)  # the local wall clock, not shifted to UTC
    assert m.taken_offset == expected


def test_no_exif_falls_back_to_mtime(tmp_path):
    p = tmp_path / "plain.png"
    Image.new("RGB", (30, 10)).save(p)
    os.utime(p, (MTIME_2020, MTIME_2020))
    m = meta_of(str(p))
    assert (m.taken, m.taken_source) == (datetime(2020, 5, 6, 7, 8, 9), SOURCE_MTIME)
    assert (m.camera, m.lens, m.lat, m.lon, m.taken_offset) == (None, None, None, None, None)


@pytest.mark.parametrize("when", ["", "    :  :     :  :  ", "0000:00:00 00:00:00", "2023:13:45 99:00:00", "yesterday"])
def test_unusable_exif_time_falls_back_to_mtime(tmp_path, when):
    m = meta_of(exif_jpeg(tmp_path / "a.jpg", when=when or None, make="Nikon"))
    assert (m.taken_source, m.taken, m.camera_make) == (SOURCE_MTIME, datetime(2020, 5, 6, 7, 8, 9), "Nikon")


def test_missing_tags_are_none(tmp_path):
    m = meta_of(exif_jpeg(tmp_path / "a.jpg", model="Pixel 7"))
    assert (m.camera_make, m.camera_model, m.camera, m.lens, m.lat) == (None, "Pixel 7", "Pixel 7", None, None)


@pytest.mark.parametrize("lat, lon, expected_place", [
    ((48.8566, "N"), (2.3522, "E"), ("Paris", "Ile-de-France", "France")),  # N, E
    ((40.7128, "N"), (74.0060, "W"), ("New York City", "New York", "United States")),  # N, W
    ((33.8688, "S"), (151.2093, "E"), ("Sydney", "New South Wales", "Australia")),  # S, E
    ((22.9068, "S"), (43.1729, "W"), ("Rio de Janeiro", "Rio de Janeiro", "Brazil")),  # S, W
])
def test_gps_in_every_hemisphere_and_its_place(tmp_path, lat, lon, expected_place):
    m = meta_of(exif_jpeg(tmp_path / "a.jpg", gps=(lat, lon)))
    sign_lat = -1 if lat[1] == "S" else 1
    sign_lon = -1 if lon[1] == "W" else 1
    assert m.lat == pytest.approx(sign_lat * lat[0], abs=1e-4)
    assert m.lon == pytest.approx(sign_lon * lon[0], abs=1e-4)
    (named,) = name_places([m])
    assert (named.city, named.region, named.country) == expected_place
    assert named.place == ", ".join(expected_place)


def test_gps_refs_and_bad_values():
    assert dms_to_degrees((10, 30, 0), "S") == -10.5
    assert dms_to_degrees((10, 30, 0), b"W\x00") == -10.5
    assert dms_to_degrees((10, 30, 0), None) == 10.5
    assert dms_to_degrees((Fraction(1), Fraction(0)), "N") is None  # two values, not three
    assert dms_to_degrees("junk", "N") is None


def test_null_island_and_out_of_range_gps_are_dropped(tmp_path):
    assert meta_of(exif_jpeg(tmp_path / "a.jpg", gps=((0.0, "N"), (0.0, "E")))).lat is None
    assert meta_of(exif_jpeg(tmp_path / "b.jpg", gps=((95.0, "N"), (10.0, "E")))).lat is None


def test_broken_exif_block_costs_the_fields_not_the_photo(tmp_path):
    p = tmp_path / "broken.jpg"
    Image.new("RGB", (16, 16)).save(p, "JPEG", exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff\x01\x02garbage")
    os.utime(p, (MTIME_2020, MTIME_2020))
    m = meta_of(str(p))
    assert m.taken_source == SOURCE_MTIME and m.camera is None
    meta, size = read_header(str(p), MTIME_2020)
    assert meta.taken_source == SOURCE_MTIME and size == (16, 16)


def test_header_only_read_gives_oriented_size(tmp_path):
    p = exif_jpeg(tmp_path / "r.jpg", when="2021:01:02 03:04:05", orientation=6, size=(40, 20))
    meta, size = read_header(p, 0.0)
    assert size == (20, 40)
    assert meta.taken == datetime(2021, 1, 2, 3, 4, 5)
    assert read_header(str(tmp_path / "missing.jpg"), MTIME_2020)[1] is None


def test_parse_exif_time_variants():
    assert parse_exif_time("2023-07-14 10:00:00") == (datetime(2023, 7, 14, 10), None)
    assert parse_exif_time(b"2023:07:14 10:00:00\x00", b"-03:00") == (datetime(2023, 7, 14, 10), "-03:00")
    assert parse_exif_time("2001:02:03") == (datetime(2001, 2, 3), None)
    assert parse_exif_time(12345) == (None, None)


def test_kind_by_suffix_in_the_cli_words(tmp_path):
    names = ("a.JPG", "b.CR2", "c.dng", "d.MOV", "e.mp4", "f.heic")
    for name in names:
        Image.new("RGB", (8, 8)).save(tmp_path / name, "PNG")  # the suffix decides, not the bytes
    kinds = [read_header(str(tmp_path / name))[0].kind for name in names]
    assert kinds == [PHOTO, RAW, RAW, VIDEO, VIDEO, PHOTO] == ["photo", "raw", "raw", "video", "video", "photo"]
    (tmp_path / "notes").write_text("no suffix, not an image")
    assert read_header(str(tmp_path / "notes"))[0].kind == PHOTO  # a file that got indexed is a photo


def test_country_names():
    assert country_name("gb") == "United Kingdom" and country_name("") is None and country_name("ZZ") == "ZZ"


def test_raw_camera_from_its_tiff_tags(tmp_path):
    from support.dng import write_dng

    p = tmp_path / "a.dng"
    write_dng(p, Image.new("RGB", (64, 48), (200, 10, 10)), make="Nikon")
    os.utime(p, (MTIME_2020, MTIME_2020))
    meta, size = read_header(str(p))
    assert (meta.kind, meta.camera_make, meta.camera_model, meta.taken_source) == (RAW, "Nikon", "Test", SOURCE_MTIME)
    assert size is None  # the row's size comes from the decoded picture


@pytest.mark.parametrize("tags, taken, offset, latlon", [
    ({"creation_time": "2022-05-06T07:08:09.000000Z", "location": "+48.8566+002.3522/"},
     datetime(2022, 5, 6, 7, 8, 9), "+00:00", (48.8566, 2.3522)),
    ({"com.apple.quicktime.creationdate": "2023-07-14T12:00:00-0300",
      "com.apple.quicktime.location.ISO6709": "-22.9068-043.1729+010.000/"},
     datetime(2023, 7, 14, 12), "-03:00", (-22.9068, -43.1729)),
    ({"creation_time": "1904-01-01T00:00:00.000000Z"}, None, None, (None, None)),  # no clock: mtime
])
def test_video_creation_time_and_location(tmp_path, tags, taken, offset, latlon):
    import av
    import numpy as np

    p = tmp_path / "clip.mov"
    with av.open(str(p), "w", options={"movflags": "use_metadata_tags"}) as out:  # keeps Apple's keys
        out.metadata.update(tags)
        s = out.add_stream("libx264", rate=10)
        s.width = s.height = 64
        for packet in [*s.encode(av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")),
                       *s.encode()]:
            out.mux(packet)
    os.utime(p, (MTIME_2020, MTIME_2020))
    meta, size = read_header(str(p))
    assert meta.kind == VIDEO and size is None
    if taken:
        assert (meta.taken, meta.taken_offset, meta.taken_source) == (taken, offset, SOURCE_VIDEO_TAGS)
        assert meta.taken_source == "video"  # the word indexes on disk hold
    else:
        assert (meta.taken, meta.taken_source) == (datetime(2020, 5, 6, 7, 8, 9), SOURCE_MTIME)
    assert (meta.lat, meta.lon) == latlon
