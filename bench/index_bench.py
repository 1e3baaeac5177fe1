"""Benchmark `clipsearch index` against a naive loop and against the encoder alone, in one run.

Run by hand (not a test). On this 2-core CPU, ViT-B-32 and ViT-B-16, about 15 minutes:

    python bench/index_bench.py --models ViT-B-32 ViT-B-16 --sizes 32 96 --repeats 2 \
        --out bench/results/cpu.json

On one GPU (ViT-B-32 on ~1-3 MP JPEGs; the machine's cores decode):

    python bench/index_bench.py --device cuda --models ViT-B-32 --mp 1 3 --sizes 2000 10000 \
        --naive-sizes 500 1500 --repeats 2 --methods encoder naive index --out bench/results/gpu.json

(about 8 minutes on 16 cores + one H100, 3 of them making the 10,000 photos; the rates of
`index` and `naive` come from different sizes but are both marginal.) The GPU fidelity check:
`python -m pytest -m gpu tests/test_fidelity.py`.

Photos: seeded, photo-like JPEGs (smooth sky/ground gradients, textured blobs, sensor grain,
quality 85-95, 4:2:0), megapixels log-uniform in `--mp` (0.3-12 by default), cached under
`--photos`. Every method runs in a fresh process on the first n1 and on n2 files; the rate reported
is the marginal one, (n2 - n1) / (t2 - t1), so interpreter, import and model start-up cancel.

Methods, all with the same architecture and the same seeded random weights (`--pretrained random`):
- encoder: `Encoder.encode_pixels` on ready uint8 pixels, batch after batch: the ceiling.
- naive:   one process; PIL open, open_clip's own preprocess, encode batch by batch.
- index:   `clipsearch index DIR --index TMP --model M --pretrained random --quiet` (the CLI, run
           in-process in the child so the encoder's busy time can be read: busy = time inside
           `encode_pixels` / wall, marginal too).
- fast:    the same with `--fast-encoder`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ASPECTS = (4 / 3, 3 / 2, 16 / 9, 1.0, 3 / 4, 2 / 3)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- photos ---------------------------------------------------------------------------------------


def make_photos(folder: Path, n: int, mp: tuple[float, float], seed: int = 0) -> list[Path]:
    """n seeded photo-like JPEGs in `folder` (reused when already there), made on all cores; sorted paths."""
    from concurrent.futures import ProcessPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    specs = [_photo_spec(rng, mp) for _ in range(n)]  # drawn in order: the same photos on any machine
    paths = [folder / f"photo_{i:05d}_{w}x{h}.jpg" for i, (w, h, _, _) in enumerate(specs)]
    todo = [(p, spec, seed) for p, spec in zip(paths, specs) if not p.exists()]
    if todo:
        log(f"making {len(todo)} photos in {folder}")
        with ProcessPoolExecutor() as pool:
            list(pool.map(_write_photo, todo, chunksize=8))
    return paths


def _write_photo(job) -> None:
    from PIL import Image

    path, (w, h, quality, sub_seed), seed = job
    grain = np.random.default_rng(seed).normal(0, 5, (512, 512, 3)).astype(np.int16)
    img = _photo(np.random.default_rng(sub_seed), w, h, grain)
    Image.fromarray(img).save(path, quality=quality, subsampling="4:2:0")


def _photo_spec(rng, mp):
    pixels = math.exp(rng.uniform(math.log(mp[0]), math.log(mp[1]))) * 1e6
    aspect = ASPECTS[rng.integers(len(ASPECTS))]
    w = int(math.sqrt(pixels * aspect))
    return w, int(pixels / w), int(rng.integers(85, 96)), int(rng.integers(2**31))


def _photo(rng, w: int, h: int, grain: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8: low-frequency scene + mid-frequency texture + blobs + tiled sensor grain."""
    from PIL import Image, ImageDraw, ImageFilter

    scene = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    texture = Image.fromarray(rng.integers(0, 256, (h // 24 + 2, w // 24 + 2), dtype=np.uint8))
    texture = texture.resize((w, h), Image.BILINEAR)
    draw = ImageDraw.Draw(scene)
    for _ in range(int(rng.integers(3, 12))):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.03, 0.3) * min(w, h)
        draw.ellipse((x - r, y - r * rng.uniform(0.4, 1.6), x + r, y + r),
                     fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    scene = scene.filter(ImageFilter.GaussianBlur(max(1, min(w, h) // 400)))
    a = np.asarray(scene, dtype=np.int16) + (np.asarray(texture, dtype=np.int16)[..., None] - 128) // 4
    gy, gx = int(rng.integers(0, 512)), int(rng.integers(0, 512))
    reps = (h // 512 + 2, w // 512 + 2, 1)
    a += np.tile(grain, reps)[gy:gy + h, gx:gx + w]
    return np.clip(a, 0, 255).astype(np.uint8)


def subset(paths: list[Path], n: int, base: Path) -> Path:
    """A folder holding hard links to the first n photos."""
    folder = base / f"first_{n}"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in set(folder.iterdir()) - {folder / p.name for p in paths[:n]}:
        stale.unlink()
    for p in paths[:n]:
        if not (folder / p.name).exists():
            os.link(p, folder / p.name)
    return folder


# --- the methods, each run in a fresh child process -----------------------------------------------


def child_naive(folder: Path, a) -> dict:
    """PIL open, open_clip's preprocess, encode: one process, batch by batch."""
    import open_clip
    import torch
    from PIL import Image

    from clipsearch.models.encoder import default_batch_size

    torch.manual_seed(0)  # the same weights as `--pretrained random`
    net, _, preprocess = open_clip.create_model_and_transforms(a.model, pretrained=None, device=a.device)
    net.eval()
    paths, bs = sorted(folder.glob("*.jpg")), a.batch_size or default_batch_size(a.device)
    cuda = a.device.startswith("cuda")
    with torch.inference_mode(), torch.autocast("cuda", enabled=cuda, dtype=torch.bfloat16):
        for i in range(0, len(paths), bs):
            x = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths[i:i + bs]])
            y = torch.nn.functional.normalize(net.encode_image(x.to(a.device)).float(), dim=-1)
            y.cpu().numpy()
    return {}


def child_encoder(folder: Path, a) -> dict:
    """encode_pixels on ready uint8 pixels: as many images as the folder holds, after a warm-up."""
    from clipsearch import load_encoder

    enc = load_encoder(a.model, "random", a.device, a.batch_size, fast=a.method == "fast-encoder")
    n = len(list(folder.glob("*.jpg")))
    px = np.random.default_rng(0).integers(0, 256, (enc.batch_size, enc.preprocess.size,
                                                    enc.preprocess.size, 3), dtype=np.uint8)
    enc.encode_pixels(px)
    start, done = time.perf_counter(), 0
    while done < n:
        enc.encode_pixels(px)
        done += len(px)
    return {"images": done, "encode_s": time.perf_counter() - start}


def child_index(folder: Path, a) -> dict:
    """`clipsearch index` through its click entry point, timing the encoder's busy seconds."""
    import clipsearch
    from clipsearch.cli import main

    busy = [0.0]
    load = clipsearch.load_encoder

    def timed_load(*args, **kw):
        enc = load(*args, **kw)
        encode = enc.encode_pixels

        def timed(px):
            start = time.perf_counter()
            try:
                return encode(px)
            finally:
                busy[0] += time.perf_counter() - start

        enc.encode_pixels = timed
        return enc

    from clipsearch import indexer

    run, summary = indexer.run, {}

    def recorded_run(*args, **kw):
        summary["s"] = run(*args, **kw)
        return summary["s"]

    clipsearch.load_encoder, indexer.run = timed_load, recorded_run  # the CLI looks both up at call time
    extra = ["--fast-encoder"] if a.method == "fast" else []
    extra += ["--workers", str(a.workers)] if a.workers is not None else []
    extra += ["--batch-size", str(a.batch_size)] if a.batch_size else []
    with tempfile.TemporaryDirectory() as tmp:
        main(["index", str(folder), "--index", f"{tmp}/idx", "--model", a.model, "--pretrained",
              "random", "--device", a.device, "--quiet", *extra], standalone_mode=False)
    return {"busy_s": busy[0], "run_s": summary["s"].seconds, "indexed": summary["s"].indexed}


CHILDREN = {"naive": child_naive, "encoder": child_encoder, "fast-encoder": child_encoder,
            "index": child_index, "fast": child_index}


# --- the parent: runs children, computes marginal rates, prints the table --------------------------


def run_child(method: str, folder: Path, a) -> dict:
    """Run one method on `folder` in a fresh process; its result plus the process's wall seconds."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, __file__, "--child", method, "--folder", str(folder), "--result", out.name,
               "--model", a.model, "--device", a.device, "--batch-size", str(a.batch_size)]
        cmd += ["--workers", str(a.workers)] if a.workers is not None else []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        load = os.getloadavg()[0]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        return {**json.loads(Path(out.name).read_text() or "{}"), "wall_s": wall, "load": load}


def measure(method: str, small: Path, large: Path, n1: int, n2: int, a) -> dict:
    """One marginal measurement: images/s between n1 and n2 files (and encoder busy fraction)."""
    if method in ("encoder", "fast-encoder"):
        r = run_child(method, large, a)
        return {"rate": r["images"] / r["encode_s"], "load": r["load"]}
    r1, r2 = run_child(method, small, a), run_child(method, large, a)
    dt = r2["wall_s"] - r1["wall_s"]
    out = {"rate": (n2 - n1) / dt, "busy": None, "load": max(r1["load"], r2["load"]),
           "wall_s": [r1["wall_s"], r2["wall_s"]]}
    if "busy_s" in r1:  # inside `add_paths` only: no interpreter, import or model start-up
        run_dt = r2["run_s"] - r1["run_s"]
        out.update(busy=(r2["busy_s"] - r1["busy_s"]) / run_dt, run_rate=(n2 - n1) / run_dt,
                   indexed=[r1["indexed"], r2["indexed"]])
    return out


def bench_model(model: str, a) -> list[dict]:
    sizes = {m: a.naive_sizes if m == "naive" and a.naive_sizes else a.sizes for m in a.methods}
    photos = make_photos(Path(a.photos), max(n for pair in sizes.values() for n in pair), tuple(a.mp), a.seed)
    folders = {n: subset(photos, n, Path(a.photos)) for pair in sizes.values() for n in pair}
    a.model = model
    runs = {m: [] for m in a.methods}
    for rep in range(a.repeats):  # repeats outermost: a noisy spell hits every method alike
        for m in a.methods:
            n1, n2 = sizes[m]
            runs[m].append(measure(m, folders[n1], folders[n2], n1, n2, a))
            log(f"{model} {m} #{rep + 1}: {runs[m][-1]['rate']:.1f} img/s (load {runs[m][-1]['load']:.1f})")
    return [{"model": model, "method": m, "runs": rs} for m, rs in runs.items()]


def table(rows: list[dict]) -> str:
    """Markdown: median marginal rate (min-max), x naive, % of its own encoder's rate, busy fraction."""
    lines = ["| model | method | img/s, median (min-max) | x naive | % of encoder | in-run img/s | encoder busy |",
             "|---|---|---|---|---|---|---|"]
    med = {(r["model"], r["method"]): statistics.median(x["rate"] for x in r["runs"]) for r in rows}
    ceiling = {"fast": "fast-encoder", "fast-encoder": "fast-encoder"}  # the rest: the fp32 encoder
    for r in rows:
        rates, m = [x["rate"] for x in r["runs"]], med[(r["model"], r["method"])]
        naive = med.get((r["model"], "naive"))
        enc = med.get((r["model"], ceiling.get(r["method"], "encoder")))
        cells = [r["model"], r["method"], f"{m:.1f} ({min(rates):.1f}-{max(rates):.1f})",
                 f"{m / naive:.2f}x" if naive else "-", f"{100 * m / enc:.0f} %" if enc else "-",
                 _median(r["runs"], "run_rate", "{:.1f}"), _median(r["runs"], "busy", "{:.2f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _median(runs: list[dict], key: str, fmt: str) -> str:
    xs = [x[key] for x in runs if x.get(key) is not None]
    return fmt.format(statistics.median(xs)) if xs else "-"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["ViT-B-32"])
    p.add_argument("--methods", nargs="+", default=["encoder", "naive", "index", "fast-encoder", "fast"],
                   choices=sorted(CHILDREN))
    p.add_argument("--sizes", nargs=2, type=int, default=[32, 96], help="n1 n2: the two collection sizes")
    p.add_argument("--naive-sizes", nargs=2, type=int, default=None,
                   help="n1 n2 for the naive loop, when it is too slow for --sizes [default: --sizes]")
    p.add_argument("--mp", nargs=2, type=float, default=[0.3, 12.0], help="megapixel range of the photos")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=0, help="0: the encoder's default for the device")
    p.add_argument("--workers", type=int, default=None, help="decode processes [default: clipsearch's]")
    p.add_argument("--photos", default=None, help="folder for the generated photos [default: a cache dir]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the runs and the table as JSON here")
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        a.method = a.child
        Path(a.result).write_text(json.dumps(CHILDREN[a.child](Path(a.folder), a)))
        return
    a.photos = a.photos or str(Path(tempfile.gettempdir()) / f"clipsearch-bench-photos-{a.seed}-{a.mp[0]}-{a.mp[1]}")
    rows = [row for model in a.models for row in bench_model(model, a)]
    print(table(rows))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "device": a.device},
            "args": {k: v for k, v in vars(a).items() if k not in ("child", "folder", "result", "model")},
            "rows": rows, "table": table(rows)}, indent=2))


if __name__ == "__main__":
    main()
