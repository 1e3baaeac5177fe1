"""Warm search through the real `Index.search` (FAISS + LanceDB + exact re-rank) at 100k and 1M images.

Run by hand (not a test). Building a 1M index takes a long while on 2 cores, so each index is built
once into --cache and reused by later runs (delete it to rebuild after a format change):

    python bench/search_bench.py --sizes 100000 1000000 --cache /tmp/cs-bench --out bench/results/search.json

Two distributions of 512-d unit vectors:
- easy:   the Gaussian mixture of bench/ann_bench.py (3,000 uneven clusters, CLIP-like spectrum);
- bursty: 1,000 tight clusters (bursts of near-identical shots), where a query's top 100
          neighbours lie within 0.03 of cosine (the run prints the measured spread).
Latency: one query at a time, k=10, one thread (faiss and BLAS), after warm-up; recall@10 against
brute force. Rows are the index's own defaults unless --nprobe/--rerank are given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before faiss loads: see ann_bench.py
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ann_bench import exact_knn, log, make_data, recall_at  # noqa: E402

from clipsearch import ModelIdentity, create_index, open_index  # noqa: E402
from clipsearch.store.records import Row

K = 10
DIM = 512


def bursty(n, nq, d=DIM, clusters=1000, noise=0.12, seed=1):
    """xb (n, d), xq (nq, d): unit vectors in `clusters` tight bursts around CLIP-like centres."""
    x = np.concatenate(list(bursty_blocks(n + nq, d, clusters, noise, seed)))
    return x[:n], x[n:]


def bursty_blocks(n, d=DIM, clusters=1000, noise=0.12, seed=1, block=100_000):
    """`bursty`'s n unit vectors as (<= block, d) float32 blocks, drawn one block at a time: a
    stream that never holds more than a block (the scale bench draws 10M this way)."""
    rng = np.random.default_rng(seed)
    centres, _ = make_data(clusters, 0, d, seed=seed)
    for s in range(0, n, block):
        e = min(s + block, n)
        z = centres[rng.integers(0, clusters, e - s)]
        x = (z + noise * rng.standard_normal((e - s, d), dtype=np.float32) / np.sqrt(d)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield x


def dataset(dist, n, nq, cache: Path):
    """xb, xq, gt (true top-K ids = row numbers), cached as .npy."""
    files = [cache / f"{dist}_{n}_{nq}_{name}.npy" for name in ("xb", "xq", "gt")]
    if all(f.exists() for f in files):
        return [np.load(f, mmap_mode="r") if i == 0 else np.load(f) for i, f in enumerate(files)]
    xb, xq = make_data(n, nq) if dist == "easy" else bursty(n, nq)
    gt = exact_knn(xb, xq, 100)
    cache.mkdir(parents=True, exist_ok=True)
    for f, a in zip(files, (xb, xq, gt)):
        np.save(f, a)
    return xb, xq, gt


def build(dist, n, xb, cache: Path):
    """The index directory for (dist, n), built once through Collection.add + sync."""
    root = cache / f"index-{dist}-{n}"
    if (root / "manifest.json").exists():
        if "CLIPSEARCH_BENCH_NO_UPGRADE" not in os.environ:  # an index of older code: bring it up to date
            index = open_index(root, writable=True)
            with index.writing():
                index.images.sync()  # a build stopped before its ANN index: caught up from the table
        return root
    log(f"{dist} {n}: building the index (once)")
    index = create_index(root, ModelIdentity("synthetic", "none", DIM))
    step = 50_000
    for s in range(0, n, step):
        e = min(s + step, n)
        rows = [Row(-1, f"/photos/{dist}/{i // 1000:04d}/IMG_{i:07d}.jpg", 1, 0.0, 640, 480)
                for i in range(s, e)]
        with index.writing():
            index.images.add(rows, np.ascontiguousarray(xb[s:e]))  # segments written as it goes
    with index.writing():
        index.images.sync()
    return root


def measure(index, xq, gt, nlat, **kw):
    """(p50 ms, p99 ms, recall@10) of Index.search one query at a time."""
    import faiss

    faiss.omp_set_num_threads(1)
    for q in xq[:5]:  # warm-up: first calls load the ANN file and open the table
        index.images.search(q[None], K, **kw)
    lat, found = [], []
    for q in xq[:nlat]:
        t0 = time.perf_counter()
        hits = index.images.search(q[None], K, **kw)[0]
        lat.append((time.perf_counter() - t0) * 1e3)
        found.append([int(h.path.rsplit("_", 1)[1][:-4]) for h in hits])
    return float(np.median(lat)), float(np.percentile(lat, 99)), recall_at(np.array(found), gt[:nlat])


def spread(xb, xq, gt, m=50):
    """Median over queries of cos(top-1) - cos(top-100): how tight the neighbourhoods are."""
    out = []
    for q, ids in zip(xq[:m], gt[:m]):
        s = np.asarray(xb[np.sort(ids)]) @ q
        out.append(float(s.max() - s.min()))
    return float(np.median(out))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--dists", nargs="+", default=["easy", "bursty"])
    p.add_argument("--nq", type=int, default=300)
    p.add_argument("--nlat", type=int, default=200)
    p.add_argument("--nprobe", type=int)
    p.add_argument("--rerank", type=int)
    p.add_argument("--label", default="", help="e.g. before/after, recorded in each row")
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("bench/results/search.json"))
    args = p.parse_args(argv)
    rows = []
    for n in args.sizes:
        for dist in args.dists:
            xb, xq, gt = dataset(dist, n, args.nq, args.cache)
            root = build(dist, n, xb, args.cache)
            index = open_index(root)
            kw = {k: v for k, v in (("nprobe", args.nprobe), ("rerank", args.rerank)) if v}
            p50, p99, rec = measure(index, xq, gt, args.nlat, **kw)
            rows.append({"label": args.label, "n": n, "dist": dist, "ann": index.images.ann().spec.describe(),
                         **kw, "p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "recall@10": round(rec, 4),
                         "top100_spread": round(spread(xb, xq, gt), 4),
                         "load_avg": round(os.getloadavg()[0], 1)})
            log(str(rows[-1]))
    write(rows, args, argv)


def write(rows, args, argv):
    import faiss

    meta = {"command": " ".join(["python", "bench/search_bench.py", *(argv or sys.argv[1:])]),
            "faiss": faiss.__version__, "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(), "k": K}
    old = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
    keep = [r for r in old if r.get("label") != args.label or r["n"] not in args.sizes]
    rows = keep + rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    head = "| label | N | distribution | ANN | p50 ms | p99 ms | recall@10 | top-100 spread | load |\n"
    lines = [f"| {r['label']} | {r['n']:,} | {r['dist']} | {r['ann']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
             f"| {r['recall@10']:.3f} | {r['top100_spread']:.3f} | {r['load_avg']} |" for r in rows]
    md = head + "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n"
    args.out.with_suffix(".md").write_text(f"# Warm search through Index.search\n\n`{meta['command']}`\n\n"
                                           f"k={K}, one thread, faiss {meta['faiss']}, {meta['cpus']} CPUs.\n\n" + md)
    print(md)


if __name__ == "__main__":
    main()
