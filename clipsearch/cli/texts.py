"""Commands for texts: index-texts (text collections), texts (list them), classify (zero-shot)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import click

from clipsearch.config import Settings
from clipsearch.errors import InputError
from clipsearch.media.files import display_path
from clipsearch.cli.group import main
from clipsearch.cli.options import (device_option, filter_from, filter_options, index_option, index_root, json_option,
                      load_model, model_option, pretrained_option)


@main.command("index-texts")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="Collection name [default: the file's name without suffix].")
@click.option("--column", default=None, help='CSV/TSV column or JSONL field holding the texts [default: "text"].')
@click.option("--prune", is_flag=True, help="Also remove texts of the collection that are not in FILE.")
@index_option
@model_option
@pretrained_option
@device_option
@json_option
def index_texts(file, name, column, prune, index_dir, model, pretrained, device, as_json):
    """Add the texts of FILE (.txt: one a line; .csv/.tsv: a column; .jsonl: a field) to a named
    collection in the index, for `clipsearch query --image IMG --texts NAME`. Re-running encodes
    only texts not in the collection yet."""
    from clipsearch import add_texts, check_name, create_index, read_texts

    texts = read_texts(file, column)
    name = check_name(name if name is not None else _name_from(file))
    root = index_root(index_dir)
    encoder = load_model(root, model, pretrained, Settings().with_(device=device))
    s = add_texts(create_index(root, encoder.identity), encoder, name, texts, prune=prune)
    if as_json:
        click.echo(json.dumps({"name": s.name, "added": s.added, "unchanged": s.unchanged,
                               "removed": s.removed, "total": s.total, "index": str(root)}, indent=2))
    else:
        click.echo(f"text collection {s.name}: added {s.added}, unchanged {s.unchanged}, "
                   f"removed {s.removed}; {s.total} texts in {root}")


@main.command("texts")
@index_option
@json_option
def list_texts(index_dir, as_json):
    """List the text collections of the index and their sizes."""
    from clipsearch import collection_names, open_index, open_texts

    idx = open_index(index_root(index_dir))
    sizes = {n: len(open_texts(idx, n)) for n in collection_names(idx)}
    if as_json:
        click.echo(json.dumps(sizes, indent=2))
    elif not sizes:
        click.echo("no text collections: add one with `clipsearch index-texts FILE --name NAME`", err=True)
    for n, size in [] if as_json else sizes.items():
        click.echo(f"{n:20s} {size} texts")


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--labels", default=None, help='Comma-separated labels, e.g. "cat,dog,car".')
@click.option("--labels-file", type=click.Path(path_type=Path), default=None, help="Labels, one a line.")
@click.option("--templates-file", type=click.Path(path_type=Path), default=None,
              help='Prompt templates, one a line, "{}" where the label goes [default: 8 CLIP templates].')
@click.option("--indexed", is_flag=True, help="Classify the images already in the index (stored vectors, no re-encoding).")
@click.option("-k", "--top", type=click.IntRange(min=1), default=3, show_default=True, help="Labels shown per image in the table.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV: path, label, probability, then one column per label.")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="Decoding processes [default: cores - 1].")
@filter_options
@index_option
@model_option
@pretrained_option
@device_option
@json_option
def classify(paths, labels, labels_file, templates_file, indexed, top, as_csv, workers, after, before, camera,
             place, near, folders, kind, min_size, index_dir, model, pretrained, device, as_json):
    """Zero-shot classify the images in PATHS (files or folders), or --indexed: per image each label's
    probability (softmax over the labels, prompts ensembled over templates)."""
    from clipsearch import CLASSIFY_TEMPLATES, Classifier, read_texts

    if bool(paths) == indexed:
        raise click.UsageError("give image files or folders to classify, or --indexed (one of them)")
    if (labels is None) == (labels_file is None):
        raise click.UsageError('give --labels "cat,dog,car" or --labels-file FILE (one of them)')
    where = filter_from(after, before, camera, place, near, folders, kind, min_size)
    if where and not indexed:
        raise click.UsageError("the filters (--after, --camera, --in ...) apply to --indexed images only")
    names = labels.split(",") if labels is not None else read_texts(labels_file)
    templates = read_texts(templates_file) if templates_file else CLASSIFY_TEMPLATES
    settings = Settings().with_(device=device, workers=workers)
    root = index_root(index_dir)
    encoder = load_model(root, model, pretrained, settings)
    classifier = Classifier(encoder, names, templates)
    if indexed:
        results = _indexed(root, encoder, classifier, where or None)
    else:
        results = _files(paths, encoder, classifier, settings)
    _print_predictions(results, classifier.labels, top, as_json, as_csv)


def _indexed(root: Path, encoder, classifier, where) -> list:
    from clipsearch import classify_index, open_index

    idx = open_index(root)
    idx.check_model(encoder.identity)
    return classify_index(idx, classifier, where)


def _files(paths, encoder, classifier, settings: Settings) -> list:
    """Predictions for the image files under `paths`, decoded in worker processes as `index` does."""
    from clipsearch import classify_files
    from clipsearch.media.files import scan
    from clipsearch.ingest.pool import decoding_map, default_workers

    found = scan(paths)
    if not found.paths:
        raise InputError(f"no image files found under {', '.join(map(str, paths))}: check the path")
    with decoding_map(settings.workers or default_workers(), encoder.batch_size, settings.file_timeout_s,
                      n_files=len(found.paths)) as decode_map:
        return list(classify_files(found.paths, encoder, classifier, settings.max_pixels, decode_map=decode_map))


def _print_predictions(results: list, labels: list[str], top: int, as_json: bool, as_csv: bool) -> None:
    from clipsearch import Prediction

    done = [r for r in results if isinstance(r, Prediction)]
    failed = [r for r in results if not isinstance(r, Prediction)]
    for f in [] if as_json else failed:
        click.echo(f"skipped {display_path(f.path)}: {f.reason}", err=True)
    if as_json:
        click.echo(json.dumps([{"path": r.path, "label": r.label, "probability": round(r.probability, 6),
                                "probs": {k: round(v, 6) for k, v in r.probs.items()}} for r in done]
                              + [{"path": f.path, "error": f.reason} for f in failed], indent=2))
    elif as_csv:
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        out.writerow(["path", "label", "probability", *labels])
        out.writerows([r.path, r.label, f"{r.probability:.6f}", *(f"{r.probs[k]:.6f}" for k in labels)]
                      for r in done)
        click.echo(buf.getvalue(), nl=False)
    else:
        width = max((len(display_path(r.path)) for r in done), default=0)
        for r in done:
            best = list(r.probs.items())[:top]
            click.echo(f"{display_path(r.path):{width}s}  " + "  ".join(f"{p:.3f} {k}" for k, p in best))
    if not done:
        raise click.ClickException("no image could be classified: see the reasons above")


def _name_from(file: Path) -> str:
    """A collection name from a file name: its stem with unusable characters replaced by '_'."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(file).stem).lstrip("_.-") or "texts"
