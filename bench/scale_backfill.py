"""The metadata backfill of an `index` run over N rows without metadata whose files are on a drive
that isn't mounted: seconds and header reads of a first and a second run, through the indexer's
guarded decoding pool (cores - 1 workers), as `clipsearch index` of another folder runs it.

Run by hand (not a test), once per checkout to compare (the code on PYTHONPATH is measured):

    PYTHONPATH=OLD_TREE python bench/scale_backfill.py --n 200000 --work /tmp/bf-old --label before
    python bench/scale_backfill.py --n 200000 --work /tmp/bf-new --label after

The rows are a synthetic 8-d index (the vectors play no part); their paths are under /mnt/drive.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import time
from pathlib import Path

import numpy as np


def build(root: Path, n: int) -> None:
    """An index of n rows as an index from before schema 6 has them: no metadata read yet."""
    from clipsearch import ModelIdentity, create_index
    from clipsearch.store.records import Row

    index = create_index(root, ModelIdentity("synthetic", "none", 8))
    with index.writing():
        for s in range(0, n, 100_000):
            e = min(n, s + 100_000)
            xb = np.random.default_rng(s).standard_normal((e - s, 8)).astype(np.float32)
            rows = [Row(-1, f"/mnt/drive/{i // 1000:04d}/IMG_{i:07d}.jpg", 1, 0.0, 64, 48) for i in range(s, e)]
            index.images.add(rows, xb / np.linalg.norm(xb, axis=1, keepdims=True))


def runs(root: Path) -> list[dict]:
    """Two backfills in a row: seconds and header reads of each."""
    from clipsearch import open_index
    from clipsearch.ingest.backfill import backfill_meta
    from clipsearch.ingest.pool import decoding_map, default_workers

    index, out = open_index(root, writable=True), []
    # Before issue 21 backfill_meta took no table of unread headers.
    kept = (index.unread,) if "unread" in inspect.signature(backfill_meta).parameters else ()
    with index.writing(), decoding_map(default_workers(), 32, 10.0) as pool:
        for _ in range(2):
            reads = []

            def counted(fn, paths):
                reads.extend(paths)
                return pool(fn, paths)

            t = time.perf_counter()
            backfill_meta(index.images, *kept, counted)
            out.append({"seconds": round(time.perf_counter() - t, 1), "header_reads": len(reads),
                        "load": round(os.getloadavg()[0], 1)})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--work", type=Path, required=True, help="the index (reused when there)")
    p.add_argument("--label", default="")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scale_backfill.json")
    a = p.parse_args()
    if not (a.work / "manifest.json").exists():
        build(a.work, a.n)
    result = {"label": a.label, "n": a.n, "cpus": os.cpu_count(), "runs": runs(a.work)}
    print(json.dumps(result))
    old = json.loads(a.out.read_text()) if a.out.exists() else []
    a.out.write_text(json.dumps([r for r in old if (r["label"], r["n"]) != (a.label, a.n)] + [result], indent=1) + "\n")


if __name__ == "__main__":
    main()
