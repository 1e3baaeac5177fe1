"""Loading models: the open_clip way, with clear errors and never silent random weights."""

import numpy as np
import pytest

from clipsearch import ModelError, load_encoder
from clipsearch.models import weights as weights_module


def test_tiny_model_loads_with_identity(tiny_model):
    enc = load_encoder(str(tiny_model.config), str(tiny_model.weights))
    assert enc.identity.model == str(tiny_model.config.resolve())
    assert enc.identity.pretrained == str(tiny_model.weights.resolve())
    assert enc.identity.fingerprint and enc.dim > 0
    v = enc.encode_texts(["a red circle", "a blue square"])
    assert v.shape == (2, enc.dim) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)


def test_unknown_architecture(tmp_path):
    with pytest.raises(ModelError, match="unknown model 'ViT-Nope'"):
        load_encoder("ViT-Nope", "random")


def test_unknown_tag_lists_known_ones():
    with pytest.raises(ModelError, match="laion2b_s34b_b79k"):
        load_encoder("ViT-B-32", "no_such_tag")


def test_missing_weights_file(tiny_model, tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_encoder(str(tiny_model.config), str(tmp_path / "missing.pt"))


def test_offline_without_cache_says_what_to_do(monkeypatch, tmp_path):
    # The hub is the one edge tests can't reach: pretend it is down and the cache empty.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(weights_module, "_cached", lambda cfg: None)
    monkeypatch.setattr(weights_module, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelError, match="--pretrained FILE") as e:
        load_encoder("ViT-B-32", "laion2b_s34b_b79k")
    assert "not in the local cache" in str(e.value)


def test_weights_for_another_architecture_fail_clearly(tiny_model):
    with pytest.raises(ModelError, match="matches the architecture"):
        load_encoder("RN50", str(tiny_model.weights))
