"""The text reader: the words in a picture, as lines with their boxes and confidences.

RapidOCR (PyPI `rapidocr`) on ONNX Runtime, with the models its wheel bundles: PP-OCRv6 small
detection and recognition (one recogniser for about 50 languages, Latin script and CJK) and an
orientation classifier. Each model is passed to RapidOCR by its path, so nothing is ever
downloaded. The detector sees the picture at a bounded side (`OcrSettings.det_side`); a picture
in which it finds no text costs nothing more.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipsearch.config import OcrSettings
from clipsearch.errors import ImageError, ModelError

#: The models of the rapidocr wheel that are used: detection, recognition, the line classifier.
BUNDLED = {"Det": "PP-OCRv6_det_small.onnx", "Rec": "PP-OCRv6_rec_small.onnx",
           "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx"}
INSTALL = "pip install 'rapidocr>=3.9' onnxruntime"
CUDA = "CUDAExecutionProvider"


@dataclass(frozen=True)
class Line:
    """One line of text read in a picture: its text, the recogniser's confidence (0-1) and its box,
    four corners clockwise from the top left as (x, y) fractions of the picture's width and height."""

    text: str
    score: float
    box: tuple[float, ...]  # x0, y0, x1, y1, x2, y2, x3, y3, each in [0, 1]

    def corners(self, width: int, height: int) -> list[list[float]]:
        """The box's four corners in pixels of a `width` x `height` picture."""
        xy = np.asarray(self.box, np.float64).reshape(4, 2) * (width, height)
        return np.round(xy, 1).tolist()


class TextReader:
    """Reads lines of text in pictures; load it with `load_reader`."""

    def __init__(self, engine, settings: OcrSettings, provider: str):
        self._engine, self.settings, self.provider = engine, settings, provider

    @property
    def identity(self) -> str:
        return identity(self.settings)

    def read(self, pixels: np.ndarray) -> list[Line]:
        """(H, W, 3) uint8 RGB pixels -> the lines read (those with a letter or digit), top to bottom;
        ImageError if the engine fails."""
        h, w = pixels.shape[:2]
        try:
            out = self._engine(np.ascontiguousarray(pixels[..., ::-1]))  # RapidOCR takes arrays as BGR
        except Exception as e:  # onnxruntime and OpenCV raise many types on a picture they can't take
            raise ImageError(f"the text reader failed ({type(e).__name__}: {e})") from e
        if getattr(out, "txts", None) is None or getattr(out, "boxes", None) is None:
            return []  # no text found (or found and not recognised)
        lines = []
        for box, text, score in zip(out.boxes, out.txts, out.scores):
            if any(c.isalnum() for c in text):  # a lone "·" or "■" read in a texture is no text
                xy = np.clip(np.asarray(box, np.float64).reshape(4, 2) / (w, h), 0.0, 1.0)
                lines.append(Line(text.strip(), round(float(score), 4), tuple(np.round(xy.ravel(), 5).tolist())))
        return lines


def load_reader(settings: OcrSettings = OcrSettings(), device: str = "auto", threads: int = 0) -> TextReader:
    """The text reader of `settings`, on CUDA through ONNX Runtime's provider when `device` allows it
    and the provider is installed, else on `threads` CPU threads (0: ONNX Runtime's choice).
    ModelError, naming what to install, when RapidOCR, ONNX Runtime or a bundled model is missing."""
    paths = model_files()
    import onnxruntime

    cuda = device != "cpu" and CUDA in onnxruntime.get_available_providers()
    from rapidocr import RapidOCR

    params = {
        "Global.log_level": "critical",  # "no text found" is not worth a warning per picture
        "Global.use_cls": settings.classifier, "Global.text_score": settings.min_score,
        "Global.max_side_len": max(settings.read_side, settings.det_side),
        "Det.limit_type": "max", "Det.limit_side_len": settings.det_side,
        "Rec.rec_batch_num": settings.rec_batch,
        "EngineConfig.onnxruntime.use_cuda": cuda,
        "EngineConfig.onnxruntime.cuda_ep_cfg.device_id": _device_id(device),
        "EngineConfig.onnxruntime.intra_op_num_threads": threads if threads > 0 else -1,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        **{f"{task}.model_path": str(path) for task, path in paths.items()},
    }
    try:
        engine = RapidOCR(params=params)
    except Exception as e:  # omegaconf, onnxruntime: a broken install
        raise ModelError(f"can't start the text reader ({type(e).__name__}: {e}): reinstall it with "
                         f"{INSTALL}") from e
    return TextReader(engine, settings, CUDA if cuda else "CPUExecutionProvider")


def identity(settings: OcrSettings) -> str:
    """Which models read, at which sizes: stored beside what they read."""
    return f"rapidocr PP-OCRv6 small, det {settings.det_side}px, read {settings.read_side}px"


def model_files() -> dict[str, Path]:
    """Task ("Det", "Rec", "Cls") -> the bundled model file; ModelError naming what to install."""
    for module in ("rapidocr", "onnxruntime"):
        if importlib.util.find_spec(module) is None:
            raise ModelError(f"reading text in pictures needs {module}, which is not installed: {INSTALL}")
    folder = Path(importlib.util.find_spec("rapidocr").origin).parent / "models"
    paths = {task: folder / name for task, name in BUNDLED.items()}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise ModelError(f"the OCR model{'s' * (len(missing) > 1)} {', '.join(missing)} "
                         f"{'are' if len(missing) > 1 else 'is'} missing from {folder}: install a rapidocr "
                         f"whose wheel bundles them ({INSTALL} --force-reinstall)")
    return paths


def _device_id(device: str) -> int:
    _, _, n = device.partition(":")
    return int(n) if n.isdigit() else 0
