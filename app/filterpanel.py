"""The sidebar's filters (date range, camera, place, folder, type), the sort toggle, and the
timeline of matching photos per month whose bars narrow the date range when clicked."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

import numpy as np
import streamlit as st

from clipsearch.collection import Collection
from clipsearch.index import Index
from clipsearch.media.kinds import KINDS
from clipsearch.store.filters import Filter, make_filter

ANY = "any"
OLDEST = date(1826, 1, 1)  # the first photograph: the date picker's floor when the index has no dates
DATES, TIMELINE = "dates", "timeline"  # session-state keys


def sidebar_filters(index: Index) -> tuple[Filter, str]:
    """The filter and the sort order ("score" or "date") the sidebar's widgets ask for."""
    st.header("Filters")
    first, last = date_span(index.images)
    if DATES not in st.session_state:
        st.session_state[DATES] = ()  # any date; the timeline's clicks set it too (_on_pick)
    picked = st.date_input("Taken between", min_value=first or OLDEST, max_value=max(last or date.today(), date.today()), key=DATES,
                           help="Pick the first and the last day; clear it for any date.")
    camera = st.text_input("Camera", key="camera", placeholder="canon, pixel 7 …")
    place = st.text_input("Place", key="place", placeholder="city, region or country")
    folders = [ANY, *index.manifest.roots]
    folder = st.selectbox("Folder", folders, key="folder")
    kind = st.selectbox("Type", [ANY, *KINDS], key="kind")
    sort = st.radio("Sort", ["score", "date"], key="sort", horizontal=True,
                    help="Best match first, or newest first (of the best matches)")
    where = make_filter(camera=camera.strip() or None, place=place.strip() or None,
                        folders=[] if folder == ANY else [folder], kind=None if kind == ANY else kind)
    return with_range(where, picked), sort


def with_range(where: Filter, picked) -> Filter:
    """`where` narrowed to the picked (first day, last day), both included; a half-picked range is ignored."""
    if not picked or len(picked) != 2:
        return where
    start, end = picked
    return where.with_dates(datetime(start.year, start.month, start.day),
                            datetime(end.year, end.month, end.day) + timedelta(days=1))


def timeline(images: Collection, where: Filter) -> None:
    """A bar chart of the images `where` lets through (its dates aside) per month; a click on a bar
    narrows the date range to that month."""
    import altair as alt

    counts = month_counts(images, replace(where, after=None, before=None))
    if not counts:
        return
    pick = alt.selection_point(name="month", fields=["month"])
    chart = (alt.Chart({"values": counts}).mark_bar()
             .encode(x=alt.X("month:T", title=None, timeUnit="yearmonth"), y=alt.Y("photos:Q", title="photos"),
                     tooltip=[alt.Tooltip("month:T", timeUnit="yearmonth", title="month"), "photos:Q"])
             .add_params(pick).properties(height=120))
    st.altair_chart(chart, on_select=_on_pick, key=TIMELINE, selection_mode="month", width="stretch")


def month_counts(images: Collection, where: Filter) -> list[dict]:
    """[{"month": "2023-07-01", "photos": n}] for the months in which images `where` lets through were taken."""
    t = images.columns(["taken"])
    if "taken" not in t.column_names:
        return []
    keep = np.isin(t["id"].to_numpy(), images.matching(where)) if where else np.ones(t.num_rows, bool)
    taken = t["taken"].to_numpy(zero_copy_only=False)[keep]
    months = taken[~np.isnat(taken)].astype("datetime64[M]")
    values, n = np.unique(months, return_counts=True)
    return [{"month": f"{v}-01", "photos": int(c)} for v, c in zip(values, n)]


def month_range(picked: dict) -> tuple[date, date] | None:
    """The first and last day of the month a timeline selection event names; None if none."""
    points = ((picked or {}).get("selection") or {}).get("month") or []
    if not points or "month" not in points[0]:
        return None
    value = points[0]["month"]  # Vega-Lite sends a time as epoch milliseconds
    day = (datetime.utcfromtimestamp(value / 1000) if isinstance(value, (int, float))
           else datetime.fromisoformat(str(value)[:10])).date()
    first = day.replace(day=1)
    return first, (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def _on_pick() -> None:
    picked = month_range(st.session_state.get(TIMELINE))
    if picked:
        st.session_state[DATES] = picked


def date_span(images: Collection) -> tuple[date | None, date | None]:
    """The first and last day any indexed image was taken (None, None when unknown)."""
    t = images.columns(["taken"])
    if "taken" not in t.column_names or t.num_rows == 0:
        return None, None
    taken = t["taken"].to_numpy(zero_copy_only=False)
    taken = taken[~np.isnat(taken)]
    if not len(taken):
        return None, None
    return (taken.min().astype("datetime64[D]").item(), taken.max().astype("datetime64[D]").item())
