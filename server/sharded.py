"""An index whose images live in shards: each shard the images of one id range with its own ANN
index; a query fans out to every shard and the k best of their answers are merged, exactly.

`ShardedIndex` stands in for `Index` wherever a query needs one (the `Matcher` above all), so a
sharded server runs the same query method as a single one. How shards are reached is a
`Fan`: `fan(method, *args)` calls `method` on every shard and returns their answers in shard
order (Ray Serve handles in `rayserve.py`; plain objects in tests). Every call names the Lance
version it reads, so all shards answer from the same committed state (see `ShardReplica`).
"""

from __future__ import annotations

import heapq
from pathlib import Path
from typing import Callable

import numpy as np

from clipsearch.collection import Collection
from clipsearch.index import Index
from clipsearch.store.records import Hit, Row
from clipsearch.store.tables import ImageTable, Store

Fan = Callable[..., list]
#: Versions a shard keeps open: the one queries use and the next one being prepared.
KEEP_VERSIONS = 2


def bounds(max_id: int, n: int) -> list[tuple[int, int | None]]:
    """n id ranges [lo, hi) of about equal size over ids 0..max_id; the last one open-ended, so that
    rows added later land in it until the shards are laid out again."""
    cuts = [round(i * (max_id + 1) / n) for i in range(n)]
    return [(lo, cuts[i + 1] if i + 1 < n else None) for i, lo in enumerate(cuts)]


def images_uri(index: Index) -> str:
    """Where the Lance dataset of `index`'s images lies (what every shard opens)."""
    return str(Store(index.root / "lance", create=False).table_dir(index.images.name))


class ShardTable(ImageTable):
    """The images table's rows with ids in [lo, hi), read-only, as of one Lance version."""

    def __init__(self, uri: str, version: int, lo: int, hi: int | None, dim: int, name: str):
        import lance

        super().__init__(lance.dataset(uri, version=version), dim, name)
        self._range = f"id >= {int(lo)}" + ("" if hi is None else f" AND id < {int(hi)}")

    @property
    def version(self) -> int:
        return int(self._t.version)

    def __len__(self) -> int:
        return self._t.count_rows(filter=self._range)

    def refresh(self) -> None:
        """A shard never moves by itself: the ingress opens the next version on every shard at once."""

    def _query(self, where: str | None, columns: list[str]):
        return self._t.to_table(columns=columns, filter=self._range if not where else f"({self._range}) AND ({where})")

    def batches(self, names, size: int = 65_536):
        """The named columns of the shard's rows, as arrow record batches (a Lance dataset has no
        LanceDB `search`)."""
        yield from self._query(None, [c for c in names if c in self.schema.names]).to_batches(size)


class ShardReplica:
    """One shard: a Collection (ANN index built from its rows) per Lance version, the last
    KEEP_VERSIONS kept, so that queries on the current one run on while the next one is built."""

    def __init__(self, uri: str, name: str, dim: int, lo: int, hi: int | None, version: int):
        self.uri, self.name, self.dim, self.lo, self.hi = uri, name, dim, lo, hi
        self._open: dict[int, Collection] = {}
        self.prepare(version)

    def prepare(self, version: int) -> int:
        """Open (and index) the shard at `version` if it isn't yet; -> its row count."""
        if version not in self._open:
            table = ShardTable(self.uri, version, self.lo, self.hi, self.dim, self.name)
            # No file by this name exists: the Collection builds the ANN index from the shard's rows.
            coll = Collection(Path(self.uri).parent, table, None, None, writable=False)
            coll.search(np.zeros((1, self.dim), np.float32), 1)
            self._open[version] = coll
            for old in sorted(self._open)[:-KEEP_VERSIONS]:
                del self._open[old]
        return len(self._open[version])

    def search(self, version: int, xq: np.ndarray, k: int, nprobe=None, rerank=None, where=None) -> list[list[Hit]]:
        return self._at(version).search(xq, k, nprobe, rerank, where)

    def vectors_of(self, version: int, ids: np.ndarray) -> np.ndarray:
        return self._at(version).vectors_of(ids)

    def rows(self, version: int, ids) -> dict[int, Row]:
        return self._at(version).rows(ids)

    def info(self, version: int) -> dict:
        return self._at(version).info()

    def _at(self, version: int) -> Collection:
        if version not in self._open:  # a replica restarted by Ray Serve: catch up
            self.prepare(version)
        return self._open[version]


class ShardedImages:
    """The images collection's query interface (search, vectors_of, rows) over shards at one version."""

    def __init__(self, fan: Fan, version: int, name: str):
        self._fan, self.version, self.name = fan, version, name
        self._counts = fan("prepare", version)

    def __len__(self) -> int:
        return sum(self._counts)

    def search(self, xq: np.ndarray, k: int, nprobe=None, rerank=None, where=None) -> list[list[Hit]]:
        """Per query the k best hits of all shards: each shard's k best, merged by score."""
        parts = self._fan("search", self.version, np.ascontiguousarray(xq, np.float32), k, nprobe, rerank, where)
        return [merge([p[q] for p in parts], k) for q in range(len(xq))]

    def vectors_of(self, ids) -> np.ndarray:
        """(len(ids), D): each id is stored in one shard; the others answer zeros for it."""
        return np.sum(self._fan("vectors_of", self.version, np.asarray(ids, np.int64)), axis=0, dtype=np.float32)

    def rows(self, ids) -> dict[int, Row]:
        out = {}
        for part in self._fan("rows", self.version, list(ids)):
            out |= part
        return out

    def info(self) -> dict:
        parts = self._fan("info", self.version)
        return {"name": self.name, "count": len(self), "ann": f"{len(parts)} shards: " + "; ".join(
            f"{p['count']} in {p['ann']}" for p in parts)}


def merge(rows: list[list], k: int) -> list:
    """The k best of several best-first hit lists (ties broken by id, as one index would return them)."""
    return heapq.nsmallest(k, (h for row in rows for h in row), key=lambda h: (-h.score, h.id))


class ShardedIndex:
    """`Index` with its images in shards; texts, manifest and the rest come from `index` itself."""

    def __init__(self, index: Index, images: ShardedImages):
        self._index, self.images = index, images

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._index, name)

    def __len__(self) -> int:
        return len(self.images)


def open_sharded(root: Path, fan: Fan) -> ShardedIndex:
    """The index at `root` with its images answered by the shards at the table's latest version."""
    import lance

    from clipsearch.index import open_index

    index = open_index(root)
    version = lance.dataset(images_uri(index)).version
    return ShardedIndex(index, ShardedImages(fan, version, index.images.name))
