"""One decode path: a file used as a query decodes as indexing decoded it, so it finds its own row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support.clips import write_video
from support.dng import write_dng
from clipsearch import Matcher, add_paths, create_index, load_encoder
from clipsearch.media.picture import DRAFT_OVERSAMPLE, load_picture

#: Query vector vs the file's stored row: equal up to float noise when both decode alike.
SAME_ROW = 0.999


def photo_like(w: int, h: int, seed: int = 0) -> Image.Image:
    """Gradients, coloured blocks and sensor-like noise: detail at every scale, as a photo has."""
    rng = np.random.default_rng(seed)
    x, y = np.linspace(0, 1, w, dtype=np.float32)[None, :], np.linspace(0, 1, h, dtype=np.float32)[:, None]
    blocks = rng.integers(0, 256, (h // 97 + 1, w // 97 + 1, 3)).astype(np.float32).repeat(97, 0).repeat(97, 1)
    a = 0.5 * blocks[:h, :w] + np.stack([200 * x + 0 * y, 180 * y + 0 * x, 120 * (x + y) / 2], axis=-1)
    a += rng.normal(0, 30, (h, w, 3)).astype(np.float32)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """A 12 MP JPEG; a RAW whose embedded preview is small (90 px high, a camera's thumbnail: between
    1x and 2x the tiny model's 64 px); a video larger than the model's input."""
    root = tmp_path_factory.mktemp("media")
    photo_like(4000, 3000).save(root / "big.jpg", quality=90)
    scene = photo_like(640, 480, seed=1)
    write_dng(root / "small_preview.dng", scene, preview=scene.resize((120, 90), Image.Resampling.LANCZOS))
    write_video(root / "clip.mp4", [("red", "circle", 1.0), ("blue", "star", 1.0)], size=320)
    return root


def test_querying_with_an_indexed_file_finds_its_own_row(tiny_model, media, tmp_path):
    encoder = load_encoder(str(tiny_model.config), str(tiny_model.weights), "cpu")
    index = create_index(tmp_path / "idx", encoder.identity)
    summary = add_paths(index, encoder, [str(media)])
    assert summary.failed == [] and summary.new == 3
    matcher = Matcher(encoder, index, max_pixels=10**8, duplicate_threshold=1.0)
    firsts = {}  # path -> its row (a video: its frame at 0 s, what a query with the file decodes)
    for row in sorted(index.images.all_rows(), key=lambda r: r.time_s or 0.0, reverse=True):
        firsts[row.path] = row
    assert sorted(Path(p).name for p in firsts) == ["big.jpg", "clip.mp4", "small_preview.dng"]
    for path, row in firsts.items():
        stored = index.images.vectors_of(np.array([row.id]))[0]
        cos = float(stored @ matcher.embed_image(path))
        assert cos >= SAME_ROW, (Path(path).name, row.time_s, cos)


def test_one_picture_decoded_at_the_oversampled_size(media):
    """Queries and thumbnails get the picture indexing gets: a JPEG drafted to >= 2x the size, a
    RAW's preview only when it is at least that large (else its sensor data)."""
    jpeg = load_picture(media / "big.jpg", max_pixels=10**8, size=224)
    assert jpeg.size == (1000, 750) and jpeg.info["clipsearch_full_size"] == (4000, 3000)
    assert DRAFT_OVERSAMPLE * 224 <= min(jpeg.size)
    raw = load_picture(media / "small_preview.dng", max_pixels=10**8, size=64)
    assert min(raw.size) > 90  # not the 120x90 preview: 90 < 2 x 64
    assert load_picture(media / "small_preview.dng", max_pixels=10**8, size=40).size == (120, 90)
