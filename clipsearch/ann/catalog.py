"""The committed version of a collection's ANN index: a small JSON file naming its segment files.

A collection's ANN index lives in the folder `<name>.ann/` of the index directory. Its files are
written once and never changed: segments (segment.py), the trained quantizer, the dead-row and dirty-id
lists. `catalog.json` names the ones that make up the committed version, with the table version and
stamp it reflects (its generation), the spec and the counters that name new files. A writer writes
new files first, then replaces the catalog atomically, then deletes the files no catalog names; so a
reader (the UI, the server, a query) always sees one whole committed version, and a crash at any point
leaves the last committed one and some unnamed files the next writer deletes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from clipsearch.durable import atomic_write, fsync_dir
from clipsearch.errors import IndexDirError

FORMAT = 1
FILENAME = "catalog.json"


@dataclass(frozen=True)
class Part:
    """One segment as the catalog names it: files `<serial>.*`, rows labelled label..label+rows-1."""

    serial: int
    rows: int
    label: int
    lists: str | None = None  # its IVF lists under the catalog's quantizer; None for a Flat index


@dataclass(frozen=True)
class Catalog:
    """Everything a reader needs to open one committed version."""

    dim: int
    dtype: str  # of the stored vectors
    spec: dict  # AnnSpec.to_dict()
    generation: int | None = None  # the table version the segments reflect
    stamp: str = ""  # snapshot.stamp of the table at that version
    trained_on: int = 0
    quantizer: str | None = None  # the trained, empty index; None for a Flat index
    parts: tuple[Part, ...] = ()
    dead: str | None = None  # sorted int64 labels of rows removed or replaced since written
    dirty: str | None = None  # ids a writer was changing in the table when this was committed
    next_serial: int = 0
    next_label: int = 0
    extra: dict = field(default_factory=dict)

    def files(self) -> set[str]:
        """Every file of this version."""
        names = {FILENAME} | {f for f in (self.quantizer, self.dead, self.dirty) if f}
        for p in self.parts:
            names |= {f"{p.serial:06d}{s}" for s in (".ids", ".idx", ".vec", ".rows", ".rec")}
            names |= {p.lists} if p.lists else set()
        return names

    def serial(self) -> tuple[Catalog, int]:
        """(this catalog with the serial used up, a fresh serial for a new file)."""
        return replace(self, next_serial=self.next_serial + 1), self.next_serial

    def to_json(self) -> str:
        d = asdict(self) | {"format": FORMAT}
        d["parts"] = [asdict(p) for p in self.parts]
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Catalog:
        d = json.loads(text)
        if d.pop("format", 0) > FORMAT:  # the manifest refuses newer indexes: this is rebuilt
            raise ValueError("written by a newer clipsearch")
        d["parts"] = tuple(Part(**p) for p in d.get("parts", ()))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def read(folder: Path) -> Catalog | None:
    """The committed catalog in `folder`; None if there is none; IndexDirError if it is damaged."""
    try:
        text = (folder / FILENAME).read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise IndexDirError(f"can't read {folder / FILENAME} ({e}): check its permissions") from e
    try:
        return Catalog.from_json(text)
    except (ValueError, TypeError, KeyError) as e:
        raise IndexDirError(f"{folder / FILENAME} is damaged ({e}): run `clipsearch optimize` to "
                            "rebuild the ANN index from the table") from e


def write(folder: Path, catalog: Catalog, keep: set[str] = frozenset()) -> None:
    """Commit `catalog` (atomically), then delete the files of `folder` it doesn't name (but those of
    `keep`: a writer's files not committed yet)."""
    atomic_write(folder / FILENAME, catalog.to_json().encode())
    collect_garbage(folder, catalog.files() | keep)


def collect_garbage(folder: Path, keep: set[str]) -> None:
    """Delete the files of `folder` not in `keep`: older versions' files and a crashed writer's
    leftovers. Readers that mapped an older version's files keep them until they close them (POSIX);
    where the system refuses (Windows), the next commit tries again."""
    for name in os.listdir(folder):
        if name not in keep:
            try:
                (folder / name).unlink()
            except OSError:
                pass
    fsync_dir(folder)
