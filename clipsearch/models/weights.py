"""Model weights and configs: the open_clip registry, the Hugging Face cache, local files.

Resolves what `--model` and `--pretrained` name into what open_clip's factory takes, and says
what to do when weights can't be had: never a silent fallback to random weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

from clipsearch.errors import ModelError

RANDOM = "random"  # explicit opt-in to untrained weights, for benchmarks only
_HUB_HOST = ("huggingface.co", 443)


def register(model: str) -> tuple[str, str]:
    """(architecture name for open_clip, key recorded in the index)."""
    import open_clip

    if model.endswith(".json"):
        path = Path(model).expanduser().resolve()
        if not path.is_file():
            raise ModelError(f"model config {model} does not exist: pass an open_clip architecture "
                             "name (e.g. ViT-B-32) or the path of a model-config JSON")
        try:
            json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ModelError(f"model config {path} is not readable JSON: {e}") from e
        open_clip.add_model_config(path)
        return path.stem, str(path)
    if model not in open_clip.list_models():
        raise ModelError(f"unknown model {model!r}: run `clipsearch models` for presets, or pass an "
                         "open_clip architecture name (open_clip.list_models()) or a config JSON path")
    return model, model


def resolve_weights(arch: str, pretrained: str) -> tuple[str | None, str, dict]:
    """(what open_clip's `pretrained=` gets, fingerprint, pretrained cfg) for a tag, a file or "random"."""
    import open_clip

    if pretrained == RANDOM:
        return None, "", {}
    path = Path(pretrained).expanduser()
    if path.is_file():
        return str(path.resolve()), fingerprint(path), {}
    cfg = open_clip.get_pretrained_cfg(arch, pretrained) if pretrained else {}
    if not cfg:
        if any(c in pretrained for c in "/\\.") or not pretrained:
            raise ModelError(f"weights file {pretrained or '(none given)'} does not exist: pass an "
                             f"existing file or a pretrained tag of {arch}")
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise ModelError(f"{pretrained!r} is not a pretrained tag of {arch} (known: {tags}); "
                         "or pass the path of a weights file")
    return _download(arch, pretrained, cfg), "", cfg


def _download(arch: str, tag: str, cfg: dict) -> str:
    """Path of the tag's weights in the Hugging Face cache, downloading them on first use."""
    from open_clip.pretrained import download_pretrained

    cached = _cached(cfg)
    if cached:
        return cached
    how = _how_to_get(arch, tag) + ", or download the weights yourself and pass --pretrained FILE"
    if not _hub_reachable():
        raise ModelError(f"weights {arch}/{tag} are not in the local cache and huggingface.co "
                         f"can't be reached. {how}")
    try:
        return download_pretrained(cfg)
    except Exception as e:
        raise ModelError(f"downloading weights {arch}/{tag} failed ({e}). {how}") from e


def check_tokenizer(arch: str) -> None:
    """ModelError, as for missing weights, when `arch`'s tokenizer is on the hub, not cached, and
    the hub can't be reached (open_clip ships the other tokenizers)."""
    import open_clip

    name = (open_clip.get_model_config(arch) or {}).get("text_cfg", {}).get("hf_tokenizer_name")
    if not name or Path(name).is_dir():
        return
    from huggingface_hub import try_to_load_from_cache

    if any(isinstance(try_to_load_from_cache(name, f), str) for f in ("tokenizer.json", "tokenizer_config.json")):
        return
    if not _hub_reachable():
        raise ModelError(f"the tokenizer of {arch} ({name}) is not in the local cache and "
                         f"huggingface.co can't be reached. {_how_to_get(arch, '')}")


def _how_to_get(arch: str, tag: str) -> str:
    what = f"{arch}/{tag}" if tag else arch
    return (f"Connect to the internet once so clipsearch can download {what} into the Hugging Face "
            "cache, or bring it on a file: `clipsearch models export NAME FILE` on a connected "
            "machine, then `clipsearch models import FILE` here")


def _cached(cfg: dict) -> str | None:
    if not cfg.get("hf_hub"):
        return None
    from huggingface_hub import try_to_load_from_cache

    repo, filename = os.path.split(cfg["hf_hub"])
    for name in [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]:
        hit = try_to_load_from_cache(repo, name)
        if isinstance(hit, str):
            return hit
    return None


def _hub_reachable(timeout: float = 3.0) -> bool:
    # A quick probe spares offline users huggingface_hub's ~45 s of retries.
    try:
        socket.create_connection(_HUB_HOST, timeout=timeout).close()
        return True
    except OSError:
        return False


def preprocess_overrides(cfg: dict) -> dict:
    keys = {"mean": "image_mean", "std": "image_std", "interpolation": "image_interpolation",
            "resize_mode": "image_resize_mode"}
    return {arg: cfg[k] for k, arg in keys.items() if cfg.get(k)}


def pretrained_key(pretrained: str) -> str:
    path = Path(pretrained).expanduser()
    return str(path.resolve()) if path.is_file() else pretrained


def fingerprint(path: Path) -> str:
    """Size + SHA-256 of the first and last MiB: cheap, and tells different weight files apart."""
    size, h = path.stat().st_size, hashlib.sha256()
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return f"{size}:{h.hexdigest()[:16]}"
