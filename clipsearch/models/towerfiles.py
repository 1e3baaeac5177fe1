"""Exported towers on disk, shared by `texttower` and `imagetower`: where an export lives, how it is
built whole or not at all, when it may be used, and how ONNX Runtime runs it.

An export lives in a folder of the cache directory named by a hash of the model identity, holding
GRAPH (the ONNX graph; its weights beside it in GRAPH.data) and META (a JSON description). It is
built under a temporary name and renamed into place, so it is whole or absent, and it is used only
for exactly the identity it records and while the model's local files are those it was made from.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from clipsearch.errors import ModelError
from clipsearch.models.encoder import ModelIdentity
from clipsearch.models.weights import fingerprint

GRAPH, META = "tower.onnx", "tower.json"
#: Cosine to open_clip's own embeddings an export must reach on its tower's probes to be kept.
MIN_COSINE = 0.999


def folder(cache: Path, kind: str, identity: ModelIdentity, fmt: int) -> Path:
    """Where the export of `identity` in format `fmt` lives: cache/kind/<hash>."""
    key = json.dumps(identity.to_dict() | {"format": fmt}, sort_keys=True)
    return Path(cache) / kind / hashlib.sha256(key.encode()).hexdigest()[:20]


def read_meta(where: Path, identity: ModelIdentity, fmt: int) -> dict | None:
    """The export's description if it is whole and made from exactly `identity`'s current files."""
    try:
        meta = json.loads((where / META).read_text())
        ok = (meta.get("format") == fmt and ModelIdentity.from_dict(meta["model"]).same_model(identity)
              and meta.get("sources") == sources(identity) and (where / GRAPH).is_file())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return meta if ok else None


def sources(identity: ModelIdentity) -> dict | None:
    """What the model's local files hold now: a weights file's fingerprint, a config's hash.

    An export is used only while these match, as the model itself would be loaded from them.
    """
    out = {}
    if identity.fingerprint:
        try:
            out["weights"] = fingerprint(Path(identity.pretrained))
        except OSError:
            return None
    if identity.model.endswith(".json"):
        try:
            out["config"] = hashlib.sha256(Path(identity.model).read_bytes()).hexdigest()
        except OSError:
            return None
    return out


def load(where: Path, identity: ModelIdentity, fmt: int) -> tuple[dict, object] | None:
    """(description, ONNX Runtime session) of the export at `where` if it may be used for `identity`."""
    meta = read_meta(where, identity, fmt)
    if meta is None:
        return None
    try:
        return meta, session(where / GRAPH)
    except Exception:  # onnxruntime raises its own types for damaged or foreign files
        return None


@contextlib.contextmanager
def building(where: Path) -> Iterator[Path]:
    """A fresh folder beside `where` to build an export in; it replaces `where` if the block returns,
    and is removed, leaving `where` as it was, if the block raises."""
    where.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=where.parent))
    try:
        yield tmp
        _fsync_all(tmp)
        shutil.rmtree(where, ignore_errors=True)  # a stale or broken earlier export
        os.replace(tmp, where)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fill(tmp: Path, identity: ModelIdentity, what: str, write: Callable[[Path], bool], meta: dict,
         faithful: Callable[[Path], bool], fmt: int) -> None:
    """Export `what` (e.g. "text tower") of `identity`'s model into the folder `tmp` (see `building`).

    `write(graph path)` exports the graph, False if the tower isn't one it covers; `faithful(tmp)`
    checks the export against open_clip. ModelError, saying which, when either fails.
    """
    try:
        made = write(tmp / GRAPH)
    except Exception as e:  # the exporter's failures have many types; the index run goes on
        raise ModelError(f"exporting the {what} of {identity.describe()} failed: {e}") from e
    if not made:
        raise ModelError(f"{identity.describe()} has a {what} the fast path doesn't cover")
    meta = {"format": fmt, "model": identity.to_dict(), "sources": sources(identity)} | meta
    (tmp / META).write_text(json.dumps(meta, indent=1))
    try:
        ok = faithful(tmp)
    except Exception as e:  # ONNX Runtime refuses some graphs the exporter writes
        raise ModelError(f"the exported {what} of {identity.describe()} can't be run: {e}") from e
    if not ok:
        raise ModelError(f"the exported {what} of {identity.describe()} doesn't match open_clip's within "
                         f"cosine {MIN_COSINE}; report this")


def session(path: Path):
    """An ONNX Runtime session of the graph at `path`, on the CPU, with its weights file mapped."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # warnings about unused initializers etc. are not the user's business
    # Pre-packing copies every weight matrix (+250 MB, +1 s for ViT-B-32); the mapped file serves.
    opts.add_session_config_entry("session.disable_prepacking", "1")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _fsync_all(where: Path) -> None:
    for p in where.iterdir():
        with p.open("rb") as f:
            os.fsync(f.fileno())
