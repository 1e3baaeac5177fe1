"""The text tower on ONNX Runtime: query texts -> unit vectors with neither torch nor open_clip loaded.

`clipsearch index` exports the text tower of the index's model once (`export`), into a folder of the
cache directory named by a hash of the model identity:

    tower.onnx  the graph (model.Encoder.export_text);  tower.onnx.data  its fp32 weights
    tower.json  the model identity, the tokenizer, the logit scale and the export format
    known.npy   the vectors of texts every query of a kind encodes (the calibration prompts)

The folder is built under a temporary name and renamed into place, so it is whole or absent. It is
used only for exactly the identity it records (`TextTower.load` returns None otherwise, and the
caller loads the open_clip model instead), and it is checked against open_clip's own output before
it is kept. ONNX Runtime maps the weights file instead of parsing them: ViT-B-32's load in ~0.1 s,
where importing torch and open_clip takes ~4 s (bench/results/cold_query.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from clipsearch.config import BACKGROUND_PROMPTS
from clipsearch.errors import ModelError
from clipsearch.models import towerfiles
from clipsearch.models.encoder import ModelIdentity
from clipsearch.models.tokenizer import simple_tokenizer
from clipsearch.models.towerfiles import GRAPH, META, MIN_COSINE, building, fill, read_meta, session

FORMAT = 1
KNOWN = "known.npy"
PROBES = ("a dog playing music", "a photo.", "Sunset over the Crème-brûlée café, 1999!",
          "golden retriever " * 30)
_BATCH = 256  # texts per ONNX run: bounds the (B, L, width) activations


def folder(cache: Path, identity: ModelIdentity) -> Path:
    """Where the export of `identity` lives under the cache directory."""
    return towerfiles.folder(cache, "text-towers", identity, FORMAT)


class TextTower:
    """An exported text tower: `encode_texts` like model.Encoder's, `logit_scale`, `identity`."""

    def __init__(self, session, tokenize, identity: ModelIdentity, logit_scale: float,
                 known: dict[str, np.ndarray] | None = None):
        self._session, self._tokenize = session, tokenize
        self.identity, self.logit_scale = identity, logit_scale
        self._known = known or {}  # text -> its vector, encoded at export

    @property
    def dim(self) -> int:
        return self.identity.dim

    @classmethod
    def load(cls, cache: Path, identity: ModelIdentity) -> TextTower | None:
        """The export of exactly `identity`, or None when there is none (or it is unreadable)."""
        where = folder(cache, identity)
        found = towerfiles.load(where, identity, FORMAT)
        if found is None:
            return None
        meta, run = found
        tok = meta["tokenizer"]
        try:
            known = dict(zip(meta.get("known", []), np.load(where / KNOWN)))
        except (OSError, ValueError):
            known = {}
        return cls(run, simple_tokenizer(tok["context_length"], tok["clean"]), identity,
                   float(meta["logit_scale"]), known)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """N strings -> (N, D) float32 unit vectors."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._known]
        done = dict(zip(todo, self._encode(todo))) if todo else {}
        return np.stack([done[t] if t in done else self._known[t] for t in texts]) if texts else \
            np.zeros((0, self.dim), np.float32)

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = [np.zeros((0, self.dim), np.float32)]
        for s in range(0, len(texts), _BATCH):
            ids = self._tokenize(list(texts[s:s + _BATCH]))
            n = int(ids.argmax(axis=1).max()) + 1  # through the last end-of-text token
            out.append(self._session.run(None, {"ids": ids[:, :n]})[0])
        x = np.concatenate(out).astype(np.float32, copy=False)
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def exported(cache: Path, identity: ModelIdentity) -> bool:
    """Whether a usable export of exactly `identity` is in the cache (without loading it)."""
    return read_meta(folder(cache, identity), identity, FORMAT) is not None


def export(encoder, cache: Path) -> Path:
    """Export `encoder`'s text tower for fast queries unless done; returns its folder.

    ModelError, leaving nothing behind, when the model can't take the fast path: another kind of
    tokenizer or text tower, a failed export, or an export that doesn't match open_clip's output.
    """
    where = folder(cache, encoder.identity)
    if exported(cache, encoder.identity):
        return where
    tok = _tokenizer_config(encoder)
    if tok is None:
        raise ModelError(f"{encoder.identity.describe()} has a tokenizer the fast text path doesn't cover")
    meta = {"tokenizer": tok, "logit_scale": encoder.logit_scale}
    with building(where) as tmp:
        fill(tmp, encoder.identity, "text tower", encoder.export_text, meta, lambda d: _faithful(d, encoder), FORMAT)
        _add_known(tmp, encoder.identity, list(BACKGROUND_PROMPTS))
    return where


def _add_known(where: Path, identity: ModelIdentity, texts: list[str]) -> None:
    """Encode `texts` with the export itself and keep them, so queries needn't encode them again."""
    meta = json.loads((where / META).read_text())
    tok = meta["tokenizer"]
    tower = TextTower(session(where / GRAPH), simple_tokenizer(tok["context_length"], tok["clean"]), identity,
                      meta["logit_scale"])
    np.save(where / KNOWN, tower.encode_texts(texts))
    (where / META).write_text(json.dumps(meta | {"known": texts}, indent=1))


def _tokenizer_config(encoder) -> dict | None:
    """How to rebuild the encoder's tokenizer without open_clip's package: SimpleTokenizer only."""
    from open_clip.tokenizer import SimpleTokenizer

    tok = encoder.tokenizer
    if type(tok) is not SimpleTokenizer or tok.reduction_fn is not None:
        return None
    clean = {"_clean_lower": "lower", "_clean_whitespace": "whitespace", "_clean_canonicalize":
             "canonicalize"}.get(getattr(tok.clean_fn, "__name__", ""))
    return {"kind": "simple", "context_length": int(tok.context_length), "clean": clean} if clean else None


def _faithful(where: Path, encoder) -> bool:
    """Whether the export gives open_clip's tokens and its vectors within cosine MIN_COSINE."""
    meta = json.loads((where / META).read_text())
    tok = meta["tokenizer"]
    ids = simple_tokenizer(tok["context_length"], tok["clean"])(list(PROBES))
    if not np.array_equal(ids, np.asarray(encoder.tokenizer(list(PROBES)))):
        return False
    tower = TextTower(session(where / GRAPH), lambda t: ids, encoder.identity, meta["logit_scale"])
    cos = np.sum(tower.encode_texts(list(PROBES)) * encoder.encode_texts(list(PROBES)), axis=1)
    return bool(cos.min() >= MIN_COSINE)
