"""Warm text query through the one query path (Matcher: encode, search, calibrate), as the UI runs it.

Run by hand after bench/cold_query.py has set up --work:

    python bench/warm_query.py --work /tmp/cs-cold --out bench/results/warm_query.json

Compares the query encoder the CLI and the UI use (exported text tower on ONNX Runtime) with the
open_clip model in torch, one thread each, on the same index; medians of --repeats queries.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np

QUERIES = ["a dog playing music", "sunset over water", "a red car in the snow", "two people on a bench"]


def timed(matcher, repeats: int) -> float:
    from clipsearch import Request

    matcher.run(Request(QUERIES[0].split(), k=10))  # warm-up
    lat = []
    for i in range(repeats):
        t0 = time.perf_counter()
        matcher.run(Request(QUERIES[i % len(QUERIES)].split(), k=10))
        lat.append((time.perf_counter() - t0) * 1e3)
    return round(float(np.median(lat)), 2)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", type=Path, default=Path("bench/results/warm_query.json"))
    args = p.parse_args(argv)
    os.environ["CLIPSEARCH_CACHE"] = str(args.work / "cache")
    from clipsearch import Matcher, Settings, load_encoder, open_index
    from clipsearch.config import default_cache_dir
    from clipsearch.models.queryencoder import query_encoder

    index = open_index(args.work / "idx")
    m = index.identity
    fast = query_encoder(m, default_cache_dir(), lambda: load_encoder(m.model, m.pretrained, "cpu"))
    assert fast.tower is not None, "no exported text tower: run bench/cold_query.py first"
    rows = {"query encoder (text tower, ONNX Runtime)": timed(Matcher(fast, index, max_pixels=Settings().max_pixels, duplicate_threshold=Settings().duplicate_threshold),
                                                              args.repeats)}
    import torch

    torch.set_num_threads(1)
    full = load_encoder(m.model, m.pretrained, "cpu")
    rows["open_clip model (torch)"] = timed(Matcher(full, index, max_pixels=Settings().max_pixels, duplicate_threshold=Settings().duplicate_threshold), args.repeats)
    md = "| encoder | median ms, text query k=10, calibrated |\n|---|---|\n" + "".join(
        f"| {k} | {v} |\n" for k, v in rows.items())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": " ".join(["python", "bench/warm_query.py", *sys.argv[1:]]),
                                    "load_avg_1min": round(os.getloadavg()[0], 1), "rows": rows}, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(f"# Warm text query (Matcher, 100 images, ViT-B-32, one thread)\n\n"
                                           f"`python bench/warm_query.py {' '.join(sys.argv[1:])}`\n\n" + md)
    print(md)


if __name__ == "__main__":
    main()
