"""End to end through the real CLI (tests/clirun.py) with the tiny test model."""

import json
import shutil
from pathlib import Path

import pytest

from support.clirun import Cli


def _names(result):
    return [Path(line.split("  ", 1)[1]).name for line in result.output.splitlines() if "  " in line]


def test_index_summary_counts_every_image(cli, shapes_dir):
    result = cli("info", "--json", model=False)
    info = json.loads(result.output)
    assert info["images"] == len(list(shapes_dir.glob("*.png")))
    assert info["ann"].startswith("Flat")
    assert info["model"]["model"].endswith("tiny-clip.json")


def test_text_query_ranks_matching_shapes_first(cli, shapes_dir):
    result = cli("query", "a red circle", "-k", "3", model=False)
    assert result.exit_code == 0, result.output
    names = _names(result)
    n_red_circles = len(list(shapes_dir.glob("red_circle_*.png")))
    assert len(names) == 3
    assert all(n.startswith("red_circle_") for n in names[:n_red_circles])


def test_image_query_returns_the_file_itself_first(cli, shapes_dir):
    query = sorted(shapes_dir.glob("blue_square_*.png"))[0]
    result = cli("query", "--image", str(query), "--json", model=False)
    hits = json.loads(result.output)
    assert hits[0]["path"] == str(query.resolve())
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_json_output_has_path_and_score(cli):
    hits = json.loads(cli("query", "a green star", "--json", "-k", "5", model=False).output)
    assert len(hits) == 5 and all({"path", "score"} <= set(h) for h in hits)


def test_reindex_encodes_only_new_files(cli, shapes_dir, tmp_path):
    again = cli("index", str(shapes_dir), "--quiet", "--json")
    summary = json.loads(again.output)
    assert summary["indexed"] == 0 and summary["unchanged"] == summary["total"]


def test_broken_file_is_skipped_with_reason(fresh_cli, shapes_dir, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(shapes_dir, photos)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    summary = json.loads(fresh_cli("index", str(photos), "--json", "--workers", "1").output)
    assert [f["path"] for f in summary["failed"]] == [str((photos / "broken.jpg").resolve())]
    assert summary["failed"][0]["reason"]
    assert summary["indexed"] == len(list(photos.glob("*.png")))


@pytest.mark.parametrize("args, message", [
    (["index", "/no/such/folder"], "does not exist"),
    (["query", "a cat"], "no index at"),
    (["query", "   "], "query is empty"),
    (["query"], "TEXT query or --image"),
    (["info"], "no index at"),
])
def test_bad_input_gets_one_line_and_nonzero_exit(fresh_cli, args, message):
    result = fresh_cli(*args, model=args[0] == "index")
    assert result.exit_code != 0
    assert message in result.output


def test_empty_folder_is_refused(fresh_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = fresh_cli("index", str(tmp_path / "empty"))
    assert result.exit_code != 0 and "no image files found" in result.output


def test_query_with_another_model_is_refused(cli):
    result = cli("query", "a red circle", "--model", "ViT-B-32", "--pretrained", "random", model=False)
    assert result.exit_code != 0
    assert "was built with" in result.output


def test_index_inside_photo_folder_is_refused(tiny_model, shapes_dir, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(shapes_dir, photos)
    result = Cli(tiny_model, photos / ".idx")("index", photos)
    assert result.exit_code != 0 and "outside your photo folders" in result.output


def test_damaged_manifest_is_reported_not_lost(cli):
    manifest = cli.index_dir / "manifest.json"
    manifest.write_text("{ not json")
    result = cli("info", model=False)
    assert result.exit_code != 0 and "can't read" in result.output
    assert manifest.read_text() == "{ not json"  # nothing overwritten


def test_index_dir_that_is_a_file_is_refused(fresh_cli, shapes_dir):
    fresh_cli.index_dir.parent.mkdir(parents=True, exist_ok=True)
    fresh_cli.index_dir.write_text("I am a file")
    result = fresh_cli("index", str(shapes_dir))
    assert result.exit_code != 0
    assert fresh_cli.index_dir.read_text() == "I am a file"
