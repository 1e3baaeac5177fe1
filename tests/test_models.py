"""Model presets offline, and moving a model with `clipsearch models export` / `import`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clipsearch import ModelError, load_encoder
from clipsearch.models import weights as weights_module
from clipsearch.models.bundle import find_imported, import_model
from clipsearch.config import PRESETS, resolve_model
from clipsearch.errors import InputError
from support.clirun import Cli
from support.modelfiles import make_bundle

HUB_TOKENIZER = {name for name, (arch, _) in PRESETS.items() if "SigLIP2" in arch}


def _cli(*args) -> str:
    """`clipsearch ARGS` as given (no tiny-model options added): its output; it must succeed."""
    return Cli(None, None, ok=True)(*args, model=False).output


@pytest.mark.parametrize("preset", list(PRESETS))
def test_each_preset_offline_says_how_to_bring_it(offline, preset):
    with pytest.raises(ModelError) as e:
        load_encoder(*resolve_model(preset, None))
    message = str(e.value)
    assert "not in the local cache" in message and "huggingface.co can't be reached" in message
    assert "clipsearch models import FILE" in message


@pytest.mark.parametrize("preset", sorted(HUB_TOKENIZER))
def test_hub_tokenizer_offline_fails_like_missing_weights(offline, monkeypatch, preset, tiny_model):
    # The weights are there (as if cached); only the tokenizer is missing.
    monkeypatch.setattr(weights_module, "_cached", lambda cfg: str(tiny_model.weights))
    with pytest.raises(ModelError, match=r"the tokenizer of .*not in the local cache.*models import FILE"):
        load_encoder(*resolve_model(preset, None))


@pytest.mark.parametrize("preset", list(PRESETS))
def test_each_preset_resolves_offline_to_its_imported_files(offline, tmp_path, tiny_model, preset):
    arch, tag = PRESETS[preset]
    import_model(make_bundle(tmp_path / "m.clipmodel", tiny_model, arch, tag), offline)
    enc = load_encoder(*resolve_model(preset, None))
    assert (enc.identity.model, enc.identity.pretrained) == (arch, tag)  # as if from the hub
    assert enc.encode_texts(["a red circle"]).shape == (1, 64)


def test_export_then_import_into_a_fresh_cache_offline(offline, tiny_model, tmp_path, shapes_dir):
    file = tmp_path / "tiny.clipmodel"
    out = _cli("models", "export", tiny_model.config, file, "--pretrained", tiny_model.weights)
    assert f"exported tiny-clip / {tiny_model.weights.name} to {file}" in out
    reference = load_encoder(str(tiny_model.config), str(tiny_model.weights))
    assert not offline.exists()  # export wrote nothing but FILE
    out = _cli("models", "import", file)
    assert "use it with --model tiny-clip" in out
    listing = _cli("models")
    assert all(name in listing for name in PRESETS) and "imported       tiny-clip" in listing
    enc = load_encoder("tiny-clip", "")
    texts = ["a red circle", "a blue square"]
    np.testing.assert_allclose(enc.encode_texts(texts), reference.encode_texts(texts), atol=1e-6)
    assert enc.identity.fingerprint == reference.identity.fingerprint
    index = tmp_path / "index"
    _cli("index", shapes_dir, "--index", index, "--model", "tiny-clip", "--workers", "1", "--quiet")
    hits = json.loads(_cli("query", "a red circle", "--index", index, "--json", "-k", "3"))
    assert len(hits) == 3 and "circle" in Path(hits[0]["path"]).name


def test_hf_tokenizer_files_travel_in_themake_bundle(offline, tmp_path, tiny_model):
    # A model whose text config names a Hugging Face tokenizer loads it from the imported files.
    tok_dir = _tiny_hf_tokenizer(tmp_path / "tok")
    cfg = json.loads(tiny_model.config.read_text())
    cfg["text_cfg"]["hf_tokenizer_name"] = "example/not-on-this-machine"
    extra = {f.name: f for f in tok_dir.iterdir()}
    import_model(make_bundle(tmp_path / "m.clipmodel", tiny_model, "ViT-B-16-SigLIP2-256", "webli", cfg, extra),
                 offline)
    enc = load_encoder(*resolve_model("siglip2-b16", None))
    tokens = enc._tokenizer(["red circle", "blue square"])
    assert tokens[0, 0].item() != tokens[1, 0].item()  # the words' own ids, not a fallback's
    assert type(enc._tokenizer).__name__ == "HFTokenizer"


def test_import_refuses_a_file_that_is_not_a_model(offline, tmp_path):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"\xff\xd8 not a tar")
    with pytest.raises(InputError, match="not a readable clipsearch model file"):
        import_model(bad, offline)
    assert find_imported(offline, "tiny-clip", None) is None


def _tiny_hf_tokenizer(folder: Path) -> Path:
    """A word-level Hugging Face tokenizer of a few words, saved as transformers saves one."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "red", "blue", "green", "circle", "square", "triangle", "a"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_mobileclip_reparameterised_for_inference_gives_the_same_vectors():
    # load_encoder fuses MobileCLIP's train-time branches (model._reparameterize): faster, same vectors.
    import copy

    import open_clip
    import torch

    from clipsearch.models.encoder import _reparameterize

    torch.manual_seed(0)
    plain = open_clip.create_model(PRESETS["mobileclip2-s0"][0], pretrained=None).eval()
    fused = copy.deepcopy(plain)
    _reparameterize(fused)
    assert sum(1 for _ in fused.visual.modules()) < sum(1 for _ in plain.visual.modules())
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        np.testing.assert_allclose(fused.encode_image(x, normalize=True).numpy(),
                                   plain.encode_image(x, normalize=True).numpy(), atol=2e-4)
