"""A segment's records one per line (`S.rec`, beside its Arrow records file): what a hit reads.

The Arrow file (snapshot.py) keeps records by column, which merges want; a hit wants one record
whole. From the Arrow file that is a batch of 256 rows read and a row of 19 columns made into Python
objects (~60 us a hit at 1M, 0.6 ms of a 10-hit query); from this file it is one pread and one
json.loads (~5 us). Written once, atomically, with its segment. Segments written before it, or whose
columns this doesn't encode (nested types, times with a time zone), have none: hits read the Arrow file.

Layout: a header line (JSON: the columns' names and kinds), a line of JSON values per row, then the
rows' offsets (int64, rows + 1) and, in the last 8 bytes, where the offsets start.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

_EPOCH = datetime(1970, 1, 1)
#: Timestamp units this keeps, as the timedelta keyword that turns the stored integer back into a time.
_UNITS = {"s": "seconds", "ms": "milliseconds", "us": "microseconds"}
_TAIL = 8


def kinds(schema) -> list[str] | None:
    """How each column of `schema` (pyarrow) is kept: "value" (JSON as it is), "bytes" (latin-1
    text), "s"/"ms"/"us" (a timestamp's integer); None when a column can't be."""
    import pyarrow as pa

    out = []
    for f in schema:
        t = f.type
        if pa.types.is_timestamp(t) and t.tz is None and t.unit in _UNITS:
            out.append(t.unit)
        elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
            out.append("bytes")
        elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) \
                or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
            out.append("value")
        else:
            return None
    return out


class Writer:
    """Appends records (pyarrow Tables of one schema) to an open binary file; `close` ends it."""

    def __init__(self, f, schema, kinds_: list[str]):
        self._f, self._kinds, self._offsets = f, kinds_, []  # where each record's line starts
        f.write((json.dumps({"columns": schema.names, "kinds": kinds_}) + "\n").encode())

    def append(self, rows) -> None:
        cols = [_encoded(c, kind) for c, kind in zip(rows.columns, self._kinds)]
        for values in zip(*cols):
            self._offsets.append(self._f.tell())
            self._f.write((json.dumps(values, ensure_ascii=False, separators=(",", ":")) + "\n").encode())

    def close(self) -> None:
        at = self._f.tell()
        self._f.write(np.asarray(self._offsets + [at], np.int64).tobytes())
        self._f.write(np.int64(at).tobytes())


def _encoded(column, kind: str) -> list:
    import pyarrow as pa

    if kind in _UNITS:
        return column.cast(pa.int64()).to_pylist()
    if kind == "bytes":
        return [None if b is None else b.decode("latin-1") for b in column.to_pylist()]
    return column.to_pylist()


class Reader:
    """The records of a `.rec` file by row position; opened, not read (the offsets are mapped)."""

    def __init__(self, path: Path, rows: int):
        """OSError or ValueError if the file is missing, damaged, or doesn't hold `rows` records."""
        self._f = open(path, "rb", buffering=0)
        try:
            size = os.fstat(self._f.fileno()).st_size
            at = int(np.frombuffer(_pread(self._f, _TAIL, size - _TAIL), np.int64)[0]) if size >= _TAIL else -1
            if at < 0 or size != at + 8 * (rows + 1) + _TAIL:
                raise ValueError(f"{path} doesn't hold {rows} records")
            # Mapped, as a plain array: a numpy memmap costs ~10 us an indexing.
            self._offsets = np.asarray(np.memmap(path, np.int64, "r", at, (rows + 1,)))
            header = json.loads(_pread(self._f, int(self._offsets[0]), 0))
            self._names = header["columns"]
            self._convert = [(n, _decoder(kind)) for n, kind in enumerate(header["kinds"]) if kind != "value"]
        except BaseException:
            self._f.close()
            raise

    def at(self, positions: np.ndarray) -> list[dict]:
        """The records (column -> value) at these row positions, in their order."""
        out, positions = [], np.asarray(positions, np.int64)
        for start, end in zip(self._offsets[positions].tolist(), self._offsets[positions + 1].tolist()):
            values = json.loads(_pread(self._f, end - start, start).decode())
            for n, decode in self._convert:
                if values[n] is not None:
                    values[n] = decode(values[n])
            out.append(dict(zip(self._names, values)))
        return out


def _decoder(kind: str):
    if kind == "bytes":
        return lambda s: s.encode("latin-1")
    unit = _UNITS[kind]
    return lambda v: _EPOCH + timedelta(**{unit: v})


def _pread(f, n: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(f.fileno(), n, offset)
    with _SEEK:  # Windows: no pread
        f.seek(offset)
        return f.read(n)


_SEEK = threading.Lock()
