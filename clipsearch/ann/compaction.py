"""How a collection's ANN segments change on disk; every change ends in one catalog commit.

- `spill`: the rows waiting in memory become a new segment, encoded with the trained quantizer and
  stored list by list (segment.py says why);
- `fit`: when the collection outgrew its index (spec.outgrown: Flat -> IVF-PQ, or nlist 4x too
  small), a quantizer trained on a sample of the live rows, every segment's lists encoded under it,
  and all merged into one stored in its list order;
- `tidy`: merges, by the policy below; a merge rewrites only the rows it joins, list by list (id
  order for a Flat index), and renumbers their lists without encoding them again;
- `commit`: all of that, then the dead labels and the catalog, atomically (catalog.py).
Policy (docs/scale.md has the measurements): a merge joins the smallest segments, as many as fit in
MAX_SEGMENT_ROWS, so no merge rewrites the collection and its spare disk is bounded; at most
MAX_SEGMENTS segments (the smallest merged first), so the small segments of frequent syncs merge
cheaply; a group merged when the rows outside its largest segment reach DELTA_SHARE of it; a
segment with DEAD_SHARE of its rows dead written again without them (`clipsearch optimize`: every
merge that fits, and every dead row dropped). Each merge is committed as it is done: the files it
replaced are deleted before the next one is written.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from clipsearch.ann import catalog as cat
from clipsearch.ann import lists
from clipsearch.ann.catalog import Part
from clipsearch.ann.segment import CHUNK, Segment, Writer
from clipsearch.ann.spec import AnnSpec, choose_spec, outgrown
from clipsearch.durable import atomic_file

MAX_SEGMENTS = 8
DELTA_SHARE = 0.25
DEAD_SHARE = 0.2
#: Rows a merge may write (2M: 4 GB of float32 512-d vectors), as Lucene caps a merged segment at
#: 5 GB: a 10M collection is 5 segments searched together, and a merge never needs the disk of a
#: second copy of the collection.
MAX_SEGMENT_ROWS = 1 << 21

def spill(segs, checkpoint=lambda stage: None) -> None:
    """Write the pending rows as a new segment of the working version (not committed yet): in list
    order under the quantizer, else in id order."""
    if not len(segs.pending):
        return
    ids, xb, rows = segs.pending.take()
    catalog, serial = segs.catalog.serial()
    quantizer = lists.Quantizer(segs.folder / catalog.quantizer) if catalog.quantizer else None
    assign = quantizer.assign(xb) if quantizer else np.zeros(len(ids), np.int64)
    order = np.lexsort((ids, assign))
    ids, xb, assign = ids[order], xb[order], assign[order]
    with Writer(segs.folder, serial, len(ids), segs.dim, rows.schema) as w:
        w.append(ids, xb, _take(rows, order))
        checkpoint("ann-writing")  # its files written, not yet in place
    part = Part(serial, len(ids), catalog.next_label)
    if quantizer:
        part = replace(part, lists=lists.lists_name(serial, catalog.quantizer))
        quantizer.write(segs.folder / part.lists, [(part.label + np.arange(len(ids)), xb, assign)])
    catalog = replace(catalog, parts=catalog.parts + (part,), next_label=part.label + part.rows)
    segs.changed(catalog, segs.segments + [Segment.open(segs.folder, part, segs.dim)])


def commit(segs, generation: int, stamp: str, checkpoint=lambda stage: None, everything: bool = False) -> str | None:
    """Spill, fit, tidy (`everything`: every merge that fits), then commit as the table's
    `generation`; a note when the index was built again for its size."""
    if len(segs.pending):
        spill(segs, checkpoint)
        checkpoint("ann-segment")
    note = fit(segs, force=everything)
    if note:
        checkpoint("ann-trained")

    def merged():
        checkpoint("ann-merged")
        _commit_now(segs, generation, stamp)

    tidy(segs, everything, merged)
    _commit_now(segs, generation, stamp)
    checkpoint("ann-committed")
    return note


def _commit_now(segs, generation: int, stamp: str) -> None:
    """Commit the working version as the table's `generation` (its rows all written: none pending)."""
    catalog = _with_dead(segs, replace(segs.catalog, generation=generation, stamp=stamp, dirty=None))
    cat.write(segs.folder, catalog)
    segs.committed = segs.catalog = catalog


def fit(segs, force: bool = False) -> str | None:
    """Train again when the collection outgrew its index (or `force`: whenever its size asks for
    another spec); -> "rebuilt for N vectors: OLD -> NEW", or None."""
    n, old = len(segs), segs.spec
    want = choose_spec(n, segs.dim)
    same = (want.kind, want.nlist, want.m, want.nbits) == (old.kind, old.nlist, old.m, old.nbits)
    if not (outgrown(old, n) or (force and not same)):
        return None
    catalog = segs.catalog
    if want.kind == "flat":
        catalog = replace(catalog, quantizer=None, trained_on=0,
                          parts=tuple(replace(p, lists=None) for p in catalog.parts))
    else:
        catalog, trained_on = _train(segs, want)
        catalog = replace(catalog, trained_on=trained_on)
    segs.changed(replace(catalog, spec=want.to_dict()), segs.segments)
    if len(segs.segments) and n <= MAX_SEGMENT_ROWS:  # rows stored list by list under the new quantizer
        merge(segs, list(range(len(segs.segments))))  # (past it `tidy` merges the segments it may)
    return f"rebuilt for {n} vectors: {old.describe()} -> {want.describe()}"


def _train(segs, spec: AnnSpec):
    """(the catalog with a quantizer trained for `spec` and every segment's lists under it, sample size)."""
    xt = _sample(segs, spec.train_size)
    catalog, serial = segs.catalog.serial()
    qname = f"q{serial:06d}.faiss"
    lists.save_trained(segs.folder / qname, lists.train(spec, xt))
    quantizer, parts = lists.Quantizer(segs.folder / qname), []
    for s in segs.segments:
        name = lists.lists_name(s.part.serial, qname)
        quantizer.write(segs.folder / name, ((s.label + start + np.arange(len(xb)), xb, None)
                                             for start, _, xb in s.chunks()))
        parts.append(replace(s.part, lists=name))
    return replace(catalog, quantizer=qname, parts=tuple(parts)), len(xt)


def _sample(segs, size: int) -> np.ndarray:
    """A seeded sample of `size` live vectors (all of them when fewer), float32."""
    live = np.concatenate([np.zeros(0, np.int64)] + [
        s.label + np.flatnonzero(~_dead_mask(segs, s)) for s in segs.segments])
    if size < len(live):
        live = np.sort(np.random.default_rng(0).choice(live, size, replace=False))
    return segs.vectors_at_labels(live)


def tidy(segs, everything: bool = False, merged=lambda: None) -> None:
    """Merge segments by the policy (every merge that fits: `everything`), calling `merged` after each."""
    while (group := plan(segs, everything)) is not None:
        merge(segs, group)
        merged()


def plan(segs, everything: bool = False) -> list[int] | None:
    """Positions of the segments to merge next, or None."""
    if not segs.segments:
        return None
    dead = np.array([np.diff(np.searchsorted(segs.dead, [s.label, s.label + len(s)]))[0]
                     for s in segs.segments], np.int64)
    live = np.array([len(s) for s in segs.segments], np.int64) - dead
    worn = np.flatnonzero((dead > 0) & (everything | (dead > DEAD_SHARE * (live + dead))))
    if len(worn):  # the most worn first, with the smallest that fit beside it
        first = worn[np.argmax(dead[worn] / (live[worn] + dead[worn]))]
        return sorted(_pack(live, first))
    group = _pack(live)
    if len(group) < 2:
        return None
    biggest = live[group].max()
    if everything or live[group].sum() - biggest >= DELTA_SHARE * biggest:
        return sorted(group)
    if len(live) > MAX_SEGMENTS:
        return sorted(group[:max(2, len(live) - MAX_SEGMENTS + 1)])
    return None


def _pack(live: np.ndarray, first: int | None = None) -> list[int]:
    """`first` (if given) and then the smallest segments, while their live rows fit in
    MAX_SEGMENT_ROWS (at least one)."""
    order = [i for i in np.argsort(live, kind="stable").tolist() if i != first]
    group, total = [], 0
    for i in ([first] if first is not None else []) + order:
        if group and total + live[i] > MAX_SEGMENT_ROWS:
            break
        group.append(i)
        total += live[i]
    return group


def merge(segs, group: list[int]) -> None:
    """Replace the segments at `group` by one of their live rows: list by list under the quantizer
    (their lists renumbered, not encoded again), else in id order."""
    import pyarrow as pa

    sources = [segs.segments[i] for i in group]
    keep = [np.flatnonzero(~_dead_mask(segs, s)) for s in sources]
    src = np.concatenate([np.zeros(0, np.int64)] + [np.full(len(k), i, np.int64) for i, k in enumerate(keep)])
    row = np.concatenate([np.zeros(0, np.int64), *keep])
    if segs.catalog.quantizer:
        key = np.concatenate([np.zeros(0, np.int64)] + [
            lists.assignment(segs.folder / s.part.lists, s.label, len(s))[k] for s, k in zip(sources, keep)])
        order = np.lexsort((row, src, key))
    else:
        order = np.argsort(np.concatenate([np.zeros(0, np.int64)] + [s.ids[k] for s, k in zip(sources, keep)]),
                           kind="stable")
    catalog, serial = segs.catalog.serial()
    label, n = catalog.next_label, len(order)
    rest = [s for i, s in enumerate(segs.segments) if i not in group]
    if n == 0:
        segs.changed(replace(catalog, parts=tuple(s.part for s in rest)), rest)
        return
    schema = pa.unify_schemas([s.records.table.schema for s in sources])
    with Writer(segs.folder, serial, n, segs.dim, schema) as w:
        for c in range(0, n, CHUNK):
            w.append(*_gather(sources, src[order[c:c + CHUNK]], row[order[c:c + CHUNK]], segs.dim))
    part = Part(serial, n, label)
    if catalog.quantizer:
        new_label = np.empty(n, np.int64)
        new_label[order] = label + np.arange(n)
        relabel = []
        for i, s in enumerate(sources):
            table = np.full(len(s), -1, np.int64)
            table[keep[i]] = new_label[src == i]
            relabel.append((segs.folder / s.part.lists, s.label, table))
        part = replace(part, lists=lists.lists_name(serial, catalog.quantizer))
        lists.merge(segs.folder / part.lists, segs.folder / catalog.quantizer, relabel)
    parts = tuple(s.part for s in rest) + (part,)
    segs.changed(replace(catalog, parts=parts, next_label=label + n),
                 rest + [Segment.open(segs.folder, part, segs.dim)])


def _gather(sources, src: np.ndarray, row: np.ndarray, dim: int):
    """(ids, float32 vectors, records) of these (source, row) pairs, in their order."""
    import pyarrow as pa

    ids, xb = np.empty(len(src), np.int64), np.empty((len(src), dim), np.float32)
    tables, where = [], []
    for i in np.unique(src):
        mask = np.flatnonzero(src == i)
        s = sources[i]
        ids[mask], xb[mask] = s.ids[row[mask]], s.vectors_at(row[mask])
        tables.append(_take(s.records.table, row[mask]))
        where.append(mask)
    order = np.argsort(np.concatenate(where), kind="stable")
    return ids, xb, _take(pa.concat_tables(tables, promote_options="default"), order)


def _take(table, rows: np.ndarray):
    import pyarrow as pa

    return table.take(pa.array(np.asarray(rows, np.int64)))


def _dead_mask(segs, s: Segment) -> np.ndarray:
    """Which rows of segment `s` are dead."""
    lo, hi = np.searchsorted(segs.dead, [s.label, s.label + len(s)])
    mask = np.zeros(len(s), bool)
    mask[segs.dead[lo:hi] - s.label] = True
    return mask


def _with_dead(segs, catalog: cat.Catalog) -> cat.Catalog:
    """`catalog` naming a file of the working dead labels (a new one if they changed)."""
    old = np.load(segs.folder / segs.committed.dead) if segs.committed.dead else np.zeros(0, np.int64)
    if not len(segs.dead):
        return replace(catalog, dead=None)
    if np.array_equal(old, segs.dead) and segs.committed.dead:
        return replace(catalog, dead=segs.committed.dead)
    catalog, serial = catalog.serial()
    name = f"dead-{serial:06d}.npy"
    save_npy(segs.folder / name, segs.dead)
    return replace(catalog, dead=name)


def mark_dirty(segs, ids: np.ndarray) -> None:
    """Commit the committed version with `ids` (sorted int64) as its dirty ids (segments.py)."""
    working, serial = segs.catalog.serial()
    name = f"dirty-{serial:06d}.npy"
    save_npy(segs.folder / name, ids)
    segs.catalog = replace(working, dirty=name)
    committed = replace(segs.committed, dirty=name, next_serial=working.next_serial)
    cat.write(segs.folder, committed, keep=segs.catalog.files())
    segs.committed = committed


def save_npy(path, a: np.ndarray) -> None:
    """np.save, atomically."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.save(f, a)
