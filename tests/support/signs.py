"""Pictures of printed signs for the OCR tests: made-up words on photo-like backgrounds, slightly
rotated, drawn with Pillow. Importable without pytest (spawned workers, the bench)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: Made-up words (no dictionary holds them, so no other picture has them), one with accents and one
#: with a number; and a phrase, with its words the other way round on a second sign.
WORDS = ("Zorblax", "Quorvanth", "Blinteky 4471", "Févrünel")
ACCENTED = "Févrünel"
PHRASE, REVERSED = "Plumbic Tarvola", "Tarvola Plumbic"
PANEL = (240, 236, 222)  # the sign's panel, behind the letters

#: TrueType fonts with the accented glyphs (Debian's DejaVu, Liberation); Pillow's own default font
#: (Aileron) has none: drawn with it, "é" becomes a box.
_FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
          "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf")


def font_path() -> str | None:
    """A font with accented letters, or None when none is installed."""
    return next((f for f in _FONTS if Path(f).is_file()), None)


def font(size: int):
    path = font_path()
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size=size)


def background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A photo-like scene: smooth colour fields, blobs and sensor grain."""
    scene = Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    draw = ImageDraw.Draw(scene)
    for _ in range(int(rng.integers(2, 6))):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.25) * min(w, h)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    px = np.asarray(scene, np.float32) + rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(np.clip(px, 0, 255).astype(np.uint8))


def draw_sign(text: str, size: tuple[int, int] = (480, 360), seed: int = 0, text_height: float = 0.11,
              angle: float | None = None) -> Image.Image:
    """`text` in dark letters on a light panel, placed at random on a photo-like background and
    rotated a few degrees; letters `text_height` of the picture's height."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = background(rng, w, h).convert("RGBA")
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    pen = ImageDraw.Draw(layer)
    f = font(max(8, int(text_height * h)))
    x0, y0, x1, y1 = pen.textbbox((0, 0), text, font=f)
    tw, th, pad = x1 - x0, y1 - y0, max(4, (y1 - y0) // 3)
    x = int(rng.uniform(0.1, 0.9) * max(1, w - tw - 2 * pad)) + pad
    y = int(rng.uniform(0.1, 0.9) * max(1, h - th - 2 * pad)) + pad
    pen.rectangle((x - pad, y - pad, x + tw + pad, y + th + pad), fill=(*PANEL, 255))
    pen.text((x - x0, y - y0), text, fill=(25, 25, 35, 255), font=f)
    turn = float(rng.uniform(-5, 5)) if angle is None else angle
    img.alpha_composite(layer.rotate(turn, resample=Image.BICUBIC, center=(x + tw / 2, y + th / 2)))
    return img.convert("RGB")


def write_signs(folder: Path, texts=WORDS + (PHRASE, REVERSED), size: tuple[int, int] = (480, 360)) -> dict[str, Path]:
    """One JPEG per text in `folder` (named sign_N.jpg); text -> its path."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for n, text in enumerate(texts):
        out[text] = folder / f"sign_{n}.jpg"
        draw_sign(text, size, seed=100 + n).save(out[text], quality=90)
    return out


def sabotaged(job, read):
    """`read(job)`, except for pictures whose file is named hang*, segv* or exit* (support.faulty)."""
    from support import faulty

    return faulty.sabotage(lambda _: read(job), job.path)


def panel_share(img: Image.Image, corners) -> float:
    """The share of the pixels inside the bounding rectangle of `corners` (pixels) that have the
    panel's colour: high when a box found by the reader lies on the sign."""
    xy = np.asarray(corners, float)
    (x0, y0), (x1, y1) = np.floor(xy.min(0)).astype(int), np.ceil(xy.max(0)).astype(int)
    px = np.asarray(img.convert("RGB"), int)[max(0, y0):y1, max(0, x0):x1]
    return float((np.abs(px - PANEL).max(-1) < 40).mean()) if px.size else 0.0


def write_sign_video(path: Path, scenes: list[tuple[str | None, float]], size: tuple[int, int] = (320, 240),
                     fps: int = 5) -> None:
    """An H.264 video of `scenes` = [(text on a sign, or None for a bare background, seconds)], each
    a still with a little noise frame to frame (libx264 puts a keyframe at each cut)."""
    from support.clips import write_stills

    stills = [(draw_sign(text, size, seed=k) if text else Image.new("RGB", size, (90, 110, 130)), seconds)
              for k, (text, seconds) in enumerate(scenes)]
    write_stills(path, stills, fps=fps, noise=2)
