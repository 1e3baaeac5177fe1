"""`clipsearch index --ray`: today's indexing job with its decoding and encoding on a Ray cluster.

The driver does what `clipsearch.add_paths` does (scan, plan the changes, relink, compact, ANN,
roots) under the index's write lock; only the encoding of `Changes.todo` runs on Ray Data:

    files (driver: chunk, id) -> decode actors (CPU; the guarded, time-limited pool of
    clipsearch.ingest.pool around batch.decode_file) -> encode actors (one GPU each, else CPU;
    batch.embed_decoded) -> write tasks (store.arrow_rows -> lance.fragment.write_fragments)
    -> driver: once every file of a chunk is back, its fragments in one Lance commit
       (ingest.commit_group: rows in, failures recorded, superseded rows out)

Exactly once: ids are given out per chunk before any work starts; a chunk's rows become visible in
one commit, so a driver killed anywhere leaves whole chunks, which the next run's plan sees as
unchanged files. A retried task (a worker or node lost) writes its fragments again and returns
the new ones; the lost attempt's files are never committed. Fragments written by a killed run are
orphans on disk, never rows.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
import pickle
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from clipsearch import Encoder, Index, Settings, Summary, add_paths
from clipsearch.ingest.batch import Batch, Decoded, decode_file, embed_decoded
from clipsearch.ingest.changes import Changes
from clipsearch.errors import IndexDirError
from clipsearch.ingest.update import Checkpoint, commit_group
from clipsearch.ingest.pool import decoding_pool, guarded_map
from clipsearch.store.tables import ImageTable
from clipsearch.store.records import Failure, Row

import clipsearch.indexer.ray_ann as ray_ann

#: Files per decode call: enough to amortise a Ray call, few enough to spread over the actors.
DECODE_BATCH = 32


@dataclass(frozen=True)
class Cluster:
    """Where and how wide to run: `address` None means $RAY_ADDRESS, else a local cluster for the run."""

    address: str | None = None
    encoders: int = 0  # encode actors; 0: one per GPU, else one
    decoders: int = 0  # decode actors (one process each); 0: the cluster's CPUs less the encoders'


def run(index: Index, encoder: Encoder, make_encoder: Callable[[], Encoder], roots: list[str],
        settings: Settings = Settings(), cluster: Cluster = Cluster(), *,
        on_progress: Callable[[int, int], None] | None = None,
        checkpoint: Checkpoint = lambda stage: None) -> Summary:
    """Index `roots` into `index` on Ray. `encoder` (in this process) gives the identity and
    preprocessing; `make_encoder()` (picklable) loads the same model in each encode actor."""
    import ray

    started = not ray.is_initialized()
    if started:
        with warnings.catch_warnings():  # Ray starts its processes with fork+exec: nothing of lancedb's runs
            warnings.filterwarnings("ignore", message="lancedb fork support")
            ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR",
                     **_local_only(cluster.address))
    try:
        encode = functools.partial(_encode, encoder=encoder, make_encoder=make_encoder, settings=settings,
                                   cluster=cluster, on_progress=on_progress)
        return add_paths(index, encoder, roots, settings, checkpoint=checkpoint, encode=encode)
    finally:
        if started:
            ray.shutdown()


def _local_only(address: str | None) -> dict:
    """Options for a cluster started for this run only (a dashboard costs seconds and a core)."""
    if address or os.environ.get("RAY_ADDRESS"):
        return {}
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return {"include_dashboard": False}


def _encode(index: Index, work: Changes, summary: Summary, checkpoint: Checkpoint, *, encoder: Encoder,
            make_encoder, settings: Settings, cluster: Cluster, on_progress) -> None:
    """`ingest.Encode` on Ray: every file of `work.todo` encoded and committed in chunks, then the ANN."""
    per_file = settings.video.max_frames  # a video is up to this many rows; an image one
    ids = index.images.reserve_ids(len(work.todo) * per_file)[::per_file]  # each file's first id
    chunks = _chunks(work.todo, settings.commit_every, ids)
    if chunks:
        ds = _dataset(chunks, index, encoder, make_encoder, settings, cluster)
        _commit_as_they_finish(index, ds, chunks, work, summary, checkpoint, on_progress)
    ray_ann.refresh(index.images)


@dataclass
class _Chunk:
    paths: list[str]
    ids: np.ndarray  # each file's first id; its rows (video frames) take the ids after it
    files: set[str] = field(default_factory=set)  # files back from the pipeline
    rows: list[Row] = field(default_factory=list)  # their rows (no vectors: those are in the fragments)
    fragments: list = field(default_factory=list)  # written by the write tasks, not yet committed
    failures: list[Failure] = field(default_factory=list)
    committed: bool = False

    def take(self, rows: list[Row], fragments: list, failures: list[Failure]) -> bool:
        """Add one write task's output; False (and nothing taken) if it repeats one already taken
        (a retried task's: its fragments stay orphans, never rows)."""
        files = {r.path for r in rows} | {f.path for f in failures}
        if files & self.files and not files <= self.files:
            raise IndexDirError("the Ray pipeline returned a partly repeated batch, so this chunk was not "
                                "committed: run `clipsearch index --ray` again (committed chunks stay)")
        if files & self.files:
            return False
        self.files |= files
        self.rows += rows
        self.fragments += fragments
        self.failures += failures
        return True

    @property
    def complete(self) -> bool:
        return len(self.files) == len(self.paths)


def _chunks(todo: list[str], size: int, ids: np.ndarray) -> list[_Chunk]:
    """`todo` cut into chunks of `size` files, each with its share of the reserved `ids`."""
    return [_Chunk(todo[s:s + size], ids[s:s + size]) for s in range(0, len(todo), size)]


def _dataset(chunks: list[_Chunk], index: Index, encoder: Encoder, make_encoder, settings: Settings,
             cluster: Cluster):
    """The Ray Data pipeline: one row per file in, one row per (write task, chunk) out."""
    import ray
    from ray.data import ActorPoolStrategy

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its own progress lines; ours is the bar
    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    encoders = cluster.encoders or max(1, gpus)
    decoders = cluster.decoders or settings.workers or max(1, cpus - (0 if gpus else encoders))
    items = [{"chunk": c, "id": int(i), "path": os.fsencode(p)}
             for c, ch in enumerate(chunks) for p, i in zip(ch.paths, ch.ids)]
    return (ray.data.from_items(items, override_num_blocks=max(1, len(items) // DECODE_BATCH))
            .map_batches(_Decoder, batch_size=DECODE_BATCH, compute=ActorPoolStrategy(size=decoders), num_cpus=1,
                         fn_constructor_args=(encoder.preprocess, settings))
            .map_batches(_Embedder, batch_size=encoder.batch_size, compute=ActorPoolStrategy(size=encoders),
                         num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1,
                         fn_constructor_args=(make_encoder,))
            .map_batches(_write, batch_size=max(1, 1024 // encoder.batch_size), num_cpus=0.25,
                         fn_args=index.images.lance_target()))


def _commit_as_they_finish(index: Index, ds, chunks: list[_Chunk], work: Changes, summary: Summary,
                           checkpoint: Checkpoint, on_progress) -> None:
    """Collect the written fragments; commit each chunk once all its files are back (any order)."""
    done, total = 0, sum(len(c.paths) for c in chunks)
    for out in ds.iter_rows():
        chunk = chunks[out["chunk"]]
        if not chunk.take(pickle.loads(out["rows"]), pickle.loads(out["fragments"]), pickle.loads(out["failures"])):
            continue
        checkpoint("written")
        if chunk.committed or not chunk.complete:
            continue
        ids = np.array([r.id for r in chunk.rows], np.int64)
        commit_group(index, functools.partial(index.images.add_fragments, chunk.fragments, ids), chunk.rows,
                     chunk.failures, work, summary, checkpoint)
        chunk.committed = True
        done += len(chunk.paths)
        if on_progress:
            on_progress(done, total)
    if not all(c.committed for c in chunks):
        raise IndexDirError("the Ray pipeline ended with files missing; what it finished is committed: "
                            "run `clipsearch index --ray` again to finish the rest")


class _Decoder:
    """A decode actor: files decoded in its own guarded process, each within the time limit."""

    def __init__(self, preprocess, settings: Settings):
        self._stack = ExitStack()  # the pool lives as long as the actor
        self._pool = self._stack.enter_context(decoding_pool(1))
        self._decode = functools.partial(decode_file, preprocess=preprocess, max_pixels=settings.max_pixels,
                                         video=settings.video)
        self._timeout = settings.file_timeout_s
        self._per_file = settings.video.max_frames

    def __call__(self, batch: dict) -> dict:
        paths = [os.fsdecode(bytes(p)) for p in batch["path"]]
        items = [_capped(d, self._per_file)
                 for d in guarded_map(self._pool, self._decode, paths, len(paths), self._timeout)]
        return {"chunk": batch["chunk"], "id": batch["id"],
                "item": np.array([pickle.dumps(d) for d in items], dtype=object)}

    def __del__(self):
        self._stack.close()


class _Embedder:
    """An encode actor: one model, on the actor's GPU when it has one."""

    def __init__(self, make_encoder):
        self._encoder = make_encoder()

    def __call__(self, batch: dict) -> dict:
        items = [_with_ids(pickle.loads(b), int(i)) for b, i in zip(batch["item"], batch["id"])]
        chunk_of = {d.path: int(c) for d, c in zip(items, batch["chunk"])}
        out = embed_decoded(items, self._encoder)
        per_chunk: dict[int, Batch] = defaultdict(lambda: Batch([], [], []))
        for row, v in zip(out.rows, out.vectors):
            b = per_chunk[chunk_of[row.path]]
            b.rows.append(row)
            b.vectors.append(v)
        for f in out.failures:
            per_chunk[chunk_of[f.path]].failures.append(f)
        chunks = sorted(per_chunk)
        return {"chunk": np.array(chunks, np.int64),
                "batch": np.array([pickle.dumps(per_chunk[c]) for c in chunks], dtype=object)}


def _capped(item: Decoded | Failure, n: int) -> Decoded | Failure:
    """At most n rows of a file: the ids reserved for it (VideoSampling caps its frames at n anyway)."""
    if isinstance(item, Failure) or len(item.rows) <= n:
        return item
    return Decoded(item.rows[:n], item.pixels[:n])


def _with_ids(item: Decoded | Failure, first: int) -> Decoded | Failure:
    """The file's rows numbered from its `first` id on (the driver reserved max_frames per file)."""
    if isinstance(item, Failure):
        return item
    return Decoded(tuple(replace(r, id=first + n) for n, r in enumerate(item.rows)), item.pixels)


def _write(batch: dict, uri: str, schema, storage_version: str) -> dict:
    """Rows -> Lance fragments (written, not committed), one set per chunk in this batch."""
    from lance.fragment import write_fragments

    table = ImageTable(None, schema.field("vector").type.list_size)
    table.schema = schema  # the dataset's own: an upgraded older table may differ from today's
    merged: dict[int, Batch] = defaultdict(lambda: Batch([], [], []))
    for c, blob in zip(batch["chunk"], batch["batch"]):
        b = pickle.loads(blob)
        merged[int(c)].rows.extend(b.rows)
        merged[int(c)].vectors.extend(b.vectors)
        merged[int(c)].failures.extend(b.failures)
    out = {"chunk": [], "rows": [], "fragments": [], "failures": []}
    for c, b in sorted(merged.items()):
        frags = []
        if b.rows:
            rows = table.arrow(b.rows, [r.id for r in b.rows], np.stack(b.vectors))
            frags = write_fragments(rows, uri, schema=schema, data_storage_version=storage_version)
        out["chunk"].append(c)
        out["rows"].append(pickle.dumps(b.rows))
        out["fragments"].append(pickle.dumps(frags))
        out["failures"].append(pickle.dumps(b.failures))
    return {"chunk": np.array(out["chunk"], np.int64)} | {
        k: np.array(out[k], dtype=object) for k in ("rows", "fragments", "failures")}
