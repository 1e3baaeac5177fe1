"""Cold `clipsearch query` wall time and peak memory, beside `python -c "import torch, open_clip"`.

Run by hand (not a test):

    python bench/cold_query.py --work /tmp/cs-cold --repeats 5 --before-commit b2fe68c

Sets up once under --work (reused by later runs): ViT-B-32 with seeded random weights saved to a
local file (no hub), 100 photo-like JPEGs, an index of them and the exported text tower. Then, in
rounds so that machine load hits every command alike, each in a fresh process:
- `import torch, open_clip` (the floor of any torch query path);
- `clipsearch query "a dog playing music"`: this checkout (text tower on ONNX Runtime, rows from
  the snapshot, no torch, no LanceDB);
- the same with no exported tower (the open_clip model is loaded);
- with --before-commit: the same query with the code of that commit (`git archive`).
Wall time and peak RSS come from os.wait4 on each child. Medians go to bench/results/cold_query.*.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUERY = "a dog playing music"


def setup(work: Path) -> dict:
    """Paths of the weights, the index and the tower cache under `work`, made if missing."""
    work.mkdir(parents=True, exist_ok=True)
    photos, index, cache = work / "photos", work / "idx", work / "cache"
    make_weights(work)
    if not photos.exists():
        import numpy as np
        from PIL import Image

        photos.mkdir()
        rng = np.random.default_rng(0)
        for i in range(100):
            Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(photos / f"img{i:03d}.jpg")
    build(work, index, os.environ | {"CLIPSEARCH_CACHE": str(cache)})
    return {"index": index, "cache": cache, "empty_cache": work / "no-cache"}


def make_weights(work: Path) -> Path:
    """ViT-B-32 (512-d) with seeded random weights, saved once to a local file: no model hub."""
    weights = work / "vitb32-random.safetensors"
    if not weights.exists():
        code = ("import torch, open_clip; from safetensors.torch import save_file; torch.manual_seed(0); "
                "m = open_clip.create_model('ViT-B-32', pretrained=None); "
                f"save_file({{k: v.contiguous() for k, v in m.state_dict().items()}}, {str(weights)!r})")
        subprocess.run([sys.executable, "-c", code], check=True)
    return weights


def build(work: Path, index: Path, env: dict) -> None:
    """`clipsearch index` of the photos into `index` with the code `env` selects (run from `work`,
    so that `python -m` doesn't pick up a checkout in the current directory)."""
    subprocess.run([sys.executable, "-m", "clipsearch.cli", "index", str(work / "photos"), "--index", str(index),
                    "--model", "ViT-B-32", "--pretrained", str(work / "vitb32-random.safetensors"), "--quiet"],
                   check=True, env=env, cwd=work)


def before_tree(work: Path, commit: str) -> Path:
    """The code of `commit`, unpacked once (its clipsearch package runs via PYTHONPATH)."""
    tree = work / f"before-{commit}"
    if not tree.exists():
        tree.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        # Its outer layers install as clipsearch.indexer / clipsearch.app; the query needs neither.
    return tree


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall s, peak RSS MB) of one child process."""
    return usage(cmd, env)[:2]


def usage(cmd: list[str], env: dict) -> tuple[float, float, float]:
    """(wall s, peak RSS MiB, CPU s: user + system) of one child process, run in env["BENCH_CWD"]."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=env["BENCH_CWD"])
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd} failed: {p.stderr.read().decode()[-2000:]}")
    return wall, ru.ru_maxrss / 1024, ru.ru_utime + ru.ru_stime


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--before-commit", help="also time the query with this commit's code")
    p.add_argument("--no-fallback", action="store_true", help="skip the query without an exported tower")
    p.add_argument("--out", type=Path, default=REPO / "bench/results/cold_query.json")
    args = p.parse_args(argv)
    s = setup(args.work)
    base = os.environ | {"CLIPSEARCH_CACHE": str(s["cache"]), "BENCH_CWD": str(args.work)}
    query = ["-m", "clipsearch.cli", "query", QUERY, "--index", str(s["index"]), "-k", "10"]
    cases = {
        "python -c 'import torch, open_clip'": ([sys.executable, "-c", "import torch, open_clip"], base),
        "query (this checkout)": ([sys.executable, *query], base),
    }
    if not args.no_fallback:
        cases["query, no exported tower"] = ([sys.executable, *query], base | {"CLIPSEARCH_CACHE": str(s["empty_cache"])})
    if args.before_commit:
        env = base | {"PYTHONPATH": str(before_tree(args.work, args.before_commit))}
        old = args.work / f"idx-{args.before_commit}"  # its own index: a newer schema would be refused
        if not (old / "manifest.json").exists():
            build(args.work, old, env)
        old_query = [q if q != str(s["index"]) else str(old) for q in query]
        cases[f"query ({args.before_commit}, before)"] = ([sys.executable, *old_query], env)
    runs = {name: [] for name in cases}
    loads = []
    for r in range(args.repeats):
        for name, (cmd, env) in cases.items():
            runs[name].append(timed(cmd, env))
            print(f"round {r + 1}: {name}: {runs[name][-1][0]:.2f} s, {runs[name][-1][1]:.0f} MB", file=sys.stderr)
        loads.append(os.getloadavg()[0])
    write(args, runs, loads)


def write(args, runs: dict, loads: list[float]) -> None:
    ref = statistics.median(w for w, _ in runs["python -c 'import torch, open_clip'"])
    rows = [{"case": name, "median_s": round(statistics.median(w for w, _ in rs), 2),
             "min_s": round(min(w for w, _ in rs), 2), "peak_rss_mb": round(max(m for _, m in rs)),
             "vs_torch_import": round(statistics.median(w for w, _ in rs) / ref, 3)} for name, rs in runs.items()]
    meta = {"command": " ".join(["python", "bench/cold_query.py", *(sys.argv[1:])]), "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(), "repeats": args.repeats,
            "load_avg_1min": [round(x, 1) for x in loads]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    md = ["| case | median s | min s | peak RSS MB | median / torch import |", "|---|---|---|---|---|"]
    md += [f"| {r['case']} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['peak_rss_mb']} | {r['vs_torch_import']:.2f} |"
           for r in rows]
    text = (f"# Cold query\n\n`{meta['command']}`\n\n{meta['cpus']} CPUs, ViT-B-32 (random weights from a local "
            f"file), 100 images, k=10, {args.repeats} rounds; 1-min load average {meta['load_avg_1min']} "
            "(shared machine: compare rows by their ratio to the torch import of the same rounds).\n\n"
            + "\n".join(md) + "\n")
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
