"""Decoders that misbehave on purpose, for the worker-pool tests (importable by spawned workers)."""

from __future__ import annotations

import os
import signal
import time


def sabotage(fn, path: str):
    """`fn(path)`, except for files named hang* (never return), segv* (crash) and exit* (exit)."""
    name = os.path.basename(path)
    if name.startswith("hang"):
        time.sleep(3600)
    if name.startswith("segv"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if name.startswith("exit"):
        os._exit(3)
    return fn(path)
