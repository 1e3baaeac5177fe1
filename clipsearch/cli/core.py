"""The core commands: index, query, info."""

from __future__ import annotations

import json
from pathlib import Path

import click

from clipsearch.ann.refine import RERANK_FACTOR
from clipsearch.config import Settings
from clipsearch.errors import InputError
from clipsearch.cli.group import main
from clipsearch.cli.maintenance import print_failures, print_skipped
from clipsearch.cli.matches import QUERY_GRAMMAR, print_matches
from clipsearch.cli.ocr import workers_option as ocr_workers_option
from clipsearch.cli.options import (device_option, encoder_loader, filter_from, filter_options, index_option,
                                    index_root, json_option, load_model, model_option, pretrained_option)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@index_option
@model_option
@pretrained_option
@device_option
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Images per forward pass.")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="Decoding processes [default: cores - 1].")
@click.option("--file-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help=f"Seconds one file may take to decode [default: {Settings().file_timeout_s:g}].")
@click.option("--commit-every", type=click.IntRange(min=1), default=None, hidden=True)
@click.option("--fast-encoder", is_flag=True, default=None,
              help="CPU: bf16 or int8 image tower, ~2x faster, embeddings within cosine 0.999 of fp32.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--ray", "on_ray", is_flag=True,
              help="Decode and encode on a Ray cluster (--ray-address, else $RAY_ADDRESS, else a local one).")
@click.option("--ray-address", default=None, metavar="ADDR", help="The Ray cluster for --ray (implies it).")
@click.option("--ocr", "with_ocr", is_flag=True,
              help="Also read the words in the pictures (as `clipsearch ocr`), in processes of their own.")
@ocr_workers_option
@json_option
def index(paths, index_dir, model, pretrained, device, batch_size, workers, file_timeout, commit_every,
          fast_encoder, quiet, on_ray, ray_address, with_ocr, ocr_workers, as_json):
    """Index the images in PATHS (folders are walked recursively; file:// URIs too)."""
    from clipsearch import create_index
    from clipsearch.media.files import check_roots, local_paths
    from clipsearch import indexer

    paths = local_paths(paths)
    check_roots(paths)  # before the (slow) model load
    if with_ocr:
        from clipsearch.models.ocr import model_files

        model_files()  # a missing OCR model is said before the images are indexed, not after
    root = index_root(index_dir)
    _refuse_index_inside(root, paths)
    settings = Settings().with_(batch_size=batch_size, workers=workers, device=device,
                                file_timeout_s=file_timeout, commit_every=commit_every, fast_encoder=fast_encoder)
    # By default the index's own model; on a CPU, exported to ONNX (a run before this one did), it
    # spares torch's load, here and in Ray's encode actors.
    make_encoder = encoder_loader(root, model, pretrained, settings)
    on_ray = bool(on_ray or ray_address)
    encoder = make_encoder()
    idx = create_index(root, encoder.identity)
    roots, progress = [str(p) for p in paths], not quiet and not as_json
    if on_ray:
        summary = indexer.run_on_ray(idx, encoder, make_encoder, roots, settings, ray_address, progress)
    else:
        summary = indexer.run(idx, encoder, roots, settings, progress=progress)
    _export_towers(encoder, summary)
    if not with_ocr:
        if summary.text_pending:
            summary.notes.append(f"{summary.text_pending} pictures have no words read yet: "
                                 "`clipsearch ocr` reads them")
        return _print_summary(summary, idx, as_json)
    from clipsearch.cli.ocr import print_summary, read_text

    ocr_summary = read_text(idx, settings, ocr_workers, progress)
    _print_summary(summary, idx, as_json, {"ocr": ocr_summary.to_dict()} if as_json else None)
    if not as_json:
        print_summary(ocr_summary, idx, False)


@main.command(epilog=QUERY_GRAMMAR)
@click.argument("terms", nargs=-1)
@click.option("--image", "images", multiple=True, type=click.Path(path_type=Path),
              help="Search with this image instead (repeat for several, each answered on its own).")
@click.option("--texts", "texts", is_flag=False, flag_value="", default=None, metavar="[NAME]",
              help="Rank the texts of collection NAME (the only one when NAME is left out), not images.")
@click.option("--min-score", type=click.FloatRange(0, 1), default=None,
              help="Drop results whose calibrated score (0-1, text->images or image->texts) is lower.")
@click.option("--background", type=click.Path(path_type=Path), default=None,
              help="Prompts the calibrated score compares against, one a line [default: generic photo prompts].")
@click.option("--collapse", is_flag=True,
              help="One image per near-duplicate group (see `dupes`), with the group's size.")
@click.option("-k", "--top", type=int, default=Settings().top_k, show_default=True, help="How many results.")
@filter_options
@click.option("--sort", type=click.Choice(["score", "date"]), default="score", show_default=True,
              help="Order of the k best matches: by score, or newest first.")
@click.option("--text-only", "mode", flag_value="text", default=None,
              help="Only the pictures whose words (read by `clipsearch ocr`) match the query's.")
@click.option("--visual-only", "mode", flag_value="visual",
              help="CLIP alone, without the words read in the pictures.")
@click.option("--no-parse-dates", is_flag=True,
              help='Keep dates in the query as words (by default "beach July 2023" searches "beach" in July 2023).')
@click.option("--nprobe", type=click.IntRange(min=1), default=None,
              help="IVF lists to visit (approximate index only) [default: the index's, see `info`].")
@click.option("--rerank", type=click.IntRange(min=1), default=None,
              help=f"Re-score rerank x k candidates exactly, 1,024 at least; 1: code scores only (approximate "
              f"index only) [default: {RERANK_FACTOR}].")
@index_option
@model_option
@pretrained_option
@device_option
@json_option
def query(terms, images, texts, min_score, background, collapse, top, after, before, camera, place, near,
          folders, kind, min_size, sort, mode, no_parse_dates, nprobe, rerank, index_dir, model, pretrained,
          device, as_json):
    """Search the index by TERMS (text, images, or a weighted sum of them), or by --image."""
    from clipsearch import BACKGROUND_PROMPTS, Calibrator, Matcher, Request, Term, read_texts
    from clipsearch.search.algebra import IMAGE

    if bool(terms) == bool(images):
        raise click.UsageError('give a TEXT query or --image FILE (one of them), e.g. clipsearch query "a red car"')
    if terms and not " ".join(terms).strip():
        raise InputError('the query is empty: describe what you are looking for, e.g. clipsearch query "a red car"')
    if terms:
        from clipsearch.search.language import prefetch

        prefetch(" ".join(terms))  # overlaps the language guesser's load with the model's
    settings = Settings().with_(device=device)
    encoder, index = _open_for_query(index_dir, model, pretrained, settings)
    calibrator = Calibrator(encoder, read_texts(background) if background else BACKGROUND_PROMPTS)
    matcher = Matcher(encoder, index, calibrator, max_pixels=settings.max_pixels,
                      duplicate_threshold=settings.duplicate_threshold)
    where = filter_from(after, before, camera, place, near, folders, kind, min_size)
    queries = [list(terms)] if terms else [[Term(IMAGE, str(p))] for p in images]
    answers = [matcher.run(Request(q, k=top, texts=texts, where=where or None, sort=sort, min_score=min_score,
                                   nprobe=nprobe, rerank=rerank, collapse=collapse, mode=mode or "hybrid",
                                   parse_dates=not no_parse_dates)) for q in queries]
    for note in {a.understood.note for a in answers if a.understood.note}:
        click.echo(note, err=True)
    found = [a.matches for a in answers]
    where = answers[0].understood.where
    collection = None if texts is None else index.texts(texts or None)
    labels = [" ".join(terms)] if terms else [str(p) for p in images]
    print_matches(labels, found, as_json, empty=_empty_hint(collection, min_score, where))
    if terms:
        from clipsearch.search.language import language_hint

        hint = language_hint(" ".join(t for t in terms if not Path(t).is_file()), encoder.identity.model)
        if hint:
            click.echo(hint, err=True)


@main.command()
@index_option
@click.option("--failed", is_flag=True, help="List the files that could not be indexed, with why.")
@click.option("--skipped", is_flag=True, help="List the files found that are not images, with their type.")
@json_option
def info(index_dir, failed, skipped, as_json):
    """What the index holds: image count, model, ANN index, size on disk."""
    from clipsearch import open_index

    if failed:
        return print_failures(open_index(index_root(index_dir)), as_json)
    if skipped:
        return print_skipped(open_index(index_root(index_dir)), as_json)
    from clipsearch.store.skipped import count_types
    from clipsearch.ingest.reindex import describe

    idx = open_index(index_root(index_dir))
    d = idx.info() | {"failed": len(idx.failures.all()), "skipped": count_types(idx.skipped.all()),
                      "vector_sets": describe(idx)}
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    m = d["model"]
    kinds = ", ".join(f"{t} {n}" for t, n in d["skipped"].items())
    click.echo(f"index:    {d['index']}\nimages:   {d['images']}\n"
               f"model:    {m['model']} / {m['pretrained']} ({m['dim']}-d)\n"
               f"ann:      {d['ann']} in {d['ann_segments']} segment(s)\n"
               f"roots:    {', '.join(d['roots']) or '-'}\non disk:  {_human_bytes(d['bytes_on_disk'])}\n"
               f"schema:   {d['schema_version']}\nfailed:   {d['failed']} (--failed lists them)\n"
               f"skipped:  {sum(d['skipped'].values())} not images{': ' + kinds if kinds else ''} (--skipped)")
    if d["ocr"]["read"]:
        o = d["ocr"]
        click.echo(f"text:     {o['with_text']} of {o['read']} pictures read bear words; {o['failed']} failed "
                   "(`clipsearch ocr --failed`)")
    sets = d["vector_sets"]
    if p := sets.get("pending"):
        click.echo(f"reindex:  to {_model(p['model'])}: {p['images_done']}/{p['images_total']} images, "
                   f"{p['texts_done']}/{p['texts_total']} texts (run `clipsearch reindex` with that model to go on)")
    for k in sets["kept"]:
        click.echo(f"kept:     {_model(k['model'])}: {k['images']} images (switch back with "
                   f"`clipsearch reindex --model {k['model']['model']} --pretrained {k['model']['pretrained']}`)")


def _model(m: dict) -> str:
    return f"{m['model']} / {m['pretrained']} ({m['dim']}-d)"


def _open_for_query(index_dir, model, pretrained, settings):
    """(encoder, index): the index's own model, whose text tower answers texts without torch when it
    was exported (`texttower`); the open_clip model loads only if the query needs it."""
    from clipsearch import open_index
    from clipsearch.config import default_cache_dir
    from clipsearch.models.queryencoder import query_encoder

    idx = open_index(index_root(index_dir))
    if model is not None or pretrained is not None:
        encoder = load_model(idx.root, model, pretrained, settings)
        idx.check_model(encoder.identity)
        return encoder, idx
    return query_encoder(idx.identity, default_cache_dir(),
                         lambda: load_model(idx.root, None, None, settings)), idx


def _export_towers(encoder, summary) -> None:
    """Export the model's text tower for fast queries and, when the model ran in fp32 on the CPU, its
    image tower for indexing without torch; once per model (a no-op when done, or when `encoder` is
    itself an export)."""
    from clipsearch.config import default_cache_dir
    from clipsearch.errors import ClipSearchError
    from clipsearch.models import imagetower, texttower

    if isinstance(encoder, imagetower.ImageTower):
        return
    towers = [(texttower, "text queries will load the full model")]
    if encoder.device == "cpu" and not encoder.fast:
        towers.append((imagetower, "indexing will load the full model"))
    for tower, fallback in towers:
        try:
            tower.export(encoder, default_cache_dir())
        except ClipSearchError as e:
            summary.notes.append(f"{e}; {fallback}")


def _empty_hint(collection, min_score, where=None) -> str:
    if where:
        return f"no results among the images {where.describe()}: loosen the filters"
    if min_score is not None:
        return f"no results with a calibrated score of {min_score} or more: lower --min-score"
    if collection is not None:
        return f"no results: the text collection {collection.name} is empty"
    return "no results: the index is empty; add photos with `clipsearch index FOLDER`"


def _refuse_index_inside(root: Path, paths) -> None:
    for p in paths:
        folder = Path(p).expanduser().resolve()
        if folder.is_dir() and root.resolve().is_relative_to(folder):
            raise InputError(f"the index directory {root} is inside {p}, a folder being indexed: "
                             "pass --index DIR outside your photo folders")


def _print_summary(s, idx, as_json: bool, more: dict | None = None) -> None:
    if as_json:
        click.echo(json.dumps(s.to_dict() | {"total": len(idx), "index": str(idx.root)} | (more or {}), indent=2))
        return
    d = s.to_dict()
    for f in d["failed"][:20]:
        click.echo(f"failed {f['path']}: {f['reason']}", err=True)
    if len(s.failed) > 20:
        click.echo(f"… and {len(s.failed) - 20} more failed files (see `clipsearch info --failed`)", err=True)
    if s.skipped:
        kinds = ", ".join(f"{t} {n}" for t, n in s.skipped.items())
        click.echo(f"skipped {d['skipped_total']} files that are not images: {kinds} "
                   "(see `clipsearch info --skipped`)")
    for p in d["skipped_dirs"]:
        click.echo(f"skipped folder {p['path']}: {p['reason']}", err=True)
    for note in s.notes:
        click.echo(note)
    videos = f" ({s.videos} of them videos: {s.frames} frames)" if s.videos else ""
    click.echo(f"new {s.new}, changed {s.changed}{videos}, moved {s.moved}, removed {s.removed}, unchanged "
               f"{s.unchanged}, failed {len(s.failed) + s.known_failed} in {s.seconds:.1f} s "
               f"({s.images_per_s:.1f} images/s); {len(idx)} images in {idx.root}")


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"

