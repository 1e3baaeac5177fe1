"""Image decoding: a file or an upload -> a fully loaded RGB PIL image, or an ImageError saying why not."""

from __future__ import annotations

import functools
import io
import os
import struct

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from clipsearch.config import Settings
from clipsearch.errors import ImageError, InputError

DEFAULT_MAX_PIXELS = Settings.max_pixels
FULL_SIZE = "clipsearch_full_size"  # info key: (width, height) before draft-mode reduction, oriented

# Recognised by content, never by extension: every format this Pillow reads (with pillow-heif and
# pillow-jxl-plugin registered), less the stubs that identify a format without decoding it. EPS
# runs Ghostscript (in -dSAFER mode) on the file; decoding happens in guarded worker processes.
_JPEG_FORMATS = ("JPEG", "MPO")
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_WHITE = (255, 255, 255)
# Decoders of untrusted bytes fail in many ways; each of these means "this file is bad", not a bug.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error, RuntimeError, MemoryError)
_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def load_image(
    path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None
) -> Image.Image:
    """Decode `path` (format detected by content, not extension) to an RGB image, EXIF orientation applied.

    Animated files give their first frame; transparency is composited over white; 16-bit and float
    images are scaled, not clipped, to 8 bits. `max_pixels` is checked from the header before any
    pixel is decoded. With `draft_size`, a JPEG is decoded at 1/2, 1/4 or 1/8 scale while both sides
    stay >= draft_size (much faster for thumbnails-to-be).

    Raises ImageError (with a short reason) for anything that can't be decoded.
    """
    try:
        f = open(path, "rb")
    except OSError as e:
        raise ImageError(f"can't read file: {e.strerror or e}") from e
    with f:
        return _decode(f, max_pixels, draft_size)


def open_upload(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """`load_image` for in-memory bytes (a web upload); ImageError if longer than `max_bytes`."""
    if len(data) > max_bytes:
        raise ImageError(f"too large: {_mb(len(data))} > {_mb(max_bytes)} upload limit; send a smaller file")
    return _decode(io.BytesIO(data), max_pixels, None)


def decode_bytes(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None) -> Image.Image:
    """`load_image` for bytes already in memory (an embedded preview, a video frame's container...)."""
    return _decode(io.BytesIO(data), max_pixels, draft_size)


def to_pixels(img: Image.Image, size: int, resize_mode: str = "shortest", interpolation: str = "bicubic") -> np.ndarray:
    """(size, size, 3) uint8 pixels, resized and cropped/padded exactly as open_clip's eval preprocess.

    `(to_pixels(img, size) / 255 - mean) / std` equals `open_clip.image_transform(size, False, mean, std,
    resize_mode, interpolation)(img)` in HWC order: the same size arithmetic and PIL filter, so the
    pixels can travel as compact uint8 between processes and be normalised next to the model.
    """
    if interpolation not in _FILTERS:
        raise InputError(f"interpolation {interpolation!r} is not supported; use one of {sorted(_FILTERS)}")
    resample = _FILTERS[interpolation]
    if img.mode != "RGB":
        img = img.convert("RGB")
    if resize_mode == "shortest":
        img = _crop_center(_resize(img, _shortest_side_size(img.size, size), resample), size)
    elif resize_mode == "squash":
        img = _resize(img, (size, size), resample)
    elif resize_mode == "longest":
        img = _pad_center(_resize(img, _longest_side_size(img.size, size), resample), size)
    else:
        raise InputError(f"resize_mode {resize_mode!r} is not supported; use shortest, longest or squash")
    return np.asarray(img, dtype=np.uint8).copy()


# --- decoding -------------------------------------------------------------------------------------


def _decode(fp, max_pixels: int, draft_size: int | None) -> Image.Image:
    """Open, check the pixel cap, decode the first frame and orient it; Pillow errors -> ImageError."""
    try:
        with Image.open(fp, formats=readable_formats()) as img:
            full_width = img.width
            if draft_size and img.format in _JPEG_FORMATS:
                img.draft("RGB", (draft_size, draft_size))
            # Checked after draft on purpose: the cap bounds what gets decoded, and draft shrinks that.
            check_pixels(img.size, max_pixels)
            img.load()
            scale = full_width / img.width
            out = _to_rgb(_orient(img))
            out.info[FULL_SIZE] = (round(out.width * scale), round(out.height * scale))
            return out
    except Image.DecompressionBombError as e:
        raise ImageError("too large: past Pillow's own decompression-bomb limit") from e
    except UnidentifiedImageError as e:
        raise ImageError("not an image (or not a format clipsearch reads)") from e
    except _DECODE_ERRORS as e:
        raise ImageError(_reason(e)) from e


#: Pillow plugins that only identify a format and can't decode it.
STUBS = frozenset({"BUFR", "GRIB", "HDF5", "MPEG", "WMF"})


@functools.cache
def readable_formats() -> tuple[str, ...]:
    """The Pillow formats clipsearch decodes; registers the HEIF and JPEG XL plugins once (idempotent)."""
    for module, register in (("pillow_heif", "register_heif_opener"), ("pillow_jxl", None)):
        try:
            plugin = __import__(module)  # pillow_jxl registers itself on import
        except ImportError:
            continue  # those files then fail as "not an image"
        if register:
            getattr(plugin, register)()
    Image.init()
    return tuple(f for f in Image.OPEN if f not in STUBS)


def check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    if size[0] * size[1] > max_pixels:
        mp, cap = size[0] * size[1] / 1e6, max_pixels / 1e6
        raise ImageError(f"too large: {mp:g} MP > {cap:g} MP cap ({size[0]}x{size[1]})")


def _reason(e: BaseException) -> str:
    if "Ghostscript" in str(e):
        return "EPS needs Ghostscript to be rendered: install it (e.g. `apt install ghostscript`) and re-run"
    if isinstance(e, EOFError) or "truncated" in str(e):
        return "truncated file"
    if isinstance(e, MemoryError):
        return "out of memory while decoding"
    return f"corrupt or unsupported image ({type(e).__name__}: {e})"


def _orient(img: Image.Image) -> Image.Image:
    """A new image with the EXIF orientation applied (a copy when there is none)."""
    try:
        return ImageOps.exif_transpose(img)
    except (ValueError, SyntaxError, struct.error, OSError):
        # A damaged EXIF block should cost the orientation, not the photo.
        return img.copy()


# --- colour modes ---------------------------------------------------------------------------------


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB 8-bit from any mode: high bit depths scaled, alpha over white, LAB through a colour profile."""
    if img.mode.startswith(("I", "F")):
        img = _to_8bit(img)
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        return _over_white(img)
    if img.mode == "LAB":
        return _lab_to_rgb(img)
    return img if img.mode == "RGB" else img.convert("RGB")


def _to_8bit(img: Image.Image) -> Image.Image:
    """Mode L from a 16-bit, 32-bit integer or float single-channel image, scaled to its range."""
    a = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16") or (img.mode == "I" and a.min() >= 0 and a.max() <= 65535):
        a = a / 257  # full 16-bit range to full 8-bit range: 65535 -> 255, 32896 -> 128
    elif img.mode == "F" and a.min() >= 0 and a.max() <= 1:
        a = np.nan_to_num(a) * 255
    else:
        a = np.nan_to_num(a)
        lo, hi = a.min(), a.max()
        a = (a - lo) * (255 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")


def _over_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    out = Image.new("RGB", rgba.size, _WHITE)
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def _lab_to_rgb(img: Image.Image) -> Image.Image:
    """Through littleCMS: older Pillows can't convert("RGB") from LAB at all."""
    from PIL import ImageCms

    lab, srgb = ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB")
    return ImageCms.applyTransform(img, ImageCms.buildTransform(lab, srgb, "LAB", "RGB"))


# --- resizing, as torchvision and open_clip do it -------------------------------------------------


def _shortest_side_size(wh: tuple[int, int], size: int) -> tuple[int, int]:
    """torchvision Resize(int): short side -> size, long side -> int(size * long / short)."""
    w, h = wh
    if w <= h:
        return size, int(size * h / w)
    return int(size * w / h), size


def _longest_side_size(wh: tuple[int, int], size: int) -> tuple[int, int]:
    """open_clip ResizeKeepRatio(longest=1): both sides divided by the larger ratio, Python-rounded."""
    w, h = wh
    ratio = max(h / size, w / size)
    return round(w / ratio), round(h / ratio)


def _resize(img: Image.Image, wh: tuple[int, int], resample) -> Image.Image:
    return img if img.size == wh else img.resize(wh, resample)


def _crop_center(img: Image.Image, size: int) -> Image.Image:
    """torchvision CenterCrop for an image at least `size` on both sides."""
    w, h = img.size
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def _pad_center(img: Image.Image, size: int) -> Image.Image:
    """open_clip CenterCropOrPad with fill 0: black borders, the odd pixel going right/bottom.

    No crop is needed: after `_longest_side_size` neither side exceeds `size`.
    """
    w, h = img.size
    out = Image.new("RGB", (size, size), (0, 0, 0))
    out.paste(img, ((size - w) // 2, (size - h) // 2))
    return out


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
