"""The CLIP encoder: loads an open_clip model and turns pixels and texts into unit vectors.

Torch lives here and nowhere else; callers see numpy (N, D) float32, L2-normalised.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from clipsearch.errors import InputError, ModelError
from clipsearch.models.weights import check_tokenizer, preprocess_overrides, pretrained_key, register, resolve_weights


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
    def tokenizer(self):
        """open_clip's tokenizer of this model: N texts -> (N, context length) ids."""
        return self._tokenizer

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

    def export_text(self, path: Path) -> bool:
        """Write the text tower as an ONNX graph at `path`, its weights beside it (`path`.data).

        The graph takes (B, L) int64 ids with any L up to the context length: CLIP's text attention
        is causal and pools at the end-of-text token, so the ids after it can be cut off and a short
        query costs L/77 of the work. False, writing nothing, for towers without that property.
        """
        import copy

        import open_clip
        import torch

        net = self._model
        if not (isinstance(net, open_clip.CLIP) and net.text_pool_type == "argmax"
                and net.attn_mask is not None and isinstance(net.text_projection, torch.nn.Parameter)):
            return False
        parts = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
        tower = _causal_text_tower(*(copy.deepcopy(getattr(net, n)) for n in parts),
                                 net.attn_mask.detach().clone()).float().cpu().eval()
        ids = torch.tensor([[49406, 320, 1929, 49407], [49406, 320, 49407, 0]], dtype=torch.long)
        dims = {"ids": {0: torch.export.Dim("batch", min=1, max=65536),
                        1: torch.export.Dim("length", min=2, max=int(net.attn_mask.shape[0]))}}
        _save_onnx(tower, ids, "ids", dims, path)
        return True

    def export_image(self, path: Path) -> bool:
        """Write `encode_pixels` as an ONNX graph at `path`, its weights beside it (`path`.data).

        The graph takes (B, S, S, 3) uint8 pixels, any B, and gives (B, D) unit vectors: the cast,
        the scaling by the preprocess mean and std and the normalisation are in it. False, writing
        nothing, for a sped-up (bf16, int8) tower, whose speed-up ONNX Runtime wouldn't reproduce.
        """
        import copy

        import open_clip
        import torch

        net = self._model
        if self.fast or not isinstance(net, (open_clip.CLIP, open_clip.CustomTextCLIP)):
            return False
        # The tower is exported in place on a CPU; a copy elsewhere, as moving it would move the model's.
        visual = net.visual if self.device == "cpu" else copy.deepcopy(net.visual).cpu()
        tower = _pixel_image_tower(visual, self.preprocess).float().eval()
        size = self.preprocess.size
        pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, size, size, 3), np.uint8))
        _save_onnx(tower, pixels, "pixels", {"pixels": {0: torch.export.Dim("batch", min=1, max=65536)}}, path)
        return True

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
                 fast: bool = False, models_dir: Path | None = None) -> Encoder:
    """Load an open_clip model by architecture name or config-JSON path, with a tag or weights file.

    A model imported with `clipsearch models import` into `models_dir` (default: the per-user one)
    is loaded from there, with no network. `fast` speeds up the image tower on a CPU at a small
    cost in fidelity (see `speed_up`); on CUDA the model always runs under bf16/fp16 autocast.
    Raises ModelError with what to do when the name is unknown or the weights or tokenizer can't
    be had; never falls back to random weights unless `pretrained` is explicitly "random".
    """
    import open_clip

    name, identity, kwargs = _locate(model, pretrained, models_dir)
    device = _pick_device(device)
    if kwargs.get("pretrained", "") is None:
        import torch

        torch.manual_seed(0)  # "random" must mean the same weights in every process
    try:
        net, _, _ = open_clip.create_model_and_transforms(name, device=device, **kwargs)
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as e:  # open_clip raises bare RuntimeError/KeyError for bad files
        raise ModelError(f"could not load model {model!r} with weights {pretrained!r}: {e}. "
                         "Check that the weights file matches the architecture.") from e
    net.eval()
    _reparameterize(net)
    mode = speed_up(net, device) if fast else ""
    pp = open_clip.get_model_preprocess_cfg(net)
    size = pp["size"] if isinstance(pp["size"], int) else pp["size"][0]
    preprocess = Preprocess(size, tuple(pp["mean"]), tuple(pp["std"]),
                            pp.get("interpolation", "bicubic"), pp.get("resize_mode", "shortest"))
    identity = ModelIdentity(*identity[:2], int(open_clip.get_model_config(name)["embed_dim"]), identity[2])
    return Encoder(net, tokenizer, identity, preprocess, device,
                   batch_size or default_batch_size(device), mode)


def _locate(model: str, pretrained: str, models_dir: Path | None) -> tuple[str, tuple, dict]:
    """(open_clip model name, (identity model, pretrained, fingerprint), factory kwargs)."""
    from clipsearch.models.bundle import find_imported
    from clipsearch.config import default_models_dir

    local = find_imported(models_dir or default_models_dir(), model, pretrained)
    if local is not None:
        return f"local-dir:{local.dir}", (local.model, local.pretrained, local.fingerprint), {}
    arch, model_key = register(model)
    weights, fingerprint, cfg = resolve_weights(arch, pretrained)
    check_tokenizer(arch)
    kwargs = {"pretrained": weights, **preprocess_overrides(cfg)}
    return arch, (model_key, pretrained_key(pretrained), fingerprint), kwargs


def _reparameterize(net) -> None:
    """Fuse the train-time branches of MobileCLIP's image tower (a no-op for other models)."""
    from timm.utils.model import reparameterize_model

    reparameterize_model(net.visual, inplace=True)


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


def _causal_text_tower(*args):
    import torch

    class CausalTextTower(torch.nn.Module):
        """CLIP.encode_text, normalised, for ids of any length up to the context length."""

        def __init__(self, embedding, positions, transformer, ln_final, projection, mask):
            super().__init__()
            self.embedding, self.positions, self.transformer = embedding, positions, transformer
            self.ln_final, self.projection = ln_final, projection
            self.register_buffer("mask", mask)

        def forward(self, ids):
            n = ids.shape[1]
            x = self.embedding(ids) + self.positions[:n]
            x = self.ln_final(self.transformer(x, attn_mask=self.mask[:n, :n]))
            x = x[torch.arange(x.shape[0]), ids.argmax(dim=-1)] @ self.projection
            return torch.nn.functional.normalize(x, dim=-1)

    return CausalTextTower(*args)


def _pixel_image_tower(visual, preprocess: Preprocess):
    import torch

    class PixelImageTower(torch.nn.Module):
        """Encoder.encode_pixels in one module: (B, S, S, 3) uint8 -> (B, D) unit vectors."""

        def __init__(self, visual, mean, std):
            super().__init__()
            self.visual = visual
            self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, pixels):
            x = (pixels.permute(0, 3, 1, 2).float() / 255.0 - self.pixel_mean) / self.pixel_std
            return torch.nn.functional.normalize(self.visual(x), dim=-1)

    return PixelImageTower(visual, preprocess.mean, preprocess.std)


def _save_onnx(module, example, name: str, dims: dict, path: Path) -> None:
    """torch.onnx's dynamo export of `module` on one input `name`, saved at `path` with its weights
    in `path`.data (which ONNX Runtime then maps rather than reads)."""
    import contextlib
    import io
    import warnings

    import torch

    # The exporter reports its progress on stdout, which belongs to the CLI's output.
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (example,), input_names=[name], output_names=["vectors"],
                                    dynamic_shapes=dims, dynamo=True, verbose=False, optimize=False)
    program.save(str(path), external_data=True)
