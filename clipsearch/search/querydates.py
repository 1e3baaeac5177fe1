"""Dates typed into a text query: "beach July 2023" -> search "beach" among photos taken in July 2023.

The dates are found by `dateparser` (search_dates, then the period it read: day, week, month or
year). Its matches are kept only when they are clearly dates -- they hold a year ("in 2019",
"July 2023") or a relative word ("last month", "3 years ago") -- so that "may flowers" or "march
of the penguins" stay words. Seasons, which dateparser doesn't read, are "summer 2021" or
"last/this summer" (meteorological seasons of the northern hemisphere: summer = June-August).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

_YEAR = r"(?:18|19|20)\d\d"
_HAS_YEAR = re.compile(rf"\b{_YEAR}\b")
_RELATIVE = re.compile(r"\b(?:ago|last|this|yesterday|today)\b", re.I)
#: What a query must hold for dateparser to find a date we keep (a year or a relative word, see
#: `_dateparser`); without it dateparser isn't even imported (~0.3 s of a cold query).
_MAY_HOLD_DATE = re.compile(rf"{_YEAR}|ago|last|this|yesterday|today", re.I)
_TRAILING = re.compile(r"\s+(?:(?:taken|shot|photographed)(?:\s+(?:in|on|from|during))?|in|on|from|during|of|at)$", re.I)
_SEASONS = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12}  # first month
_SEASON = re.compile(rf"\b(?:(last|this)\s+({'|'.join(_SEASONS)})|({'|'.join(_SEASONS)})\s+(?:of\s+)?({_YEAR}))\b", re.I)


@dataclass(frozen=True)
class QueryDate:
    """A query split into its words and the date range it named: taken in [after, before)."""

    text: str  # the query without the date words ("beach")
    after: datetime
    before: datetime
    said: str  # the range in words, for the message: "July 2023"

    def message(self) -> str:
        return f"searching {self.text!r} taken in {self.said}"


def split_date(query: str, today: date | None = None) -> QueryDate | None:
    """The date range named in `query` and the rest of it; None when it names none (or is only a date)."""
    today = today or date.today()
    found = _season(query, today) or (_dateparser(query, today) if _MAY_HOLD_DATE.search(query) else None)
    if found is None:
        return None
    span, after, before, said = found
    rest = _strip(query[:span[0]]) + " " + query[span[1]:]
    rest = " ".join(rest.split())
    return QueryDate(rest, after, before, said) if rest else None


def _season(query: str, today: date):
    m = _SEASON.search(query)
    if not m:
        return None
    which, name, year = (m[1] or "").lower(), (m[2] or m[3]).lower(), m[4]
    first = _SEASONS[name]
    if year:
        y = int(year)
    else:  # "this": the season of this year; "last": the latest one already over
        y = today.year
        if which == "last":
            end = _add_months(datetime(y, first, 1), 3).date()
            y -= 1 if end > today else 0
    after = datetime(y, first, 1)
    return m.span(), after, _add_months(after, 3), f"{name} {y}" if name != "winter" else f"winter {y}-{y + 1}"


def _dateparser(query: str, today: date):
    from dateparser.date import DateDataParser
    from dateparser.search import search_dates

    base = datetime(today.year, today.month, today.day, 12)
    settings = {"PREFER_DATES_FROM": "past", "RELATIVE_BASE": base}
    for said, _ in search_dates(query, languages=["en"], settings=settings) or ():
        if not (_HAS_YEAR.search(said) or _RELATIVE.search(said)):
            continue  # a bare "may", "march" or "sunday" is more likely a word
        data = DateDataParser(languages=["en"], settings=settings).get_date_data(said)
        if data.date_obj is None:
            continue
        start = query.find(said)
        after, before = _period(data.date_obj, data.period)
        return (start, start + len(said)), after, before, _words(after, data.period)
    return None


def _period(d: datetime, period: str) -> tuple[datetime, datetime]:
    day = datetime(d.year, d.month, d.day)
    if period == "year":
        return datetime(d.year, 1, 1), datetime(d.year + 1, 1, 1)
    if period == "month":
        return datetime(d.year, d.month, 1), _add_months(datetime(d.year, d.month, 1), 1)
    if period == "week":
        monday = day - timedelta(days=day.weekday())
        return monday, monday + timedelta(days=7)
    return day, day + timedelta(days=1)


def _words(after: datetime, period: str) -> str:
    if period == "year":
        return f"{after:%Y}"
    if period == "month":
        return f"{after:%B %Y}"
    if period == "week":
        return f"the week of {after:%Y-%m-%d}"
    return f"{after:%Y-%m-%d}"


def _add_months(d: datetime, n: int) -> datetime:
    m = d.month - 1 + n
    return datetime(d.year + m // 12, m % 12 + 1, 1)


def _strip(text: str) -> str:
    return _TRAILING.sub("", text.strip())
