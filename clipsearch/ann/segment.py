"""One segment of a collection's ANN index: rows written together, then never changed.

Files of segment S in the collection's `<name>.ann/` folder (catalog.py names them):
- `S.ids`: the rows' ids, int64, ascending (npy);
- `S.vec`: their vectors in the same order (npy, VECTOR_DTYPE): the exact re-rank reads its few
  candidates' from here;
- `S.rows`: what hits show of them, in the same order (store/snapshot.py);
- `S-qQ.ivf`, when the index is IVF-PQ: their lists under the trained quantizer Q (lists.py), each
  row labelled with the segment's first label plus its position.
All are memory-mapped at open: no row is read until a query needs it. Rows removed later are
marked dead in the catalog, not deleted here.
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
from clipsearch.store import snapshot

#: The stored vectors stay float32: float16 would halve the file, but the re-rank's near-ties
#: then come out in another order: recall@10 0.963 against 0.997 at 1M bursty vectors (nprobe 64,
#: docs/scale.md).
VECTOR_DTYPE = "float32"
#: Rows gathered at once when a segment is read whole (merges, duplicates): bounds the float32 copy.
CHUNK = 65_536


def stem(folder: Path, serial: int) -> Path:
    return folder / f"{serial:06d}"


class Writer:
    """Writes one segment's files from chunks of rows given in ascending id order (plain writes: a
    merge at 1M would otherwise map 2 GB of written pages into the process)."""

    def __init__(self, folder: Path, serial: int, n: int, dim: int, rows_schema, dtype: str = VECTOR_DTYPE):
        """`rows_schema`: of the records (pyarrow), those appended are made to fit it."""
        import pyarrow as pa

        self.n, self.at, self._schema, self._last, self._dtype = n, 0, rows_schema, -1, np.dtype(dtype)
        self._stack = ExitStack()
        base = stem(folder, serial)
        self._ids = self._open_npy(base.with_suffix(".ids"), np.int64, (n,))
        self._vec = self._open_npy(base.with_suffix(".vec"), dtype, (n, dim))
        rows_tmp = self._stack.enter_context(atomic_file(base.with_suffix(".rows")))
        self._rows = self._stack.enter_context(pa.ipc.new_file(str(rows_tmp), rows_schema))

    def _open_npy(self, path: Path, dtype, shape):
        f = self._stack.enter_context(open(self._stack.enter_context(atomic_file(path)), "wb"))
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_2_0(f, header)
        return f

    def append(self, ids: np.ndarray, xb: np.ndarray, rows) -> None:
        """ids (m,) int64 ascending and above every id appended before; xb (m, D); rows: their
        records, a pyarrow Table of m rows."""
        ids = np.asarray(ids, np.int64)
        if len(ids) == 0:
            return
        if ids[0] <= self._last or np.any(np.diff(ids) <= 0) or rows.num_rows != len(ids) or len(xb) != len(ids):
            raise ValueError("a segment's rows must come in ascending id order, each with its vector and record")
        self._ids.write(ids.tobytes())
        self._vec.write(np.ascontiguousarray(xb, self._dtype).tobytes())
        self._rows.write_table(snapshot.conform(rows, self._schema))
        self.at, self._last = self.at + len(ids), int(ids[-1])

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind, err, tb) -> None:
        """Flush and rename the files into place; delete them if the block failed or fell short."""
        short = kind is None and self.at != self.n
        if short:
            kind, err = ValueError, ValueError(f"a segment got {self.at} rows of {self.n}")
        self._stack.__exit__(kind, err, tb)
        if short:
            raise err


class Segment:
    """One written segment: ids memory-mapped, vectors read with pread, records mapped when needed."""

    def __init__(self, part: Part, ids: np.ndarray, vectors: _VectorFile, rows_path: Path):
        self.part, self.ids, self._vectors, self._rows_path = part, ids, vectors, rows_path
        self._records: snapshot.Records | None = None

    @classmethod
    def open(cls, folder: Path, part: Part, dim: int) -> Segment:
        """Open segment `part`'s files; OSError or ValueError if one is missing or doesn't match."""
        base = stem(folder, part.serial)
        ids = np.load(base.with_suffix(".ids"), mmap_mode="r")
        vectors = _VectorFile(base.with_suffix(".vec"))
        if ids.shape != (part.rows,) or vectors.shape != (part.rows, dim):
            raise ValueError(f"segment {base} holds {vectors.shape} vectors and {ids.shape} ids, its "
                             f"catalog says {part.rows} of dim {dim}")
        segment = cls(part, ids, vectors, base.with_suffix(".rows"))
        if len(segment.records) != part.rows:
            raise ValueError(f"{base}.rows holds {len(segment.records)} records, not {part.rows}")
        return segment

    def __len__(self) -> int:
        return self.part.rows

    @property
    def label(self) -> int:
        return self.part.label

    def find(self, ids: np.ndarray) -> np.ndarray:
        """Row positions of `ids` (int64, any order), -1 where the segment doesn't hold one."""
        ids = np.asarray(ids, np.int64)
        if not len(self.ids) or not len(ids):
            return np.full(len(ids), -1, np.int64)
        pos = np.searchsorted(self.ids, ids).clip(0, len(self.ids) - 1)
        return np.where(self.ids[pos] == ids, pos, -1)

    def vectors_at(self, pos: np.ndarray) -> np.ndarray:
        """(len(pos), D) float32 vectors at these row positions."""
        return self._vectors.rows(np.asarray(pos, np.int64))

    @property
    def records(self) -> snapshot.Records:
        if self._records is None:
            self._records = snapshot.Records.open(self._rows_path)
        return self._records

    def span(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 vectors) of rows start..end-1, in one read."""
        return np.asarray(self.ids[start:end]), self._vectors.span(start, end)

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(first position, ids, float32 vectors) of consecutive rows, `size` at a time."""
        for s in range(0, len(self), size):
            e = min(s + size, len(self))
            yield s, np.asarray(self.ids[s:e]), self._vectors.span(s, e)


class _VectorFile:
    """The rows of a .vec file (npy, float32), read with pread: a query reads its few candidates
    without mapping the file, because mapped pages count in the process's memory, and the kernel maps
    a cached file 64 KB around every page touched: 200 queries at 1M mapped the whole 2 GB file,
    where their reads touch a few MB (docs/scale.md)."""

    def __init__(self, path: Path):
        self._f = open(path, "rb", buffering=0)
        shape, _, dtype = _read_header(self._f)
        self.shape, self._offset, self._row = shape, self._f.tell(), int(np.prod(shape[1:])) * dtype.itemsize
        self._dtype = dtype
        if os.fstat(self._f.fileno()).st_size != self._offset + shape[0] * self._row:
            raise ValueError(f"{path} is not as long as its header says")

    def span(self, start: int, end: int) -> np.ndarray:
        """Rows start..end-1 as float32, in one read."""
        out = np.empty((end - start, *self.shape[1:]), self._dtype)
        if end > start:
            _read_into(self._f, memoryview(out).cast("B"), self._offset + start * self._row)
        return out.astype(np.float32, copy=False)

    def rows(self, pos: np.ndarray) -> np.ndarray:
        """Rows at `pos` (any order) as float32, one read each, in file order."""
        out = np.empty((len(pos), *self.shape[1:]), self._dtype)
        if not len(pos):
            return out.astype(np.float32, copy=False)
        mv, order = memoryview(out).cast("B"), np.argsort(pos, kind="stable")
        for j, p in zip(order.tolist(), pos[order].tolist()):
            _read_into(self._f, mv[j * self._row:(j + 1) * self._row], self._offset + p * self._row)
        return out.astype(np.float32, copy=False)


def _read_header(f) -> tuple[tuple, bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(f)


def _read_into(f, buf: memoryview, offset: int) -> None:
    if hasattr(os, "preadv"):
        n = os.preadv(f.fileno(), [buf], offset)
    else:  # Windows: no pread
        with _SEEK:
            f.seek(offset)
            n = f.readinto(buf)
    if n != len(buf):
        raise OSError(f"{f.name} is shorter than its header says: delete its folder and rebuild")


_SEEK = threading.Lock()
