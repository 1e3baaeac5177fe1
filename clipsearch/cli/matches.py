"""Printing query results (images or texts) as lines or JSON, and the query grammar for --help."""

from __future__ import annotations

import json

import click

from clipsearch.media.files import display_path
from clipsearch.media.video import timestamp

QUERY_GRAMMAR = """\b
Query algebra: TERMS are texts and images joined by + and - (each a word of its own), each
with an optional weight:
  clipsearch query "golden retriever" + ./pool.jpg - indoors
  clipsearch query 2:beach - people
\b
  query := [op] term (op term)*      op := + | -
  term  := [weight:] image | text    weight: a number (default 1), e.g. 0.5:sunset
  image := a path: ends in .jpg, .png ... or starts with / ./ ../ ~
  text  := anything else; words in a row form one text
The query vector is the normalised weighted sum of the terms' normalised embeddings.

\b
Words in pictures: once `clipsearch ocr` (or `index --ocr`) has read them, a query's words are
also looked for in the pictures' text, and the two rankings are fused (reciprocal rank fusion;
pictures whose text holds every word come first). "Quoted phrases" must match exactly; stop words
("the", "a" ...) are ignored; --text-only and --visual-only switch the fusion off. JSON results
carry "text_score" (BM25) and the "lines" that matched, with their boxes in the picture's pixels.
With --text-only the score shown is the BM25; --min-score spares the pictures whose words matched.

\b
Calibrated score (JSON "calibrated", used by --min-score): for a text query over images or an
image query over --texts, sigmoid(s*cos(image, text) - log mean_b exp(s*cos(image, b))) over
generic prompts b ("a photo.", "an image." ...; --background FILE replaces them), s the model's
logit scale: 0.5 means the text fits the image no better than "a photo" does; 0.9 keeps its
meaning from query to query.
"""


def match_dict(m) -> dict:
    """A match as a JSON-ready dict (the server answers the same: `Match.to_dict`)."""
    return m.to_dict()


def print_matches(labels: list[str], found: list[list], as_json: bool, empty: str) -> None:
    """One query: a list (JSON) or "score  path|text" lines; several: one block per query."""
    if as_json:
        rows = [[match_dict(m) for m in ms] for ms in found]
        out = rows[0] if len(rows) == 1 else [{"query": q, "results": r} for q, r in zip(labels, rows)]
        click.echo(json.dumps(out, indent=2))
        return
    for n, (label, matches) in enumerate(zip(labels, found)):
        if len(found) > 1:
            click.echo(f"{chr(10) if n else ''}== {display_path(label)}")
        if not matches:
            click.echo(empty, err=True)
        for m in matches:
            more = f"  (+{m.group - 1} near-duplicates)" if m.group and m.group > 1 else ""
            click.echo(f"{m.hit.score:.4f}  {_label(m.hit)}{more}")
            for line in getattr(m, "lines", ())[:3]:
                click.echo(f"        “{line.text}”")


def _label(hit) -> str:
    """A text, an image's path, or a video frame's `path@mm:ss`."""
    if not hasattr(hit, "path"):
        return hit.text
    return display_path(hit.path) + (f"@{timestamp(hit.time_s)}" if getattr(hit, "time_s", None) is not None else "")

