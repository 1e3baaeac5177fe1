"""`clipsearch serve` and bad input: every kind the issue lists gets a 4xx with {"error": ...} (413 for
a body over the limit), never a 500 or a traceback, and the server stays up; JSON bodies are read
as JSON whatever their Content-Type says (ClipClient sends none, `curl -d` says it is a form)."""

from __future__ import annotations

import base64
import json

import pytest

from clipsearch.config import Settings


@pytest.fixture(scope="module")
def http(served):
    with served.client() as client:
        yield client


NOT_AN_IMAGE = base64.b64encode(b"%PDF-1.4 not an image at all").decode()
BAD = [
    ("/knn-service", b"{not json", 400),
    ("/knn-service", b"[1, 2]", 422),
    ("/knn-service", b"", 422),
    ("/knn-service", {"image": "this is not base64!"}, 400),
    ("/knn-service", {"image": NOT_AN_IMAGE}, 400),
    ("/knn-service", {"embedding_input": [0.5] * 3}, 400),
    ("/knn-service", {"text": "a cat", "num_images": 0}, 422),
    ("/knn-service", {"text": "a cat", "num_images": 10_001}, 422),
    ("/knn-service", {"text": "a cat", "indice_name": "laion5B"}, 404),
    ("/knn-service", {"text": "a cat", "modality": "audio"}, 422),
    ("/knn-service", {"text": None, "image": None, "image_url": None, "embedding_input": None}, 400),
    ("/knn-service", {"text": ""}, 400),
    ("/knn-service", {"image_url": "http://127.0.0.1:9/cat.jpg"}, 403),  # no --allow-url-fetch
    ("/search", b"{not json", 400),
    ("/search", b"query=a+cat", 400),  # a form, as `curl -d` sends it: not JSON
    ("/search", {}, 400),
    ("/search", {"query": "   "}, 400),
    ("/search", {"query": "a cat", "image_id": 1}, 400),
    ("/search", {"query": "a cat", "texts": "poems"}, 404),
    ("/search", {"query": "a cat", "k": 0}, 422),
    ("/search", {"query": "a cat", "k": 10_001}, 422),
    ("/search", {"query": "a cat", "bogus": 1}, 422),
    ("/search", {"query": "a cat", "filter": {"after": "last tuesday-ish"}}, 400),
    ("/search", {"embedding": [1.0] * 63}, 400),
    ("/search", {"embedding": [0.0] * 64}, 400),
    ("/search", {"image": NOT_AN_IMAGE}, 400),
    ("/search", {"image_id": 999_999}, 404),
    ("/search/image", b"", 400),
    ("/search/image", b"GIF89a but then nothing", 400),
    ("/classify", {"image_id": 0, "labels": ["just one"]}, 422),
    ("/classify", {"labels": ["cat", "dog"]}, 400),
    ("/metadata", {"ids": "all"}, 422),
]


@pytest.mark.parametrize("path, body, status", BAD, ids=[f"{p} {str(b)[:40]}" for p, b, _ in BAD])
def test_bad_input_gets_a_4xx_with_an_error(served, http, path, body, status):
    r = http.post(path, content=body) if isinstance(body, bytes) else http.post(path, json=body)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["error"], str) and r.json()["error"] and "Traceback" not in r.text
    assert http.get("/health").status_code == 200


def test_a_body_over_the_limit_gets_413(http):
    limit = Settings().serve_max_body_bytes
    big = b"x" * (limit + 1)
    for path in ("/knn-service", "/search", "/search/image"):
        r = http.post(path, content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "limit" in r.json()["error"]

    def chunks():  # no Content-Length: refused once the bytes read pass the limit
        for _ in range(limit // 1_000_000 + 1):
            yield b" " * 1_000_000

    r = http.post("/search", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert http.get("/health").status_code == 200


def test_json_bodies_are_read_whatever_their_content_type(http):
    body = json.dumps({"query": "a red circle", "k": 2})
    want = http.post("/search", content=body, headers={"Content-Type": "application/json"}).json()
    for label in (None, "text/plain", "application/x-www-form-urlencoded"):  # curl -d sends the last
        got = http.post("/search", content=body, headers={"Content-Type": label} if label else {})
        assert got.status_code == 200 and got.json() == want


def test_image_urls_are_fetched_only_when_allowed(tmp_path):
    """--allow-url-fetch: an http(s) URL is fetched (size-capped, decoded as an upload); without it,
    or for another scheme, it is refused before any connection is made."""
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from support import shapes

    from clipsearch.server.problems import Problem
    from clipsearch.server.uploads import from_url

    shapes.draw("blue", "circle", size=80, seed=2).save(tmp_path / "q.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    settings = Settings()
    try:
        assert from_url(f"{url}/q.png", settings, allowed=True).size == (80, 80)
        for bad, allowed, status in [(f"{url}/q.png", False, 403), ("file:///etc/passwd", True, 400),
                                     (f"{url}/junk.png", True, 400), (f"{url}/missing.png", True, 400)]:
            with pytest.raises(Problem) as e:
                from_url(bad, settings, allowed=allowed)
            assert e.value.status == status
    finally:
        httpd.shutdown()
