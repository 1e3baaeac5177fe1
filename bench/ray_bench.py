"""Benchmark the Ray path: `index --ray` against plain `index`, and the sharded ANN build against a single one.

Run by hand (not a test). On this machine (2 cores, no GPU):

    python bench/ray_bench.py index --n 300 --model ViT-B-32 --repeats 2 --out bench/results/ray-index.json
    python bench/ray_bench.py ann --n 1000000 --cache /tmp/b/cache --out bench/results/ray-ann.json
    python bench/ray_bench.py stages --batch 32 --size 224 --out bench/results/ray-stages.json

On one GPU (ViT-B-32 on ~1-3 MP JPEGs; the machine's cores decode):

    python bench/ray_bench.py index --n 10000 --mp 1 3 --model ViT-B-32 --device cuda --repeats 2 \
        --out bench/results/ray-index-gpu.json

index: both commands run as whole processes (interpreter, imports, model load, and for --ray the
local Ray cluster it starts) on the same seeded photo-like JPEGs (bench/index_bench.py's), into a
fresh index each time, alternating; the median wall time of each and their ratio are reported.
ann: the same IVF-PQ spec (choose_spec(n)) built once in this process (AnnIndex.build) and once
sharded on a local Ray cluster from an index of the vectors (indexer/ray_ann.build: training sample
read by the driver, one task per ~100k rows reading its own fragments and writing a segment); build time
and recall@10 with the default nprobe and 10x exact re-rank, against brute force.
stages: one stage boundary of the --ray pipeline (a decode actor's batch of pictures to an encode
actor's pixels) through a local Ray object store: the picture table with its pixel tensor column
(indexer/ray_tables) against a pickled object per file, the format before it; median of 30.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from ann_bench import dataset, recall_at  # noqa: E402
from index_bench import log, make_photos  # noqa: E402


def bench_index(a) -> dict:
    photos = make_photos(Path(a.photos), a.n, tuple(a.mp))
    folder = Path(a.photos)
    runs = {"index": [], "index --ray": []}
    for r in range(a.repeats):
        for method in runs:
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, "-m", "clipsearch.cli", "index", str(folder), "--index", f"{tmp}/index",
                       "--model", a.model, "--pretrained", a.pretrained, "--device", a.device, "--quiet", "--json"]
                cmd += ["--ray"] if method.endswith("--ray") else []
                env = os.environ | {"RAY_ADDRESS": ""}  # a local cluster for the run, as a user gets
                t = time.perf_counter()
                out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
                wall = time.perf_counter() - t
                summary = _summary(out.stdout, Path(a.photos).parent / f"{method.replace(' ', '')}-{r}")
                runs[method].append({"wall_s": round(wall, 2), "indexed": summary["indexed"],
                                     "inside_s": summary["seconds"]})
                log(f"{method} #{r}: {wall:.1f} s for {summary['indexed']} photos")
    med = {m: statistics.median(x["wall_s"] for x in v) for m, v in runs.items()}
    return {"n": len(photos), "model": a.model, "device": a.device, "runs": runs, "median_wall_s": med,
            "ray_over_plain": round(med["index --ray"] / med["index"], 3)}


def _summary(stdout: str, keep: Path) -> dict:
    """The run's --json summary; anything else it printed is kept in `keep`.out for a look."""
    start = stdout.find("{\n")
    if start != 0:
        keep.with_suffix(".out").write_text(stdout)
        log(f"the run printed {len(stdout) - start if start >= 0 else len(stdout)} chars besides its JSON: {keep}.out")
    return json.JSONDecoder().raw_decode(stdout[start:])[0]


def bench_ann(a) -> dict:
    import faiss
    import ray

    from clipsearch import AnnIndex, choose_spec
    from clipsearch.ann.refine import rerank
    from clipsearch.indexer import ray_ann

    xb, xq, gt = dataset(a.n, 1000, Path(a.cache) if a.cache else None)
    xb = np.ascontiguousarray(xb)
    ids = np.arange(a.n, dtype=np.int64)
    spec = choose_spec(a.n, xb.shape[1])
    out = {"n": a.n, "spec": spec.describe(), "threads": faiss.omp_get_max_threads()}

    def recall(ann) -> float:
        D, I = ann.search(xq, 10 * 10, spec.nprobe)
        return recall_at(rerank(xq, I, lambda u: xb[u], 10)[1], gt)

    t = time.perf_counter()
    single = AnnIndex.build(xb, ids, spec)
    out["single"] = {"build_s": round(time.perf_counter() - t, 1), "recall@10": recall(single)}
    log(f"single: {out['single']}")
    del single
    with tempfile.TemporaryDirectory(dir=a.cache) as tmp:
        index = _index(Path(tmp) / "index", ids, xb)
        ray.init(num_cpus=a.cpus, object_store_memory=512 * 2**20, log_to_driver=False, include_dashboard=False)
        try:
            t = time.perf_counter()
            with index.writing():
                ray_ann.build(index.images, spec)  # a segment per task, adopted
            out["sharded"] = {"build_s": round(time.perf_counter() - t, 1), "recall@10": recall(index.images.ann()),
                              "tasks": -(-a.n // ray_ann.SHARD_ROWS), "ray_cpus": a.cpus}
        finally:
            ray.shutdown()
    log(f"sharded: {out['sharded']}")
    out["recall_gap"] = round(out["single"]["recall@10"] - out["sharded"]["recall@10"], 4)
    return out


def _index(root: Path, ids: np.ndarray, xb: np.ndarray):
    """An index of the vectors, committed in chunks of 100k rows (a fragment each, as chunk commits
    make), its rows given paths."""
    from clipsearch import ModelIdentity, create_index
    from clipsearch.store.records import Row

    index = create_index(root, ModelIdentity("synthetic", "none", xb.shape[1]))
    with index.writing():
        for s in range(0, len(ids), 100_000):
            rows = [Row(int(i), f"/p/{i}.jpg", 1, 0.0, 64, 64) for i in ids[s:s + 100_000]]
            index.images.add(rows, np.ascontiguousarray(xb[s:s + 100_000]), ids=ids[s:s + 100_000])
    return index


def bench_stages(a) -> dict:
    import pickle

    import ray

    from clipsearch.indexer import ray_tables
    from clipsearch.ingest.batch import Decoded
    from clipsearch.media.photometa import PhotoMeta
    from clipsearch.store.records import Row

    rng = np.random.default_rng(0)
    meta = PhotoMeta(taken_source="exif", lat=48.85, lon=2.35, kind="photo")
    files = [(0, 64 * i, Decoded((Row(-1, f"/photos/photo_{i:05d}.jpg", 2_000_000, 1.5, 4000, 3000, "ab" * 16,
                                      None, meta),), rng.integers(0, 255, (1, a.size, a.size, 3), np.uint8)))
             for i in range(a.batch)]

    def arrow() -> np.ndarray:
        ref = ray.put(ray_tables.pictures(files, a.size))
        return ray_tables.tensor(ray.get(ref), ray_tables.PIXELS)

    def pickled() -> np.ndarray:
        ref = ray.put(np.array([pickle.dumps(d) for _, _, d in files], dtype=object))
        return np.concatenate([pickle.loads(b).pixels for b in ray.get(ref)])

    out = {"batch": a.batch, "size": a.size}
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        for name, fn in (("arrow_tensor", arrow), ("pickled", pickled)):
            fn()
            times = []
            for _ in range(30):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            out[name] = {"median_ms": round(statistics.median(times) * 1e3, 2), "min_ms": round(min(times) * 1e3, 2)}
            log(f"{name}: {out[name]}")
    finally:
        ray.shutdown()
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    i = sub.add_parser("index")
    i.add_argument("--n", type=int, default=300)
    i.add_argument("--mp", type=float, nargs=2, default=(0.3, 2.0))
    i.add_argument("--model", default="ViT-B-32")
    i.add_argument("--pretrained", default="random")
    i.add_argument("--device", default="cpu")
    i.add_argument("--repeats", type=int, default=2)
    i.add_argument("--photos", default="/tmp/clipsearch-ray-bench/photos")
    n = sub.add_parser("ann")
    n.add_argument("--n", type=int, default=1_000_000)
    n.add_argument("--cpus", type=int, default=os.cpu_count())
    n.add_argument("--cache", default=None)
    st = sub.add_parser("stages")
    st.add_argument("--batch", type=int, default=32)
    st.add_argument("--size", type=int, default=224)
    for s in (i, n, st):
        s.add_argument("--out", default=None)
    a = p.parse_args(argv)
    t0, load0 = time.time(), os.getloadavg()
    result = {"index": bench_index, "ann": bench_ann, "stages": bench_stages}[a.what](a)
    result |= {"cores": os.cpu_count(), "load_avg_before": load0, "load_avg_after": os.getloadavg(),
               "minutes": round((time.time() - t0) / 60, 1)}
    print(json.dumps(result, indent=2))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
