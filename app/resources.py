"""What the app loads once and shares across reruns and sessions: model, index, thumbnails."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from clipsearch import Index, Matcher, ModelIdentity, Settings, load_encoder, open_index
from clipsearch.config import default_cache_dir
from clipsearch.media.files import display_path
from clipsearch.store.manifest import FILENAME
from clipsearch.models.queryencoder import QueryEncoder, query_encoder
from clipsearch.store.roots import Roots
from clipsearch.media.thumbnail import THUMBNAIL_DIR, Thumbnails


@dataclass(frozen=True)
class Resources:
    """The collaborators a page needs, joined."""

    index: Index
    encoder: QueryEncoder  # texts through the exported text tower; the model loads for image queries
    matcher: Matcher  # the one query path: the CLI's `query` runs the same
    thumbs: Thumbnails
    roots: Roots
    info: dict  # Index.info() and the failed files, taken when the index was opened


def load(root: Path, settings: Settings) -> Resources:
    """The shared resources for the index at `root`; ClipSearchError if there is none or it is unusable."""
    stamp = _stamp(root)
    idx, info = _index(str(root), stamp)
    matcher = _search(str(root), stamp, settings.device, settings.max_pixels, settings.duplicate_threshold)
    thumbs = Thumbnails(root / THUMBNAIL_DIR, settings.thumbnail_px, settings.max_pixels)
    return Resources(idx, matcher.encoder, matcher, thumbs, Roots(idx.manifest.roots), info)


def reload() -> None:
    """Forget the opened indexes (the model stays loaded)."""
    _index.clear()
    _search.clear()


@st.cache_resource(show_spinner="Loading the CLIP model…", max_entries=2)
def _encoder(model: str, pretrained: str, dim: int, fingerprint: str, device: str) -> QueryEncoder:
    return query_encoder(ModelIdentity(model, pretrained, dim, fingerprint), default_cache_dir(),
                         lambda: load_encoder(model, pretrained, device))


@st.cache_resource(show_spinner=False, max_entries=2)
def _search(root: str, stamp: int, device: str, max_pixels: int, duplicate_threshold: float) -> Matcher:
    """Keyed by values, so that every rerun of the page finds them: the Matcher encodes the
    calibration prompts once per index, not per query."""
    idx, _ = _index(root, stamp)
    m = idx.identity
    return Matcher(_encoder(m.model, m.pretrained, m.dim, m.fingerprint, device), idx,
                   max_pixels=max_pixels, duplicate_threshold=duplicate_threshold)


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
