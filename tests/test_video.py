from __future__ import annotations

import numpy as np
import pytest

from driftbench.errors import ClipError
from driftbench.measure import video
from tests.conftest import VIDEO, needs_shared


@needs_shared
def test_sampling_times_and_count_on_real_clip():
    info = video.probe(VIDEO / "liveportrait/driving/d6.mp4")
    assert info.duration_s == pytest.approx(33.6, abs=0.1)
    frames = list(video.sample(VIDEO / "liveportrait/driving/d6.mp4", 2.0))
    t = np.array([f.t for f in frames])
    assert len(frames) == 68
    # every sample is the first frame at or after its instant k/2, within one frame period (30 fps)
    assert np.all(t - np.arange(len(t)) * 0.5 >= -1e-6)
    assert np.all(t - np.arange(len(t)) * 0.5 < 1 / 30 + 1e-6)
    assert frames[0].image.shape == (480, 480, 3) and frames[0].image.dtype == np.uint8


@needs_shared
def test_sampling_window_stops_early():
    frames = list(video.sample(VIDEO / "real/edtalk_pose_source2.mp4", 1.0, start=10.0, end=14.0))
    assert [round(f.t) for f in frames] == [10, 11, 12, 13, 14]


def test_low_fps_clip_yields_each_frame_once(tmp_path):
    import av

    p = tmp_path / "slow.mp4"
    with av.open(str(p), "w") as c:
        s = c.add_stream("libx264", rate=1)
        s.width = s.height = 64
        s.pix_fmt = "yuv420p"
        for i in range(4):
            fr = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 40, np.uint8), format="rgb24")
            for pkt in s.encode(fr):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    frames = list(video.sample(p, 5.0))
    assert [f.frame_index for f in frames] == [0, 1, 2, 3]


def test_rotation_metadata_is_applied(tmp_path):
    import av

    p = tmp_path / "rot.mp4"
    img = np.zeros((48, 96, 3), np.uint8)
    img[:, :48] = 255  # left half white
    with av.open(str(p), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height = 96, 48
        s.pix_fmt = "yuv420p"
        s.set_display_rotation(90)
        for _ in range(3):
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    f = next(iter(video.sample(p, 1.0)))
    assert f.image.shape[:2] == (96, 48)  # upright: rotated by 90 degrees
    assert video.probe(p).width == 48


@pytest.mark.parametrize(
    "content,reason", [(b"", "empty"), (b"this is text, not a video\n" * 20, "unreadable")]
)
def test_bad_files_give_clear_errors(tmp_path, content, reason):
    p = tmp_path / "clip.mp4"
    p.write_bytes(content)
    with pytest.raises(ClipError) as ei:
        list(video.sample(p, 2.0))
    assert ei.value.reason == reason
    assert str(p) in str(ei.value) and "fix:" in str(ei.value)


def _full_decode_samples(path, fps: float, start: float = 0.0) -> list[tuple[int, float, int, bytes]]:
    """The sampling rule on a plain decode of every frame (no frame skipped): the reference the
    sampler's skipping must reproduce exactly."""
    import av

    out, t0, target, k = [], None, 0, 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        for index, frame in enumerate(c.decode(s)):
            if frame.time is None:
                continue
            t0 = float(frame.time) if t0 is None else t0
            t = float(frame.time) - t0
            if t + 1e-6 < start + target / fps:
                continue
            img = video._upright(frame.to_ndarray(format="bgr24"), int(getattr(frame, "rotation", 0) or 0))
            out.append((k, t, index, _sha1(img)))
            k += 1
            target = int(np.floor((t - start) * fps + 1e-6)) + 1
    return out


def _sha1(image: np.ndarray) -> bytes:
    import hashlib

    return hashlib.sha1(image.tobytes()).digest()


def _all_clips() -> list:
    return sorted(p for p in VIDEO.rglob("*") if p.suffix.lower() in {".mp4", ".mov", ".webm", ".mkv"})


@needs_shared
def test_skipping_unreferenced_frames_samples_exactly_the_frames_of_a_full_decode():
    """Every clip of ../shared (H.264, HEVC and MPEG-4 Part 2, 224 px to 1080p, with B-frames or without):
    the same frames at the same times and indices, pixel for pixel, as decoding every frame."""
    clips = _all_clips()
    assert len(clips) >= 70
    for p in clips:
        got = [(f.sample_index, f.t, f.frame_index, _sha1(f.image)) for f in video.sample(p, 2.0)]
        assert got == _full_decode_samples(p, 2.0), p


@needs_shared
def test_skipping_is_exact_at_other_rates_and_offsets():
    """5 samples/s from 1.3 s on the first clip of each codec (1080p HEVC among them)."""
    import av

    first: dict[str, object] = {}
    for p in _all_clips():
        with av.open(str(p)) as c:
            first.setdefault(c.streams.video[0].codec_context.name, p)
    assert {"h264", "hevc", "mpeg4"} <= set(first)
    for p in first.values():
        got = [(f.sample_index, f.t, f.frame_index, _sha1(f.image)) for f in video.sample(p, 5.0, start=1.3)]
        assert got == _full_decode_samples(p, 5.0, 1.3), p


def _encode(path, codec: str, pts: list[int], rate: int, options: dict[str, str]) -> None:
    """A clip whose frames all differ (a moving bar and its frame number in the pixels), with the given
    presentation timestamps in units of 1/rate s (irregular gaps: a variable-frame-rate clip)."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate, options=options)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        s.codec_context.time_base = Fraction(1, rate)
        for i, p in enumerate(pts):
            img = np.full((64, 96, 3), (i * 7) % 256, np.uint8)
            img[:, (i * 3) % 96] = 255
            fr = av.VideoFrame.from_ndarray(img, format="rgb24")
            fr.pts, fr.time_base = p, Fraction(1, rate)
            for pkt in s.encode(fr):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


@pytest.mark.parametrize("suffix,codec,options", [
    ("mp4", "libx264", {"bframes": "3", "b-pyramid": "normal"}),
    ("mkv", "libx264", {"bframes": "2"}),
    ("mp4", "libx265", {"x265-params": "bframes=4:log-level=none"}),
    ("webm", "libvpx-vp9", {}),
    ("avi", "mpeg4", {"bf": "2"}),
])
def test_skipping_is_exact_on_variable_frame_rate_and_other_containers(tmp_path, suffix, codec, options):
    """Made here (no ../shared needed): B-frame H.264 and HEVC, VP9 in WebM and MPEG-4 Part 2 with B-frames in
    AVI, with irregular frame gaps and the first frame after 0.4 s; the samples equal a full decode's."""
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"this FFmpeg build has no {codec} encoder")
    rng = np.random.default_rng(7)
    pts = list(10 + np.cumsum(rng.integers(1, 4, size=120)))  # 1/25 s units: 0.4 s start, gaps of 1-3 frames
    p = tmp_path / f"vfr.{suffix}"
    _encode(p, codec, [int(x) for x in pts], 25, options)
    for fps, start in [(2.0, 0.0), (3.0, 0.7), (25.0, 0.0)]:
        frames = video.sample(p, fps, start=start)
        got = [(f.sample_index, f.t, f.frame_index, _sha1(f.image)) for f in frames]
        want = _full_decode_samples(p, fps, start)
        assert len(want) > 5 and got == want, (suffix, codec, fps, start)
