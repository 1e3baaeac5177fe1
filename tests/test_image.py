"""clipsearch.media.image: every file is decoded to the RGB a person would see, or refused with a reason."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile, features

from clipsearch.errors import ImageError
from clipsearch.media.image import load_image, open_upload, to_pixels

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def _halves(w: int, h: int, left=RED, right=BLUE) -> Image.Image:
    """w x h RGB image, left half `left`, right half `right`."""
    a = np.empty((h, w, 3), np.uint8)
    a[:, : w // 2], a[:, w // 2 :] = left, right
    return Image.fromarray(a)


def _mode(path) -> str:
    with Image.open(path) as img:
        return img.mode


def _close(pixel, expected, tol=8) -> bool:
    return all(abs(int(p) - int(e)) <= tol for p, e in zip(pixel, expected))


def _png_header(path, w: int, h: int) -> None:
    """A PNG whose header claims w x h pixels, with a few bytes of image data: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))


# --- orientation, frames, colour modes --------------------------------------------------------------


def test_exif_orientation_6_rotates_clockwise(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways; the viewer turns it 90 degrees clockwise
    _halves(40, 20).save(path, exif=exif, quality=95)

    img = load_image(path)

    assert img.mode == "RGB" and img.size == (20, 40)
    assert _close(img.getpixel((10, 5)), RED)  # the stored left half ends up on top
    assert _close(img.getpixel((10, 34)), BLUE)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_file_gives_first_frame(tmp_path, fmt):
    path = tmp_path / f"anim.{fmt.lower()}"
    frames = [Image.new("RGB", (16, 16), c) for c in (RED, BLUE, (0, 255, 0))]
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True)
    with Image.open(path) as stored:
        assert stored.n_frames == 3

    img = load_image(path)

    assert img.mode == "RGB" and _close(img.getpixel((8, 8)), RED)


def test_palette_transparency_is_composited_over_white(tmp_path):
    path = tmp_path / "palette.png"
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 0 black (but transparent), 1 red
    img.paste(1, (0, 0, 5, 10))
    img.save(path, transparency=0)

    out = load_image(path)

    assert out.getpixel((2, 5)) == RED
    assert out.getpixel((7, 5)) == WHITE  # not the black hidden under the transparency


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_alpha_is_composited_over_white(tmp_path, mode):
    path = tmp_path / f"{mode}.png"
    a = np.zeros((4, 3, len(mode)), np.uint8)  # black everywhere; alpha 0, 255, 128 by column
    a[:, 1, -1], a[:, 2, -1] = 255, 128
    Image.fromarray(a, mode).save(path)

    out = np.asarray(load_image(path))

    assert out.shape == (4, 3, 3)
    assert (out[:, 0] == 255).all() and (out[:, 1] == 0).all()
    assert (abs(out[:, 2].astype(int) - 127) <= 1).all()


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_gray_is_scaled_not_clipped(tmp_path, fmt):
    path = tmp_path / f"deep.{fmt.lower()}"
    values = np.array([[0, 257, 32896, 65280, 65535]], np.uint16)  # 65280 tells /257 from /256
    Image.fromarray(values).save(path, fmt)
    assert _mode(path).startswith("I")  # really stored at 16 bits

    out = np.asarray(load_image(path))

    assert out[0, :, 0].tolist() == [0, 1, 128, 254, 255]
    assert (out[..., 0] == out[..., 2]).all()


def test_float_image_is_scaled(tmp_path):
    path = tmp_path / "float.tiff"
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F").save(path)

    out = np.asarray(load_image(path))

    assert out[0, :, 1].tolist() == [0, 128, 255]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 0, 0)).save(path, quality=95)  # pure magenta ink
    assert _mode(path) == "CMYK"

    img = load_image(path)

    assert img.mode == "RGB" and _close(img.getpixel((8, 8)), (255, 0, 255))


def test_lab_tiff_becomes_the_same_rgb(tmp_path):
    path = tmp_path / "lab.tiff"
    rgb = Image.new("RGB", (8, 8), (200, 60, 30))
    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    ImageCms.applyTransform(rgb, to_lab).save(path)
    assert _mode(path) == "LAB"

    img = load_image(path)

    assert img.mode == "RGB" and _close(img.getpixel((4, 4)), (200, 60, 30), tol=4)


def test_one_bit_image(tmp_path):
    path = tmp_path / "bits.png"
    bits = Image.new("1", (8, 8), 0)
    bits.paste(1, (0, 0, 4, 8))
    bits.save(path)

    out = np.asarray(load_image(path))

    assert (out[:, :4] == 255).all() and (out[:, 4:] == 0).all()


def test_format_comes_from_content_not_extension(tmp_path):
    path = tmp_path / "really_a_png.jpg"
    _halves(10, 4).save(path, "PNG")

    out = load_image(path)

    assert out.getpixel((0, 0)) == RED and out.getpixel((9, 0)) == BLUE  # lossless: PNG was decoded


def test_draft_decodes_big_jpeg_at_reduced_size(tmp_path):
    path = tmp_path / "big.jpg"
    _halves(2400, 1600).save(path, quality=90)

    small = load_image(path, draft_size=224)

    assert load_image(path).size == (2400, 1600)
    assert small.size == (600, 400)  # 1/4 scale: 1/8 would make the short side 200 < 224
    assert _close(small.getpixel((10, 200)), RED) and _close(small.getpixel((590, 200)), BLUE)


def test_heic_round_trip(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("this pillow_heif build has no HEIC encoder")
    path = tmp_path / "photo.heic"
    pillow_heif.from_pillow(_halves(64, 32)).save(path, quality=95)

    img = load_image(path)

    assert img.mode == "RGB" and img.size == (64, 32)
    assert _close(img.getpixel((8, 16)), RED, tol=24) and _close(img.getpixel((56, 16)), BLUE, tol=24)


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow was built without AVIF")
def test_avif_round_trip(tmp_path):
    path = tmp_path / "photo.avif"
    _halves(64, 32).save(path, "AVIF", quality=95)

    img = load_image(path)

    assert img.mode == "RGB" and img.size == (64, 32)
    assert _close(img.getpixel((8, 16)), RED, tol=24) and _close(img.getpixel((56, 16)), BLUE, tol=24)


# --- refusals -------------------------------------------------------------------------------------


def test_truncated_jpeg_is_refused(tmp_path):
    path = tmp_path / "cut.jpg"
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), np.uint8)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])

    with pytest.raises(ImageError, match="truncated"):
        load_image(path)


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, I am a text file\n" * 10],
    ids=["empty", "text"],  # (EPS is read, through Ghostscript: test_formats.py)
)
def test_non_images_are_refused(tmp_path, content):
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)

    with pytest.raises(ImageError, match="not an image"):
        load_image(path)


def test_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="can't read"):
        load_image(tmp_path / "nowhere.png")


def test_pixel_cap_is_checked_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    _png_header(path, 9_000, 9_000)  # 81 MP claimed, under Pillow's own limits: only our cap stops it
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self) or real_load(self))

    with pytest.raises(ImageError, match=r"too large: 81 MP > 1 MP cap"):
        load_image(path, max_pixels=1_000_000)
    assert decoded == []  # refused from the header: no pixel was decoded


def test_pillow_bomb_limit_becomes_an_image_error(tmp_path):
    path = tmp_path / "huge.png"
    _png_header(path, 100_000, 100_000)  # past Pillow's own hard limit, raised inside Image.open

    with pytest.raises(ImageError, match="too large"):
        load_image(path, max_pixels=10**12)


def test_real_image_over_the_cap_is_refused(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("1", (3000, 2000)).save(path)

    assert load_image(path, max_pixels=6_000_000).size == (3000, 2000)
    with pytest.raises(ImageError, match="6 MP > 5.9 MP cap"):
        load_image(path, max_pixels=5_900_000)


def test_no_global_pillow_state_is_changed(tmp_path):
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    path = tmp_path / "a.png"
    _halves(4, 4).save(path)

    load_image(path, max_pixels=100)
    with pytest.raises(ImageError):
        load_image(path, max_pixels=10)

    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before


# --- uploads --------------------------------------------------------------------------------------


def test_open_upload_decodes_bytes():
    buf = io.BytesIO()
    _halves(10, 6).save(buf, "PNG")

    img = open_upload(buf.getvalue(), max_bytes=10_000, max_pixels=100)

    assert img.size == (10, 6) and img.getpixel((0, 0)) == RED


def test_open_upload_refuses_too_many_bytes():
    buf = io.BytesIO()
    _halves(10, 6).save(buf, "PNG")

    with pytest.raises(ImageError, match="too large"):
        open_upload(buf.getvalue(), max_bytes=len(buf.getvalue()) - 1, max_pixels=100)


def test_open_upload_applies_the_pixel_cap():
    buf = io.BytesIO()
    _halves(10, 6).save(buf, "PNG")

    with pytest.raises(ImageError, match="cap"):
        open_upload(buf.getvalue(), max_bytes=10_000, max_pixels=59)


# --- to_pixels against open_clip ------------------------------------------------------------------

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def _noise(w: int, h: int) -> Image.Image:
    """Noise: any resize, filter or crop-offset mistake changes many pixels."""
    rng = np.random.default_rng(w * 1000 + h)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8))


@pytest.mark.parametrize("wh", [(640, 480), (480, 640), (50, 30), (333, 517), (224, 224), (1000, 225), (225, 1001)])
@pytest.mark.parametrize("resize_mode", ["shortest", "squash", "longest"])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize("size", [224, 97])
def test_to_pixels_matches_open_clip_preprocess(wh, resize_mode, interpolation, size):
    open_clip = pytest.importorskip("open_clip")
    preprocess = open_clip.image_transform(
        size, is_train=False, mean=MEAN, std=STD, resize_mode=resize_mode, interpolation=interpolation
    )
    img = _noise(*wh)

    pixels = to_pixels(img, size, resize_mode=resize_mode, interpolation=interpolation)
    expected = preprocess(img).permute(1, 2, 0).numpy()

    assert pixels.dtype == np.uint8 and pixels.shape == (size, size, 3)
    ours = (pixels / 255 - np.array(MEAN)) / np.array(STD)
    assert np.abs(ours - expected).max() < 1e-5


def test_to_pixels_converts_non_rgb_input():
    pixels = to_pixels(Image.new("L", (30, 20), 77), 16)

    assert pixels.shape == (16, 16, 3) and (pixels == 77).all()


@pytest.mark.parametrize("kwargs", [{"resize_mode": "stretch"}, {"interpolation": "lanczos"}])
def test_to_pixels_refuses_unknown_options(kwargs):
    with pytest.raises(ValueError, match="not supported"):
        to_pixels(Image.new("RGB", (8, 8)), 4, **kwargs)
