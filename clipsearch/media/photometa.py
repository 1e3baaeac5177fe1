"""A photo's metadata from its EXIF block and its file: when, with what camera, where, what kind.

Pure functions of an opened Pillow image (`read_meta`) or of a file's header (`read_header`: the
EXIF block of an image or a TIFF-based RAW, a video container's tags; no pixel is decoded). A
damaged or missing EXIF block costs the fields it holds, never the photo.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, fields, replace
from datetime import datetime

from PIL import Image

from clipsearch.media.kinds import PHOTO, RAW, VIDEO, file_kind

#: Where `taken` came from: the EXIF block, a video container's tags, the file's mtime. The words
#: are stored in the `taken_source` column and printed by --json, so they stay as they are.
SOURCE_EXIF, SOURCE_VIDEO_TAGS, SOURCE_MTIME = "exif", "video", "mtime"

# EXIF tags (CIPA DC-008): IFD0, the Exif sub-IFD and the GPS sub-IFD.
_MAKE, _MODEL, _ORIENTATION = 0x010F, 0x0110, 0x0112
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATETIME_ORIGINAL, _DATETIME_DIGITIZED = 0x9003, 0x9004
_OFFSET_ORIGINAL, _OFFSET_DIGITIZED = 0x9011, 0x9012
_LENS_MAKE, _LENS_MODEL = 0xA433, 0xA434
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4
_ROTATED = frozenset({5, 6, 7, 8})  # orientations that swap width and height
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")
# What a damaged EXIF block raises from Pillow's parser.
_EXIF_ERRORS = (OSError, ValueError, SyntaxError, struct.error, KeyError, IndexError, TypeError,
                ZeroDivisionError, UnicodeDecodeError, AttributeError)


@dataclass(frozen=True)
class PhotoMeta:
    """What a photo's file says about it; None where it says nothing."""

    taken: datetime | None = None  # local wall-clock time where it was taken (naive)
    taken_offset: str | None = None  # its UTC offset, "+02:00", when EXIF records one
    taken_source: str | None = None  # a SOURCE_*; None: not read yet (a row from before schema 3)
    camera_make: str | None = None
    camera_model: str | None = None
    lens: str | None = None
    lat: float | None = None  # degrees, north positive
    lon: float | None = None  # degrees, east positive
    city: str | None = None  # from the offline gazetteer (places.py), filled in at commit time
    region: str | None = None
    country: str | None = None
    kind: str | None = None  # media.kinds: PHOTO, RAW or VIDEO
    folder: str | None = None

    @property
    def camera(self) -> str | None:
        """"Make Model", without the make repeated when the model already starts with it."""
        make, model = self.camera_make or "", self.camera_model or ""
        if make and model.lower().startswith(make.split()[0].lower()):
            make = ""
        return " ".join(p for p in (make, model) if p) or None

    @property
    def place(self) -> str | None:
        """"City, Region, Country" (the parts known)."""
        return ", ".join(p for p in (self.city, self.region, self.country) if p) or None

    def to_dict(self) -> dict:
        """JSON-ready: `taken` as ISO 8601 with its offset when known."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["taken"] = self.taken.isoformat() + (self.taken_offset or "") if self.taken else None
        return d | {"camera": self.camera, "place": self.place}


FIELDS = tuple(f.name for f in fields(PhotoMeta))


def read_meta(img: Image.Image, path: str, mtime: float) -> PhotoMeta:
    """The metadata of `path`, whose image `img` is already open (decoded or not); `mtime` is the
    fallback for the time taken."""
    return _with_file(_from_exif(_exif(img)), path, mtime, file_kind(path) or PHOTO)


def read_header(path: str, mtime: float | None = None) -> tuple[PhotoMeta, tuple[int, int] | None]:
    """(metadata, pixel size after orientation) from the header only; size None if Pillow can't open
    it (a video, most RAW formats). `mtime` None: the file's own. Picklable, for a process pool."""
    try:
        mtime = os.stat(path).st_mtime if mtime is None else mtime
    except OSError:
        return PhotoMeta(), None
    kind = file_kind(path) or PHOTO  # a file judged by Pillow alone: a photo if anything
    if kind == VIDEO:
        return _with_file(_from_video(path), path, mtime, kind), None
    if kind == RAW:  # most RAWs are TIFF inside, with a sensor Pillow can't open: read the tags only
        return _with_file(_from_exif(_tiff_exif(path)), path, mtime, kind), None
    from clipsearch.media.image import readable_formats

    try:
        with Image.open(path, formats=readable_formats()) as img:
            exif = _exif(img)
            w, h = img.size
    except (*_EXIF_ERRORS, Image.DecompressionBombError):
        return _with_file(PhotoMeta(), path, mtime, kind), None
    rotated = _get(exif, _ORIENTATION) in _ROTATED
    meta = _with_file(_from_exif(exif), path, mtime, kind)
    return meta, (h, w) if rotated else (w, h)


def parse_exif_time(value, offset=None) -> tuple[datetime | None, str | None]:
    """("2023:07:14 12:30:05", "+02:00") -> (naive datetime, "+02:00"); (None, None) if unreadable."""
    text = _text(value)
    if not text:
        return None, None
    text = text.replace("-", ":", 2) if re.match(r"^\d{4}-\d{2}-\d{2}", text) else text
    try:
        taken = datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        try:  # date only, as some scanners write it
            taken = datetime.strptime(text[:10], "%Y:%m:%d")
        except ValueError:
            return None, None
    m = _OFFSET.match(_text(offset) or "")
    return taken, (f"{m[1]}{m[2]}:{m[3]}" if m else None)


def dms_to_degrees(dms, ref) -> float | None:
    """EXIF GPS (degrees, minutes, seconds) rationals and "N"/"S"/"E"/"W" -> signed degrees."""
    try:
        d, m, s = (float(x) for x in dms)
    except (*_EXIF_ERRORS, OverflowError):
        return None
    value = d + m / 60 + s / 3600
    ref = (_text(ref) or "").upper()[:1]
    return -value if ref in ("S", "W") else value


# --- internals ----------------------------------------------------------------------------------


def _with_file(meta: PhotoMeta, path: str, mtime: float, kind: str) -> PhotoMeta:
    """The file's own fields, and its mtime (local time of this machine) when EXIF has no time."""
    meta = replace(meta, kind=kind, folder=os.path.dirname(os.path.abspath(path)))
    if meta.taken is None:
        try:
            meta = replace(meta, taken=datetime.fromtimestamp(mtime).replace(microsecond=0),
                           taken_source=SOURCE_MTIME)
        except (OverflowError, OSError, ValueError):  # an mtime out of the platform's range
            pass
    return meta


def _from_video(path: str) -> PhotoMeta:
    """A video container's tags: Apple's local creation date and ISO 6709 location when present,
    else the UTC `creation_time` most cameras and phones write."""
    try:
        import av

        with av.open(os.fspath(path), metadata_errors="ignore") as c:
            tags = {k.lower(): v for k, v in {**c.metadata, **(c.streams[0].metadata if c.streams else {})}.items()}
    except Exception:  # noqa: BLE001 -- any decoder error on an untrusted file: no tags
        return PhotoMeta()
    taken, offset = _iso_time(tags.get("com.apple.quicktime.creationdate") or tags.get("creation_time"))
    m = re.match(r"^([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)",
                 tags.get("com.apple.quicktime.location.iso6709") or tags.get("location") or "")
    lat, lon = (float(m[1]), float(m[2])) if m else (None, None)
    ok = lat is not None and abs(lat) <= 90 and abs(lon) <= 180 and (lat, lon) != (0, 0)
    return PhotoMeta(taken=taken, taken_offset=offset, taken_source=SOURCE_VIDEO_TAGS if taken else None,
                     camera_make=_text(tags.get("com.apple.quicktime.make") or tags.get("make")),
                     camera_model=_text(tags.get("com.apple.quicktime.model") or tags.get("model")),
                     lat=lat if ok else None, lon=lon if ok else None)


def _iso_time(text) -> tuple[datetime | None, str | None]:
    """"2023-07-14T12:00:00+0200" -> (local naive time, "+02:00"); a "Z" time stays UTC, "+00:00"."""
    try:
        t = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None, None
    if t.year <= 1904:  # 1904-01-01: QuickTime's zero, written by cameras without a clock
        return None, None
    offset = t.strftime("%z")
    return t.replace(tzinfo=None, microsecond=0), (f"{offset[:3]}:{offset[3:]}" if offset else None)


def _tiff_exif(path: str, head: int = 1 << 20):
    """The EXIF tags of a TIFF-based RAW (DNG, NEF, CR2, ARW, PEF ...) from its first `head` bytes."""
    exif = Image.Exif()
    try:
        with open(path, "rb") as f:
            data = f.read(head)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            exif.load(data)
    except (*_EXIF_ERRORS, OverflowError):
        return Image.Exif()
    return exif


def _exif(img: Image.Image):
    try:
        return img.getexif()
    except _EXIF_ERRORS:
        return Image.Exif()


def _from_exif(exif) -> PhotoMeta:
    sub, gps = _ifd(exif, _EXIF_IFD), _ifd(exif, _GPS_IFD)
    taken, offset = parse_exif_time(_get(sub, _DATETIME_ORIGINAL), _get(sub, _OFFSET_ORIGINAL))
    if taken is None:
        taken, offset = parse_exif_time(_get(sub, _DATETIME_DIGITIZED), _get(sub, _OFFSET_DIGITIZED))
    lat = dms_to_degrees(_get(gps, _GPS_LAT), _get(gps, _GPS_LAT_REF))
    lon = dms_to_degrees(_get(gps, _GPS_LON), _get(gps, _GPS_LON_REF))
    valid = lat is not None and lon is not None and abs(lat) <= 90 and abs(lon) <= 180 and (lat, lon) != (0, 0)
    return PhotoMeta(
        taken=taken, taken_offset=offset, taken_source=SOURCE_EXIF if taken else None,
        camera_make=_text(_get(exif, _MAKE)), camera_model=_text(_get(exif, _MODEL)),
        lens=_text(_get(sub, _LENS_MODEL)) or _text(_get(sub, _LENS_MAKE)),
        lat=lat if valid else None, lon=lon if valid else None)


def _ifd(exif, tag: int) -> dict:
    try:
        return dict(exif.get_ifd(tag))
    except _EXIF_ERRORS:
        return {}


def _get(d, tag: int):
    try:
        return d.get(tag)
    except _EXIF_ERRORS:
        return None


def _text(value) -> str | None:
    """An EXIF ASCII value as clean text (NULs and padding stripped); None if empty or not text."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", " ").strip()
    return value or None
