"""Defaults, written once: the CLI, environment and UI only override these."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

#: Named models: (open_clip architecture, pretrained tag). The first is the default. Why to pick
#: each, with measured CPU speed and published retrieval quality: README "Models".
PRESETS: dict[str, tuple[str, str]] = {
    # Default: fastest of the widely used CLIPs (~4.4 GFLOPs/image), good enough to find photos,
    # runs acceptably on a laptop CPU.
    "vit-b-32": ("ViT-B-32", "laion2b_s34b_b79k"),
    # The model of our design documents: better retrieval, ~4x the compute of ViT-B-32.
    "metaclip-b16": ("ViT-B-16-quickgelu", "metaclip_400m"),
    # Multilingual: SigLIP 2's Gemma tokenizer (from the hub, or `clipsearch models import`) and
    # WebLI training cover many languages; clearly better retrieval than ViT-B-32.
    "siglip2-b16": ("ViT-B-16-SigLIP2-256", "webli"),
    # The light one, for CPUs: ViT-B-32's CPU cost here (its image tower reparameterised at load),
    # 5 points more ImageNet zero-shot, half the parameters.
    "mobileclip2-s0": ("MobileCLIP2-S0", "dfndr2b"),
    # Strongest here: Meta's Perception Encoder, ViT-L/14 at 336 px (slow on a CPU).
    "pe-core-l14": ("PE-Core-L-14-336", "meta"),
}
#: Presets whose text tower was trained on many languages (a query's script is not checked).
MULTILINGUAL = frozenset({"ViT-B-16-SigLIP2-256"})
DEFAULT_PRESET = "vit-b-32"

#: Suffixes taken as candidates without looking at the content (a fast path: decoding still checks
#: the content, and files with other names are sniffed by their first bytes, see media.py).
#: Raster formats: those Pillow (with pillow-heif and pillow-jxl-plugin) reads.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".png", ".apng", ".webp", ".gif", ".bmp", ".dib",
     ".tif", ".tiff", ".heic", ".heif", ".avif", ".avifs", ".jxl", ".jp2", ".j2k", ".j2c", ".jpc",
     ".jpf", ".jpx", ".tga", ".icb", ".vda", ".vst", ".dds", ".sgi", ".rgb", ".rgba", ".bw", ".ppm",
     ".pgm", ".pbm", ".pnm", ".pfm", ".eps", ".epsf", ".epsi", ".blp", ".psd", ".fli", ".flc", ".ico",
     ".cur", ".pcx", ".dcx", ".icns", ".xpm", ".xbm", ".qoi", ".fits", ".fit", ".msp", ".pcd", ".pxr",
     ".ras", ".sun", ".gbr", ".ftc", ".ftu", ".im", ".iim"}
)
#: Camera RAW files, decoded with rawpy (LibRaw).
RAW_SUFFIXES = frozenset(
    {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".raf",
     ".pef", ".ptx", ".srw", ".x3f", ".3fr", ".fff", ".iiq", ".erf", ".kdc", ".dcr", ".mos", ".mrw",
     ".mef", ".rwl", ".gpr"}
)
#: Videos, decoded with PyAV (FFmpeg): frames sampled (VideoSampling), one row each.
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".wmv", ".asf", ".flv", ".mpg",
     ".mpeg", ".m2v", ".ts", ".mts", ".m2ts", ".3gp", ".3g2", ".ogv", ".vob", ".mxf"}
)
MEDIA_SUFFIXES = IMAGE_SUFFIXES | RAW_SUFFIXES | VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoSampling:
    """Which frames of a video become rows: one every `every_s` seconds (spread wider when the
    video is long, so that at most `max_frames` are taken) plus scene changes, capped."""

    every_s: float = 2.0
    max_frames: int = 64
    scene_change: float = 0.25  # mean absolute difference (0-1) of 16x16 thumbnails that counts as a cut


@dataclass(frozen=True)
class OcrSettings:
    """How the words in pictures are read (clipsearch.models.ocr, RapidOCR's PP-OCRv6 small models);
    the figures behind each default are in bench/results/ocr.md."""

    det_side: int = 960  # the detector sees the picture at this longest side (PaddleOCR's own default
    # for its mobile models): ~4x fewer pixels than RapidOCR's default (up to 2000) on 3 MP photos,
    # where its time goes; letters 9 px high in a 2000 px picture are still found (bench/results/ocr.md)
    read_side: int = 1920  # lines are cut for recognition from the picture at this longest side
    rec_batch: int = 16  # lines per recognition batch (RapidOCR's default: 6)
    classifier: bool = False  # the 180-degree line classifier: upside-down lines are rare in photos
    min_score: float = 0.5  # lines recognised with less confidence are dropped (RapidOCR's default)
    workers: int = 0  # OCR processes; 0: one per core, one ONNX Runtime thread each
    file_timeout_s: float = 120.0  # per picture; past it the reading process is replaced


INDEX_ENV = "CLIPSEARCH_INDEX"
MODELS_ENV = "CLIPSEARCH_MODELS"
CACHE_ENV = "CLIPSEARCH_CACHE"
TOKEN_ENV = "CLIPSEARCH_TOKEN"  # `clipsearch serve --token`


def default_index_dir() -> Path:
    """The per-user index directory ($CLIPSEARCH_INDEX overrides it)."""
    if os.environ.get(INDEX_ENV):
        return Path(os.environ[INDEX_ENV]).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("clipsearch")) / "index"


def default_models_dir() -> Path:
    """Where `clipsearch models import` puts models ($CLIPSEARCH_MODELS overrides it)."""
    if os.environ.get(MODELS_ENV):
        return Path(os.environ[MODELS_ENV]).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("clipsearch")) / "models"


def default_cache_dir() -> Path:
    """The per-user cache (exported text towers); $CLIPSEARCH_CACHE overrides it."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("clipsearch"))


@dataclass(frozen=True)
class Settings:
    """Tunable knobs with their defaults (the model's are PRESETS[DEFAULT_PRESET]); `with_` overrides."""

    batch_size: int = 0  # 0: chosen for the device by the encoder
    workers: int = 0  # 0: one decode process per spare core
    top_k: int = 10
    max_pixels: int = 100_000_000  # decompression-bomb cap
    file_timeout_s: float = 120.0  # per file, in a decoding process; past it the process is replaced
    commit_every: int = 2048  # files per table commit: few fragments, little work lost to a crash
    device: str = "auto"
    fast_encoder: bool = False  # CPU: bf16 or int8 image tower, ~2x faster, cosine >= 0.999 to fp32
    # The web UI (`clipsearch ui`): loopback only unless another address is asked for explicitly.
    ui_address: str = "127.0.0.1"
    ui_port: int = 8501
    upload_max_bytes: int = 20_000_000  # an upload larger than this is refused before decoding
    upload_max_pixels: int = 50_000_000
    thumbnail_px: int = 256  # longest side of the cached thumbnails
    # The HTTP service (`clipsearch serve`): loopback only unless a token is set (server/auth.py).
    serve_host: str = "127.0.0.1"
    serve_port: int = 8000
    serve_max_body_bytes: int = 32_000_000  # larger bodies get 413; an upload's base64 (4/3 x 20 MB) fits
    serve_max_k: int = 10_000  # results one request may ask for
    serve_image_px: int = 2048  # /image/{id} of a RAW, HEIC, video frame...: a JPEG this big
    text_cache_size: int = 4096  # text encodings a server keeps (2 KB each at 512-d)
    live_poll_s: float = 1.0  # how often a server looks for commits to its index
    video: VideoSampling = VideoSampling()
    ocr: OcrSettings = OcrSettings()  # words in pictures: `index --ocr`, `clipsearch ocr`
    # Near-duplicates (`clipsearch dupes`): cosine at or above this to a group's seed. Argued in the
    # README ("Duplicates"): re-saves, resizes, small crops and rotations of a photo stay above it on
    # ViT-B-32 class CLIPs, and the tiny test model keeps every look-alike below it.
    duplicate_threshold: float = 0.95

    def with_(self, **changes) -> "Settings":
        """A copy with the non-None `changes` applied."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def resolve_model(model: str | None, pretrained: str | None) -> tuple[str, str]:
    """(architecture or config path, pretrained) from a preset name or explicit values."""
    default_arch, default_weights = PRESETS[DEFAULT_PRESET]
    if model in PRESETS:
        arch, weights = PRESETS[model]
        return arch, pretrained or weights
    return model or default_arch, pretrained or (default_weights if model is None else "")

#: Zero-shot prompt templates, ensembled (averaged, renormalised) as in the CLIP paper: its
#: "a photo of a {}." plus the 7 templates the CLIP authors selected on ImageNet.
CLASSIFY_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.", "itap of a {}.", "a bad photo of the {}.", "a origami {}.",
    "a photo of the large {}.", "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
)

#: Generic prompts a text query is compared against for its calibrated score (calibration.py).
BACKGROUND_PROMPTS: tuple[str, ...] = (
    "a photo.", "an image.", "a picture.", "a photo of something.", "a photo of an object.",
    "a photo of a scene.", "a snapshot.", "a close-up photo.",
)
