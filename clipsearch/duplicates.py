"""Duplicate groups: byte-identical copies (same content hash) and near-duplicates (cosine at or
above a threshold), largest group first, each with a suggested keeper and the reason for it.

Grouping is seed-bounded, not single-linkage: the pairs at or above the threshold (selfjoin.py)
form connected components, and each component is cut into stars, a seed (the image with the most
duplicates left) and the images at or above the threshold of it. So every member is a duplicate
of its group's seed, and a chain of look-alikes (A~B, B~C, C~D) cannot pull A and D together
through the images between them, the false groups single-linkage makes in photo libraries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipsearch.ann import selfjoin
from clipsearch.errors import InputError


@dataclass(frozen=True)
class Member:
    """One image of a group; `similarity` is its cosine to the group's keeper."""

    id: int
    path: str
    similarity: float
    width: int
    height: int
    size: int
    date: float  # when it was taken if the index knows, else its mtime; epoch seconds
    hash: str = ""


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that are copies of one another: the suggested keeper first, then by similarity."""

    members: tuple[Member, ...]
    reason: str  # why the first member is the one to keep
    exact: bool  # every member has the same bytes

    @property
    def keeper(self) -> Member:
        return self.members[0]

    @property
    def kind(self) -> str:
        return "exact" if self.exact else "near"

    def __len__(self) -> int:
        return len(self.members)


def star_groups(n: int, i: np.ndarray, j: np.ndarray, s: np.ndarray) -> list[np.ndarray]:
    """Seed-bounded groups of 0..n-1 from pairs (i, j) with similarity s (all at or above the
    threshold): each group is a seed and its neighbours; largest first, members as int64 arrays."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(i) == 0:
        return []
    A = coo_matrix((np.r_[s, s].astype(np.float64), (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()
    _, label = connected_components(A, directed=False)
    sizes = np.bincount(label)
    order = np.argsort(label, kind="stable")
    bounds = np.r_[0, np.cumsum(sizes)]
    # A component with an image close to all the others is one star: no need to cut it.
    hub = np.maximum.reduceat(np.diff(A.indptr)[order], bounds[:-1]) == sizes - 1
    groups = []
    for c in np.flatnonzero(sizes >= 2):
        nodes = order[bounds[c] : bounds[c + 1]]
        groups += [nodes] if hub[c] else [nodes[g] for g in _stars(A[nodes][:, nodes])]
    return sorted(groups, key=lambda g: (-len(g), int(g.min())))


def _stars(A) -> list[np.ndarray]:
    """Cut one component (its CSR similarity matrix, zero = not a pair) into stars of 2 or more."""
    A = A.tocsr()
    left = np.ones(A.shape[0], bool)
    out = []
    while left.sum() >= 2:
        sub = A.multiply(left[None, :]).tocsr()  # pairs with images not yet placed
        sub.eliminate_zeros()
        degree = np.diff(sub.indptr) * left
        if degree.max() == 0:
            break
        strength = np.asarray(sub.sum(1)).ravel()
        seed = int(np.lexsort((-strength, -degree))[0])
        members = np.r_[seed, sub.indices[sub.indptr[seed] : sub.indptr[seed + 1]]]
        left[members] = False
        out.append(members)
    return out


def near_groups(xb: np.ndarray, threshold: float, ann=None, rows: np.ndarray | None = None) -> list[np.ndarray]:
    """Groups of rows of xb (N, D) float32 unit vectors, largest first (int64 arrays of positions
    in `rows` when given: only those rows are grouped).

    `ann` (an AnnIndex over the same vectors) lends its IVF centroids as the cells of the
    self-join; without one, or when it is exact, cells are trained on xb by k-means.
    """
    xb = np.ascontiguousarray(xb, np.float32)
    n = len(xb) if rows is None else len(rows)
    n_cells = selfjoin.cell_count(n)
    if n_cells == 1:
        cells = np.zeros((n, 1), np.int64)
    else:
        C = ann.centroids() if ann is not None else None
        if C is None:
            C = selfjoin.train_cells(xb if rows is None else xb[rows[:: max(1, n // (64 * n_cells))]], n_cells)
        cells = selfjoin.nearest_cells(xb, C, rows=rows)
    i, j, s = selfjoin.pairs_above(xb, threshold, cells, rows)
    return star_groups(n, i, j, s)


def merge_exact(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(representatives, node of each row): rows with the same non-empty key (content hash) are one
    node, represented by the first of them; rows with an empty key are nodes of their own."""
    keys = np.asarray(keys, dtype=str)
    full, empty = np.flatnonzero(keys != ""), np.flatnonzero(keys == "")
    _, first, inverse = np.unique(keys[full], return_index=True, return_inverse=True)
    node = np.empty(len(keys), np.int64)
    node[full] = inverse
    node[empty] = len(first) + np.arange(len(empty))
    return np.r_[full[first], empty].astype(np.int64), node


def group_rows(xb: np.ndarray, threshold: float, keys: np.ndarray | None = None,
               ann=None) -> list[np.ndarray]:
    """Duplicate groups of rows of xb, largest first: rows with equal content `keys` are one image
    (grouped whatever their vectors), and images at or above `threshold` of a seed join it."""
    reps, node = merge_exact(np.full(len(xb), "") if keys is None else keys)
    grouped = near_groups(xb, threshold, ann, reps)
    order = np.argsort(node, kind="stable")
    bounds = np.searchsorted(node[order], np.arange(len(reps) + 1))
    rows_of = lambda n: order[bounds[n] : bounds[n + 1]]  # noqa: E731
    in_group = np.zeros(len(reps), bool)
    out = []
    for g in grouped:
        in_group[g] = True
        out.append(np.concatenate([rows_of(n) for n in g]))
    copies = np.flatnonzero((np.diff(bounds) >= 2) & ~in_group)  # byte-identical, nothing near
    out += [rows_of(n) for n in copies]
    return sorted(out, key=lambda g: (-len(g), int(g.min())))


_COLUMNS = ("id", "hash", "path", "width", "height", "size", "mtime", "taken", "time_s", "vector")


def find_duplicates(index, threshold: float | None = None, folder: str | None = None,
                    min_group: int = 2) -> list[DuplicateGroup]:
    """The duplicate groups of an index's images (those under `folder` if given), largest first.

    Exact copies come from the content hashes, near ones from the stored vectors, at `threshold`
    (default: Settings().duplicate_threshold) cosine to the group's seed; the ANN index's IVF cells
    are reused when it has them. Groups smaller than `min_group` are left out.
    """
    from clipsearch.config import Settings

    threshold = Settings().duplicate_threshold if threshold is None else float(threshold)
    if not 0 < threshold <= 1:
        raise InputError(f"the threshold is a cosine similarity in (0, 1], not {threshold}: "
                         f"try {Settings().duplicate_threshold}")
    ann = index.images.ann()
    meta, xb = _read(index.images, folder, vectors=False)
    xb = ann.vectors_of(meta["id"])  # the ANN index holds the exact vectors: no table read
    if xb is None:  # an ANN file from before it kept them: read them from the table
        meta, xb = _read(index.images, folder, vectors=True)
    if folder is not None and not len(xb):
        raise InputError(f"nothing in the index is at or under {folder}: `clipsearch info` lists the "
                         "indexed folders")
    ids, hashes = meta["id"], meta["hash"]
    groups = [g for g in group_rows(xb, threshold, hashes, ann) if len(g) >= min_group]
    members = np.concatenate(groups) if groups else np.zeros(0, np.int64)
    rows = {}
    for s in range(0, len(members), 4096):  # paths as the OS spells them (path_raw)
        rows |= index.images.rows(ids[members[s : s + 4096]])
    return [_group(g, xb, ids, rows, hashes, meta["taken"], meta["mtime"]) for g in groups]


def _read(images, folder, vectors: bool) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Columns (id, hash, mtime, taken) and (N, D) float32 vectors of the still images (under `folder`),
    read batch by batch into one array (`vectors`: else None). Reading 1M x 512-d vectors this way
    peaked at 4.9 GB: their 2 GB, and LanceDB's read buffers, which it keeps."""
    import pyarrow as pa
    import pyarrow.compute  # noqa: F401  (pa.compute)

    xb = np.empty((len(images) if vectors else 0, images.dim), np.float32)
    meta, at = {"id": [], "hash": [], "mtime": [], "taken": []}, 0
    for b in images.batches(_COLUMNS if vectors else [c for c in _COLUMNS if c != "vector"]):
        if "time_s" in b.schema.names:  # video frames are not files: a video's frames share its hash
            b = b.filter(pa.compute.is_null(b.column("time_s")))
        if folder is not None:
            b = b.filter(pa.array(_under_mask(b.column("path").to_pylist(), folder)))
        if vectors:
            if at + b.num_rows > len(xb):  # rows added since the count
                xb = np.concatenate([xb, np.empty((at + b.num_rows - len(xb), xb.shape[1]), np.float32)])
            col = b.column("vector").flatten().to_numpy(zero_copy_only=False)
            xb[at : at + b.num_rows] = col.reshape(b.num_rows, xb.shape[1])
        at += b.num_rows
        names = b.schema.names
        meta["id"].append(b.column("id").to_numpy())
        meta["hash"] += [h or "" for h in b.column("hash").to_pylist()] if "hash" in names else [""] * b.num_rows
        meta["mtime"].append(b.column("mtime").to_numpy())
        meta["taken"].append(_epoch(b.column("taken")) if "taken" in names else np.full(b.num_rows, np.nan))
    out = {k: np.concatenate(v) if v else np.zeros(0) for k, v in meta.items() if k != "hash"}
    out["id"] = out["id"].astype(np.int64)
    out["hash"] = np.array(meta["hash"], dtype=str)
    return out, xb[:at] if vectors else None


def _group(g, xb, ids, rows, hashes, taken, mtime) -> DuplicateGroup:
    g = np.array([r for r in g if int(ids[r]) in rows])  # rows deleted meanwhile are dropped
    rs = [rows[int(ids[r])] for r in g]
    dated = ~np.isnan(taken[g])
    dates = np.where(dated, taken[g], mtime[g])
    k, reason = choose_keeper([r.width for r in rs], [r.height for r in rs], [r.size for r in rs],
                              dates, [r.path for r in rs], dated)
    sim = xb[g] @ xb[g[k]]
    sim[k] = 1.0
    order = np.r_[k, [p for p in np.argsort(-sim, kind="stable") if p != k]].astype(int)
    members = tuple(Member(r.id, r.path, float(sim[p]), r.width, r.height, r.size, float(dates[p]),
                           hashes[g[p]]) for p in order for r in [rs[p]])
    exact = bool(hashes[g[0]]) and bool((hashes[g] == hashes[g[0]]).all())
    return DuplicateGroup(members, reason, exact)


def _under_mask(paths: list[str], folder: str):
    import os

    from clipsearch.media.files import under

    targets = sorted({os.path.abspath(os.path.expanduser(folder)), os.path.realpath(os.path.expanduser(folder))})
    return [under(p, targets) for p in paths]


def _epoch(col) -> np.ndarray:
    """A date column (timestamp, date, number of epoch seconds, or EXIF/ISO text) -> float64 epoch
    seconds, NaN where missing or unreadable."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        parsed = [pc.strptime(col, f, "s", error_is_null=True) for f in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")]
        col = pc.coalesce(*parsed)
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        col = pc.cast(pc.cast(col, pa.timestamp("s")), pa.int64())
    try:
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
    except (TypeError, ValueError):
        return np.full(len(col), np.nan)


def choose_keeper(widths, heights, nbytes, dates, names, taken) -> tuple[int, str]:
    """Position of the image to keep among a group's, and why: most pixels, then the largest file,
    then the earliest date (`taken[i]`: dates[i] is when it was taken, not its mtime), then name."""
    w, h, b, d = (np.asarray(a) for a in (widths, heights, nbytes, dates))
    px = w.astype(np.int64) * h
    order = np.lexsort((np.asarray(names, dtype=str), d, -b, -px))
    k, r = int(order[0]), int(order[1]) if len(order) > 1 else int(order[0])
    if px[k] > px[r]:
        return k, f"most pixels ({w[k]}x{h[k]})"
    if b[k] > b[r]:
        return k, f"largest file ({_human(int(b[k]))}) of the largest images"
    if d[k] < d[r]:
        what = "taken first" if taken[k] else "oldest file (no date taken: by mtime)"
        return k, f"{what}, {_date(d[k])}, of the largest images and files"
    return k, "same pixels, bytes and date: first by path"


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _date(t: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
