"""The ANN index after a Ray run: new rows added to it, or a sharded rebuild on the cluster.

A sharded rebuild (clipsearch.ann.shards) trains on a sample the driver reads from the table, then
one Ray task per group of Lance fragments reads those fragments' rows itself and writes them as a
segment of the collection's ANN index under that quantizer; the driver adopts the segments, and the
index's `sync` commits them with the table version. Vectors never pass through the driver except
the training sample.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from clipsearch.ann.shards import SHARDED_MIN, Job, plan, sample_positions, scale_spec, write_segment
from clipsearch.collection import Collection

#: Rows per shard task: ~200 MB of 512-d float32 read, one segment written.
SHARD_ROWS = 100_000


def refresh(images: Collection) -> None:
    """After rows were committed as fragments: a sharded rebuild when they are many (at least
    SHARDED_MIN in all, and a quarter of the table), else they join the ANN index as it is (read
    back from the table by the collection; its `sync` trains again in this process if it outgrew it)."""
    n = len(images)
    if n >= SHARDED_MIN and images.ann_pending >= n // 4:
        build(images)


def build(images: Collection, spec=None) -> None:
    """A sharded build of `images` from its Lance dataset, one Ray task per ~SHARD_ROWS rows; the
    collection adopts the segments they write (committed by its next sync)."""
    import lance
    import ray

    uri = images.lance_target()[0]
    ds = lance.dataset(uri)
    n = ds.count_rows()
    spec = spec or scale_spec(n, images.dim)
    xt = _matrix(ds.take(sample_positions(n, spec), columns=["vector"]))
    groups, sizes = [[]], [0]
    for frag in ds.get_fragments():
        if sizes[-1] >= SHARD_ROWS:
            groups, sizes = groups + [[]], sizes + [0]
        groups[-1].append(frag.fragment_id)
        sizes[-1] += frag.count_rows()
    ann = images.ann()
    catalog, jobs = plan(ann.folder, ann.catalog, spec, xt, sizes)
    task = ray.remote(_write_fragments).options(num_cpus=1)
    columns = images.table.snapshot_columns()
    parts = ray.get([task.remote(job, uri, g, columns) for job, g in zip(jobs, groups) if g])
    images.adopt_ann(replace(catalog, parts=tuple(p for p in parts if p.rows)))


def _write_fragments(job: Job, uri: str, fragment_ids: list[int], columns: list[str]):
    """One shard: these fragments' rows (deleted ones excluded) as a segment."""
    import lance
    import pyarrow as pa

    ds = lance.dataset(uri)
    t = pa.concat_tables([ds.get_fragment(f).to_table(columns=[*columns, "vector"]) for f in fragment_ids])
    return write_segment(job, t.column("id").to_numpy().astype(np.int64), _matrix(t), t.drop_columns(["vector"]))


def _matrix(t) -> np.ndarray:
    """The vector column of Arrow table `t` as (N, D) float32."""
    col = t.column("vector").combine_chunks()
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(t), col.type.list_size).astype(np.float32)
