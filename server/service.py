"""The service: one index served, with its model loaded once, behind whatever speaks HTTP.

Queries go through the one query method (`Matcher.run`), so the same words give the same answers as
`clipsearch query` and the UI. Query images in algebra words must lie inside the indexed folders (as
in the UI): a request reads no other file of the server's. The index and its matcher are rebuilt by
`Live` when other processes commit; everything here is safe to call from many threads at once.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from clipsearch.config import Settings
from clipsearch.errors import InputError
from clipsearch.index import Index
from clipsearch.media.thumbnail import THUMBNAIL_DIR, Thumbnails
from clipsearch.search.algebra import IMAGE, Term, parse_query
from clipsearch.search.calibration import Calibrator
from clipsearch.search.classify import Classifier
from clipsearch.search.matcher import Answer, Matcher, Request
from clipsearch.server.live import Live, index_stamp
from clipsearch.server.problems import Problem
from clipsearch.server.textcache import TextCache
from clipsearch.store.records import Row
from clipsearch.store.roots import Roots

#: OpenMP threads of a FAISS search. A server's parallelism is across requests: one query's search
#: needs one core, and an OpenMP team per query spins against the other requests' threads. Flat
#: search of 20k vectors on a loaded 2-core machine: 14 ms per request on 1 thread, 95 ms on 2.
FAISS_THREADS = 1
#: Files a browser shows as they are; anything else (RAW, HEIC, TIFF, a video's frame) is sent as a JPEG.
BROWSER_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif", ".bmp"})


@dataclass(frozen=True)
class State:
    """What one opening of the index gives: the index, its matcher, the folders it may show."""

    index: Index
    matcher: Matcher
    roots: Roots
    images: int  # how many, counted once: /health must not read the table


class Service:
    """An index (`open_index()`, reopened live) and an encoder (text encodings cached)."""

    def __init__(self, encoder, open_index: Callable[[], Index], root: Path, settings: Settings, *,
                 name: str, allow_url_fetch: bool = False):
        import faiss

        faiss.omp_set_num_threads(FAISS_THREADS)
        self.settings, self.name, self.allow_url_fetch, self.root = settings, name, allow_url_fetch, root
        self.encoder = TextCache(encoder, settings.text_cache_size)
        self.calibrator = Calibrator(self.encoder)
        self.thumbs = Thumbnails(root / THUMBNAIL_DIR, settings.thumbnail_px, settings.max_pixels)
        self.live = Live(lambda: self._open(open_index()), lambda: index_stamp(root), settings.live_poll_s)

    def _open(self, index: Index) -> State:
        matcher = Matcher(self.encoder, index, self.calibrator, max_pixels=self.settings.max_pixels,
                          duplicate_threshold=self.settings.duplicate_threshold)
        probe = np.zeros((1, index.identity.dim), np.float32)
        for coll in [index.images, *(index.texts(n) for n in index.text_names())]:
            coll.search(probe, 1)  # loads the ANN index and the rows now, not in someone's query
        return State(index, matcher, Roots(index.manifest.roots), len(index))

    @property
    def state(self) -> State:
        return self.live.current

    @property
    def dim(self) -> int:
        return self.state.index.identity.dim

    # --- queries ------------------------------------------------------------------------------

    def run(self, request: Request) -> Answer:
        """`Matcher.run` on the current state, with k bounded for a shared server."""
        if not 1 <= request.k <= self.settings.serve_max_k:
            raise Problem(422, f"k must be between 1 and {self.settings.serve_max_k} (got {request.k})")
        if request.texts is not None and request.texts != "" and request.texts not in self.state.index.text_names():
            raise Problem(404, f"no text collection {request.texts!r}: GET /info lists them")
        return self.state.matcher.run(request)

    def terms(self, query: str) -> list[Term]:
        """Algebra words -> terms; an image term must name a file inside the indexed folders."""
        roots = self.state.roots
        terms = parse_query(query)
        try:
            return [Term(IMAGE, str(roots.resolve(t.value)), t.weight) if t.kind == IMAGE else t for t in terms]
        except InputError as e:
            raise Problem(403, f"{e}; or upload the image as `image` (base64)") from e

    def embed(self, img) -> np.ndarray:
        """(D,) unit vector of a decoded query image."""
        return self.state.matcher.embed(img)

    def embed_text(self, text: str) -> np.ndarray:
        """(D,) unit vector of one literal text (no algebra, no dates)."""
        return self.encoder.encode_texts([text])[0]

    def stored_vector(self, image_id: int) -> np.ndarray:
        """(D,) stored vector of an indexed image; Problem 404 if there is none."""
        xb = self.state.index.images.vectors_of(np.array([image_id], np.int64))
        if not np.any(xb[0]):
            raise Problem(404, f"no image {image_id} in the index: ids come from search results")
        return xb[0]

    def embedding(self, values: list[float]) -> np.ndarray:
        """(D,) unit vector of a client's embedding; Problem 400 unless it has this model's dim."""
        x = np.asarray(values, np.float64).reshape(-1)
        if len(x) != self.dim:
            raise Problem(400, f"the embedding has {len(x)} numbers; this index's model "
                               f"({self.state.index.identity.model}) makes {self.dim}")
        norm = float(np.linalg.norm(x)) if np.all(np.isfinite(x)) else math.nan
        if not norm > 0:
            raise Problem(400, "the embedding must be finite and not all zeros")
        return (x / norm).astype(np.float32)

    def classify(self, v: np.ndarray, labels: list[str], templates: list[str] | None) -> dict[str, float]:
        """label -> probability for a (D,) image vector, most likely first (zero-shot, as `classify`)."""
        classifier = Classifier(self.encoder, labels, *([templates] if templates else []))
        return classifier.predict([""], np.asarray(v, np.float32)[None, :])[0].probs

    # --- the indexed files ----------------------------------------------------------------------

    def row(self, image_id: int) -> Row:
        row = self.state.index.images.rows([image_id]).get(image_id)
        if row is None:
            raise Problem(404, f"no image {image_id} in the index: ids come from search results")
        return row

    def file_of(self, row: Row) -> Path:
        """The real path of an indexed image's file; Problem 404 unless it lies inside the indexed
        folders, or is the very file the row names, reached through no symlink (an `index` run
        records a new folder among the roots only when it ends, and its rows are answered before)."""
        real = Path(os.path.realpath(row.path))
        if real not in self.state.roots and real != Path(os.path.abspath(row.path)):
            raise Problem(404, f"image {row.id} is not shown: its file now leads outside the indexed folders")
        if not real.is_file():
            raise Problem(404, f"the file of image {row.id} is gone: run `clipsearch index` to update the index")
        return real

    def picture(self, row: Row, px: int) -> bytes:
        """JPEG bytes of an indexed image (a video's frame) at most `px` on its longest side."""
        path = self.file_of(row)
        maker = self.thumbs if px == self.settings.thumbnail_px else Thumbnails(None, px, self.settings.max_pixels)
        return maker.get(path, row.time_s)

    def info(self) -> dict:
        index = self.state.index
        return {"name": self.name, "images": self.state.images, "model": index.identity.to_dict(),
                "ann": index.images.info()["ann"], "texts": {n: len(index.texts(n)) for n in index.text_names()},
                "generation": self.live.generation, "reload_error": self.live.error,
                "text_cache": {"hits": self.encoder.hits, "misses": self.encoder.misses,
                               "batches": self.encoder.batches}}


def describe_query(query) -> str | None:
    """An understood query as text: its words, or its terms joined with their signs and weights."""
    if query is None or isinstance(query, str):
        return query
    if query and isinstance(query[0], Term):
        out = ""
        for t in query:
            sign = "-" if t.weight < 0 else "+"
            w = "" if abs(t.weight) == 1 else f"{abs(t.weight):g}:"
            out += f" {sign} {w}{t.value}" if out or sign == "-" else f"{w}{t.value}"
        return out.strip()
    return " ".join(query)

