"""Model files for tests: bundles as `clipsearch models export` writes them, and a blocked network."""

from __future__ import annotations

import json
import socket
import tarfile
from pathlib import Path

from clipsearch.models.bundle import CONFIG, MANIFEST


def make_bundle(path: Path, tiny_model, model: str, pretrained: str, model_cfg: dict | None = None,
                extra: dict[str, Path] | None = None) -> Path:
    """A model file as `models export` writes it, holding the tiny model under another name."""
    cfg = model_cfg or json.loads(tiny_model.config.read_text())
    staging = path.parent / f"{path.stem}-staging"
    staging.mkdir()
    (staging / CONFIG).write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    (staging / MANIFEST).write_text(json.dumps({"format": 1, "model": model, "pretrained": pretrained}))
    with tarfile.open(path, "w") as tar:
        for f in staging.iterdir():
            tar.add(f, arcname=f.name)
        tar.add(tiny_model.weights, arcname="open_clip_model.safetensors")
        for name, f in (extra or {}).items():
            tar.add(f, arcname=name)
    return path


def block_network(monkeypatch) -> None:
    real_connect = socket.socket.connect

    def refuse(sock, address, *a, **k):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(101, "Network is unreachable (blocked by the test)")
        return real_connect(sock, address, *a, **k)

    monkeypatch.setattr(socket.socket, "connect", refuse)


def make_second_model(tiny_model, out: Path, dim: int = 48, seed: int = 1) -> tuple[Path, Path]:
    """A second tiny model, "tiny-clip-b": the first one's towers ending in a random semi-orthogonal
    projection to `dim` dimensions. It ranks the shapes as well as the first (both 100 % zero-shot)
    but its embeddings have another size and direction, so vectors of the two can't be mixed
    unnoticed. (Training a second model differently takes minutes on a loaded 2-core machine.)
    -> (config JSON, weights)."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    w = load_file(tiny_model.weights)
    width = w["text_projection"].shape[1]
    q = np.linalg.qr(np.random.default_rng(seed).standard_normal((width, width)))[0][:, :dim]
    q = q.astype(np.float32)
    w["text_projection"] = np.ascontiguousarray(w["text_projection"] @ q)
    w["visual.attnpool.c_proj.weight"] = np.ascontiguousarray(q.T @ w["visual.attnpool.c_proj.weight"])
    w["visual.attnpool.c_proj.bias"] = np.ascontiguousarray(q.T @ w["visual.attnpool.c_proj.bias"])
    cfg = json.loads(tiny_model.config.read_text()) | {"embed_dim": dim}
    out.mkdir(parents=True, exist_ok=True)
    (out / "tiny-clip-b.json").write_text(json.dumps(cfg))
    save_file(w, str(out / "tiny-clip-b.safetensors"))
    return out / "tiny-clip-b.json", out / "tiny-clip-b.safetensors"
