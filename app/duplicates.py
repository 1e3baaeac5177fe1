"""The Duplicates page: the groups of `clipsearch dupes`, side by side, the suggested keeper first."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from clipsearch import ClipSearchError, DuplicateGroup, Index, Settings, find_duplicates
from clipsearch.media.files import display_path

from clipsearch.app.resources import Resources

COLUMNS = 6  # images of a group to a row
PAGE = 20  # groups drawn at a time


@st.cache_resource(show_spinner="Looking for duplicates…", max_entries=4, hash_funcs={Index: id})
def _groups(index: Index, version: int, threshold: float) -> list[DuplicateGroup]:
    # `version` is in the key: a re-run of `clipsearch index` gives new groups
    return find_duplicates(index, threshold)


def page(res: Resources, settings: Settings) -> None:
    """Threshold slider, then the groups, largest first, PAGE at a time."""
    threshold = st.slider("Threshold (cosine to a group's seed)", 0.80, 1.0, settings.duplicate_threshold, 0.005,
                          key="dupe_threshold", help="Higher: only near-identical copies. "
                          f"Default {settings.duplicate_threshold}, as `clipsearch dupes`.")
    groups = _groups(res.index, res.index.images.version, threshold)
    if not groups:
        st.info("no duplicates at this threshold")
        return
    extra = sum(len(g) - 1 for g in groups)
    st.caption(f"{len(groups)} groups, {extra} images beyond the keepers. Nothing is deleted here: "
               "`clipsearch dupes --link-dir DIR` makes a folder of symlinks to review them in a viewer.")
    pages = (len(groups) + PAGE - 1) // PAGE
    first = (st.number_input("Page", 1, pages, 1, key="dupe_page") - 1) * PAGE if pages > 1 else 0
    for n, group in enumerate(groups[first:first + PAGE], first + 1):
        st.subheader(f"Group {n}: {len(group)} images ({group.kind})")
        st.text(f"keep the first: {group.reason}")
        members = list(group.members)
        for start in range(0, len(members), COLUMNS):
            for col, member in zip(st.columns(COLUMNS), members[start:start + COLUMNS]):
                with col:
                    _cell(member, member is group.keeper, res)


def _cell(member, keeper: bool, res: Resources) -> None:
    shown = display_path(member.path)
    label = "keep" if keeper else f"{member.similarity:.3f}"
    try:  # only files inside the indexed folders are shown, as thumbnail bytes
        data = res.thumbs.get(res.roots.resolve(member.path))
    except ClipSearchError as e:
        st.warning(f"can't show this file: {e}")
    else:
        st.image(data, caption=f"{label} · {member.width}x{member.height}", alt=Path(shown).name, width="stretch")
    st.text(shown)
