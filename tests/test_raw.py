"""Camera RAW files through rawpy: preview or half-size demosaic, upright, failures recorded."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clipsearch import Decoded, Failure, decode_file, load_encoder
from clipsearch.errors import ImageError
from clipsearch.media.image import FULL_SIZE
from clipsearch.media.raw import load_raw
from support.dng import write_dng

RED, BLUE = (220, 30, 30), (30, 70, 220)


def _halves(w: int = 96, h: int = 64) -> Image.Image:
    a = np.empty((h, w, 3), np.uint8)
    a[:, : w // 2], a[:, w // 2:] = RED, BLUE
    return Image.fromarray(a)


def _reddish(px) -> bool:
    return int(px[0]) > 150 and int(px[2]) < 100


def _bluish(px) -> bool:
    return int(px[2]) > 150 and int(px[0]) < 100


@pytest.mark.parametrize("preview", [None, (960, 640)], ids=["demosaic", "preview"])
@pytest.mark.parametrize("orientation, size, red_at, blue_at", [
    (1, (96, 64), (2, 30), (93, 30)),  # upright: red left, blue right
    (6, (64, 96), (30, 2), (30, 93)),  # turned 90 degrees clockwise: red on top
    (3, (96, 64), (93, 30), (2, 30)),  # upside down: red right
])
def test_raw_is_decoded_upright(tmp_path, preview, orientation, size, red_at, blue_at):
    img = _halves()
    path = tmp_path / "photo.dng"
    write_dng(path, img, orientation=orientation, preview=img.resize(preview) if preview else None)
    out = load_raw(path, max_pixels=10**8, min_preview=448)
    assert out.mode == "RGB" and out.info[FULL_SIZE] == size
    scale = (960 / 96) if preview else 0.5  # the preview as it is, or half-size demosaic
    assert out.size == (round(size[0] * scale), round(size[1] * scale))
    px = np.asarray(out.resize(size))
    assert _reddish(px[red_at[1], red_at[0]]) and _bluish(px[blue_at[1], blue_at[0]])


def test_small_preview_is_passed_over_for_the_sensor_data(tmp_path):
    img = _halves()
    preview = Image.new("RGB", (96, 64), (0, 255, 0))  # a preview that lies: green
    write_dng(tmp_path / "photo.dng", img, preview=preview)
    out = np.asarray(load_raw(tmp_path / "photo.dng", max_pixels=10**8, min_preview=448))
    assert _reddish(out[10, 2])  # from the sensor, not the green preview
    out = np.asarray(load_raw(tmp_path / "photo.dng", max_pixels=10**8, min_preview=32))
    assert tuple(out[10, 2])[1] > 200  # large enough now: the preview is used


def _unknown_camera(path):
    """A TIFF-based file from a camera LibRaw doesn't know (as a new camera's RAW is)."""
    _halves().save(path, "TIFF", tiffinfo={271: "NoSuchCamera", 272: "Model X"})


def test_unsupported_camera_and_broken_raw_are_image_errors(tmp_path):
    _unknown_camera(tmp_path / "odd.nef")
    with pytest.raises(ImageError, match="unsupported RAW file or camera"):
        load_raw(tmp_path / "odd.nef", max_pixels=10**8, min_preview=448)
    (tmp_path / "empty.cr2").write_bytes(b"")
    with pytest.raises(ImageError, match="RAW"):
        load_raw(tmp_path / "empty.cr2", max_pixels=10**8, min_preview=448)
    write_dng(tmp_path / "big.dng", _halves())
    with pytest.raises(ImageError, match="too large"):
        load_raw(tmp_path / "big.dng", max_pixels=1000, min_preview=448)


def test_decode_file_reads_raw_by_suffix_and_records_failures(tiny_model, tmp_path):
    enc = load_encoder(str(tiny_model.config), str(tiny_model.weights))
    write_dng(tmp_path / "photo.dng", _halves())
    d = decode_file(str(tmp_path / "photo.dng"), enc.preprocess, 10**8)
    assert isinstance(d, Decoded) and (d.rows[0].width, d.rows[0].height) == (96, 64)
    _unknown_camera(tmp_path / "odd.arw")
    f = decode_file(str(tmp_path / "odd.arw"), enc.preprocess, 10**8)
    assert isinstance(f, Failure) and "unsupported RAW" in f.reason and f.size > 0
