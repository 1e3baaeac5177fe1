"""Reading a list of texts from a file: plain text (one per line), CSV, TSV or JSON Lines."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from clipsearch.errors import InputError

#: The column (CSV/TSV) or field (JSONL) read when none is named and the file has several.
DEFAULT_COLUMN = "text"
_FORMATS = {".txt": "lines", ".text": "lines", ".csv": "csv", ".tsv": "tsv", ".tab": "tsv",
            ".jsonl": "jsonl", ".ndjson": "jsonl"}


def read_texts(path: str | Path, column: str | None = None) -> list[str]:
    """The distinct non-empty texts of `path`, stripped, in file order.

    The format comes from the suffix (.txt: one text a line; .csv/.tsv: the `column`;
    .jsonl: the `column` field, or each line a JSON string); any other suffix reads as lines.
    Raises InputError saying what to fix for a missing file, a missing column or a bad line.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"text file {path} does not exist: check the path")
    kind = _FORMATS.get(path.suffix.lower(), "lines")
    if column is not None and kind == "lines":
        raise InputError(f"--column applies to CSV, TSV and JSONL files, not {path.name}: drop it")
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            if kind == "lines":
                raw = f.read().splitlines()
            elif kind == "jsonl":
                raw = _jsonl(f, column, path)
            else:
                raw = _table(f, column, path, "\t" if kind == "tsv" else ",")
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not UTF-8 text ({e.reason}): save it as UTF-8") from e
    except OSError as e:
        raise InputError(f"can't read {path}: {e.strerror or e}") from e
    texts = list(dict.fromkeys(t.strip() for t in raw if t and t.strip()))
    if not texts:
        raise InputError(f"{path} holds no texts: put one text per line (or name a --column)")
    return texts


def _table(f, column: str | None, path: Path, delimiter: str) -> list[str]:
    reader = csv.DictReader(f, delimiter=delimiter)
    names = reader.fieldnames or []
    col = _pick(column, names, path)
    try:
        return [row.get(col) or "" for row in reader]
    except csv.Error as e:
        raise InputError(f"{path} line {reader.line_num}: {e}; fix the file") from e


def _jsonl(f, field: str | None, path: Path) -> list[str]:
    out = []
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise InputError(f"{path} line {n} is not JSON ({e}): one JSON object per line") from e
        if isinstance(obj, str) and field is None:
            out.append(obj)
        elif isinstance(obj, dict) and isinstance(obj.get(field or DEFAULT_COLUMN), str):
            out.append(obj[field or DEFAULT_COLUMN])
        else:
            raise InputError(f"{path} line {n} has no string field {field or DEFAULT_COLUMN!r}: "
                             "name the field with --column")
    return out


def _pick(column: str | None, names: list[str], path: Path) -> str:
    """The column to read: the named one, else "text", else the only one."""
    if column is None and len(names) == 1:
        return names[0]
    want = column or DEFAULT_COLUMN
    if want not in names:
        raise InputError(f"{path} has no column {want!r} (columns: {', '.join(names) or 'none'}): "
                         "name one with --column")
    return want
