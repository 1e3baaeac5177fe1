"""Benchmark filtered search (selection.py) through a real index: recall@10 against brute force over
the matching vectors, and per-query latency, at 0.1 %, 1 %, 10 % and 50 % selectivity.

Run by hand (not a test); 1M vectors take ~20 minutes on 2 shared cores, most of it writing the
table and training IVF-PQ:

    python bench/filter_bench.py --n 1000000 --out bench/results/filters.json

The vectors are ann_bench.py's synthetic CLIP-like ones (512-d). Each row gets a random `taken`
date over ten years (independent of its vector); a filter of selectivity s is a date window
holding exactly s of the rows. Latency is one query at a time, faiss on ONE thread, and covers
everything `Collection.search(where=...)` does: reading the filter's columns from LanceDB and masking
them, the search (exact scoring of vectors read from LanceDB, or IVF-PQ with an id selector and
the exact re-rank) and reading the hits' rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ann_bench import make_data  # noqa: E402

from clipsearch import selection  # noqa: E402
from clipsearch.filters import Filter  # noqa: E402
from clipsearch.index import create_index  # noqa: E402
from clipsearch.model import ModelIdentity  # noqa: E402
from clipsearch.photometa import PhotoMeta  # noqa: E402
from clipsearch.store import Row  # noqa: E402

K = 10
SHARES = (0.001, 0.01, 0.1, 0.5)
START = datetime(2015, 1, 1)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build(root: Path, xb: np.ndarray, seconds: np.ndarray):
    index = create_index(root, ModelIdentity("synthetic", "bench", xb.shape[1]))
    step = 100_000
    for s in range(0, len(xb), step):
        rows = [Row(-1, f"/photos/{i // 1000}/{i}.jpg", 1, 0.0, 640, 480, "",
                    PhotoMeta(taken=START + timedelta(seconds=int(seconds[i])), taken_source="exif", kind="photo"))
                for i in range(s, min(s + step, len(xb)))]
        index.images.add(rows, xb[s:s + step])  # ids 0..N-1 in order
        log(f"table: {s + len(rows)} rows")
    index.images.compact()
    index.images.sync()  # rebuilds the ANN index from the stored vectors (IVF-PQ past 50k)
    log(f"ANN: {index.images.ann().spec.describe()}")
    return index.images


def window(seconds: np.ndarray, share: float) -> Filter:
    """A date window holding `share` of the rows (rows' dates are distinct seconds)."""
    order = np.sort(seconds)
    lo = len(order) // 3
    hi = lo + int(share * len(order))
    return Filter(after=START + timedelta(seconds=int(order[lo])), before=START + timedelta(seconds=int(order[hi])))


def bench_share(images, xb, xq, seconds, share, nlat):
    f = window(seconds, share)
    images._columns.clear()  # time reading the filter's columns too, not a cached copy
    t = time.perf_counter()
    ids = images.matching(f)
    mask_ms = (time.perf_counter() - t) * 1e3
    keep = np.zeros(len(xb), bool)
    keep[ids] = True
    gt = selection.exact_top_k(xq, xb[keep], np.flatnonzero(keep).astype(np.int64), K)[1]
    hits = images.search(xq, K, where=f)
    rec = np.mean([len({h.id for h in row} & set(g)) / K for row, g in zip(hits, gt)])
    lat = []
    for q in xq[:nlat]:
        t = time.perf_counter()
        images.search(q[None], K, where=f)
        lat.append((time.perf_counter() - t) * 1e3)
    plan = selection.EXACT if len(ids) <= selection.EXACT_MAX else selection.SELECTOR
    return {"share": share, "matching": int(len(ids)), "plan": plan, "recall@10": round(float(rec), 4),
            "ms_p50": round(float(np.median(lat)), 1), "ms_p95": round(float(np.percentile(lat, 95)), 1),
            "mask_ms": round(mask_ms, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--nq", type=int, default=100, help="queries for recall")
    p.add_argument("--nlat", type=int, default=30, help="queries timed one by one")
    p.add_argument("--workdir", type=Path, default=None, help="where the index is written [default: a temp dir]")
    p.add_argument("--out", type=Path, default=Path("bench/results/filters.json"))
    a = p.parse_args(argv)
    import faiss

    faiss.omp_set_num_threads(1)
    xb, xq = make_data(a.n, a.nq)
    seconds = np.random.default_rng(1).choice(10 * 365 * 86400, a.n, replace=False)
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        images = build(Path(tmp) / "index", xb, seconds)
        t = time.perf_counter()
        for q in xq[: a.nlat]:
            images.search(q[None], K)
        base = (time.perf_counter() - t) * 1e3 / a.nlat
        rows = []
        for share in SHARES:
            rows.append(bench_share(images, xb, xq, seconds, share, a.nlat))
            log(json.dumps(rows[-1]))
        result = {"n": a.n, "dim": xb.shape[1], "ann": images.ann().spec.describe(), "k": K,
                  "exact_max": selection.EXACT_MAX, "unfiltered_ms": round(base, 1), "rows": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))
    a.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    lines = [f"Filtered search at {r['n']:,} vectors ({r['dim']}-d, {r['ann']}), k={r['k']}, one thread; "
             f"unfiltered query {r['unfiltered_ms']} ms.", "",
             "| selectivity | matching | plan | recall@10 | latency p50 | p95 | filter columns read + mask (once per table version) |",
             "|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        lines.append(f"| {x['share'] * 100:g} % | {x['matching']:,} | {x['plan']} | {x['recall@10']} | "
                     f"{x['ms_p50']} ms | {x['ms_p95']} ms | {x['mask_ms']} ms |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
