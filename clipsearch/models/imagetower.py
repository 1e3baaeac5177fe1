"""The image tower on ONNX Runtime: uint8 pixels -> unit vectors with neither torch nor open_clip loaded.

`clipsearch index` on a CPU exports the image tower of the index's model once (`export`), into a
folder of the cache directory named by a hash of the model identity (see `towerfiles`):

    tower.onnx  the graph (model.Encoder.export_image);  tower.onnx.data  its fp32 weights
    tower.json  the model identity, its preprocessing and the export format

Later runs into that index encode with `ImageTower` instead of the open_clip model: importing torch
and open_clip costs ~1.1 GB and ~10 s on a CPU, and loading a checkpoint holds two copies of the
weights, where ONNX Runtime maps one file. The export is checked against `Encoder.encode_pixels` on
synthetic probe images before it is kept, and is used only for exactly the identity and the model
files it was made from (`ImageTower.load` returns None otherwise, and the caller loads the model).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from clipsearch.models import towerfiles
from clipsearch.models.encoder import ModelIdentity, Preprocess, default_batch_size
from clipsearch.models.towerfiles import GRAPH, MIN_COSINE, building, fill, read_meta, session

FORMAT = 1


def folder(cache: Path, identity: ModelIdentity) -> Path:
    """Where the export of `identity` lives under the cache directory."""
    return towerfiles.folder(cache, "image-towers", identity, FORMAT)


class ImageTower:
    """An exported image tower, standing in for model.Encoder when indexing on a CPU.

    It has the part of the Encoder's surface that indexing uses: `encode_pixels`, `identity`, `dim`,
    `preprocess`, `batch_size`, `device` and `fast`.
    """

    device, fast = "cpu", ""  # exports are fp32 only (Encoder.export_image) and run on the CPU

    def __init__(self, session, identity: ModelIdentity, preprocess: Preprocess, batch_size: int = 0):
        self._session, self.identity, self.preprocess = session, identity, preprocess
        self.batch_size = batch_size or default_batch_size("cpu")

    @property
    def dim(self) -> int:
        return self.identity.dim

    @classmethod
    def load(cls, cache: Path, identity: ModelIdentity, batch_size: int = 0) -> ImageTower | None:
        """The export of exactly `identity`, or None when there is none (or it is unreadable)."""
        found = towerfiles.load(folder(cache, identity), identity, FORMAT)
        if found is None:
            return None
        meta, run = found
        try:
            preprocess = _preprocess(meta["preprocess"])
        except (KeyError, TypeError, ValueError):
            return None
        return cls(run, identity, preprocess, batch_size)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8, as made by `image.to_pixels` -> (N, D) float32 unit vectors."""
        if not len(pixels):
            return np.zeros((0, self.dim), np.float32)
        out = self._session.run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.uint8)})[0]
        return out.astype(np.float32, copy=False)


def exported(cache: Path, identity: ModelIdentity) -> bool:
    """Whether a usable export of exactly `identity` is in the cache (without loading it)."""
    return read_meta(folder(cache, identity), identity, FORMAT) is not None


def export(encoder, cache: Path) -> Path:
    """Export `encoder`'s image tower for indexing without torch unless done; returns its folder.

    ModelError, leaving nothing behind, when the model can't take the fast path: a sped-up
    (--fast-encoder) or unusual tower, a failed export, or an export unlike open_clip's output.
    """
    where = folder(cache, encoder.identity)
    if exported(cache, encoder.identity):
        return where
    meta = {"preprocess": asdict(encoder.preprocess)}
    with building(where) as tmp:
        fill(tmp, encoder.identity, "image tower", encoder.export_image, meta,
             lambda d: _faithful(d, encoder), FORMAT)
    return where


def probes(size: int) -> np.ndarray:
    """(3, size, size, 3) uint8: seeded noise, colour gradients, and a blend of the two."""
    x, y = np.meshgrid(np.linspace(0.0, 255.0, size), np.linspace(0.0, 255.0, size))
    gradient = np.stack([x, y, 255.0 - (x + y) / 2], axis=-1)
    noise = np.random.default_rng(0).integers(0, 256, (size, size, 3)).astype(np.float64)
    return np.stack([noise, gradient, 0.6 * gradient + 0.4 * noise]).round().astype(np.uint8)


def _faithful(where: Path, encoder) -> bool:
    """Whether the export gives `encoder.encode_pixels`'s vectors within cosine MIN_COSINE, for a
    batch of probes and for one alone (the graph's batch size is free)."""
    tower = ImageTower(session(where / GRAPH), encoder.identity, encoder.preprocess)
    xq = probes(encoder.preprocess.size)
    exact = encoder.encode_pixels(xq)
    fast = np.concatenate([tower.encode_pixels(xq), tower.encode_pixels(xq[:1])])
    if fast.shape != (len(xq) + 1, encoder.dim):
        return False
    return bool(np.sum(fast * np.concatenate([exact, exact[:1]]), axis=1).min() >= MIN_COSINE)


def _preprocess(d: dict) -> Preprocess:
    return Preprocess(int(d["size"]), tuple(d["mean"]), tuple(d["std"]), d["interpolation"], d["resize_mode"])
