"""Benchmark duplicate grouping (clipsearch.find_duplicates) on synthetic vectors with planted groups.

Run by hand (not a test); 1M takes ~15 minutes on 2 cores, most of it building the data and the
index (the grouping itself is what is timed):

    python bench/dupes_bench.py --n 1000000 --work /tmp/dupes-bench --out bench/results/dupes.json

The background is the CLIP-like Gaussian mixture of ann_bench.py. Into it are planted duplicate
groups: an original and 1-4 copies at cosine U(threshold + 0.005, 0.995) to it (a resize, a
re-save, a crop as a CLIP sees them), a quarter of the groups with a byte-identical copy (same hash,
same vector), and for a fifth of the groups a look-alike at cosine U(0.80, threshold - 0.03) to the
original, which must stay out. The rows are written to a real index (LanceDB table + IVF-PQ ANN
index), and a fresh process opens it and runs `find_duplicates`: time and peak memory are that
process's. Precision and recall are PAIRWISE: over all pairs of images, a pair is predicted when
both are in one group and true when both were planted in one group; also the share of planted
groups recovered exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see ann_bench.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _near(rng, x: np.ndarray, cos: np.ndarray) -> np.ndarray:
    """Unit vectors at exactly cosine `cos` (k,) to the unit vector x, in random directions."""
    e = rng.standard_normal((len(cos), len(x)), dtype=np.float32)
    e -= np.outer(e @ x, x)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    return (cos[:, None] * x + np.sqrt(1 - cos[:, None] ** 2) * e).astype(np.float32)


def make(n: int, threshold: float, seed: int = 0):
    """xb (n, 512), truth (n,) planted group or -1, hashes (n,) str, lookalike (n,) bool."""
    from ann_bench import make_data

    rng = np.random.default_rng(seed)
    n_groups = n // 50  # ~5 % of the images are in a planted group
    copies = rng.integers(1, 5, n_groups)
    n_base = n - int(copies.sum()) - n_groups // 5
    base, _ = make_data(n_base, 0, seed=seed)
    originals = rng.choice(n_base, n_groups, replace=False)
    extra, truth_extra, same_hash, alike = [], [], [], []
    for g, (o, k) in enumerate(zip(originals, copies)):
        cos = rng.uniform(threshold + 0.005, 0.995, k)
        exact = rng.random() < 0.25
        if exact:
            cos[0] = 1.0
        extra.append(_near(rng, base[o], cos) if not exact else np.vstack([base[o], _near(rng, base[o], cos[1:])]))
        truth_extra += [g] * k
        same_hash += [o if exact and i == 0 else -1 for i in range(k)]
        alike += [False] * k
        if g < n_groups // 5:
            extra.append(_near(rng, base[o], rng.uniform(0.80, threshold - 0.03, 1)))
            truth_extra.append(-1), same_hash.append(-1), alike.append(True)
    xb = np.vstack([base, *extra])
    truth = np.full(len(xb), -1, np.int64)
    truth[originals] = np.arange(n_groups)
    truth[n_base:] = truth_extra
    hashes = np.array([f"{i:032x}" for i in range(len(xb))])
    src = np.array(same_hash)
    hashes[n_base:][src >= 0] = hashes[src[src >= 0]]
    return xb, truth, hashes, np.r_[np.zeros(n_base, bool), alike]


def build(work: Path, n: int, threshold: float) -> None:
    """Write the planted collection to an index at work/index, truth beside it."""
    from clipsearch import ModelIdentity, create_index
    from clipsearch.store.records import Row

    t0 = time.time()
    xb, truth, hashes, alike = make(n, threshold)
    log(f"data: {len(xb)} vectors, {int((truth >= 0).sum())} in {truth.max() + 1} planted groups, "
        f"{int(alike.sum())} look-alikes ({time.time() - t0:.0f} s)")
    np.save(work / "truth.npy", truth)
    index = create_index(work / "index", ModelIdentity("synthetic", "random", xb.shape[1]))
    rng = np.random.default_rng(1)
    side = rng.integers(500, 4000, len(xb))
    for s in range(0, len(xb), 100_000):
        e = min(s + 100_000, len(xb))
        rows = [Row(i, f"/photos/{i:07d}.jpg", int(side[i]) * 300, 1.7e9 + i, int(side[i]), int(side[i]), hashes[i])
                for i in range(s, e)]
        index.images.add(rows, xb[s:e])
    del xb
    t1 = time.time()
    index.images.sync()  # the ANN index built from the stored vectors and saved, as `index` leaves it
    log(f"index written; ANN {index.images.ann().spec.describe()} built in {time.time() - t1:.0f} s")


def group(work: Path, threshold: float) -> dict:
    """In this (fresh) process: open the index, find the groups; time, peak memory, groups."""
    from clipsearch import find_duplicates, open_index

    t0 = time.time()
    groups = find_duplicates(open_index(work / "index"), threshold)
    seconds = time.time() - t0
    use = resource.getrusage(resource.RUSAGE_SELF)
    peak, cpu = _peak_rss(), use.ru_utime + use.ru_stime
    np.save(work / "groups.npy", np.array([[m.id, g] for g, grp in enumerate(groups) for m in grp.members]))
    return {"seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "peak_rss_bytes": peak,
            "groups": len(groups)}


def _peak_rss() -> int:
    """This process's peak resident memory (VmHWM). Not ru_maxrss: Linux carries a forked child's
    copy of the parent's pages into it across exec, which reported the parent's 4 GB as ours."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def score(work: Path) -> dict:
    """Pairwise precision/recall and exactly recovered groups, from truth.npy and groups.npy."""
    truth = np.load(work / "truth.npy")
    pred = np.full(len(truth), -1, np.int64)
    found = np.load(work / "groups.npy")
    if len(found):
        pred[found[:, 0]] = found[:, 1]
    pairs = lambda c: int((c * (c - 1) // 2).sum())  # noqa: E731
    both = (pred >= 0) & (truth >= 0)
    _, joint = np.unique(pred[both] * (truth.max() + 1) + truth[both], return_counts=True)
    tp, n_pred, n_true = pairs(joint), pairs(np.bincount(pred[pred >= 0])), pairs(np.bincount(truth[truth >= 0]))
    exact = 0
    if len(found):
        order = np.lexsort((np.arange(len(truth)), truth))
        t_sorted = truth[order][truth[order] >= 0]
        ids_sorted = order[truth[order] >= 0]
        for g, members in zip(*_split(t_sorted, ids_sorted)):
            p = pred[members]
            exact += bool(p[0] >= 0 and (p == p[0]).all() and (pred == p[0]).sum() == len(members))
    return {"pairs_predicted": n_pred, "pairs_true": n_true, "pairs_correct": tp,
            "precision": round(tp / max(n_pred, 1), 4), "recall": round(tp / max(n_true, 1), 4),
            "groups_planted": int(truth.max() + 1), "groups_exactly_recovered": exact}


def _split(keys, values):
    cut = np.flatnonzero(np.diff(keys)) + 1
    return np.split(keys, cut), np.split(values, cut)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--threshold", type=float, default=None, help="default: Settings().duplicate_threshold")
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (the index is reused if there)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--group-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    from clipsearch import Settings

    threshold = a.threshold or Settings().duplicate_threshold
    if a.group_only:
        print(json.dumps(group(a.work, threshold)))
        return
    a.work.mkdir(parents=True, exist_ok=True)
    if not (a.work / "index").exists():
        build(a.work, a.n, threshold)
    log("grouping in a fresh process")
    child = subprocess.run([sys.executable, __file__, "--work", str(a.work), "--threshold", str(threshold),
                            "--group-only"], capture_output=True, text=True, check=True)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result |= score(a.work) | {"n": a.n, "threshold": threshold, "load_avg": os.getloadavg(),
                               "cpus": os.cpu_count(), "machine": platform.machine()}
    log(json.dumps(result))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2) + "\n")
        a.out.with_suffix(".md").write_text(_markdown(result, a))
    print(_markdown(result, a))


def _markdown(r: dict, a) -> str:
    return (f"# Duplicate grouping benchmark\n\n`python bench/dupes_bench.py --n {a.n} --work {a.work}"
            f"{' --out ' + str(a.out) if a.out else ''}`\n\n"
            f"{r['cpus']} CPUs ({r['machine']}), shared machine, 1-min load average at the end "
            f"{r['load_avg'][0]:.1f}. Time and peak RSS: a fresh process opening the index and running "
            "`find_duplicates` (reading the stored vectors and the ANN file included); CPU seconds: its user + "
            "system time (the wall time on a shared machine includes waiting for the CPU). Precision and "
            "recall are pairwise.\n\n"
            "| N | threshold | seconds | CPU seconds | peak RSS | groups found | planted | exactly recovered | "
            "precision | recall |\n|---|---|---|---|---|---|---|---|---|---|\n"
            f"| {r['n']:,} | {r['threshold']} | {r['seconds']} | {r['cpu_seconds']} | "
            f"{r['peak_rss_bytes'] / 2**30:.2f} GiB | "
            f"{r['groups']:,} | {r['groups_planted']:,} | {r['groups_exactly_recovered']:,} | "
            f"{r['precision']} | {r['recall']} |\n")


if __name__ == "__main__":
    main()
