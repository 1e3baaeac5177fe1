"""Sharded serving: the images split by id range, an ANN index per shard, the k best merged exactly.

In this process (shard objects called directly) against the index itself, through the one query
method; then on Ray Serve: 2 shard deployments and the ingress on the session's local Ray cluster
answer 20 queries with the same top 10 as the single server.
"""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from clipsearch import Matcher, Request, Settings, load_encoder, make_filter, open_index
from clipsearch.server.sharded import ShardedImages, ShardedIndex, ShardReplica, bounds, images_uri, merge
from clipsearch.store.records import TextHit
from support.clirun import CAPTIONS
from support.server import TOKEN


def test_bounds_split_the_ids_into_adjacent_ranges():
    for max_id, n in [(0, 1), (47, 2), (99, 3), (10, 4), (5, 8)]:
        b = bounds(max_id, n)
        assert len(b) == n and b[0][0] == 0 and b[-1][1] is None  # the last one takes later rows
        assert all(hi == nxt for (_, hi), (nxt, _) in zip(b, b[1:]))
        held = [i for i in range(max_id + 1) if sum(lo <= i and (hi is None or i < hi) for lo, hi in b) == 1]
        assert held == list(range(max_id + 1))


def test_merge_keeps_the_k_best_of_all_shards():
    a = [TextHit("a", 0.9, 1), TextHit("b", 0.5, 2)]
    b = [TextHit("c", 0.7, 7), TextHit("d", 0.5, 0), TextHit("e", 0.1, 9)]
    assert [h.id for h in merge([a, b], 4)] == [1, 7, 0, 2]  # a tie goes to the lower id
    assert merge([[], []], 3) == []


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return load_encoder(str(tiny_model.config), str(tiny_model.weights), "cpu")


@pytest.fixture(scope="module")
def sharded(shapes_index):
    """The shape index with its images in 3 in-process shards, beside the index itself."""
    import lance

    index = open_index(shapes_index)
    uri = images_uri(index)
    version = lance.dataset(uri).version
    max_id = int(index.images.vectors()[0].max())
    shards = [ShardReplica(uri, f"{index.images.name}.shard{i}", index.identity.dim, lo, hi, version)
              for i, (lo, hi) in enumerate(bounds(max_id, 3))]

    def fan(method, *args):
        return [getattr(s, method)(*args) for s in shards]

    return index, ShardedIndex(index, ShardedImages(fan, version, index.images.name)), shards


def test_shards_hold_every_image_once_and_search_as_the_index(sharded):
    index, split, shards = sharded
    counts = [s.prepare(split.images.version) for s in shards]
    assert len(split) == len(index) == sum(counts) == 48 and min(counts) > 0
    ids, xb = index.images.vectors()
    for k in (1, 5, 10, 48):
        want = index.images.search(xb[:20], k)
        got = split.images.search(xb[:20], k)
        assert [[h.id for h in row] for row in got] == [[h.id for h in row] for row in want]
        np.testing.assert_allclose([[h.score for h in row] for row in got], [[h.score for h in row] for row in want],
                                   atol=1e-6)
    np.testing.assert_array_equal(split.images.vectors_of(ids[::-1]), index.images.vectors_of(ids[::-1]))
    assert split.images.rows(ids[:5]) == index.images.rows(ids[:5])


@pytest.mark.parametrize("request_", [
    Request("a red circle", k=10),
    Request("a blue star - a star", k=5, collapse=True),
    Request("a green square", k=10, where=make_filter(kind="photo"), sort="date"),
    Request("a yellow triangle", k=10, min_score=0.5),
    Request("a purple circle", k=3, texts="captions"),
], ids=["text", "collapse", "filter", "min-score", "texts"])
def test_the_one_query_method_answers_alike_over_shards(sharded, encoder, request_):
    index, split, _ = sharded
    s = Settings()
    single = Matcher(encoder, index, max_pixels=s.max_pixels, duplicate_threshold=s.duplicate_threshold)
    over_shards = Matcher(encoder, split, max_pixels=s.max_pixels, duplicate_threshold=s.duplicate_threshold)
    want, got = single.run(request_).matches, over_shards.run(request_).matches
    assert [m.hit.id for m in got] == [m.hit.id for m in want] and want
    assert [m.calibrated for m in got] == pytest.approx([m.calibrated for m in want])
    assert [m.group for m in got] == [m.group for m in want]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_shards_on_ray_serve_answer_as_the_single_server(ray_cluster, served, tiny_model):
    import httpx
    import ray
    from ray import serve

    from clipsearch.cli.serve import _query_encoder_loader
    from clipsearch.server import rayserve

    root, settings = served.index_dir, Settings()
    index = open_index(root)
    ids, xb = index.images.vectors()
    queries = [{"query": c, "k": 10} for c in CAPTIONS[:12]]
    queries += [{"image_id": int(i), "k": 10} for i in ids[[0, 13, 30, 47]]]
    queries += [{"embedding": (xb[3] + xb[40]).tolist(), "k": 10}, {"query": "a red circle", "k": 10, "collapse": True}]
    queries += [{"query": "a blue star", "k": 10, "filter": {"type": "photo"}}, {"image_id": int(ids[5]), "texts": "captions"}]
    assert len(queries) == 20
    load = _query_encoder_loader(root, str(tiny_model.config), str(tiny_model.weights), settings)
    ray.init(address=ray_cluster.address, log_to_driver=False)
    try:
        url = rayserve.deploy(root, 2, load, settings, host="127.0.0.1", port=_free_port(), token=TOKEN,
                              name=root.name)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as ray_http, \
                served.client() as single:
            _wait_until_up(ray_http)
            info = ray_http.get("/info").json()
            assert info["images"] == 48 and info["ann"].startswith("2 shards: 24 in Flat")
            for body in queries:
                got, want = ray_http.post("/search", json=body), single.post("/search", json=body)
                assert got.status_code == 200, got.text
                assert [m["id"] for m in got.json()["matches"]] == [m["id"] for m in want.json()["matches"]], body
            knn = {"text": "a green star", "num_images": 10, "indice_name": root.name}
            got, want = ray_http.post("/knn-service", json=knn).json(), single.post("/knn-service", json=knn).json()
            assert [(r["id"], r["image_path"]) for r in got] == [(r["id"], r["image_path"]) for r in want]
            assert got[0]["url"] == f"{url}/image/{got[0]['id']}"
            assert ray_http.get("/info", headers={"Authorization": "Bearer nope"}).status_code == 401
    finally:
        serve.shutdown()
        ray.shutdown()


def _wait_until_up(client, timeout_s: float = 120) -> None:
    """The proxy may take a moment after `serve.run` returns."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if client.get("/health").status_code == 200:
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
        time.sleep(1)
