"""The FAISS index derived from a vector table: Flat or IVF-PQ over L2-normalised vectors, inner
product, keyed by the caller's int64 ids, with its generation. Which index a size gets: spec.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from clipsearch.ann import file as annfile
from clipsearch.ann.refine import RERANK_FACTOR, Refine
from clipsearch.ann.refine import search as refine_search
from clipsearch.ann.spec import AnnSpec, choose_spec
from clipsearch.errors import IndexDirError, InputError

#: Residuals per PQ centroid the sub-quantizers train on (faiss default 256: 4x slower, no better
#: after re-rank).
PQ_TRAIN_PER_CENTROID = 64
#: Query batches at least this big are searched on the GPU when there is one.
GPU_MIN_BATCH = 256
#: From this nlist on, rows added go to the list the HNSW graph finds; below, to their nearest
#: centroid exactly, by BLAS over every centroid (as the 10M bench's build did, at 8192 lists).
GRAPH_ASSIGN_NLIST = 16384


def _matrix(x: np.ndarray, dim: int, name: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != dim:
        raise InputError(f"{name} must have shape (n, {dim}), got {x.shape}")
    return x


def _ids(ids: np.ndarray, n: int) -> np.ndarray:
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if ids.shape != (n,):
        raise InputError(f"ids must have shape ({n},), got {ids.shape}")
    return ids


def _gpu_flat(faiss, dim: int):
    return faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(dim))


def train_index(index, spec: AnnSpec, xb: np.ndarray) -> int:
    """Train the empty faiss IVF-PQ `index` on a seeded sample of xb; k-means runs on the GPU when
    there is one. -> the sample's size."""
    import faiss

    if len(xb) < max(spec.nlist, 1 << spec.nbits):
        raise InputError(
            f"{len(xb)} vectors are too few to train {spec.describe()}; use choose_spec(n, dim)"
        )
    rng = np.random.default_rng(0)
    n = min(spec.train_size or len(xb), len(xb))
    xt = xb if n == len(xb) else xb[np.sort(rng.choice(len(xb), n, replace=False))]
    ivf = faiss.extract_index_ivf(index)
    index.pq.cp.max_points_per_centroid = PQ_TRAIN_PER_CENTROID
    if not fast_scan(index):  # fast-scan codes have no polysemous training to switch off
        index.do_polysemous_training = False  # the factory's default; minutes of annealing we never use
    gpu = _gpu_flat(faiss, spec.dim) if faiss.get_num_gpus() > 0 else None
    ivf.clustering_index = gpu
    try:
        index.train(xt)
    finally:
        ivf.clustering_index = None  # the GPU index is freed with `gpu`
    return n


def add_to_index(index, xb: np.ndarray, ids: np.ndarray, assign: np.ndarray | None = None) -> None:
    """Add xb under ids to the faiss `index`, in the lists `assign` (n,) int64 when given (else
    worked out by `coarse_assign`)."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None or len(xb) == 0:
        index.add_with_ids(xb, ids)
        return
    if fast_scan(index):
        _add_fast_scan(index, xb, ids)
        return
    assign = np.ascontiguousarray(coarse_assign(index, xb) if assign is None else assign, dtype=np.int64)
    ivf.add_core(len(xb), faiss.swig_ptr(xb), faiss.swig_ptr(ids), faiss.swig_ptr(assign))


def fast_scan(index) -> bool:
    """Whether this faiss index keeps fast-scan codes (4-bit, packed in blocks of 32)."""
    import faiss

    return isinstance(faiss.downcast_index(faiss.extract_index_ivf(index)), faiss.IndexIVFFastScan)


def _add_fast_scan(index, xb: np.ndarray, ids: np.ndarray) -> None:
    """faiss's own add, which packs the codes in blocks (`add_core` with lists worked out here
    leaves them unpacked, and corrupts memory); the nearest centroid found exactly, as
    `coarse_assign` does, through a flat quantizer over the graph's centroids."""
    import faiss

    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    graph = ivf.quantizer
    if _graph(ivf) and ivf.nlist < GRAPH_ASSIGN_NLIST:
        flat = faiss.IndexFlatIP(ivf.d)
        flat.add(graph.reconstruct_n(0, ivf.nlist))
        ivf.quantizer = flat
    try:
        index.add_with_ids(np.ascontiguousarray(xb, np.float32), np.ascontiguousarray(ids, np.int64))
    finally:
        ivf.quantizer = graph


def coarse_assign(index, xb: np.ndarray) -> np.ndarray:
    """(n,) int64: the IVF list of each of xb (n, D) float32 in the trained faiss `index`. The
    costly part of adding: on the GPU when there is one, else numpy's BLAS (3x faster than the
    flat search of the faiss wheel, bench, 2 cores); an HNSW quantizer searches its graph."""
    import faiss

    ivf = faiss.extract_index_ivf(index)
    xb = np.ascontiguousarray(xb, np.float32)
    gpu = faiss.get_num_gpus() > 0
    if _graph(ivf) and ivf.nlist >= GRAPH_ASSIGN_NLIST and not gpu:
        return ivf.quantizer.search(xb, 1)[1].ravel().astype(np.int64)
    C = ivf.quantizer.reconstruct_n(0, ivf.nlist)
    if gpu:
        q = _gpu_flat(faiss, ivf.d)
        q.add(C)
        return q.search(xb, 1)[1].ravel().astype(np.int64)
    bs = max(1024, 2**25 // ivf.nlist)
    return np.concatenate([np.zeros(0, np.int64)] + [(xb[s:s + bs] @ C.T).argmax(1) for s in range(0, len(xb), bs)])


def ivf_params(index, nprobe: int, sel=None):
    """faiss search parameters of an IVF `index`: `nprobe` lists, ids `sel` lets through (or all)."""
    import faiss

    extra = {} if sel is None else {"sel": sel}
    ivf = faiss.extract_index_ivf(index)
    if _graph(ivf):  # its beam must be at least nprobe wide
        hnsw = faiss.SearchParametersHNSW(efSearch=max(2 * nprobe, 64))
        return faiss.SearchParametersIVF(nprobe=nprobe, quantizer_params=hnsw, **extra)
    return faiss.SearchParametersIVF(nprobe=nprobe, **extra)


def _graph(ivf) -> bool:
    """Whether this IVF index's coarse quantizer is an HNSW graph."""
    import faiss

    return isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW)


def _bitmap_selector(ids: np.ndarray):
    """(faiss IDSelectorBitmap, its bitmap) over non-negative int64 ids; keep the bitmap alive."""
    import faiss

    ids = np.asarray(ids, np.int64)
    ids = ids[ids >= 0]
    bits = np.zeros(int(ids.max()) + 1 if len(ids) else 1, bool)
    bits[ids] = True
    bitmap = np.packbits(bits, bitorder="little")
    return faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)), bitmap


class AnnIndex:
    """A FAISS index keyed by the caller's int64 ids; search returns D (nq, k), I (nq, k)."""

    def __init__(self, index, spec: AnnSpec, trained_on: int = 0, generation: int | None = None,
                 refine=None):
        self._index = index
        self.refine = refine  # IVF-PQ: the exact vectors (refine.Refine), None in files of before it
        self.spec = spec
        self.trained_on = trained_on
        self.generation = generation  # the table version it was saved for (None: not recorded)
        self._gpu = None  # GPU copy for large query batches, dropped on every change

    @classmethod
    def build(cls, xb: np.ndarray, ids: np.ndarray, spec: AnnSpec | None = None) -> AnnIndex:
        """Index xb (N, D) float32 under ids (N,) int64; spec defaults to choose_spec(N, D)."""
        import faiss

        xb = np.ascontiguousarray(xb, dtype=np.float32)
        if xb.ndim != 2:
            raise InputError(f"xb must have shape (n, dim), got {xb.shape}")
        spec = spec or choose_spec(len(xb), xb.shape[1])
        xb, ids = _matrix(xb, spec.dim, "xb"), _ids(ids, len(xb))
        index = faiss.index_factory(spec.dim, spec.factory(), faiss.METRIC_INNER_PRODUCT)
        trained_on = train_index(index, spec, xb) if spec.kind == "ivfpq" else 0
        add_to_index(index, xb, ids)
        refine = Refine.build(xb, ids) if spec.kind == "ivfpq" and spec.refine else None
        return cls(index, spec, trained_on, refine=refine)

    def add(self, xb: np.ndarray, ids: np.ndarray) -> None:
        """Add xb (n, D) under ids (n,) with the trained quantizers, no retraining."""
        xb = _matrix(xb, self.spec.dim, "xb")
        add_to_index(self._index, xb, _ids(ids, len(xb)))
        if self.refine is not None:
            self.refine.add(xb, ids)
        self._gpu = None

    def remove(self, ids: np.ndarray) -> int:
        """Remove these ids (unknown ones are ignored); returns how many were removed."""
        self._gpu = None
        if self.refine is not None:
            self.refine.remove(ids)
        return int(self._index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64).ravel()))

    def vectors_of(self, ids: np.ndarray) -> np.ndarray | None:
        """(len(ids), D) float32 exact vectors (zeros for unknown ids) if this index stores them
        (Flat), else None."""
        if self.spec.kind != "flat":
            return None if self.refine is None else self.refine.vectors_of(ids)
        out = np.zeros((len(ids), self.spec.dim), np.float32)
        for n, i in enumerate(np.asarray(ids, np.int64)):
            try:
                out[n] = self._index.reconstruct(int(i))
            except RuntimeError:  # not in the index
                pass
        return out

    def search_exact(self, xq: np.ndarray, k: int, nprobe: int | None = None, depth: int | None = None,
                     lookup: Callable[[np.ndarray], np.ndarray] | None = None,
                     subset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by exact inner product: Flat searches exactly; IVF-PQ re-ranks max(`depth`,
        MAX_DEPTH) candidates (`depth` default RERANK_FACTOR·k) with exact vectors (refine.search).
        `lookup(ids)` gives exact vectors when this index holds none; `subset` (sorted unique int64
        ids): only these may be returned."""
        if self.spec.kind == "flat" or (depth is not None and depth <= k):  # rerank 1: codes only
            return self.search(xq, k, nprobe, subset)
        lookup = self.refine.vectors_of if self.refine is not None else lookup
        n = len(self) if subset is None else len(subset)
        return refine_search(lambda x, d: self.search(x, d, nprobe, subset), lookup,
                             _matrix(xq, self.spec.dim, "xq"), k, depth or RERANK_FACTOR * k, n)

    def search(
        self, xq: np.ndarray, k: int, nprobe: int | None = None, subset: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: xq (nq, D) -> D (nq, k) float32, I (nq, k) int64; -1/-inf pad.

        `subset` (int64 ids): only these may be returned (see selection.py for choosing nprobe).
        """
        xq = _matrix(xq, self.spec.dim, "xq")
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        nprobe = min(max(1, nprobe or self.spec.nprobe or 1), max(1, self.spec.nlist))
        use_gpu = len(xq) >= GPU_MIN_BATCH and subset is None
        D, I = self._search_gpu(xq, k, nprobe) if use_gpu else (None, None)
        if D is None:
            sel = None if subset is None else _bitmap_selector(subset)
            D, I = self._index.search(xq, k, params=self._params(nprobe, sel and sel[0]))
        D[I < 0] = -np.inf
        return D, I

    def _params(self, nprobe: int, sel=None):
        import faiss

        if self.spec.kind == "flat":
            return None if sel is None else faiss.SearchParameters(sel=sel)
        return ivf_params(self._index, nprobe, sel)

    def _search_gpu(self, xq: np.ndarray, k: int, nprobe: int):
        """(D, I) from a cached GPU copy, or (None, None) to search on the CPU."""
        import faiss

        if faiss.get_num_gpus() == 0 or k > 2048 or nprobe > 2048 or self._gpu is False:
            return None, None
        try:
            if self._gpu is None:
                self._gpu = faiss.index_cpu_to_all_gpus(self._index)
            if self.spec.kind == "ivfpq":
                faiss.GpuParameterSpace().set_index_parameter(self._gpu, "nprobe", nprobe)
            return self._gpu.search(xq, k)
        except RuntimeError:  # layout the GPU kernels don't support: stay on the CPU
            self._gpu = False
            return None, None

    def centroids(self) -> np.ndarray | None:
        """(nlist, D) float32 centroids of the IVF lists; None for an exact (Flat) index."""
        import faiss

        ivf = faiss.try_extract_index_ivf(self._index)
        return None if ivf is None else ivf.quantizer.reconstruct_n(0, ivf.nlist)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def save(self, path: str | os.PathLike, generation: int | None = None) -> None:
        """Write atomically (see `annfile.write`): a crash leaves the old file or the new one.
        `generation`: the version of the table the vectors came from, kept in the file."""
        import faiss

        self.generation = generation
        blob = faiss.serialize_index(self._index)
        extra = self.refine.serialize() if self.refine is not None else blob[:0]
        annfile.write(Path(path), np.concatenate([blob, extra]),
                      {"spec": self.spec.to_dict(), "trained_on": self.trained_on, "generation": generation,
                       "refine_nbytes": int(extra.nbytes)})

    @classmethod
    def load(cls, path: str | os.PathLike) -> AnnIndex:
        """Read an index written by save(); IndexDirError if it is missing or corrupt."""
        import faiss

        path = Path(path)
        head, blob = annfile.read(path)
        try:
            spec = AnnSpec.from_dict(head["spec"])
            cut = len(blob) - int(head.get("refine_nbytes", 0))
            index = faiss.deserialize_index(blob[:cut])
            refine = Refine.deserialize(blob[cut:]) if cut < len(blob) else None
        except (ValueError, KeyError, TypeError, AttributeError, RuntimeError) as e:
            raise IndexDirError(f"ANN index {path} is corrupt ({e}); delete it and rebuild") from e
        if index.d != spec.dim:
            raise IndexDirError(f"ANN index {path} is inconsistent (dim); delete it and rebuild")
        return cls(index, spec, int(head["trained_on"]), head.get("generation"), refine)
