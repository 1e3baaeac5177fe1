"""Tiny DNG files written from an RGB picture, for RAW tests (importable without pytest).

The picture is mosaicked through an RGGB Bayer filter into 12-bit sensor values (a real RAW's
data), optionally with an embedded JPEG preview in IFD0 and the sensor data in a SubIFD, as
cameras and Adobe's converter lay them out. A minimal little-endian TIFF writer does the rest.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

_TYPES = {"B": (1, "B"), "A": (2, "s"), "H": (3, "H"), "L": (4, "I"), "R": (5, "II"), "SR": (10, "ii")}


def mosaic(img: Image.Image) -> np.ndarray:
    """(H, W) uint16 RGGB Bayer samples, 12-bit, of an RGB image (linear: sRGB gamma undone)."""
    a = (np.asarray(img.convert("RGB"), np.float64) / 255) ** 2.2 * 4095
    out = np.empty(a.shape[:2], np.uint16)
    out[0::2, 0::2], out[0::2, 1::2] = a[0::2, 0::2, 0], a[0::2, 1::2, 1]
    out[1::2, 0::2], out[1::2, 1::2] = a[1::2, 0::2, 1], a[1::2, 1::2, 2]
    return out


def write_dng(path: Path, img: Image.Image, *, orientation: int = 1, preview: Image.Image | None = None,
              make: str = "Clipsearch") -> None:
    """A DNG of `img` (sides even) with EXIF `orientation`; `preview` embedded as a JPEG if given."""
    raw = mosaic(img)
    h, w = raw.shape
    sensor = [(254, "L", [0]), (256, "L", [w]), (257, "L", [h]), (258, "H", [16]), (259, "H", [1]),
              (262, "H", [32803]), (277, "H", [1]), (278, "L", [h]), (284, "H", [1]),
              (33421, "H", [2, 2]), (33422, "B", [0, 1, 1, 2]), (50714, "L", [0]), (50717, "L", [4095])]
    camera = [(271, "A", make), (272, "A", "Test"), (274, "H", [orientation]),
              (50706, "B", [1, 4, 0, 0]), (50707, "B", [1, 1, 0, 0]), (50708, "A", f"{make} Test"),
              (50721, "SR", [(1, 1), (0, 1), (0, 1), (0, 1), (1, 1), (0, 1), (0, 1), (0, 1), (1, 1)]),
              (50728, "R", [(1, 1), (1, 1), (1, 1)]), (50778, "H", [21])]
    blobs = [raw.astype("<u2").tobytes()]
    if preview is None:
        ifds = [(sensor + camera, 0, None)]
    else:
        buf = io.BytesIO()
        preview.convert("RGB").save(buf, "JPEG", quality=95)
        blobs.append(buf.getvalue())
        pw, ph = preview.size
        head = [(254, "L", [1]), (256, "L", [pw]), (257, "L", [ph]), (258, "H", [8, 8, 8]), (259, "H", [7]),
                (262, "H", [6]), (277, "H", [3]), (278, "L", [ph])]
        ifds = [(head + camera, 1, 1), (sensor, 0, None)]  # IFD0: preview, pointing to the sensor's SubIFD
    Path(path).write_bytes(_tiff(ifds, blobs))


def _tiff(ifds, blobs: list[bytes]) -> bytes:
    """Header, the strips, then the IFDs: ifds[i] = (entries, blob index, SubIFD index or None)."""
    out = bytearray(b"II*\x00\x00\x00\x00\x00")
    offsets = []
    for b in blobs:
        offsets.append(len(out))
        out += b + b"\0" * (len(b) % 2)
    placed: dict[int, int] = {}
    for i in reversed(range(len(ifds))):  # SubIFDs first: their parents point at them
        entries, blob, sub = ifds[i]
        extra = [(273, "L", [offsets[blob]]), (279, "L", [len(blobs[blob])])]
        if sub is not None:
            extra.append((330, "L", [placed[sub]]))
        placed[i] = len(out)
        out += _ifd(sorted(entries + extra), len(out))
    struct.pack_into("<I", out, 4, placed[0])
    return bytes(out)


def _ifd(entries, at: int) -> bytes:
    data_at = at + 2 + 12 * len(entries) + 4
    table, data = struct.pack("<H", len(entries)), b""
    for tag, kind, values in entries:
        code, fmt = _TYPES[kind]
        if kind == "A":
            raw, count = values.encode() + b"\0", len(values) + 1
        else:
            flat = [x for v in values for x in (v if isinstance(v, tuple) else (v,))]
            raw, count = struct.pack("<" + fmt[0] * len(flat), *flat), len(values)
        if len(raw) <= 4:
            table += struct.pack("<HHI", tag, code, count) + raw.ljust(4, b"\0")
        else:
            table += struct.pack("<HHII", tag, code, count, data_at + len(data))
            data += raw + b"\0" * (len(raw) % 2)
    return table + struct.pack("<I", 0) + data
