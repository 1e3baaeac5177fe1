"""The decoding pool: worker processes that decode untrusted files, each within a time limit.

Decoders read untrusted bytes: one may hang or crash its process. Each file gets a time limit in
a worker process; a worker past it is killed, a crashed one replaced, and the file recorded as a
failure, so one bad file costs at most the limit and never the run. Indexing and classification
both decode through it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

from clipsearch.ingest.batch import failure

WORKER_NICENESS = 10

DecodeMap = Callable[[Callable, Iterable[str]], Iterator]


def default_workers() -> int:
    """Decoding processes: every core but the one the encoder's thread feeds from."""
    return max(1, (os.cpu_count() or 1) - 1)


def window(batch_size: int, workers: int) -> int:
    """Files in flight: enough to keep every worker busy while the encoder takes a batch."""
    return max(4 * batch_size, 8 * workers)


@contextmanager
def decoding_map(workers: int, batch_size: int, timeout: float, n_files: int | None = None):
    """A `DecodeMap` over `workers` guarded processes (plain `map` in-process when one would do)."""
    if n_files is not None:
        workers = min(workers, n_files)
    if workers <= 1 and n_files is not None:
        yield map
        return
    with decoding_pool(workers) as pool:
        yield lambda fn, xs: guarded_map(pool, fn, xs, window(batch_size, workers), timeout)


@contextmanager
def decoding_pool(workers: int, niceness: int = WORKER_NICENESS, init: Callable[[], None] | None = None):
    """A pebble process pool whose workers ignore Ctrl-C (the parent alone handles it, and stops them);
    `init()` runs in each worker as it starts, outside any file's time limit (loading a model)."""
    import functools

    from pebble import ProcessPool

    ctx = multiprocessing.get_context("spawn")  # no fork: the parent holds torch threads and locks
    pool = ProcessPool(max_workers=workers, context=ctx, initializer=functools.partial(_init_worker, niceness, init))
    try:
        yield pool
    except BaseException:
        pool.stop()  # Ctrl-C or an error: don't wait for files in flight
        raise
    else:
        pool.close()
    finally:
        pool.join()


def guarded_map(pool, fn: Callable, items: Iterable, window: int, timeout: float,
                path_of: Callable = lambda item: item) -> Iterator:
    """`fn(item)` for each item (a path, or what `path_of` takes a path from), in order, at most
    `window` in flight, each within `timeout` seconds.

    An item whose worker times out, crashes or raises comes back as a Failure of its path saying so.
    """
    pending = deque()
    for item in items:
        pending.append((path_of(item), pool.schedule(fn, args=(item,), timeout=timeout)))
        if len(pending) >= window:
            yield _result(*pending.popleft(), timeout)
    while pending:
        yield _result(*pending.popleft(), timeout)


def _result(path: str, future, timeout: float):
    from pebble import ProcessExpired

    try:
        return future.result()
    except TimeoutError:
        return failure(path, f"took over {timeout:g} s to decode (hung decoder?); its process was "
                             "replaced. Raise --file-timeout if the file is just very large")
    except ProcessExpired as e:
        return failure(path, f"crashed its decoding process ({_exit_reason(e.exitcode)})")
    except Exception as e:  # a decoder bug on this one file: record it, go on
        return failure(path, f"decoder error ({type(e).__name__}: {e})")


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"exit code {code}"


def _init_worker(niceness: int = WORKER_NICENESS, init: Callable[[], None] | None = None) -> None:
    """Ctrl-C is the parent's to handle; and decoding yields the CPU to the encoder's threads,
    which otherwise stall at every barrier waiting for a core a decoder holds."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if niceness:
        os.nice(niceness)
    if init is not None:
        init()
