"""The fast paths stay faithful: JPEG draft decoding and the optional fast encoder, against references.

Tolerances (cosine between unit vectors, measured values in the comments):
- JPEG with draft-mode reduced decoding vs open_clip's preprocess of the full decode: > 0.995.
- `--fast-encoder` (bf16 or int8 image tower) vs the exact fp32 encoder: >= 0.999.
- CUDA (bf16/fp16 autocast, pinned async copies) vs open_clip on the CPU in fp32: >= 0.999.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from support import shapes
from clipsearch import embed_files, load_encoder
from clipsearch.media.picture import DRAFT_OVERSAMPLE
from clipsearch.media.image import load_image
from clipsearch.models.encoder import speed_up

JPEG_COSINE = 0.995
FAST_COSINE = 0.999

# A small ViT (random weights, seeded): the fast encoder's target architecture, cheap to build.
TINY_VIT = {"embed_dim": 64, "vision_cfg": {"image_size": 64, "layers": 2, "width": 128, "patch_size": 16},
            "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 1}}


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return load_encoder(str(tiny_model.config), str(tiny_model.weights), "cpu")


@pytest.fixture(scope="module")
def reference(tiny_model):
    """open_clip's own model and eval preprocess for the tiny model, fp32 on the CPU."""
    import open_clip

    open_clip.add_model_config(tiny_model.config)
    net, _, preprocess = open_clip.create_model_and_transforms(tiny_model.name, pretrained=str(tiny_model.weights))
    return net.eval(), preprocess


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Large JPEGs of shapes (so draft mode decodes them at 1/4 or 1/8 scale), several aspects."""
    root = tmp_path_factory.mktemp("jpegs")
    paths = []
    for i, ((colour, shape), (w, h)) in enumerate(zip(shapes.LABELS[::3], [(640, 480), (480, 640), (600, 600),
                                                                            (720, 400), (500, 700), (1000, 600)])):
        img = shapes.draw(colour, shape, size=max(w, h), seed=i).crop((0, 0, w, h))
        img.save(root / f"{colour}_{shape}.jpg", quality=90)
        paths.append(root / f"{colour}_{shape}.jpg")
    return paths


def _reference_vectors(reference, paths) -> np.ndarray:
    net, preprocess = reference
    x = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        return torch.nn.functional.normalize(net.encode_image(x).float(), dim=-1).numpy()


def test_jpeg_draft_path_matches_open_clip(encoder, reference, photos):
    """Draft-reduced JPEG decoding + our uint8 resize + encode_pixels vs open_clip on the full decode."""
    size = DRAFT_OVERSAMPLE * encoder.preprocess.size
    assert all(max(load_image(p, draft_size=size).size) <= max(Image.open(p).size) // 2 for p in photos)
    batch = embed_files([str(p) for p in photos], encoder, max_pixels=10**8)
    assert [r.path for r in batch.rows] == [str(p) for p in photos]
    cos = np.sum(batch.vectors * _reference_vectors(reference, photos), axis=1)
    assert cos.min() > JPEG_COSINE, cos  # measured: min 0.9999 (2x draft; 0.974 at 1x), tiny 64-px model


def _fp32_and_fast(config: str, weights: str, mode: str, paths):
    exact = load_encoder(config, weights, "cpu")
    fast = load_encoder(config, weights, "cpu")
    assert speed_up(fast._model, "cpu", mode) == mode, "the speed-up was not applied"
    fast.fast = mode
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB").resize((exact.preprocess.size,) * 2)) for p in paths])
    return exact.encode_pixels(pixels), fast.encode_pixels(pixels)


def test_fast_encoder_close_to_fp32_tiny_resnet(tiny_model, shapes_dir):
    paths = sorted(shapes_dir.glob("*.png"))
    exact, fast = _fp32_and_fast(str(tiny_model.config), str(tiny_model.weights), "bf16", paths)
    cos = np.sum(exact * fast, axis=1)
    assert not np.array_equal(exact, fast)  # the speed-up did change the computation
    assert cos.min() >= FAST_COSINE, cos  # measured: min 0.99996


def test_int8_leaves_a_resnet_tower_alone(tiny_model):
    """Its only Linear layers feed an attention pool that can't take quantised weights."""
    enc = load_encoder(str(tiny_model.config), str(tiny_model.weights), "cpu")
    assert speed_up(enc._model, "cpu", "int8") == ""


@pytest.mark.parametrize("mode", ["bf16", "int8"])
def test_fast_encoder_close_to_fp32_vit(tmp_path, shapes_dir, mode):
    config = tmp_path / "tiny-vit.json"
    config.write_text(json.dumps(TINY_VIT))
    paths = sorted(shapes_dir.glob("*.png"))
    exact, fast = _fp32_and_fast(str(config), "random", mode, paths)
    cos = np.sum(exact * fast, axis=1)
    assert not np.array_equal(exact, fast)
    assert cos.min() >= FAST_COSINE, cos  # measured: bf16 min 0.99998, int8 min 0.99997


def test_fast_flag_applies_a_speed_up(tmp_path):
    # A ViT, whose MLPs int8 serves where the CPU has no bf16: some speed-up applies on every CPU
    # (the tiny ResNet has none without bf16, see above).
    config = tmp_path / "tiny-vit.json"
    config.write_text(json.dumps(TINY_VIT))
    assert load_encoder(str(config), "random", "cpu", fast=True).fast in ("bf16", "int8")
    assert load_encoder(str(config), "random", "cpu").fast == ""


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_autocast_path_matches_open_clip(tiny_model, reference, photos):
    gpu = load_encoder(str(tiny_model.config), str(tiny_model.weights), "cuda")
    for _ in range(2):  # the second call reuses the pinned staging buffer
        batch = embed_files([str(p) for p in photos], gpu, max_pixels=10**8)
    cos = np.sum(batch.vectors * _reference_vectors(reference, photos), axis=1)
    assert cos.min() >= FAST_COSINE, cos
