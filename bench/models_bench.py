"""CPU speed of each model preset, with random weights (no hub here): images/s and a cold query.

    python bench/models_bench.py [PRESET ...] [--threads 2] [--work DIR]

For each preset, a first process saves random weights (seeded) with the preset's config and
preprocessing as an imported model (the `clipsearch models import` layout; tokenizers from the hub
are replaced by open_clip's SimpleTokenizer at the model's context length, which changes no
tensor shape the text tower sees). A second, fresh process then measures:
- cold query: from process start (before importing torch) to the first text vector: imports,
  `load_encoder` from the imported files, tokenising and encoding one query;
- images/s: `Encoder.encode_pixels` on random uint8 images at the model's size, batches of 8
  after one warm-up batch (decoding excluded: it runs in other processes while the model encodes).
Both also in CPU seconds of the process (all its threads): on a machine shared with other work,
wall-clock figures mostly measure the load; CPU seconds much less so.
Writes bench/results/models.json and bench/results/models.md; prints the load average around each.
"""

from __future__ import annotations

import time

T0, C0 = time.perf_counter(), time.process_time()  # cold-query clocks start before the heavy imports

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

RESULTS = Path(__file__).parent / "results"
IMAGES = {"pe-core-l14": 8, "siglip2-b16": 16, "metaclip-b16": 16}  # fewer for the slow ones
DEFAULT_IMAGES, BATCH = 32, 8


def prepare(preset: str, work: Path) -> None:
    """Random weights for `preset`, saved as an imported model under `work`."""
    import open_clip
    import torch

    from clipsearch.models.bundle import CONFIG, FORMAT, MANIFEST
    from clipsearch.config import PRESETS

    arch, tag = PRESETS[preset]
    folder = work / preset
    if (folder / MANIFEST).exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = open_clip.create_model(arch, pretrained=None)
    torch.save(net.state_dict(), folder / "open_clip_pytorch_model.bin")
    model_cfg = open_clip.get_model_config(arch)
    for k in ("hf_tokenizer_name", "tokenizer_kwargs"):
        model_cfg.get("text_cfg", {}).pop(k, None)
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    pp = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if cfg.get(k)}
    (folder / CONFIG).write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": pp}))
    (folder / MANIFEST).write_text(json.dumps({"format": FORMAT, "model": arch, "pretrained": tag}))


def measure(preset: str, work: Path, threads: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from clipsearch import load_encoder
    from clipsearch.config import PRESETS

    arch, tag = PRESETS[preset]
    t = time.perf_counter()
    enc = load_encoder(arch, tag, device="cpu", models_dir=work)
    load_s = time.perf_counter() - t
    enc.encode_texts(["a dog playing in the snow"])
    cold, cold_cpu = time.perf_counter() - T0, time.process_time() - C0
    n, s = IMAGES.get(preset, DEFAULT_IMAGES), enc.preprocess.size
    px = np.random.default_rng(0).integers(0, 256, (BATCH, s, s, 3), dtype=np.uint8)
    enc.encode_pixels(px)  # warm-up
    t, c = time.perf_counter(), time.process_time()
    for _ in range(n // BATCH):
        enc.encode_pixels(px)
    done = (n // BATCH) * BATCH
    ips, ipcs = done / (time.perf_counter() - t), done / (time.process_time() - c)
    t = time.perf_counter()
    enc.encode_texts(["a red car parked by the sea"])
    warm_q = time.perf_counter() - t
    params = sum(p.numel() for p in enc._model.parameters()) / 1e6
    gflops = _image_gflops(enc._model, s)
    return {"gflops_image": gflops, "preset": preset, "model": f"{arch} / {tag}", "size_px": s, "dim": enc.dim,
            "params_m": round(params, 1), "images_per_s": round(ips, 2), "images_per_cpu_s": round(ipcs, 2),
            "cold_query_s": round(cold, 2), "cold_query_cpu_s": round(cold_cpu, 2),
            "load_s": round(load_s, 2), "warm_query_s": round(warm_q, 3), "images": n, "threads": threads}


def _image_gflops(net, size: int) -> float:
    """Forward FLOPs of the image tower for one image (torch's counter: 2 per multiply-add); load-free."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:  # grad on: its module hooks need autograd (timm towers)
        net.encode_image(torch.zeros(1, 3, size, size))
    return round(counter.get_total_flops() / 1e9, 2)


def main() -> None:
    from clipsearch.config import PRESETS

    ap = argparse.ArgumentParser()
    ap.add_argument("presets", nargs="*", default=list(PRESETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/clipsearch-models-bench"))
    ap.add_argument("--child", choices=["prepare", "measure"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child == "prepare":
        return prepare(a.presets[0], a.work)
    if a.child == "measure":
        return print(json.dumps(measure(a.presets[0], a.work, a.threads)))
    for p in a.presets:
        me = [sys.executable, __file__, p, "--threads", str(a.threads), "--work", str(a.work)]
        subprocess.run(me + ["--child", "prepare"], check=True)
        before = os.getloadavg()[0]
        out = subprocess.run(me + ["--child", "measure"], check=True, capture_output=True, text=True)
        row = json.loads(out.stdout.strip().splitlines()[-1]) | {
            "load_avg_before": round(before, 2), "load_avg_after": round(os.getloadavg()[0], 2)}
        print(json.dumps(row), flush=True)
        _write([row])  # merged with earlier rows: a failure later keeps what was measured


def _write(rows: list[dict]) -> None:
    RESULTS.mkdir(exist_ok=True)
    old = json.loads((RESULTS / "models.json").read_text()) if (RESULTS / "models.json").exists() else []
    merged = {r["preset"]: r for r in old} | {r["preset"]: r for r in rows}
    (RESULTS / "models.json").write_text(json.dumps(list(merged.values()), indent=2))
    lines = ["| preset | model | px | dim | params (M) | image GFLOPs | images/s | images/CPU-s | "
             "cold query (s) | cold query (CPU-s) | load (s) | warm query (s) | load avg |", "|---" * 13 + "|"]
    lines += [f"| {r['preset']} | {r['model']} | {r['size_px']} | {r['dim']} | {r['params_m']} | "
              f"{r.get('gflops_image', '')} | {r['images_per_s']} | {r.get('images_per_cpu_s', '')} | "
              f"{r['cold_query_s']} | {r.get('cold_query_cpu_s', '')} | {r['load_s']} | {r['warm_query_s']} | "
              f"{r['load_avg_before']}-{r['load_avg_after']} |" for r in merged.values()]
    (RESULTS / "models.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
