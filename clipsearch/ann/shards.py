"""The ANN index built in shards: train once on a sample, then one segment per shard, in parallel.

For collections too big for one process to encode alone (10M-1B vectors). `plan` trains the
quantizer on a sample (`sample_positions`: the seeded choice a single build makes), saves it in the
collection's ANN folder and hands out a job per shard (a file serial, a range of labels); each shard
worker (Ray tasks in indexer/ray_ann.py) reads its own rows and writes them as a segment under that
quantizer (`write_segment`); the driver adopts the segments as the collection's rows
(`Segments.adopt`), committed by its next sync. The same quantizer gives every vector the list and
code a single build would: the sharded index answers as a single build with the same sample does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from clipsearch.ann import lists
from clipsearch.ann.catalog import Catalog, Part
from clipsearch.ann.segment import Writer
from clipsearch.ann.spec import NPROBE_MIN, AnnSpec, choose_spec

#: From here on nlist follows the FAISS guidelines ("Guidelines to choose an index": IVF262144_HNSW32
#: for 10M-100M, IVF1048576_HNSW32 for 100M-1B); below, `choose_spec`, measured up to 1M
#: (bench/results/ann.md), which already uses an HNSW coarse quantizer from nlist 16384.
GUIDELINE_MIN = 10_000_000
SCALE_NLIST = ((100_000_000, 262_144), (math.inf, 1_048_576))
#: From this many vectors the indexer builds the ANN index in shards on the cluster.
SHARDED_MIN = 1_000_000
#: Training points per centroid at scale: faiss warns below 39; 64 keeps k-means for 1M lists at 67M
#: points (137 GB at 512-d float32: docs/scale.md has the budget).
SCALE_TRAIN_PER_CENTROID = 64


@dataclass(frozen=True)
class Job:
    """Where one shard's segment goes: the ANN folder, the quantizer, its file serial, its first label."""

    folder: Path
    quantizer: str
    serial: int
    label: int


def scale_spec(n: int, dim: int) -> AnnSpec:
    """The index for n vectors: `choose_spec` below GUIDELINE_MIN, the FAISS guidelines' IVF_HNSW above."""
    if n < GUIDELINE_MIN:
        return choose_spec(n, dim)
    nlist = next(nl for limit, nl in SCALE_NLIST if n <= limit)
    nprobe = nlist // 256  # not measured at this size: tune with `query --nprobe`
    return AnnSpec("ivfpq", dim, nlist, max(1, dim // 8), 8, min(n, SCALE_TRAIN_PER_CENTROID * nlist),
                   max(NPROBE_MIN, nprobe))


def sample_positions(n: int, spec: AnnSpec) -> np.ndarray:
    """Sorted positions (of n vectors) a single build trains on: `index.train_index`'s own seeded choice."""
    k = min(spec.train_size or n, n)
    if k == n:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, k, replace=False))


def plan(folder: Path, catalog: Catalog, spec: AnnSpec, xt: np.ndarray,
         sizes: list[int]) -> tuple[Catalog, list[Job]]:
    """Train `spec` on xt (n, D) float32 and save it in `folder`; -> (the catalog that the shards'
    segments will complete, with no segment yet; a job per shard of at most sizes[i] rows)."""
    catalog, serial = catalog.serial()
    quantizer = f"q{serial:06d}.faiss"
    lists.save_trained(folder / quantizer, lists.train(spec, xt))
    jobs, label = [], catalog.next_label
    for size in sizes:
        catalog, serial = catalog.serial()
        jobs.append(Job(folder, quantizer, serial, label))
        label += size
    return replace(catalog, spec=spec.to_dict(), trained_on=len(xt), quantizer=quantizer, parts=(),
                   next_label=label), jobs


def write_segment(job: Job, ids: np.ndarray, xb: np.ndarray, rows) -> Part:
    """One shard's rows (ids (n,) int64 in any order, xb (n, D) float32, their records as a pyarrow
    Table) as a segment with its lists under the job's quantizer; -> its part of the catalog."""
    import pyarrow as pa

    quantizer = lists.Quantizer(job.folder / job.quantizer)
    ids, xb = np.asarray(ids, np.int64), np.ascontiguousarray(xb, np.float32)
    assign = quantizer.assign(xb)
    order = np.lexsort((ids, assign))  # stored list by list, as compaction.spill does
    ids, xb, assign, rows = ids[order], xb[order], assign[order], rows.take(pa.array(order))
    with Writer(job.folder, job.serial, len(ids), xb.shape[1], rows.schema) as w:
        w.append(ids, xb, rows)
    name = lists.lists_name(job.serial, job.quantizer)
    quantizer.write(job.folder / name, [(job.label + np.arange(len(ids)), xb, assign)])
    return Part(job.serial, len(ids), job.label, name)
