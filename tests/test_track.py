"""Following the character when several people are in the frame (real footage, side by side)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import VIDEO, needs_shared
from tests.helpers import run_cli

pytestmark = needs_shared


def side_by_side(left: Path, right: Path, out: Path, seconds: float = 6.0, size: int = 320) -> Path:
    import av
    import cv2

    def frames(path: Path):
        with av.open(str(path)) as c:
            for f in c.decode(c.streams.video[0]):
                yield cv2.resize(f.to_ndarray(format="rgb24"), (size, size))

    with av.open(str(out), "w") as dst:
        s = dst.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 2 * size, size, "yuv420p"
        for i, (a, b) in enumerate(zip(frames(left), frames(right), strict=False)):
            if i >= seconds * 25:
                break
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.hstack([a, b])), format="rgb24")
            for pkt in s.encode(vf):
                dst.mux(pkt)
        for pkt in s.encode():
            dst.mux(pkt)
    return out


def first_frame_png(path: Path, out: Path) -> Path:
    import av
    import cv2

    with av.open(str(path)) as c:
        img = next(c.decode(c.streams.video[0])).to_ndarray(format="bgr24")
    cv2.imwrite(str(out), img)
    return out


@pytest.fixture(scope="module")
def two_people(tmp_path_factory, cache_dir) -> Path:
    d = tmp_path_factory.mktemp("two-people")
    a, b = VIDEO / "liveportrait/driving/d6.mp4", VIDEO / "liveportrait/driving/d10.mp4"
    clip = side_by_side(a, b, d / "pair.mp4")
    ref_a, ref_b = first_frame_png(a, d / "ref_a.png"), first_frame_png(b, d / "ref_b.png")
    manifest = d / "manifest.csv"
    pd.DataFrame(
        {
            "clip_id": ["as_left", "as_right"],
            "clip": [clip.name, clip.name],
            "reference": [ref_a.name, ref_b.name],
            "character": ["left", "right"],
        }
    ).to_csv(manifest, index=False)
    out = d / "run"
    code, _, err = run_cli(
        "run",
        "model=folder",
        f"model.path={manifest}",
        f"output.dir={out}",
        "report.html=false",
        "sampling.fps=1",
    )
    assert code == 0, err
    return out


def test_the_reference_picks_which_of_two_people_is_followed(two_people):
    clips = pd.read_csv(two_people / "clips.csv").set_index("clip_id")
    frames = pd.read_parquet(two_people / "frames.parquet")
    assert (clips["max_faces_seen"] == 2).all()
    for cid in ("as_left", "as_right"):
        f = frames[frames["clip_id"] == cid]
        assert f["face_found"].all() and (f["n_faces"] == 2).all()
        # the followed face is the character, all along: high similarity, no identity loss
        assert f["sim_raw"].min() > 0.5, cid
        assert np.isnan(clips.loc[cid, "time_to_loss_s"])
