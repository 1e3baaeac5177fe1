"""Frame-sampling cost per minute of video: clipsearch's sampler vs decoding every frame.

Encodes seeded synthetic videos with PyAV (moving shapes with a cut every `--scene-s` seconds, a
little noise frame to frame, as a camera's), then times, in this process on one core:
  sample   clipsearch.video.sample_video (keyframe pass + seeks), frames made model-ready (224 px)
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
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.gop_size = gop
        colour, bg = rng.integers(0, 255, 3), rng.integers(0, 255, 3)
        for n in range(int(seconds * fps)):
            t = n / fps
            if n and n % int(scene_s * fps) == 0:  # a cut: another scene
                colour, bg = rng.integers(0, 255, 3), rng.integers(0, 255, 3)
            cx = w / 2 + w / 4 * math.sin(t)
            img = np.empty((h, w, 3), np.uint8)
            img[:] = bg
            disc = (xx - cx) ** 2 + (yy - h / 2) ** 2 < (h / 4) ** 2
            img[disc] = colour
            img = np.clip(img.astype(np.int16) + rng.integers(-4, 5, (1, w, 1)), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = n, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def time_sample(path: Path) -> tuple[float, int]:
    from clipsearch.image import to_pixels
    from clipsearch.video import sample_video

    start = time.perf_counter()
    frames = sample_video(path, lambda img: to_pixels(img, 224), max_pixels=10**9)
    return time.perf_counter() - start, len(frames)


def time_decode_all(path: Path) -> tuple[float, int]:
    import av

    start = time.perf_counter()
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        n = sum(1 for _ in c.decode(vs))
    return time.perf_counter() - start, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", nargs="+", default=["1280x720", "1920x1080"])
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--scene-s", type=float, default=10.0)
    ap.add_argument("--gops", nargs="+", type=int, default=[30, 250], help="keyframe interval, frames "
                    "(30: phones, ~1 s; 250: x264's default)")
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
            s_t, kept = time_sample(path)
            d_t, n = time_decode_all(path)
            rows.append({"resolution": res, "gop": gop, "minutes": args.minutes, "fps": args.fps,
                         "frames": n, "kept": kept, "sample_s_per_min": round(s_t / args.minutes, 3),
                         "decode_all_s_per_min": round(d_t / args.minutes, 3)})
            print(rows[-1], flush=True)
    print("\n| resolution | keyframe every | frames kept / min | sampling s / min of video | decoding every frame s / min |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['resolution']} | {r['gop']} frames | {r['kept'] / r['minutes']:.0f} | "
              f"{r['sample_s_per_min']:.2f} | {r['decode_all_s_per_min']:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
