"""`clipsearch serve`: the real command (uvicorn, in a child process) over the shape index, spoken
to over real HTTP. The native API answers as `clipsearch query` does; ClipClient's exact request
gets clip back's answer; bad input gets a 4xx with {"error": ...} and the server stays up; the token
guards all but /health; files are served by id only. (Bad input: test_serve_input.py; live
updates: test_serve_live.py; shards: test_serve_shards.py.)"""

from __future__ import annotations

import base64
import io
import json
import shlex
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image

from clipsearch import open_index
from clipsearch.config import Settings
from support import shapes
from support.clirun import CAPTIONS, Cli, image_of
from support.server import TOKEN


@pytest.fixture(scope="module")
def http(served):
    with served.client() as client:
        yield client


@pytest.fixture(scope="module")
def index(served):
    return open_index(served.index_dir)


def id_of(index, path: Path) -> int:
    return next(r.id for r in index.images.all_rows() if r.path == str(path))


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def ids(matches: list[dict]) -> list[int]:
    return [m["id"] for m in matches]


# --- safe by default ------------------------------------------------------------------------------

def test_health_is_open_and_everything_else_needs_the_token(served):
    with served.client(token=None) as anon:
        assert anon.get("/health").json()["status"] == "ok"
        for path in ("/info", "/docs", "/openapi.json", "/indices-list", "/image/0", "/thumbnail/0"):
            r = anon.get(path)
            assert r.status_code == 401 and "token" in r.json()["error"], path
            assert r.headers["www-authenticate"] == "Bearer"
        assert anon.post("/knn-service", content=json.dumps({"text": "a red circle"})).status_code == 401
        assert anon.get("/info", headers={"Authorization": "Bearer nope"}).json()["error"].startswith("wrong token")
        assert anon.get("/info", params={"token": "nope"}).status_code == 401
        assert anon.get("/info", params={"token": TOKEN}).json()["images"] == 48
        assert f"/openapi.json?token={TOKEN}" in anon.get("/docs", params={"token": TOKEN}).text
    with served.client() as client:
        spec = client.get("/openapi.json").json()
        assert {"/search", "/search/image", "/classify", "/info", "/image/{image_id}", "/thumbnail/{image_id}",
                "/knn-service", "/indices-list", "/metadata", "/health"} <= set(spec["paths"])
        assert "swagger" in client.get("/docs").text.lower()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "photos.example.org"])
def test_a_non_loopback_host_without_a_token_refuses_to_start(tiny_model, shapes_index, monkeypatch, host):
    monkeypatch.delenv("CLIPSEARCH_TOKEN", raising=False)
    out = Cli(tiny_model, shapes_index).fails("serve", "--host", host)
    assert "--token" in out and "CLIPSEARCH_TOKEN" in out and "Bearer" in out


def test_an_empty_token_refuses_to_start(tiny_model, shapes_index):
    assert "token is empty" in Cli(tiny_model, shapes_index).fails("serve", "--token", " ")


def test_without_a_token_only_requests_to_loopback_names_are_answered():
    """A web page that rebinds its own name to 127.0.0.1 must not read a token-less server's answers."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from clipsearch.server.auth import TokenGate, is_loopback

    inner = Starlette(routes=[Route("/info", lambda r: PlainTextResponse("ok"))])
    open_gate = TestClient(TokenGate(inner, None))
    assert open_gate.get("http://127.0.0.1:8000/info").text == "ok"
    assert open_gate.get("http://localhost/info").text == "ok"
    refused = open_gate.get("http://evil.example:8000/info")
    assert refused.status_code == 403 and "--token" in refused.json()["error"]
    with_token = TestClient(TokenGate(inner, "t0ken"))
    assert with_token.get("http://photos.example.org/info", headers={"Authorization": "Bearer t0ken"}).text == "ok"
    assert [is_loopback(h) for h in ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost")] == [True] * 5
    assert [is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com")] == [False] * 4


# --- the native API: the same answers as `clipsearch query` -------------------------------------

CASES = [  # (the query's words, the CLI's options, the body's fields for the same)
    (["a red circle"], [], {}),
    (["a blue star", "-", "a star"], [], {}),
    (["2:a green square", "+", "a yellow circle"], ["-k", "5"], {"k": 5}),
    (["a purple triangle"], ["--collapse"], {"collapse": True}),
    (["a orange star"], ["--type", "photo", "--sort", "date"], {"filter": {"type": "photo"}, "sort": "date"}),
    (["a red square"], ["--min-score", "0.9"], {"min_score": 0.9}),
    (["a blue circle"], ["--texts", "captions"], {"texts": "captions"}),
    (["a red circle 2019"], [], {}),  # the date is read as a filter: nothing was taken in 2019
    (["a red circle 2019"], ["--no-parse-dates"], {"parse_dates": False}),
]


@pytest.mark.parametrize("words, options, fields", CASES, ids=[" ".join(w + o) for w, o, _ in CASES])
def test_search_answers_as_the_query_command_does(tiny_model, served, http, words, options, fields):
    want = Cli(tiny_model, served.index_dir).json("query", *words, *options)
    got = http.post("/search", json={"query": shlex.join(words), **fields})
    assert got.status_code == 200, got.text
    matches = got.json()["matches"]
    assert ids(matches) == ids(want)
    for g, w in zip(matches, want):
        assert g["score"] == pytest.approx(w["score"], abs=1e-5)
        assert g.get("calibrated") == pytest.approx(w.get("calibrated"), abs=1e-5)
        assert {k: v for k, v in g.items() if k not in ("score", "calibrated", "image_url", "thumbnail_url")} == \
               {k: v for k, v in w.items() if k not in ("score", "calibrated")}
    understood = got.json()["understood"]
    if "2019" in words[0] and not options:
        assert matches == [] and understood["query"] == "a red circle"
        assert "2019" in understood["filter"] and "2019" in understood["note"]
    else:
        assert understood["note"] is None and (understood["filter"] is None) == ("filter" not in fields)


def test_image_queries_answer_as_the_query_command_does(tiny_model, served, http, shapes_dir, index):
    cli = Cli(tiny_model, served.index_dir)
    path = image_of(shapes_dir, "blue", "star")
    for texts, extra in ((None, []), ("captions", ["--texts", "captions"])):
        want = cli.json("query", "--image", path, *extra)
        got = http.post("/search", json={"image": b64(path), "texts": texts}).json()["matches"]
        assert ids(got) == ids(want)
        assert [m["score"] for m in got] == pytest.approx([m["score"] for m in want], abs=1e-5)
    raw = http.post("/search/image", params={"texts": "captions", "k": 3}, content=path.read_bytes())
    assert raw.json()["matches"][0]["text"] == "a blue star"
    by_id = http.post("/search", json={"image_id": id_of(index, path), "k": 3}).json()["matches"]
    assert by_id[0]["id"] == id_of(index, path) and by_id[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert by_id[0]["image_url"] == f"{served.url}/image/{by_id[0]['id']}"


def test_query_images_must_lie_inside_the_indexed_folders(http, tmp_path, shapes_dir):
    outside = tmp_path / "secret.png"
    shapes.draw("red", "circle", seed=3).save(outside)
    r = http.post("/search", json={"query": str(outside)})
    assert r.status_code == 403 and "not inside the indexed folders" in r.json()["error"]
    inside = http.post("/search", json={"query": f"{image_of(shapes_dir, 'red', 'circle')} + a red circle"})
    assert inside.status_code == 200 and "red_circle" in inside.json()["matches"][0]["path"]


def test_classify_and_info(http, index, shapes_dir):
    star = id_of(index, image_of(shapes_dir, "green", "star"))
    got = http.post("/classify", json={"image_id": star, "labels": ["circle", "star", "square", "triangle"]}).json()
    assert got["labels"][0]["label"] == "star"
    assert sum(lab["probability"] for lab in got["labels"]) == pytest.approx(1.0)
    info = http.get("/info").json()
    assert info["images"] == 48 and info["texts"] == {"captions": len(CAPTIONS)} and info["model"]["dim"] == 64


def test_files_are_served_by_id_only(served, http, index, shapes_dir):
    path = image_of(shapes_dir, "yellow", "square")
    i = id_of(index, path)
    assert http.get(f"/image/{i}").content == path.read_bytes()
    thumb = Image.open(io.BytesIO(http.get(f"/thumbnail/{i}").content))
    assert thumb.format == "JPEG" and max(thumb.size) <= Settings().thumbnail_px
    assert http.get("/image/999999").status_code == 404
    for bad in ("/image/..%2F..%2Fetc%2Fpasswd", "/image/%2Fetc%2Fpasswd", "/thumbnail/-x"):
        r = http.get(bad)
        assert r.status_code in (404, 422) and "root:" not in r.text


def test_concurrent_queries_each_get_their_own_answer(served, http):
    texts = CAPTIONS[:8]
    want = {t: ids(http.post("/search", json={"query": t, "k": 5}).json()["matches"]) for t in texts}
    before = http.get("/info").json()["text_cache"]

    def ask(t):
        with served.client() as c:
            return t, ids(c.post("/search", json={"query": t, "k": 5}).json()["matches"])

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, texts * 4))
    assert all(got == want[t] for t, got in answers)
    after = http.get("/info").json()["text_cache"]
    assert after["misses"] == before["misses"] and after["hits"] >= before["hits"] + len(answers)


# --- clip-retrieval's endpoints -----------------------------------------------------------------------

def clip_client_post(served, **query) -> tuple[int, object]:
    """POST /knn-service exactly as ClipClient 2.45 sends it: `requests.post(url, data=json.dumps(...))`
    with every key (unused ones null) and no Content-Type; the token in the URL (it can't set headers)."""
    body = {"text": None, "image": None, "image_url": None, "embedding_input": None, "deduplicate": True,
            "use_safety_model": True, "use_violence_detector": True, "indice_name": served.index_dir.name,
            "use_mclip": False, "aesthetic_score": 9, "aesthetic_weight": 0.5, "modality": "image",
            "num_images": 40, "num_result_ids": 40} | query
    url = urlsplit(served.url)
    conn = HTTPConnection(url.hostname, url.port, timeout=120)
    headers = {"User-Agent": "python-requests/2.32.3", "Accept-Encoding": "gzip, deflate", "Accept": "*/*",
               "Connection": "keep-alive"}
    conn.request("POST", f"/knn-service?token={TOKEN}", body=json.dumps(body), headers=headers)
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def test_clip_client_request_gets_clip_backs_answer(served, http, index, shapes_dir):
    status, found = clip_client_post(served, text="a red circle")
    assert status == 200 and all(set(r) == {"id", "similarity", "image_path", "url"} for r in found)
    assert "red_circle" in found[0]["image_path"]
    same = http.post("/search", json={"query": "a red circle", "k": 40, "collapse": True, "parse_dates": False})
    assert ids(found) == ids(same.json()["matches"])  # deduplicate -> collapse, through the same method
    assert [r["similarity"] for r in found] == pytest.approx([m["score"] for m in same.json()["matches"]], abs=1e-6)
    with served.client(token=None) as anon:  # the url carries the token: a page can show it as it is
        assert anon.get(found[0]["url"]).content == Path(found[0]["image_path"]).read_bytes()

    path = image_of(shapes_dir, "orange", "triangle")
    status, by_image = clip_client_post(served, image=b64(path), num_images=3, deduplicate=False)
    assert status == 200 and by_image[0]["id"] == id_of(index, path) and by_image[0]["similarity"] > 0.99

    _, xb = index.images.vectors([id_of(index, path)])
    status, by_vector = clip_client_post(served, embedding_input=xb[0].tolist(), num_images=3)
    assert status == 200 and by_vector[0]["id"] == id_of(index, path)

    status, captions = clip_client_post(served, image=b64(path), modality="text", num_images=3)
    assert status == 200 and captions[0]["caption"] == "a orange triangle"
    assert all(set(r) == {"id", "similarity", "caption"} for r in captions)


def test_indices_list_and_metadata(served, http, index, shapes_dir):
    name = served.index_dir.name
    assert http.get("/indices-list").json() == [name]
    path = image_of(shapes_dir, "purple", "square")
    i = id_of(index, path)
    got = http.post("/metadata", content=json.dumps({"ids": [i, 999999], "indice_name": name})).json()
    assert got == [{"id": i, "metadata": {"image_path": str(path), "url": f"{served.url}/image/{i}"}},
                   {"id": 999999, "metadata": {}}]
