"""ANN: the FAISS index derived from a vector table.

- `spec`: which index a collection of a given size gets (Flat, IVF-PQ), and the measurements why;
- `index`: `AnnIndex`, the FAISS index with its generation;
- `file`: the ANN file on disk;
- `refine`: the exact vectors in memory and the exact re-rank (`rerank`, the only one) with its
  adaptive depth;
- `selection`: filtered search, its plan chosen by how many vectors match;
- `shards`: an IVF-PQ index built in shards (Ray tasks in the indexer);
- `selfjoin`: every vector's near neighbours (duplicates).
"""
