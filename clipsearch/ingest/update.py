"""Adding folders to an index: scan, work out what changed, decode, encode, commit in groups.

Crash safety: every step is one LanceDB commit and every order of them is safe to cut short.
New rows go in before the rows they replace go out (a kill between leaves two rows of one path,
and the next run keeps the newer); failure records are replaced whole; the ANN index is derived
and rebuilt when its generation is behind the table. A killed run's committed groups stay, so
the next run encodes only what is still missing.
"""

from __future__ import annotations

import functools
import os
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Callable, Iterator

import numpy as np

from clipsearch.ingest.backfill import backfill_meta
from clipsearch.ingest.batch import Batch, decode_file, embed_decoded, hash_file
from clipsearch.ingest.changes import Changes, find_changes
from clipsearch.ingest.ocr import keep_in_step
from clipsearch.config import Settings
from clipsearch.errors import InputError
from clipsearch.media.files import Scan, display_path, scan, under
from clipsearch.index import Index
from clipsearch.models.encoder import Encoder
from clipsearch.ingest.pool import DecodeMap
from clipsearch.store.skipped import count_types
from clipsearch.store.records import Failure, Row

#: Compact the table (LanceDB optimize) once this many small fragments have piled up.
COMPACT_AT = 64
#: Save the ANN index at least this often during a long run, so readers needn't rebuild it.
ANN_SYNC_EVERY_S = 600.0

Checkpoint = Callable[[str], None]
#: How the files to encode (`Changes.todo`) become committed rows: `encode(index, work, summary,
#: checkpoint)`, committing groups with `commit_group`. In this process by default; the indexer's
#: Ray pipeline passes its own.
Encode = Callable[[Index, Changes, "Summary", Checkpoint], None]


@dataclass
class Summary:
    """What an indexing run did."""

    new: int = 0  # files, a video counting once
    changed: int = 0
    moved: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: list[Failure] = field(default_factory=list)  # this run's failures
    known_failed: int = 0  # failed on an earlier run and not changed since: not retried
    videos: int = 0  # of the new and changed files, videos ...
    frames: int = 0  # ... and the frames sampled from them (a row each)
    skipped_dirs: list[tuple[str, str]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # files that are not images, by type
    notes: list[str] = field(default_factory=list)  # e.g. the ANN index was rebuilt
    text_pending: int = 0  # pictures whose words are not read yet, in an index where some are (ocr.py)
    seconds: float = 0.0

    @property
    def indexed(self) -> int:
        """Files encoded by this run."""
        return self.new + self.changed

    @property
    def images_per_s(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        """JSON-ready; paths that are not valid UTF-8 shown with \\xNN escapes."""
        d = {k: v for k, v in asdict(self).items() if k not in ("failed", "skipped_dirs", "seconds")}
        return d | {
            "indexed": self.indexed, "seconds": round(self.seconds, 3),
            "images_per_s": round(self.images_per_s, 2), "skipped_total": sum(self.skipped.values()),
            "failed": [{"path": display_path(f.path), "reason": f.reason} for f in self.failed],
            "skipped_dirs": [{"path": display_path(p), "reason": r} for p, r in self.skipped_dirs]}


def add_paths(index: Index, encoder: Encoder, roots: list[str], settings: Settings = Settings(), *,
              decode_map: DecodeMap = map, on_progress: Callable[[int, int], None] | None = None,
              checkpoint: Checkpoint = lambda stage: None, encode: Encode | None = None) -> Summary:
    """Index the images under `roots` (new and changed files only) and bring the ANN index up to date.

    `decode_map(fn, paths)` is how files are decoded and hashed: the built-in `map` here, a guarded
    process pool in the indexer. `on_progress(done, total)` is called after each batch;
    `checkpoint(stage)` after each commit (a hook for fault-injection tests); `encode` replaces the
    in-process decode-encode-commit loop (see `Encode`). IndexDirError if another process is
    writing to the index.
    """
    start = time.perf_counter()
    index.check_model(encoder.identity)
    found = scan(roots)
    resolved = [str(os.path.realpath(r)) for r in roots]
    with index.writing():  # upgrades an index of an older schema first
        work = _plan(index, found, resolved, functools.partial(decode_map, hash_file))
        summary = Summary(unchanged=work.unchanged, moved=work.moved, known_failed=len(work.known_failed),
                          skipped_dirs=found.skipped, skipped=count_types(found.not_media))
        summary.removed = _relink(index, work, checkpoint)
        if encode is None:
            decode = functools.partial(decode_file, preprocess=encoder.preprocess, max_pixels=settings.max_pixels,
                                       video=settings.video)
            _encode(index, encoder, work, summary, decode_map(decode, work.todo), settings.commit_every,
                    on_progress, checkpoint)
        else:
            encode(index, work, summary, checkpoint)
        backfilled = backfill_meta(index.images, index.unread, decode_map, settings.commit_every, checkpoint)
        if index.images.fragments() >= COMPACT_AT:
            index.images.compact()
            checkpoint("compacted")
        index.images.sync(checkpoint)
        summary.text_pending = keep_in_step(index)  # the text of removed and changed files goes too
        index.skipped.update(resolved, found.not_media, kept=[p for p, _ in found.skipped])
        index.add_roots(resolved)
        summary.notes = list(index.images.notes) + (
            [f"metadata (dates, cameras, places) read from the headers of {backfilled} older images"]
            if backfilled else [])
    summary.seconds = time.perf_counter() - start
    return summary


def remove_paths(index: Index, paths: list[str]) -> int:
    """Remove the rows and failure records of files at or under `paths`; how many rows went.

    InputError if nothing in the index is there. The files themselves are not touched.
    """
    targets = sorted({t for p in paths for t in (os.path.abspath(os.path.expanduser(p)),
                                                  os.path.realpath(os.path.expanduser(p)))})
    with index.writing():
        ids = [r.id for r in index.images.rows_under(targets)]
        failures = index.failures.all()
        kept = [f for f in failures if not under(f.path, targets)]
        skipped = [p for p, _ in index.skipped.all() if under(p, targets)]
        if not ids and len(kept) == len(failures) and not skipped:
            raise InputError(f"nothing in the index is at or under {', '.join(map(display_path, paths))}: "
                             "`clipsearch info` lists the indexed folders")
        index.images.remove(ids)
        if len(kept) < len(failures):
            index.failures.replace(kept)
        if skipped:
            index.skipped.update(targets, [])
        index.manifest.roots = [r for r in index.manifest.roots if not under(r, targets)]
        index.images.sync()
        keep_in_step(index)
        index.write_manifest()
    return len(ids)


def _plan(index: Index, found: Scan, roots: list[str], hash_many) -> Changes:
    rows = index.images.rows_under(roots)
    if not found.paths and not rows:
        others = ", ".join(f"{t} {n}" for t, n in count_types(found.not_media).items()) or "none"
        raise InputError(f"no image files found under {', '.join(map(display_path, roots))}: no images, "
                         f"RAW photos or videos (other files: {others}); check the folder")
    return find_changes(rows, index.failures.all(), found, roots, hash_many)


def _relink(index: Index, work: Changes, checkpoint: Checkpoint) -> int:
    """Moved and touched files under their new metadata, then gone and stale rows out; how many went."""
    if work.relinked:
        index.images.add(work.relinked, index.images.vectors_of(np.asarray(work.relinked_from, np.int64)))
        checkpoint("relinked")
    index.images.remove(work.relinked_from + work.gone + work.stale)
    if work.failures_dropped:
        index.failures.replace(list(work.failures.values()))  # without retried and gone files
    checkpoint("cleaned")
    return work.removed


def _encode(index: Index, encoder: Encoder, work: Changes, summary: Summary, decoded: Iterator,
            commit_every: int, on_progress, checkpoint: Checkpoint) -> None:
    """Encode `decoded` in batches; commit every `commit_every` files, and once at the end.

    Commits and ANN syncs run in one writer thread, in order and one at a time, while the encoder
    goes on with the next batch: table writes stay off its critical path.
    """
    pending, done, last_sync = Batch([], np.zeros((0, encoder.dim), np.float32), []), 0, time.monotonic()
    with ThreadPoolExecutor(1, thread_name_prefix="clipsearch-writer") as writer:
        write = None
        for items in _chunks(decoded, encoder.batch_size):
            _extend(pending, embed_decoded(items, encoder))
            done += len(items)
            if len(pending.rows) + len(pending.failures) >= commit_every:
                write = _hand_over(writer, write, _commit, index, pending, work, summary, checkpoint)
                pending = Batch([], pending.vectors[:0], [])
            if time.monotonic() - last_sync > ANN_SYNC_EVERY_S:
                write = _hand_over(writer, write, index.images.sync)
                last_sync = time.monotonic()
            if on_progress:
                on_progress(done, len(work.todo))
        _hand_over(writer, write, _commit, index, pending, work, summary, checkpoint).result()


def _hand_over(writer: Executor, last: Future | None, fn: Callable, *args) -> Future:
    """`fn(*args)` in the writer thread once its previous job is done; that job's error surfaces here."""
    if last is not None:
        last.result()
    return writer.submit(fn, *args)


def _commit(index: Index, pending: Batch, work: Changes, summary: Summary, checkpoint: Checkpoint) -> None:
    rows, xb = pending.rows, pending.vectors
    commit_group(index, lambda: index.images.add(rows, xb), rows, pending.failures, work, summary, checkpoint)
    pending.rows, pending.failures = [], []
    pending.vectors = pending.vectors[:0]


def commit_group(index: Index, add_rows: Callable[[], None], rows: list[Row], failures: list[Failure],
                 work: Changes, summary: Summary, checkpoint: Checkpoint) -> None:
    """One group: new rows in (`add_rows`, one commit, of `rows`), failure records replaced, then the
    rows they supersede out. Every cut between these steps is safe. Both ways of writing the rows
    (`Collection.add` here, fragments from Ray's write tasks) fill in place names where the images
    table turns rows into columns, so `add_rows` needn't."""
    if not rows and not failures:
        return
    add_rows()
    checkpoint("added")
    if failures:
        work.failures |= {f.path: f for f in failures}
        index.failures.replace(list(work.failures.values()))
        checkpoint("failures")
    done = {r.path for r in rows}
    index.images.remove([i for p in done | {f.path for f in failures} for i in work.replaced.get(p, ())])
    checkpoint("removed")
    summary.changed += len(done & work.replaced.keys())
    summary.new += len(done - work.replaced.keys())
    frames = [r.path for r in rows if r.time_s is not None]
    summary.videos, summary.frames = summary.videos + len(set(frames)), summary.frames + len(frames)
    summary.failed += failures


def _extend(pending: Batch, batch: Batch) -> None:
    pending.rows += batch.rows
    pending.failures += batch.failures
    pending.vectors = np.concatenate([pending.vectors, batch.vectors])


def _chunks(items: Iterator, n: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(islice(it, n)):
        yield chunk
