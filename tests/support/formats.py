"""Writers of a shape image in every raster format clipsearch reads (importable without pytest).

`WRITERS[name] = (suffix, write(img, path))`: Pillow writes most; PSD, FLI, XPM and FITS, which
Pillow only reads, are written here byte by byte from their specifications' simplest forms.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pillow_jxl  # noqa: F401  (registers the JPEG XL writer)
from PIL import Image


def _save(fmt: str, mode: str | None = None, **kw):
    def write(img: Image.Image, path: Path):
        (img.convert(mode) if mode else img).save(path, fmt, **kw)
    return write


def _mpo(img: Image.Image, path: Path):
    second = Image.new("RGB", img.size, (0, 0, 0))  # the second frame must not be the one read
    img.save(path, "MPO", save_all=True, append_images=[second], quality=95)


def _tiff_pages(img: Image.Image, path: Path):
    img.save(path, "TIFF", save_all=True, append_images=[Image.new("RGB", img.size, (0, 0, 0))])


def _psd(img: Image.Image, path: Path):
    """Photoshop, RGB 8-bit, no layers, raw merged image data (planar)."""
    w, h = img.size
    a = np.asarray(img.convert("RGB"))
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, h, w, 8, 3)
    body = struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0)  # no colour data, resources, layers; raw
    path.write_bytes(header + body + b"".join(a[:, :, c].tobytes() for c in range(3)))


def _fli(img: Image.Image, path: Path):
    """Autodesk FLI: one frame of a 256-colour palette chunk and an uncompressed (FLI_COPY) chunk."""
    p = img.convert("RGB").quantize(256)
    w, h = p.size
    pal = (p.getpalette() + [0] * 768)[:768]
    colour = struct.pack("<HBB", 1, 0, 0) + bytes(pal)  # 1 packet: skip 0, 256 colours
    chunks = [(4, colour), (16, p.tobytes())]
    sub = b"".join(struct.pack("<IH", 6 + len(d), t) + d for t, d in chunks)
    frame = struct.pack("<IHH8x", 16 + len(sub), 0xF1FA, len(chunks)) + sub
    head = struct.pack("<IHHHHHHI", 128 + len(frame), 0xAF12, 1, w, h, 8, 3, 70).ljust(128, b"\0")
    path.write_bytes(head + frame)


def _xpm(img: Image.Image, path: Path):
    p = img.convert("RGB").quantize(64)
    w, h = p.size
    keys = [chr(c) for c in range(48, 48 + 64)]  # one printable character a colour
    pal = p.getpalette()[: 64 * 3]
    lines = [f'"{w} {h} 64 1",'] + [
        f'"{keys[i]} c #{pal[3 * i]:02X}{pal[3 * i + 1]:02X}{pal[3 * i + 2]:02X}",' for i in range(64)]
    px = np.asarray(p)
    lines += ['"' + "".join(keys[v] for v in row) + '",' for row in px]
    path.write_text("/* XPM */\nstatic char *image[] = {\n" + "\n".join(lines) + "\n};\n")


def _fits(img: Image.Image, path: Path):
    """FITS, 8-bit greyscale (FITS stores rows bottom-up)."""
    a = np.asarray(img.convert("L"))[::-1]
    cards = ["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    2",
             f"NAXIS1  = {a.shape[1]:20d}", f"NAXIS2  = {a.shape[0]:20d}", "END"]
    head = "".join(c.ljust(80) for c in cards).encode()
    data = a.tobytes()
    path.write_bytes(head.ljust(-(-len(head) // 2880) * 2880, b" ") + data.ljust(-(-len(data) // 2880) * 2880, b"\0"))


def _pgm16(img: Image.Image, path: Path):
    Image.fromarray(np.asarray(img.convert("L"), np.uint16) * 257).save(path, "PPM")


def _tga_alpha(img: Image.Image, path: Path):
    rgba = img.convert("RGBA")
    rgba.putalpha(255)
    rgba.save(path, "TGA")


#: name -> (suffix, writer). Each gives back the image (colour or grey) up to lossy coding.
WRITERS = {
    "tga": (".tga", _save("TGA")),
    "tga-rgba": (".tga", _tga_alpha),
    "dds": (".dds", _save("DDS")),
    "sgi": (".sgi", _save("SGI")),
    "ppm": (".ppm", _save("PPM")),
    "pgm": (".pgm", _save("PPM", "L")),
    "pgm-16bit": (".pgm", _pgm16),
    "pbm": (".pbm", _save("PPM", "1")),
    "eps": (".eps", _save("EPS")),
    "blp": (".blp", _save("BLP", "P")),
    "psd": (".psd", _psd),
    "fli": (".fli", _fli),
    "ico": (".ico", _save("ICO")),
    "pcx": (".pcx", _save("PCX")),
    "icns": (".icns", _save("ICNS")),
    "xpm": (".xpm", _xpm),
    "qoi": (".qoi", _save("QOI")),
    "fits": (".fits", _fits),
    "jp2": (".jp2", _save("JPEG2000")),
    "j2k": (".j2k", _save("JPEG2000")),
    "jxl": (".jxl", _save("JXL", lossless=True)),
    "mpo": (".mpo", _mpo),
    "tiff-pages": (".tif", _tiff_pages),
}
GREY = {"pgm", "pgm-16bit", "pbm", "fits"}  # written without colour
LOSSY = {"mpo", "blp", "fli", "xpm", "pbm", "dds"}  # palette, 1-bit, DXT or JPEG: near, not equal
