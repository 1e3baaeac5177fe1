"""The per-batch function: files in, aligned records out, failures beside them."""


import numpy as np
import pytest
import torch
from PIL import Image

from clipsearch import Decoded, Failure, decode_file, embed_files, load_encoder


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return load_encoder(str(tiny_model.config), str(tiny_model.weights))


def test_broken_file_mid_batch_keeps_rows_aligned(encoder, shapes_dir, tmp_path):
    good = sorted(shapes_dir.glob("*.png"))[:4]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    paths = [str(good[0]), str(good[1]), str(broken), str(good[2]), str(good[3])]
    batch = embed_files(paths, encoder, max_pixels=10**8)
    assert [r.path for r in batch.rows] == [str(p) for p in good]
    assert [f.path for f in batch.failures] == [str(broken)]
    for row, vec in zip(batch.rows, batch.vectors):
        alone = embed_files([row.path], encoder, max_pixels=10**8).vectors[0]
        np.testing.assert_allclose(vec, alone, atol=1e-5)


def test_decode_records_real_size_and_stat(shapes_dir, encoder):
    path = sorted(shapes_dir.glob("*.png"))[0]
    d = decode_file(str(path), encoder.preprocess, 10**8)
    assert isinstance(d, Decoded)
    assert (d.rows[0].width, d.rows[0].height) == Image.open(path).size and d.rows[0].time_s is None
    assert d.rows[0].size == path.stat().st_size and d.pixels.shape[0] == 1
    assert d.pixels.shape == (1, encoder.preprocess.size, encoder.preprocess.size, 3)


def test_vanished_file_is_a_failure(encoder, tmp_path):
    f = decode_file(str(tmp_path / "gone.jpg"), encoder.preprocess, 10**8)
    assert isinstance(f, Failure) and "stat" in f.reason


def test_fast_path_matches_open_clip_preprocess(encoder, shapes_dir, tiny_model):
    """Our uint8 pipeline + encode_pixels equals open_clip's own preprocess + encode_image."""
    import open_clip

    path = sorted(shapes_dir.glob("*.png"))[5]
    open_clip.add_model_config(tiny_model.config)
    net, _, preprocess = open_clip.create_model_and_transforms(
        tiny_model.config.stem, pretrained=str(tiny_model.weights))
    net.eval()  # BatchNorm in the image tower
    with torch.no_grad():
        ref = net.eval().encode_image(preprocess(Image.open(path).convert("RGB"))[None]).float()
    ref = torch.nn.functional.normalize(ref, dim=-1).numpy()[0]
    ours = embed_files([str(path)], encoder, max_pixels=10**8).vectors[0]
    assert float(ours @ ref) > 0.9999
