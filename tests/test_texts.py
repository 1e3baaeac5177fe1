"""Text collections and image -> text queries, through the real CLI and the library."""

import json
import shutil

from types import SimpleNamespace

import numpy as np
import pytest

from clipsearch import InputError, add_texts, collection_names, load_encoder, open_index, open_texts, read_texts
from support.clirun import CAPTIONS, image_of


# --- reading text files -------------------------------------------------------------------------

@pytest.mark.parametrize("name, content, column, expected", [
    ("a.txt", "a red circle\n\n  a blue star \na red circle\n", None, ["a red circle", "a blue star"]),
    ("a.csv", "id,text\n1,a red circle\n2,\"a blue, big star\"\n", None, ["a red circle", "a blue, big star"]),
    ("a.csv", "id,caption\n1,one\n2,two\n", "caption", ["one", "two"]),
    ("a.csv", "caption\none\n", None, ["one"]),
    ("a.tsv", "text\tid\nred, green\t1\n", None, ["red, green"]),
    ("a.jsonl", '{"text": "one"}\n\n{"text": "two", "x": 1}\n', None, ["one", "two"]),
    ("a.jsonl", '{"c": "one"}\n', "c", ["one"]),
    ("a.jsonl", '"one"\n"two"\n', None, ["one", "two"]),
])
def test_read_texts_formats(tmp_path, name, content, column, expected):
    (tmp_path / name).write_text(content)
    assert read_texts(tmp_path / name, column) == expected


@pytest.mark.parametrize("name, content, column, message", [
    ("a.csv", "id,caption\n1,one\n", None, "no column 'text'"),
    ("a.csv", "id,caption\n1,one\n", "nope", "columns: id, caption"),
    ("a.jsonl", '{"text": "one"}\nnot json\n', None, "line 2 is not JSON"),
    ("a.jsonl", '{"caption": "one"}\n', None, "no string field 'text'"),
    ("a.txt", "\n  \n", None, "holds no texts"),
    ("a.txt", "one\n", "text", "--column applies to CSV"),
])
def test_read_texts_says_what_to_fix(tmp_path, name, content, column, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(InputError, match=message):
        read_texts(tmp_path / name, column)


# --- collections ---------------------------------------------------------------------------------

def test_image_ranks_its_caption_first(cli, shapes_dir):
    images = sorted(shapes_dir.glob("*.png"))  # several images at once, each answered on its own
    out = cli.json("query", *(a for p in images for a in ("--image", p)), "--texts", "-k", "3")
    assert [o["query"] for o in out] == [str(p) for p in images]
    truth = ["a " + p.name.rsplit("_", 1)[0].replace("_", " ") for p in images]
    right = [o["results"][0]["text"] == t for o, t in zip(out, truth)]
    assert sum(right) >= 0.9 * len(images), [(o["query"], o["results"][0]["text"]) for o in out]
    for o in out:
        scores = [h["score"] for h in o["results"]]
        assert scores == sorted(scores, reverse=True) and len(scores) == 3
        assert all(0 <= h["calibrated"] <= 1 for h in o["results"])


def test_several_images_answer_as_one_each(cli, shapes_dir):
    images = [image_of(shapes_dir, "green", "star"), image_of(shapes_dir, "blue", "circle", 1)]
    one = [cli.json("query", "--image", p, "--texts", "captions", "-k", "2") for p in images]
    out = cli.json("query", "--image", images[0], "--image", images[1], "--texts", "captions", "-k", "2")
    assert [o["query"] for o in out] == [str(p) for p in images]
    assert [o["results"] for o in out] == one
    plain = cli("query", "--image", images[0], "--image", images[1], "--texts", "-k", "1").output.splitlines()
    assert plain[0] == f"== {images[0]}" and plain[1].endswith("  " + one[0][0]["text"])
    assert plain[3] == f"== {images[1]}" and plain[4].endswith("  " + one[1][0]["text"])


def test_reindexing_texts_encodes_only_new_ones(cli, tmp_path):
    again = cli.json("index-texts", _write(tmp_path, "captions.txt", CAPTIONS))
    assert (again["added"], again["unchanged"], again["total"]) == (0, len(CAPTIONS), len(CAPTIONS))
    more = _write(tmp_path, "more.txt", CAPTIONS[:3] + ["a red circle on a string", "a purple square"])
    out = cli.json("index-texts", more, "--name", "captions")
    assert (out["added"], out["unchanged"], out["total"]) == (1, 4, len(CAPTIONS) + 1)
    pruned = cli.json("index-texts", more, "--name", "captions", "--prune")
    assert (pruned["added"], pruned["removed"], pruned["total"]) == (0, len(CAPTIONS) - 4, 5)


def test_new_texts_keep_old_ids_and_vectors(cli, tiny_model, tmp_path):
    index = open_index(cli.index_dir, writable=True)
    before = open_texts(index, "captions").table
    ids, xb = before.vectors()
    enc = load_encoder(str(tiny_model.config), str(tiny_model.weights))
    add_texts(index, enc, "captions", ["a tiny new caption"])
    ids2, xb2 = open_texts(index, "captions").table.vectors()
    old = np.isin(ids2, ids)
    assert old.sum() == len(ids) and (~old).sum() == 1
    np.testing.assert_array_equal(xb2[old][np.argsort(ids2[old])], xb[np.argsort(ids)])


def test_collections_side_by_side(cli, shapes_dir, tmp_path):
    cli.json("index-texts", _write(tmp_path, "shapes.txt", ["circle", "square", "triangle", "star"]))
    assert json.loads(cli("texts", "--json").output) == {"captions": len(CAPTIONS), "shapes": 4}
    image = image_of(shapes_dir, "yellow", "triangle")
    assert cli.json("query", "--image", image, "--texts", "shapes", "-k", "1")[0]["text"] == "triangle"
    assert cli.json("query", "--image", image, "--texts", "captions", "-k", "1")[0]["text"] == "a yellow triangle"
    assert "several text collections (captions, shapes)" in cli.fails("query", "--image", image, "--texts")
    assert collection_names(open_index(cli.index_dir)) == ["captions", "shapes"]


def test_lost_ann_index_is_rebuilt_from_stored_vectors(cli, shapes_dir):
    shutil.rmtree(cli.index_dir / "texts_captions.ann")
    hits = cli.json("query", "--image", image_of(shapes_dir, "red", "square"), "--texts", "-k", "1")
    assert hits[0]["text"] == "a red square"


def test_csv_and_jsonl_collections(cli, tmp_path):
    (tmp_path / "c.csv").write_text("id,caption\n1,a red circle\n2,a blue star\n")
    assert cli.json("index-texts", tmp_path / "c.csv", "--column", "caption")["name"] == "c"
    (tmp_path / "j.jsonl").write_text('{"t": "a red circle"}\n{"t": "a red star"}\n{"t": "a red star"}\n')
    assert cli.json("index-texts", tmp_path / "j.jsonl", "--column", "t", "--name", "J_2")["total"] == 2


def test_text_query_over_text_collection_has_no_calibrated_score(cli):
    hits = cli.json("query", "a blue square", "--texts", "captions", "-k", "1")
    assert hits[0]["text"] == "a blue square" and "calibrated" not in hits[0]


@pytest.mark.parametrize("args, message", [
    (["index-texts", "/no/such/file.txt"], "does not exist"),
    (["index-texts", "{tmp}/c.csv", "--column", "nope"], "no column 'nope'"),
    (["index-texts", "{tmp}/c.csv", "--column", "text", "--name", "bad name!"], "can't name a text collection"),
    (["query", "--image", "{img}", "--texts", "nope"], "no text collection 'nope' (there are: captions)"),
    (["query", "--image", "/no/such.png", "--texts"], "does not exist"),
])
def test_bad_input_is_one_line(cli, shapes_dir, tmp_path, args, message):
    (tmp_path / "c.csv").write_text("text\nhello\n")
    img = image_of(shapes_dir, "red", "circle")
    assert message in cli.fails(*[a.format(tmp=tmp_path, img=img) for a in args])


def test_query_texts_without_collections_says_how_to_add_one(tiny_model, shapes_dir, tmp_path):
    from support.clirun import Cli

    fresh = Cli(tiny_model, tmp_path / "index")
    assert fresh("index", shapes_dir, "--workers", "1", "--quiet").exit_code == 0
    assert "index-texts FILE" in fresh.fails("query", "--image", image_of(shapes_dir, "red", "circle"), "--texts")


def _write(folder, name, lines):
    (folder / name).write_text("\n".join(lines) + "\n")
    return folder / name



@pytest.fixture
def big_texts(tmp_path, monkeypatch):
    """An index with a 10,000-text collection "big" past FLAT_MAX (IVF-PQ), random unit vectors."""
    import clipsearch.ann.spec as annspec
    from clipsearch import ModelIdentity, create_index

    monkeypatch.setattr(annspec, "FLAT_MAX", 1000)
    index = create_index(tmp_path / "idx", ModelIdentity("m", "w", 16))
    coll = index.texts("big", create=True)
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((10_000, 16)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    coll.add([f"t{i}" for i in range(10_000)], xb)
    coll.sync()
    return index, xb


def test_large_collection_search_is_exact_after_rerank(big_texts):
    """Past FLAT_MAX a collection gets IVF-PQ; its candidates are re-scored with the stored vectors."""
    index, xb = big_texts
    coll = open_texts(open_index(index.root), "big")
    assert coll.ann().spec.kind == "ivfpq"
    rng = np.random.default_rng(1)
    xq = xb[:20] + 0.05 * rng.standard_normal((20, 16)).astype(np.float32)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    hits = coll.search(xq, 5)
    assert sum(row[0].text == f"t{i}" for i, row in enumerate(hits)) >= 18
    for q, row in zip(xq, hits):  # re-ranked: exact cosines, best first
        assert [h.score for h in row] == sorted((h.score for h in row), reverse=True)
        np.testing.assert_allclose([h.score for h in row], xb[[h.id for h in row]] @ q, rtol=1e-5)


def test_nprobe_and_rerank_reach_text_collections(big_texts):
    """`query --texts --nprobe/--rerank` used to be ignored: now they tune the text collection's
    search exactly as they tune the images'. Probing every list and re-ranking everything is exact;
    one list without re-rank is not."""
    from clipsearch import Matcher, Request
    from clipsearch.search.algebra import IMAGE

    index, xb = big_texts
    coll = open_texts(open_index(index.root), "big")
    nlist = coll.ann().spec.nlist
    matcher = Matcher(SimpleNamespace(dim=16, identity=index.identity), index, lambda c, v: c,
                      max_pixels=1, duplicate_threshold=1.0)
    xq = np.random.default_rng(2).standard_normal((30, 16)).astype(np.float32)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    truth = np.argsort(-(xq @ xb.T), axis=1)[:, :10]

    def found(**kw):
        rows = [matcher.run(Request(vector=q, kind=IMAGE, k=10, texts="big", **kw)).matches for q in xq]
        return np.array([[m.hit.id for m in row] for row in rows])

    assert (found(nprobe=nlist, rerank=1000) == truth).all()
    assert (found(nprobe=1, rerank=1) != truth).any()
