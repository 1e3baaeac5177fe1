"""The files a run found that are not images, RAW photos or videos: kept for `info --skipped`."""

from __future__ import annotations

from collections import Counter

from clipsearch.media.files import under
from clipsearch.store.records import path_columns, path_from_columns
from clipsearch.store.tables import Store

SKIPPED = "skipped"


def skipped_schema():
    import pyarrow as pa

    return pa.schema([pa.field("path", pa.string()), pa.field("path_raw", pa.binary()),
                      pa.field("type", pa.string())])


def count_types(skipped: list[tuple[str, str]]) -> dict[str, int]:
    """{type: count}, most frequent first (ties by name)."""
    return dict(sorted(Counter(t for _, t in skipped).items(), key=lambda kv: (-kv[1], kv[0])))


class SkippedTable:
    """(path, type) of every file judged not an image, as of each folder's last scan."""

    def __init__(self, store: Store, lock):
        self._store, self._lock = store, lock

    def all(self) -> list[tuple[str, str]]:
        t = self._store.open_table(SKIPPED)
        if t is None:
            return []
        rows = [path_from_columns(r) for r in t.search().limit(None).to_arrow().to_pylist()]
        return sorted((r["path"], r["type"]) for r in rows)

    def update(self, roots: list[str], found: list[tuple[str, str]], kept: list[str] = ()) -> None:
        """This scan of `roots` replaces what was recorded under them (except under `kept`: folders
        the scan could not enter); one commit, and none when nothing changed."""
        old = self.all()
        new = sorted({x for x in old if not under(x[0], roots) or under(x[0], kept)} | set(found))
        if new == old:
            return
        import pyarrow as pa

        cols = path_columns([p for p, _ in new]) | {"type": [t for _, t in new]}
        with self._lock:
            t = self._store.create_table(SKIPPED, skipped_schema())
            t.add(pa.table(cols, schema=skipped_schema()), mode="overwrite")
