"""Reading the words in indexed pictures: `clipsearch ocr`, and `clipsearch index --ocr` after its images.

Every picture (an image, a video's sampled frame) whose content has no text record yet is decoded,
bounded (a huge image never reaches the detector at full size) and read in worker processes of
its own, one ONNX Runtime thread each: the CLIP rows are never touched, and `index` without
`--ocr` runs no code of this module but `keep_in_step`. What is read is committed in groups, as
indexing commits its rows: a killed run keeps what it committed, and the next run reads only what
is left. A picture that hangs or crashes its reader is recorded with the reason, and not tried
again until its file changes.
"""

from __future__ import annotations

import functools
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from clipsearch.config import OcrSettings, Settings
from clipsearch.errors import ImageError, ModelError
from clipsearch.index import Index
from clipsearch.media.files import display_path, stat_key
from clipsearch.media.picture import load_picture
from clipsearch.models.ocr import TextReader, load_reader
from clipsearch.store.ocr import Reading, picture_key
from clipsearch.store.records import Failure

Checkpoint = Callable[[str], None]
#: How pictures are read: `read_map(jobs)` -> a Reading (or a Failure of its path) per job, in order.
ReadMap = Callable[[Iterable["Job"]], Iterator]


@dataclass(frozen=True)
class Job:
    """One picture to read: its text key, its file, the frame's time in a video, and the file's
    (size, mtime) when it was indexed."""

    key: str
    path: str
    time_s: float | None
    size: int
    mtime: float


@dataclass
class OcrSummary:
    """What a reading run did."""

    read: int = 0  # pictures read
    with_text: int = 0  # of them, those with at least one line
    lines: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    changed: int = 0  # files changed since they were indexed: left for the next `index`
    pruned: int = 0  # text records of pictures no longer indexed, deleted
    seconds: float = 0.0

    @property
    def per_s(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"read": self.read, "with_text": self.with_text, "lines": self.lines, "changed": self.changed,
                "pruned": self.pruned, "seconds": round(self.seconds, 3), "pictures_per_s": round(self.per_s, 2),
                "failed": [{"path": display_path(p), "reason": r} for p, r in self.failed]}


def read_pictures(index: Index, read_map: ReadMap, reader: str, *, commit_every: int = 256,
                  retry_failed: bool = False, on_progress: Callable[[int, int], None] | None = None,
                  checkpoint: Checkpoint = lambda stage: None) -> OcrSummary:
    """Read the text of every picture of `index` that has none yet (with `retry_failed`, also those
    the reader failed on), committing every `commit_every` pictures; `reader` names the models
    (stored beside what they read). Takes the write lock; ModelError if the reader can't start."""
    start, summary = time.perf_counter(), OcrSummary()
    with index.writing():
        if retry_failed:
            index.ocr.drop_failures()
        jobs, summary.pruned = pending(index)
        group: list[Reading] = []
        for n, (job, out) in enumerate(zip(jobs, read_map(jobs)), 1):
            reading = _reading(job, out, summary)
            if reading is not None:
                group.append(reading)
            if len(group) >= commit_every or n == len(jobs):
                index.ocr.add(group, reader)
                group = []
                checkpoint("ocr-added")
            if on_progress:
                on_progress(n, len(jobs))
        index.ocr.optimize()
        if jobs:
            index.write_manifest()  # a new stamp: open pages (app/resources.py) reopen the index and see the text
    summary.seconds = time.perf_counter() - start
    return summary


def pending(index: Index) -> tuple[list[Job], int]:
    """(the pictures with no text record, in path order; how many records of gone pictures were pruned)."""
    live = _live(index)
    pruned = index.ocr.prune(set(live)) if index.ocr.exists else 0
    done = index.ocr.keys()
    jobs = [Job(k, r.path, r.time_s, r.size, r.mtime) for k, r in live.items() if k not in done]
    return sorted(jobs, key=lambda j: (j.path, j.time_s or 0.0)), pruned


def keep_in_step(index: Index) -> int:
    """After images were added, moved or removed: prune the text of pictures no longer indexed; how
    many pictures have no text yet (0 when no text was ever read). Under the write lock."""
    if not index.ocr.exists:
        return 0
    jobs, _ = pending(index)
    return len(jobs)


def read_job(job: Job, reader: TextReader, settings: OcrSettings, max_pixels: int) -> Reading | None:
    """Read one picture: None if its file changed since it was indexed (its key may be wrong)."""
    if stat_key(job.path) != (job.size, job.mtime):
        return None
    try:
        img = load_picture(job.path, max_pixels=max_pixels, size=settings.det_side, time_s=job.time_s)
        img.thumbnail((settings.read_side, settings.read_side))  # bounded before the detector sees it
        return Reading(job.key, tuple(reader.read(np.asarray(img))))
    except ImageError as e:
        return Reading(job.key, error=str(e))


@contextmanager
def reading_map(settings: Settings, workers: int | None = None, read: Callable | None = None):
    """A `ReadMap` over guarded worker processes (`workers`, else the settings', else one per core),
    each loading the reader once, started on the first picture to read; `read(job)` replaces the
    workers' function (tests)."""
    from contextlib import ExitStack

    from clipsearch.ingest.pool import decoding_pool, guarded_map

    n, threads = plan(settings, workers)
    init = functools.partial(_load_in_worker, settings.ocr, settings.device, threads)
    read = read or worker(settings, threads)
    with ExitStack() as stack:
        pools = []

        def read_map(jobs: list[Job]) -> Iterator:
            if not jobs:
                return iter(())
            if not pools:  # each worker loads its reader as it starts: no picture's time limit pays for it
                pools.append(stack.enter_context(decoding_pool(n, niceness=0, init=init)))
            return guarded_map(pools[0], read, jobs, 4 * n, settings.ocr.file_timeout_s, path_of=lambda job: job.path)

        yield read_map


def worker(settings: Settings, threads: int) -> Callable[[Job], "Reading | Broken | None"]:
    """What a reading process runs for each job: its reader (loaded once, on `threads` threads), then `read_job`."""
    return functools.partial(_read_in_worker, settings=settings.ocr, max_pixels=settings.max_pixels,
                             device=settings.device, threads=threads)


def plan(settings: Settings, workers: int | None = None) -> tuple[int, int]:
    """(reading processes, ONNX Runtime threads each): one single-threaded process per core on a
    CPU (no thread barriers: more pictures per second than one process on every core), one process
    when ONNX Runtime's CUDA provider will run it."""
    cores = os.cpu_count() or 1
    if settings.device != "cpu" and _cuda_provider():
        return 1, 1
    n = max(1, workers or settings.ocr.workers or cores)
    return n, max(1, cores // n)


def _cuda_provider() -> bool:
    from clipsearch.models.ocr import CUDA

    import onnxruntime

    return CUDA in onnxruntime.get_available_providers()


#: A worker process's reader, loaded by its first job and kept for the next ones (each job is a
#: separate call into the process): keyed by what it was loaded with.
_WORKER_READERS: dict[tuple, "TextReader | Broken"] = {}


@dataclass(frozen=True)
class Broken:
    """A worker's reader could not start (a broken install): the run stops, nothing is recorded."""

    reason: str


def _load_in_worker(settings: OcrSettings, device: str, threads: int) -> TextReader | Broken:
    key = (settings, device, threads)
    if key not in _WORKER_READERS:
        try:
            _WORKER_READERS[key] = load_reader(settings, device, threads)
        except ModelError as e:
            _WORKER_READERS[key] = Broken(str(e))
    return _WORKER_READERS[key]


def _read_in_worker(job: Job, settings: OcrSettings, max_pixels: int, device: str,
                    threads: int) -> Reading | Broken | None:
    reader = _load_in_worker(settings, device, threads)
    return reader if isinstance(reader, Broken) else read_job(job, reader, settings, max_pixels)


def _reading(job: Job, out, summary: OcrSummary) -> Reading | None:
    """A job's outcome as the record to store (None: nothing to store), counted in `summary`."""
    if out is None:
        summary.changed += 1
        return None
    if isinstance(out, Broken):
        raise ModelError(out.reason)
    if isinstance(out, Failure):  # the worker hung, crashed or raised: the pool words it for decoders
        out = Reading(job.key, error=_reworded(out.reason))
    summary.read += 1
    if out.error is not None:
        summary.failed.append((job.path, out.error))
    elif out.lines:
        summary.with_text += 1
        summary.lines += len(out.lines)
    return out


def _reworded(reason: str) -> str:
    for old, new in (("decoder", "reader"), ("decoding", "reading"), ("decode", "read")):
        reason = reason.replace(old, new)
    return reason


def _live(index: Index) -> dict[str, object]:
    """Text key -> one indexed row holding that picture (copies share a key: read once)."""
    live: dict[str, object] = {}
    for r in index.images.all_rows():
        live.setdefault(picture_key(r.hash, r.time_s, r.id), r)
    return live
