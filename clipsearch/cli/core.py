"""The core commands: index, query, info, models."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..config import DEFAULT_PRESET, PRESETS, Settings, resolve_model
from ..errors import InputError
from ..files import display_path
from . import main
from .maintenance import print_failures
from .options import device_option, index_option, index_root, json_option, model_option, pretrained_option


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@index_option
@model_option
@pretrained_option
@device_option
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Images per forward pass.")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="Decoding processes [default: cores - 1].")
@click.option("--file-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help=f"Seconds one file may take to decode [default: {Settings().file_timeout_s:g}].")
@click.option("--commit-every", type=click.IntRange(min=1), default=None, hidden=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@json_option
def index(paths, index_dir, model, pretrained, device, batch_size, workers, file_timeout, commit_every,
          quiet, as_json):
    """Index the images in PATHS (folders are walked recursively)."""
    from .. import create_index, load_encoder, open_index
    from ..files import check_roots
    from ..manifest import FILENAME
    import indexer

    check_roots(paths)  # before the (slow) model load
    root = index_root(index_dir)
    _refuse_index_inside(root, paths)
    settings = Settings().with_(batch_size=batch_size, workers=workers, device=device,
                                file_timeout_s=file_timeout, commit_every=commit_every)
    if model is None and pretrained is None and (root / FILENAME).exists():
        identity = open_index(root).identity  # keep indexing with the model the index was built with
        arch, weights = identity.model, identity.pretrained
    else:
        arch, weights = resolve_model(model, pretrained)
    encoder = load_encoder(arch, weights, settings.device, settings.batch_size)
    idx = create_index(root, encoder.identity)
    summary = indexer.run(idx, encoder, [str(p) for p in paths], settings, progress=not quiet and not as_json)
    _print_summary(summary, idx, as_json)


@main.command()
@click.argument("text", required=False)
@click.option("--image", "image", type=click.Path(path_type=Path), help="Search with this image instead of text.")
@click.option("-k", "--top", type=int, default=Settings().top_k, show_default=True, help="How many results.")
@index_option
@model_option
@pretrained_option
@device_option
@json_option
def query(text, image, top, index_dir, model, pretrained, device, as_json):
    """Search the index by TEXT, or by an --image."""
    from .. import Searcher

    if (text is None) == (image is None):
        raise click.UsageError('give a TEXT query or --image FILE (one of them), e.g. clipsearch query "a red car"')
    if text is not None and not text.strip():
        raise InputError('the query is empty: describe what you are looking for, e.g. clipsearch query "a red car"')
    if top < 1:
        raise InputError(f"--top must be at least 1 (got {top})")
    settings = Settings().with_(device=device)
    searcher = Searcher(*_open_for_query(index_dir, model, pretrained, settings), settings.max_pixels)
    hits = searcher.by_text(text, top) if text is not None else searcher.by_image(image, top)
    if as_json:
        click.echo(json.dumps([{"path": h.path, "score": round(h.score, 6), "id": h.id,
                                "width": h.width, "height": h.height} for h in hits], indent=2))
    elif not hits:
        click.echo("no results: the index is empty; add photos with `clipsearch index FOLDER`", err=True)
    for h in [] if as_json else hits:
        click.echo(f"{h.score:.4f}  {display_path(h.path)}")  # a non-UTF-8 byte as \xNN


@main.command()
@index_option
@click.option("--failed", is_flag=True, help="List the files that could not be indexed, with why.")
@json_option
def info(index_dir, failed, as_json):
    """What the index holds: image count, model, ANN index, size on disk."""
    from .. import open_index

    if failed:
        return print_failures(open_index(index_root(index_dir)), as_json)
    d = open_index(index_root(index_dir)).info()
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    m = d["model"]
    click.echo(f"index:    {d['index']}\nimages:   {d['images']}\n"
               f"model:    {m['model']} / {m['pretrained']} ({m['dim']}-d)\nann:      {d['ann']}\n"
               f"roots:    {', '.join(d['roots']) or '-'}\non disk:  {_human_bytes(d['bytes_on_disk'])}\n"
               f"schema:   {d['schema_version']}")


@main.command()
def models():
    """List the named model presets."""
    for name, (arch, weights) in PRESETS.items():
        click.echo(f"{name:14s} {arch} / {weights}{'  (default)' if name == DEFAULT_PRESET else ''}")


def _open_for_query(index_dir, model, pretrained, settings):
    from .. import load_encoder, open_index

    idx = open_index(index_root(index_dir))
    if model is None and pretrained is None:
        arch, weights = idx.identity.model, idx.identity.pretrained
    else:
        arch, weights = resolve_model(model, pretrained)
    encoder = load_encoder(arch, weights, settings.device)
    idx.check_model(encoder.identity)
    return encoder, idx


def _refuse_index_inside(root: Path, paths) -> None:
    for p in paths:
        folder = Path(p).expanduser().resolve()
        if folder.is_dir() and root.resolve().is_relative_to(folder):
            raise InputError(f"the index directory {root} is inside {p}, a folder being indexed: "
                             "pass --index DIR outside your photo folders")


def _print_summary(s, idx, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(s.to_dict() | {"total": len(idx), "index": str(idx.root)}, indent=2))
        return
    d = s.to_dict()
    for f in d["failed"][:20]:
        click.echo(f"skipped {f['path']}: {f['reason']}", err=True)
    if len(s.failed) > 20:
        click.echo(f"… and {len(s.failed) - 20} more skipped files (see `clipsearch info --failed`)", err=True)
    for p in d["skipped_dirs"]:
        click.echo(f"skipped folder {p['path']}: {p['reason']}", err=True)
    click.echo(f"new {s.new}, changed {s.changed}, moved {s.moved}, removed {s.removed}, unchanged "
               f"{s.unchanged}, failed {len(s.failed) + s.known_failed} in {s.seconds:.1f} s "
               f"({s.images_per_s:.1f} images/s); {len(idx)} images in {idx.root}")


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"

