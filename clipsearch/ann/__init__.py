"""ANN: the FAISS index derived from a vector table.

- `spec`: which index a collection of a given size gets (Flat, IVF-PQ) and why;
- `index`: `AnnIndex`, the FAISS index with its generation;
- `file`: the ANN file on disk;
- `refine`: the exact re-rank of approximate candidates, the only one;
- `selection`: exact top-k over a subset (filtered search);
- `shards`: an IVF-PQ index built in shards (Ray);
- `selfjoin`: every vector's near neighbours (duplicates).
"""
