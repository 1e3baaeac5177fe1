"""Keeping an index tidy: `remove`, `optimize`, and the listings of `info --failed` and `info --skipped`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from clipsearch.cli.group import main
from clipsearch.cli.options import index_option, index_root, json_option


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@index_option
@json_option
def remove(paths, index_dir, as_json):
    """Remove PATHS (files, or folders with everything under them) from the index.

    The files themselves are not touched; `clipsearch index` on a folder above them adds them back.
    """
    from clipsearch import open_index
    from clipsearch.ingest.update import remove_paths

    idx = open_index(index_root(index_dir), writable=True)
    n = remove_paths(idx, [os.fspath(p) for p in paths])
    if as_json:
        click.echo(json.dumps({"removed": n, "total": len(idx), "index": str(idx.root)}, indent=2))
    else:
        click.echo(f"removed {n} images; {len(idx)} images in {idx.root}")


@main.command()
@index_option
@json_option
def optimize(index_dir, as_json):
    """Merge each collection's ANN segments into one, without the rows removed since.

    Every `index` run adds a segment and merges small ones as it goes; this does the big merge
    now (minutes at millions of images). Queries go on meanwhile: they see the segments of before
    until the merged one is committed.
    """
    from clipsearch import open_index
    from clipsearch.indexer.pipeline import FAILPOINT_ENV, failpoint

    idx = open_index(index_root(index_dir), writable=True)
    checkpoint, done = failpoint(os.environ.get(FAILPOINT_ENV)), []
    with idx.writing():
        for coll in idx.collections():
            note = coll.sync(checkpoint, optimize=True)
            ann = coll.ann()
            done.append({"name": coll.name, "count": len(ann), "segments": len(ann.segments),
                         "ann": ann.spec.describe(), "note": note})
    if as_json:
        click.echo(json.dumps({"index": str(idx.root), "collections": done}, indent=2))
        return
    for d in done:
        click.echo(f"{d['name']}: {d['count']} vectors in {d['segments']} segment(s), {d['ann']}"
                   + (f"; {d['note']}" if d["note"] else ""))


def print_failures(idx, as_json: bool) -> None:
    """The files that could not be indexed: "path: reason", or JSON with their size and mtime."""
    from clipsearch.media.files import display_path

    failures = sorted(idx.failures.all(), key=lambda f: f.path)
    if as_json:
        click.echo(json.dumps([{"path": display_path(f.path), "reason": f.reason, "size": f.size,
                                "mtime": f.mtime} for f in failures], indent=2))
        return
    for f in failures:
        click.echo(f"{display_path(f.path)}: {f.reason}")
    click.echo(f"{len(failures)} files could not be indexed; they are retried when they change", err=True)


def print_skipped(idx, as_json: bool) -> None:
    """The files found that are not images: "type  path" lines, or JSON, and the count by type."""
    from clipsearch.media.files import display_path
    from clipsearch.store.skipped import count_types

    skipped = idx.skipped.all()
    if as_json:
        click.echo(json.dumps([{"path": display_path(p), "type": t} for p, t in skipped], indent=2))
        return
    for p, t in skipped:
        click.echo(f"{t:12s}  {display_path(p)}")
    kinds = ", ".join(f"{t} {n}" for t, n in count_types(skipped).items())
    click.echo(f"{len(skipped)} files are not images, RAW photos or videos{': ' + kinds if kinds else ''}",
               err=True)
