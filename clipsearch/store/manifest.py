"""The manifest: the index directory's identity card (schema version, model, ANN state)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from clipsearch.durable import atomic_write
from clipsearch.errors import IndexDirError
from clipsearch.models.encoder import ModelIdentity

#: 2: content hash + raw path columns, failures table. 3: every collection's ANN file carries its
#: generation (was manifest "ann" / texts_<name>.json), BTREE index on id. 4: video frames, several
#: rows of one file (images.time_s). 5: vector sets (the tables' prefix, a re-index under way, sets
#: kept for another model: see vectorsets.py). 6: photo metadata columns (taken, camera, GPS and
#: place, kind, folder), read from older rows' headers by the next `index`. 7: each collection's ANN
#: index is a folder of segments with a catalog (`<name>.ann/`), holding what hits show; the
#: `<name>.faiss` and `<name>.rows` files of before are built into it by the next writer.
SCHEMA_VERSION = 7
FILENAME = "manifest.json"


@dataclass
class Manifest:
    model: ModelIdentity
    schema_version: int = SCHEMA_VERSION
    roots: list[str] = field(default_factory=list)  # folders ever indexed, resolved
    legacy_ann: dict = field(default_factory=dict)  # schema <= 2: the images' ANN state ("ann")
    prefix: str = ""  # of the active vector set's tables: "" (images, texts_<name>) or e.g. "s1_"
    pending: dict = field(default_factory=dict)  # {"prefix", "model"}: the set a re-index is building
    kept: list[dict] = field(default_factory=list)  # [{"prefix", "model"}]: sets kept for switching back

    def to_json(self) -> str:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        if legacy := d.pop("legacy_ann"):
            d["ann"] = legacy
        return json.dumps(d, indent=2, sort_keys=True)


def read(root: Path) -> Manifest:
    """The manifest of the index at `root`; IndexDirError if missing, unreadable or too new."""
    path = root / FILENAME
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise IndexDirError(f"no index at {root}: run `clipsearch index PHOTO_FOLDER` first, "
                            "or pass --index DIR of an existing index") from e
    except (OSError, ValueError) as e:
        raise IndexDirError(f"can't read {path}: {e}. Check its permissions, or re-create the "
                            "index with `clipsearch index` into a new --index DIR") from e
    version = d.get("schema_version", 0)
    if version > SCHEMA_VERSION:
        raise IndexDirError(f"the index at {root} was written by a newer clipsearch (schema "
                            f"{version} > {SCHEMA_VERSION}): upgrade clipsearch to use it")
    try:
        return Manifest(model=ModelIdentity.from_dict(d["model"]), schema_version=version,
                        roots=d.get("roots", []), legacy_ann=d.get("ann", {}), prefix=d.get("prefix", ""),
                        pending=d.get("pending", {}), kept=d.get("kept", []))
    except (KeyError, TypeError) as e:
        raise IndexDirError(f"{path} is damaged ({e}): re-create the index into a new --index DIR") from e


def write(root: Path, manifest: Manifest) -> None:
    """Replace the manifest atomically: a crash leaves the old one or the new one, never half."""
    atomic_write(root / FILENAME, manifest.to_json().encode())
