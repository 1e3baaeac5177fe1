"""`clipsearch models`: the presets, and moving a model to a machine with no network."""

from __future__ import annotations

from pathlib import Path

import click

from clipsearch.config import DEFAULT_PRESET, PRESETS, default_models_dir, resolve_model
from clipsearch.cli.group import main
from clipsearch.cli.options import pretrained_option

@main.group(invoke_without_command=True)
@click.pass_context
def models(ctx):
    """List the named model presets and imported models; export and import models."""
    if ctx.invoked_subcommand is not None:
        return
    from clipsearch.models.bundle import imported_models

    for name, (arch, weights) in PRESETS.items():
        click.echo(f"{name:14s} {arch} / {weights}{'  (default)' if name == DEFAULT_PRESET else ''}")
    for m in imported_models(default_models_dir()):
        click.echo(f"{'imported':14s} {m.describe()}  ({m.dir})")


@models.command("export")
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pretrained_option
def export(name, file, pretrained):
    """Write model NAME (a preset, architecture or config JSON) to FILE: weights, config, tokenizer.

    Run it where the model can be downloaded; take FILE to the offline machine and run
    `clipsearch models import FILE` there.
    """
    from clipsearch.models.bundle import export_model

    arch, weights = resolve_model(name, pretrained)
    done = export_model(arch, weights, file)
    click.echo(f"exported {done.describe()} to {file} ({file.stat().st_size / 1e6:.1f} MB)")


@models.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_(file):
    """Make the model in FILE (from `clipsearch models export`) usable with no network.

    It goes into $CLIPSEARCH_MODELS, else a per-user data directory, where --model finds it.
    """
    from clipsearch.models.bundle import import_model

    done = import_model(file, default_models_dir())
    preset = next((n for n, spec in PRESETS.items() if spec == (done.model, done.pretrained)), None)
    click.echo(f"imported {done.describe()} into {done.dir}; use it with --model {preset or done.model}")
