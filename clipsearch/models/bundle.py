"""Model bundles: one file with a model's weights, config and tokenizer, for machines offline.

`export_model` writes an (uncompressed: weights don't compress) tar of the files open_clip's
`local-dir:` loader reads -- open_clip_config.json, the weights, the tokenizer's files -- plus
clipsearch-model.json naming the model. `import_model` unpacks it into the models directory, where
`find_imported` finds it for `load_encoder`, with no network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from clipsearch.errors import InputError, ModelError
from clipsearch.models.weights import check_tokenizer, register, resolve_weights

MANIFEST = "clipsearch-model.json"
CONFIG = "open_clip_config.json"  # the name open_clip's local-dir: loader reads
FORMAT = 1
_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


@dataclass(frozen=True)
class ImportedModel:
    """A model unpacked in the models directory: open_clip loads it as `local-dir:{dir}`."""

    dir: Path
    model: str  # the architecture (or config stem) it is known by, as in an index's identity
    pretrained: str  # the pretrained tag, or the weights file's name
    fingerprint: str  # of a weights file that was exported (empty for tags)

    def describe(self) -> str:
        return f"{self.model} / {self.pretrained}"


def export_model(model: str, pretrained: str, out: Path) -> ImportedModel:
    """Write `model` with `pretrained` weights (downloaded if need be) as one file at `out`."""
    import open_clip

    arch, _ = register(model)
    weights, fingerprint, cfg = resolve_weights(arch, pretrained)
    if weights is None:
        raise InputError("random weights can't be exported: name a pretrained tag or a weights file")
    model_cfg = open_clip.get_model_config(arch)
    if model_cfg.get("text_cfg", {}).get("hf_model_name"):
        raise ModelError(f"{arch} builds its text tower from a Hugging Face model, which a bundle "
                         "can't hold yet: pick a preset (`clipsearch models`)")
    tag = Path(weights).name if fingerprint else pretrained
    meta = {"format": FORMAT, "model": arch, "pretrained": tag, "fingerprint": fingerprint}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _write_tokenizer(arch, model_cfg, folder)
        (folder / CONFIG).write_text(json.dumps({
            "model_cfg": model_cfg,
            "preprocess_cfg": {k: cfg[k] for k in _PREPROCESS_KEYS if cfg.get(k)}}, indent=2))
        (folder / MANIFEST).write_text(json.dumps(meta, indent=2))
        part = out.with_name(out.name + ".part")
        with tarfile.open(part, "w", dereference=True) as tar:  # the HF cache holds symlinks
            for f in sorted(folder.iterdir()):
                tar.add(f, arcname=f.name)
            tar.add(weights, arcname=_weights_name(weights))
        os.replace(part, out)
    return ImportedModel(out, arch, tag, fingerprint)


def import_model(bundle: Path, models_dir: Path) -> ImportedModel:
    """Unpack a file made by `export_model` into `models_dir` (replacing an earlier import)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=models_dir, prefix=".import-"))
    try:
        try:
            with tarfile.open(bundle) as tar:
                tar.extractall(tmp, filter="data")  # refuses absolute paths, '..', devices, links out
        except (OSError, tarfile.TarError) as e:
            raise InputError(f"{bundle} is not a readable clipsearch model file ({e}): make one with "
                             "`clipsearch models export NAME FILE` on a machine with internet") from e
        found = _read(tmp)
        if found is None:
            raise InputError(f"{bundle} is not a clipsearch model file: make one with "
                             "`clipsearch models export NAME FILE`")
        dest = models_dir / _slug(found.model, found.pretrained)
        old = models_dir / f".old-{dest.name}"
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
        return ImportedModel(dest, found.model, found.pretrained, found.fingerprint)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def find_imported(models_dir: Path, model: str | None, pretrained: str | None) -> ImportedModel | None:
    """The imported model called `model` with `pretrained` weights (any, if only one is imported)."""
    if not model or not models_dir.is_dir():
        return None
    found = [m for m in imported_models(models_dir) if m.model == model]
    exact = [m for m in found if m.pretrained == pretrained]
    return exact[0] if exact else found[0] if len(found) == 1 and not pretrained else None


def imported_models(models_dir: Path) -> list[ImportedModel]:
    """Every model imported into `models_dir`."""
    if not models_dir.is_dir():
        return []
    return [m for d in sorted(models_dir.iterdir()) if not d.name.startswith(".")
            if (m := _read(d)) is not None]


def _read(folder: Path) -> ImportedModel | None:
    try:
        meta = json.loads((folder / MANIFEST).read_text())
        if meta.get("format") != FORMAT or not (folder / CONFIG).is_file():
            return None
        return ImportedModel(folder, meta["model"], meta["pretrained"], meta.get("fingerprint", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_tokenizer(arch: str, model_cfg: dict, folder: Path) -> None:
    """The tokenizer's files, for a model whose tokenizer comes from the hub (others ship in open_clip)."""
    import open_clip

    if not model_cfg.get("text_cfg", {}).get("hf_tokenizer_name"):
        return
    check_tokenizer(arch)
    open_clip.get_tokenizer(arch).save_pretrained(str(folder))


def _weights_name(path: str) -> str:
    # Names open_clip's local-dir: loader looks for, by format.
    return "open_clip_model.safetensors" if path.endswith(".safetensors") else "open_clip_pytorch_model.bin"


def _slug(model: str, pretrained: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{model}@{pretrained}")
