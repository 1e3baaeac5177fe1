"""The CLIP encoder: loads an open_clip model and turns pixels and texts into unit vectors.

Torch lives here and nowhere else; callers see numpy (N, D) float32, L2-normalised.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, ModelError

RANDOM = "random"  # explicit opt-in to untrained weights, for benchmarks only
_HUB_HOST = ("huggingface.co", 443)


@dataclass(frozen=True)
class ModelIdentity:
    """What an index was built with: enough to refuse a different model and to reload this one."""

    model: str  # open_clip architecture name, or absolute path of a model-config JSON
    pretrained: str  # open_clip pretrained tag, absolute weights path, or "random"
    dim: int
    fingerprint: str = ""  # of a local weights file: size + head/tail hash

    def describe(self) -> str:
        return f"{Path(self.model).stem if self.model.endswith('.json') else self.model} / {self.pretrained} ({self.dim}-d)"

    def same_model(self, other: "ModelIdentity") -> bool:
        return (self.model, self.pretrained, self.dim, self.fingerprint) == (
            other.model, other.pretrained, other.dim, other.fingerprint)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelIdentity":
        return cls(**{k: d[k] for k in ("model", "pretrained", "dim")}, fingerprint=d.get("fingerprint", ""))


@dataclass(frozen=True)
class Preprocess:
    """How pixels must be prepared for this model (open_clip's preprocess config)."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"


class Encoder:
    """An open_clip CLIP model on one device; encodes uint8 pixels and texts to unit vectors."""

    def __init__(self, model, tokenizer, identity: ModelIdentity, preprocess: Preprocess,
                 device: str, batch_size: int, fast: str = ""):
        self._model, self._tokenizer = model, tokenizer
        self.identity, self.preprocess, self.device, self.batch_size = (
            identity, preprocess, device, batch_size)
        self.fast = fast  # "" (exact fp32), "bf16" or "int8": how the image tower was sped up
        self._staging = None  # pinned host buffer for CUDA copies, grown on demand

    @property
    def dim(self) -> int:
        return self.identity.dim

    @property
    def logit_scale(self) -> float:
        """The model's learned softmax temperature (CLIP's 100 for trained models)."""
        return float(self._model.logit_scale.exp().item())

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8, as made by `image.to_pixels` -> (N, D) float32 unit vectors."""
        import torch

        x = self._to_device(torch.from_numpy(np.ascontiguousarray(pixels)))
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.preprocess.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.preprocess.std, device=self.device).view(1, 3, 1, 1)
        x = (x - mean) / std
        return self._run(self._model.encode_image, x.bfloat16() if self.fast == "bf16" else x)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """N strings -> (N, D) float32 unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self._run(self._model.encode_text, self._tokenizer(list(texts)).to(self.device))

    def _to_device(self, x):
        """uint8 host tensor -> on the device; on CUDA through pinned memory, copied asynchronously."""
        if not self.device.startswith("cuda"):
            return x
        if self._staging is None or self._staging.numel() < x.numel():
            self._staging = x.new_empty(x.numel()).pin_memory()
        staged = self._staging[:x.numel()].view(x.shape)
        staged.copy_(x)
        # The kernels queued after this copy wait for it on the stream; the CPU doesn't.
        return staged.to(self.device, non_blocking=True)

    def _run(self, fn, x) -> np.ndarray:
        import torch

        with torch.inference_mode(), torch.autocast(
                device_type="cuda", dtype=_cuda_dtype(), enabled=self.device.startswith("cuda")):
            y = fn(x).float()
        y = torch.nn.functional.normalize(y, dim=-1)
        return y.cpu().numpy().astype(np.float32, copy=False)


def load_encoder(model: str, pretrained: str, device: str = "auto", batch_size: int = 0,
                 fast: bool = False) -> Encoder:
    """Load an open_clip model by architecture name or config-JSON path, with a tag or weights file.

    `fast` speeds up the image tower on a CPU at a small cost in fidelity (see `speed_up`); on CUDA
    the model always runs under bf16/fp16 autocast. Raises ModelError with what to do when the name is unknown or the weights can't be had;
    never falls back to random weights unless `pretrained` is explicitly "random".
    """
    import open_clip

    arch, model_key = _register(model)
    weights, fingerprint, cfg = _weights(arch, pretrained)
    device = _pick_device(device)
    if weights is None:
        import torch

        torch.manual_seed(0)  # "random" must mean the same weights in every process
    try:
        net, _, _ = open_clip.create_model_and_transforms(
            arch, pretrained=weights, device=device, **_preprocess_overrides(cfg))
    except Exception as e:  # open_clip raises bare RuntimeError/KeyError for bad files
        raise ModelError(f"could not load model {model!r} with weights {pretrained!r}: {e}. "
                         "Check that the weights file matches the architecture.") from e
    net.eval()
    mode = speed_up(net, device) if fast else ""
    pp = open_clip.get_model_preprocess_cfg(net)
    size = pp["size"] if isinstance(pp["size"], int) else pp["size"][0]
    preprocess = Preprocess(size, tuple(pp["mean"]), tuple(pp["std"]),
                            pp.get("interpolation", "bicubic"), pp.get("resize_mode", "shortest"))
    identity = ModelIdentity(model_key, _pretrained_key(pretrained), _embed_dim(net), fingerprint)
    return Encoder(net, open_clip.get_tokenizer(arch), identity, preprocess, device,
                   batch_size or default_batch_size(device), mode)


def default_batch_size(device: str) -> int:
    """Images per forward pass: large on a GPU to fill it, small on a CPU, which gains nothing more."""
    return 256 if device.startswith("cuda") else 32


def speed_up(net, device: str, mode: str = "auto") -> str:
    """Make `net`'s image tower faster on a CPU, in place; returns the mode used ("" for none).

    "bf16" for CPUs with native bf16 (AVX512-BF16, AMX), "int8" (dynamic quantisation of the MLP
    layers) for other x86 CPUs: both within cosine 0.999 of fp32 (tests/test_fidelity.py).
    """
    import torch

    if device != "cpu":
        return ""  # CUDA already runs under autocast
    if mode == "auto":
        mode = "bf16" if getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)() else "int8"
    if mode == "bf16":
        net.visual.to(torch.bfloat16)
        return mode
    if mode == "int8":
        return mode if _quantise_linears(net) else ""
    raise InputError(f"unknown encoder speed-up {mode!r}: use auto, bf16 or int8")


def _quantise_linears(net) -> bool:
    """int8 dynamic quantisation of the image tower's plain Linear layers; False if it has none."""
    import warnings

    import torch

    # Attention hands its projections' weights to F.multi_head_attention_forward, which a quantised
    # Linear can't serve (MultiheadAttention's out_proj, a ResNet's attention pool): those stay fp32.
    names = {name for name, m in net.visual.named_modules()
             if type(m) is torch.nn.Linear and not name.startswith("attnpool.")}
    if names:
        with warnings.catch_warnings():  # torch.ao's deprecation notice: the API still works
            warnings.simplefilter("ignore")
            net.visual = torch.ao.quantization.quantize_dynamic(net.visual, names, dtype=torch.qint8)
    return bool(names)


def _register(model: str) -> tuple[str, str]:
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


def _weights(arch: str, pretrained: str) -> tuple[str | None, str, dict]:
    """(what open_clip's `pretrained=` gets, fingerprint, pretrained cfg) for a tag, a file or "random"."""
    import open_clip

    if pretrained == RANDOM:
        return None, "", {}
    path = Path(pretrained).expanduser()
    if path.is_file():
        return str(path.resolve()), _fingerprint(path), {}
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
    how = (f"Connect to the internet once so clipsearch can download {arch}/{tag} into the "
           "Hugging Face cache, or download the weights yourself and pass --pretrained FILE")
    if not _hub_reachable():
        raise ModelError(f"weights {arch}/{tag} are not in the local cache and huggingface.co "
                         f"can't be reached. {how}")
    try:
        return download_pretrained(cfg)
    except Exception as e:
        raise ModelError(f"downloading weights {arch}/{tag} failed ({e}). {how}") from e


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


def _preprocess_overrides(cfg: dict) -> dict:
    keys = {"mean": "image_mean", "std": "image_std", "interpolation": "image_interpolation",
            "resize_mode": "image_resize_mode"}
    return {arg: cfg[k] for k, arg in keys.items() if cfg.get(k)}


def _pretrained_key(pretrained: str) -> str:
    path = Path(pretrained).expanduser()
    return str(path.resolve()) if path.is_file() else pretrained


def _fingerprint(path: Path) -> str:
    """Size + SHA-256 of the first and last MiB: cheap, and tells different weight files apart."""
    size, h = path.stat().st_size, hashlib.sha256()
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return f"{size}:{h.hexdigest()[:16]}"


def _embed_dim(net) -> int:
    proj = getattr(net, "text_projection", None)
    if proj is not None and hasattr(proj, "shape"):
        return int(proj.shape[-1])
    return int(net.visual.output_dim)


def _pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device} requested but no CUDA GPU is visible; use --device cpu")
    return device


def _cuda_dtype():
    import torch

    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float16
