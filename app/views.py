"""How the page draws things: the results grid, the index panel, the image -> text panel.

Only image bytes reach `st.image`, never a path; file names and paths are shown with `st.text`
(no Markdown), so a crafted file name can't inject links or formatting.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Callable

import streamlit as st

from clipsearch import ClipSearchError, Hit, Match
from clipsearch.models.ocr import Line
from clipsearch.media.files import display_path
from clipsearch.media.video import timestamp

from clipsearch.app import zeroshot
from clipsearch.app.resources import Resources

COLUMNS = 5
START = "Type a description, or drop an image, to search."
_log = logging.getLogger("clipsearch.app")
EMPTY_INDEX = "the index is empty: add photos with `clipsearch index FOLDER`, then press Reload"
BOX_COLOUR = (255, 196, 0)  # the matched line's box: amber, seen on light and dark pictures alike


def guarded(fn: Callable, *args, **kwargs):
    """fn(*args, **kwargs), or None after showing its error as a one-line message (never a traceback)."""
    try:
        return fn(*args, **kwargs)
    except ClipSearchError as e:
        st.error(str(e))
    except Exception as e:  # a bug: say so plainly; Streamlit's own control flow is BaseException
        _log.exception("unexpected error")  # the traceback goes to the server's terminal only
        st.error(f"unexpected error ({type(e).__name__}: {e}); the details are in the terminal "
                 "running clipsearch ui: please report it")
    return None


def grid(matches: list[Match], res: Resources, on_like: Callable[[int, str], None]) -> None:
    """Thumbnails with score and path, best first, COLUMNS to a row, each with a 'Similar' button."""
    for start in range(0, len(matches), COLUMNS):
        for col, match in zip(st.columns(COLUMNS), matches[start:start + COLUMNS]):
            with col:
                _cell(match, res, on_like)


def _cell(match: Match, res: Resources, on_like: Callable[[int, str, float | None], None]) -> None:
    hit = match.hit
    shown = display_path(hit.path)  # a name that isn't UTF-8 can't travel to the browser as it is
    at = "" if hit.time_s is None else f"@{timestamp(hit.time_s)}"
    try:
        data = res.thumbs.get(res.roots.resolve(hit.path), hit.time_s)
    except ClipSearchError as e:
        st.warning(f"can't show this file: {e}")
    else:
        if match.lines:
            data = with_boxes(data, match.lines)
        st.image(data, caption=f"{hit.score:.3f}", alt=Path(shown).name + at, width="stretch")
        if match.calibrated is not None:
            st.caption(f"calibrated {match.calibrated:.2f}")
        if match.group and match.group > 1:
            st.caption(f"+{match.group - 1} near-duplicates")
    st.text(shown + at)
    for line in match.lines[:3]:  # the words that matched, as read in the picture (text: untrusted)
        st.text(f"“{line.text}”")
    when_where = taken_and_place(hit)
    if when_where:
        st.text(when_where)  # text, not Markdown: EXIF strings are untrusted too
    st.button("Similar", key=f"like-{hit.id}", on_click=on_like, args=(hit.id, hit.path, hit.time_s),
              help="Search for images like this one")
    if hit.time_s is not None and st.toggle(f"Play from {timestamp(hit.time_s)}", key=f"play-{hit.id}"):
        play(hit, res)


def with_boxes(jpeg: bytes, lines: list[Line] | tuple[Line, ...]) -> bytes:
    """PNG bytes of the thumbnail `jpeg` with the boxes of `lines` drawn on it (they are fractions
    of the picture's sides, and a thumbnail is the whole picture scaled). PNG: JPEG's halved colour
    resolution would smear a thin coloured line into the picture."""
    from PIL import Image, ImageDraw

    img = Image.open(io.BytesIO(jpeg)).convert("RGB")
    pen = ImageDraw.Draw(img)
    width = max(3, round(max(img.size) / 80))
    for line in lines:
        corners = [tuple(p) for p in line.corners(img.width, img.height)]
        pen.line([*corners, corners[0]], fill=BOX_COLOUR, width=width, joint="curve")
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def play(hit: Hit, res: Resources) -> None:
    """The video of a frame, playing from the frame's moment (the file is checked to lie inside
    the indexed folders, as thumbnails are, and served by Streamlit, never linked by its path)."""
    try:
        real = res.roots.resolve(hit.path)
    except ClipSearchError as e:
        st.warning(f"can't play this file: {e}")
        return
    st.video(str(real), start_time=int(hit.time_s))


def taken_and_place(hit: Hit) -> str:
    """"2023-07-14 · Paris, Ile-de-France, France" (what is known), "" when nothing is."""
    m = hit.meta
    if m is None:
        return ""
    return " · ".join(p for p in (m.taken and f"{m.taken:%Y-%m-%d}", m.place) if p)


def index_panel(info: dict, identity_text: str) -> None:
    """What the index holds: count, model, ANN type, roots, failed files."""
    st.header("Index")
    st.metric("Images", info["images"])
    roots = "\n".join(f"  {r}" for r in info["roots"]) or "  -"
    st.text(f"model: {identity_text}\nANN:   {info['ann']}\nroots:\n{roots}\n"
            f"on disk: {info['bytes_on_disk'] / 1e6:.3g} MB\ndirectory: {info['index']}")
    failed = info["failed"]
    if not failed:
        st.text("failed files: none")
    else:
        with st.expander(f"{len(failed)} files could not be indexed"):
            st.dataframe([{"path": f["path"], "reason": f["reason"]} for f in failed], hide_index=True)


def labels_panel(res: Resources, v, typed: str, k: int) -> None:
    """Zero-shot probabilities of the typed labels for image vector `v`, then the text collections."""
    labels = zeroshot.parse_labels(typed)
    if not labels:
        st.caption("Type a few labels, comma-separated, to see which fits this image best.")
    else:
        ranked = zeroshot.classify(res.encoder, v, labels)
        st.bar_chart({"probability": {r.text: r.probability for r in ranked}}, horizontal=True,
                     x_label="probability", sort="-probability")
        st.text(f"most likely: {ranked[0].text} ({ranked[0].probability:.0%})")
    collections = zeroshot.rank_texts(res.matcher, v, k)
    if not collections:
        st.info(zeroshot.NO_TEXTS)
    for name, ranked_texts in collections.items():
        st.text(f"texts in {name}, best first:")
        st.dataframe([{"text": m.hit.text, "score": round(m.score, 4), "calibrated": round(m.calibrated, 3)}
                      for m in ranked_texts], hide_index=True)
