"""A hostile photo folder: every kind of odd or broken file a real one holds, mixed with good ones.

`write_corpus(root)` fills `root` and returns what a correct indexer must do with each file:
index it, or record it as failed with a reason containing a given phrase. Importable without pytest.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

from support import clips
from support import dng
from support import formats
from support import shapes

#: The name of a file that only a process without root's read override can't read (see `unreadable`).
UNREADABLE_FILE = "no_read_permission.png"
UNREADABLE_DIR = "locked_folder"


@dataclass
class Corpus:
    """Paths (as os.walk spells them, absolute) -> what must become of them."""

    good: list[str] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)  # path -> phrase its recorded reason contains
    locked_dirs: list[str] = field(default_factory=list)  # must be reported as skipped folders
    locked_files: list[str] = field(default_factory=list)  # inside them: neither indexed nor failed
    not_media: dict[str, str] = field(default_factory=dict)  # path -> type it is skipped as


def write_corpus(root: Path) -> Corpus:
    root.mkdir(parents=True, exist_ok=True)
    out = Corpus()
    for name, write in _GOOD.items():
        path = root / (name if isinstance(name, str) else os.fsdecode(name))
        write(path, len(out.good))
        out.good.append(os.fsdecode(path))
    for name, (write, reason) in _BAD.items():
        write(root / name)
        out.bad[str(root / name)] = reason
    for name, (content, kind) in _NOT_MEDIA.items():
        (root / name).write_bytes(content)
        out.not_media[str(root / name)] = kind
    _postscript(root / "postscript.jpg", out)
    locked = root / UNREADABLE_DIR
    locked.mkdir()
    _shape(locked / "inside.png", 99)
    os.chmod(locked, 0)
    os.chmod(root / UNREADABLE_FILE, 0)
    out.locked_dirs.append(str(locked))
    out.locked_files.append(str(locked / "inside.png"))
    return out


def unlock(root: Path) -> None:
    """Give back the permissions `write_corpus` took away (so that pytest can clean up)."""
    for p in (root / UNREADABLE_DIR, root / UNREADABLE_FILE):
        if p.exists():
            os.chmod(p, 0o755)


# --- good files: each must be indexed -------------------------------------------------------------


def _shape(path: Path, seed: int, fmt: str | None = None, **kw) -> Image.Image:
    colour, shape = shapes.LABELS[seed % len(shapes.LABELS)]
    img = shapes.draw(colour, shape, size=64, seed=1000 + seed)
    img.save(path, fmt, **kw)
    return img


def _converted(mode: str, fmt: str, **kw):
    def write(path: Path, seed: int):
        img = shapes.draw(*shapes.LABELS[seed % len(shapes.LABELS)], size=64, seed=1000 + seed)
        img.convert(mode).save(path, fmt, **kw)
    return write


def _sixteen_bit(path: Path, seed: int):
    grey = np.asarray(_shape_img(seed).convert("L"), np.uint16) * 257
    Image.fromarray(grey).save(path, "PNG")


def _lab(path: Path, seed: int):
    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    ImageCms.applyTransform(_shape_img(seed), to_lab).save(path, "TIFF")


def _palette_transparent(path: Path, seed: int):
    img = _shape_img(seed).quantize(16)
    img.save(path, "PNG", transparency=0)


def _animated(path: Path, seed: int):
    frames = [_shape_img(seed + k) for k in range(3)]
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _exif_rotated(path: Path, seed: int):
    exif = Image.Exif()
    exif[0x0112] = 6
    _shape_img(seed).save(path, "JPEG", exif=exif, quality=90)


def _huge_jpeg(path: Path, seed: int):
    """6000x4000 (24 MP): decoded at 1/8 scale in draft mode; a flat image keeps the file small."""
    Image.new("RGB", (6000, 4000), shapes.COLOURS["blue"]).save(path, "JPEG", quality=50)


def _heic(path: Path, seed: int):
    import pillow_heif

    pillow_heif.from_pillow(_shape_img(seed)).save(path, quality=90)


def _shape_img(seed: int) -> Image.Image:
    return shapes.draw(*shapes.LABELS[seed % len(shapes.LABELS)], size=64, seed=1000 + seed)


def _format(name: str):
    def write(path: Path, seed: int):
        formats.WRITERS[name][1](_shape_img(seed), path)
    return write


def _postscript(path: Path, out: Corpus) -> None:
    """Read through Ghostscript where it is installed, else recorded as needing it."""
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    if shutil.which("gs"):
        out.good.append(str(path))
    else:
        out.bad[str(path)] = "needs Ghostscript"


def _symlink_to_good(path: Path, seed: int):
    path.symlink_to("plain.png")  # indexed under its own name, like any file


_GOOD = {
    "plain.png": lambda p, s: _shape(p, s),
    "plain.jpg": lambda p, s: _shape(p, s, quality=90),
    "really_a_png.jpg": lambda p, s: _shape(p, s, "PNG"),  # wrong extension: detected by content
    "really_a_jpeg.webp": lambda p, s: _shape(p, s, "JPEG"),
    "cmyk.jpg": _converted("CMYK", "JPEG", quality=90),
    "one_bit.png": _converted("1", "PNG"),
    "grey.tif": _converted("L", "TIFF"),
    "sixteen_bit.png": _sixteen_bit,
    "lab.tif": _lab,
    "palette_transparent.png": _palette_transparent,
    "animated.gif": _animated,
    "exif_rotated.jpg": _exif_rotated,
    "huge.jpg": _huge_jpeg,
    "photo.heic": _heic,
    "photo.avif": lambda p, s: _shape(p, s, "AVIF", quality=80),
    "photo.webp": lambda p, s: _shape(p, s, "WEBP", lossless=True),
    "photo.bmp": lambda p, s: _shape(p, s, "BMP"),
    "link_to_good.png": _symlink_to_good,
    "spaces and ünïcödé 😀.png": lambda p, s: _shape(p, s),
    "new\nline.png": lambda p, s: _shape(p, s),
    "-starts-with-dash.png": lambda p, s: _shape(p, s),
    b"latin1_caf\xe9.png": lambda p, s: _shape(p, s),  # not valid UTF-8
    "IMG_0042": lambda p, s: _shape(p, s, "JPEG"),  # no suffix: found by content
    "exported.data": lambda p, s: _shape(p, s, "PNG"),
    **{f"format_{name}{suffix}": _format(name) for name, (suffix, _) in formats.WRITERS.items()
       if name != "eps"},
    "camera.dng": lambda p, s: dng.write_dng(p, _shape_img(s), orientation=6),
    "clip.mp4": lambda p, s: clips.write_video(p, [("red", "circle", 1.0), ("blue", "star", 1.0)]),
    "VID_0001": lambda p, s: clips.write_video(p, [("green", "square", 1.0)], container="matroska"),
}


# --- bad files: each must be recorded as failed, with a reason --------------------------------------


def _bytes(data: bytes):
    return lambda path: path.write_bytes(data)


def _truncated_jpeg(path: Path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128, 3), np.uint8)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def _corrupt_png(path: Path):
    buf = io.BytesIO()
    _shape_img(7).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[60:200] = b"\x00" * 140  # IDAT stream destroyed
    path.write_bytes(bytes(data))


def _bomb(path: Path):
    """A PNG whose header claims 100k x 100k pixels (10 gigapixels) with a few bytes of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))


def _video_bytes(path: Path, container: str | None = None) -> bytes:
    tmp = path.with_name(path.name + ".tmp")
    clips.write_video(tmp, [("red", "circle", 1.0)], container=container or "mp4")
    data = tmp.read_bytes()
    tmp.unlink()
    return data


def _symlink_loop(path: Path):
    other = path.with_name("loop_b.jpg")
    path.symlink_to(other.name)
    other.symlink_to(path.name)


def _fifo(path: Path):
    os.mkfifo(path)  # opening it for reading would block forever


_BAD = {
    "truncated.jpg": (_truncated_jpeg, "truncated"),
    "corrupt.png": (_corrupt_png, "corrupt"),
    "empty.jpg": (_bytes(b""), "not an image"),
    "notes.png": (_bytes(b"shopping list: milk, eggs\n" * 20), "not an image"),
    "page.webp": (_bytes(b"<!doctype html><html><body>hi</body></html>"), "not an image"),
    "bomb.png": (_bomb, "too large"),
    "loop_a.jpg": (_symlink_loop, "can't read"),
    "loop_b.jpg": (lambda p: None, "can't read"),  # made by loop_a's writer
    "dangling.jpg": (lambda p: p.symlink_to("no_such_target.jpg"), "can't read"),
    "pipe.jpg": (_fifo, "not a regular file"),
    "unknown_camera.nef": (lambda p: _shape(p, 4, "TIFF", tiffinfo={271: "NoSuchCamera"}), "unsupported RAW"),
    "cut_short.dng": (lambda p: p.write_bytes(b"II*\x00" + bytes(100)), "RAW"),
    "cut_short.mp4": (lambda p: p.write_bytes(_video_bytes(p)[:1500]), "not a video"),
    "empty.mov": (_bytes(b""), "not a video"),
    "odd_codec.mkv": (lambda p: p.write_bytes(_video_bytes(p, "matroska").replace(b"V_MPEG4/ISO/AVC", b"V_NO/SUCH/CODEC")),
                      "no decoder"),
    UNREADABLE_FILE: (lambda p: _shape(p, 3), "can't read"),
}


# --- files that are not images: each must be counted as skipped, by type ----------------------------

_NOT_MEDIA = {
    "notes.txt": (b"shopping list\n", ".txt"),
    "todo.txt": (b"", ".txt"),
    "report.pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", ".pdf"),
    "archive.zip": (b"PK\x03\x04" + bytes(60), ".zip"),
    "Makefile": (b"all:\n\ttrue\n", "(no suffix)"),
    "song.mp3": (b"ID3\x04\x00" + bytes(60), ".mp3"),
}
