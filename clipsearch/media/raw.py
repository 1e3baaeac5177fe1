"""Camera RAW decoding with rawpy (LibRaw): the embedded preview when it is large enough, else the
sensor data demosaiced at half size; the camera's orientation applied either way."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from clipsearch.errors import ImageError
from clipsearch.media.image import FULL_SIZE, check_pixels, decode_bytes

#: LibRaw's `flip` (the camera's orientation) -> the transpose that shows the picture upright.
_FLIPS = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}
_EXIF_ORIENTATION = 0x0112


def load_raw(path: str | os.PathLike, *, max_pixels: int, min_preview: int) -> Image.Image:
    """Decode a RAW file to an upright RGB image; its full (oriented) size in info[FULL_SIZE].

    The embedded preview is used when its shorter side is at least `min_preview` pixels; else the
    sensor data is demosaiced at half size (camera white balance, sRGB). ImageError for a file
    LibRaw can't read (an unsupported camera among them) or past `max_pixels`.
    """
    try:
        import rawpy
    except ImportError as e:
        raise ImageError("RAW files need rawpy: `pip install rawpy`") from e
    try:
        with rawpy.imread(os.fspath(path)) as raw:
            flip, sizes = raw.sizes.flip, raw.sizes
            full = (sizes.height, sizes.width) if flip in (5, 6) else (sizes.width, sizes.height)
            img = _preview(raw, rawpy, flip, max_pixels, min_preview)
            if img is None:
                check_pixels((sizes.raw_width, sizes.raw_height), max_pixels)
                img = Image.fromarray(raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8))
    except rawpy.LibRawFileUnsupportedError as e:
        raise ImageError(f"unsupported RAW file or camera (LibRaw {rawpy.libraw_version}: {_text(e)}); "
                         "a newer rawpy may read it") from e
    except (rawpy.LibRawError, OSError, ValueError, MemoryError) as e:
        raise ImageError(f"corrupt or unreadable RAW file ({type(e).__name__}: {_text(e)})") from e
    img = img if img.mode == "RGB" else img.convert("RGB")
    img.info = {FULL_SIZE: full}
    return img


def _preview(raw, rawpy, flip: int, max_pixels: int, min_preview: int) -> Image.Image | None:
    """The embedded preview, upright, if there is one at least `min_preview` on its shorter side."""
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    except rawpy.LibRawError:
        return None  # a damaged preview: the sensor data may still be fine
    if thumb.format == rawpy.ThumbFormat.JPEG:
        try:
            img = decode_bytes(thumb.data, max_pixels=max_pixels, draft_size=min_preview)
        except ImageError:
            return None
        oriented = _has_orientation(thumb.data)  # decode_bytes applied the JPEG's own EXIF orientation
    else:
        img, oriented = Image.fromarray(np.asarray(thumb.data, np.uint8)).convert("RGB"), False
    if min(img.info.get(FULL_SIZE, img.size)) < min_preview:
        return None
    return img if oriented or flip not in _FLIPS else img.transpose(_FLIPS[flip])


def _has_orientation(jpeg: bytes) -> bool:
    import io

    try:
        with Image.open(io.BytesIO(jpeg)) as im:
            return im.getexif().get(_EXIF_ORIENTATION, 1) != 1
    except Exception:  # noqa: BLE001 -- an unreadable EXIF block: treat as absent
        return False


def _text(e: BaseException) -> str:
    msg = e.args[0] if e.args else e
    return msg.decode(errors="replace") if isinstance(msg, bytes) else str(msg)
