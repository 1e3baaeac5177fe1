"""Videos made in the tests: drawn shapes encoded with PyAV (importable without pytest)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from support import shapes


def write_video(path: Path, scenes: list[tuple[str, str, float]], *, fps: int = 10, size: int = 64,
                codec: str = "libx264", container: str | None = None) -> None:
    """`scenes` = [(colour, shape, seconds)] in order, each a still of that shape (a little noise
    frame to frame, as a camera's); libx264 puts a keyframe at each cut."""
    stills = [(shapes.draw(colour, shape, size=size, seed=k), seconds)
              for k, (colour, shape, seconds) in enumerate(scenes)]
    write_stills(path, stills, fps=fps, noise=3, codec=codec, container=container)


def write_stills(path: Path, stills: list, *, fps: int, noise: int, codec: str = "libx264",
                 container: str | None = None) -> None:
    """A video of `stills` = [(RGB PIL image, seconds)], all of one size, each held for its seconds
    with +-`noise` per frame, as a camera's."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = stills[0][0].size
        stream.pix_fmt = "yuv420p"
        n = 0
        for still, seconds in stills:
            px0 = np.asarray(still.convert("RGB"), np.int16)
            for _ in range(round(seconds * fps)):
                px = np.clip(px0 + rng.integers(-noise, noise + 1, px0.shape), 0, 255).astype(np.uint8)
                frame = av.VideoFrame.from_ndarray(px, format="rgb24")
                frame.pts = n
                n += 1
                out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
