"""Benchmark filtered search (selection.py) through a real index: recall@10 against brute force over
the matching vectors, and per-query latency, at 0.1 %, 1 %, 10 % and 50 % selectivity.

Run by hand (not a test); 1M vectors take ~15 minutes and ~5 GB on 2 shared cores, most of it writing
the table and building IVF-PQ:

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

from clipsearch.ann import selection
from clipsearch.store.filters import Filter  # noqa: E402
from clipsearch.index import create_index  # noqa: E402
from clipsearch.models.encoder import ModelIdentity  # noqa: E402
from clipsearch.media.photometa import PhotoMeta  # noqa: E402
from clipsearch.store.records import Row

K = 10
SHARES = (0.001, 0.01, 0.1, 0.5)
START = datetime(2015, 1, 1)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build(root: Path, xb: np.ndarray, seconds: np.ndarray):
    """The images collection of a new index holding xb with a `taken` per row."""
    index = create_index(root, ModelIdentity("synthetic", "bench", xb.shape[1]))
    images, step = index.images, 100_000
    with index.writing():
        images.table._create(index._store)
        for s in range(0, len(xb), step):
            rows = [Row(i, f"/photos/{i // 1000}/{i}.jpg", 1, 0.0, 640, 480, "", meta=
                        PhotoMeta(taken=START + timedelta(seconds=int(seconds[i])), taken_source="exif", kind="photo"))
                    for i in range(s, min(s + step, len(xb)))]
            images.add(rows, np.ascontiguousarray(xb[s:s + step]), ids=np.arange(s, s + len(rows)))
            log(f"table: {s + len(rows)} rows")
        images.sync()  # the ANN segments for this table version, and the id index
    log(f"ANN: {images.ann().spec.describe()}")
    return images


def truth(xq: np.ndarray, xb: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """I (nq, K): exact top K among the rows `keep`, in chunks (no copy of the matching rows)."""
    best_D = np.full((len(xq), K), -np.inf, np.float32)
    best_I = np.full((len(xq), K), -1, np.int64)
    for s in range(0, len(xb), 100_000):
        S = xq @ xb[s:s + 100_000].T
        S[:, ~keep[s:s + 100_000]] = -np.inf
        D = np.concatenate([best_D, S], axis=1)
        I = np.concatenate([best_I, np.broadcast_to(np.arange(s, s + S.shape[1]), S.shape)], axis=1)
        top = np.argsort(-D, axis=1)[:, :K]
        best_D, best_I = np.take_along_axis(D, top, 1), np.take_along_axis(I, top, 1)
    return best_I


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
    gt = truth(xq, xb, keep)
    hits = images.search(xq, K, where=f)
    rec = np.mean([len({h.id for h in row} & set(g)) / K for row, g in zip(hits, gt)])
    lat, core = [], []
    for q in xq[:nlat]:
        t = time.perf_counter()
        images.search(q[None], K, where=f)
        lat.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()  # the plan alone: vectors from memory, no LanceDB read
        selection.search_among(images.ann(), q[None], K, ids, lambda i: xb[i])
        core.append((time.perf_counter() - t) * 1e3)
    plan = selection.EXACT if len(ids) <= selection.EXACT_MAX else selection.SELECTOR
    return {"share": share, "matching": int(len(ids)), "plan": plan, "recall@10": round(float(rec), 4),
            "ms_p50": round(float(np.median(lat)), 1), "ms_p95": round(float(np.percentile(lat, 95)), 1),
            "plan_ms_p50": round(float(np.median(core)), 1),
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
        base = float(np.median([_timed(images.search, q[None], K) for q in xq[: a.nlat]]))
        ann = images.ann()
        base_core = float(np.median([_timed(ann.search, q[None], K * 10) for q in xq[: a.nlat]]))
        rows = []
        for share in SHARES:
            rows.append(bench_share(images, xb, xq, seconds, share, a.nlat))
            log(json.dumps(rows[-1]))
        result = {"n": a.n, "dim": xb.shape[1], "ann": images.ann().spec.describe(), "k": K,
                  "exact_max": selection.EXACT_MAX, "unfiltered_ms": round(base, 1),
                  "unfiltered_faiss_ms": round(base_core, 1), "rows": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))
    a.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def _timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - t) * 1e3


def markdown(r: dict) -> str:
    lines = [f"Filtered search at {r['n']:,} vectors ({r['dim']}-d, {r['ann']}), k={r['k']}, faiss on one "
             f"thread; unfiltered query {r['unfiltered_ms']} ms p50 ({r['unfiltered_faiss_ms']} ms of it FAISS).", "",
             "| selectivity | matching | plan | recall@10 | latency p50 | p95 | plan alone p50 (vectors in memory) "
             "| filter columns read + mask (once per table version) |",
             "|---|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        lines.append(f"| {x['share'] * 100:g} % | {x['matching']:,} | {x['plan']} | {x['recall@10']} | "
                     f"{x['ms_p50']} ms | {x['ms_p95']} ms | {x['plan_ms_p50']} ms | {x['mask_ms']} ms |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
