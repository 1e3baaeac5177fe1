"""Recall@10 against probes on clustered vectors, for the probe cap at 10M (spec.NPROBE_CODES_MAX).

Run by hand (not a test); ~12 minutes on 2 cores:

    python bench/nprobe_bench.py

1M of ann_bench's clustered vectors (3,000 uneven clusters) under IVF2048 (what 1M gets) and
IVF8192 (what 10M gets: each probe there visits 10x the vectors, so this is the harder case), with
the codes indexes were built with before (PQ64, 8 bits) and now (PQ128x4fs: fast-scan, the same 64
bytes), every query's 1,024 best candidates re-ranked exactly, as a collection does. The bursty vectors of
scale_bench.py give the same recall at 16-64 probes; these show what probes buy where clusters
are wide. Results: bench/results/nprobe.{json,md}.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before faiss loads: see ann_bench.py
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))
from ann_bench import make_data, recall_at  # noqa: E402

N, NQ, PROBES = 1_000_000, 200, (8, 16, 32, 64, 128)
LISTS = ((2048, 81_920), (8192, 131_072))  # (nlist, training sample): 40 and 16 a list
CODES = ((64, 8), (128, 4))  # (sub-quantizers, bits): PQ64, PQ128x4fs


def main() -> None:
    from clipsearch.ann.index import AnnIndex
    from clipsearch.ann.spec import AnnSpec

    xb, xq = make_data(N, NQ)
    ids = np.arange(N, dtype=np.int64)
    gt = np.argsort(-(xq @ xb.T), axis=1)[:, :10]
    rows = []
    for (nlist, train), (m, nbits) in [(lt, c) for lt in LISTS for c in CODES]:
        t = time.perf_counter()
        spec = AnnSpec("ivfpq", xb.shape[1], nlist, m, nbits, train, 64)
        index = AnnIndex.build(xb, ids, spec)
        built = time.perf_counter() - t
        for nprobe in PROBES:
            _, I = index.search_exact(xq, 10, nprobe=nprobe, lookup=lambda i: xb[i])
            rows.append({"nlist": nlist, "codes": spec.factory().split(",")[1], "nprobe": nprobe,
                         "visited": nprobe * N // nlist, "recall@10": round(recall_at(I, gt), 4),
                         "build_s": round(built, 1)})
            print(rows[-1], flush=True)
    out = BENCH / "results" / "nprobe.json"
    out.write_text(json.dumps({"n": N, "nq": NQ, "rows": rows}, indent=1) + "\n")
    md = ["| lists | codes | probes | vectors visited | recall@10 |", "|---|---|---|---|---|"]
    md += [f"| {r['nlist']} | {r['codes']} | {r['nprobe']} | {r['visited']:,} | {r['recall@10']:.4f} |" for r in rows]
    out.with_suffix(".md").write_text("# Recall against probes, 1M clustered vectors\n\n`python bench/nprobe_bench.py`"
                                      "\n\n" + "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
