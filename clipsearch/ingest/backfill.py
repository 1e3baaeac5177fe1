"""Metadata for rows indexed without it (schema 1-2 indexes, moved files): read from the files'
headers, no pixel decoded and no image encoded again, committed in groups like indexing.

A file whose header can't be read (gone, on a drive that isn't mounted, or its reader crashed) is
remembered with its (size, mtime) then, as indexing failures are, and not read again until that
changes: the drive comes back, the file is replaced. At 1M such rows, reading them all again took
128 s of every `index` run; a stat each (one per folder when the folder itself is gone) is what is left.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Callable

from clipsearch.collection import Collection
from clipsearch.media.files import NO_STAT, stat_key
from clipsearch.media.photometa import read_header
from clipsearch.store.records import Failure
from clipsearch.store.tables import FailureTable

Checkpoint = Callable[[str], None]
#: Why a header gave nothing, when its reader didn't say (it returns no metadata for a file it can't stat).
NOT_FOUND = "header not read: the file can't be found (on a drive that isn't mounted?)"


def backfill_meta(images: Collection, unread: FailureTable, decode_map=map, group: int = 2048,
                  checkpoint: Checkpoint = lambda stage: None) -> int:
    """Read and store the metadata of every row that has none; how many rows got theirs.

    `decode_map(fn, paths)` reads the headers (a process pool in the indexer). Files whose header
    gave nothing are kept in `unread` with their (size, mtime) and read again only once that
    changes. The ANN index stays valid: ids and vectors don't change (`Collection.update`).
    """
    todo = images.paths_without_meta()
    known = {f.path: f for f in unread.all()}
    keys = _keys(set(todo.values()))
    failed = {p: f for p, f in known.items() if keys.get(p) == (f.size, f.mtime)}
    ids = sorted(i for i, p in todo.items() if p not in failed)
    done = 0
    for start in range(0, len(ids), group):
        rows = list(images.rows(ids[start:start + group]).values())
        # A header that hung or crashed its reader comes back as a Failure: treated as unreadable.
        paths = sorted({r.path for r in rows})  # a video's frames share one file
        read = dict(zip(paths, decode_map(read_header, paths)))
        failed |= {p: Failure(p, h.reason if isinstance(h, Failure) else NOT_FOUND, *keys[p])
                   for p, h in read.items() if isinstance(h, Failure) or h[0].taken_source is None}
        read = {p: h for p, h in read.items() if p not in failed}
        # A file Pillow can't open (a video, most RAWs) still has its other fields; one that's gone has none.
        found = [(r, meta, size or (r.width, r.height)) for r in rows if r.path in read
                 for meta, size in [read[r.path]]]
        # Place names are filled in by the images table, as for every row it stores.
        updated = [replace(r, width=size[0], height=size[1], meta=meta) for r, meta, size in found]
        images.update(updated)
        done += len(updated)
        checkpoint("backfilled")
    if failed != known:  # those whose rows went, or that were read at last, drop out
        unread.replace(list(failed.values()))
    return done


def _keys(paths: set[str]) -> dict[str, tuple[int, float]]:
    """path -> (size, mtime), NO_STAT for a file that can't be stat'ed; a folder that is gone (an
    unmounted drive) is looked at once, not once per file in it."""
    folders: dict[str, bool] = {}
    out = {}
    for p in paths:
        folder = os.path.dirname(p)
        if folder not in folders:
            folders[folder] = os.path.isdir(folder)
        out[p] = stat_key(p) if folders[folder] else NO_STAT
    return out
