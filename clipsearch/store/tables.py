"""The store: LanceDB tables in the index directory, each row a record with its full vector.

A reader never writes: `Store.open_table` returns None for a table that doesn't exist yet, and a
`VectorTable` over None is empty. Writes go through `clipsearch.collection.Collection`, which holds
the index's write lock and keeps the ANN index in step.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipsearch.errors import IndexDirError
from clipsearch.media.files import under
from clipsearch.media.places import with_places
from clipsearch.store.records import (ADDED_COLUMNS, FAILURES, IMAGES, META_FIELDS, ROW_COLUMNS, Failure, Hit, Row,
                                      TextHit, failure_schema, image_schema, meta_columns, meta_fields,
                                      meta_from_columns, path_columns, path_from_columns, text_schema)


_HEX = re.compile(r"[0-9a-f]{1,128}")


class Store:
    """LanceDB tables in one directory (embedded, no server)."""

    def __init__(self, root: Path, create: bool):
        """`create`: a writer's store, whose directory is made when missing; a reader's store of a
        directory that doesn't exist yet is empty (lancedb would create it). Connects on first use:
        importing lancedb takes ~1.5 s, which a query served by snapshots never pays."""
        self.root, self._create, self._conn = root, create, None

    @property
    def _db(self):
        if self._conn is None and (self._create or self.root.exists()):
            import lancedb

            try:
                self._conn = lancedb.connect(str(self.root))
            except Exception as e:  # lancedb wraps OS errors in several types
                raise IndexDirError(f"can't open the index store at {self.root}: {e}. "
                                    "Check the directory's permissions") from e
        return self._conn

    def table_dir(self, name: str) -> Path:
        """Where the table `name` keeps its files (Lance's layout)."""
        return self.root / f"{name}.lance"

    def open_table(self, name: str):
        """The LanceDB table `name`, or None when it doesn't exist (nothing is created)."""
        if self._db is None:
            return None
        try:
            return self._db.open_table(name)
        except (ValueError, FileNotFoundError):  # lancedb: "Table 'images' was not found"
            return None

    def create_table(self, name: str, schema):
        """The table `name`, created empty with `schema` when missing (writers only)."""
        return self._db.create_table(name, schema=schema, exist_ok=True)

    def drop_table(self, name: str) -> None:
        """Delete the table `name` if it exists (writers only)."""
        if name in self.names():
            self._db.drop_table(name)

    def names(self) -> list[str]:
        """Names of the tables in the store."""
        out, token = [], None
        while self._db is not None:
            page = self._db.list_tables(page_token=token)
            out += page.tables
            if not (token := page.page_token):
                break
        return sorted(out)


class VectorTable:
    """A table of (id, record columns..., vector): what images and text collections share.

    Lookups by id go through a BTREE scalar index on `id` (see `ensure_id_index`), so they cost
    O(k log N) and not a scan of the table.
    """

    SNAPSHOT: tuple[str, ...] = ("id",)  # the columns `hits` needs: what a snapshot keeps

    def __init__(self, name: str, table, schema):
        """`table`: the LanceDB table, None when there is none, or `Later` to open it on first use."""
        self.name, self._table, self._schema = name, table, schema

    @property
    def _t(self):
        if isinstance(self._table, Later):
            self._table = self._table.store.open_table(self._table.name)
        return self._table

    @_t.setter
    def _t(self, table) -> None:
        self._table = table

    @property
    def schema(self):
        if self._schema is None:
            self._schema = self._t.schema if self._t is not None else self._new_schema()
        return self._schema

    @schema.setter
    def schema(self, schema) -> None:
        self._schema = schema

    def _new_schema(self):
        raise NotImplementedError

    @property
    def exists(self) -> bool:
        return self._t is not None

    @property
    def version(self) -> int:
        return int(self._t.version) if self._t is not None else 0

    @property
    def dim(self) -> int:
        return self.schema.field("vector").type.list_size

    def __len__(self) -> int:
        return self._t.count_rows() if self._t is not None else 0

    def refresh(self) -> None:
        """See the latest committed state (another process may have written); a table not opened
        yet will open at its latest anyway."""
        if not isinstance(self._table, Later) and self._table is not None:
            self._table.checkout_latest()

    def vectors(self, ids=None) -> tuple[np.ndarray, np.ndarray]:
        """(ids (N,) int64, vectors (N, D) float32), all of them or those of `ids`."""
        t = self._query(None if ids is None else _id_filter(ids), ["id", "vector"])
        xb = t.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return t.column("id").to_numpy().astype(np.int64), xb.reshape(-1, self.dim).astype(np.float32)

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), D) float32 vectors in the order of `ids`; zeros for ids no longer stored."""
        ids = np.asarray(ids, np.int64)
        found, xb = self.vectors(ids)
        out = np.zeros((len(ids), self.dim), np.float32)
        order = np.argsort(found)
        pos = np.searchsorted(found[order], ids)
        ok = pos < len(found)
        ok[ok] = found[order][pos[ok]] == ids[ok]
        out[ok] = xb[order[pos[ok]]]
        return out

    def meta_table(self, columns: list[str]):
        """These columns of every row (ids included) as a pyarrow Table; those the table lacks are absent."""
        names = self.schema.names
        return self._query(None, ["id", *[c for c in columns if c in names and c != "id"]])

    def batches(self, names, size: int = 65_536):
        """Those of the named columns the table has, for every row, as arrow record batches."""
        names = [c for c in names if c in self.schema.names]
        if self._t is None:
            yield from self._query(None, names).to_batches()
            return
        yield from self._t.search().select(names).limit(None).to_batches(size)

    def snapshot_columns(self) -> list[str]:
        """The columns `hits` needs (SNAPSHOT) that this table has: what the ANN segments keep."""
        return [c for c in self.SNAPSHOT if c in self.schema.names]

    def ids(self) -> np.ndarray:
        """Every id, sorted int64 (a read of the id column only)."""
        return np.sort(self._query(None, ["id"]).column("id").to_numpy()).astype(np.int64)

    def rows_with_vectors(self, ids=None, size: int = 65_536):
        """pyarrow Tables of (SNAPSHOT columns, vector) of every row, or of those of `ids`, `size`
        rows at a time: what the ANN segments are built from."""
        names = [*self.snapshot_columns(), "vector"]
        if ids is None:
            import pyarrow as pa

            for b in self.batches(names, size):
                yield pa.Table.from_batches([b])
            return
        ids = np.asarray(ids, np.int64)
        for s in range(0, len(ids), size):  # by id, through the BTREE on id
            yield self._query(_id_filter(ids[s:s + size]), names)

    def max_id(self) -> int:
        if self._t is None or self._t.count_rows() == 0:
            return -1
        import pyarrow.compute as pc

        return int(pc.max(self._query(None, ["id"]).column("id")).as_py())

    def fragments(self) -> int:
        """How many small fragments the table holds (one per commit until compacted)."""
        return int(self._t.stats()["fragment_stats"]["num_small_fragments"]) if self._t is not None else 0

    # --- writes: called by Collection, under the index's write lock ------------------------

    def _create(self, store: Store) -> None:
        if self._t is None:
            self._t = store.create_table(self.name, self.schema)

    def _append_arrow(self, table) -> None:
        """Commit rows made by `arrow`: one new version."""
        self._t.add(table)

    def arrow(self, records: list, ids, xb: np.ndarray):
        """Records (rows, texts) with their ids and (N, D) vectors as an Arrow table of this table's
        schema: what a writer elsewhere turns into Lance fragments."""
        return self._arrow(self._columns(records), ids, xb)

    def _arrow(self, columns: dict, ids, xb: np.ndarray):
        import pyarrow as pa

        flat = pa.array(np.ascontiguousarray(xb, np.float32).ravel())
        columns = {"id": np.asarray(ids, np.int64), **columns,
                   "vector": pa.FixedSizeListArray.from_arrays(flat, xb.shape[1])}
        names = self.schema.names
        return pa.table({c: v for c, v in columns.items() if c in names}, schema=self.schema)

    def lance_target(self) -> tuple[str, object, str]:
        """(uri, Arrow schema, data storage version) of the Lance dataset: what writers of its
        fragments elsewhere (lance.fragment.write_fragments) need."""
        ds = self._t.to_lance()
        return ds.uri, ds.schema, ds.data_storage_version

    def _append_fragments(self, fragments: list) -> None:
        """Commit Lance fragments written elsewhere: one atomic append."""
        import lance

        lance.LanceDataset.commit(self._t.to_lance().uri, lance.LanceOperation.Append(fragments),
                                  read_version=self.version)
        self.refresh()

    def _delete(self, ids) -> None:
        if len(ids):
            self._t.delete(_id_filter(ids))

    def _compact(self) -> None:
        """Merge small fragments and bring the id index up to date (LanceDB optimize)."""
        self._t.optimize()

    def _ensure_id_index(self) -> bool:
        """Build the BTREE index on `id` if the table lacks it (an older index); True if it did."""
        if self._t is None or self._t.count_rows() == 0:
            return False
        if any(list(i.columns) == ["id"] for i in self._t.list_indices()):
            return False
        from lancedb.index import BTree

        self._t.create_index("id", config=BTree(), replace=False)
        return True

    def _query(self, where: str | None, columns: list[str]):
        import pyarrow as pa

        if self._t is None:
            return pa.table({c: pa.array([], self.schema.field(c).type) for c in columns})
        q = self._t.search().select(columns)
        if where:
            q = q.where(where)
        return q.limit(None).to_arrow()


@dataclass(frozen=True)
class Later:
    """A table to open when first used."""

    store: Store
    name: str


class ImageTable(VectorTable):
    """The images table: `Row`s in, rows and vectors out."""

    SNAPSHOT = ("id", "path", "path_raw", "width", "height", "time_s", *META_FIELDS)

    def __init__(self, table, dim: int, name: str = IMAGES):
        super().__init__(name, table, None)
        self._dim = dim

    def _new_schema(self):
        return image_schema(self._dim)

    def rows(self, ids) -> dict[int, Row]:
        """Rows by id (missing ids are absent from the result)."""
        return {} if len(ids) == 0 else {r.id: r for r in self._rows(_id_filter(ids))}

    def all_rows(self) -> list[Row]:
        """Every row, without its metadata (`meta` None)."""
        return self._rows(None, meta=False)

    def rows_under(self, folders: list[str]) -> list[Row]:
        """The rows of the files at or under `folders`, without their metadata: what planning an
        indexing run of them needs (read with a filter: a run over one folder of a library of
        millions holds that folder's rows, not the library's)."""
        if not folders:
            return []
        near = " OR ".join(f"path = {_sql_str(f)} OR starts_with(path, {_sql_str(f.rstrip(os.sep) + os.sep)})"
                           for f in folders)
        # A path that isn't UTF-8 is stored shown with escapes (path_raw holds its bytes): checked here.
        return [r for r in self._rows(f"{near} OR path_raw IS NOT NULL", meta=False) if under(r.path, folders)]

    def hits(self, ids, scores, records: list[dict] | None = None) -> list[Hit]:
        """Hits of `ids` with `scores`; `records`: their SNAPSHOT columns if read already (else read here)."""
        if records is None:
            found = {i: (r.path, r.width, r.height, r.time_s, r.meta) for i, r in self.rows(ids).items()}
        else:
            found = {r["id"]: (r["path"], r["width"], r["height"], r.get("time_s"), r["meta"])
                     for r in (meta_from_columns(path_from_columns(r)) for r in records)}
        return [Hit(f[0], float(s), int(i), *f[1:]) for i, s in zip(ids, scores) if (f := found.get(int(i)))]

    def with_hashes(self, hashes) -> list[tuple[int, str, float | None]]:
        """(id, hash, time_s) of the rows whose content hash is one of `hashes` (hex strings)."""
        hashes = sorted({h for h in hashes if _HEX.fullmatch(h)})
        if not hashes or "hash" not in self.schema.names:
            return []
        t = self._query(f"hash IN ({','.join(repr(h) for h in hashes)})", ["id", "hash", "time_s"])
        return list(zip(t.column("id").to_pylist(), t.column("hash").to_pylist(), t.column("time_s").to_pylist()))

    def paths_without_meta(self) -> dict[int, str]:
        """id -> path of the rows whose metadata was never read (from before schema 6, or moved files)."""
        if "taken_source" not in self.schema.names:
            return {}
        t = self._query("taken_source IS NULL", ["id", "path", "path_raw"]).to_pylist()
        return {r["id"]: r["path"] for r in map(path_from_columns, t)}

    def _rows(self, where: str | None, meta: bool = True) -> list[Row]:
        names = self.schema.names
        wanted = (*ROW_COLUMNS, "path_raw", *(META_FIELDS if meta else ()))
        t = self._query(where, [c for c in wanted if c in names]).to_pylist()
        return [Row(**meta_from_columns(path_from_columns(r))) for r in t]

    def _columns(self, rows: list[Row]) -> dict:
        rows = _placed(rows)
        cols = path_columns([r.path for r in rows])
        cols |= {name: [getattr(r, name) for r in rows] for name in ROW_COLUMNS if name not in ("id", "path", "hash")}
        return cols | {"hash": [r.hash or None for r in rows]} | meta_columns(rows)

    def _update(self, rows: list[Row]) -> None:
        """Replace the metadata and pixel size of these existing rows, by id, in one commit (merge
        on id: the vectors are not rewritten)."""
        import pyarrow as pa

        if not rows:
            return
        rows = _placed(rows)
        cols = {"id": [r.id for r in rows], "width": [r.width for r in rows], "height": [r.height for r in rows]}
        cols |= meta_columns(rows)
        schema = pa.schema([self._t.schema.field(c) for c in cols])
        self._t.merge_insert("id").when_matched_update_all().execute(pa.table(cols, schema=schema))

    def _upgrade(self) -> bool:
        """Add the columns an older table lacks (empty), schema by schema; True if it had to."""
        missing = {c: sql for c, sql in ADDED_COLUMNS.items() if c not in self._t.schema.names}
        if missing:  # schema 1 -> 2 (hash, path_raw), 3 -> 4 (time_s)
            self._t.add_columns(missing)
        meta = [f for f in meta_fields() if f.name not in self._t.schema.names]
        if meta:  # schema 5 -> 6: filled in from the files' headers by the next `index` (backfill.py)
            self._t.add_columns(meta)
        self.schema = self._t.schema
        return bool(missing or meta)


class TextTable(VectorTable):
    """A text collection's table: texts in, texts and vectors out."""

    SNAPSHOT = ("id", "text")

    def __init__(self, name: str, table, dim: int):
        super().__init__(name, table, None)
        self._dim = dim

    def _new_schema(self):
        return text_schema(self._dim)

    def texts(self, ids=None) -> dict[int, str]:
        """id -> text, for all rows or those of `ids`."""
        t = self._query(None if ids is None else _id_filter(ids), ["id", "text"])
        return dict(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))

    def hits(self, ids, scores, records: list[dict] | None = None) -> list[TextHit]:
        found = self.texts(ids) if records is None else {r["id"]: r["text"] for r in records}
        return [TextHit(found[int(i)], float(s), int(i)) for i, s in zip(ids, scores) if int(i) in found]

    def _columns(self, texts: list[str]) -> dict:
        return {"text": list(texts)}

    def _upgrade(self) -> bool:
        return False


class FailureTable:
    """Files that could not be indexed (FAILURES), or whose headers could not be read (UNREAD), with
    why and their (size, mtime) then: loaded whole, replaced whole (one commit, small)."""

    def __init__(self, store: Store, lock, name: str = FAILURES):
        self._store, self._lock, self.name = store, lock, name

    def all(self) -> list[Failure]:
        t = self._store.open_table(self.name)
        if t is None:
            return []
        rows = t.search().limit(None).to_arrow().to_pylist()
        return [Failure(**path_from_columns(r)) for r in rows]

    def replace(self, failures: list[Failure]) -> None:
        """Store exactly `failures`, atomically (readers see the old list or the new one)."""
        with self._lock:
            t = self._store.create_table(self.name, failure_schema())
            self._write(t, failures)

    def _write(self, t, failures: list[Failure]) -> None:
        import pyarrow as pa

        cols = path_columns([f.path for f in failures])
        cols |= {c: [getattr(f, c) for f in failures] for c in ("reason", "size", "mtime")}
        t.add(pa.table(cols, schema=failure_schema()), mode="overwrite")


def _placed(rows: list[Row]) -> list[Row]:
    """`rows` with place names wherever a GPS position has none yet.

    Here, where every writer of image rows turns them into columns (an in-process commit, a Ray write
    task's fragments, the metadata backfill), so that no way of writing rows can store a position
    that `--place` can't find; the gazetteer loads only when a row needs it.
    """
    todo = [n for n, r in enumerate(rows)
            if r.meta and r.meta.lat is not None and r.meta.lon is not None and r.meta.place is None]
    if not todo:
        return rows
    out = list(rows)
    for n, row in zip(todo, with_places([rows[n] for n in todo])):
        out[n] = row
    return out


def _sql_str(text: str) -> str:
    """`text` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _id_filter(ids) -> str:
    """A SQL filter on ids; ints only, so no value reaches it as text."""
    return f"id IN ({','.join(str(int(i)) for i in np.unique(np.asarray(ids, np.int64))) or '-1'})"
