"""One segment of a collection's ANN index: rows written together, then never changed.

Files of segment S in the collection's `<name>.ann/` folder (catalog.py names them):
- `S.ids`: the rows' ids, int64, in row order (npy);
- `S.idx`: the same ids sorted, with their rows (npy, 2 x n): lookups by id;
- `S.vec`: the rows' vectors (npy, VECTOR_DTYPE): the exact re-rank reads its candidates' here;
- `S.rows`: what hits show of them, by column (store/snapshot.py): merges read it;
- `S.rec`: the same, a line a row (store/rowfile.py): hits read it (segments written before it lack it);
- `S-qQ.ivf`, when the index is IVF-PQ: their lists under the trained quantizer Q (lists.py), each
  row labelled with the segment's first label plus its row.
Rows of an IVF-PQ segment are stored list by list (compaction.py), so the candidates of a query,
which come from the few lists it probes, lie in a few runs of the file: a bursty query's 1,024
candidates are ~30 reads (the median at 1M), not 1,024 (docs/scale.md). The files are opened, not
read: no row is read until a query needs it. Rows removed later are marked dead in the catalog, not
deleted here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from clipsearch.ann.catalog import Part
from clipsearch.durable import atomic_file
from clipsearch.store import rowfile, snapshot

#: The stored vectors stay float32: float16 would halve the file, but the re-rank's near-ties
#: then come out in another order: recall@10 0.963 against 0.997 at 1M bursty vectors (nprobe 64,
#: docs/scale.md).
VECTOR_DTYPE = "float32"
#: Rows gathered at once when a segment is read whole (merges, duplicates): bounds the float32 copy.
CHUNK = 65_536


def stem(folder: Path, serial: int) -> Path:
    return folder / f"{serial:06d}"


class Writer:
    """Writes one segment's files from chunks of rows, in the order they are to be stored (plain
    writes: a merge at 1M would otherwise map 2 GB of written pages into the process)."""

    def __init__(self, folder: Path, serial: int, n: int, dim: int, rows_schema, dtype: str = VECTOR_DTYPE):
        """`rows_schema`: of the records (pyarrow), those appended are made to fit it."""
        import pyarrow as pa

        rows_schema = snapshot.layout(rows_schema)
        self.n, self._schema, self._dtype, self._ids = n, rows_schema, np.dtype(dtype), []
        self._base, self._stack, self._tail = stem(folder, serial), ExitStack(), None
        self._vec = self._open_npy(".vec", dtype, (n, dim))
        rows_tmp = self._stack.enter_context(atomic_file(self._base.with_suffix(".rows")))
        self._rows = self._stack.enter_context(pa.ipc.new_file(str(rows_tmp), rows_schema))
        kinds = rowfile.kinds(rows_schema)
        self._lines = None if kinds is None else rowfile.Writer(self._open(".rec"), rows_schema, kinds)

    @property
    def at(self) -> int:
        return sum(map(len, self._ids))

    def _open(self, suffix: str):
        """This segment's file of `suffix`, written to a temp file renamed into place at the end."""
        return self._stack.enter_context(open(self._stack.enter_context(atomic_file(self._base.with_suffix(suffix))), "wb"))

    def _open_npy(self, suffix: str, dtype, shape):
        f = self._open(suffix)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_2_0(f, header)
        return f

    def append(self, ids: np.ndarray, xb: np.ndarray, rows) -> None:
        """ids (m,) int64 (none written before), xb (m, D), their records (a pyarrow Table)."""
        ids = np.asarray(ids, np.int64)
        if rows.num_rows != len(ids) or len(xb) != len(ids):
            raise ValueError("each row of a segment needs its id, vector and record")
        if len(ids):
            self._ids.append(ids)
            self._vec.write(np.ascontiguousarray(xb, self._dtype).tobytes())
            rows = snapshot.conform(rows, self._schema)
            self._write_rows(rows)
            if self._lines is not None:
                self._lines.append(rows)

    def _write_rows(self, rows) -> None:
        """Records in batches of exactly snapshot.BATCH_ROWS (the last one kept for the next call):
        a reader finds row r in batch r // BATCH_ROWS."""
        import pyarrow as pa

        if self._tail is not None:
            rows = pa.concat_tables([self._tail, rows])
        rows = rows.combine_chunks()
        full = rows.num_rows // snapshot.BATCH_ROWS * snapshot.BATCH_ROWS
        if full:
            self._rows.write_table(rows.slice(0, full), max_chunksize=snapshot.BATCH_ROWS)
        self._tail = rows.slice(full)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind, err, tb) -> None:
        """Write the ids, flush and rename the files into place; delete them if the block failed."""
        if kind is None:
            try:
                if self._tail is not None and self._tail.num_rows:
                    self._rows.write_table(self._tail)
                self._write_ids()
                if self._lines is not None:
                    self._lines.close()
            except ValueError as e:
                kind, err = ValueError, e
        self._stack.__exit__(kind, err, tb)
        if err is not None and tb is None:
            raise err

    def _write_ids(self) -> None:
        ids = np.concatenate([np.zeros(0, np.int64), *self._ids])
        order = np.argsort(ids, kind="stable")
        if len(ids) != self.n or np.any(np.diff(ids[order]) == 0):
            raise ValueError(f"a segment got {len(ids)} rows of {self.n}, or an id twice")
        for suffix, a in ((".ids", ids), (".idx", np.stack([ids[order], order]))):
            f = self._open_npy(suffix, np.int64, a.shape)
            f.write(np.ascontiguousarray(a).tobytes())


class Segment:
    """One written segment: ids mapped, vectors read with pread, records mapped when first needed."""

    def __init__(self, part: Part, ids: np.ndarray, index: np.ndarray, vectors: VectorFile, rows_path: Path):
        self.part, self.ids, self._index, self.vectors = part, ids, index, vectors
        self._rows_path, self._records, self._lines = rows_path, None, None

    @classmethod
    def open(cls, folder: Path, part: Part, dim: int) -> Segment:
        """Open segment `part`'s files; OSError or ValueError if one is missing or doesn't match."""
        base = stem(folder, part.serial)
        # Mapped, as plain arrays: a numpy memmap costs ~10 us an indexing, a query does hundreds.
        ids = np.asarray(np.load(base.with_suffix(".ids"), mmap_mode="r"))
        index = np.asarray(np.load(base.with_suffix(".idx"), mmap_mode="r"))
        vectors = VectorFile(base.with_suffix(".vec"))
        if ids.shape != (part.rows,) or index.shape != (2, part.rows) or vectors.shape != (part.rows, dim):
            raise ValueError(f"segment {base} holds {vectors.shape} vectors and {ids.shape} ids, its "
                             f"catalog says {part.rows} of dim {dim}")
        segment = cls(part, ids, index, vectors, base.with_suffix(".rows"))
        if len(segment.records) != part.rows:
            raise ValueError(f"{base}.rows holds {len(segment.records)} records, not {part.rows}")
        return segment

    def __len__(self) -> int:
        return self.part.rows

    @property
    def label(self) -> int:
        return self.part.label

    def find(self, ids: np.ndarray) -> np.ndarray:
        """Rows of `ids` (int64, any order), -1 where the segment doesn't hold one."""
        ids = np.asarray(ids, np.int64)
        if not len(self) or not len(ids) or ids.max() < self._index[0, 0] or ids.min() > self._index[0, -1]:
            return np.full(len(ids), -1, np.int64)  # none in its range: segments hold runs of ids
        pos = np.searchsorted(self._index[0], ids).clip(0, len(self) - 1)
        return np.where(self._index[0][pos] == ids, self._index[1][pos], -1)

    def vectors_at(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), D) float32 vectors of these rows."""
        rows = np.asarray(rows, np.int64)
        return read_rows([self.vectors], np.zeros(len(rows), np.int64), rows)

    @property
    def records(self) -> snapshot.Records:
        if self._records is None:
            self._records = snapshot.Records.open(self._rows_path)
        return self._records

    def records_at(self, rows: np.ndarray) -> list[dict] | None:
        """The records of these rows from the segment's `.rec` file (rowfile.py), None when it has
        none (written before it): read `records` then."""
        if self._lines is None:
            try:
                self._lines = rowfile.Reader(self._rows_path.with_suffix(".rec"), len(self))
            except (OSError, ValueError):  # none, or damaged: the Arrow file holds the same
                self._lines = False
        return self._lines.at(rows) if self._lines else None

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(first row, ids, float32 vectors) of consecutive rows, `size` at a time."""
        for s in range(0, len(self), size):
            e = min(s + size, len(self))
            yield s, np.asarray(self.ids[s:e]), self.vectors.span(s, e)


class VectorFile:
    """The rows of a .vec file (npy, float32), read with pread: a query reads its few candidates
    without mapping the file, because mapped pages count in the process's memory, and the kernel
    maps far more than the page touched (a whole large folio: one query of 1,024 candidates at 1M
    mapped 1.2 GB of a 2 GB file, docs/scale.md)."""

    def __init__(self, path: Path):
        self.f = open(path, "rb", buffering=0)
        shape, _, dtype = _read_header(self.f)
        self.shape, self.offset, self.dtype = shape, self.f.tell(), dtype
        self.row_bytes = int(np.prod(shape[1:])) * dtype.itemsize
        if os.fstat(self.f.fileno()).st_size != self.offset + shape[0] * self.row_bytes:
            raise ValueError(f"{path} is not as long as its header says")

    def span(self, start: int, end: int) -> np.ndarray:
        """Rows start..end-1 as float32, in one read."""
        out = np.empty((end - start, *self.shape[1:]), self.dtype)
        if end > start:
            _read_into(self.f, memoryview(out).cast("B"), self.offset + start * self.row_bytes)
        return out.astype(np.float32, copy=False)


class Scratch:
    """Memory that one thread's reads reuse, grown as needed and kept: a query's candidates are a few
    MB read into fresh memory, and fresh memory costs a page fault every 4 KB (a 1,024-candidate
    re-rank at 10M took 10 ms instead of 2.5 on this 2-core VM, nearly all of it in faults). Reads
    bigger than KEEP (batches of queries) get fresh memory, so a server doesn't keep a batch's."""

    KEEP = 32 << 20

    def __init__(self):
        self._local = threading.local()

    def array(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialised array of this shape, valid until this thread asks for `name` again."""
        dtype = np.dtype(dtype)
        need = int(np.prod(shape)) * dtype.itemsize
        if need > self.KEEP:
            return np.empty(shape, dtype)
        have = getattr(self._local, name, None)
        if have is None or len(have) < need:
            have = np.empty(min(max(need, 2 * (0 if have is None else len(have))), self.KEEP), np.uint8)
            setattr(self._local, name, have)
        return have[:need].view(dtype).reshape(shape)


def read_rows(files: list[VectorFile], which: np.ndarray, rows: np.ndarray,
              scratch: Scratch | None = None) -> np.ndarray:
    """(len(rows), D) float32: row rows[i] of files[which[i]], in any order (files of one dtype and
    dim). One read per run of consecutive rows in a file, all files in one pass: a query's
    candidates come from a few runs in each segment (its probed lists). With `scratch`, the result
    is its memory, valid until this thread's next read with it; rows asked in file order (a
    re-rank's sorted candidates) are read in place, with no gather (~0.35 ms of 2 MB at 1M).
    Reading the rows between near runs too (up to 4 apart) saved syscalls but cost that gather."""
    dim, dtype, size = files[0].shape[1], files[0].dtype, files[0].row_bytes
    if not len(rows):
        return np.empty((0, dim), np.float32)
    order = np.lexsort((rows, which))
    w, r = which[order], rows[order]
    cut = np.flatnonzero((np.diff(w) != 0) | (np.diff(r) > 1) | (np.diff(r // CHUNK) != 0)) + 1
    starts, ends = np.r_[0, cut], np.r_[cut, len(r)]  # runs of <= CHUNK rows in one file
    lo, lens = r[starts], r[ends - 1] + 1 - r[starts]
    run = np.repeat(np.arange(len(starts)), ends - starts)
    at = np.r_[0, np.cumsum(lens)[:-1]][run] + (r - lo[run])  # each wanted row in what is read
    shape = (int(lens.sum()), dim)
    buf = np.empty(shape, dtype) if scratch is None else scratch.array("read", shape, dtype)
    view, pos = memoryview(buf).cast("B"), 0
    for f, first, n in zip(w[starts].tolist(), lo.tolist(), lens.tolist()):
        file = files[f]
        _read_into(file.f, view[pos * size:(pos + n) * size], file.offset + first * size)
        pos += n
    where = np.empty_like(at)
    where[order] = at
    if scratch is not None and dtype == np.float32 and np.array_equal(where, np.arange(len(buf))):
        return buf
    if scratch is None or dtype != np.float32:
        return buf[where].astype(np.float32, copy=False)
    out = scratch.array("rows", (len(rows), dim), np.float32)
    return np.take(buf, where, axis=0, out=out, mode="clip")  # "raise" would copy through a buffer


def _read_header(f) -> tuple[tuple, bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(f)


def _read_into(f, buf: memoryview, offset: int) -> None:
    if hasattr(os, "preadv"):
        got = os.preadv(f.fileno(), [buf], offset)
    else:  # Windows: no pread
        with _SEEK:
            f.seek(offset)
            got = f.readinto(buf)
    if got != len(buf):
        raise OSError(f"{f.name} is shorter than its header says: run `clipsearch optimize`")


_SEEK = threading.Lock()
