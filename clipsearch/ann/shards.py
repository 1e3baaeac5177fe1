"""The ANN index built in shards: train once on a sample, add shards in parallel, merge.

For collections too big for one process to add alone (10M-1B vectors). The trained, empty index
travels to every shard worker as bytes; each adds its own (ids, vectors) with the same quantizer;
the driver merges the inverted lists, in memory (`merge`) or into one file of lists that is served
memory-mapped (`merge_ondisk` + `load_mmap`) when the index is larger than RAM. The result equals a
single build with the same training sample: the same quantizers give every vector the same list
and code, only the order inside a list differs.

`map_fn(fn, items)` is how shards run: the built-in `map` here, Ray tasks in the indexer.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from clipsearch.ann.index import NPROBE_DIV, NPROBE_MIN, AnnIndex, AnnSpec, _add, _train, choose_spec

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

MapFn = Callable[[Callable, Iterable], Iterator]
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
    """Sorted positions (of n vectors) a single build trains on: `ann._train`'s own seeded choice."""
    k = min(spec.train_size or n, n)
    if k == n:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, k, replace=False))


def train(spec: AnnSpec, xt: np.ndarray) -> np.ndarray:
    """The trained, empty index for `spec` as bytes (uint8): what every shard starts from."""
    import faiss

    index = faiss.index_factory(spec.dim, spec.factory(), faiss.METRIC_INNER_PRODUCT)
    _train(index, spec, np.ascontiguousarray(xt, np.float32))
    return faiss.serialize_index(index)


def add_shard(trained: np.ndarray, shard: Shard) -> np.ndarray:
    """The trained index with one shard's vectors added, as bytes."""
    import faiss

    index = faiss.deserialize_index(trained)
    ids, xb = shard()
    _add(index, np.ascontiguousarray(xb, np.float32), np.ascontiguousarray(ids, np.int64))
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


def build_sharded(spec: AnnSpec, xt: np.ndarray, shards: list[Shard], map_fn: MapFn = map) -> AnnIndex:
    """Train on `xt`, add each shard through `map_fn`, merge in memory."""
    trained = train(spec, xt)
    blobs = map_fn(lambda shard: add_shard(trained, shard), shards)
    return merge(trained, blobs, spec, len(xt))


def merge_ondisk(trained: np.ndarray, shards: Iterable[np.ndarray], folder: Path, name: str, tag: str) -> Path:
    """Merge the shards into FOLDER/NAME.TAG.ivfdata (the lists) + FOLDER/NAME.faiss (the rest); the latter's path.

    Larger than RAM is fine: shards are read memory-mapped one at a time, the lists stream to disk.
    The lists go to a file of their own (TAG: e.g. the table version) that no reader maps yet; the
    index file that names them is then replaced atomically, so readers see the old pair or the new.
    """
    import faiss
    from faiss.contrib.ondisk import merge_ondisk as _merge

    folder.mkdir(parents=True, exist_ok=True)
    shard_files = []
    for i, blob in enumerate(shards):
        shard_files.append(folder / f".{name}.{tag}.shard{i}.faiss")
        faiss.write_index(faiss.deserialize_index(blob), str(shard_files[-1]))
    lists, out = folder / f"{name}.{tag}.ivfdata", folder / f"{name}.faiss"
    index = faiss.deserialize_index(trained)
    _merge(index, [str(p) for p in shard_files], str(lists))
    faiss.write_index(index, str(out) + ".tmp")
    os.replace(str(out) + ".tmp", out)
    for p in shard_files:
        p.unlink()
    return out


def load_mmap(path: Path, spec: AnnSpec, trained_on: int = 0) -> AnnIndex:
    """An index written by `merge_ondisk`, its lists memory-mapped (pages load on demand).

    On-disk inverted lists are always mapped, read-only here; faiss.IO_FLAG_MMAP on top of them
    crashes the search (faiss 1.15), so it is the flag for whole-index files only.
    """
    import faiss

    index = faiss.read_index(str(path), faiss.IO_FLAG_READ_ONLY)
    return AnnIndex(index, spec, trained_on)
