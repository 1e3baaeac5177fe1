"""IVF-PQ lists of the segments under one trained quantizer, and the index that searches them all.

- The trained, empty IVF-PQ index (coarse centroids, PQ codebooks) is one file a catalog names
  (`qQ.faiss`), loaded whole (4 MB at nlist 2048).
- Each segment's lists are a file of their own (`S-qQ.ivf`): a faiss IVF-PQ index holding its codes
  under labels (the segment's first label + row position), written with an empty placeholder
  quantizer, since the trained one is shared.
- `Stack` maps every segment's lists file (faiss.IO_FLAG_MMAP_IFC: the lists are views of the mapped
  file, nothing is copied or read at open) and searches them as one index (HStackInvertedLists), so a
  query scans the probed lists of every segment in one call.
- `merge` joins segments' lists into one file, dead rows dropped, labels renumbered: no vector is
  encoded again.
- Fast-scan codes (spec.NBITS = 4) are kept in faiss's blocks of 32, in lists faiss maps (blocks.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from clipsearch.ann import blocks
from clipsearch.ann.index import coarse_assign, fast_scan, ivf_params, train_index
from clipsearch.durable import atomic_file


def lists_name(serial: int, quantizer: str) -> str:
    """The file name of segment `serial`'s lists under the quantizer file `quantizer`."""
    return f"{serial:06d}-{quantizer.removesuffix('.faiss')}.ivf"


def train(spec, xt: np.ndarray):
    """The trained, empty faiss index for `spec` (an ivfpq AnnSpec), trained on xt (n, D) float32."""
    import faiss

    index = faiss.index_factory(spec.dim, spec.factory(), faiss.METRIC_INNER_PRODUCT)
    train_index(index, spec, np.ascontiguousarray(xt, np.float32))
    return index


def save_trained(path: Path, index) -> None:
    import faiss

    with atomic_file(path) as tmp:
        faiss.write_index(index, str(tmp))


def load_trained(path: Path):
    """The trained, empty index saved at `path`; OSError or RuntimeError if it can't be read."""
    import faiss

    if not path.is_file():
        raise FileNotFoundError(path)
    return faiss.read_index(str(path))


class Quantizer:
    """The trained, empty index saved at `path`: which list a vector goes to, and lists files."""

    def __init__(self, path: Path):
        self.path, self.index = path, load_trained(path)

    def assign(self, xb: np.ndarray) -> np.ndarray:
        """(n,) int64: the list of each of xb (n, D) float32."""
        return coarse_assign(self.index, xb)

    def write(self, path: Path, chunks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]]) -> None:
        """Encode chunks of (labels (n,) int64, xb (n, D) float32, their lists or None) into a lists
        file at `path` (atomically)."""
        import faiss

        index, parts = faiss.clone_index(self.index), []
        for labels, xb, assign in chunks:
            assign = self.assign(xb) if assign is None else np.asarray(assign, np.int64)
            parts.append((assign, np.asarray(labels, np.int64), blocks.encode(index, xb, assign)))
        blocks.install(index, blocks.by_list(*(np.concatenate(a) for a in zip(*parts))) if parts else ())
        _save_lists(index, path)


def assignment(path: Path, first: int, n: int) -> np.ndarray:
    """(n,) int64: the list of each row of the segment whose lists file is `path` (labels first..)."""
    import faiss

    holder = _map(path)
    src = faiss.extract_index_ivf(holder).invlists
    out = np.full(n, -1, np.int64)
    for ln in range(src.nlist):
        k = src.list_size(ln)
        if k:
            ids = faiss.rev_swig_ptr(src.get_ids(ln), k)
            out[ids[ids >= 0] - first] = ln
    return out


def merge(path: Path, trained_path: Path, sources: list[tuple[Path, int, np.ndarray]]) -> None:
    """One lists file from several: sources are (lists file, its first label, new label of each of
    its rows, -1 to drop the row), all under the trained quantizer at `trained_path`."""
    import faiss

    index = load_trained(trained_path)
    ivf = faiss.extract_index_ivf(index)
    packer, kept = blocks.packer(index), {}
    for lists_path, first, new in sources:
        holder = _map(lists_path)
        src = faiss.extract_index_ivf(holder).invlists
        for ln in range(src.nlist):
            if src.list_size(ln):
                labels, codes = blocks.unpack(src, ln, ivf.code_size, packer)
                labels = new[labels - first]
                kept.setdefault(ln, []).append((labels[labels >= 0], codes[labels >= 0]))
        del holder
    blocks.install(index, ((ln, *(np.concatenate(a) for a in zip(*kept[ln]))) for ln in sorted(kept)))
    _save_lists(index, path)


def _save_lists(index, path: Path) -> None:
    import faiss

    ivf = faiss.extract_index_ivf(index)
    quantizer, placeholder = ivf.quantizer, faiss.IndexFlatIP(ivf.d)
    ivf.quantizer = placeholder  # the trained quantizer is shared: one file, not one per segment
    try:
        with atomic_file(path) as tmp:
            faiss.write_index(index, str(tmp))
    finally:
        ivf.quantizer = quantizer


def _map(path: Path):
    import faiss

    if not path.is_file():
        raise FileNotFoundError(path)
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY
                            | faiss.IO_FLAG_SKIP_PRECOMPUTE_TABLE)


class Stack:
    """The trained index searching the lists of several segments at once, each file mapped."""

    def __init__(self, trained_path: Path, lists_paths: list[Path]):
        import faiss

        self.index = load_trained(trained_path)
        self._holders = [_map(p) for p in lists_paths]  # they own the mapped lists
        lists = [faiss.extract_index_ivf(h).invlists for h in self._holders]
        ivf = faiss.extract_index_ivf(self.index)
        if len(lists) == 1:
            self._lists = lists[0]
        else:
            self._vector = faiss.InvertedListsPtrVector()
            for il in lists:
                self._vector.push_back(il)
            self._lists = faiss.HStackInvertedLists(self._vector.size(), self._vector.data())
        if lists:
            ivf.replace_invlists(self._lists, False)
        self.index.ntotal = ivf.ntotal = sum(h.ntotal for h in self._holders)
        # Fast-scan lists hold label -1 in their blocks' unused places (blocks.py): never a result.
        self._padding = faiss.IDSelectorRange(0, 1 << 62) if fast_scan(self.index) else None

    @property
    def nlist(self) -> int:
        import faiss

        return faiss.extract_index_ivf(self.index).nlist

    def centroids(self) -> np.ndarray:
        """(nlist, D) float32 coarse centroids."""
        import faiss

        ivf = faiss.extract_index_ivf(self.index)
        return ivf.quantizer.reconstruct_n(0, ivf.nlist)

    def search(self, xq: np.ndarray, k: int, nprobe: int, sel=None) -> tuple[np.ndarray, np.ndarray]:
        """Code scores D and labels I (nq, k) of the k best in `nprobe` lists, -inf/-1 padded;
        `sel`: a faiss IDSelector of the labels that may be returned."""
        if self._padding is not None:  # padding always out, whatever else `sel` lets through
            import faiss

            sel = self._padding if sel is None else faiss.IDSelectorAnd(self._padding, sel)
        D, I = self.index.search(xq, k, params=ivf_params(self.index, nprobe, sel))
        D[I < 0] = -np.inf
        return D, I


def bitmap_selector(labels: np.ndarray):
    """(faiss IDSelectorBitmap over these labels, its bitmap): keep the bitmap alive with it."""
    import faiss

    bits = np.zeros(int(labels.max()) + 1 if len(labels) else 1, bool)
    bits[labels] = True
    bitmap = np.packbits(bits, bitorder="little")
    return faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)), bitmap
