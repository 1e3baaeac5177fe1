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
- Fast-scan codes (spec.NBITS = 4) are packed by faiss in blocks of 32, which faiss keeps in lists
  it can't map (`BlockInvertedLists`). So a lists file keeps each list's blocks as they are in
  plain lists that it maps, the last block's unused places counted in with label -1 (`_padded`):
  faiss scans whole blocks anyway, the search's selector never lets -1 through, and stacked lists
  stay whole blocks. A merge unpacks and packs them again (`_codes`, `_pack`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from clipsearch.ann.index import add_to_index, coarse_assign, fast_scan, ivf_params, train_index
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

        index = faiss.clone_index(self.index)
        for labels, xb, assign in chunks:
            add_to_index(index, np.ascontiguousarray(xb, np.float32), np.ascontiguousarray(labels, np.int64), assign)
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
    packer = _packer(index)
    out = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)  # unpacked codes, packed at the end
    for lists_path, first, new in sources:
        holder = _map(lists_path)
        src = faiss.extract_index_ivf(holder).invlists
        for ln in range(src.nlist):
            n = src.list_size(ln)
            if not n:
                continue
            ids = faiss.rev_swig_ptr(src.get_ids(ln), n)
            labels = np.full(n, -1, np.int64)  # -1: dropped, or a block's unused place
            labels[ids >= 0] = new[ids[ids >= 0] - first]
            keep = np.flatnonzero(labels >= 0)
            # Named arrays: a temporary's memory could go before faiss copies it.
            kept_labels = np.ascontiguousarray(labels[keep])
            codes = np.ascontiguousarray(_codes(src, ln, n, ivf.code_size, packer)[keep])
            out.add_entries(ln, len(keep), faiss.swig_ptr(kept_labels), faiss.swig_ptr(codes))
        del holder
    if packer is not None:
        out = _padded(out, packer, lambda ln: _pack(_codes(out, ln, out.list_size(ln), ivf.code_size, None), packer))
    out.this.disown()  # the index owns it from here
    ivf.replace_invlists(out, True)
    index.ntotal = ivf.ntotal = _count(out)
    _save_lists(index, path)


def _packer(index):
    """The faiss CodePacker of a fast-scan index's blocks; None for plain IVF-PQ codes."""
    import faiss

    return faiss.downcast_index(faiss.extract_index_ivf(index)).get_CodePacker() if fast_scan(index) else None


def _codes(src, ln: int, n: int, code_size: int, packer) -> np.ndarray:
    """(n, code_size) uint8: the codes of list `ln` of the faiss lists `src`, unpacked from whole
    blocks (`packer`) or as they are (None: a view)."""
    import faiss

    if packer is None:
        return faiss.rev_swig_ptr(src.get_codes(ln), n * code_size).reshape(n, code_size)
    nb, bs, per = -(-n // packer.nvec), packer.block_size, packer.nvec
    blocks = faiss.rev_swig_ptr(src.get_codes(ln), nb * bs)
    flat = np.zeros((nb * per, code_size), np.uint8)
    for b in range(nb):
        packer.unpack_all(faiss.swig_ptr(blocks[b * bs:]), faiss.swig_ptr(flat[b * per:]))
    return flat[:n]


def _pack(codes: np.ndarray, packer) -> np.ndarray:
    """Codes (n, code_size) uint8 packed in whole blocks: (ceil(n / 32) x block_size,) uint8."""
    import faiss

    per = packer.nvec
    nb = -(-len(codes) // per)
    flat = np.zeros((nb * per, codes.shape[1]), np.uint8)
    flat[:len(codes)] = codes
    out = np.zeros(nb * packer.block_size, np.uint8)
    for b in range(nb):
        packer.pack_all(faiss.swig_ptr(flat[b * per:]), faiss.swig_ptr(out[b * packer.block_size:]))
    return out


def _padded(src, packer, blocks_of):
    """Plain faiss lists holding, for each list of `src`, its packed blocks (`blocks_of(list)`)
    under its labels, then -1 for each unused place of the last block."""
    import faiss

    out = faiss.ArrayInvertedLists(src.nlist, packer.code_size)
    for ln in range(src.nlist):
        n = src.list_size(ln)
        if n:
            blocks = np.ascontiguousarray(blocks_of(ln))
            ids = np.full(len(blocks) // packer.code_size, -1, np.int64)
            ids[:n] = faiss.rev_swig_ptr(src.get_ids(ln), n)
            out.add_entries(ln, len(ids), faiss.swig_ptr(ids), faiss.swig_ptr(blocks))
    return out


def _count(lists) -> int:
    """How many labels (not -1) the faiss lists hold."""
    import faiss

    return sum(int((faiss.rev_swig_ptr(lists.get_ids(ln), lists.list_size(ln)) >= 0).sum())
               for ln in range(lists.nlist) if lists.list_size(ln))


def _save_lists(index, path: Path) -> None:
    import faiss

    packer = _packer(index)
    if packer is not None and not isinstance(faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists),
                                             faiss.ArrayInvertedLists):  # faiss's blocks: kept, mappable
        src = faiss.extract_index_ivf(index).invlists
        out = _padded(src, packer, lambda ln: faiss.rev_swig_ptr(
            src.get_codes(ln), -(-src.list_size(ln) // packer.nvec) * packer.block_size).copy())
        out.this.disown()
        faiss.extract_index_ivf(index).replace_invlists(out, True)
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
        # Fast-scan lists hold label -1 in their blocks' unused places (`_padded`): never a result.
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
