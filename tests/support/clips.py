"""Videos made in the tests: drawn shapes encoded with PyAV (importable without pytest)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from support import shapes


def write_video(path: Path, scenes: list[tuple[str, str, float]], *, fps: int = 10, size: int = 64,
                codec: str = "libx264", container: str | None = None) -> None:
    """`scenes` = [(colour, shape, seconds)] in order, each a still of that shape (a little noise
    frame to frame, as a camera's); libx264 puts a keyframe at each cut."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        n = 0
        for k, (colour, shape, seconds) in enumerate(scenes):
            still = np.asarray(shapes.draw(colour, shape, size=size, seed=k), np.int16)
            for _ in range(round(seconds * fps)):
                px = np.clip(still + rng.integers(-3, 4, still.shape), 0, 255).astype(np.uint8)
                frame = av.VideoFrame.from_ndarray(px, format="rgb24")
                frame.pts = n
                n += 1
                out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
