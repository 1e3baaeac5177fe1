"""Metadata for rows indexed without it (schema 1-2 indexes, moved files): read from the files'
headers, no pixel decoded and no image encoded again, committed in groups like indexing."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from clipsearch.collection import Collection
from clipsearch.media.photometa import PhotoMeta, read_header

Checkpoint = Callable[[str], None]


def backfill_meta(images: Collection, decode_map=map, group: int = 2048,
                  checkpoint: Checkpoint = lambda stage: None) -> int:
    """Read and store the metadata of every row that has none; how many rows got theirs.

    `decode_map(fn, paths)` reads the headers (a process pool in the indexer). Files that can't be
    opened now (an unmounted drive) are left for the next run. The ANN index stays valid: ids and
    vectors don't change (`Collection.update`).
    """
    ids = images.ids_without_meta()
    done = 0
    for start in range(0, len(ids), group):
        rows = list(images.rows(ids[start:start + group]).values())
        # A header that hung or crashed its reader comes back as a Failure: treated as unreadable.
        paths = sorted({r.path for r in rows})  # a video's frames share one file
        read = dict(zip(paths, (h if isinstance(h, tuple) else (PhotoMeta(), None)
                                for h in decode_map(read_header, paths))))
        # A file Pillow can't open (a video, most RAWs) still has its other fields; one that's gone has none.
        found = [(r, meta, size or (r.width, r.height)) for r in rows for meta, size in [read[r.path]]
                 if meta.taken_source is not None]
        # Place names are filled in by the images table, as for every row it stores.
        updated = [replace(r, width=size[0], height=size[1], meta=meta) for r, meta, size in found]
        images.update(updated)
        done += len(updated)
        checkpoint("backfilled")
    return done
