"""`clipsearch index --ray`: today's indexing job with its decoding and encoding on a Ray cluster.

The driver does what `clipsearch.add_paths` does (scan, plan the changes, relink, compact, ANN,
roots) under the index's write lock; only the encoding of `Changes.todo` runs on Ray Data:

    files (driver: chunk, first id, path) -> decode actors (CPU; the guarded, time-limited pool of
    clipsearch.ingest.pool around batch.decode_file): a row per picture, pixels a tensor column ->
    encode actors (one GPU each, else CPU): the vectors a tensor column -> write tasks (the rows
    through ImageTable.arrow, as without Ray, into lance.fragment.write_fragments): a row per chunk,
    its fragments as Lance's FragmentMetadata JSON -> driver: once every row of a chunk is back, its
    fragments in one Lance commit (ingest.commit_group: rows in, failures recorded, superseded rows out)

Every stage hands the next an Arrow table (ray_tables), so Ray moves them without pickling.

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
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from clipsearch import Encoder, Index, Settings, Summary, add_paths
from clipsearch.ingest.batch import Decoded, decode_file
from clipsearch.ingest.changes import Changes
from clipsearch.errors import IndexDirError
from clipsearch.ingest.update import Checkpoint, commit_group
from clipsearch.ingest.pool import decoding_pool, guarded_map
from clipsearch.store.tables import ImageTable
from clipsearch.store.records import Failure, Row

import clipsearch.indexer.ray_ann as ray_ann
from clipsearch.indexer.ray_tables import (PIXELS, VECTOR, Written, by_chunk, failed, lance_fragments, pictures,
                                           read_written, stored, tensor, with_tensor, written)

#: Files per decode call: enough to amortise a Ray call, few enough to spread over the actors.
DECODE_BATCH = 32


@dataclass(frozen=True)
class Cluster:
    """Where and how wide to run: `address` None means $RAY_ADDRESS, else a local cluster for this run."""

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
            ray.init(log_to_driver=False, logging_level="ERROR", **_init_options(cluster.address))
    try:
        encode = functools.partial(_encode, encoder=encoder, make_encoder=make_encoder, settings=settings,
                                   cluster=cluster, on_progress=on_progress)
        return add_paths(index, encoder, roots, settings, checkpoint=checkpoint, encode=encode)
    finally:
        if started:
            ray.shutdown()


def _init_options(address: str | None) -> dict:
    """ray.init's address and options: `address`, else $RAY_ADDRESS, else a cluster started for this
    run only. "local" and not None: given None, Ray joins the last cluster started on this machine,
    whoever's it is (/tmp/ray/ray_current_cluster); and a dashboard costs seconds and a core."""
    if address or os.environ.get("RAY_ADDRESS"):
        return {"address": address or os.environ["RAY_ADDRESS"]}
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return {"address": "local", "include_dashboard": False}


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
    taken: set[int] = field(default_factory=set)  # ids back from the pipeline: of rows, of failed files
    frames: dict[str, int] = field(default_factory=dict)  # files back (some of their rows): path -> rows in all
    rows: list[Row] = field(default_factory=list)  # their rows (no vectors: those are in the fragments)
    fragments: list[str] = field(default_factory=list)  # FragmentMetadata JSON: written, not yet committed
    failures: list[Failure] = field(default_factory=list)
    committed: bool = False

    def take(self, part: Written) -> bool:
        """Add one write task's output; False (and nothing taken) if it repeats one already taken
        (a retried task's: its fragments stay orphans, never rows)."""
        if part.ids & self.taken and not part.ids <= self.taken:
            raise IndexDirError("the Ray pipeline returned a partly repeated batch, so this chunk was not "
                                "committed: run `clipsearch index --ray` again (committed chunks stay)")
        if part.ids & self.taken:
            return False
        self.taken |= part.ids
        self.frames |= part.frames
        self.rows += part.rows
        self.fragments += part.fragments
        self.failures += part.failures
        return True

    @property
    def complete(self) -> bool:
        """Every file back, each with all its rows (a video's frames may come in several parts)."""
        return len(self.frames) == len(self.paths) and len(self.taken) == sum(self.frames.values())


def _chunks(todo: list[str], size: int, ids: np.ndarray) -> list[_Chunk]:
    """`todo` cut into chunks of `size` files, each with its share of the reserved `ids`."""
    return [_Chunk(todo[s:s + size], ids[s:s + size]) for s in range(0, len(todo), size)]


def _dataset(chunks: list[_Chunk], index: Index, encoder: Encoder, make_encoder, settings: Settings,
             cluster: Cluster):
    """The Ray Data pipeline: one row per file in, one row per (write task, chunk) out; Arrow tables
    between the stages (ray_tables)."""
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
            .map_batches(_Decoder, batch_size=DECODE_BATCH, batch_format="pyarrow",
                         compute=ActorPoolStrategy(size=decoders), num_cpus=1,
                         fn_constructor_args=(encoder.preprocess, settings))
            .map_batches(_Embedder, batch_size=encoder.batch_size, batch_format="pyarrow",
                         compute=ActorPoolStrategy(size=encoders), num_gpus=1 if gpus else 0,
                         num_cpus=0 if gpus else 1, fn_constructor_args=(make_encoder,))
            .map_batches(_write, batch_size=max(1, 1024 // encoder.batch_size) * encoder.batch_size,
                         batch_format="pyarrow", num_cpus=0.25, fn_args=index.images.lance_target()))


def _commit_as_they_finish(index: Index, ds, chunks: list[_Chunk], work: Changes, summary: Summary,
                           checkpoint: Checkpoint, on_progress) -> None:
    """Collect the written fragments; commit each chunk once all its files are back (any order)."""
    done, total = 0, sum(len(c.paths) for c in chunks)
    for out in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for part in read_written(out):
            chunk = chunks[part.chunk]
            if not chunk.take(part):
                continue
            checkpoint("written")
            if chunk.committed or not chunk.complete:
                continue
            _commit(index, chunk, work, summary, checkpoint)
            done += len(chunk.paths)
            if on_progress:
                on_progress(done, total)
    if not all(c.committed for c in chunks):
        raise IndexDirError("the Ray pipeline ended with files missing; what it finished is committed: "
                            "run `clipsearch index --ray` again to finish the rest")


def _commit(index: Index, chunk: _Chunk, work: Changes, summary: Summary, checkpoint: Checkpoint) -> None:
    """A complete chunk's fragments in one commit, through the commit path `index` without Ray takes."""
    ids = np.array([r.id for r in chunk.rows], np.int64)
    add = functools.partial(index.images.add_fragments, lance_fragments(chunk.fragments), ids)
    commit_group(index, add, chunk.rows, chunk.failures, work, summary, checkpoint)
    chunk.committed = True


class _Decoder:
    """A decode actor: files decoded in its own guarded process, each within the time limit."""

    def __init__(self, preprocess, settings: Settings):
        self._stack = ExitStack()  # the pool lives as long as the actor
        self._pool = self._stack.enter_context(decoding_pool(1))
        self._decode = functools.partial(decode_file, preprocess=preprocess, max_pixels=settings.max_pixels,
                                         video=settings.video)
        self._timeout = settings.file_timeout_s
        self._per_file = settings.video.max_frames
        self._size = preprocess.size

    def __call__(self, batch):
        """Files (chunk, first id, path) -> a picture table with their pixels."""
        paths = [os.fsdecode(p) for p in batch.column("path").to_pylist()]
        items = [_capped(d, self._per_file)
                 for d in guarded_map(self._pool, self._decode, paths, len(paths), self._timeout)]
        return pictures(zip(batch.column("chunk").to_pylist(), batch.column("id").to_pylist(), items), self._size)

    def __del__(self):
        self._stack.close()


class _Embedder:
    """An encode actor: one model, on the actor's GPU when it has one."""

    def __init__(self, make_encoder):
        self._encoder = make_encoder()

    def __call__(self, batch):
        """A picture table -> the same with `vector`s (zeros for failed files) for `pixels`."""
        ok = ~failed(batch)
        xb = np.zeros((batch.num_rows, self._encoder.dim), np.float32)
        if ok.any():
            pixels = tensor(batch, PIXELS)
            xb[ok] = self._encoder.encode_pixels(pixels if ok.all() else pixels[ok])
        return with_tensor(batch.drop_columns([PIXELS]), VECTOR, xb)


def _capped(item: Decoded | Failure, n: int) -> Decoded | Failure:
    """At most n rows of a file: the ids reserved for it (VideoSampling caps its frames at n anyway)."""
    if isinstance(item, Failure) or len(item.rows) <= n:
        return item
    return Decoded(item.rows[:n], item.pixels[:n])


def _write(batch, uri: str, schema, storage_version: str):
    """A picture table with vectors -> Lance fragments (written, not committed), a set per chunk.

    The rows become columns as `index` without Ray stores them (ImageTable.arrow), place names
    included; the dataset's own schema, for an upgraded older table may differ from today's.
    """
    from lance.fragment import write_fragments

    table = ImageTable(None, schema.field("vector").type.list_size)
    table.schema = schema
    parts = []
    for chunk, part in by_chunk(batch):
        rows, xb = stored(part)
        frags = write_fragments(table.arrow(rows, [r.id for r in rows], xb), uri, schema=schema,
                                data_storage_version=storage_version) if rows else []
        parts.append((chunk, frags, part))
    return written(parts)
