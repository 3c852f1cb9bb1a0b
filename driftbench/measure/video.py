"""Video probing and sampling with PyAV.

Frames are decoded sequentially (never one seek per sample: seeking is ~7x slower on clips with few
keyframes) in a background thread, and only the frames nearest each sampling instant are converted to
arrays. Frames that no other frame references and that lie before the next sampling instant are not decoded
at all (FFmpeg's ``skip_frame``): the samples are the same frames, pixel for pixel, as a full decode gives
(tests/test_video.py compares them on every clip of ../shared), with less decoding CPU on B-frame clips (a
quarter less on the 1080p HEVC clip of ../shared, a seventh on its 256 px 60 s clip). Timestamps come from
each frame's presentation time, so variable-frame-rate clips are sampled at true times; the display-matrix
rotation is applied so faces are upright.
"""

from __future__ import annotations

import bisect
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from driftbench.errors import ClipError

#: a frame counts for a sampling instant when it starts no earlier than this before it (float slack)
_TIME_EPS = 1e-6

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class VideoInfo:
    path: str
    duration_s: float
    fps: float
    width: int
    height: int
    rotation: int
    codec: str
    n_frames: int


@dataclass
class SampledFrame:
    sample_index: int
    t: float  # seconds since the first frame of the stream
    frame_index: int  # index of the decoded frame in the stream
    image: np.ndarray  # H x W x 3 uint8, BGR (OpenCV order), upright


def _open(path: str | Path):  # -> av.container.InputContainer
    import av

    p = Path(path)
    if not p.exists():
        raise ClipError(p, "file not found", "check the path in the manifest or model.path", reason="missing")
    if p.is_dir():
        raise ClipError(p, "is a directory, not a video file", "point to a video file", reason="bad_input")
    if not p.is_file():  # a named pipe or a device: reading it could block forever
        raise ClipError(p, "is not a regular file (a pipe or a device)", "point to a video file",
                        reason="bad_input")
    if p.stat().st_size == 0:
        raise ClipError(p, "zero-byte file", "re-download or regenerate the clip", reason="empty")
    if p.suffix.lower() in _IMAGE_SUFFIXES:
        raise ClipError(p, "is an image, not a video", "give a video clip (.mp4, .mov, .webm, ...)",
                        reason="not_video")
    try:
        container = av.open(str(p))
    except (av.error.FFmpegError, UnicodeDecodeError, OSError) as exc:
        raise ClipError(p, f"not a readable video ({type(exc).__name__}: {exc})",
                        "check that the file is a complete video; re-export it as H.264 MP4",
                        reason="unreadable") from None
    if not container.streams.video:
        container.close()
        kind = "audio-only file" if container.streams.audio else "no video stream"
        raise ClipError(p, kind, "give a file that contains a video track", reason="no_video_stream")
    if container.streams.video[0].codec_context is None:  # FFmpeg has no decoder for this codec
        container.close()
        raise ClipError(p, "unsupported video codec (this FFmpeg build has no decoder for it)",
                        "re-encode the clip, e.g. ffmpeg -i in.mp4 -c:v libx264 out.mp4",
                        reason="unsupported_codec")
    return container


def probe(path: str | Path) -> VideoInfo:
    """Read a clip's header: duration, frame rate, size, rotation. Raises ClipError on bad input."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        codec = stream.codec_context.name if stream.codec_context else "unknown"
        w, h = stream.width, stream.height
        rotation = 0
        try:  # the display matrix travels with frames: read it off the first one
            first = next(container.decode(stream), None)
            rotation = int(getattr(first, "rotation", 0) or 0) if first is not None else 0
        except Exception:
            rotation = 0
        if rotation % 180:
            w, h = h, w
        return VideoInfo(str(path), duration, fps, int(w or 0), int(h or 0), rotation, codec,
                         int(stream.frames or round(duration * fps)))
    finally:
        container.close()


def _upright(img: np.ndarray, rotation: int) -> np.ndarray:
    k = round(rotation / 90.0) % 4
    return np.ascontiguousarray(np.rot90(img, k)) if k else img


def _decode_samples(path: str | Path, fps: float, start: float, end: float | None,
                    out: queue.Queue, stop: threading.Event) -> None:
    """Producer: decode sequentially and put SampledFrame / exception / None (end) on ``out``."""
    import av

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        container = _open(path)
    except ClipError as exc:
        put(exc)
        return
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        t0: float | None = None
        t = 0.0
        k = 0  # samples emitted
        target = 0  # index of the next sampling instant start + target / fps
        frame_index = -1
        period = 1.0 / fps
        cut = False  # stopped at ``end`` or on a decode error, not at the end of the data
        skipper = _Skipper(stream)
        try:
            for frame in skipper.frames(container):
                if stop.is_set():
                    return
                frame_index = skipper.index(frame, frame_index)
                if frame.time is None:
                    continue
                if t0 is None:
                    t0 = float(frame.time)
                    skipper.until = t0 + start
                t = float(frame.time) - t0
                if end is not None and t > end + _TIME_EPS:
                    cut = True
                    break
                if t + _TIME_EPS < start + target * period:
                    continue
                img = frame.to_ndarray(format="bgr24")
                img = _upright(img, int(getattr(frame, "rotation", 0) or 0))
                if not put(SampledFrame(k, t, frame_index, img)):
                    return
                k += 1
                # the next instant strictly after this frame: a low-fps clip yields each frame once
                target = int(np.floor((t - start) / period + _TIME_EPS)) + 1
                skipper.until = t0 + start + target * period
        except (av.error.FFmpegError, ValueError) as exc:
            if k == 0:
                put(ClipError(path, f"decode failed before any frame ({type(exc).__name__}: {exc})",
                              "re-export the clip (e.g. ffmpeg -i in.mp4 -c:v libx264 out.mp4)",
                              reason="corrupt"))
                return
            # a truncated tail: keep what decoded, record it
            put(TruncatedVideo(t_last=t, message=str(exc)))
            cut = True
        if k == 0 and t0 is not None and start > 0:  # frames decoded, all before the first sampling instant
            put(ClipError(path, f"sampling.start={start:g} s is past the clip's end (its last frame is at "
                          f"{t:.2f} s)", "lower sampling.start below the clip's length (or leave it at 0)",
                          reason="start_past_end"))
            return
        if k == 0:
            put(ClipError(path, "no decodable video frame (zero-length clip?)",
                          "check that the clip has at least one frame", reason="empty"))
            return
        if not cut:
            # the data ended: a cut-off file (index intact, tail missing) decodes without an error,
            # so compare the last frame with the duration in its header
            missing = _missing_tail(stream, t, end)
            if missing is not None:
                put(
                    TruncatedVideo(
                        t_last=t,
                        message=f"{missing:.2f} s of the {t + missing:.2f} s in its header are missing",
                    )
                )
                return
        put(None)
    except Exception as exc:  # surface anything unexpected in the consumer thread
        put(exc)
    finally:
        container.close()


class _Skipper:
    """Demuxes and decodes, asking the decoder to skip non-reference frames whose presentation time lies
    before the next sampling instant: no later frame needs them and no sample can be one of them, so the
    sampled frames are exactly a full decode's. The instant is read when each packet is sent, so it lags
    the frames coming out (decoder delay) and errs towards decoding more, never less. A stream without
    timestamps on its packets is decoded in full."""

    def __init__(self, stream) -> None:  # stream: av VideoStream
        self.stream = stream
        self.time_base = stream.time_base
        #: presentation timestamps of the packets sent so far and not yet passed by the output, sorted;
        #: ``passed`` counts those dropped from its front (so memory stays flat on long clips)
        self.seen: list[int] = []
        self.passed = 0
        self.exact = self.time_base is not None  # every packet so far had a timestamp
        #: the next sampling instant in stream seconds, set by the sampler (None: not known yet)
        self.until: float | None = None

    def frames(self, container) -> Iterator:  # container: av InputContainer
        ctx = self.stream.codec_context
        mode = "DEFAULT"
        for packet in container.demux(self.stream):
            want = "DEFAULT"
            if packet.pts is None:
                if packet.size:
                    self.exact = False
            elif not getattr(packet, "is_discard", False):
                bisect.insort(self.seen, packet.pts)
                until = self.until
                early = until is not None and float(packet.pts * self.time_base) + _TIME_EPS < until
                if self.exact and early:
                    want = "NONREF"
            if want != mode:
                try:
                    ctx.skip_frame = want
                    mode = want
                except (AttributeError, TypeError, ValueError):  # a PyAV without skip_frame: decode all
                    self.exact = False
            yield from packet.decode()

    def index(self, frame, previous: int) -> int:
        """The frame's index in presentation order among all the stream's frames, skipped ones included."""
        if self.exact and frame.pts is not None:
            before = bisect.bisect_left(self.seen, frame.pts)
            del self.seen[:before]  # frames come out in presentation order: none of those is asked again
            self.passed += before
            return self.passed
        return previous + 1


def _missing_tail(stream, t_last: float, end: float | None) -> float | None:  # stream: av VideoStream
    """Seconds missing after the last decoded frame (``t_last``, from the first frame), or None when
    the stream is complete. Intact clips end one frame period before their header duration; more
    than that plus 2 periods + 0.25 s of slack means the file was cut short."""
    if stream.duration is None or stream.time_base is None:
        return None
    duration = float(stream.duration * stream.time_base)
    rate = float(stream.average_rate or stream.guessed_rate or 0.0)
    period = 1.0 / rate if rate > 0 else 0.0
    expected_last = duration - period
    if end is not None:
        expected_last = min(expected_last, end)
    missing = expected_last - t_last
    return missing + period if missing > 2 * period + 0.25 else None


@dataclass(frozen=True)
class TruncatedVideo:
    """Marker: decoding stopped early on a damaged tail; earlier samples are valid."""

    t_last: float
    message: str


def sample(path: str | Path, fps: float = 2.0, *, start: float = 0.0, end: float | None = None,
           buffer: int = 8, warnings: list[str] | None = None) -> Iterator[SampledFrame]:
    """Yield upright BGR frames nearest each instant ``start + k / fps`` (at or just after it).

    Decoding runs in a thread, ``buffer`` frames ahead, so memory stays flat on any length of
    clip. A damaged tail ends the stream early and adds a line to ``warnings``.
    """
    if fps <= 0:
        raise ValueError(f"sampling fps must be > 0, got {fps}")
    q: queue.Queue = queue.Queue(maxsize=max(1, buffer))
    stop = threading.Event()
    th = threading.Thread(target=_decode_samples, args=(path, fps, start, end, q, stop),
                          name="driftbench-decode", daemon=True)
    th.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, TruncatedVideo):
                if warnings is not None:
                    warnings.append(f"{path}: video truncated after {item.t_last:.2f} s ({item.message}); "
                                    "measured the frames before it -- fix: re-download or re-export the clip "
                                    "to measure all of it")
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        th.join(timeout=5)


def read_image(path: str | Path) -> np.ndarray:
    """Read a still image as upright BGR (EXIF orientation applied). Raises ClipError on bad input."""
    import cv2

    p = Path(path)
    if not p.exists():
        raise ClipError(p, "reference image not found", "check the reference path", reason="missing")
    if not p.is_file():  # a folder, a named pipe (reading it would block forever) or a device
        raise ClipError(p, "reference is not a regular file", "point to a photo (.jpg/.png)",
                        reason="bad_reference")
    if p.suffix.lower() not in _IMAGE_SUFFIXES:
        raise ClipError(p, "reference is not an image file",
                        "give a photo (.jpg/.png), or use reference=first_frame for a reference clip",
                        reason="bad_reference")
    data = np.fromfile(str(p), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise ClipError(p, "unreadable image", "re-save the reference as PNG or JPEG", reason="bad_reference")
    return img


def frame_count(path: str | Path) -> int:
    """Number of frames in the clip's video stream: the container's count when it has one (MP4, MOV), else
    counted by decoding (WebM/MKV headers carry none). What decord's ``len(VideoReader)`` reports, which
    published metrics that pick frames by index (FaceSim) rely on."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))
    finally:
        container.close()


def frames_at(path: str | Path, indices: Iterable[int] | None = None) -> Iterator[SampledFrame]:
    """Yield the decoded frames whose stream index is in ``indices`` (each index once, in stream order;
    None: every frame), upright BGR, decoded sequentially (no seeking). ``sample_index`` numbers the
    yielded frames; ``t`` is seconds since the first frame. A damaged tail ends the frames quietly (an
    index past it is simply not yielded)."""
    import av

    wanted = None if indices is None else sorted({int(i) for i in indices})
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        t0: float | None = None
        k = 0
        last = wanted[-1] if wanted else -1
        pos = 0  # next position in wanted
        decoded = container.decode(stream)
        frame_index = -1
        while True:
            try:
                frame = next(decoded)
            except StopIteration:
                return
            except (av.error.FFmpegError, ValueError):  # a damaged tail: the frames before it were yielded
                return
            frame_index += 1
            if wanted is not None and (pos >= len(wanted) or frame_index > last):
                break
            t = float(frame.time) if frame.time is not None else float("nan")
            if t0 is None and frame.time is not None:
                t0 = t
            if wanted is not None and frame_index != wanted[pos]:
                continue
            pos += 1
            img = _upright(frame.to_ndarray(format="bgr24"), int(getattr(frame, "rotation", 0) or 0))
            yield SampledFrame(k, t - (t0 or 0.0), frame_index, img)
            k += 1
    finally:
        container.close()
