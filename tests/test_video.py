from __future__ import annotations

import numpy as np
import pytest

from driftbench.errors import ClipError
from driftbench.measure import video
from tests.conftest import VIDEO, needs_shared

pytestmark = needs_shared


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
