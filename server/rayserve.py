"""`clipsearch serve --shards N` on Ray Serve: one deployment per shard (one replica each), and an
ingress that runs the same app as the single server, its images answered by the shards.

The ingress loads the model, encodes each query once, fans the vector out to every shard through
its deployment handle and merges their k best (sharded.py). Ray Serve's HTTP proxy listens on the
--host the CLI checked: loopback unless a token is set. The index directory must be readable at the
same path on every node (one machine, or a shared file system).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ray import serve

from clipsearch.config import Settings
from clipsearch.errors import InputError
from clipsearch.server.sharded import ShardReplica, bounds, images_uri, open_sharded

APP_NAME = "clipsearch"
#: Concurrent calls a shard replica takes: every query of the ingress reaches every shard.
SHARD_MAX_ONGOING = 64


def fan_out(handles: list) -> Callable[..., list]:
    """`fan(method, *args)`: call `method` on every shard at once, then wait for all answers."""
    def fan(method: str, *args) -> list:
        pending = [getattr(h, method).remote(*args) for h in handles]
        return [p.result() for p in pending]

    return fan


@serve.deployment(max_ongoing_requests=SHARD_MAX_ONGOING, ray_actor_options={"num_cpus": 1})
class Shard(ShardReplica):
    """A shard as a Ray Serve deployment (one replica)."""


@serve.deployment(ray_actor_options={"num_cpus": 1})
@serve.ingress()
class Ingress:
    """The app of `make_app` over a `Service` whose index is sharded."""

    def __init__(self, root: str, shards: list, make_encoder: Callable, settings: Settings, name: str,
                 token: str | None, allow_url_fetch: bool, cors_origins: tuple[str, ...]):
        from concurrent.futures import ThreadPoolExecutor

        from clipsearch.server.app import make_app

        # Ray Serve runs the constructor on the replica's event loop, where a handle's answer can't
        # be waited for: the shards are first asked (to open their rows) from a thread.
        with ThreadPoolExecutor(1) as pool:
            self.service = pool.submit(_service, root, fan_out(shards), make_encoder, settings, name,
                                       allow_url_fetch).result()
        self.asgi = make_app(self.service, token=token, cors_origins=cors_origins)  # `app` is taken by Serve

    def __serve_build_asgi_app__(self):
        return self.asgi


def _service(root: str, fan, make_encoder: Callable, settings: Settings, name: str, allow_url_fetch: bool):
    from clipsearch.server.service import Service

    encoder = make_encoder()
    if hasattr(encoder, "full"):
        encoder.full()  # image queries are ready too once it answers
    return Service(encoder, lambda: open_sharded(Path(root), fan), Path(root), settings, name=name,
                   allow_url_fetch=allow_url_fetch)


def deploy(root: Path, n: int, make_encoder: Callable, settings: Settings, *, host: str, port: int,
           token: str | None, name: str, allow_url_fetch: bool = False, cors_origins: tuple[str, ...] = ()) -> str:
    """Start the shards and the ingress on the connected Ray cluster (`ray.init` first); -> the URL.

    `make_encoder` must be picklable (it runs in the ingress's process)."""
    import lance

    from clipsearch.index import open_index
    from clipsearch.server.auth import check_bind

    check_bind(host, token)  # the proxy, too, stays on loopback without a token
    index = open_index(root)
    if len(index) == 0:
        raise InputError(f"the index at {root} has no images to shard: index some first")
    uri = images_uri(index)
    ds = lance.dataset(uri)
    max_id = int(ds.to_table(columns=["id"]).column("id").to_numpy().max())
    shards = [Shard.options(name=f"shard{i}").bind(uri, f"{index.images.name}.shard{i}", index.identity.dim,
                                                   lo, hi, ds.version)
              for i, (lo, hi) in enumerate(bounds(max_id, n))]
    app = Ingress.bind(str(root), shards, make_encoder, settings, name, token, allow_url_fetch, tuple(cors_origins))
    # One proxy, on the head node: the entry point clients were given (and the only one bound).
    serve.start(proxy_location="HeadOnly", http_options={"host": host, "port": port})
    serve.run(app, name=APP_NAME, route_prefix="/")
    return f"http://{host}:{port}"


def stop() -> None:
    serve.delete(APP_NAME)
