"""Video frame sampling with PyAV (FFmpeg): one frame every few seconds plus scene changes, capped.

Cheap by design. A first pass decodes only the keyframes (the decoder skips every other frame):
a keyframe is kept when a periodic target falls near it, or when it looks unlike the keyframe
before it (encoders put keyframes at cuts, so this finds scene changes). Targets with no keyframe
near them (videos whose keyframes are far apart) are then reached by seeking, each decoding
from the keyframe before it. Frames become model-ready pixels at once: nothing full-size is kept.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from clipsearch.config import VideoSampling
from clipsearch.errors import ImageError
from clipsearch.media.image import check_pixels

_SIGNATURE_PX = 16


@dataclass(frozen=True)
class Frame:
    """One picture of a file, ready for the model: its time in the video (None for a still)."""

    time_s: float | None
    width: int
    height: int
    pixels: np.ndarray  # (S, S, 3) uint8


def sample_video(path: str | os.PathLike, prepare: Callable[[Image.Image], np.ndarray], *,
                 max_pixels: int, sampling: VideoSampling = VideoSampling(), draft_size: int | None = None) -> list[Frame]:
    """The sampled frames of the video at `path`, in time order, each passed through `prepare`
    (after FFmpeg scaled it down, area-averaged, to `draft_size` on its shorter side, if given).

    ImageError for a file with no decodable video stream (not a video, truncated before its
    first frame, an unknown codec) or whose frames are over `max_pixels`.
    """
    try:
        import av
    except ImportError as e:
        raise ImageError("videos need PyAV: `pip install av`") from e
    try:
        with av.open(os.fspath(path), metadata_errors="ignore") as container:
            return _sample(container, functools.partial(_frame, prepare=prepare, draft=draft_size),
                           max_pixels, sampling)
    except av.FFmpegError as e:
        raise ImageError(f"not a video FFmpeg can decode ({type(e).__name__}: {e})") from e
    except (OSError, ValueError, RuntimeError, MemoryError) as e:
        raise ImageError(f"corrupt or unsupported video ({type(e).__name__}: {e})") from e


def _sample(container, prepare, max_pixels: int, sampling: VideoSampling) -> list[Frame]:
    if not container.streams.video:
        raise ImageError("no video stream (audio only?)")
    vs = container.streams.video[0]
    if vs.codec_context is None:
        raise ImageError("no decoder for its video codec in this FFmpeg: unknown or unsupported codec")
    width, height = vs.codec_context.width, vs.codec_context.height
    if not width or not height:
        raise ImageError("video stream without a picture size: corrupt or unsupported")
    check_pixels((width, height), max_pixels)
    vs.thread_type = "AUTO"
    duration = _duration(container, vs)
    every = max(sampling.every_s, duration / sampling.max_frames) if duration else sampling.every_s
    kept, keytimes = _keyframes(container, vs, prepare, every, sampling.scene_change)
    if not kept:
        raise ImageError("no decodable video frame (truncated or empty?)")
    span, have = max(duration, max(keytimes)), [f.time_s for _, f in kept]
    missing = [t for t in np.arange(0, span, every) if not any(abs(t - k) <= every / 2 for k in have)]
    kept += _seek_frames(container, vs, prepare, missing[: sampling.max_frames], keytimes)
    chosen = sorted(kept, key=lambda f: -f[0])[: sampling.max_frames]  # scene changes first, then periodic
    return sorted((f for _, f in chosen), key=lambda f: f.time_s)


def _keyframes(container, vs, prepare, every: float, threshold: float):
    """Pass 1: [(priority, Frame)] of the keyframes kept, and every keyframe's time."""
    vs.codec_context.skip_frame = "NONKEY"
    kept, keytimes, last_sig, next_t = [], [], None, 0.0
    tiny = {"width": _SIGNATURE_PX, "height": _SIGNATURE_PX, "format": "rgb24", "interpolation": "AREA"}
    try:
        for frame in container.decode(vs):
            t = _time(frame, vs)
            if t is None:
                continue
            keytimes.append(t)
            sig = frame.reformat(**tiny).to_ndarray()
            change = 1.0 if last_sig is None else float(np.abs(sig.astype(np.int16) - last_sig).mean()) / 255
            last_sig = sig.astype(np.int16)
            if change >= threshold or t >= next_t - every / 2:  # a cut, or near the next grid time
                kept.append((change if change >= threshold else 0.0, prepare(frame, t)))
                next_t = (np.floor((t + every / 2) / every) + 1) * every
    except Exception as e:  # noqa: BLE001 -- damaged data mid-stream: keep what decoded before it
        if not kept:
            raise ImageError(f"no decodable video frame ({type(e).__name__}: {e})") from e
    vs.codec_context.skip_frame = "DEFAULT"
    return kept, keytimes


def _seek_frames(container, vs, prepare, targets, keytimes=()) -> list:
    """Pass 2: the first frame at or after each target time (sorted). Seeks to the keyframe before
    a target only when that keyframe lies ahead of the decoder; else decodes on from where it is,
    so that no frame is decoded twice when targets are closer together than keyframes."""
    out, frames, now = [], None, None
    for target in targets:
        key = max((k for k in keytimes if k <= target + 1e-3), default=None)
        try:
            if frames is None or now is None or now > target or (key is not None and key > now):
                container.seek(int((target + _start(vs)) / vs.time_base), stream=vs, backward=True,
                               any_frame=False)
                frames = container.decode(vs)
            for frame in frames:
                now = _time(frame, vs)
                if now is not None and now >= target - 1e-3:
                    out.append((0.0, prepare(frame, now)))
                    break
        except Exception:  # noqa: BLE001 -- a damaged stretch costs this sample, not the video
            frames = None
    return out


def _frame(frame, t: float, prepare, draft: int | None) -> Frame:
    """A decoded frame as a Frame: upright, its full size, and `prepare`d from a draft-size copy
    (FFmpeg's area scaling is ~7x cheaper than converting a 1080p frame whole)."""
    w, h = frame.width, frame.height
    rotation = getattr(frame, "rotation", 0) or 0  # read before scaling: a scaled copy has no side data
    if draft and min(w, h) > draft:
        s = draft / min(w, h)
        frame = frame.reformat(width=max(draft, round(w * s)), height=max(draft, round(h * s)), format="rgb24",
                               interpolation="AREA")
    img = frame.to_image()
    if rotation:  # a phone's portrait video: stored sideways, shown upright
        img = img.rotate(rotation, expand=True)
        w, h = (h, w) if rotation % 180 else (w, h)
    return Frame(round(t, 3), w, h, prepare(img))


def _time(frame, vs) -> float | None:
    if frame.pts is None:
        return None
    return float(frame.pts * vs.time_base) - _start(vs)


def _start(vs) -> float:
    return float(vs.start_time * vs.time_base) if vs.start_time is not None else 0.0


def _duration(container, vs) -> float:
    if vs.duration is not None and vs.time_base is not None:
        return float(vs.duration * vs.time_base)
    return container.duration / 1_000_000 if container.duration else 0.0


def timestamp(seconds: float) -> str:
    """mm:ss (h:mm:ss past an hour) of a time in a video, as results show it: `path@mm:ss`."""
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m:02d}:{s:02d}"


def frame_at(path: str | os.PathLike, time_s: float, *, max_pixels: int, draft_size: int | None = None) -> Image.Image:
    """The video frame shown at `time_s`, upright, scaled as `sample_video` scales it to `draft_size`
    (for thumbnails and image queries on a frame)."""
    frames = []

    def keep(frame, t: float) -> None:
        frames.append(_frame(frame, t, lambda img: img, draft_size).pixels)

    try:
        import av

        with av.open(os.fspath(path), metadata_errors="ignore") as container:
            if not container.streams.video or container.streams.video[0].codec_context is None:
                raise ImageError("no decodable video stream")
            vs = container.streams.video[0]
            check_pixels((vs.codec_context.width, vs.codec_context.height), max_pixels)
            _seek_frames(container, vs, keep, [max(0.0, time_s)])
    except ImportError as e:
        raise ImageError("videos need PyAV: `pip install av`") from e
    except Exception as e:  # noqa: BLE001
        if isinstance(e, ImageError):
            raise
        raise ImageError(f"can't read the video frame ({type(e).__name__}: {e})") from e
    if not frames:
        raise ImageError(f"no frame at {time_s:.1f} s")
    return frames[0]
