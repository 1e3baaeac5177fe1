"""Synthetic images of coloured shapes, with captions, for the tiny test model and offline tests.

Each image is one shape of one colour, at a random position, scale and rotation, on a random
light or dark neutral background with a little noise, so that a model must learn colour and shape
rather than memorise pixels. Importable without pytest.
"""

from __future__ import annotations

import math
from itertools import product
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

#: Colour name -> RGB, chosen far apart in hue so that none is mistaken for another.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 190),
    "orange": (250, 130, 20),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")

#: Every (colour, shape) pair, in a fixed order.
LABELS: tuple[tuple[str, str], ...] = tuple(product(COLOURS, SHAPES))

_SUPERSAMPLE = 4  # draw large, then downscale: anti-aliased edges like a photo's


def caption(colour: str, shape: str) -> str:
    """The text that describes an image: caption("red", "circle") == "a red circle"."""
    return f"a {colour} {shape}"


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of `shape` centred on (cx, cy), circumradius r, rotated by `angle` radians."""
    if shape == "square":
        radii, n = [r], 4
    elif shape == "triangle":
        radii, n = [r], 3
    elif shape == "star":
        radii, n = [r, 0.45 * r], 10  # 5 points: alternate outer and inner vertices
    else:
        raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")
    return [
        (cx + radii[i % len(radii)] * math.cos(angle + 2 * math.pi * i / n),
         cy + radii[i % len(radii)] * math.sin(angle + 2 * math.pi * i / n))
        for i in range(n)
    ]


def draw(colour: str, shape: str, size: int = 64, seed: int | None = None,
         noise: float = 6.0) -> Image.Image:
    """One RGB image `size`x`size` of a `colour` `shape`; the same seed gives the same image."""
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; choose from {tuple(COLOURS)}")
    rng = np.random.default_rng(seed)
    big = size * _SUPERSAMPLE
    # Neutral background, dark or light, never close to the shape's own brightness extremes.
    grey = int(rng.uniform(25, 90) if rng.random() < 0.5 else rng.uniform(170, 235))
    tint = rng.integers(-8, 9, size=3)
    bg = tuple(int(np.clip(grey + t, 0, 255)) for t in tint)
    img = Image.new("RGB", (big, big), bg)
    r = big * rng.uniform(0.22, 0.4)  # circumradius: the shape fills roughly 40-80% of the side
    cx, cy = (rng.uniform(r, big - r) for _ in range(2))
    jitter = rng.integers(-15, 16, size=3)
    fill = tuple(int(np.clip(c + d, 0, 255)) for c, d in zip(COLOURS[colour], jitter))
    pen = ImageDraw.Draw(img)
    if shape == "circle":
        pen.ellipse((cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85), fill=fill)
    else:
        pen.polygon(_polygon(shape, cx, cy, r, rng.uniform(0, 2 * math.pi)), fill=fill)
    img = img.resize((size, size), Image.LANCZOS)
    if noise > 0:
        px = np.asarray(img, dtype=np.float32) + rng.normal(0, noise, (size, size, 3))
        img = Image.fromarray(np.clip(px, 0, 255).astype(np.uint8))
    return img


def write_folder(root: str | Path, n_per_label: int = 2,
                 labels: list[tuple[str, str]] | None = None, size: int = 64,
                 fmt: str = "png", seed: int = 0) -> list[tuple[Path, str, str]]:
    """Write `n_per_label` images per (colour, shape) as `root/red_circle_000.png`; return
    [(path, colour, shape)] in the order written."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    seeds = np.random.default_rng(seed)
    written = []
    for colour, shape in labels or LABELS:
        for i in range(n_per_label):
            path = root / f"{colour}_{shape}_{i:03d}.{fmt}"
            draw(colour, shape, size=size, seed=int(seeds.integers(2**31))).save(path)
            written.append((path, colour, shape))
    return written
