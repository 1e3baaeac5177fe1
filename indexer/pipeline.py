"""Runs `clipsearch.add_paths` with a pool of decoding processes and a progress bar."""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from itertools import islice
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
            # Files go to the workers in chunks: one task per file costs the parent ~2x the CPU
            # per image, which caps a GPU run; a chunk still leaves every worker a share of a batch.
            chunk = max(1, min(16, encoder.batch_size // (2 * workers)))
            window = max(4 * encoder.batch_size, 8 * workers * chunk) // chunk
            return add_paths(index, encoder, roots, settings, on_progress=bar,
                             decode_map=lambda fn, xs: bounded_map(pool, fn, xs, window, chunk))
    finally:
        bar(None, None)


def default_workers() -> int:
    """Decoding processes: every core but the one the encoder's thread feeds from."""
    return max(1, (os.cpu_count() or 1) - 1)


def bounded_map(pool, fn: Callable, items: Iterable, window: int, chunk: int = 1) -> Iterator:
    """Like `pool.map`, in order, with at most `window` tasks of `chunk` items in flight (bounded memory)."""
    pending = deque()
    it = iter(items)
    while group := list(islice(it, chunk)):
        pending.append(pool.submit(_map_list, fn, group))
        if len(pending) >= window:
            yield from pending.popleft().result()
    while pending:
        yield from pending.popleft().result()


def _map_list(fn: Callable, items: list) -> list:
    return [fn(x) for x in items]


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
