"""Runs `clipsearch.add_paths` with a pool of decoding processes and a progress bar."""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator

from clipsearch import Encoder, Index, Settings, Summary, add_paths


def run(index: Index, encoder: Encoder, roots: list[str], settings: Settings = Settings(),
        progress: bool = True) -> Summary:
    """Index `roots` into `index`, decoding in `settings.workers` processes (0: one per spare core)."""
    workers = settings.workers or default_workers()
    bar = _bar(progress)
    try:
        if workers <= 1:
            return add_paths(index, encoder, roots, settings, on_progress=bar)
        ctx = multiprocessing.get_context("spawn")  # no fork: the parent holds torch threads
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            window = max(4 * encoder.batch_size, 8 * workers)
            return add_paths(index, encoder, roots, settings, on_progress=bar,
                             decode_map=lambda fn, xs: bounded_map(pool, fn, xs, window))
    finally:
        bar(None, None)


def default_workers() -> int:
    """Decoding processes: every core but the one the encoder's thread feeds from."""
    return max(1, (os.cpu_count() or 1) - 1)


def bounded_map(pool, fn: Callable, items: Iterable, window: int) -> Iterator:
    """Like `pool.map`, in order, but with at most `window` items in flight (bounded memory)."""
    pending = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _bar(enabled: bool):
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

            state["bar"] = tqdm(total=total, unit="img", desc="indexing", leave=False)
        state["bar"].update(done - state["bar"].n)

    return update
