"""`clipsearch reindex`: move an index to another model while it stays searchable."""

from __future__ import annotations

import json

import click

from clipsearch.config import Settings, resolve_model
from clipsearch.cli.group import main
from clipsearch.cli.options import device_option, index_option, index_root, json_option, model_option, pretrained_option


@main.command()
@model_option
@pretrained_option
@index_option
@device_option
@click.option("--keep", is_flag=True,
              help="Keep the current model's vectors, to switch back at once with `reindex --model OLD`.")
@click.option("--abort", is_flag=True, help="Drop the vectors of an unfinished re-index.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Images per forward pass.")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="Decoding processes [default: cores - 1].")
@click.option("--commit-every", type=click.IntRange(min=1), default=None, hidden=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@json_option
def reindex(model, pretrained, index_dir, device, keep, abort, batch_size, workers, commit_every, quiet, as_json):
    """Re-encode the index's images and texts with --model, then switch to it.

    Queries, the UI and `clipsearch index` keep working on the current model meanwhile; files
    indexed meanwhile get both embeddings. Interrupt it any time: running it again goes on where it
    stopped. The switch is atomic, once everything is re-encoded.
    """
    from clipsearch import load_encoder, open_index
    from clipsearch import indexer
    from clipsearch.ingest.reindex import abort as abort_reindex

    idx = open_index(index_root(index_dir), writable=True)
    if abort:
        dropped = abort_reindex(idx)
        return click.echo(f"dropped the unfinished re-index to {dropped}" if dropped else "no re-index to drop")
    if model is None and pretrained is None:
        raise click.UsageError("name the model to move to: clipsearch reindex --model NAME (see `clipsearch models`)")
    settings = Settings().with_(batch_size=batch_size, workers=workers, device=device, commit_every=commit_every)
    encoder = load_encoder(*resolve_model(model, pretrained), settings.device, settings.batch_size)
    s = indexer.reindex(idx, encoder, settings, keep=keep, progress=not quiet and not as_json)
    if as_json:
        return click.echo(json.dumps(s.to_dict(), indent=2))
    for path in s.unreadable[:20]:
        click.echo(f"could not re-encode {path}: left out of the new model's vectors", err=True)
    click.echo(f"switched to {s.model}: encoded {s.encoded} images and {s.texts} texts in {s.seconds:.1f} s"
               + (f"; the old vectors are kept: switch back with `clipsearch reindex {s.kept}`" if s.kept else ""))
