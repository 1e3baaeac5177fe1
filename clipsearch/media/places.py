"""Place names for GPS positions, offline: the GeoNames gazetteer bundled with `reverse_geocoder`.

The nearest of GeoNames' cities of 1000+ people (k-d tree, ~1 s to load once per process) gives
the city and its first-level region; the country name comes from `pycountry` (ISO 3166).
"""

from __future__ import annotations

import functools
from dataclasses import replace

from clipsearch.media.photometa import PhotoMeta


def name_places(metas: list[PhotoMeta]) -> list[PhotoMeta]:
    """`metas` with city, region and country filled in where they have a GPS position (one batch lookup)."""
    todo = [n for n, m in enumerate(metas) if m.lat is not None and m.lon is not None]
    if not todo:
        return metas
    found = _geocoder().query([(metas[n].lat, metas[n].lon) for n in todo])
    out = list(metas)
    for n, g in zip(todo, found):
        out[n] = replace(out[n], city=g.get("name") or None, region=g.get("admin1") or None,
                         country=country_name(g.get("cc", "")))
    return out


def with_places(rows: list) -> list:
    """Store rows (`.meta` PhotoMeta or None) with their place names filled in."""
    metas = name_places([r.meta or PhotoMeta() for r in rows])
    return [replace(r, meta=m) if r.meta else r for r, m in zip(rows, metas)]


def country_name(code: str) -> str | None:
    """ISO 3166 alpha-2 -> its common name ("GB" -> "United Kingdom"); the code itself if unknown."""
    if not code:
        return None
    import pycountry

    c = pycountry.countries.get(alpha_2=code.upper())
    return (getattr(c, "common_name", None) or c.name) if c else code


@functools.cache
def _geocoder():
    """Loaded once per process, on first use (single-threaded mode: no process pool of its own)."""
    import reverse_geocoder

    return reverse_geocoder.RGeocoder(mode=1, verbose=False)
