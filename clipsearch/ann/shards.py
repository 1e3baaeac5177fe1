"""The ANN index built in shards: train once on a sample, add shards in parallel, merge.

For collections too big for one process to add alone (10M-1B vectors). The trained, empty index
travels to every shard worker as bytes (`train`); each adds its own (ids, vectors) with the same
quantizer (`add_shard`); the driver merges the inverted lists in memory (`merge`). The result equals
a single build with the same training sample (`sample_positions`): the same quantizers give every
vector the same list and code, only the order inside a list differs. The shards run as Ray tasks in
the indexer (indexer/ray_ann.py).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np

from clipsearch.ann.index import AnnIndex, add_to_index, train_index
from clipsearch.ann.spec import NPROBE_DIV, NPROBE_MIN, AnnSpec, choose_spec

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

Shard = Callable[[], tuple[np.ndarray, np.ndarray]]  # -> (ids (n,) int64, xb (n, D) float32)


def scale_spec(n: int, dim: int) -> AnnSpec:
    """The index for n vectors: `choose_spec` below GUIDELINE_MIN, the FAISS guidelines' IVF_HNSW above."""
    if n < GUIDELINE_MIN:
        return choose_spec(n, dim)
    nlist = next(nl for limit, nl in SCALE_NLIST if n <= limit)
    nprobe = nlist // NPROBE_DIV // 8  # not measured at this size: tune with `query --nprobe`
    return AnnSpec("ivfpq", dim, nlist, max(1, dim // 8), 8, min(n, SCALE_TRAIN_PER_CENTROID * nlist),
                   max(NPROBE_MIN, nprobe))


def sample_positions(n: int, spec: AnnSpec) -> np.ndarray:
    """Sorted positions (of n vectors) a single build trains on: `index.train_index`'s own seeded choice."""
    k = min(spec.train_size or n, n)
    if k == n:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, k, replace=False))


def train(spec: AnnSpec, xt: np.ndarray) -> np.ndarray:
    """The trained, empty index for `spec` as bytes (uint8): what every shard starts from."""
    import faiss

    index = faiss.index_factory(spec.dim, spec.factory(), faiss.METRIC_INNER_PRODUCT)
    train_index(index, spec, np.ascontiguousarray(xt, np.float32))
    return faiss.serialize_index(index)


def add_shard(trained: np.ndarray, shard: Shard) -> np.ndarray:
    """The trained index with one shard's vectors added, as bytes."""
    import faiss

    index = faiss.deserialize_index(trained)
    ids, xb = shard()
    add_to_index(index, np.ascontiguousarray(xb, np.float32), np.ascontiguousarray(ids, np.int64))
    return faiss.serialize_index(index)


def merge(trained: np.ndarray, shards: Iterable[np.ndarray], spec: AnnSpec, trained_on: int) -> AnnIndex:
    """One in-memory index from the shards' bytes (each index's lists moved into the first)."""
    import faiss

    index = faiss.deserialize_index(trained)
    ivf = faiss.extract_index_ivf(index)
    for blob in shards:
        part = faiss.deserialize_index(blob)
        ivf.merge_from(faiss.extract_index_ivf(part), 0)
        index.ntotal = ivf.ntotal
    return AnnIndex(index, spec, trained_on)
