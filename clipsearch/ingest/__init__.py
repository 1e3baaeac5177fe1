"""Ingest: files in, rows out.

- `update`: `add_paths` / `remove_paths`, a whole `clipsearch index` run, committed in groups;
- `changes`: the pure planner of what a run must encode, move or drop;
- `batch`, `pool`: decoding in worker processes and encoding in batches;
- `backfill`: metadata and place names for rows indexed before they were read;
- `reindex`: moving an index to another model while it stays searchable;
- `texts`, `textfile`: text collections for image -> text.
"""
