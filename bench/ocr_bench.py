"""Benchmark the words-in-pictures pass (`clipsearch ocr`) against a plain default `RapidOCR()` loop.

Run by hand (not a test). On this 2-core CPU, 40 photos of 1-3 MP, about 20 minutes:

    python bench/ocr_bench.py --n 40 --before 476d3e5 --out bench/results/ocr.json

Photos: seeded photo-like JPEGs (bench/index_bench.py's scenes, 1-3 MP, quality 85-95), half of
them with a printed sign bearing a unique made-up word (DejaVu Sans Bold, letters 3-8 % of the short
side, rotated up to 6 degrees, every third with a number), half without text. Cached under --photos.

Measured, each in a fresh process timed from start to exit, wall and CPU seconds (the CPU seconds
of the process and of every process it waited for: less sensitive to a shared machine's load; the
1-minute load average is recorded beside every figure):
- baseline: `RapidOCR()` with its defaults, `engine(path)` per file (its own decoding), run between
            two of ours since the load drifts;
- ocr:      `clipsearch ocr` over a copy of an index made without --ocr, with one single-threaded
            reading process per core (the default) and with one process on every core;
- per file: the pictures read per second with and without text, by the baseline and by our reader
            in one process (decode, bound, read), at several detector sides (--det-sides);
- recall:   the share of text photos that their unique word finds first through `Matcher.run`
            (hybrid, tiered fusion: the default) and with plain RRF; both also with the CLIP ranking
            fused only to a tenth of the collection, as in a collection 10x the fused depth;
- index:    `clipsearch index` with and without --ocr (ViT-B-32, random weights): the CLIP part's
            rate and the whole process; with --before REV, `index` without --ocr by the code of REV
            and by this tree, alternated (--index-repeats), to show the CLIP rate unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]
SYLLABLES = ("zor", "blax", "quor", "vanth", "blin", "tek", "fev", "run", "glim", "dax", "plum", "tar",
             "vol", "mek", "sny", "drov", "kal", "pex", "ruth", "wob", "yst", "gral", "nop", "chur")
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- photos ---------------------------------------------------------------------------------------


def words(n: int, seed: int = 0) -> list[str]:
    """n distinct made-up words of 3 syllables, capitalised; every third with a 4-digit number."""
    rng, out = np.random.default_rng(seed), []
    while len(out) < n:
        w = "".join(rng.choice(SYLLABLES, 3)).capitalize()
        w += f" {rng.integers(1000, 9999)}" if len(out) % 3 == 2 else ""
        if w.split()[0] not in {o.split()[0] for o in out}:
            out.append(w)
    return out


def make_photos(folder: Path, n: int, mp: tuple[float, float], seed: int = 0) -> dict[Path, str | None]:
    """n photos in `folder`/text and `folder`/plain (reused when there): path -> its word (None: no text)."""
    from index_bench import _photo_spec

    rng = np.random.default_rng(seed)
    specs, texts = [_photo_spec(rng, mp) for _ in range(n)], words(n // 2, seed)
    out = {}
    for i, (w, h, quality, sub) in enumerate(specs):
        text = texts[i // 2] if i % 2 == 0 else None
        path = folder / ("text" if text else "plain") / f"photo_{i:04d}_{w}x{h}.jpg"
        out[path] = text
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            _write(path, w, h, quality, sub, text)
    return out


def _write(path: Path, w: int, h: int, quality: int, seed: int, text: str | None) -> None:
    from PIL import Image

    from index_bench import _photo

    rng = np.random.default_rng(seed)
    img = Image.fromarray(_photo(rng, w, h, rng.normal(0, 5, (512, 512, 3)).astype(np.int16)))
    if text:
        img = _with_sign(img, text, rng)
    img.save(path, quality=quality, subsampling="4:2:0")


def _with_sign(img, text: str, rng):
    from PIL import Image, ImageDraw, ImageFont

    w, h = img.size
    font = ImageFont.truetype(FONT, int(rng.uniform(0.03, 0.08) * min(w, h)))
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    pen = ImageDraw.Draw(layer)
    x0, y0, x1, y1 = pen.textbbox((0, 0), text, font=font)
    tw, th = x1 - x0, y1 - y0
    pad = th // 3
    x, y = int(rng.uniform(pad, max(pad + 1, w - tw - pad))), int(rng.uniform(pad, max(pad + 1, h - th - pad)))
    panel = tuple(int(c) for c in rng.integers(200, 250, 3))
    pen.rectangle((x - pad, y - pad, x + tw + pad, y + th + pad), fill=(*panel, 255))
    pen.text((x - x0, y - y0), text, fill=tuple(int(c) for c in rng.integers(0, 60, 3)) + (255,), font=font)
    layer = layer.rotate(float(rng.uniform(-6, 6)), resample=Image.BICUBIC, center=(x + tw / 2, y + th / 2))
    out = img.convert("RGBA")
    out.alpha_composite(layer)
    return out.convert("RGB")


# --- children ------------------------------------------------------------------------------------


def child_baseline(a) -> dict:
    """The plain loop: RapidOCR() with its defaults, engine(path) per file."""
    from rapidocr import RapidOCR

    engine = RapidOCR(params={"Global.log_level": "critical"})
    times, cpu, read = {}, {}, {}
    for p in sorted(Path(a.folder).rglob("*.jpg")):
        start, c = time.perf_counter(), time.process_time()
        out = engine(str(p))
        times[str(p)], cpu[str(p)] = time.perf_counter() - start, time.process_time() - c
        read[str(p)] = list(getattr(out, "txts", None) or ())
    return {"times": times, "cpu": cpu, "read": read}


def child_perfile(a) -> dict:
    """Our reader, one process on every core: decode, bound, read, per file, at `a.det_side`."""
    from clipsearch.config import OcrSettings, Settings
    from clipsearch.ingest.ocr import Job, read_job
    from clipsearch.models.ocr import load_reader

    settings = OcrSettings(det_side=a.det_side)
    reader = load_reader(settings, "cpu", os.cpu_count() or 1)
    times, cpu, read = {}, {}, {}
    for p in sorted(Path(a.folder).rglob("*.jpg")):
        st = p.stat()
        start, c = time.perf_counter(), time.process_time()
        out = read_job(Job("k", str(p), None, st.st_size, st.st_mtime), reader, settings, Settings().max_pixels)
        times[str(p)], cpu[str(p)] = time.perf_counter() - start, time.process_time() - c
        read[str(p)] = [x.text for x in out.lines]
    return {"times": times, "cpu": cpu, "read": read}


CHILDREN = {"baseline": child_baseline, "perfile": child_perfile}


def run_child(method: str, folder: Path, det_side: int = 960) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, __file__, "--child", method, "--folder", str(folder), "--result", out.name,
               "--det-side", str(det_side)]
        res = timed(cmd)
        return json.loads(Path(out.name).read_text()) | res


def timed(cmd: list[str], env: dict | None = None) -> dict:
    """Run `cmd` to its end: its wall seconds, the CPU seconds of it and every process it waited for
    (less sensitive to a shared machine's load than wall time), the 1-minute load average before and
    after, and its stdout."""
    import resource

    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    load, before = os.getloadavg()[0], resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, env=env, stdout=subprocess.PIPE, text=True)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": round(cpu, 2), "load": [round(load, 2), round(os.getloadavg()[0], 2)],
            "stdout": done.stdout}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "clipsearch.cli", *args]


# --- the parent ----------------------------------------------------------------------------------


def index_run(folder: Path, idx: Path, a, *extra: str) -> dict:
    """`clipsearch index` (ViT-B-32, random weights) as a whole process: the CLIP part's rate and time,
    the OCR part's time (with --ocr), the process's wall and CPU seconds."""
    r = timed(cli("index", str(folder), "--index", str(idx), "--model", a.model, "--pretrained", "random",
                  "--quiet", "--json", *extra))
    s = json.loads(r["stdout"])
    return {"clip_images_per_s": s["images_per_s"], "clip_s": s["seconds"], "ocr_s": s.get("ocr", {}).get("seconds"),
            "wall_s": round(r["wall_s"], 2), "cpu_s": r["cpu_s"], "load": r["load"]}


def before_tree(rev: str, tmp: Path) -> Path:
    """The code of revision `rev` in `tmp`/before (with the outer layers linked in as in a checkout)."""
    out = tmp / "before"
    out.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, stdout=subprocess.PIPE).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    for pkg in ("indexer", "app"):
        (out / "clipsearch" / pkg).symlink_to(out / pkg)
    return out


def index_before_after(folder: Path, tmp: Path, a) -> dict:
    """`index` without --ocr by the code before OCR (`--before`) and by this tree, alternated."""
    code = {"before": before_tree(a.before, tmp), "after": ROOT}
    runs = {k: [] for k in code}
    for r in range(a.index_repeats):
        for name, tree in code.items():
            res = timed(cli("index", str(folder), "--index", str(tmp / f"{name}-{r}"), "--model", a.model,
                            "--pretrained", "random", "--quiet", "--json"), env={"PYTHONPATH": str(tree)})
            s = json.loads(res["stdout"])
            runs[name].append({"clip_images_per_s": s["images_per_s"], "wall_s": round(res["wall_s"], 2),
                               "cpu_s": res["cpu_s"], "load": res["load"]})
    return {"rev": a.before, **runs}


def ocr_run(plain: Path, idx: Path, workers: int) -> dict:
    """`clipsearch ocr` as a whole process over a copy of an index made without --ocr."""
    shutil.copytree(plain, idx)
    r = timed(cli("ocr", "--index", str(idx), "--ocr-workers", str(workers), "--quiet", "--json"))
    s = json.loads(r["stdout"])
    return {"wall_s": round(r["wall_s"], 2), "cpu_s": r["cpu_s"], "pass_s": s["seconds"], "read": s["read"],
            "with_text": s["with_text"], "load": r["load"]}


def recall(index_dir: Path, photos: dict[Path, str | None]) -> dict:
    """Share of text photos that their word finds first through Matcher.run: with the tiered fusion
    (the default) and with plain RRF (fusion.fuse(tiered=False) put in its place); and both again with
    the CLIP ranking fused only to a tenth of the collection's depth, as it is in a collection ten
    times VISUAL_CANDIDATES (1,000 pictures), where a sign CLIP ranks low is missing from it."""
    import functools

    import clipsearch.search.matcher as matcher_module
    from clipsearch import Matcher, Request, Settings, open_index
    from clipsearch.cli.options import load_model
    from clipsearch.search.fusion import VISUAL_CANDIDATES, fuse

    s = Settings()
    matcher = Matcher(load_model(index_dir, None, None, s), open_index(index_dir), max_pixels=s.max_pixels,
                      duplicate_threshold=s.duplicate_threshold)
    texts, found = [(p, t) for p, t in photos.items() if t], {}
    for depth in (VISUAL_CANDIDATES, max(1, len(photos) // 10)):
        matcher_module.VISUAL_CANDIDATES = depth
        for mode, fn in (("hybrid", fuse), ("plain_rrf", functools.partial(fuse, tiered=False))):
            matcher_module.fuse = fn
            tops = [matcher.run(Request(t.split()[0], k=1)).matches for _, t in texts]
            name = mode if depth == VISUAL_CANDIDATES else f"{mode}_shallow"
            found[name] = round(sum(bool(m) and m[0].hit.path == str(p.resolve()) for (p, _), m in zip(texts, tops))
                                / len(texts), 4)
    matcher_module.fuse, matcher_module.VISUAL_CANDIDATES = fuse, VISUAL_CANDIDATES
    return found | {"text_photos": len(texts), "shallow_depth": max(1, len(photos) // 10)}


def word_recall(read: dict[str, list[str]], photos: dict[Path, str | None]) -> float:
    """Share of text photos whose word is among the words read (tokens as the full-text index sees them)."""
    from clipsearch.search.textquery import tokens

    texts = [(str(p), t) for p, t in photos.items() if t]
    hits = sum(set(tokens(t)) <= {w for line in read.get(p, []) for w in tokens(line)} for p, t in texts)
    return round(hits / len(texts), 4)


def rates(r: dict, photos: dict[Path, str | None]) -> dict:
    """Pictures per second with and without text: per wall second, and per CPU second of the process."""
    out = {}
    for clock, key in (("times", ""), ("cpu", "_cpu")):
        by = {True: [], False: []}
        for p, t in photos.items():
            by[t is not None].append(r[clock][str(p)])
        out |= {f"with_text_per_s{key}": round(len(by[True]) / sum(by[True]), 3),
                f"without_text_per_s{key}": round(len(by[False]) / sum(by[False]), 3)}
    return out


def main_parent(a) -> None:
    photos = make_photos(Path(a.photos), a.n, tuple(a.mp))
    folder = Path(a.photos)
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "n": a.n, "mp": a.mp,
              "index": {}, "ocr": {}, "per_file": {}}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        log("index without --ocr")
        result["index"]["index"] = index_run(folder, tmp / "plain", a)
        for n, w in enumerate(a.workers):  # the baseline between two of ours: the load drifts
            log(f"clipsearch ocr --ocr-workers {w}")
            result["ocr"][f"workers={w}"] = ocr_run(tmp / "plain", tmp / f"ocr-{w}", w)
            if n == 0:
                log("baseline: RapidOCR() loop")
                base = run_child("baseline", folder)
                result["baseline"] = {"wall_s": round(base["wall_s"], 2), "cpu_s": base["cpu_s"], "load": base["load"],
                                      **rates(base, photos), "word_recall": word_recall(base["read"], photos)}
        log("index --ocr")
        result["index"]["index --ocr"] = index_run(folder, tmp / "with-ocr", a, "--ocr")
        log("recall through Matcher.run")
        result["recall"] = recall(tmp / f"ocr-{a.workers[0]}", photos)
        if a.before:
            log(f"index without --ocr: {a.before} against this tree")
            result["index_before_after"] = index_before_after(folder, tmp, a)
    for side in a.det_sides:
        log(f"per file, det side {side}")
        r = run_child("perfile", folder, side)
        result["per_file"][str(side)] = {"load": r["load"], **rates(r, photos),
                                         "word_recall": word_recall(r["read"], photos)}
    default = result["ocr"][f"workers={a.workers[0]}"]
    result["speedup_whole_process"] = {"wall": round(result["baseline"]["wall_s"] / default["wall_s"], 2),
                                       "cpu": round(result["baseline"]["cpu_s"] / default["cpu_s"], 2)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    Path(a.out).with_suffix(".md").write_text(table(result) + "\n")
    print(table(result))


def table(r: dict) -> str:
    b = r["baseline"]

    def load(x):
        return f"{x['load'][0]}-{x['load'][1]}"

    rows = ["| method | whole process: wall s | CPU s | speed-up wall / CPU | img/s with text (wall, CPU) | "
            "img/s without text (wall, CPU) | unique word read | load avg |", "|---|---|---|---|---|---|---|---|",
            f"| RapidOCR() loop, its defaults | {b['wall_s']:.1f} | {b['cpu_s']:.1f} | 1.00 / 1.00 | "
            f"{b['with_text_per_s']:.2f}, {b['with_text_per_s_cpu']:.2f} | {b['without_text_per_s']:.2f}, "
            f"{b['without_text_per_s_cpu']:.2f} | {b['word_recall']:.1%} | {load(b)} |"]
    for name, o in r["ocr"].items():
        rows.append(f"| `clipsearch ocr`, {name} | {o['wall_s']:.1f} | {o['cpu_s']:.1f} | "
                    f"{b['wall_s'] / o['wall_s']:.2f} / {b['cpu_s'] / o['cpu_s']:.2f} | | | | {load(o)} |")
    for side, p in r["per_file"].items():
        rows.append(f"| our reader per picture, det {side} px, one process | | | | {p['with_text_per_s']:.2f}, "
                    f"{p['with_text_per_s_cpu']:.2f} | {p['without_text_per_s']:.2f}, {p['without_text_per_s_cpu']:.2f} | "
                    f"{p['word_recall']:.1%} | {load(p)} |")
    rc = r["recall"]
    rows += [f"\nUnique word found first by `Matcher.run` ({rc['text_photos']} text photos among {r['n']}): "
             f"hybrid, tiered RRF (the default) {rc['hybrid']:.1%}; plain RRF {rc['plain_rrf']:.1%}. With the "
             f"CLIP ranking fused to depth {rc['shallow_depth']} only (as in a collection of 10x the fused "
             f"depth): tiered {rc['hybrid_shallow']:.1%}, plain RRF {rc['plain_rrf_shallow']:.1%}.",
             "\n| index run | CLIP images/s | CLIP part s | OCR part s | whole process: wall s | CPU s | load avg |",
             "|---|---|---|---|---|---|---|"]
    for name, x in r["index"].items():
        rows.append(f"| `{name}` | {x['clip_images_per_s']:.2f} | {x['clip_s']:.1f} | {x['ocr_s'] or '-'} | "
                    f"{x['wall_s']:.1f} | {x['cpu_s']:.1f} | {load(x)} |")
    if "index_before_after" in r:
        ba = r["index_before_after"]
        rows += [f"\n`index` without --ocr, CLIP images/s, alternated runs: {ba['rev']} (before OCR) "
                 + ", ".join(f"{x['clip_images_per_s']:.2f} (load {x['load'][0]})" for x in ba["before"])
                 + "; this tree " + ", ".join(f"{x['clip_images_per_s']:.2f} (load {x['load'][0]})" for x in ba["after"])
                 + "."]
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=40, help="photos, half of them with text")
    p.add_argument("--mp", type=float, nargs=2, default=[1.0, 3.0])
    p.add_argument("--photos", default=str(Path(tempfile.gettempdir()) / "clipsearch-ocr-bench"))
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--workers", type=int, nargs="+", default=[2, 1],
                   help="--ocr-workers values to time, the default's first")
    p.add_argument("--det-sides", type=int, nargs="+", default=[736, 960, 1280])
    p.add_argument("--before", default=None, metavar="REV",
                   help="also time `index` without --ocr by the code of REV (git), alternating with this tree")
    p.add_argument("--index-repeats", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "ocr.json"))
    p.add_argument("--child", choices=CHILDREN)
    p.add_argument("--folder")
    p.add_argument("--result")
    p.add_argument("--det-side", type=int, default=960)
    a = p.parse_args()
    if a.child:
        Path(a.result).write_text(json.dumps(CHILDREN[a.child](a)))
        return
    main_parent(a)


if __name__ == "__main__":
    main()
