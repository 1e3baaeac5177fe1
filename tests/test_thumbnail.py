"""Thumbnails cached on disk, and the indexed-roots check that guards what a viewer may show."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from clipsearch import ImageError, InputError
from clipsearch.store.roots import Roots
from clipsearch.media.thumbnail import Thumbnails

from support import shapes


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photos" / "big.png"
    path.parent.mkdir()
    shapes.draw("red", "circle", size=300, seed=1).save(path)
    return path


def test_thumbnail_is_a_small_jpeg_made_once(photo, tmp_path):
    thumbs = Thumbnails(tmp_path / "cache", 64, 10**8)
    data = thumbs.get(photo)
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG" and max(img.size) == 64
    [cached] = list((tmp_path / "cache").rglob("*.jpg"))
    cached.write_bytes(b"marker")  # the second call must read the cache, not decode again
    assert thumbs.get(photo) == b"marker"


def test_changed_file_gets_a_new_thumbnail(photo, tmp_path):
    thumbs = Thumbnails(tmp_path / "cache", 64, 10**8)
    first = thumbs.get(photo)
    shapes.draw("blue", "square", size=300, seed=2).save(photo)
    os.utime(photo, ns=(1, 10**18))
    assert thumbs.get(photo) != first and len(list((tmp_path / "cache").rglob("*.jpg"))) == 2


def test_unreadable_or_bad_files_raise_image_error_and_nothing_is_cached(tmp_path):
    thumbs = Thumbnails(tmp_path / "cache", 64, 10**8)
    with pytest.raises(ImageError, match="can't read"):
        thumbs.get(tmp_path / "gone.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match="not an image"):
        thumbs.get(tmp_path / "bad.png")
    assert not list(tmp_path.glob("cache/**/*.jpg"))


def test_read_only_cache_still_gives_thumbnails(photo, tmp_path):
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    assert Thumbnails(tmp_path / "cache", 64, 10**8).get(photo)[:2] == b"\xff\xd8"


def test_roots_admit_only_real_paths_inside_them(photo, tmp_path):
    roots = Roots([photo.parent])
    assert photo in roots and roots.resolve(photo) == photo.resolve()
    secret = tmp_path / "secret.png"
    secret.write_bytes(photo.read_bytes())
    link = photo.parent / "link.png"
    os.symlink(secret, link)
    assert link not in roots and secret not in roots
    assert photo.parent / ".." / "secret.png" not in roots
    with pytest.raises(InputError, match="not inside the indexed folders"):
        roots.resolve(link)
    sibling = tmp_path / "photos-other"  # a prefix of the root's name is not inside it
    sibling.mkdir()
    assert sibling / "x.png" not in roots
    assert not Roots([]) and (photo not in Roots([]))
