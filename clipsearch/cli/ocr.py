"""`clipsearch ocr`: read the words in the indexed pictures (also run by `clipsearch index --ocr`)."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import click

from clipsearch.cli.group import main
from clipsearch.cli.options import device_option, index_option, index_root, json_option
from clipsearch.config import Settings
from clipsearch.media.files import display_path

workers_option = click.option("--ocr-workers", "ocr_workers", type=click.IntRange(min=1), default=None,
                              help="Processes reading text [default: one per core, one with CUDA].")


@main.command("ocr")
@index_option
@device_option
@workers_option
@click.option("--file-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help=f"Seconds one picture may take to read [default: {Settings().ocr.file_timeout_s:g}].")
@click.option("--retry-failed", is_flag=True, help="Read again the pictures the reader failed on.")
@click.option("--failed", "list_failed", is_flag=True, help="List the pictures the reader failed on, with why.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--commit-every", type=click.IntRange(min=1), default=256, hidden=True)
@json_option
def ocr(index_dir, device, ocr_workers, file_timeout, retry_failed, list_failed, quiet, commit_every, as_json):
    """Read the words in every indexed picture (and video frame) that has none read yet.

    Words found make plain queries hybrid: `clipsearch query "invoice 4471"` ranks the pictures
    bearing those words first. It can be stopped and run again: what was read is kept.
    """
    from clipsearch import open_index

    idx = open_index(index_root(index_dir), writable=not list_failed)
    if list_failed:
        return _print_failures(idx, as_json)
    settings = Settings().with_(device=device)
    if file_timeout is not None:
        settings = settings.with_(ocr=replace(settings.ocr, file_timeout_s=file_timeout))
    summary = read_text(idx, settings, ocr_workers, progress=not quiet and not as_json, retry_failed=retry_failed,
                        commit_every=commit_every)
    print_summary(summary, idx, as_json)


def read_text(idx, settings: Settings, workers: int | None = None, progress: bool = True, retry_failed: bool = False,
              commit_every: int = 256):
    """Read the pictures of `idx` that have no text yet, in worker processes, with a progress bar."""
    from clipsearch.indexer.pipeline import FAILPOINT_ENV, failpoint
    from clipsearch.ingest.ocr import read_pictures, reading_map
    from clipsearch.models.ocr import identity, model_files

    model_files()  # a missing model is said here, not recorded as every picture's failure
    bar = _Bar(progress)
    try:
        with reading_map(settings, workers) as read_map:
            return read_pictures(idx, read_map, identity(settings.ocr), commit_every=commit_every,
                                 retry_failed=retry_failed, on_progress=bar,
                                 checkpoint=failpoint(os.environ.get(FAILPOINT_ENV)))
    finally:
        bar.close()


def print_summary(s, idx, as_json: bool) -> None:
    """A reading run's summary (`OcrSummary`), as lines or JSON."""
    stats = idx.ocr.stats()
    if as_json:
        click.echo(json.dumps(s.to_dict() | {"index": str(idx.root), "pictures_with_text": stats["with_text"]},
                              indent=2))
        return
    for path, reason in s.failed[:20]:
        click.echo(f"failed to read {display_path(path)}: {reason}", err=True)
    if len(s.failed) > 20:
        click.echo(f"… and {len(s.failed) - 20} more (see `clipsearch ocr --failed`)", err=True)
    if s.changed:
        click.echo(f"{s.changed} files changed since they were indexed: run `clipsearch index` on them, "
                   "then this again")
    click.echo(f"read {s.read} pictures ({s.with_text} with text, {s.lines} lines; failed {len(s.failed)}) in "
               f"{s.seconds:.1f} s ({s.per_s:.2f} pictures/s); {stats['with_text']} pictures with text in {idx.root}")


def _print_failures(idx, as_json: bool) -> None:
    """The pictures the reader failed on: their paths (from the images table) and why."""
    from clipsearch.store.ocr import picture_key

    failures = idx.ocr.failures()
    paths = {}
    for r in idx.images.all_rows():
        paths.setdefault(picture_key(r.hash, r.time_s, r.id), r.path)
    rows = sorted((display_path(paths[k]), why) for k, why in failures.items() if k in paths)
    if as_json:
        click.echo(json.dumps([{"path": p, "reason": why} for p, why in rows], indent=2))
        return
    for p, why in rows:
        click.echo(f"{p}: {why}")
    if not rows:
        click.echo("no picture failed to be read", err=True)


class _Bar:
    """A progress callback `(done, total)`, drawn with tqdm on first use."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar = enabled, None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="pic", desc="reading text", leave=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
