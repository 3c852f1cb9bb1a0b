"""Video and image plumbing for chained generation (PyAV + OpenCV): verify a downloaded clip, take its
last frame, join segments, and encode images the way an API wants them.

Why here and not in :mod:`driftbench.measure.video`: that module samples clips for measurement; these helpers
only serve generation (they write files) and must stay importable without the face stack.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np


class MediaError(Exception):
    """A downloaded or generated file is not a usable video (truncated, empty, undecodable)."""


@dataclass(frozen=True)
class VideoCheck:
    duration_s: float
    n_frames: int
    fps: float
    width: int
    height: int


def check_video(path: str | Path) -> VideoCheck:
    """Demux every packet of the video stream (no decoding: fast even for 2-minute clips) and decode
    the first frame, so a truncated or corrupt download is caught before it enters the cache."""
    import av

    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        raise MediaError(f"{p}: missing or empty video file")
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise MediaError(f"{p}: no video stream")
            stream = container.streams.video[0]
            tb = stream.time_base or Fraction(1, 1000)
            n, last_end, first_pts = 0, 0.0, None
            for packet in container.demux(stream):
                if packet.size == 0 or packet.pts is None:
                    continue
                n += 1
                start = float(packet.pts * tb)
                first_pts = start if first_pts is None else min(first_pts, start)
                end = start + float((packet.duration or 0) * tb)
                last_end = max(last_end, end, start)
            fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            width, height = int(stream.width or 0), int(stream.height or 0)
        with av.open(str(p)) as container:
            first = next(container.decode(video=0), None)
    except MediaError:
        raise
    except Exception as exc:  # PyAV raises many FFmpeg error types
        raise MediaError(f"{p}: unreadable video ({type(exc).__name__}: {exc})") from None
    if n == 0 or first is None:
        raise MediaError(f"{p}: no decodable video frames")
    duration = last_end - (first_pts or 0.0)
    if duration <= 0 and fps > 0:
        duration = n / fps
    return VideoCheck(duration_s=duration, n_frames=n, fps=fps, width=width, height=height)


def last_frame(path: str | Path) -> np.ndarray:
    """The clip's final frame as BGR uint8 (the start image of a last-frame continuation)."""
    import av

    last = None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            last = frame
        if last is None:
            raise MediaError(f"{path}: no decodable video frames")
        return last.to_ndarray(format="bgr24")


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise MediaError("could not encode a JPEG")
    return buf.tobytes()


def prepare_image(path: str | Path, *, min_side: int = 0, max_bytes: int = 0) -> tuple[bytes, str]:
    """Image bytes and MIME type for an API: the file itself when it meets the provider's limits, else
    re-encoded as JPEG (upscaled so its short side is ``min_side``; Kling rejects images under 300 px)."""
    import cv2

    p = Path(path)
    data = p.read_bytes()
    suffix = p.suffix.lower()
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(suffix)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError(f"{p}: unreadable image")
    h, w = img.shape[:2]
    small = min_side and min(h, w) < min_side
    big = max_bytes and len(data) > max_bytes
    if mime and not small and not big:
        return data, mime
    if small:
        scale = min_side / min(h, w)
        img = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
    return encode_jpeg(img), "image/jpeg"


def to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def to_data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{to_base64(data)}"


def concat(segments: list[Path], out: Path, *, drop_first: list[bool] | None = None, crf: int = 16) -> None:
    """Join video segments into one H.264 MP4 at the first segment's size and frame rate.

    ``drop_first[i]`` drops segment i's opening frame: a continuation generated from the previous
    segment's last frame starts with (a copy of) that frame, which would otherwise show twice.
    Frame timestamps are rewritten to a constant rate, so the joined clip's time axis is each frame's
    index over the rate, as the measurement expects."""
    import av
    import cv2

    if not segments:
        raise MediaError("nothing to join")
    drop = drop_first or [False] * len(segments)
    first = check_video(segments[0])
    rate = Fraction(first.fps).limit_denominator(1001) if first.fps > 0 else Fraction(24, 1)
    width, height = first.width - first.width % 2, first.height - first.height % 2
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(out), "w", format="mp4") as dst:
        stream = dst.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        index = 0
        for seg, skip_first in zip(segments, drop, strict=True):
            with av.open(str(seg)) as src:
                for k, frame in enumerate(src.decode(video=0)):
                    if k == 0 and skip_first:
                        continue
                    img: np.ndarray = frame.to_ndarray(format="rgb24")
                    if img.shape[1] != width or img.shape[0] != height:
                        img = np.asarray(cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA))
                    vf = av.VideoFrame.from_ndarray(img, format="rgb24")
                    vf.pts = index
                    vf.time_base = 1 / rate
                    index += 1
                    for packet in stream.encode(vf):
                        dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    if index == 0:
        raise MediaError(f"{out}: the segments held no frames")
