"""The ANN index after a Ray run: new rows added to it, or a sharded rebuild on the cluster.

A sharded rebuild (clipsearch.ann.shards) trains on a sample the driver reads from the table, then
one Ray task per group of Lance fragments reads those fragments' ids and vectors itself and adds
them to a copy of the trained index; the driver merges. Vectors never pass through the driver
except the training sample. The index saves it with the table version (`Index.sync_ann`).
"""

from __future__ import annotations

import numpy as np

from clipsearch import AnnIndex
from clipsearch.collection import Collection
from clipsearch.ann.shards import SHARDED_MIN, add_shard, merge, sample_positions, scale_spec, train

#: Vectors per shard task: ~200 MB of 512-d float32 read and ~5 MB of PQ codes sent back.
SHARD_ROWS = 100_000


def refresh(images: Collection) -> None:
    """After rows were committed as fragments: a sharded rebuild when they are many (at least
    SHARDED_MIN in all, and a quarter of the table), else they join the ANN index as it is (read
    back from the table by the collection; its `sync` rebuilds in this process if it outgrew it)."""
    n = len(images)
    if n >= SHARDED_MIN and images.ann_pending >= n // 4:
        images.adopt_ann(build(images.lance_target()[0], images.dim))


def build(uri: str, dim: int, spec=None) -> AnnIndex:
    """A sharded build over the Lance dataset at `uri`, one Ray task per ~SHARD_ROWS rows."""
    import lance
    import ray

    ds = lance.dataset(uri)
    n = ds.count_rows()
    spec = spec or scale_spec(n, dim)
    pos = sample_positions(n, spec)
    xt = _matrix(ds.take(pos, columns=["vector"]))
    trained = train(spec, xt)
    groups, rows = [[]], 0
    for frag in ds.get_fragments():
        if rows >= SHARD_ROWS:
            groups, rows = groups + [[]], 0
        groups[-1].append(frag.fragment_id)
        rows += frag.count_rows()
    ref = ray.put(trained)
    task = ray.remote(_add_fragments).options(num_cpus=1)
    blobs = ray.get([task.remote(ref, uri, g) for g in groups if g])
    return merge(trained, blobs, spec, len(xt))


def _add_fragments(trained: np.ndarray, uri: str, fragment_ids: list[int]) -> np.ndarray:
    """One shard: these fragments' rows (deleted ones excluded) added to the trained index."""
    import lance

    ds = lance.dataset(uri)

    def shard():
        parts = [ds.get_fragment(f).to_table(columns=["id", "vector"]) for f in fragment_ids]
        ids = np.concatenate([p.column("id").to_numpy() for p in parts]).astype(np.int64)
        return ids, np.concatenate([_matrix(p) for p in parts])

    return add_shard(trained, shard)


def _matrix(t) -> np.ndarray:
    """The vector column of Arrow table `t` as (N, D) float32."""
    col = t.column("vector").combine_chunks()
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(t), col.type.list_size).astype(np.float32)
