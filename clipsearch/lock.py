"""The writer lock: one process at a time changes an index; readers never wait for it."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import IndexDirError

LOCK_FILE = "write.lock"


class WriteLock:
    """An exclusive, non-blocking lock on ROOT/write.lock, held as a context manager.

    An OS file lock (flock): the kernel drops it when its holder exits however it exits, SIGKILL
    included, so a killed run never leaves a stale lock behind. The file itself stays (removing it
    would race with the next locker) and names the last holder's pid.
    """

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self._fd: int | None = None

    def __enter__(self) -> "WriteLock":
        import fcntl

        path = self.root / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise IndexDirError(f"can't lock the index at {self.root} for writing ({e.strerror}): "
                                "check that the directory is writable") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise IndexDirError(f"another clipsearch process (pid {holder}) is writing to the index at "
                                f"{self.root}: wait for it to finish, then run this again (queries "
                                "keep working meanwhile)") from e
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None
