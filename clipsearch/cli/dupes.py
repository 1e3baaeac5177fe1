"""`clipsearch dupes`: list groups of exact and near-duplicate images; never touches the files."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict
from pathlib import Path

import click

from clipsearch.config import Settings
from clipsearch.errors import InputError
from clipsearch.media.files import display_path
from clipsearch.cli.group import main
from clipsearch.cli.options import index_option, index_root, json_option


@main.command()
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True), default=None,
              help=f"Cosine to a group's seed at or above which an image joins it "
                   f"[default: {Settings().duplicate_threshold}].")
@click.option("--in", "folder", type=click.Path(path_type=Path), default=None,
              help="Only images at or under this folder.")
@click.option("--min-group", type=click.IntRange(min=2), default=2, show_default=True,
              help="Leave out smaller groups.")
@click.option("--link-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Fill this new (or empty) folder with one sub-folder of symlinks per group, for review.")
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV: one row per image.")
@index_option
def dupes(threshold, folder, min_group, link_dir, as_json, as_csv, index_dir):
    """List groups of duplicate images: byte-identical copies and near-duplicates.

    Largest groups first; in each, the suggested keeper comes first with the reason (most pixels,
    then largest file, then earliest date taken). Nothing is deleted or moved: --link-dir gives a
    folder of symlinks to review the groups in any image viewer.
    """
    from clipsearch import find_duplicates, open_index

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    if link_dir is not None:
        _check_link_dir(link_dir)
    groups = find_duplicates(open_index(index_root(index_dir)), threshold,
                             None if folder is None else str(folder), min_group)
    if link_dir is not None:
        _link(groups, link_dir)
    if as_json:
        click.echo(json.dumps([group_dict(g) for g in groups], indent=2))
    elif as_csv:
        _print_csv(groups)
    else:
        _print_lines(groups, link_dir)


def group_dict(g) -> dict:
    """A group as a JSON-ready dict."""
    members = [asdict(m) | {"similarity": round(m.similarity, 6)} for m in g.members]
    return {"size": len(g), "kind": g.kind, "keeper": g.keeper.path, "reason": g.reason, "members": members}


def _print_lines(groups, link_dir) -> None:
    if not groups:
        click.echo("no duplicates found", err=True)
    for n, g in enumerate(groups, 1):
        click.echo(f"{chr(10) if n > 1 else ''}group {n}: {len(g)} images, {g.kind}; keep the first: {g.reason}")
        for m in g.members:
            mark = "keep" if m is g.keeper else "    "
            click.echo(f"  {mark}  {m.similarity:.4f}  {m.width}x{m.height}  {display_path(m.path)}")
    if groups:
        extra = sum(len(g) - 1 for g in groups)
        click.echo(f"\n{len(groups)} groups, {extra} images beyond the keepers"
                   + (f"; symlinks in {link_dir}" if link_dir else ""), err=True)


def _print_csv(groups) -> None:
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["group", "kind", "keep", "path", "similarity", "width", "height", "bytes", "date", "hash", "reason"])
    for n, g in enumerate(groups, 1):
        for m in g.members:
            keep = m is g.keeper
            out.writerow([n, g.kind, int(keep), display_path(m.path), f"{m.similarity:.6f}", m.width, m.height,
                          m.size, f"{m.date:.0f}", m.hash, g.reason if keep else ""])
    click.echo(buf.getvalue(), nl=False)


def _check_link_dir(link_dir: Path) -> None:
    if link_dir.exists() and (not link_dir.is_dir() or any(link_dir.iterdir())):
        raise InputError(f"--link-dir {link_dir} exists and is not an empty folder: pass a new folder "
                         "(nothing is ever written over)")


def _link(groups, link_dir: Path) -> None:
    """link_dir/group-0001/0-keep-NAME, 1-NAME ...: symlinks to the members, keeper first."""
    try:
        link_dir.mkdir(parents=True, exist_ok=True)
        width = len(str(len(groups)))
        for n, g in enumerate(groups, 1):
            folder = link_dir / f"group-{n:0{width}d}"
            folder.mkdir()
            for k, m in enumerate(g.members):
                name = f"{k}-{'keep-' if k == 0 else ''}{os.path.basename(m.path)}"
                (folder / name).symlink_to(os.path.abspath(m.path))
    except OSError as e:
        raise InputError(f"can't fill --link-dir {link_dir}: {e}") from e
