"""Zero-shot classification: template ensembling, probabilities, files, folders and indexed images."""

import csv
import io
import shutil

import numpy as np
import pytest

from clipsearch import CLASSIFY_TEMPLATES, Classifier, InputError, classify_files, classify_index, load_encoder, open_index
from support.clirun import image_of
from support.shapes import LABELS

NAMES = [f"{c} {s}" for c, s in LABELS]


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return load_encoder(str(tiny_model.config), str(tiny_model.weights))


def _truth(path) -> str:
    colour, shape, _ = path.rsplit("/", 1)[-1].split("_")
    return f"{colour} {shape}"


def test_a_single_template_is_plain_prompting(encoder):
    clf = Classifier(encoder, NAMES, ["a {}"])
    np.testing.assert_allclose(clf.weights, encoder.encode_texts([f"a {n}" for n in NAMES]), atol=1e-6)
    twice = Classifier(encoder, NAMES, ["a {}", "a {}"])
    np.testing.assert_allclose(twice.weights, clf.weights, atol=1e-6)


def test_ensemble_is_the_renormalised_mean_of_the_templates(encoder):
    templates = ["a {}", "a photo of a {}"]
    clf = Classifier(encoder, NAMES[:3], templates)
    x = np.stack([encoder.encode_texts([t.format(n) for t in templates]).mean(0) for n in NAMES[:3]])
    np.testing.assert_allclose(clf.weights, x / np.linalg.norm(x, axis=1, keepdims=True), atol=1e-6)
    assert clf.weights.shape == (3, encoder.dim)


def test_files_get_their_label_with_the_highest_probability(encoder, shapes_dir):
    paths = sorted(str(p) for p in shapes_dir.glob("*.png"))
    preds = list(classify_files(paths, encoder, Classifier(encoder, NAMES), max_pixels=10**8))
    assert [p.path for p in preds] == paths
    right = sum(p.label == _truth(p.path) for p in preds)
    assert right >= 0.9 * len(paths), [(p.path, p.label) for p in preds if p.label != _truth(p.path)]
    for p in preds:
        assert sum(p.probs.values()) == pytest.approx(1.0, abs=1e-6)
        assert list(p.probs.values()) == sorted(p.probs.values(), reverse=True)
        assert p.probability == max(p.probs.values())


def test_probabilities_are_softmax_with_the_logit_scale(encoder, shapes_dir):
    clf = Classifier(encoder, ["red circle", "blue square"], ["{}"])
    path = str(image_of(shapes_dir, "red", "circle"))
    pred = next(classify_files([path], encoder, clf, max_pixels=10**8))
    from clipsearch import embed_files

    x = embed_files([path], encoder, 10**8).vectors[0]
    logits = encoder.logit_scale * (clf.weights @ x)
    expected = np.exp(logits) / np.exp(logits).sum()
    assert pred.probs["red circle"] == pytest.approx(expected[0], rel=1e-5)


def test_indexed_images_are_classified_from_stored_vectors(cli, encoder, shapes_dir, tmp_path):
    clf = Classifier(encoder, NAMES)
    from_files = {p.path: p.probs for p in classify_files(
        sorted(str(p.resolve()) for p in shapes_dir.glob("*.png")), encoder, clf, max_pixels=10**8)}
    indexed = classify_index(open_index(cli.index_dir), clf)
    assert len(indexed) == len(from_files)
    for p in indexed:
        assert p.probs == pytest.approx(from_files[p.path], abs=1e-5)


def test_cli_classifies_a_folder_as_json(cli, shapes_dir):
    out = cli.json("classify", shapes_dir, "--labels", ",".join(NAMES), "--workers", "1")
    assert len(out) == len(LABELS) * 2
    assert sum(o["label"] == _truth(o["path"]) for o in out) >= 0.9 * len(out)
    assert all(sum(o["probs"].values()) == pytest.approx(1.0, abs=1e-4) for o in out)


def test_cli_classifies_indexed_images_without_their_files(cli, shapes_dir, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(shapes_dir, photos)
    cli("index", photos, "--workers", "1", "--quiet")
    shutil.rmtree(photos)  # nothing to decode: the stored vectors must be used
    out = cli.json("classify", "--indexed", "--labels", ",".join(NAMES))
    gone = [o for o in out if o["path"].startswith(str(photos.resolve()))]
    assert len(gone) == len(LABELS) * 2
    assert sum(o["label"] == _truth(o["path"]) for o in gone) >= 0.9 * len(gone)


def test_cli_table_and_csv(cli, shapes_dir, tmp_path):
    image = image_of(shapes_dir, "orange", "star")
    (tmp_path / "labels.txt").write_text("orange star\nblue circle\ngreen square\n")
    table = cli("classify", image, "--labels-file", tmp_path / "labels.txt", "-k", "2")
    assert table.exit_code == 0, table.output
    assert table.output.startswith(f"{image}  ") and table.output.count(" orange star") == 1
    assert len(table.output.split("  ")) == 3  # path and the top 2 labels
    rows = list(csv.reader(io.StringIO(cli("classify", image, "--labels-file", tmp_path / "labels.txt", "--csv").stdout)))
    assert rows[0] == ["path", "label", "probability", "orange star", "blue circle", "green square"]
    assert rows[1][:2] == [str(image), "orange star"]
    assert sum(float(v) for v in rows[1][3:]) == pytest.approx(1.0, abs=1e-4)


def test_templates_file_replaces_the_default_set(cli, shapes_dir, tmp_path):
    image = image_of(shapes_dir, "purple", "triangle")
    (tmp_path / "t.txt").write_text("a {}\n")
    labels = "purple triangle,purple square"
    custom = cli.json("classify", image, "--labels", labels, "--templates-file", tmp_path / "t.txt")
    default = cli.json("classify", image, "--labels", labels)
    assert custom[0]["label"] == default[0]["label"] == "purple triangle"
    assert custom[0]["probability"] != pytest.approx(default[0]["probability"], abs=1e-6)
    assert len(CLASSIFY_TEMPLATES) > 1


def test_worker_processes_give_the_same_answer(cli, shapes_dir, tmp_path):
    few = tmp_path / "few"
    few.mkdir()
    for colour, shape in LABELS[:4]:
        shutil.copy(image_of(shapes_dir, colour, shape), few)
    args = ("classify", few, "--labels", ",".join(NAMES))
    assert cli.json(*args, "--workers", "2") == cli.json(*args, "--workers", "1")


def test_a_broken_file_is_skipped_with_its_reason(cli, shapes_dir, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    shutil.copy(image_of(shapes_dir, "red", "circle"), tmp_path)
    result = cli("classify", tmp_path, "--labels", "red circle,blue star")
    assert result.exit_code == 0 and "skipped" in result.output and "broken.png" in result.output
    only_broken = cli.fails("classify", tmp_path / "broken.png", "--labels", "a,b")
    assert "skipped" in only_broken and "broken.png" in only_broken  # the reason, then why it stops:
    assert "no image could be classified" in only_broken


@pytest.mark.parametrize("args, message", [
    (["classify", "{img}", "--labels", "cat"], "at least two labels"),
    (["classify", "{img}"], "--labels"),
    (["classify", "{img}", "--indexed", "--labels", "a,b"], "one of them"),
    (["classify", "{img}", "--labels", "a,b", "--templates-file", "{tmp}/t.txt"], "exactly once"),
    (["classify", "/no/such/dir", "--labels", "a,b"], "does not exist"),
    (["classify", "{img}", "--labels-file", "/no/labels.txt"], "does not exist"),
])
def test_bad_input_is_one_line(cli, shapes_dir, tmp_path, args, message):
    (tmp_path / "t.txt").write_text("a photo\n")
    img = image_of(shapes_dir, "red", "circle")
    assert message in cli.fails(*[a.format(img=img, tmp=tmp_path) for a in args])


def test_library_refuses_bad_templates(encoder):
    with pytest.raises(InputError, match="exactly once"):
        Classifier(encoder, ["a", "b"], ["{} and {}"])
