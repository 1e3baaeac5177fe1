"""Finding image files under the folders a user names."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .config import IMAGE_SUFFIXES
from .errors import InputError


@dataclass
class Scan:
    """What a walk found: candidate image paths (absolute, sorted) and what it could not enter."""

    paths: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def scan(roots: list[str | Path], suffixes=IMAGE_SUFFIXES) -> Scan:
    """Walk `roots` recursively (files given directly are taken as they are).

    InputError if a root doesn't exist. Symlinked directories are not followed (no loops);
    unreadable directories are reported in `skipped`, not fatal.
    """
    out = Scan()
    for root in check_roots(roots):
        if root.is_file():
            out.paths.append(str(root))
            continue
        onerror = lambda e: out.skipped.append((e.filename, e.strerror or str(e)))  # noqa: E731
        for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
            dirnames.sort()
            out.paths += [os.path.join(dirpath, f) for f in filenames
                          if os.path.splitext(f)[1].lower() in suffixes]
    out.paths = sorted(set(out.paths))
    return out


def check_roots(roots) -> list[Path]:
    """The roots, resolved; InputError naming the first one that doesn't exist."""
    if not roots:
        raise InputError("no folder given: name one or more photo folders, e.g. `clipsearch index ~/Pictures`")
    resolved = []
    for r in roots:
        p = Path(r).expanduser()
        if not p.exists():
            raise InputError(f"{r} does not exist: check the path")
        resolved.append(p.resolve())
    return resolved
