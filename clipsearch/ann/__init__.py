"""ANN: the FAISS index derived from a vector table, kept as segments on disk.

- `spec`: which index a collection of a given size gets (Flat, IVF-PQ), and the measurements why;
- `segments`: `Segments`, a collection's ANN index: its committed segments, mapped, and the rows
  added since; `segment`, `catalog`, `lists`: a segment's files, the committed version naming them,
  the trained quantizer and the segments' IVF lists; `scan`: the search over them; `pending`: the
  rows not written yet; `compaction`: writes, merges and training, each ending in a catalog commit;
  `catchup`: the segments caught up with their table;
- `refine`: the exact re-rank (`rerank`, the only one) and its depth;
- `selection`: filtered search, its plan chosen by how many vectors match;
- `shards`: an IVF-PQ index built in shards (Ray tasks in the indexer), a segment each;
- `selfjoin`: every vector's near neighbours (duplicates);
- `index`, `file`: `AnnIndex`, one FAISS index in memory and its file (benchmarks and tests), and
  the helpers that train and fill faiss indexes.
"""
