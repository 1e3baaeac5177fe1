"""The writer lock: one process at a time changes an index; readers never wait for it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from clipsearch.errors import IndexDirError, LockedError

LOCK_FILE = "write.lock"


class WriteLock:
    """An exclusive, non-blocking lock on ROOT/write.lock; a reentrant context manager.

    An OS file lock (flock): the kernel drops it when its holder exits however it exits, SIGKILL
    included, so a killed run never leaves a stale lock behind. The file itself stays (removing it
    would race with the next locker) and names the last holder's pid. Nested `with` blocks of one
    holder share the lock; `on_acquire` runs when it is first taken (to see what others committed).
    """

    def __init__(self, root: Path | str, on_acquire: Callable[[], None] = lambda: None,
                 filename: str = LOCK_FILE):
        self.root, self.filename = Path(root), filename
        self._on_acquire = on_acquire
        self._fd: int | None = None
        self._depth = 0

    def __enter__(self) -> "WriteLock":
        self._depth += 1
        if self._depth == 1:
            self._fd = self._acquire_or_back_out()
            try:
                self._on_acquire()
            except BaseException:
                self.__exit__()
                raise
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._release()

    def _acquire_or_back_out(self) -> int:
        try:
            return self._acquire()
        except BaseException:
            self._depth -= 1
            raise

    def _acquire(self) -> int:
        import fcntl

        path = self.root / self.filename
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
            raise LockedError(f"another clipsearch process (pid {holder}) is writing to the index at "
                              f"{self.root}: wait for it to finish, then run this again (queries "
                              "keep working meanwhile)") from e
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None
