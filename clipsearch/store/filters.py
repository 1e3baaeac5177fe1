"""What a search may return: a Filter over the images' metadata columns (when, where, which camera,
which folder, what kind, how big), evaluated with pyarrow compute -- never as SQL text, so any
value a user types is data and only ever matches or doesn't.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from datetime import datetime

import numpy as np

from clipsearch.errors import InputError
from clipsearch.media.kinds import KINDS

SORTS = ("score", "date")
#: --near without a radius: within this many km.
NEAR_KM = 10.0
_EARTH_KM = 6371.0088
_DATE = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")


@dataclass(frozen=True)
class Filter:
    """Conditions an image must meet, all of them; None: no condition. `taken` is local time."""

    after: datetime | None = None  # taken at or after
    before: datetime | None = None  # taken before (exclusive)
    camera: str | None = None  # in "make model" or lens, any case
    place: str | None = None  # in city, region or country, any case
    near: tuple[float, float, float] | None = None  # (lat, lon, km)
    folders: tuple[str, ...] = ()  # under one of these
    kind: str | None = None  # one of media.kinds.KINDS
    min_size: tuple[int, int] | None = None  # (width, height), after orientation

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def columns(self) -> list[str]:
        """The table columns `mask` reads."""
        cols = {"after": ["taken"], "before": ["taken"], "camera": ["camera_make", "camera_model", "lens"],
                "place": ["city", "region", "country"], "near": ["lat", "lon"], "folders": ["path"],
                "kind": ["kind"], "min_size": ["width", "height"]}
        return sorted({c for f in fields(self) if getattr(self, f.name) for c in cols[f.name]})

    def mask(self, t) -> np.ndarray:
        """(N,) bool: which rows of the pyarrow Table `t` (with `columns()`) pass; a missing value fails."""
        import pyarrow as pa
        import pyarrow.compute as pc

        ok = pa.scalar(True)
        if self.after:
            ok = pc.and_(ok, pc.greater_equal(t["taken"], pa.scalar(self.after, pa.timestamp("s"))))
        if self.before:
            ok = pc.and_(ok, pc.less(t["taken"], pa.scalar(self.before, pa.timestamp("s"))))
        if self.camera:
            ok = pc.and_(ok, _any_contains(t, ("camera_make", "camera_model", "lens"), self.camera))
        if self.place:
            ok = pc.and_(ok, _any_contains(t, ("city", "region", "country"), self.place))
        if self.folders:
            prefixes = [f.rstrip(os.sep) + os.sep for f in self.folders]
            ok = pc.and_(ok, _or(pc.starts_with(t["path"], p) for p in prefixes))
        if self.kind:
            ok = pc.and_(ok, pc.equal(t["kind"], pa.scalar(self.kind, pa.string())))
        if self.min_size:
            ok = pc.and_(ok, pc.and_(pc.greater_equal(t["width"], self.min_size[0]),
                                     pc.greater_equal(t["height"], self.min_size[1])))
        out = np.asarray(pc.fill_null(ok, False)) if isinstance(ok, (pa.Array, pa.ChunkedArray)) else None
        out = np.full(t.num_rows, bool(ok.as_py())) if out is None else out.astype(bool)
        if self.near:
            out &= _within_km(t["lat"], t["lon"], *self.near)
        return out

    def describe(self) -> str:
        """A phrase for messages: "taken 2023-07-01 to 2023-07-31, camera 'pixel'"."""
        parts = []
        if self.after or self.before:
            parts.append(describe_dates(self.after, self.before))
        for name in ("camera", "place", "kind"):
            if getattr(self, name):
                parts.append(f"{name} {getattr(self, name)!r}")
        if self.near:
            parts.append(f"within {self.near[2]:g} km of {self.near[0]:g},{self.near[1]:g}")
        if self.folders:
            parts.append(f"in {self.folders[0]}")
        if self.min_size:
            parts.append(f"at least {self.min_size[0]}x{self.min_size[1]}")
        return ", ".join(parts)

    def with_dates(self, after: datetime | None, before: datetime | None) -> Filter:
        """This filter narrowed to [after, before) as well."""
        a = max((d for d in (self.after, after) if d), default=None)
        b = min((d for d in (self.before, before) if d), default=None)
        return replace(self, after=a, before=b)


def describe_dates(after: datetime | None, before: datetime | None) -> str:
    last = before and (before - _ONE_SECOND)
    if after and before:
        return f"taken {after:%Y-%m-%d} to {last:%Y-%m-%d}"
    return f"taken on or after {after:%Y-%m-%d}" if after else f"taken on or before {last:%Y-%m-%d}"


# --- parsing option values -------------------------------------------------------------------------


def date_bounds(text: str) -> tuple[datetime, datetime]:
    """"2023" | "2023-07" | "2023-07-14" -> [start, end) of that year, month or day; InputError if not."""
    m = _DATE.match(text.strip())
    try:
        if not m:
            raise ValueError(text)
        y, mo, d = int(m[1]), int(m[2] or 1), int(m[3] or 1)
        start = datetime(y, mo, d)
        if m[3]:
            return start, datetime.fromordinal(start.toordinal() + 1)
        if m[2]:
            return start, datetime(y + mo // 12, mo % 12 + 1, 1)
        return start, datetime(y + 1, 1, 1)
    except ValueError as e:
        raise InputError(f"{text!r} is not a date: write 2023, 2023-07 or 2023-07-14") from e


def parse_near(text: str) -> tuple[float, float, float]:
    """"LAT,LON[,KM]" -> (lat, lon, km); InputError if not."""
    try:
        parts = [float(p) for p in text.split(",")]
        if len(parts) not in (2, 3):
            raise ValueError(text)
        lat, lon, km = parts[0], parts[1], parts[2] if len(parts) == 3 else NEAR_KM
        if not (-90 <= lat <= 90 and -180 <= lon <= 180 and km > 0):
            raise ValueError(text)
    except ValueError as e:
        raise InputError(f"--near {text!r}: write LAT,LON or LAT,LON,KM, e.g. 48.85,2.35,5") from e
    return lat, lon, km


def parse_size(text: str) -> tuple[int, int]:
    """"WxH" -> (w, h); InputError if not."""
    m = re.match(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$", text)
    if not m:
        raise InputError(f"--min-size {text!r}: write WIDTHxHEIGHT in pixels, e.g. 1920x1080")
    return int(m[1]), int(m[2])


def make_filter(*, after=None, before=None, camera=None, place=None, near=None, folders=(), kind=None,
                min_size=None) -> Filter:
    """A Filter from option strings as typed (dates, "LAT,LON[,KM]", "WxH"); InputError on a bad one."""
    if kind is not None and kind not in KINDS:
        raise InputError(f"--type {kind!r}: use one of {', '.join(KINDS)}")
    roots = tuple(sorted({p for f in folders for p in (os.path.abspath(os.path.expanduser(f)),
                                                       os.path.realpath(os.path.expanduser(f)))}))
    return Filter(after=date_bounds(after)[0] if after else None, before=date_bounds(before)[1] if before else None,
                  camera=camera or None, place=place or None, near=parse_near(near) if near else None,
                  folders=roots, kind=kind, min_size=parse_size(min_size) if min_size else None)


# --- internals ----------------------------------------------------------------------------------

_ONE_SECOND = datetime(2000, 1, 1, 0, 0, 1) - datetime(2000, 1, 1)


def _any_contains(t, columns, needle: str):
    import pyarrow as pa
    import pyarrow.compute as pc

    # match_substring takes the needle literally (not a regex, not SQL)
    return _or(pc.fill_null(pc.match_substring(t[c].cast(pa.string()), needle, ignore_case=True), False)
               for c in columns)


def _or(arrays):
    import pyarrow.compute as pc

    out = None
    for a in arrays:
        out = a if out is None else pc.or_(out, a)
    return out


def _within_km(lat, lon, lat0: float, lon0: float, km: float) -> np.ndarray:
    """Haversine distance <= km; rows without a position fail."""
    la = np.radians(np.asarray(lat.to_numpy(zero_copy_only=False), np.float64))
    lo = np.radians(np.asarray(lon.to_numpy(zero_copy_only=False), np.float64))
    la0, lo0 = np.radians(lat0), np.radians(lon0)
    h = np.sin((la - la0) / 2) ** 2 + np.cos(la) * np.cos(la0) * np.sin((lo - lo0) / 2) ** 2
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(2 * _EARTH_KM * np.arcsin(np.sqrt(np.clip(h, 0, 1))), nan=np.inf) <= km
