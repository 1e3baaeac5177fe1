"""Lookups by id in LanceDB (the BTREE on `id`) and in the ANN segments (records and vectors), against
collection size.

Run by hand after bench/search_bench.py has built its indexes (reads them, writes nothing there):

    python bench/lookup_bench.py --cache /tmp/cs-bench --out bench/results/lookup.json

O(k) means the time for k ids stays flat as N grows 10x.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clipsearch import open_index  # noqa: E402


def median_ms(fn, sets) -> float:
    fn(sets[0])  # warm-up
    lat = []
    for ids in sets[1:]:
        t0 = time.perf_counter()
        fn(ids)
        lat.append((time.perf_counter() - t0) * 1e3)
    return round(float(np.median(lat)), 3)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--out", type=Path, default=Path("bench/results/lookup.json"))
    args = p.parse_args(argv)
    rows = []
    for root in sorted(args.cache.glob("index-*")):
        index = open_index(root)
        table, n = index.images.table, len(index.images.table)
        ann = index.images.ann()
        rng = np.random.default_rng(0)
        for k in (10, 100):
            sets = [rng.choice(n, k, replace=False) for _ in range(args.repeats + 1)]
            rows.append({"index": root.name, "n": n, "k": k,
                         "lance_rows_ms": median_ms(table.rows, sets),
                         "lance_vectors_ms": median_ms(table.vectors_of, sets),
                         "segment_records_ms": median_ms(ann.records_of, sets),
                         "segment_vectors_ms": median_ms(ann.vectors_of, sets)})
            print(rows[-1], file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": " ".join(["python", "bench/lookup_bench.py", *sys.argv[1:]]),
                                    "rows": rows}, indent=1) + "\n")
    md = ["| index | N | k | LanceDB rows ms | LanceDB vectors ms | segment records ms | segment vectors ms |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {r['index']} | {r['n']:,} | {r['k']} | {r['lance_rows_ms']} | {r['lance_vectors_ms']} | "
           f"{r['segment_records_ms']} | {r['segment_vectors_ms']} |" for r in rows]
    args.out.with_suffix(".md").write_text("# Lookups by id\n\n`" + " ".join(["python", "bench/lookup_bench.py",
                                           *sys.argv[1:]]) + "`\n\n" + "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
