"""What changed on disk since the last run: new, changed, moved, touched, gone and known-bad files.

(size, mtime) decides first. Only where it can't, a content hash does: a same-path file of the same
size but another mtime (touched, or edited in place), and a new file as big as a gone one (moved?).
A file may have several rows (a video: one per sampled frame); they come and go together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from clipsearch.ingest.batch import UNREADABLE, Hashed
from clipsearch.media.files import Scan, stat_key, under
from clipsearch.store.records import Failure, Row

HashMany = Callable[[list[str]], Iterable]  # paths -> Hashed | Failure per path, any order


@dataclass
class Changes:
    """The work of one run, worked out before any of it is done."""

    todo: list[str] = field(default_factory=list)  # new or changed files: decode and encode
    replaced: dict[str, list[int]] = field(default_factory=dict)  # changed file -> ids of its old rows
    relinked: list[Row] = field(default_factory=list)  # moved or touched: old vector, new metadata
    relinked_from: list[int] = field(default_factory=list)  # the rows `relinked` replace
    gone: list[int] = field(default_factory=list)  # rows of files no longer on disk
    removed: int = 0  # those files
    stale: list[int] = field(default_factory=list)  # older duplicate rows of one path
    moved: int = 0
    unchanged: int = 0
    known_failed: list[Failure] = field(default_factory=list)  # failed before, not changed since
    failures: dict[str, Failure] = field(default_factory=dict)  # failure records still true
    failures_dropped: int = 0  # records no longer true (file gone, or to be retried)


def find_changes(rows: list[Row], failures: list[Failure], found: Scan, roots: list[str],
                 hash_many: HashMany) -> Changes:
    """Compare the files `found` under `roots` with the stored `rows` and `failures`."""
    current, out = _latest_per_path(rows), Changes()
    live = {r.id for group in current.values() for r in group}
    out.stale = [r.id for r in rows if r.id not in live]
    bad = {f.path: f for f in failures}
    kept = [p for p, _ in found.skipped]  # unreadable folders: what was indexed there stays
    suspects, new = {}, []
    for p in found.paths:
        key, group = stat_key(p), current.pop(p, None)
        row = group[0] if group else None
        if row is not None and (row.size, row.mtime) == key:
            out.unchanged += 1
        elif row is None and _still_bad(bad.get(p), key):
            out.known_failed.append(bad[p])
        elif row is not None and row.hash and row.size == key[0]:
            suspects[p] = group
        elif row is not None:
            out.replaced[p] = [r.id for r in group]
        else:
            new.append((p, key[0]))
    gone = {p: g for p, g in current.items() if under(p, roots) and not under(p, kept)}
    _match_hashes(out, suspects, new, gone, hash_many)
    out.gone, out.removed = sorted(r.id for g in gone.values() for r in g), len(gone)
    out.todo = sorted(out.todo + list(out.replaced))
    out.failures = {f.path: f for f in failures if not under(f.path, roots) or under(f.path, kept)}
    out.failures |= {f.path: f for f in out.known_failed}
    out.failures_dropped = len(bad) - len(out.failures)
    return out


def _match_hashes(out: Changes, suspects: dict[str, list[Row]], new: list[tuple[str, int]],
                  gone: dict[str, list[Row]], hash_many: HashMany) -> None:
    """Hash only what (size, mtime) can't settle; relink what matches, queue the rest for encoding."""
    sizes = {g[0].size for g in gone.values() if g[0].hash}
    hashes = {h.path: h for h in hash_many(list(suspects) + [p for p, size in new if size in sizes])
              if isinstance(h, Hashed)}
    by_hash: dict[str, list[str]] = {}  # content hash -> gone paths, oldest first
    for p, g in sorted(gone.items(), key=lambda pg: pg[1][0].id):
        if g[0].hash:
            by_hash.setdefault(g[0].hash, []).append(p)
    for p, group in suspects.items():
        h = hashes.get(p)
        if h is not None and h.hash == group[0].hash:
            _relink(out, group, h)  # touched: same bytes, new mtime
            out.unchanged += 1
        else:
            out.replaced[p] = [r.id for r in group]
    for p, _ in new:
        h = hashes.get(p)
        twins = by_hash.get(h.hash) if h is not None else None
        if twins:
            _relink(out, gone.pop(twins.pop()), h)
            out.moved += 1
        else:
            out.todo.append(p)


def _relink(out: Changes, old: list[Row], h: Hashed) -> None:
    """Every row of the file (a video's frames too) under the new metadata, with its old vector."""
    for r in old:
        out.relinked.append(Row(-1, h.path, h.size, h.mtime, r.width, r.height, r.hash, r.time_s))
        out.relinked_from.append(r.id)


def _latest_per_path(rows: list[Row]) -> dict[str, list[Row]]:
    """path -> the rows of its newest version (by id; one row, or a video's frames): a run killed
    between adding a changed file's rows and deleting the old ones leaves both versions, and the
    newer one holds the file's newer content."""
    newest: dict[str, Row] = {}
    for r in rows:
        if r.path not in newest or r.id > newest[r.path].id:
            newest[r.path] = r
    out: dict[str, list[Row]] = {p: [] for p in newest}
    for r in sorted(rows, key=lambda r: r.id):
        n = newest[r.path]
        if (r.size, r.mtime, r.hash) == (n.size, n.mtime, n.hash):
            out[r.path].append(r)
    return out


def _still_bad(f: Failure | None, key: tuple[int, float]) -> bool:
    """A recorded failure holds while the file is unchanged; unreadable files are always retried
    (cheap, and fixing permissions changes no mtime)."""
    return f is not None and (f.size, f.mtime) == key and not f.reason.startswith(UNREADABLE)
