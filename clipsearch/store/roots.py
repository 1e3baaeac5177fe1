"""The indexed roots: the folders an index was built from, and the only files its viewers may show."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from clipsearch.errors import InputError


class Roots:
    """A set of folders (or single files), compared by real path: symlinks can't lead out of them."""

    def __init__(self, roots: Iterable[str | os.PathLike]):
        self._roots = tuple(Path(os.path.realpath(r)) for r in roots)

    def __bool__(self) -> bool:
        return bool(self._roots)

    def __contains__(self, path: str | os.PathLike) -> bool:
        return self._inside(Path(os.path.realpath(path)))

    def resolve(self, path: str | os.PathLike) -> Path:
        """The real path of `path`; InputError unless it lies inside one of the roots."""
        real = Path(os.path.realpath(path))
        if not self._inside(real):
            raise InputError(f"{path} is not inside the indexed folders: it is not shown; "
                             "re-index its folder with `clipsearch index FOLDER` if it should be")
        return real

    def _inside(self, real: Path) -> bool:
        return any(real.is_relative_to(r) for r in self._roots)
