"""The ANN index's file: magic, a JSON header (format, size, crc32, the caller's fields), FAISS bytes.

Written atomically (temp file in the same directory, fsync, rename, fsync of the directory), so a
crash leaves the old file or the new one; read back with every kind of damage reported as
IndexDirError, which the index answers by rebuilding from the stored vectors.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from clipsearch.durable import atomic_write
from clipsearch.errors import IndexDirError

FORMAT = 1
_MAGIC = b"CSANN\x00\x01\n"


def write(path: Path, blob: np.ndarray, meta: dict) -> None:
    """Save `blob` (uint8, e.g. faiss.serialize_index) with `meta` in its header, atomically."""
    head = json.dumps(meta | {"format": FORMAT, "nbytes": int(blob.nbytes), "crc32": zlib.crc32(blob)}).encode()
    atomic_write(path, _MAGIC + len(head).to_bytes(4, "little") + head, memoryview(blob))


def read(path: Path) -> tuple[dict, np.ndarray]:
    """(header, blob) of a file written by `write`; IndexDirError if missing, damaged or too new."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise IndexDirError(f"ANN index {path} is missing; rebuild the index") from e
    except OSError as e:
        raise IndexDirError(f"ANN index {path} can't be read ({e}); check permissions") from e
    try:
        head, blob = _unpack(data)
    except (ValueError, KeyError, TypeError) as e:
        raise IndexDirError(f"ANN index {path} is corrupt ({e}); delete it and rebuild") from e
    if head.get("format", 0) > FORMAT:
        raise IndexDirError(f"ANN index {path} is from a newer clipsearch; upgrade it")
    return head, blob


def _unpack(data: bytes) -> tuple[dict, np.ndarray]:
    if not data.startswith(_MAGIC):
        raise ValueError("not a clipsearch ANN file")
    start = len(_MAGIC) + 4
    end = start + int.from_bytes(data[len(_MAGIC) : start], "little")
    head = json.loads(data[start:end])
    blob = np.frombuffer(data, dtype=np.uint8, offset=min(end, len(data)))
    if len(blob) != head["nbytes"] or zlib.crc32(blob) != head["crc32"]:
        raise ValueError("truncated or checksum mismatch")
    return head, blob

