"""Which FAISS index a collection of a given size gets (exact Flat, or IVF-PQ with its sizes), and why.

Numbers behind the constants are in bench/results/ann.md (bench/ann_bench.py) and
bench/results/search.md (bench/search_bench.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from clipsearch.errors import InputError

#: Exact (Flat) search up to this many vectors: at 50k x 512-d it takes ~13 ms on one thread and
#: 100 MB, needs no training and is never stale; IVF-PQ there would reach recall@10 0.956 only.
FLAT_MAX = 50_000
#: Fewest vectors IVF-PQ can train on (faiss wants 39 points per centroid, PQ has 256 centroids).
MIN_TRAIN = 39 * 256
#: Default probes: nlist / NPROBE_DIV, at least NPROBE_MIN, and enough to visit NPROBE_VISIT vectors.
#: With the 1,024-deep exact re-rank (refine.py) recall is bound by the lists visited: on clustered
#: vectors at 1M (IVF2048) 16 / 32 / 64 probes give recall@10 0.9715 / 0.9855 / 0.9935, on bursty
#: ones 0.9985 from 16 to 64, and 32 probes cost ~1 ms less a query than 64 (bench/nprobe_bench.py,
#: docs/scale.md): 32 at 1M keeps the 0.98 target with the scan in a 5 ms query.
NPROBE_DIV = 64
NPROBE_MIN = 32
#: ... enough lists to visit about this many vectors: 100k (1024 lists): 64 probes give 0.979, 128
#: give 0.989 at 1.6 ms (bench/results/search.md).
NPROBE_VISIT = 12_000
#: ... but probes visiting at most about this many codes, NPROBE_MIN or not: a query's scan cost
#: ~2.5 ms per 31k 8-bit codes (2 shared cores; fast-scan codes, NBITS, ~4x less), so nlist / NPROBE_DIV = 128 probes at 10M (8192 lists)
#: would scan 156k codes for ~12 ms, and 64 probes (78k codes) took 14-18 ms of a warm query there.
#: The cap leaves 32 at 10M (39k codes: 7-9 ms, recall@10 0.995 on bursty vectors, as with 64;
#: on clustered ones IVF8192 at 1M gave 0.975 with 32 probes, 0.990 with 64: docs/scale.md) and
#: 64 from ~1.6M to ~6.5M (128 before it), where 64 probes visit 31k-78k vectors.
NPROBE_CODES_MAX = 50_000
#: Training sample per coarse centroid (autofaiss and faiss use 30-256; k-means cost grows with it).
TRAIN_PER_CENTROID = 40
#: From this nlist on, a query finds its probes in an HNSW graph over the centroids, not by a scan
#: of them all: at 10M (8192 lists x 512-d, 16 MB) the scan took 1.7 ms of a 5.1 ms search at
#: nprobe 16, the graph 0.3 ms, for the same candidates (99.97 %). Training and adding stay exact
#: (index.py).
HNSW_NLIST = 8192
#: Bits of a PQ sub-code in the indexes built now: 4, faiss's fast-scan layout (codes in blocks of
#: 32 scored with SIMD table lookups). The same 64 bytes a 512-d vector as PQ64 (8 bits), with
#: twice the sub-quantizers: at 1M (IVF2048, 32 probes, 15.6k codes) the scan of a query takes
#: 0.75 ms instead of 1.7-2.0, and recall@10 after the 1,024-deep re-rank is 0.9995, as with PQ64
#: (docs/scale.md). Indexes built with 8 bits keep them until `optimize` trains them again.
NBITS = 4


@dataclass(frozen=True)
class AnnSpec:
    """What index to build: "flat" (exact) or "ivfpq" with its sizes."""

    kind: str
    dim: int
    nlist: int = 0
    m: int = 0
    nbits: int = 8
    train_size: int = 0
    nprobe: int = 0
    refine: bool = True  # IVF-PQ: keep the exact vectors in memory for the re-rank (refine.py)

    def __post_init__(self):
        ok = self.kind == "flat" or (
            self.kind == "ivfpq" and self.nlist > 0 and self.m > 0 and self.dim % self.m == 0
        )
        if not ok or self.dim < 1:
            raise InputError(f"invalid ANN spec {self}; build one with choose_spec(n, dim)")

    def factory(self) -> str:
        """The faiss index_factory string."""
        if self.kind == "flat":
            return "IDMap2,Flat"
        hnsw = "_HNSW32" if self.nlist >= HNSW_NLIST else ""
        pq = f"PQ{self.m}" if self.nbits == 8 else f"PQ{self.m}x{self.nbits}"
        return f"IVF{self.nlist}{hnsw},{pq}{'fs' if self.fast_scan else ''}"

    @property
    def fast_scan(self) -> bool:
        """Whether its codes are faiss's fast-scan blocks (4-bit sub-codes)."""
        return self.kind == "ivfpq" and self.nbits == 4

    def describe(self) -> str:
        """Human-readable, e.g. "IVF4096,PQ64 (nprobe 64)" or "Flat (exact)"."""
        if self.kind == "flat":
            return "Flat (exact)"
        return f"{self.factory()} (nprobe {self.nprobe})"

    def code_bytes(self) -> int:
        """Bytes of one vector's code, ids excluded."""
        return 4 * self.dim if self.kind == "flat" else math.ceil(self.m * self.nbits / 8)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AnnSpec:
        return cls(**{f: d[f] for f in cls.__dataclass_fields__ if f in d})


def _pow2_floor(x: float) -> int:
    return 2 ** int(math.log2(max(x, 1.0)))


def estimate_bytes(spec: AnnSpec, n: int) -> int:
    """Bytes in memory and on disk of `spec` holding n vectors (codes, ids, centroids)."""
    size = n * (spec.code_bytes() + 8)
    if spec.kind == "ivfpq" and spec.refine:  # + the exact vectors of the refine stage, with their ids
        size += n * (4 * spec.dim + 16)
        size += 4 * spec.nlist * spec.dim + 4 * spec.dim * (1 << spec.nbits)
        size += 2 * 32 * 4 * spec.nlist if spec.nlist >= HNSW_NLIST else 0
    return size


def choose_spec(n: int, dim: int, memory_budget: int | None = None) -> AnnSpec:
    """The index for n vectors of `dim`: exact Flat while small, IVF-PQ sized from n like autofaiss.

    nlist is the power of two at or below 4*sqrt(n): 2048 at 1M reaches recall@10 0.976 (4096:
    0.982) for a quarter of the k-means time and half the add time (bench/results/ann.md). PQ codes
    are dim/8 bytes (64 for 512-d: dim/NBITS sub-codes), lowered while the index would exceed
    `memory_budget` bytes.
    Raises InputError when nothing fits.
    """
    flat = AnnSpec("flat", dim)
    if n <= FLAT_MAX and (memory_budget is None or estimate_bytes(flat, n) <= memory_budget):
        return flat
    if n < MIN_TRAIN:
        smallest = flat
    else:
        nlist = min(_pow2_floor(4 * math.sqrt(n)), _pow2_floor(n / 39), 65536)
        train = min(n, max(TRAIN_PER_CENTROID * nlist, MIN_TRAIN))
        visit = 2 ** math.ceil(math.log2(max(1.0, NPROBE_VISIT * nlist / n)))
        cap = _pow2_floor(NPROBE_CODES_MAX * nlist / n)
        nprobe = min(nlist, max(min(max(NPROBE_MIN, nlist // NPROBE_DIV), cap), visit))
        ms = [m for m in range(max(1, dim // NBITS), 0, -1) if dim % m == 0]
        # The exact vectors first (a fast, exact re-rank), then ever smaller codes without them.
        for refine, m in [(True, ms[0])] + [(False, m) for m in ms]:
            smallest = AnnSpec("ivfpq", dim, nlist, m, NBITS, train, nprobe, refine)
            if memory_budget is None or estimate_bytes(smallest, n) <= memory_budget:
                return smallest
    raise InputError(
        f"an ANN index of {n} vectors of dim {dim} needs at least "
        f"{estimate_bytes(smallest, n)} bytes, over the budget of {memory_budget}; raise it"
    )


def outgrown(spec: AnnSpec, n: int) -> bool:
    """True when a collection of n vectors deserves another index than `spec` (kind, or ~4x nlist)."""
    want = choose_spec(n, spec.dim)
    if spec.kind == "flat":
        return want.kind != "flat"
    if want.kind == "flat":
        return n <= FLAT_MAX // 2  # hysteresis: don't flip-flop around FLAT_MAX
    return want.nlist >= 4 * spec.nlist
