"""Make broken and extreme copies of real clips (never synthetic content: every pixel and sample
comes from a real file in ../shared), so the reliability tests exercise the same decode paths that a
user's damaged dataset would.

All functions write ``dst`` and return it; they use PyAV only (no ffmpeg binary needed).
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np


def truncate(src: Path, dst: Path, fraction: float) -> Path:
    """The first ``fraction`` of ``src``'s bytes (a download or copy cut short)."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


def remux(src: Path, dst: Path, *, streams: str = "all", faststart: bool = False) -> Path:
    """Copy packets of ``src`` into a new MP4 without re-encoding. ``streams``: all | audio | video.
    ``faststart`` moves the index (moov) to the front, so a truncated copy still opens."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4",
                                          options={"movflags": "faststart"} if faststart else {}) as out:
        mapping = {}
        for s in inp.streams:
            if s.type not in ("video", "audio") or (streams != "all" and s.type != streams):
                continue
            mapping[s.index] = out.add_stream_from_template(s)
        for pkt in inp.demux(*[inp.streams[i] for i in mapping]):
            if pkt.dts is None:
                continue
            pkt.stream = mapping[pkt.stream.index]
            out.mux(pkt)
    return Path(dst)


def reencode(src: Path, dst: Path, *, size: tuple[int, int] | None = None, fps: float | None = None,
             max_seconds: float | None = None, transform: Callable[[np.ndarray], np.ndarray] | None = None,
             codec: str = "libx264", crf: int = 23) -> Path:
    """Decode ``src`` and encode its frames again (H.264, yuv420p), optionally resized to ``size``
    (w, h), resampled to ``fps`` (every k-th frame), cut after ``max_seconds`` and passed through
    ``transform`` (RGB array -> RGB array)."""
    import av
    import cv2

    with av.open(str(src)) as inp:
        vin = inp.streams.video[0]
        in_fps = float(vin.average_rate or 25)
        out_fps = fps or in_fps
        step = max(1, round(in_fps / out_fps))
        with av.open(str(dst), "w") as out:
            vout = None
            n = 0
            for i, frame in enumerate(inp.decode(vin)):
                if max_seconds is not None and frame.time is not None and frame.time >= max_seconds:
                    break
                if i % step:
                    continue
                img = frame.to_ndarray(format="rgb24")
                if size is not None:
                    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if size[0] < img.shape[1]
                                     else cv2.INTER_LINEAR)
                if transform is not None:
                    img = np.ascontiguousarray(transform(img))
                if vout is None:
                    vout = out.add_stream(codec, rate=Fraction(out_fps).limit_denominator(1000))
                    vout.width, vout.height = img.shape[1], img.shape[0]
                    vout.pix_fmt = "yuv420p"
                    vout.options = {"crf": str(crf), "preset": "ultrafast"}
                for pkt in vout.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(pkt)
                n += 1
            if vout is not None:
                for pkt in vout.encode():
                    out.mux(pkt)
    return Path(dst)


def zero_length_clip(dst: Path, size: tuple[int, int] = (64, 64)) -> Path:
    """A well-formed MP4 with an H.264 video stream and no frame at all."""
    import av

    # empty_moov: the stream description is written up front (a plain MP4 writes it only after packets)
    with av.open(str(dst), "w", format="mp4", options={"movflags": "empty_moov"}) as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height = size
        s.pix_fmt = "yuv420p"
        out.start_encoding()  # write the header even though no packet follows
    return Path(dst)


def unknown_codec(src: Path, dst: Path) -> Path:
    """``src`` with its video sample entry's fourcc renamed (avc1 -> zzzz): a codec no decoder knows,
    which is what a clip from an exotic camera or a newer codec looks like to this FFmpeg build."""
    data = bytearray(Path(src).read_bytes())
    moov = data.find(b"moov")
    i = data.find(b"avc1", moov)
    if moov < 0 or i < 0:
        raise ValueError(f"{src}: no avc1 sample entry after moov")
    data[i : i + 4] = b"zzzz"
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def text_named_mp4(dst: Path) -> Path:
    Path(dst).write_text("this is a text file, not a video\n" * 40, encoding="utf-8")
    return Path(dst)


def blur_all(img: np.ndarray) -> np.ndarray:
    """A strong blur: the scene stays real but no face can be detected."""
    import cv2

    return cv2.GaussianBlur(img, (0, 0), sigmaX=max(img.shape[:2]) / 6)


def scan_for_secrets(roots: list[Path], secrets: dict[str, str]) -> list[str]:
    """Every (file, env var name) where a secret's value occurs in a file under ``roots``; the raw
    bytes are searched, so Parquet, JSON, logs and pickles are all covered."""
    hits = []
    for root in roots:
        if not Path(root).exists():
            continue
        for f in sorted(Path(root).rglob("*")):
            if not f.is_file():
                continue
            data = f.read_bytes()
            for name, value in secrets.items():
                if value and value.encode() in data:
                    hits.append(f"{f}: {name}")
    return hits
