"""The `serve` command: the index as a warm HTTP search service, on this machine only by default."""

from __future__ import annotations

import time
from pathlib import Path

import click

from clipsearch.cli.group import main
from clipsearch.cli.options import device_option, index_option, index_root, model_option, pretrained_option
from clipsearch.config import TOKEN_ENV, Settings
from clipsearch.errors import InputError

_DEFAULTS = Settings()


@main.command()
@index_option
@click.option("--host", default=_DEFAULTS.serve_host, show_default=True,
              help="Interface to listen on. Any but loopback needs --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=_DEFAULTS.serve_port, show_default=True,
              help="Port to listen on (0: a free one, printed).")
@click.option("--token", envvar=TOKEN_ENV, default=None, show_envvar=True,
              help="Clients must send `Authorization: Bearer TOKEN` (or ?token=TOKEN); /health stays open.")
@click.option("--allow-url-fetch", is_flag=True,
              help="Let queries name an image_url for the server to fetch (off: a server fetching any URL is an SSRF hole).")
@click.option("--name", default=None, help="The index's name for clip-retrieval clients [default: the index folder's].")
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
              help="Let web pages from ORIGIN (e.g. clip-front's) read the answers (repeat for several).")
@click.option("--shards", type=click.IntRange(min=1), default=None,
              help="Split the images into N shards on Ray Serve (--ray-address, else $RAY_ADDRESS, else a local Ray).")
@click.option("--ray-address", default=None, metavar="ADDR", help="The Ray cluster for --shards.")
@model_option
@pretrained_option
@device_option
def serve(index_dir, host, port, token, allow_url_fetch, name, cors_origins, shards, ray_address, model,
          pretrained, device):
    """Answer searches over HTTP: a JSON API (docs at /docs) and clip-retrieval's /knn-service."""
    from clipsearch.server.auth import check_bind
    from clipsearch.store import manifest

    check_bind(host, token)  # before anything loads
    root = index_root(index_dir)
    manifest.read(root)  # no index there: say so now
    settings = Settings().with_(device=device)
    name = name or root.name
    if shards or ray_address:
        return _serve_on_ray(root, shards or 1, ray_address, host, port, token, name, allow_url_fetch,
                             cors_origins, model, pretrained, settings)
    _serve_here(root, host, port, token, name, allow_url_fetch, cors_origins, model, pretrained, settings)


def _serve_here(root: Path, host, port, token, name, allow_url_fetch, cors_origins, model, pretrained, settings):
    from clipsearch import open_index
    from clipsearch.cli.core import _open_for_query
    from clipsearch.server import runner
    from clipsearch.server.app import make_app
    from clipsearch.server.service import Service

    try:
        sock = runner.bind(host, port)  # now, so that a busy port is said before the model loads
    except OSError as e:
        raise InputError(f"can't listen on {host}:{port} ({e.strerror or e}): pick another --port") from e
    encoder, _ = _open_for_query(root, model, pretrained, settings)
    if hasattr(encoder, "full"):
        encoder.full()  # image queries are ready too once /health answers
    service = Service(encoder, lambda: open_index(root), root, settings, name=name, allow_url_fetch=allow_url_fetch)
    app = make_app(service, token=token, cors_origins=tuple(cors_origins))

    def ready(url: str) -> None:
        click.echo(f"clipsearch serve: {url} ({len(service.state.index)} images of {root}); "
                   f"API docs at {url}/docs; Ctrl-C stops it", err=True)

    runner.run(app, sock, ready)


def _serve_on_ray(root: Path, shards, ray_address, host, port, token, name, allow_url_fetch, cors_origins,
                  model, pretrained, settings):
    import ray

    from clipsearch.server import rayserve

    make_encoder = _query_encoder_loader(root, model, pretrained, settings)
    ray.init(address=ray_address, log_to_driver=False)
    try:
        url = rayserve.deploy(root, shards, make_encoder, settings, host=host, port=port, token=token, name=name,
                              allow_url_fetch=allow_url_fetch, cors_origins=tuple(cors_origins))
        click.echo(f"clipsearch serve: {url} ({shards} shards on Ray Serve); API docs at {url}/docs; "
                   "Ctrl-C stops it", err=True)
        while True:
            time.sleep(3600)
    finally:
        rayserve.stop()
        ray.shutdown()


def _query_encoder_loader(root: Path, model, pretrained, settings):
    """A picklable `() -> encoder` for the ingress: the open_clip model with --model/--pretrained,
    else the index's model with its exported text tower for texts (as `query` runs it)."""
    import functools

    from clipsearch.cli.options import model_loader
    from clipsearch.config import default_cache_dir
    from clipsearch.models.queryencoder import query_encoder

    load = model_loader(root, model, pretrained, settings)
    if model is not None or pretrained is not None:
        return load
    from clipsearch import open_index

    return functools.partial(query_encoder, open_index(root).identity, default_cache_dir(), load)
