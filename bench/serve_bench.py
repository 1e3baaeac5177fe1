"""`clipsearch serve` under load: q/s and p50/p99 latency at 1, 8 and 32 concurrent clients, for text
and embedding queries, with the server's memory.

Run by hand (not a test):

    python bench/serve_bench.py --work /tmp/cs-serve --n 1000000 --out bench/results/serve.json

Sets up once under --work (reused by later runs): ViT-B-32 with seeded random weights saved to a
local file (no hub; the compute of the real one), its text tower exported, and an index of --n
synthetic 512-d unit vectors (bench/ann_bench.py's Gaussian mixture) added through
`index.images.add`, its ANN index the default for that size. Then starts `clipsearch serve` in a
child process (texts through the exported text tower on ONNX Runtime, as `clipsearch query` runs
them) and drives it from this process with C concurrent clients (asyncio, one keep-alive httpx
connection each) for --seconds per row. Text queries never repeat (each is a new phrase: the text
cache can't help); embedding queries are random unit vectors. The server's RSS comes from /proc.
The clients share the machine's cores with the server: on 2 cores they take a share of them.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))
from ann_bench import log, make_data  # noqa: E402

DIM = 512
ADJ = ["red", "old", "small", "happy", "wet", "dark", "bright", "wooden", "broken", "shiny", "tall", "striped",
       "fluffy", "rusty", "empty", "crowded", "quiet", "frozen", "golden", "tiny"]
NOUNS = ["dog", "car", "house", "tree", "bicycle", "boat", "cat", "chair", "mountain", "bridge", "window", "cake",
         "guitar", "train", "horse", "lamp", "flower", "book", "street", "beach", "church", "kite", "robot", "clock",
         "shoe", "bird", "table", "river", "tower", "umbrella"]
PLACES = ["in the snow", "at night", "on a beach", "in a forest", "in the rain", "at a market", "under a bridge",
          "near a lake", "in a kitchen", "on a roof", "in the desert", "at sunset", "in a garden", "on a street",
          "in a museum", "by the sea", "in fog", "on a table", "in a field", "at a party"]


def setup(work: Path, n: int) -> Path:
    """The index directory for n vectors under `work` (weights, tower and index made if missing)."""
    from clipsearch import create_index, load_encoder
    from clipsearch.models.texttower import export
    from clipsearch.store.records import Row

    work.mkdir(parents=True, exist_ok=True)
    weights, root = work / "vitb32-random.safetensors", work / f"index-{n}"
    if not weights.exists():
        code = ("import torch, open_clip; from safetensors.torch import save_file; torch.manual_seed(0); "
                "m = open_clip.create_model('ViT-B-32', pretrained=None); "
                f"save_file({{k: v.contiguous() for k, v in m.state_dict().items()}}, {str(weights)!r})")
        subprocess.run([sys.executable, "-c", code], check=True)
    if (root / "manifest.json").exists() and (root / "images.faiss").exists():
        return root
    enc = load_encoder("ViT-B-32", str(weights), "cpu")
    export(enc, work / "cache")
    log(f"building an index of {n} synthetic vectors (once)")
    xb, _ = make_data(n, 0, DIM)
    index = create_index(root, enc.identity)
    with index.writing():
        for s in range(0, n, 50_000):
            e = min(s + 50_000, n)
            index.images.add([Row(-1, f"/photos/{i // 1000:04d}/IMG_{i:07d}.jpg", 1, 0.0, 640, 480)
                              for i in range(s, e)], np.ascontiguousarray(xb[s:e]))
        del xb
        log(f"syncing: {index.images.sync() or 'ANN index saved'}")
    return root


def start_server(root: Path, cache: Path) -> tuple[subprocess.Popen, str]:
    env = os.environ | {"CLIPSEARCH_CACHE": str(cache)}
    proc = subprocess.Popen([sys.executable, "-m", "clipsearch.cli", "serve", "--index", str(root), "--port", "0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    for line in proc.stderr:
        sys.stderr.write(line)
        if line.startswith("clipsearch serve: http://"):
            return proc, line.split()[2]
    raise RuntimeError("the server did not start")


def memory_mb(pid: int) -> dict:
    """RSS now and its peak (VmHWM) of process `pid`, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: round(int(fields[v].split()[0]) / 1024) for k, v in (("rss_mb", "VmRSS"), ("peak_mb", "VmHWM"))}


def bodies(kind: str, seed: int):
    """An endless stream of request bodies: new phrases, or random unit vectors."""
    if kind == "text":
        phrases = [f"a {a} {n} {p}" for a, n, p in itertools.product(ADJ, NOUNS, PLACES)]
        np.random.default_rng(seed).shuffle(phrases)
        for i in itertools.count():
            yield {"query": phrases[i % len(phrases)] + ("" if i < len(phrases) else f" {i}"), "k": 10}
    rng = np.random.default_rng(seed)
    while True:
        v = rng.standard_normal(DIM).astype(np.float32)
        yield {"embedding": (v / np.linalg.norm(v)).round(6).tolist(), "embedding_kind": "text", "k": 10}


async def drive(url: str, stream, clients: int, seconds: float) -> dict:
    """`clients` loops posting /search for `seconds`: q/s, p50/p99 ms, errors."""
    import httpx

    lat, errors, stop = [], 0, time.monotonic() + seconds

    async def client():
        nonlocal errors
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                r = await http.post("/search", json=next(stream))
                lat.append((time.perf_counter() - t0) * 1e3)
                errors += r.status_code != 200

    t0 = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.monotonic() - t0
    return {"requests": len(lat), "qps": round(len(lat) / wall, 1), "p50_ms": round(float(np.median(lat)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1), "errors": errors}


def markdown(meta: dict, rows: list[dict]) -> str:
    out = [f"# clipsearch serve under load ({meta['n']:,} images, {meta['ann']})", "",
           f"`{meta['command']}`", "",
           f"{meta['machine']}, clients and server on the same cores; load average before the run "
           f"{meta['load_before']}. Server RSS after loading: {meta['rss_loaded_mb']} MB. {meta.get('note', '')}", "",
           "| queries | clients | q/s | p50 ms | p99 ms | errors | x 1 client | server RSS MB (peak) | load |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['kind']} | {r['clients']} | {r['qps']} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} | "
                   f"{r['speedup']:.2f} | {r['rss_mb']} ({r['peak_mb']}) | {r['load']} |")
    return "\n".join(out) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--kinds", nargs="+", default=["text", "embedding"])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--note", default="", help="a sentence for the report (e.g. why this size)")
    p.add_argument("--out", type=Path, default=REPO / "bench/results/serve.json")
    args = p.parse_args(argv)
    root = setup(args.work, args.n)
    load_before = [round(x, 1) for x in os.getloadavg()]
    proc, url = start_server(root, args.work / "cache")
    try:
        import httpx

        info = httpx.get(f"{url}/info", timeout=120).json()
        meta = {"n": info["images"], "ann": info["ann"], "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "command": "python bench/serve_bench.py " + " ".join(argv or sys.argv[1:]),
                "load_before": load_before, "rss_loaded_mb": memory_mb(proc.pid)["rss_mb"], "note": args.note}
        rows = []
        for kind in args.kinds:
            stream = bodies(kind, seed=len(rows))
            asyncio.run(drive(url, stream, 2, 3.0))  # warm-up: first runs of each code path
            for c in args.clients:
                r = {"kind": kind, "clients": c, **asyncio.run(drive(url, stream, c, args.seconds)),
                     **memory_mb(proc.pid), "load": round(os.getloadavg()[0], 1)}
                r["speedup"] = r["qps"] / next((x["qps"] for x in rows if x["kind"] == kind and x["clients"] == 1),
                                               r["qps"])
                rows.append(r)
                log(f"{kind} x{c}: {r}")
    finally:
        proc.terminate()
        proc.wait()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(meta, rows))
    print(markdown(meta, rows))


if __name__ == "__main__":
    main()
