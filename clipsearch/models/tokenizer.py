"""open_clip's CLIP tokenizer without torch: text -> token ids as a numpy array.

open_clip's tokenizer module imports torch only to build its output (torch.zeros, torch.tensor,
torch.long), and importing it through open_clip imports torch and the whole package (~4 s). Here
that one file is executed on its own, its `import torch` answered by a numpy stand-in for those
names, so the text -> ids step is open_clip's own code, exactly (tests/test_texttower.py).
"""

from __future__ import annotations

import builtins
import importlib.util
import threading
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np

from clipsearch.errors import ModelError

_lock = threading.Lock()
_module: types.ModuleType | None = None


def _numpy_torch() -> types.ModuleType:
    """The few torch names SimpleTokenizer.__call__ uses, on numpy."""
    t = types.ModuleType("torch")
    t.long = np.int64
    t.zeros = lambda *shape, dtype=None: np.zeros(shape, dtype=dtype)
    t.tensor = np.asarray
    t.Tensor = t.LongTensor = np.ndarray
    return t


def _load() -> types.ModuleType:
    """open_clip/tokenizer.py as a private module; neither torch nor open_clip gets imported."""
    global _module
    with _lock:
        if _module is None:
            spec = importlib.util.find_spec("open_clip")  # a top-level find imports nothing
            if spec is None or not spec.submodule_search_locations:
                raise ModelError("open_clip is not installed: pip install open_clip_torch")
            path = Path(list(spec.submodule_search_locations)[0]) / "tokenizer.py"
            shim = _numpy_torch()

            def _import(name, globals=None, locals=None, fromlist=(), level=0):
                if name == "torch":
                    return shim
                return builtins.__import__(name, globals, locals, fromlist, level)

            mod = types.ModuleType("clipsearch._open_clip_tokenizer")
            mod.__file__ = str(path)
            mod.__dict__["__builtins__"] = {**builtins.__dict__, "__import__": _import}
            exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), mod.__dict__)
            _module = mod
    return _module


def simple_tokenizer(context_length: int, clean: str = "lower") -> Callable[[list[str]], np.ndarray]:
    """open_clip's SimpleTokenizer: N texts -> (N, context_length) int64 ids, truncated like open_clip."""
    mod = _load()
    tok = mod._tokenizer if clean == "lower" else mod.SimpleTokenizer(context_length, clean=clean)

    def tokenize(texts: list[str]) -> np.ndarray:
        return np.asarray(tok(list(texts), context_length=context_length), dtype=np.int64)

    return tokenize
