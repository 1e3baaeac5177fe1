"""Probe of the segmented ANN index alone (clipsearch/ann/segments.py), without LanceDB or a model:
build, open + queries, add + sync, on synthetic bursty 512-d vectors (bench/search_bench.py).

Run by hand (not a test); each step is a fresh process, so its peak RSS is its own:

    python bench/segment_probe.py --n 1000000 --work /tmp/segprobe

Steps: `data` (vectors, queries, exact top-100, cached), `build` (every vector added in chunks of
50k with a path-like record, then one sync: spills, training, merge), `query` (open + 200 queries,
one thread, k=10: p50/p90 ms, recall@10, peak RSS), `add` (10 rows + sync: seconds and bytes
written), `fp16` (recall@10 if the re-rank read float16 vectors), `mmap` (what reading candidates
through a memory map would cost in RSS). bench/scale_bench.py measures the same through the whole index (LanceDB, the CLI).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def written() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("write_bytes"))


def rows(ids):
    import pyarrow as pa

    return pa.table({"id": ids, "path": [f"/photos/2024/{i // 1000:04d}/IMG_{i:08d}.jpg" for i in ids],
                     "width": np.full(len(ids), 4032, np.int32), "height": np.full(len(ids), 3024, np.int32)})


def step_data(a) -> dict:
    from ann_bench import exact_knn
    from search_bench import bursty

    a.work.mkdir(parents=True, exist_ok=True)
    if not (a.work / "xb.npy").exists():
        xb, xq = bursty(a.n, 1000)
        np.save(a.work / "xb.npy", xb), np.save(a.work / "xq.npy", xq)
        np.save(a.work / "gt.npy", exact_knn(xb, xq, 100))
    return {}


def step_build(a) -> dict:
    from clipsearch.ann.segments import Segments

    xb = np.load(a.work / "xb.npy", mmap_mode="r")
    n, dim, offset = len(xb), xb.shape[1], xb.offset
    del xb  # read by chunks with plain reads: mapped, its pages would count in this process's RSS
    t0, w0 = time.time(), written()
    segs = Segments.create(a.work / "images.ann", dim)
    for s in range(0, n, 50_000):
        ids = np.arange(s, min(s + 50_000, n))
        x = np.fromfile(a.work / "xb.npy", np.float32, len(ids) * dim, offset=offset + s * dim * 4)
        segs.add(ids, x.reshape(len(ids), dim), rows(ids))
    t1 = time.time()
    note = segs.sync(1, "probe")
    return {"build_s": round(time.time() - t0, 1), "sync_s": round(time.time() - t1, 1), "note": note,
            "build_peak_mib": round(peak_mib()), "build_written_mib": round((written() - w0) / 2**20),
            "segments": len(segs.segments), "disk_mib": round(sum(p.stat().st_size for p in segs.folder.iterdir()) / 2**20)}


def step_query(a) -> dict:
    import faiss

    from clipsearch.ann.segments import Segments

    faiss.omp_set_num_threads(1)
    xq, gt = np.load(a.work / "xq.npy")[:a.queries], np.load(a.work / "gt.npy")[:a.queries]
    t0 = time.time()
    segs = Segments.open(a.work / "images.ann")
    opened, lat, found = time.time() - t0, [], []
    for q in xq:
        t = time.perf_counter()
        D, I = segs.search_exact(q[None], 10)
        segs.records_of(I[0])
        lat.append((time.perf_counter() - t) * 1e3)
        found.append(I[0])
    recall = np.mean([len(np.intersect1d(f, g[:10])) / 10 for f, g in zip(found, gt)])
    return {"open_s": round(opened, 3), "p50_ms": round(float(np.median(lat)), 2),
            "p90_ms": round(float(np.percentile(lat, 90)), 2), "recall@10": round(float(recall), 4),
            "query_peak_mib": round(peak_mib()), "ann": segs.spec.describe(), "segments": len(segs.segments)}


def step_add(a) -> dict:
    from clipsearch.ann.segments import Segments

    segs = Segments.open(a.work / "images.ann")
    n = int(segs.live_ids()[-1]) + 1
    x = np.random.default_rng(n).standard_normal((10, segs.dim)).astype(np.float32)
    t0, w0 = time.time(), written()
    segs.add(np.arange(n, n + 10), x / np.linalg.norm(x, axis=1, keepdims=True), rows(np.arange(n, n + 10)))
    segs.sync(2 + n, "probe")
    return {"add10_sync_s": round(time.time() - t0, 3), "add10_written_mib": round((written() - w0) / 2**20, 2),
            "add_peak_mib": round(peak_mib()), "segments_after": len(segs.segments)}


def step_fp16(a) -> dict:
    """recall@10 when the re-rank reads float16 copies of the stored vectors (the choice not made)."""
    import faiss

    from clipsearch.ann.segments import Segments

    faiss.omp_set_num_threads(1)
    xq, gt = np.load(a.work / "xq.npy")[:a.queries], np.load(a.work / "gt.npy")[:a.queries]
    segs = Segments.open(a.work / "images.ann")
    exact = segs.vectors_at_labels
    out = {}
    for name, lookup in (("fp32", exact), ("fp16", lambda labels: exact(labels).astype(np.float16).astype(np.float32))):
        segs.vectors_at_labels = lookup
        found = [segs.search_exact(q[None], 10)[1][0] for q in xq]
        out[f"recall@10_{name}"] = round(float(np.mean([len(np.intersect1d(f, g[:10])) / 10 for f, g in zip(found, gt)])), 4)
    return out


def step_mmap(a) -> dict:
    """RSS of a process that reads 1,024 random stored vectors per query through a memory map."""
    from clipsearch.ann import catalog

    cat = catalog.read(a.work / "images.ann")
    vec = np.load(a.work / "images.ann" / f"{cat.parts[0].serial:06d}.vec", mmap_mode="r")
    rng, out = np.random.default_rng(0), {"vec_file_mib": round(vec.nbytes / 2**20)}
    before = _rss()
    for q in range(10):
        np.asarray(vec[np.sort(rng.choice(len(vec), 1024, replace=False))])
        if q in (0, 9):
            out[f"mapped_rss_mib_after_{q + 1}_queries"] = round(_rss() - before)
    return out


def _rss() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--step", choices=["data", "build", "query", "add", "fp16", "mmap"])
    a = ap.parse_args(argv)
    if a.step:
        print(json.dumps(globals()[f"step_{a.step}"](a)))
        return
    out = {"n": a.n, "load": os.getloadavg()}
    for step in ("data", "build", "query", "add", "query", "fp16", "mmap"):
        if step == "build" and (a.work / "images.ann" / "catalog.json").exists():
            continue
        cmd = [sys.executable, __file__, "--n", str(a.n), "--work", str(a.work), "--queries", str(a.queries),
               "--step", step]
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(step, res, file=sys.stderr, flush=True)
        out |= res
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
