"""What the app loads once and shares across reruns and sessions: model, index, thumbnails."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from clipsearch import Encoder, Index, Matcher, Searcher, Settings, load_encoder, open_index
from clipsearch.files import display_path
from clipsearch.manifest import FILENAME
from clipsearch.roots import Roots
from clipsearch.thumbnail import THUMBNAIL_DIR, Thumbnails


@dataclass(frozen=True)
class Resources:
    """The collaborators a page needs, joined."""

    index: Index
    encoder: Encoder
    searcher: Searcher
    matcher: Matcher  # the one query path: the CLI's `query` runs the same
    thumbs: Thumbnails
    roots: Roots
    info: dict  # Index.info() and the failed files, taken when the index was opened


def load(root: Path, settings: Settings) -> Resources:
    """The shared resources for the index at `root`; ClipSearchError if there is none or it is unusable."""
    idx, info = _index(str(root), _stamp(root))
    enc = _encoder(idx.identity.model, idx.identity.pretrained, settings.device)
    thumbs = Thumbnails(root / THUMBNAIL_DIR, settings.thumbnail_px, settings.max_pixels)
    searcher = Searcher(enc, idx, settings.max_pixels)
    return Resources(idx, enc, searcher, _matcher(searcher), thumbs, Roots(idx.manifest.roots), info)


def reload() -> None:
    """Forget the opened indexes (the model stays loaded)."""
    _index.clear()


@st.cache_resource(show_spinner="Loading the CLIP model…", max_entries=2)
def _encoder(model: str, pretrained: str, device: str) -> Encoder:
    return load_encoder(model, pretrained, device)


@st.cache_resource(show_spinner=False, max_entries=2, hash_funcs={Searcher: id})
def _matcher(searcher: Searcher) -> Matcher:
    return Matcher(searcher)  # encodes the calibration prompts once per index


@st.cache_resource(show_spinner="Opening the index…", max_entries=2)
def _index(root: str, stamp: int) -> tuple[Index, dict]:
    # `stamp` is in the key so that a re-run of `clipsearch index` (which rewrites the manifest)
    # is picked up on the next rerun without restarting the app.
    idx = open_index(root)
    info = idx.info()  # loads the ANN index now, not in the first query
    info["failed"] = [{"path": display_path(f.path), "reason": f.reason}
                      for f in sorted(idx.failures.all(), key=lambda f: f.path)]
    return idx, info


def _stamp(root: Path) -> int:
    try:
        return (root / FILENAME).stat().st_mtime_ns
    except OSError:
        return 0  # open_index reports what is wrong
