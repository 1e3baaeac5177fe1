"""The clipsearch web page: search by text or image, image -> text, and what the index holds.

Run with `clipsearch ui [--index DIR]`, or `streamlit run app/main.py [-- --index DIR]`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

# Absolute imports: Streamlit runs this file as a script, outside its package (installed as clipsearch.app).
from clipsearch import Request, Settings, default_index_dir
from clipsearch.app import duplicates, filterpanel, resources, views
from clipsearch.store.filters import Filter
from clipsearch.app.query import Query, like_query, typed_query, upload_query

TEXT, UPLOAD, LIKE = "text", "upload", "like"  # where the current query comes from
SEARCH, DUPLICATES = "Search", "Duplicates"  # the pages


def index_dir(argv: list[str]) -> Path:
    """`--index DIR` from the script's arguments, else $CLIPSEARCH_INDEX or the per-user default."""
    if "--index" in argv[:-1]:
        return Path(argv[argv.index("--index") + 1]).expanduser().absolute()
    return default_index_dir().absolute()


def current_query(res: resources.Resources, settings: Settings) -> Query | None:
    state = st.session_state
    mode = state.get("mode", TEXT)
    if mode == UPLOAD and state.get("upload") is not None:
        return upload_query(state.upload.getvalue(), state.upload.name, res, settings)
    if mode == LIKE and "like" in state:
        return like_query(*state.like, res)
    text = (state.get("text") or "").strip()
    return typed_query(text, res) if text else None


def _set_mode(mode: str) -> None:
    st.session_state.mode = mode


def _on_upload() -> None:
    _set_mode(UPLOAD if st.session_state.get("upload") is not None else TEXT)


def _on_like(hit_id: int, path: str, time_s: float | None = None) -> None:
    st.session_state.like = (hit_id, path, time_s)
    _set_mode(LIKE)


def sidebar(res: resources.Resources, settings: Settings) -> tuple[int, Filter, str]:
    """The result-count control, the filters and the index panel: (k, filter, sort)."""
    with st.sidebar:
        k = st.slider("Results", 1, 100, settings.top_k, key="k")
        where, sort = filterpanel.sidebar_filters(res.index)
        views.index_panel(res.info, res.index.identity.describe())
        if st.button("Reload", help="Pick up changes made by `clipsearch index`"):
            resources.reload()
            st.rerun()
        st.toggle("Collapse near-duplicates", key="collapse",
                  help="One image per near-duplicate group, with the group's size (query --collapse)")
        return k, where, sort


def results(query: Query, res: resources.Resources, k: int, where: Filter, sort: str) -> None:
    folded = st.session_state.get("collapse", False)
    request = Request(query.terms, query.vector if query.terms is None else None, k=k, where=where or None,
                      sort=sort, collapse=folded, words=query.words)  # the same as `clipsearch query`
    answer = res.matcher.run(request)
    if answer.understood.note:  # as the CLI: dates typed into the words narrow the filter, and it says so
        st.caption(answer.understood.note)
    if answer.understood.words and any(m.lines for m in answer.matches):
        st.caption(f"also looking for {answer.understood.words} in the words read in the pictures")
    found = answer.matches
    filterpanel.timeline(res.index.images, where)
    shown = [m for m in found if m.hit.path in res.roots]
    if len(shown) < len(found):
        st.warning(f"{len(found) - len(shown)} results are outside the indexed folders and are not shown")
    if not shown:
        st.info(f"no results among the images {where.describe()}: loosen the filters" if where
                else "no results: try other words, or another image")
    views.grid(shown, res, _on_like)


def page(settings: Settings) -> None:
    st.set_page_config(page_title="clipsearch", layout="wide")
    st.title("clipsearch")
    res = views.guarded(resources.load, index_dir(sys.argv[1:]), settings)
    if res is None:
        st.stop()
    k, where, sort = sidebar(res, settings)
    if st.sidebar.radio("Page", (SEARCH, DUPLICATES), key="page") == DUPLICATES:
        views.guarded(duplicates.page, res, settings)
        return
    st.text_input("Describe what you are looking for", key="text", on_change=_set_mode, args=(TEXT,),
                  placeholder="a dog playing in the snow")
    st.file_uploader("…or search with an image", type=None, key="upload", on_change=_on_upload,
                     max_upload_size=max(1, settings.upload_max_bytes // 1_000_000))
    if res.info["images"] == 0:
        st.info(views.EMPTY_INDEX)
        return
    query = views.guarded(current_query, res, settings)
    if query is None:
        st.caption(views.START)
        return
    st.subheader(query.title)
    if query.vector is not None:
        left, right = st.columns([1, 3])
        with left:
            st.image(query.preview, caption="query image", width="stretch")
        with right:
            typed = st.text_input("Labels to classify it against (comma-separated)", key="labels",
                                  placeholder="a cat, a dog, a car")
            views.guarded(views.labels_panel, res, query.vector, typed, k)
    views.guarded(results, query, res, k, where, sort)


if __name__ == "__main__":  # Streamlit runs the script as __main__; a spawned worker process
    page(Settings())        # re-imports it as __mp_main__ and must not draw the page again
