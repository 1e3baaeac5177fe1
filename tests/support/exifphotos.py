"""Writing JPEGs with chosen EXIF tags (Pillow's Image.Exif), for the metadata and filter tests."""

from __future__ import annotations

import os
from datetime import datetime
from fractions import Fraction

from PIL import Image

MTIME_2020 = datetime(2020, 5, 6, 7, 8, 9).timestamp()


def exif_jpeg(path, *, when=None, offset=None, make=None, model=None, lens=None, gps=None,
              orientation=None, size=(40, 20), img: Image.Image | None = None, mtime=MTIME_2020) -> str:
    """Save `img` (else a flat `size` image) as a JPEG at `path` with these EXIF tags; mtime `mtime`.

    gps: ((lat_degrees, "N"|"S"), (lon_degrees, "E"|"W")).
    """
    ex = Image.Exif()
    for tag, value in ((0x010F, make), (0x0110, model), (0x0112, orientation)):
        if value:
            ex[tag] = value
    sub = ex.get_ifd(0x8769)
    for tag, value in ((0x9003, when), (0x9011, offset), (0xA434, lens)):
        if value:
            sub[tag] = value
    if gps:
        (lat, lat_ref), (lon, lon_ref) = gps
        g = ex.get_ifd(0x8825)
        g[1], g[2], g[3], g[4] = lat_ref, dms(lat), lon_ref, dms(lon)
    (img or Image.new("RGB", size, (90, 120, 200))).save(path, "JPEG", exif=ex, quality=95)
    os.utime(path, (mtime, mtime))
    return str(path)


def dms(deg: float) -> tuple[Fraction, Fraction, Fraction]:
    d = int(deg)
    m = int((deg - d) * 60)
    return Fraction(d), Fraction(m), Fraction(round(((deg - d) * 60 - m) * 60 * 100), 100)


# name: (folder, colour, shape, EXIF)
PHOTOS = {
    "paris": ("trips", "red", "circle", dict(when="2023:07:14 12:00:00", offset="+02:00", make="Canon",
                                             model="Canon EOS R5", gps=((48.8566, "N"), (2.3522, "E")))),
    "sydney": ("trips", "blue", "square", dict(when="2023:07:20 09:30:00", make="Google", model="Pixel 7",
                                               gps=((33.8688, "S"), (151.2093, "E")))),
    "nyc": ("home", "green", "triangle", dict(when="2019:03:02 18:00:00", make="Canon", model="PowerShot G7",
                                              gps=((40.7128, "N"), (74.0060, "W")))),
    "garden": ("home", "yellow", "star", dict(when="2019:08:09 10:00:00")),
    "rio": ("home", "red", "square", dict(when="2021:12:25 20:00:00", make="Apple", model="iPhone 12",
                                          gps=((22.9068, "S"), (43.1729, "W")))),
    "scan": ("home/old", "blue", "circle", {}),  # no EXIF: mtime 2020-05-06
}
BIG = "paris"  # 320x240, the others 64x64
