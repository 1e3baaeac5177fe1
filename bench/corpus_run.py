"""A mixed photo folder indexed end to end: every file indexed, failed with a reason, or skipped by type.

Builds a folder from the tests' generators (the hostile corpus, every raster format, DNGs, videos)
plus `--copies` renamed copies of it and `--others` non-image files of common types, runs
`clipsearch index --json` on it with the tiny test model, and accounts for every file:
scanned = indexed + failed + skipped-as-not-image. Prints a markdown summary and writes JSON.

    python bench/corpus_run.py --copies 3 --others 200 --out bench/results/corpus.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

_OTHERS = {".txt": b"notes\n", ".pdf": b"%PDF-1.7\n", ".docx": b"PK\x03\x04" + bytes(40), ".csv": b"a,b\n1,2\n",
           ".json": b"{}", ".mp3": b"ID3\x04" + bytes(40), ".xmp": b"<x:xmpmeta/>", "": b"#!/bin/sh\n"}


def build(folder: Path, copies: int, others: int) -> None:
    from support import corpus
    from support import formats
    from support import shapes
    from support.clips import write_video
    from support.dng import write_dng

    corpus.write_corpus(folder / "hostile")
    corpus.unlock(folder / "hostile")  # this run reads as the user who owns the files
    (folder / "formats").mkdir()
    for name, (suffix, write) in formats.WRITERS.items():
        write(shapes.draw("orange", "square", 64, seed=1), folder / "formats" / f"{name}{suffix}")
    (folder / "camera").mkdir()
    for n, (colour, shape) in enumerate(shapes.LABELS[:6]):
        write_dng(folder / "camera" / f"IMG_{n:04d}.dng", shapes.draw(colour, shape, 64, seed=n),
                  orientation=(1, 6, 3)[n % 3])
    (folder / "videos").mkdir()
    write_video(folder / "videos" / "circle_then_star.mp4", [("red", "circle", 3.0), ("blue", "star", 3.0)])
    write_video(folder / "videos" / "long.mkv", [(c_, s_, 5.0) for c_, s_ in shapes.LABELS[:8]], codec="mpeg4")
    for k in range(copies):
        shutil.copytree(folder / "formats", folder / f"copy{k}")
    (folder / "documents").mkdir()
    kinds = list(_OTHERS.items())
    for n in range(others):
        suffix, data = kinds[n % len(kinds)]
        (folder / "documents" / f"file{n:05d}{suffix}").write_bytes(data * (1 + n % 3))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=3)
    ap.add_argument("--others", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/corpus.json")
    args = ap.parse_args()
    tiny = ROOT / "tests/fixtures/tiny-clip"
    with tempfile.TemporaryDirectory() as tmp:
        folder, idx = Path(tmp) / "photos", Path(tmp) / "idx"
        build(folder, args.copies, args.others)
        files = sum(len(fs) for _, _, fs in os.walk(folder))
        cmd = [sys.executable, "-m", "clipsearch.cli", "index", str(folder), "--index", str(idx), "--json",
               "--quiet", "--model", str(tiny / "tiny-clip.json"), "--pretrained", str(tiny / "tiny-clip.safetensors")]
        s = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    reasons = Counter(f["reason"].split(" (")[0].split(":")[0] for f in s["failed"])
    out = {"files": files, "indexed": s["new"], "rows": s["total"], "videos": s["videos"], "frames": s["frames"],
           "failed": len(s["failed"]), "failed_by_reason": dict(reasons.most_common()),
           "skipped": s["skipped_total"], "skipped_by_type": s["skipped"], "seconds": s["seconds"]}
    out["unaccounted"] = files - out["indexed"] - out["failed"] - out["skipped"]
    print(json.dumps(out, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
