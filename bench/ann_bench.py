"""Benchmark clipsearch.ann (AnnIndex, choose_spec, the exact re-rank) on synthetic CLIP-like vectors: recall@10, latency, size, build time.

Run by hand (not a test); a 1M run takes about 10 minutes on 2 cores:

    python bench/ann_bench.py --sizes 100000 1000000 --out bench/results/ann.json

Vectors are 512-d, L2-normalised, drawn from a Gaussian mixture whose spectrum decays like 1/i
(effective dimension ~30, close to what is measured on CLIP embeddings) and randomly rotated so
that no axis is special; queries are held-out draws from the same mixture. Latency is per query on
ONE thread and includes the exact re-rank, which reads full vectors from an in-memory array that
stands in for the store.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Idle OpenMP threads sleep instead of spinning: on a shared, loaded machine spinning workers
# steal the CPU from each other (PQ training ran 4x slower). Must be set before faiss loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clipsearch.ann import refine  # noqa: E402
from clipsearch.ann import spec as annspec  # noqa: E402
from clipsearch.ann.index import AnnIndex  # noqa: E402

K = 10


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_data(n, nq, d=512, nc=3000, spread=0.7, seed=0):
    """xb (n, d), xq (nq, d) float32, L2-normalised, from one Gaussian mixture, uneven clusters."""
    rng = np.random.default_rng(seed)
    rot = np.linalg.qr(rng.standard_normal((d, d)))[0].astype(np.float32)
    scale = (1.0 / np.sqrt(np.arange(1, d + 1))).astype(np.float32)
    centres = rng.standard_normal((nc, d), dtype=np.float32) * scale
    w = rng.lognormal(0.0, 1.0, nc)
    x = np.empty((n + nq, d), dtype=np.float32)
    for s in range(0, n + nq, 100_000):
        e = min(s + 100_000, n + nq)
        z = centres[rng.choice(nc, e - s, p=w / w.sum())]
        z += spread * rng.standard_normal((e - s, d), dtype=np.float32) * scale
        x[s:e] = z @ rot
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[:n], x[n:]


def dataset(n, nq, cache: Path | None):
    """xb, xq, gt (true top-K ids), from `cache` when it holds them (saves minutes at 1M)."""
    files = [cache / f"ann_{n}_{nq}_{name}.npy" for name in ("xb", "xq", "gt")] if cache else []
    if files and all(f.exists() for f in files):
        return [np.load(f, mmap_mode="r") if i == 0 else np.load(f) for i, f in enumerate(files)]
    xb, xq = make_data(n, nq)
    gt = exact_knn(xb, xq, K)
    for f, a in zip(files, (xb, xq, gt)):
        cache.mkdir(parents=True, exist_ok=True)
        np.save(f, a)
    return xb, xq, gt


def exact_knn(xb, xq, k):
    """I (nq, k) of the true neighbours, by brute force on all threads."""
    import faiss

    index = faiss.IndexFlatIP(xb.shape[1])
    index.add(xb)
    return index.search(xq, k)[1]


def recall_at(I, gt, k=K):
    """Mean |I ∩ gt| / k over queries (10-recall@10)."""
    return float(np.mean([len(np.intersect1d(a[:k], b[:k])) / k for a, b in zip(I, gt)]))


def searcher(index, xb, nprobe, factor):
    """xq -> I (nq, K): ANN search, then exact re-rank of factor*K candidates when factor > 0."""
    lookup = xb.__getitem__  # ids are row numbers here; the store does this in clipsearch

    def run(xq):
        if not factor:
            return index.search(xq, K, nprobe)[1]
        _, C = index.search(xq, factor * K, nprobe)
        return refine.rerank(xq, C, lookup, K)[1]

    return run


def timings(run, xq, nlat, budget_s=20.0):
    """(median ms, p99 ms) single-query on one thread; batch queries/s on all threads; I."""
    import faiss

    nthreads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    lat, t_end = [], time.perf_counter() + budget_s
    for i in range(nlat):
        t0 = time.perf_counter()
        run(xq[i : i + 1])
        lat.append((time.perf_counter() - t0) * 1e3)
        if time.perf_counter() > t_end and i >= 9:
            break
    faiss.omp_set_num_threads(nthreads)
    t0 = time.perf_counter()
    I = run(xq)
    qps = len(xq) / (time.perf_counter() - t0)
    return float(np.median(lat)), float(np.percentile(lat, 99)), qps, I


def index_bytes(index) -> int:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        index.save(Path(d) / "ann.bin")
        return os.path.getsize(Path(d) / "ann.bin")


def bench_spec(xb, xq, gt, spec, nprobes, factors, nlat):
    """Rows for one spec: build once, then every (nprobe, factor)."""
    n = len(xb)
    log(f"N={n}: building {spec.describe()}")
    t0 = time.perf_counter()
    index = AnnIndex.build(xb, np.arange(n, dtype=np.int64), spec)
    build_s = time.perf_counter() - t0
    bpv = index_bytes(index) / n
    log(f"N={n}: built in {build_s:.1f}s, {bpv:.1f} B/vector")
    rows = []
    for nprobe in nprobes if spec.kind == "ivfpq" else [0]:
        for factor in factors if spec.kind == "ivfpq" else [0]:
            p50, p99, qps, I = timings(searcher(index, xb, nprobe, factor), xq, nlat)
            rows.append(
                {
                    "n": n,
                    "index": spec.factory() if spec.kind == "ivfpq" else "Flat",
                    "nprobe": nprobe,
                    "rerank": factor,
                    "build_s": round(build_s, 1),
                    "bytes_per_vector": round(bpv, 1),
                    "recall@10": round(recall_at(I, gt), 4),
                    "p50_ms": round(p50, 3),
                    "p99_ms": round(p99, 3),
                    "batch_qps": round(qps, 1),
                    "default": spec.kind == "flat"
                    or (nprobe == spec.nprobe and factor == refine.RERANK_FACTOR),
                }
            )
            log(f"N={n}: {rows[-1]}")
    return rows


def markdown(rows) -> str:
    head = [
        "N",
        "index",
        "nprobe",
        "re-rank",
        "build s",
        "B/vector",
        "recall@10",
        "p50 ms (1 thr)",
        "p99 ms (1 thr)",
        "batch q/s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        mark = " **(default)**" if r["default"] and r["index"] != "Flat" else ""
        cells = [
            f"{r['n']:,}",
            r["index"] + mark,
            r["nprobe"] or "-",
            f"{r['rerank']}x" if r["rerank"] else "none",
            r["build_s"],
            r["bytes_per_vector"],
            f"{r['recall@10']:.3f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['batch_qps']:.0f}",
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--nq", type=int, default=1000, help="held-out queries (recall, batch q/s)")
    p.add_argument("--nlat", type=int, default=300, help="queries timed one by one")
    p.add_argument("--nprobes", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--factors", type=int, nargs="+", default=[0, 4, 10, 20])
    p.add_argument("--nlist", type=int, help="override the chosen nlist (tuning)")
    p.add_argument("--m", type=int, help="override the chosen PQ code bytes (tuning)")
    p.add_argument("--no-flat", action="store_true", help="skip the exact baseline")
    p.add_argument("--cache", type=Path, help="keep generated vectors and ground truth here")
    p.add_argument("--out", type=Path, default=Path("bench/results/ann.json"))
    args = p.parse_args(argv)

    rows, load = [], [os.getloadavg()[0]]
    for n in args.sizes:
        log(f"N={n}: generating data")
        xb, xq, gt = dataset(n, args.nq, args.cache)
        spec = annspec.choose_spec(n, xb.shape[1])
        if spec.kind == "flat":  # small N: still show what IVF-PQ would do
            spec = annspec.choose_spec(max(n, annspec.FLAT_MAX + 1), xb.shape[1])
        if args.nlist or args.m:
            nlist = args.nlist or spec.nlist
            spec = annspec.AnnSpec(
                "ivfpq",
                spec.dim,
                nlist,
                args.m or spec.m,
                8,
                min(n, annspec.TRAIN_PER_CENTROID * nlist),
                spec.nprobe,
            )
        if not args.no_flat:
            rows += bench_spec(xb, xq, gt, annspec.AnnSpec("flat", xb.shape[1]), [], [], args.nlat)
        rows += bench_spec(xb, xq, gt, spec, args.nprobes, args.factors, args.nlat)
        del xb, xq, gt
        load.append(os.getloadavg()[0])

    import faiss

    meta = {
        "command": " ".join(["python", "bench/ann_bench.py", *(argv or sys.argv[1:])]),
        "faiss": faiss.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "gpus": faiss.get_num_gpus(),
        "k": K,
        "nq": args.nq,
        "load_avg_1min": [round(x, 1) for x in load],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    md = markdown(rows)
    args.out.with_suffix(".md").write_text(header(meta) + md)
    print(md)


def header(meta) -> str:
    return (
        f"# ANN benchmark\n\n`{meta['command']}`\n\nfaiss {meta['faiss']}, {meta['cpus']} CPUs "
        f"({meta['machine']}), {meta['gpus']} GPUs; k={meta['k']}, {meta['nq']} held-out queries; "
        f"1-min load average during the run {meta['load_avg_1min']} (shared machine). Latency: one "
        "query at a time on one thread, exact re-rank included. Bytes/vector: saved file / N.\n\n"
    )


if __name__ == "__main__":
    main()
