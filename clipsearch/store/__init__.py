"""Store: what lives in LanceDB and beside it on disk.

- `tables`: the LanceDB tables (images, texts, failures, unread headers) and `Store`, their connection;
- `records`: the rows (`Row`, `Hit`, `TextHit`, `Failure`) and their schemas;
- `filters`: `Filter`, a where-clause over the rows' metadata;
- `snapshot`, `manifest`, `lock`, `skipped`, `roots`: what hits show (kept by the ANN segments), the
  index's identity, its write lock, the files skipped by type, and the indexed folders.
"""
