"""The words read in pictures: a LanceDB table with Lance's native full-text index over them.

One row per picture *content*, keyed by the file's content hash (a video frame: `hash@time`), not
by image id: a moved or touched file keeps its text, a copy shares it, a re-index to another model
(same files) needs nothing, and a changed file has a new key and is read again. Rows whose key no
image has any more (removed or changed files) are pruned by the writers (`prune`). A picture the
reader failed on is a row with its `error`, so that it isn't tried again until its file changes.
The table is shared by every vector set of the index (see ingest/reindex.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clipsearch.models.ocr import Line

OCR = "ocr"
#: Stop words, left out of the full-text index and of queries alike (the index is built with this
#: very list, so the two agree): Lucene's English list. "a red circle" must not match every sign
#: with an "a" on it; a short list keeps the words signs are made of ("off", "open", "up").
STOP_WORDS = ("a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
              "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
              "these", "they", "this", "to", "was", "will", "with")
_KEY = re.compile(r"[0-9a-f]{1,128}(@[0-9]+\.[0-9]{3})?|id:[0-9]+")
_DELETE_CHUNK = 1000


@dataclass(frozen=True)
class Reading:
    """What was read in one picture (its `key`): its lines, or the error that stopped the reader."""

    key: str
    lines: tuple[Line, ...] = ()
    error: str | None = None

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


@dataclass(frozen=True)
class Found:
    """A picture whose text matched a full-text query: its key, BM25 score and lines."""

    key: str
    score: float
    lines: tuple[Line, ...]


def picture_key(hash: str, time_s: float | None, id: int) -> str:
    """The key of a picture's text: its content hash (and a video frame's time); "id:N" for rows of
    schema-1 indexes, which have no hash."""
    if not hash:
        return f"id:{int(id)}"
    return hash if time_s is None else f"{hash}@{time_s:.3f}"


def ocr_schema():
    import pyarrow as pa

    line = pa.struct([pa.field("text", pa.string()), pa.field("score", pa.float32()),
                      pa.field("box", pa.list_(pa.float32(), 8))])
    return pa.schema([pa.field("key", pa.string()), pa.field("text", pa.string()),
                      pa.field("lines", pa.list_(line)), pa.field("error", pa.string()),
                      pa.field("reader", pa.string())])


class OcrTable:
    """The `ocr` table of an index's store; writes take the index's write lock."""

    def __init__(self, store, lock):
        self._store, self._lock, self._t = store, lock, None

    @property
    def exists(self) -> bool:
        """Whether any text was ever read (a look at the directory: LanceDB isn't imported)."""
        return self._store.table_dir(OCR).is_dir()

    @property
    def _table(self):
        if self._t is None and self.exists:
            self._t = self._store.open_table(OCR)
        return self._t

    def refresh(self) -> None:
        """See what other processes committed."""
        if self._t is not None:
            self._t.checkout_latest()

    def keys(self) -> set[str]:
        """The keys of every picture read (or tried)."""
        t = self._table
        if t is None:
            return set()
        return set(t.search().select(["key"]).limit(None).to_arrow().column("key").to_pylist())

    def stats(self) -> dict:
        """{"read": pictures read or tried, "with_text": those with lines, "failed": reader errors}."""
        t = self._table
        if t is None:
            return {"read": 0, "with_text": 0, "failed": 0}
        return {"read": t.count_rows(), "with_text": t.count_rows("text != ''"),
                "failed": t.count_rows("error IS NOT NULL")}

    def failures(self) -> dict[str, str]:
        """key -> why the reader failed on that picture."""
        t = self._table
        if t is None:
            return {}
        rows = t.search().where("error IS NOT NULL").select(["key", "error"]).limit(None).to_arrow()
        return dict(zip(rows.column("key").to_pylist(), rows.column("error").to_pylist()))

    def lines(self, keys) -> dict[str, tuple[Line, ...]]:
        """key -> its lines, for `keys`."""
        t, keys = self._table, _checked(keys)
        if t is None or not keys:
            return {}
        rows = t.search().where(_in(keys)).select(["key", "lines"]).limit(None).to_arrow().to_pylist()
        return {r["key"]: _lines(r["lines"]) for r in rows}

    def search(self, words: list[str], phrases: list[str], limit: int) -> list[Found]:
        """The `limit` best pictures by BM25 for any of `words`, each holding every one of `phrases`."""
        t = self._table
        if t is None or not (words or phrases):
            return []
        rows = (t.search(_fts_query(words, phrases), query_type="fts")
                .select(["key", "lines", "_score"]).limit(limit).to_arrow().to_pylist())
        return [Found(r["key"], float(r["_score"]), _lines(r["lines"])) for r in rows]

    # --- writes: under the index's write lock -----------------------------------------------

    def add(self, readings: list[Reading], reader: str) -> None:
        """Store `readings` (read by `reader`) in one commit; the table and its index are made first."""
        if not readings:
            return
        import pyarrow as pa

        with self._lock:
            t = self._create()
            cols = {"key": [r.key for r in readings], "text": [r.text for r in readings],
                    "lines": [[{"text": x.text, "score": x.score, "box": list(x.box)} for x in r.lines]
                              for r in readings],
                    "error": [r.error for r in readings], "reader": [reader] * len(readings)}
            t.add(pa.table(cols, schema=ocr_schema()))

    def prune(self, live: set[str]) -> int:
        """Delete the rows whose key is not in `live` (the keys of the images now indexed); how many."""
        with self._lock:
            gone = sorted(self.keys() - live)
            for start in range(0, len(gone), _DELETE_CHUNK):
                self._table.delete(_in(_checked(gone[start:start + _DELETE_CHUNK])))
            return len(gone)

    def drop_failures(self) -> int:
        """Delete the records of pictures the reader failed on, so that they are read again; how many."""
        with self._lock:
            n = len(self.failures())
            if n:
                self._table.delete("error IS NOT NULL")
            return n

    def optimize(self) -> None:
        """Fold new rows into the full-text index and merge small fragments (until then, Lance
        searches the rows the index doesn't cover yet by scanning them)."""
        with self._lock:
            if self._table is not None:
                self._ensure_fts(self._table)
                self._table.optimize()

    def _create(self):
        if self._table is None:
            self._t = self._store.create_table(OCR, ocr_schema())
        self._ensure_fts(self._t)
        return self._t

    @staticmethod
    def _ensure_fts(t) -> None:
        """The native FTS index over `text`, made once: no stemming (names, codes and signs are
        matched as written), lower case, accents folded ("creme" finds "Crème"), STOP_WORDS left
        out, positions kept for "quoted phrases"."""
        if any(list(i.columns) == ["text"] for i in t.list_indices()):
            return
        from lancedb.index import FTS

        t.create_index("text", config=FTS(with_position=True, stem=False, lower_case=True, ascii_folding=True,
                                          remove_stop_words=True, custom_stop_words=list(STOP_WORDS)))


def _fts_query(words: list[str], phrases: list[str]):
    """Any of `words` (BM25 ranks by how many and how rare), and every phrase exactly."""
    from lancedb.query import BooleanQuery, MatchQuery, Occur, PhraseQuery

    parts = [(Occur.MUST, PhraseQuery(p, "text")) for p in phrases]
    if words:
        parts.append((Occur.SHOULD if phrases else Occur.MUST, MatchQuery(" ".join(words), "text")))
    return parts[0][1] if len(parts) == 1 else BooleanQuery(parts)


def _lines(items) -> tuple[Line, ...]:
    return tuple(Line(x["text"], round(float(x["score"]), 4), tuple(round(float(v), 5) for v in x["box"]))
                 for x in items or ())  # float32 columns: back to the digits that were stored


def _checked(keys) -> list[str]:
    """`keys` as they may go into a SQL filter: only the key formats `picture_key` makes."""
    keys = [str(k) for k in keys]
    bad = [k for k in keys if not _KEY.fullmatch(k)]
    if bad:
        raise ValueError(f"not a picture key: {bad[0]!r}")
    return keys


def _in(keys: list[str]) -> str:
    return f"key IN ({','.join(repr(k) for k in keys)})"
