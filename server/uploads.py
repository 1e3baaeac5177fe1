"""Query images that arrive with a request: base64 in JSON, raw bytes, or (when allowed) a URL.

Decoded by the indexer's own loader (`media.image.open_upload`), capped in bytes and pixels. A URL is
fetched only when the server was started with --allow-url-fetch: a server that fetches whatever
URL it is given reaches hosts its clients can't (an SSRF hole).
"""

from __future__ import annotations

import base64
import binascii
import urllib.error
import urllib.request

from clipsearch.config import Settings
from clipsearch.errors import ImageError
from clipsearch.media.image import open_upload
from clipsearch.server.problems import Problem

#: Seconds a URL fetch may take (clip back uses 10 too).
FETCH_TIMEOUT_S = 10.0


def from_base64(text: str, settings: Settings):
    """A decoded RGB PIL image from base64 text of a file's bytes; Problem 400 if it isn't one."""
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise Problem(400, f"image is not valid base64 ({e}): send base64.b64encode(file bytes)") from e
    return from_bytes(data, settings, "`image`")


def from_bytes(data: bytes, settings: Settings, name: str = "the image"):
    """A decoded RGB PIL image from a file's bytes; Problem 400 (413 when too big) if it isn't one."""
    if not data:
        raise Problem(400, f"{name} is empty: send the bytes of an image file")
    if len(data) > settings.upload_max_bytes:
        raise Problem(413, f"{name} is {len(data):,} bytes, over the {settings.upload_max_bytes:,}-byte "
                           "limit: send a smaller file")
    try:
        return open_upload(data, max_bytes=settings.upload_max_bytes, max_pixels=settings.upload_max_pixels)
    except ImageError as e:
        raise Problem(400, f"can't read {name} as an image: {e}") from e


def from_url(url: str, settings: Settings, allowed: bool):
    """A decoded RGB PIL image fetched from an http(s) `url`; Problem 403 unless `allowed`."""
    if not allowed:
        raise Problem(403, "this server doesn't fetch URLs (start it with --allow-url-fetch to allow it): "
                           "send the image itself, base64-encoded, as `image`")
    if not url.lower().startswith(("http://", "https://")):
        raise Problem(400, f"image_url {url[:80]!r} is not an http(s) URL")
    req = urllib.request.Request(url, headers={"User-Agent": "clipsearch-serve"})
    try:
        with urllib.request.urlopen(req, timeout=FETCH_TIMEOUT_S) as r:
            data = r.read(settings.upload_max_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise Problem(400, f"can't fetch image_url: {getattr(e, 'reason', e)}") from e
    return from_bytes(data, settings, "the image at image_url")
