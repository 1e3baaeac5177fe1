"""Adding folders to an index: scan, work out what changed, decode, encode, commit in groups."""

from __future__ import annotations

import functools
import os
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Callable, Iterable, Iterator

import numpy as np

from .batch import Batch, Failure, decode_file, embed_decoded
from .config import IMAGE_SUFFIXES, Settings
from .errors import InputError
from .files import scan
from .index import Index
from .model import Encoder

COMMIT_EVERY = 2048  # images per table commit: few fragments, little work lost to a crash

DecodeMap = Callable[[Callable, Iterable[str]], Iterator]


@dataclass
class Summary:
    """What an indexing run did."""

    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[Failure] = field(default_factory=list)
    skipped_dirs: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Plan:
    todo: list[str]  # new or changed files, to encode
    changed_ids: list[int]  # rows of changed files, replaced by their new rows
    gone_ids: list[int]  # rows of files no longer on disk
    unchanged: int


def plan(index: Index, paths: list[str], roots: list[str]) -> Plan:
    """Compare files on disk (size, mtime) with the index's rows under `roots`."""
    known = {r.path: r for r in index.images.all_rows()}
    todo, changed, unchanged = [], [], 0
    for p in paths:
        row = known.pop(p, None)
        try:
            st = os.stat(p)
        except OSError:
            st = None  # vanished since the scan: its decode will record why
        if row is not None and st is not None and (row.size, row.mtime) == (st.st_size, st.st_mtime):
            unchanged += 1
            continue
        if row is not None:
            changed.append(row.id)
        todo.append(p)
    under = tuple(r.rstrip(os.sep) + os.sep for r in roots)
    gone = [r.id for r in known.values() if r.path.startswith(under) or r.path in roots]
    return Plan(todo, changed, gone, unchanged)


def add_paths(index: Index, encoder: Encoder, roots: list[str], settings: Settings = Settings(), *,
              decode_map: DecodeMap = map, on_progress: Callable[[int, int], None] | None = None) -> Summary:
    """Index the images under `roots` (new and changed files only) and bring the ANN index up to date.

    `decode_map(fn, paths)` is how files are decoded: the built-in `map` here, a process pool's
    `imap` in the indexer. `on_progress(done, total)` is called after each batch.
    """
    start = time.perf_counter()
    index.check_model(encoder.identity)
    found = scan(roots)
    if not found.paths:
        raise InputError(f"no image files found under {', '.join(map(str, roots))} (looked for "
                         f"{', '.join(sorted(IMAGE_SUFFIXES))}): check the folder")
    resolved = [str(os.path.realpath(r)) for r in roots]
    work = plan(index, found.paths, resolved)
    summary = Summary(unchanged=work.unchanged, skipped_dirs=found.skipped)
    decode = functools.partial(decode_file, preprocess=encoder.preprocess, max_pixels=settings.max_pixels)
    pending = Batch([], np.zeros((0, encoder.dim), np.float32), [])
    with ThreadPoolExecutor(1, thread_name_prefix="clipsearch-writer") as writer:
        write = None  # table writes run beside the encoder, one at a time, in order
        for items in _chunks(decode_map(decode, work.todo), encoder.batch_size):
            _extend(pending, embed_decoded(items, encoder))
            if len(pending.rows) >= COMMIT_EVERY:
                write = _commit(index, pending, summary, writer, write)
            if on_progress:
                on_progress(summary.indexed + len(pending.rows) + len(summary.failed) + len(pending.failures),
                            len(work.todo))
        _commit(index, pending, summary, writer, write).result()
    index.remove(work.changed_ids + work.gone_ids)
    summary.removed = len(work.gone_ids)
    index.sync_ann()
    index.add_roots(resolved)
    summary.seconds = time.perf_counter() - start
    return summary


def _commit(index: Index, pending: Batch, summary: Summary, writer: Executor, last: Future | None) -> Future:
    """Hand the pending records to the writer thread, once its previous write is done; empty `pending`."""
    if last is not None:
        last.result()  # at most one write in flight: ids stay in order, its errors surface here
    write = writer.submit(index.add, pending.rows, pending.vectors)
    summary.indexed += len(pending.rows)
    summary.failed += pending.failures
    pending.rows, pending.failures = [], []
    pending.vectors = pending.vectors[:0]
    return write


def _extend(pending: Batch, batch: Batch) -> None:
    pending.rows += batch.rows
    pending.failures += batch.failures
    pending.vectors = np.concatenate([pending.vectors, batch.vectors])


def _chunks(items: Iterator, n: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(islice(it, n)):
        yield chunk
