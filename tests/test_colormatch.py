"""``colormatch`` (driftbench.mitigations.colormatch): colour and tone re-matched to the reference.

Media-free: the Lab transfer moves shifted colour statistics onto the reference's and leaves an unchanged
frame unchanged; chunks pool their frames; bad params fail before work. Real data: on infinitetalk_dub_9
(whose face reddens as it drifts) the face's ΔE2000 to the reference falls; with ``render: sampled`` only
the frames the sampling measures are processed, and chunks pool those.
"""

from __future__ import annotations

import numpy as np
import pytest

from driftbench.errors import UsageError
from driftbench.mitigations import create
from driftbench.mitigations.base import FrameBatch, RefFace, RunInfo
from driftbench.mitigations.colormatch import (
    ColorMatch,
    delta_e,
    face_tone,
    fit_transfer,
    from_lab,
    to_lab,
)
from tests.conftest import VIDEO, needs_shared

DUB = VIDEO / "generated" / "infinitetalk_dub_9.mp4"


def _texture(seed: int = 0, size: int = 96) -> np.ndarray:
    """A smooth, varied BGR image (every channel spans most of its range)."""
    import cv2

    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (size, size, 3)).astype(np.float32), (0, 0), 3)
    img = (img - img.min((0, 1))) / np.ptp(img, (0, 1)) * 180 + 40
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _shift(img: np.ndarray) -> np.ndarray:
    """The same image warmer, darker and flatter (a tone drift): Lab a/b shifted, L scaled."""
    lab = to_lab(img)
    lab[..., 0] = lab[..., 0] * 0.8 + 4
    lab[..., 1] += 9
    lab[..., 2] += 6
    return from_lab(lab)


def _stats(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lab = to_lab(img).reshape(-1, 3)
    return lab.mean(0), lab.std(0)


def _ref(img: np.ndarray) -> RefFace:
    z = np.zeros((478, 2))
    return RefFace(img, z, np.zeros((5, 2)), "d", "test")


@pytest.mark.parametrize("method", ["reinhard", "histogram"])
def test_shifted_colour_moves_to_the_reference_and_unchanged_frames_stay(method):
    ref = _texture(0)
    drifted = _shift(_texture(1))
    rm, rs = _stats(ref)
    dm, _ = _stats(drifted)
    assert np.abs(dm - rm).max() > 5  # the shift is real
    tr = fit_transfer(to_lab(drifted).reshape(-1, 3), to_lab(ref).reshape(-1, 3), method)
    fixed = from_lab(tr.apply(to_lab(drifted)))
    fm, fs = _stats(fixed)
    assert np.abs(fm - rm).max() < 1.0, (fm, rm)
    assert np.allclose(fs, rs, rtol=0.1, atol=0.5), (fs, rs)
    assert float(delta_e(fm, rm)) < 1.0 < float(delta_e(dm, rm))
    # a frame equal to the reference is its own fixed point (up to the uint8 round trip)
    same = fit_transfer(to_lab(ref).reshape(-1, 3), to_lab(ref).reshape(-1, 3), method)
    back = from_lab(same.apply(to_lab(ref)))
    assert np.abs(back.astype(int) - ref.astype(int)).max() <= 1


def test_processor_per_frame_chunked_and_strength():
    ref = _texture(0)
    frames = [ref.copy(), _shift(_texture(1)), _shift(_texture(2))]
    info = RunInfo()
    proc = create("colormatch", {"method": "reinhard"})
    proc.start(_ref(ref))
    out = proc.process(FrameBatch(frames, [None] * 3), info)
    assert info.processed == 3
    assert np.abs(out[0].astype(int) - ref.astype(int)).max() <= 1  # the reference frame is unchanged
    rm, _ = _stats(ref)
    for img in out[1:]:
        assert np.abs(_stats(img)[0] - rm).max() < 1.0
    # strength 0: every frame passes through unchanged (a re-encode control)
    zero = create("colormatch", {"strength": 0.0})
    zero.start(_ref(ref))
    for a, b in zip(zero.process(FrameBatch(frames, [None] * 3), RunInfo()), frames, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    # chunks: one key per chunk_s of time; one pooled transform for the whole chunk
    chunked = create("colormatch", {"chunk_s": 3.24})
    assert [chunked.group(t) for t in (0.0, 3.0, 3.24, 6.5, 6.48)] == [0, 0, 1, 2, 2]
    assert proc.group(5.0) is None  # per frame: plain batches
    chunked.start(_ref(ref))
    pair = [_shift(_texture(1)), _shift(_texture(1))[:, ::-1].copy()]  # same colours, other layout
    a, b = chunked.process(FrameBatch(pair, [None, None]), RunInfo())
    assert np.abs(a[:, ::-1].astype(int) - b.astype(int)).max() <= 1  # the same transform for both
    # the pooled statistics are the chunk's: a chunk of the reference and a shifted frame is not
    # moved all the way for either frame (what distinguishes a chunk from per-frame matching)
    mixed = chunked.process(FrameBatch([ref.copy(), _shift(_texture(1))], [None, None]), RunInfo())
    assert np.abs(_stats(mixed[0])[0] - rm).max() > 1.0


def test_face_region_without_a_face_keeps_the_last_transform():
    class Face:  # the landmarks of a face filling the middle of the frame
        def __init__(self, size: int) -> None:
            a = np.linspace(0, 2 * np.pi, 478, endpoint=False)
            self.landmarks = np.stack([size / 2 + size / 3 * np.cos(a), size / 2 + size / 3 * np.sin(a)], 1)

    ref = _texture(0)
    proc = create("colormatch", {"region": "face"})
    r = _ref(ref)
    r.landmarks = Face(ref.shape[0]).landmarks
    proc.start(r)
    info = RunInfo()
    first, second = proc.process(FrameBatch([_shift(_texture(1))] * 2, [Face(96), None]), info)
    assert info.processed == 2 and np.array_equal(first, second)
    fresh = create("colormatch", {"region": "face"})
    fresh.start(r)
    info = RunInfo()
    (untouched,) = fresh.process(FrameBatch([_texture(3)], [None]), info)
    assert info.processed == 0 and np.array_equal(untouched, _texture(3))  # nothing to fit on yet


def test_bad_params_fail_before_work():
    for params, match in (({"method": "mkl"}, "method"), ({"region": "hair"}, "region"),
                          ({"chunk_s": -1.0}, "chunk_s"), ({"strength": 2.0}, "strength"),
                          ({"render": "half"}, "render"), ({"colour": 1}, "unknown params")):
        with pytest.raises(UsageError, match=match):
            create("colormatch", params)
    assert isinstance(create("colormatch", {}), ColorMatch)


# -- real data ------------------------------------------------------------------------------------------
@needs_shared
def test_real_generated_face_tone_moves_back_to_the_reference():
    """infinitetalk_dub_9's face reddens as it drifts (ΔE2000 of the face's mean Lab to the opening frame's
    ~6 after 20 s): colormatch, fitted on the face or on the whole frame, brings it back toward the
    reference."""
    from driftbench.measure import video
    from driftbench.mitigations.warp import FaceMesh

    frames = [fr.image for fr in video.sample(DUB, 1.0, end=1.0)][:1] + [
        fr.image for fr in video.sample(DUB, 1.0, start=20.0, end=24.0)
    ]
    mesh = FaceMesh(download=False)
    try:
        faces = [mesh.detect(img) for img in frames]
        assert all(f is not None for f in faces)
        ref = RefFace(frames[0], faces[0].landmarks, faces[0].lm5, "d", "first_frame")
        ref_tone = face_tone(frames[0], faces[0].landmarks)
        before = [
            float(delta_e(face_tone(img, f.landmarks), ref_tone))
            for img, f in zip(frames[1:], faces[1:], strict=True)
        ]
        assert min(before) > 3.0, before
        for params, most in (({"region": "face"}, 1.0), ({"region": "face", "method": "histogram"}, 1.0),
                             ({"region": "frame"}, None)):
            proc = create("colormatch", params)
            proc.start(ref)
            out = proc.process(FrameBatch(frames[1:], faces[1:]), RunInfo())
            after = [float(delta_e(face_tone(img, mesh.detect(img).landmarks), ref_tone)) for img in out]
            print(f"\n{params}: face ΔE2000 to the reference {np.mean(before):.2f} -> {np.mean(after):.2f}")
            assert np.mean(after) < np.mean(before) - 1.0
            if most is not None:
                assert max(after) < most, after
    finally:
        mesh.close()


@needs_shared
@pytest.mark.parametrize("chunk_s", [0.0, 2.0])
def test_sampled_render_processes_only_the_sampled_frames(tmp_path, cache_dir, chunk_s):
    """render=sampled processes exactly the frames 2 samples/s read, on the source's timeline and duration
    (chunks pool those frames); render=full processes every frame. Per frame, both agree at the sampled
    instants up to H.264 re-encoding noise (a full-rate chunk pools more frames, so it is not compared)."""
    from driftbench.measure import video
    from driftbench.measure.clip import MeasureSettings
    from driftbench.measure.signals import Sampling
    from driftbench.mitigations import apply_post
    from driftbench.sources.base import Clip

    real = VIDEO / "real" / "tpsmm_driving.mp4"
    clip = Clip("a/tpsmm", str(real), "tpsmm", prompt_id="p", seed=0, model="folder")
    settings = MeasureSettings(device="cpu", reference="first_frame", sampling=Sampling(2.0))
    src = list(video.sample(real, 2.0))
    outs = {}
    for render in ("sampled", "full"):
        cfg = type("Cfg", (), {"name": "colormatch", "params": {"render": render, "chunk_s": chunk_s}})()
        (done,), skipped = apply_post([clip], cfg, settings, tmp_path / "mitigated")
        assert not skipped
        outs[render] = done
    sampled, full = outs["sampled"], outs["full"]
    assert sampled.meta["mitigation_render"] == "sampled@2:0-" and full.meta["mitigation_render"] == "full"
    assert sampled.meta["mitigation_frames"] == sampled.meta["mitigation_frames_processed"] == len(src)
    assert full.meta["mitigation_frames_processed"] >= video.probe(real).n_frames - 1
    a, b = list(video.sample(sampled.path, 2.0)), list(video.sample(full.path, 2.0))
    assert [f.t for f in a] == [f.t for f in b] == [f.t for f in src]
    assert abs(video.probe(sampled.path).duration_s - video.probe(real).duration_s) < 0.05
    if chunk_s == 0.0:
        diff = [
            float(np.abs(x.image.astype(np.int16) - y.image.astype(np.int16)).mean())
            for x, y in zip(a, b, strict=True)
        ]
        assert max(diff) < 3.0, diff


@needs_shared
def test_tone_table_measures_a_run_directory(tmp_path):
    """``driftbench dev tone-table``: per clip, ΔE2000 of the face to its reference at the opening and the
    end. A real identity-constant clip referenced to its own opening starts near 0; infinitetalk_dub_9 ends
    far from it (its face reddens); a folder that is no run directory exits 2."""
    import json

    from driftbench.cli.dev import main as dev
    from driftbench.mitigations.colormatch import tone_table

    parts = tmp_path / "run" / "parts"
    parts.mkdir(parents=True)
    for name, path in (("ctl", VIDEO / "real" / "tpsmm_driving.mp4"), ("dub", DUB)):
        clip = {"clip_id": name, "path": str(path), "references": [], "mitigation": "none", "meta": {}}
        (parts / f"{name}.json").write_text(json.dumps({"status": "ok", "clip": clip}), encoding="utf-8")
    # the run's own identity figures are joined by clip_id (here a hand-made clips.csv with one clip)
    clips_csv = tmp_path / "run" / "clips.csv"
    clips_csv.write_text("clip_id,drift_raw_at_end,other\nctl,0.01,x\n", encoding="utf-8")
    table = tone_table(tmp_path / "run").set_index("clip_id")
    assert set(table.index) == {"ctl", "dub"}
    assert table.loc["ctl", "drift_raw_at_end"] == 0.01 and np.isnan(table.loc["dub", "drift_raw_at_end"])
    assert "other" not in table.columns
    assert (table["reference"] == "first_frame@0.000s").all()
    assert table.loc["ctl", "de_open"] < 1.5 and table.loc["ctl", "n_samples"] >= 13
    assert table.loc["dub", "de_open"] < 3.0 < 5.0 < table.loc["dub", "de_end"] <= table.loc["dub", "de_max"]
    assert dev(["tone-table", str(tmp_path)]) == 2
