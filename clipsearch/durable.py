"""Durable file writes: a crash leaves the old file or the new one, never a half-written one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def atomic_write(path: Path, *chunks: bytes | memoryview) -> None:
    """Write `chunks` to a temp file beside `path`, fsync it, rename it over `path`, fsync the folder."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        for chunk in chunks:
            f.write(chunk)


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temp path beside `path` for a writer that wants a file name (faiss, numpy); when the block
    ends without an error it is fsynced and renamed over `path`, else deleted."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(d: Path) -> None:
    """Make renames and unlinks in `d` durable."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # Windows can't open directories; the rename is durable enough there
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
