"""H.264 MP4 output with PyAV, and the sampled frame indices a clip renders."""


from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

# -- MP4 output -----------------------------------------------------------------------------------------
#: tolerance of sampling instants, seconds (the same as driftbench.measure.video's)
_TIME_EPS = 1e-6


def sampled_indices(
    times: np.ndarray, fps: float, start: float = 0.0, end: float | None = None
) -> np.ndarray:
    """Indices of the frames (at ``times``, seconds from the first frame, increasing) that
    :func:`driftbench.measure.video.sample` measures at ``fps`` between ``start`` and ``end``: the first
    frame at or after each instant ``start + k / fps``. A clip made of only these frames, each at its
    own time, is sampled to the same frames (tests/test_synthetic.py checks it on decoded clips)."""
    from driftbench.measure import video

    eps = getattr(video, "_TIME_EPS", _TIME_EPS)
    period = 1.0 / float(fps)
    out: list[int] = []
    target = 0
    for i, t in enumerate(np.asarray(times, dtype=np.float64)):
        if end is not None and t > end + eps:
            break
        if t + eps < start + target * period:
            continue
        out.append(i)
        target = int(np.floor((t - start) / period + eps)) + 1
    return np.asarray(out, dtype=np.int64)


@dataclass(frozen=True)
class Timeline:
    """A clip's time base, nominal frame rate and the time of its last frame (read from packets,
    without decoding)."""

    time_base: Fraction
    rate: float
    t_last: float


def stream_timeline(path: str | Path) -> Timeline:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        tb = Fraction(stream.time_base) if stream.time_base is not None else Fraction(1, 90000)
        rate = float(stream.guessed_rate or stream.average_rate or 25.0)
        pts = [p.pts for p in container.demux(stream) if p.pts is not None]
    t_last = float((max(pts) - min(pts)) * tb) if pts else 0.0
    return Timeline(tb, rate, t_last)


class Mp4Writer:
    """H.264 (yuv420p) MP4 with PyAV, written to a temp file and renamed on success (atomic)."""

    def __init__(self, path: str | Path, fps: float, width: int, height: int, crf: int = 18,
                 time_base: Fraction | None = None) -> None:
        import av

        from driftbench.io import atomic_path

        self.path = Path(path)
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        self._container: Any = av.open(str(tmp), mode="w", format="mp4")
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = int(width) // 2 * 2, int(height) // 2 * 2
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        #: with a time base, every frame is written at the time ``write`` is given (a clip of only the
        #: instants a sampling measures keeps each instant's timestamp; see :func:`sampled_indices`)
        self._time_base = time_base
        if time_base is not None:
            self._stream.codec_context.time_base = time_base
        self._last_pts = -1
        self.frames = 0

    def write(self, bgr: np.ndarray, t: float | None = None) -> None:
        """Append a frame; ``t`` (seconds, increasing) is required with a ``time_base`` and ignored
        without."""
        import av

        img = np.ascontiguousarray(bgr[: self._stream.height, : self._stream.width])
        frame = av.VideoFrame.from_ndarray(img, format="bgr24")
        if self._time_base is not None:
            if t is None:
                raise ValueError("Mp4Writer with a time base: write() needs the frame's time t")
            pts = round(Fraction(t) / self._time_base)
            if pts <= self._last_pts:
                raise ValueError(f"Mp4Writer: frame time {t} s is not after the previous frame's")
            frame.pts, frame.time_base = pts, self._time_base
            self._last_pts = pts
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self, ok: bool = True) -> None:
        if self._container is None:
            return
        try:
            if ok:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None
            if ok and self.frames:
                self._ctx.__exit__(None, None, None)
            else:
                err = RuntimeError("aborted")
                try:
                    self._ctx.__exit__(RuntimeError, err, None)
                except RuntimeError:
                    pass

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(ok=exc_type is None)
