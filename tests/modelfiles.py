"""Model files for tests: bundles as `clipsearch models export` writes them, and a blocked network."""

from __future__ import annotations

import json
import socket
import tarfile
from pathlib import Path

from clipsearch.bundle import CONFIG, MANIFEST


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
