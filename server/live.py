"""Live: what a running server serves follows the commits made to its index by other processes.

A thread looks at the index directory every `poll_s` seconds. Its stamp changes with every commit
(a new Lance version of any table), every saved ANN index and every manifest write. Then the whole
served state is built again in that thread, beside the one answering queries, and swapped in with
one assignment once it is complete: a query sees the old state or the new, never a mix, and never a
half-written one (a Lance version is committed atomically, and the state is built from one).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable, Generic, TypeVar

from clipsearch.store import snapshot
from clipsearch.store.manifest import FILENAME

T = TypeVar("T")
log = logging.getLogger("clipsearch.server")


def index_stamp(root: Path) -> tuple:
    """What changes whenever anything a query reads changes: the manifest, each table's committed
    versions, each ANN index's committed catalog."""
    parts = [_mtime(root / FILENAME)]
    lance = root / "lance"
    try:
        tables = sorted(n for n in os.listdir(lance) if n.endswith(".lance"))
    except OSError:
        tables = []
    parts += [(n, snapshot.stamp(lance / n)) for n in tables]
    parts += [(p.name, _mtime(p)) for p in sorted(root.glob("*.faiss"))]  # indexes of schema <= 6
    parts += [(p.parent.name, _mtime(p)) for p in sorted(root.glob("*.ann/catalog.json"))]
    return tuple(parts)


def _mtime(path: Path) -> int:
    try:
        st = path.stat()
        return st.st_mtime_ns ^ st.st_size
    except OSError:
        return 0


class Live(Generic[T]):
    """`current` is the latest complete `build()`; rebuilt in a thread when `stamp()` changes."""

    def __init__(self, build: Callable[[], T], stamp: Callable[[], object], poll_s: float):
        self._build, self._stamp, self.poll_s = build, stamp, poll_s
        self._seen = stamp()
        self.current: T = build()
        self.generation = 0  # how many times a new state was swapped in
        self.error: str | None = None  # why the last rebuild failed (the old state keeps serving)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Live[T]:
        self._thread = threading.Thread(target=self._watch, name="clipsearch-live", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def refresh(self) -> bool:
        """Build and swap in a new state if the stamp moved; True if it did."""
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        try:
            fresh = self._build()
        except Exception as e:  # a writer mid-switch, files vanishing: keep serving, try again
            self.error = f"{type(e).__name__}: {e}"
            log.warning("index changed but can't be reopened yet (%s); still serving the previous state", e)
            return False
        self.current, self._seen, self.error = fresh, stamp, None
        self.generation += 1
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.refresh()
