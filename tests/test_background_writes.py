"""Table writes run in a writer thread beside the encoder: same rows, same order, errors not lost."""

import numpy as np
import pytest

from clipsearch import Settings, add_paths, create_index, embed_files, load_encoder

EVERY_5 = Settings(commit_every=5)  # 48 images: ten commits, most of them in the background


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return load_encoder(str(tiny_model.config), str(tiny_model.weights), "cpu", batch_size=4)


def test_many_background_commits_keep_rows_and_vectors_aligned(encoder, shapes_dir, tmp_path):
    index = create_index(tmp_path / "idx", encoder.identity)
    summary = add_paths(index, encoder, [str(shapes_dir)], EVERY_5)
    rows = index.images.all_rows()
    assert summary.indexed == len(rows) == len(list(shapes_dir.glob("*.png")))
    assert sorted(r.id for r in rows) == list(range(len(rows)))
    ids, xb = index.images.vectors([r.id for r in rows])
    by_id = dict(zip(ids.tolist(), xb))
    paths = [r.path for r in rows]
    expected = embed_files(paths, encoder, max_pixels=10**8).vectors
    for row, want in zip(rows, expected):
        np.testing.assert_allclose(by_id[row.id], want, atol=1e-5)


def test_a_failed_background_write_stops_the_run(encoder, shapes_dir, tmp_path, monkeypatch):
    index = create_index(tmp_path / "idx", encoder.identity)
    calls = []

    def failing_add(rows, xb):
        calls.append(len(rows))
        if len(calls) == 2:
            raise OSError("disk full")

    monkeypatch.setattr(index.images, "add", failing_add)
    with pytest.raises(OSError, match="disk full"):
        add_paths(index, encoder, [str(shapes_dir)], EVERY_5)
    assert len(calls) == 2  # the error surfaced before another write was handed over
