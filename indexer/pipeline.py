"""Runs `clipsearch.add_paths` with the guarded decoding pool, a progress bar and test failpoints."""

from __future__ import annotations

import os
import signal
from typing import Callable

from clipsearch import Encoder, Index, Settings, Summary, add_paths
from clipsearch.errors import InputError
from clipsearch.ingest.pool import decoding_map, default_workers

#: Fault injection for tests: "STAGE[:N[:ACTION]]" acts at the N-th (default 1st) checkpoint STAGE
#: of a run (see clipsearch.ingest.update); ACTION is kill (SIGKILL, the default), stop (SIGSTOP) or
#: interrupt (SIGINT, as Ctrl-C).
FAILPOINT_ENV = "CLIPSEARCH_FAILPOINT"
_ACTIONS = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP, "interrupt": signal.SIGINT}


def run(index: Index, encoder: Encoder, roots: list[str], settings: Settings = Settings(),
        progress: bool = True) -> Summary:
    """Index `roots` into `index`, decoding in `settings.workers` processes (0: one per spare core)."""
    bar = _bar(progress)
    try:
        with decoding_map(settings.workers or default_workers(), encoder.batch_size,
                          settings.file_timeout_s) as decode_map:
            return add_paths(index, encoder, roots, settings, on_progress=bar, decode_map=decode_map,
                             checkpoint=failpoint(os.environ.get(FAILPOINT_ENV)))
    finally:
        bar(None, None)


def run_on_ray(index: Index, encoder: Encoder, make_encoder, roots: list[str], settings: Settings = Settings(),
               address: str | None = None, progress: bool = True) -> Summary:
    """`run` with decoding and encoding on the Ray cluster at `address` (see ray_pipeline)."""
    from clipsearch.indexer.ray_pipeline import Cluster
    from clipsearch.indexer.ray_pipeline import run as ray_run

    bar = _bar(progress)
    try:
        return ray_run(index, encoder, make_encoder, roots, settings, Cluster(address), on_progress=bar,
                       checkpoint=failpoint(os.environ.get(FAILPOINT_ENV)))
    finally:
        bar(None, None)


def reindex(index: Index, encoder: Encoder, settings: Settings = Settings(), keep: bool = False,
            progress: bool = True):
    """Move `index` to `encoder`'s model (`clipsearch.ingest.reindex.reindex`), decoding in processes."""
    from clipsearch.ingest.reindex import reindex as reindex_sets

    bar = _bar(progress, "re-encoding")
    try:
        with decoding_map(settings.workers or default_workers(), encoder.batch_size,
                          settings.file_timeout_s) as decode_map:
            return reindex_sets(index, encoder, keep=keep, max_pixels=settings.max_pixels,
                                commit_every=settings.commit_every, decode_map=decode_map,
                                on_progress=bar, checkpoint=failpoint(os.environ.get(FAILPOINT_ENV)))
    finally:
        bar(None, None)


def failpoint(spec: str | None) -> Callable[[str], None]:
    """The checkpoint callback for FAILPOINT_ENV's `spec`; a no-op without one."""
    if not spec:
        return lambda stage: None
    parts = spec.split(":")
    stage, count, action = parts[0], parts[1] if len(parts) > 1 else "1", parts[2] if len(parts) > 2 else "kill"
    if not count.isdigit() or action not in _ACTIONS or len(parts) > 3:
        raise InputError(f"{FAILPOINT_ENV}={spec!r} is not STAGE[:N[:{'|'.join(_ACTIONS)}]]: fix or unset it")
    seen = {"n": 0}

    def checkpoint(at: str) -> None:
        if at == stage:
            seen["n"] += 1
            if seen["n"] == int(count):
                os.kill(os.getpid(), _ACTIONS[action])

    return checkpoint


def _bar(enabled: bool, desc: str = "indexing"):
    """A progress callback `(done, total)`; `(None, None)` closes it."""
    state = {}

    def update(done, total):
        if not enabled:
            return
        if done is None:
            if "bar" in state:
                state["bar"].close()
            return
        if "bar" not in state:
            from tqdm import tqdm

            state["bar"] = tqdm(total=total, unit="img", desc=desc, leave=False)
        state["bar"].update(done - state["bar"].n)

    return update
