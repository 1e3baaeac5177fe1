"""Frame-sampling cost per minute of video: clipsearch's sampler vs decoding every frame.

Encodes seeded synthetic videos with PyAV (moving shapes with a cut every `--scene-s` seconds, a
little noise frame to frame, as a camera's), then times, in this process on one core:
  sample   clipsearch.media.video.sample_video (keyframe pass + seeks), frames made model-ready (224 px)
  decode   every frame decoded (what naive sampling costs before any frame is picked)
and reports seconds per minute of video and frames kept. Prints a markdown table and writes JSON.

    python bench/video_bench.py --res 1280x720 1920x1080 --minutes 1 --out bench/results/video.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from fractions import Fraction
from pathlib import Path

import numpy as np


def write_video(path: Path, w: int, h: int, seconds: float, fps: int, scene_s: float, gop: int, seed: int) -> None:
    import av

    rng = np.random.default_rng(seed)
    r = h // 4
    yy, xx = np.mgrid[-r:r, -r:r]
    disc = xx ** 2 + yy ** 2 < r ** 2
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.gop_size = gop
        colour, bg = rng.integers(0, 255, 3), rng.integers(0, 255, 3)
        for n in range(int(seconds * fps)):
            t = n / fps
            if n and n % int(scene_s * fps) == 0:  # a cut: another scene
                colour, bg = rng.integers(0, 255, 3), rng.integers(0, 255, 3)
            cx = int(w / 2 + w / 4 * math.sin(t))
            img = np.empty((h, w, 3), np.uint8)
            img[:] = bg
            img[h // 2 - r:h // 2 + r, cx - r:cx + r][disc] = colour
            img[:, :: 7] ^= np.uint8(n % 5)  # a little change frame to frame, as a camera's noise
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = n, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def timed(fn, path: Path, repeats: int) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, count), the best of `repeats` runs: CPU time (all threads) is the
    cost on a shared machine, where wall time mostly measures the neighbours."""
    best = None
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        n = fn(path)
        run = (time.process_time() - c0, time.perf_counter() - w0, n)
        best = run if best is None or run[0] < best[0] else best
    return best


def sample(path: Path) -> int:
    from clipsearch.media.image import to_pixels
    from clipsearch.media.video import sample_video

    return len(sample_video(path, lambda img: to_pixels(img, 224), max_pixels=10**9, draft_size=448))


def decode_all(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        return sum(1 for _ in c.decode(vs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", nargs="+", default=["1280x720", "1920x1080"])
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--scene-s", type=float, default=10.0)
    ap.add_argument("--gops", nargs="+", type=int, default=[30, 250], help="keyframe interval, frames "
                    "(30: phones, ~1 s; 250: x264's default)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/clipsearch-video-bench"))
    ap.add_argument("--out", type=Path, default=Path("bench/results/video.json"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for res in args.res:
        w, h = map(int, res.split("x"))
        for gop in args.gops:
            path = args.work / f"v_{res}_g{gop}.mp4"
            if not path.exists():
                write_video(path, w, h, args.minutes * 60, args.fps, args.scene_s, gop, seed=0)
            sample(path)  # warm: imports, codec set-up
            s_cpu, s_wall, kept = timed(sample, path, args.repeats)
            d_cpu, d_wall, n = timed(decode_all, path, args.repeats)
            m = args.minutes
            rows.append({"resolution": res, "gop": gop, "minutes": m, "fps": args.fps, "frames": n, "kept": kept,
                         "sample_cpu_s_per_min": round(s_cpu / m, 3), "sample_wall_s_per_min": round(s_wall / m, 3),
                         "decode_all_cpu_s_per_min": round(d_cpu / m, 3),
                         "decode_all_wall_s_per_min": round(d_wall / m, 3)})
            print(rows[-1], flush=True)
    print("\n| resolution | keyframe every | frames kept / min | sampling: CPU s (wall s) / min of video | "
          "decoding every frame: CPU s (wall s) / min |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['resolution']} | {r['gop']} frames | {r['kept'] / r['minutes']:.0f} | "
              f"{r['sample_cpu_s_per_min']:.2f} ({r['sample_wall_s_per_min']:.2f}) | "
              f"{r['decode_all_cpu_s_per_min']:.2f} ({r['decode_all_wall_s_per_min']:.2f}) |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
