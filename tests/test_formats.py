"""Every raster format Pillow reads, and files told apart by content: images found whatever their
name, everything else counted as skipped by type, none of it decoded to find out."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from support import formats
from support import shapes
from clipsearch.cli import main
from clipsearch.errors import ImageError
from clipsearch.media.files import scan
from clipsearch.media.image import load_image
from clipsearch.media.kinds import PHOTO, file_kind

SHAPE = shapes.draw("blue", "star", size=64, seed=1)


def _reference(name: str) -> Image.Image:
    """What the file written by `formats.WRITERS[name]` holds, as RGB."""
    if name == "pbm":
        return SHAPE.convert("1").convert("RGB")
    if name == "blp":
        return SHAPE.convert("P").convert("RGB")
    return SHAPE.convert("L").convert("RGB") if name in formats.GREY else SHAPE


@pytest.mark.parametrize("name", sorted(formats.WRITERS))
def test_every_format_decodes_to_the_picture(name, tmp_path):
    suffix, write = formats.WRITERS[name]
    path = tmp_path / f"shape{suffix}"
    write(SHAPE, path)
    if name == "eps" and not shutil.which("gs"):
        with pytest.raises(ImageError, match="needs Ghostscript.*install"):
            load_image(path)
        return
    out = load_image(path)
    assert out.mode == "RGB"
    if out.size != SHAPE.size:  # ICNS and ICO give their largest icon
        out = out.resize(SHAPE.size, Image.Resampling.BOX)
    diff = np.abs(np.asarray(out, np.float32) - np.asarray(_reference(name), np.float32)).mean()
    # A second frame/page (black) read instead of the first, or a bad bit depth, is far past these.
    assert diff < (8 if name in formats.LOSSY or name in ("icns", "eps") else 1.5), diff


def test_transparent_tga_is_composited_over_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, :4] = (255, 0, 0, 255)  # left: opaque red; right: fully transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.tga")
    out = np.asarray(load_image(tmp_path / "a.tga"))
    assert tuple(out[4, 1]) == (255, 0, 0) and tuple(out[4, 6]) == (255, 255, 255)


_STRONG = sorted(set(formats.WRITERS) - {"tga", "tga-rgba", "pcx", "fli", "eps"})


@pytest.mark.parametrize("name", _STRONG)
def test_content_not_the_name_says_image(name, tmp_path):
    path = tmp_path / "renamed.bin"
    formats.WRITERS[name][1](SHAPE, path)
    assert file_kind(str(path)) == PHOTO


@pytest.mark.parametrize("content", [b"", b"hello\n", b"%PDF-1.7\n", b"PK\x03\x04zipzip", b"#define X 1\n",
                                     b"\x0a\x05\x01\x08 looks like PCX", bytes(range(256))])
def test_other_files_are_not_images(content, tmp_path):
    (tmp_path / "f.dat").write_bytes(content)
    assert file_kind(str(tmp_path / "f.dat")) is None


def test_scan_decodes_nothing_to_judge_files(tmp_path, monkeypatch):
    for n in range(30):
        (tmp_path / f"note{n}.txt").write_text("not an image " * n)
    SHAPE.save(tmp_path / "IMG_0001", "JPEG")  # no suffix
    SHAPE.save(tmp_path / "photo.png")

    def no_decoding(*a, **kw):
        raise AssertionError("scan opened a file with Pillow")

    monkeypatch.setattr(Image, "open", no_decoding)
    found = scan([tmp_path])
    assert [p.rsplit("/", 1)[1] for p in found.paths] == ["IMG_0001", "photo.png"]
    assert len(found.not_media) == 30 and {t for _, t in found.not_media} == {".txt"}


@pytest.fixture
def cli(tiny_model, tmp_path):
    def run(*args):
        extra = ["--model", str(tiny_model.config), "--pretrained", str(tiny_model.weights), "--workers", "1",
                 "--quiet"] if args[0] == "index" else []
        result = CliRunner().invoke(main, [*map(str, args), "--index", str(tmp_path / "idx"), *extra])
        assert result.exit_code == 0 and "Traceback" not in result.output, result.output
        return result
    return run


def test_summary_counts_skipped_files_by_type_and_info_lists_them(cli, shapes_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    pngs = sorted(shapes_dir.glob("*.png"))[:4]
    for p in pngs:
        shutil.copy(p, photos / p.name)
    for name in ("a.txt", "b.txt", "c.txt", "d.pdf", "README"):
        (photos / name).write_text("words, not pixels\n")
    shutil.copy(pngs[0], photos / "exported-image.data")  # a PNG by content
    n_images = len(pngs) + 1

    out = cli("index", photos)
    assert "skipped 5 files that are not images: .txt 3, (no suffix) 1, .pdf 1" in out.output
    summary = json.loads(cli("index", photos, "--json").output)  # a re-run counts them again
    assert summary["skipped"] == {".txt": 3, "(no suffix)": 1, ".pdf": 1} and summary["skipped_total"] == 5
    assert summary["unchanged"] == n_images
    listed = json.loads(cli("info", "--skipped", "--json").output)
    assert sorted((p["path"].rsplit("/", 1)[1], p["type"]) for p in listed) == [
        ("README", "(no suffix)"), ("a.txt", ".txt"), ("b.txt", ".txt"), ("c.txt", ".txt"), ("d.pdf", ".pdf")]

    assert json.loads(cli("info", "--json").output)["skipped"] == {".txt": 3, "(no suffix)": 1, ".pdf": 1}
    assert "skipped:  5 not images: .txt 3, (no suffix) 1, .pdf 1" in cli("info").output
    (photos / "a.txt").unlink()
    cli("index", photos)
    assert len(json.loads(cli("info", "--skipped", "--json").output)) == 4
    cli("remove", photos / "b.txt")
    assert [p["type"] for p in json.loads(cli("info", "--skipped", "--json").output)].count(".txt") == 1
