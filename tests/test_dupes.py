"""Duplicate groups: planted near-duplicates of the shape images through the real CLI (tiny model,
real LanceDB and FAISS), and the grouping pieces against brute force."""

from __future__ import annotations

import io
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support import shapes
from clipsearch import AnnIndex, AnnSpec, choose_keeper, group_rows, near_groups
from clipsearch.ann.selfjoin import nearest_cells, pairs_above, train_cells
from support.clirun import Cli

SIZE = 256  # photos are larger than the model's input: the encoder sees them downscaled
#: (colour, shape) of each original, and the colour its look-alike is redrawn in (same seed, so the
#: same position, size and rotation): no look-alike shares a label with an original.
PLANTED = [("red", "circle", "orange"), ("blue", "square", "purple"),
           ("green", "triangle", "red"), ("yellow", "star", "blue")]
VARIANTS = ("resize", "jpeg60", "crop5", "rotate", "exif", "copy")


def _with_exif(jpeg: bytes) -> bytes:
    """The same JPEG with an EXIF segment inserted after SOI: other bytes, identical pixels."""
    exif = Image.Exif()
    exif[0x010F] = "clipsearch test camera"  # Make
    data = exif.tobytes()
    return jpeg[:2] + b"\xff\xe1" + (len(data) + 2).to_bytes(2, "big") + data + jpeg[2:]


def _jpeg(img: Image.Image, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def plant(root: Path) -> dict[str, list[str]]:
    """Write originals, their six duplicates and a look-alike each; {original: [its duplicates]}."""
    root.mkdir(parents=True, exist_ok=True)
    families = {}
    for n, (colour, shape, other) in enumerate(PLANTED):
        img = shapes.draw(colour, shape, size=SIZE, seed=100 + n)
        name = f"{colour}_{shape}"
        original = _jpeg(img)
        edge = round(SIZE * 0.025)  # 5 % of the side cropped, half on each side
        files = {
            f"{name}.jpg": original,
            f"{name}_resize.jpg": _jpeg(img.resize((SIZE * 3 // 4,) * 2, Image.LANCZOS)),
            f"{name}_jpeg60.jpg": _jpeg(img, 60),
            f"{name}_crop5.jpg": _jpeg(img.crop((edge, edge, SIZE - edge, SIZE - edge))),
            f"{name}_rotate.jpg": _jpeg(img.rotate(3, Image.BICUBIC, fillcolor=img.getpixel((0, 0)))),
            f"{name}_exif.jpg": _with_exif(original),
            f"copy of {name}.jpg": original,
            f"{other}_{shape}_lookalike.jpg": _jpeg(shapes.draw(other, shape, size=SIZE, seed=100 + n)),
        }
        for f, data in files.items():
            (root / f).write_bytes(data)
        families[f"{name}.jpg"] = [f for f in files if "lookalike" not in f and f != f"{name}.jpg"]
    shutil.copy(root / "orange_circle_lookalike.jpg", root / "orange_circle_lookalike (1).jpg")
    return families


@pytest.fixture(scope="module")
def planted(tiny_model, tmp_path_factory):
    """(Cli over an index of the planted folder, the folder, {original: duplicates})."""
    root = tmp_path_factory.mktemp("dupes")
    families = plant(root / "photos")
    cli = Cli(tiny_model, root / "index")
    result = cli("index", root / "photos", "--workers", "1", "--quiet")
    assert result.exit_code == 0, result.output
    return cli, root / "photos", families


def _names(group: dict) -> set[str]:
    return {Path(m["path"]).name for m in group["members"]}


def test_duplicates_are_grouped_and_lookalikes_kept_apart(planted):
    cli, _, families = planted
    groups = cli.json("dupes")
    near = [g for g in groups if g["kind"] == "near"]
    assert sorted(map(_names, near), key=sorted) == sorted(({o, *d} for o, d in families.items()), key=sorted)
    assert all(len(g["members"]) == g["size"] == 7 for g in near)
    # the byte-identical look-alike pair is an exact group; no other look-alike is in any group
    assert [(_names(g), g["kind"]) for g in groups if g not in near] == [
        ({"orange_circle_lookalike.jpg", "orange_circle_lookalike (1).jpg"}, "exact")]
    assert [g["size"] for g in groups] == sorted((g["size"] for g in groups), reverse=True)


def test_keeper_has_most_pixels_then_largest_file(planted):
    cli, _, _ = planted
    for g in cli.json("dupes"):
        keeper, members = g["members"][0], g["members"]
        assert keeper["path"] == g["keeper"] and keeper["similarity"] == 1.0
        best = max(members, key=lambda m: (m["width"] * m["height"], m["size"]))
        assert (keeper["width"] * keeper["height"], keeper["size"]) == (best["width"] * best["height"], best["size"])
        assert g["reason"]
        sims = [m["similarity"] for m in members[1:]]
        assert sims == sorted(sims, reverse=True)


def test_threshold_one_keeps_only_byte_identical_groups(planted):
    cli, _, families = planted
    groups = cli.json("dupes", "--threshold", "1")
    for original in families:
        assert any({original, f"copy of {original}"} <= _names(g) for g in groups)
    assert not any("resize" in n for g in groups for n in _names(g))


def test_lines_csv_min_group_and_folder(planted, tmp_path):
    cli, photos, _ = planted
    lines = cli("dupes")
    assert lines.exit_code == 0, lines.output
    assert lines.stdout.count("\ngroup ") + lines.stdout.startswith("group ") == 5
    assert lines.stdout.startswith("group 1: 7 images, near; keep the first: ")
    rows = cli("dupes", "--csv", "--min-group", "3").stdout.splitlines()
    assert rows[0].startswith("group,kind,keep,path,similarity")
    assert len(rows) == 1 + 4 * 7 and sum(r.split(",")[2] == "1" for r in rows[1:]) == 4
    # --in: only images under the folder count
    sub = photos / "sub"
    sub.mkdir()
    for f in photos.glob("blue_square*"):
        shutil.copy(f, sub / f.name)
    cli("index", photos, "--workers", "1", "--quiet")
    try:
        only = cli.json("dupes", "--in", sub)
        assert [_names(g) for g in only] == [{f.name for f in sub.iterdir()}]
    finally:
        shutil.rmtree(sub)
        cli("index", photos, "--workers", "1", "--quiet")


def test_link_dir_holds_symlinks_and_files_stay(planted, tmp_path):
    cli, photos, _ = planted
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in photos.iterdir()}
    links = tmp_path / "review"
    assert cli("dupes", "--link-dir", links).exit_code == 0
    folders = sorted(links.iterdir())
    assert [f.name for f in folders] == [f"group-{n}" for n in range(1, 6)]
    first = sorted(folders[0].iterdir())
    assert first[0].name.startswith("0-keep-") and all(p.is_symlink() for p in first)
    assert {Path(os.readlink(p)).parent for p in first} == {photos.resolve()}
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in photos.iterdir()} == before
    assert "not an empty folder" in cli.fails("dupes", "--link-dir", links)


def test_invalid_threshold_is_refused(planted):
    cli, _, _ = planted
    assert cli("dupes", "--threshold", "1.5").exit_code == 2


# --- the pieces, on vectors --------------------------------------------------------------------

def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_a_chain_of_lookalikes_is_not_one_group():
    """Five images along a great circle, each at cos 0.96 to the next (0.84 two apart): single
    linkage would make one group of five; every group here is a star around a seed."""
    step = np.arccos(0.96)
    xb = np.zeros((5, 16), np.float32)
    xb[:, 0], xb[:, 1] = np.cos(step * np.arange(5)), np.sin(step * np.arange(5))
    groups = near_groups(xb, 0.95)
    assert groups and sum(map(len, groups)) == len(np.unique(np.concatenate(groups)))  # disjoint
    assert not any({0, 4} <= set(g.tolist()) for g in groups)
    for g in groups:
        S = xb[g] @ xb[g].T
        assert (S >= 0.95 - 1e-6).all(1).any()  # one member (the seed) is close to all


def test_exact_keys_group_whatever_their_vectors():
    xb = _unit(np.random.default_rng(0).standard_normal((6, 32)))
    keys = np.array(["a", "", "a", "b", "", "b"])
    assert sorted(map(sorted, group_rows(xb, 0.95, keys))) == [[0, 2], [3, 5]]


def test_self_join_finds_what_brute_force_finds():
    rng = np.random.default_rng(1)
    base = _unit(rng.standard_normal((6000, 64)) * (1 / np.sqrt(np.arange(1, 65))))
    noise = _unit(rng.standard_normal((600, 64)))
    xb = _unit(np.vstack([base, base[:600] + 0.2 * noise]))
    G = xb @ xb.T
    truth = {(int(i), int(j)) for i, j in zip(*np.nonzero(np.triu(G >= 0.95, 1)))}
    assert len(truth) >= 600
    i, j, s = pairs_above(xb, 0.95, np.zeros((len(xb), 1), np.int64))
    assert set(zip(i.tolist(), j.tolist())) == truth  # one cell: exact
    np.testing.assert_allclose(s, G[i, j], atol=1e-5)
    cells = nearest_cells(xb, train_cells(xb, 64))
    i, j, _ = pairs_above(xb, 0.95, cells)
    found = set(zip(i.tolist(), j.tolist()))
    assert found <= truth and len(found) >= 0.98 * len(truth)


def test_groups_from_an_ivf_index_match_groups_from_kmeans():
    rng = np.random.default_rng(2)
    base = _unit(rng.standard_normal((5000, 64)))
    xb = _unit(np.vstack([base, base[:300] + 0.15 * _unit(rng.standard_normal((300, 64)))]))
    ann = AnnIndex.build(xb, np.arange(len(xb)), AnnSpec("ivfpq", 64, nlist=64, m=4, train_size=5300, nprobe=8))
    planted = {(i, 5000 + i) for i in range(300)}
    for groups in (near_groups(xb, 0.95, ann), near_groups(xb, 0.95)):  # the ANN's cells, k-means'
        found = {tuple(sorted(g.tolist())) for g in groups}
        assert found <= planted and len(found) >= 0.98 * len(planted)  # uniform data: IVF's worst case


def test_keeper_rule_and_reasons():
    assert choose_keeper([10, 20], [10, 20], [9, 5], [1, 2], ["a", "b"], [0, 0]) == (1, "most pixels (20x20)")
    k, why = choose_keeper([20, 20], [20, 20], [5, 9], [1, 2], ["a", "b"], [0, 0])
    assert k == 1 and why.startswith("largest file (9 B)")
    k, why = choose_keeper([20, 20], [20, 20], [9, 9], [5e8, 4e8], ["a", "b"], [True, True])
    assert k == 1 and why.startswith("taken first")
    k, why = choose_keeper([20, 20], [20, 20], [9, 9], [5e8, 4e8], ["a", "b"], [False, False])
    assert k == 1 and why.startswith("oldest file (no date taken")
    assert choose_keeper([1, 1], [1, 1], [1, 1], [1, 1], ["b", "a"], [0, 0])[0] == 1


def test_dates_taken_are_read_from_text_timestamps_and_numbers():
    import pyarrow as pa

    from clipsearch.duplicates import _epoch

    text = _epoch(pa.chunked_array([["2024:05:01 10:00:00", None, "2024-05-01T10:00:01", "junk"]]))
    assert text[0] + 1 == text[2] and np.isnan(text[[1, 3]]).all()
    stamps = _epoch(pa.array([0, None], pa.timestamp("ms")))  # a record batch's column
    assert stamps[0] == 0 and np.isnan(stamps[1])
    assert _epoch(pa.chunked_array([[1.5, None]]))[0] == 1.5


# --- collapsed results: the CLI and the page ---------------------------------------------------

def test_query_collapse_shows_one_image_per_group_with_its_size(planted):
    cli, photos, families = planted
    family = {"red_circle.jpg", *families["red_circle.jpg"]}
    plain = cli.json("query", "--image", photos / "red_circle.jpg", "-k", "7")
    assert {Path(h["path"]).name for h in plain} == family and "group_size" not in plain[0]
    folded = cli.json("query", "--image", photos / "red_circle.jpg", "-k", "3", "--collapse")
    names = [Path(h["path"]).name for h in folded]
    assert len(folded) == 3 and names[0] in family and not family & set(names[1:])
    assert folded[0]["group_size"] == 7 and all(h["group_size"] >= 1 for h in folded)
    lines = cli("query", "--image", photos / "red_circle.jpg", "-k", "3", "--collapse", ok=True)
    assert "(+6 near-duplicates)" in lines.stdout.splitlines()[0]
    assert "drop it with --texts" in cli.fails("query", "a red circle", "--texts", "--collapse")


@pytest.fixture
def planted_page(planted, monkeypatch):
    """The Streamlit page over the planted index (AppTest swaps __main__: put pytest's back)."""
    from streamlit.testing.v1 import AppTest

    from support.ui_support import APP

    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    monkeypatch.setenv("CLIPSEARCH_INDEX", str(planted[0].index_dir))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_page_collapses_results_and_shows_duplicate_groups(planted_page):
    at = planted_page
    at.text_input(key="text").input("a red circle").run()
    plain = [im.proto.imgs[0].alt for im in at.get("image") if im.proto.imgs[0].alt]
    at.toggle(key="collapse").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    folded = [im.proto.imgs[0].alt for im in at.get("image") if im.proto.imgs[0].alt]
    assert len(plain) == 10 and len(folded) == 8  # the 35 images: 4 planted groups, a byte-identical
    assert len(set(folded)) == len(folded)        # pair of look-alikes and 3 more look-alikes
    red = [n for n in folded if n.startswith(("red_circle", "copy of red_circle"))]
    assert len(red) == 1 and sum(n.startswith(("red_circle", "copy of red_circle")) for n in plain) >= 2
    assert "+6 near-duplicates" in [c.value for c in at.caption]
    at.sidebar.radio(key="page").set_value("Duplicates").run()
    assert not at.exception, [e.value for e in at.exception]
    heads = [h.value for h in at.subheader]
    assert heads[:4] == [f"Group {n}: 7 images (near)" for n in range(1, 5)] and len(heads) == 5
    captions = [im.proto.imgs[0].caption for im in at.get("image")]
    assert sum(c.startswith("keep") for c in captions) == 5 and len(captions) == 4 * 7 + 2
