"""Bringing a collection's ANN segments level with its table, in memory, when the table moved since
their catalog was committed (another process wrote, or a crash came between a table commit and the
sync after it): rows the table has and the segments lack are read from the table, rows they hold
and the table lost are dropped, and so are the ids a writer marked dirty before changing them in the
table (then read again). The table's reads are passed in, so this module needs no LanceDB."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

#: rows(ids or None) -> pyarrow Tables of those rows (all of them), with a "vector" column
Rows = Callable[[np.ndarray | None], Iterator]


def catch_up(ann, table_ids: np.ndarray, rows: Rows) -> None:
    """Make `ann` (segments.Segments) hold exactly the rows of a table whose ids are `table_ids`
    (sorted int64), reading what it must through `rows`."""
    live, dirty = ann.live_ids(), ann.dirty_ids()
    ann.remove(np.union1d(np.setdiff1d(live, table_ids, assume_unique=True), np.intersect1d(dirty, live)))
    new = np.union1d(np.setdiff1d(table_ids, live, assume_unique=True), np.intersect1d(dirty, table_ids))
    take_in(ann, new, rows, len(table_ids))


def take_in(ann, ids: np.ndarray, rows: Rows, n_table: int) -> None:
    """Rows `ids` of the table (of n_table rows) into `ann`; all read in one scan when they are many
    (a quarter of the table), else by id."""
    if not len(ids):
        return
    many = len(ids) > n_table // 4
    for t in rows(None if many else ids):
        t_ids = t.column("id").to_numpy().astype(np.int64)
        keep = np.isin(t_ids, ids) if many else np.ones(len(t_ids), bool)
        if keep.any():
            import pyarrow as pa

            t = t.filter(pa.array(keep))
            xb = t.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
            ann.add(t_ids[keep], xb.reshape(len(t), ann.dim), t.drop_columns(["vector"]))
