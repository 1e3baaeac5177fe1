"""A lists file's lists as faiss reads them mapped, for plain IVF-PQ codes and for fast-scan blocks.

faiss's fast-scan codes (4-bit, spec.NBITS) are scored 32 at a time with SIMD table lookups, so
faiss packs them in blocks of 32 and keeps those in `BlockInvertedLists`, which it can't map from a
file. Here each list's blocks go into plain lists (`ArrayInvertedLists`, which faiss maps) as if
they were that many codes, the last block's unused places labelled -1: faiss scans whole blocks
anyway, a search's selector never lets -1 through (lists.Stack), and stacked lists stay whole
blocks. A merge unpacks a list's blocks and packs the rows it keeps again. (faiss's own
`add_core` and `BlockInvertedLists.add_entries` leave fast-scan codes unpacked, so codes are
encoded and packed here, and checked against faiss's `add_with_ids` in the tests.)
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from clipsearch.ann.index import fast_scan


def packer(index):
    """The faiss CodePacker of a fast-scan index's blocks; None for plain IVF-PQ codes."""
    import faiss

    return faiss.downcast_index(faiss.extract_index_ivf(index)).get_CodePacker() if fast_scan(index) else None


def encode(index, xb: np.ndarray, assign: np.ndarray) -> np.ndarray:
    """(n, code_size) uint8: the codes of xb (n, D) float32 in lists `assign` (n,) int64."""
    import faiss

    ivf = faiss.extract_index_ivf(index)
    xb, assign = np.ascontiguousarray(xb, np.float32), np.ascontiguousarray(assign, np.int64)
    codes = np.empty((len(xb), ivf.code_size), np.uint8)
    if len(xb):
        ivf.encode_vectors(len(xb), faiss.swig_ptr(xb), faiss.swig_ptr(assign), faiss.swig_ptr(codes), False)
    return codes


def by_list(assign: np.ndarray, labels: np.ndarray, codes: np.ndarray) -> Iterable[tuple[int, np.ndarray, np.ndarray]]:
    """(list, its labels, its codes) for each list `assign` names, rows in their given order."""
    order = np.argsort(assign, kind="stable")
    lists, starts = np.unique(assign[order], return_index=True)
    for ln, b, e in zip(lists.tolist(), starts, np.r_[starts[1:], len(order)]):
        yield ln, labels[order[b:e]], codes[order[b:e]]


def unpack(src, ln: int, code_size: int, packer) -> tuple[np.ndarray, np.ndarray]:
    """(labels (n,) int64, codes (n, code_size) uint8) of list `ln` of the faiss lists `src`,
    copied; blocks (`packer`) unpacked, their unused places left out."""
    import faiss

    n = src.list_size(ln)
    labels = faiss.rev_swig_ptr(src.get_ids(ln), n).copy()
    if packer is None:
        return labels, faiss.rev_swig_ptr(src.get_codes(ln), n * code_size).reshape(n, code_size).copy()
    per, size = packer.nvec, packer.block_size
    blocks = faiss.rev_swig_ptr(src.get_codes(ln), n // per * size)
    codes = np.empty((n, code_size), np.uint8)
    for b in range(n // per):
        packer.unpack_all(faiss.swig_ptr(blocks[b * size:]), faiss.swig_ptr(codes[b * per:]))
    keep = labels >= 0
    return labels[keep], codes[keep]


def _pack(codes: np.ndarray, packer) -> np.ndarray:
    """Codes (n, code_size) uint8 in whole blocks: (ceil(n / 32) * 32, code_size) uint8."""
    import faiss

    per, size = packer.nvec, packer.block_size
    flat = np.zeros((-(-len(codes) // per) * per, codes.shape[1]), np.uint8)
    flat[:len(codes)] = codes
    out = np.zeros_like(flat)
    for b in range(len(flat) // per):
        packer.pack_all(faiss.swig_ptr(flat[b * per:]), faiss.swig_ptr(out.reshape(-1)[b * size:]))
    return out


def install(index, entries: Iterable[tuple[int, np.ndarray, np.ndarray]]) -> None:
    """Give the faiss IVF `index` plain lists holding (list, labels, codes): codes as they are, or
    packed in blocks with -1 in the last one's unused places."""
    import faiss

    ivf = faiss.extract_index_ivf(index)
    pack, n = packer(index), 0
    lists = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    for ln, labels, codes in entries:
        n += len(labels)
        if pack is not None:
            codes = _pack(codes, pack)
            labels = np.r_[labels, np.full(len(codes) - len(labels), -1, np.int64)]
        labels, codes = np.ascontiguousarray(labels, np.int64), np.ascontiguousarray(codes)
        lists.add_entries(ln, len(labels), faiss.swig_ptr(labels), faiss.swig_ptr(codes))
    lists.this.disown()  # the index owns it from here
    ivf.replace_invlists(lists, True)
    index.ntotal = ivf.ntotal = n
