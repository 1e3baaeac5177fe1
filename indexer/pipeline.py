"""Runs `clipsearch.add_paths` with a guarded pool of decoding processes and a progress bar.

Decoders read untrusted bytes: one may hang or crash its process. Each file gets a time limit in
a worker process; a worker past it is killed, a crashed one replaced, and the file recorded as a
failure, so one bad file costs at most the limit and never the run.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

from clipsearch import Encoder, Index, Settings, Summary, add_paths
from clipsearch.batch import failure
from clipsearch.errors import InputError

#: Fault injection for tests: "STAGE[:N[:ACTION]]" acts at the N-th (default 1st) checkpoint STAGE
#: of a run (see clipsearch.indexing); ACTION is kill (SIGKILL, the default), stop (SIGSTOP) or
#: interrupt (SIGINT, as Ctrl-C).
FAILPOINT_ENV = "CLIPSEARCH_FAILPOINT"
WORKER_NICENESS = 10
_ACTIONS = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP, "interrupt": signal.SIGINT}


def run(index: Index, encoder: Encoder, roots: list[str], settings: Settings = Settings(),
        progress: bool = True) -> Summary:
    """Index `roots` into `index`, decoding in `settings.workers` processes (0: one per spare core)."""
    workers = settings.workers or default_workers()
    bar = _bar(progress)
    try:
        with decoding_pool(workers) as pool:
            window = max(4 * encoder.batch_size, 8 * workers)
            return add_paths(index, encoder, roots, settings, on_progress=bar,
                             checkpoint=failpoint(os.environ.get(FAILPOINT_ENV)),
                             decode_map=lambda fn, xs: guarded_map(pool, fn, xs, window, settings.file_timeout_s))
    finally:
        bar(None, None)


def default_workers() -> int:
    """Decoding processes: every core but the one the encoder's thread feeds from."""
    return max(1, (os.cpu_count() or 1) - 1)


@contextmanager
def decoding_pool(workers: int):
    """A pebble process pool whose workers ignore Ctrl-C (the parent alone handles it, and stops them)."""
    from pebble import ProcessPool

    ctx = multiprocessing.get_context("spawn")  # no fork: the parent holds torch threads and locks
    pool = ProcessPool(max_workers=workers, context=ctx, initializer=_init_worker)
    try:
        yield pool
    except BaseException:
        pool.stop()  # Ctrl-C or an error: don't wait for files in flight
        raise
    else:
        pool.close()
    finally:
        pool.join()


def guarded_map(pool, fn: Callable, items: Iterable[str], window: int, timeout: float) -> Iterator:
    """`fn(path)` for each path, in order, at most `window` in flight, each within `timeout` seconds.

    A path whose worker times out, crashes or raises comes back as a Failure saying so.
    """
    pending = deque()
    for item in items:
        pending.append((item, pool.schedule(fn, args=(item,), timeout=timeout)))
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


def _init_worker() -> None:
    """Ctrl-C is the parent's to handle; and decoding yields the CPU to the encoder's threads,
    which otherwise stall at every barrier waiting for a core a decoder holds."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(WORKER_NICENESS)


def failpoint(spec: str | None) -> Callable[[str], None]:
    """The checkpoint callback for FAILPOINT_ENV's `spec`; a no-op without one."""
    if not spec:
        return lambda stage: None
    parts = spec.split(":")
    stage, count, action = parts[0], parts[1] if len(parts) > 1 else "1", parts[2] if len(parts) > 2 else "kill"
    if not count.isdigit() or action not in _ACTIONS or len(parts) > 3:
        raise InputError(f"{FAILPOINT_ENV}={spec!r} is not STAGE[:N[:{'|'.join(_ACTIONS)}]]: fix or unset it")
    seen = {"n": 0}

    def checkpoint(at: str) -> None:
        if at == stage:
            seen["n"] += 1
            if seen["n"] == int(count):
                os.kill(os.getpid(), _ACTIONS[action])

    return checkpoint


def _bar(enabled: bool):
    """A progress callback `(done, total)`; `(None, None)` closes it."""
    state = {}

    def update(done, total):
        if not enabled:
            return
        if done is None:
            if "bar" in state:
                state["bar"].close()
            return
        if "bar" not in state:
            from tqdm import tqdm

            state["bar"] = tqdm(total=total, unit="img", desc="indexing", leave=False)
        state["bar"].update(done - state["bar"].n)

    return update
