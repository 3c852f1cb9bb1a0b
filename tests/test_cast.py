"""Several characters per clip (driftbench.measure.cast): the manifest's cast, the one-to-one assignment
with position continuity (a swap stays visible), swap onsets and leakage (media-free, on face tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftbench.measure import cast

D = 8


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _ids() -> tuple[np.ndarray, np.ndarray]:
    a = np.zeros(D)
    a[0] = 1.0
    b = np.zeros(D)
    b[1] = 1.0
    return a, b


def _faces(samples: list[list[tuple[np.ndarray, tuple[float, float]]]], fps: float = 2.0) -> pd.DataFrame:
    """A face-level table: per sample a list of (embedding, box centre); boxes 100 px, frame 512 x 256."""
    rows = []
    for si, faces in enumerate(samples):
        base = {"sample_index": si, "t": si / fps, "n_faces": len(faces), "frame_w": 512, "frame_h": 256}
        if not faces:
            rows.append({**base, "face_index": -1, "emb": None, "box": None, "face_size": np.nan})
        for fi, (e, (cx, cy)) in enumerate(faces):
            rows.append({**base, "face_index": fi, "emb": _unit(np.asarray(e, np.float64)).astype(np.float32),
                         "box": np.array([cx - 50, cy - 50, 100, 100], np.float32), "face_size": 100.0,
                         "det_score": 0.9, "blur": 1.0, "yaw": 0.0, "pitch": 0.0, "roll": 0.0, "age": 30.0,
                         "blendshapes": None, "thumb": b""})
    return pd.DataFrame(rows)


def test_parse_cast_names_images_regions_and_default_strips():
    m = cast.parse_cast("anna;ben", "a.jpg|a2.jpg;first_frame@right", lambda p: f"/x/{p}")
    assert m[0] == cast.Member("anna", images=("/x/a.jpg", "/x/a2.jpg"))
    assert m[1] == cast.Member("ben", region=(0.5, 0.0, 1.0, 1.0))
    strips = cast.parse_cast("a;b;c", "first_frame")
    assert [x.region for x in strips] == [cast.strip(i, 3) for i in range(3)]
    assert cast.parse_cast("a;b", "")[1].region == (0.5, 0.0, 1.0, 1.0)
    assert cast.parse_cast("a;b", "first_frame@0,0,0.3,1;first_frame@top")[0].region == (0, 0, 0.3, 1)
    with pytest.raises(ValueError, match="2 characters"):
        cast.parse_cast("a;b", "x.jpg")
    with pytest.raises(ValueError, match="twice"):
        cast.parse_cast("a;a", None)
    with pytest.raises(ValueError, match="region"):
        cast.parse_cast("a;b", "first_frame@0.6,0,0.2,1;first_frame")
    # meta round trip (JSON-able)
    assert [cast.Member.from_json(x.to_json()) for x in m] == m
    assert cast.cast_from_meta({"cast": [x.to_json() for x in m]}) == m
    assert cast.cast_from_meta({}) is None


def test_a_swap_in_place_stays_visible_and_its_onset_is_found():
    """A stands left, B right; from sample 8 (4 s) the faces exchange identities where they stand: position
    continuity keeps A's track on the left, which now shows B -- the swap is found at 4 s, not hidden."""
    a, b = _ids()
    left, right = (128.0, 128.0), (384.0, 128.0)
    samples = [[(a, left), (b, right)] if i < 8 else [(b, left), (a, right)] for i in range(20)]
    faces = _faces(samples)
    refs = np.stack([a, b])
    asg = cast.assign(faces, refs, threshold=0.4)
    lab0 = asg["face_0"].to_numpy()
    # A keeps the left face throughout (face_index 0 of each sample)
    assert (faces.loc[lab0, "face_index"].to_numpy() == 0).all()
    cols, series = cast.cast_summary(faces, asg, refs, ["A", "B"], 0)
    assert cols["swapped"] == 1 and cols["swap_onset_s"] == pytest.approx(4.0) and cols["swap_with"] == "B"
    assert cols["cast_missing_samples"] == 0 and cols["cast_unassigned_faces"] == 0
    assert (series["cast_swap"].to_numpy()[8:] > 0).all()
    # inside the swap each place shows the other's face: a swap, not a blend -- no leakage from it
    assert np.isnan(series["cast_leak"].to_numpy()[8:]).all()
    assert cols["leakage_max"] == pytest.approx(0.0, abs=1e-6) and cols["leak_with"] == "B"
    # a swap shorter than SWAP_MIN_S is not one
    short = [[(a, left), (b, right)] if not 8 <= i < 10 else [(b, left), (a, right)] for i in range(20)]
    f2 = _faces(short)
    c2, _ = cast.cast_summary(f2, cast.assign(f2, refs, threshold=0.4), refs, ["A", "B"], 0)
    assert c2["swapped"] == 0 and c2["swap_onset_s"] is None


def test_identity_decides_at_the_start_and_after_a_jump_beyond_the_gate():
    a, b = _ids()
    # B first appears on the left: identity, not position, decides the first assignment
    faces = _faces([[(b, (128.0, 128.0)), (a, (384.0, 128.0))] for _ in range(6)])
    asg = cast.assign(faces, np.stack([a, b]), threshold=0.4)
    assert (faces.loc[asg["face_0"], "face_index"] == 1).all()
    # A jumps 2 face sizes (beyond POS_GATE) while B stays: identity re-finds A, no continuity needed
    jump = [[(a, (128.0, 128.0)), (b, (384.0, 128.0))] if i < 6
            else [(a, (300.0, 220.0)), (b, (384.0, 128.0))] for i in range(14)]
    f2 = _faces(jump)
    refs = np.stack([a, b])
    asg2 = cast.assign(f2, refs, threshold=0.4)
    assert (f2.loc[asg2["face_0"], "face_index"] == 0).all() and (asg2["n_unassigned"] == 0).all()
    # the same jump by a face that is not A's: no continuity and too unlike A -> A is missing there
    other = [[(a, (128.0, 128.0)), (b, (384.0, 128.0))] if i < 6 else [(b, (384.0, 128.0))] for i in range(9)]
    f3 = _faces(other)
    asg3 = cast.assign(f3, refs, threshold=0.4)
    assert (asg3["face_0"].to_numpy()[6:] == -1).all() and (asg3["face_1"] >= 0).all()


def test_bystanders_and_missing_faces_are_counted():
    a, b = _ids()
    c = np.zeros(D)
    c[2] = 1.0
    samples = [[(a, (128.0, 128.0)), (b, (384.0, 128.0)), (c, (256.0, 40.0))] for _ in range(4)]
    samples += [[(b, (384.0, 128.0))] for _ in range(3)] + [[] for _ in range(2)]
    faces = _faces(samples)
    refs = np.stack([a, b])
    asg = cast.assign(faces, refs, threshold=0.4)
    cols, _ = cast.cast_summary(faces, asg, refs, ["A", "B"], 0)
    assert cols["cast_missing_samples"] == 5  # 3 samples with only B, 2 without faces
    assert cols["cast_unassigned_faces"] == 4  # the bystander of the first 4 samples
    track = cast.character_track(faces, asg, 0)
    assert len(track) == len(samples) and track["face_found"].sum() == 4
    assert track.loc[~track["face_found"], "emb"].isna().all()
    # B's track is found throughout its 7 samples
    assert cast.character_track(faces, asg, 1)["face_found"].sum() == 7


def test_a_character_without_reference_is_never_assigned():
    a, b = _ids()
    faces = _faces([[(a, (128.0, 128.0)), (b, (384.0, 128.0))] for _ in range(4)])
    refs = np.stack([a, np.full(D, np.nan)])
    asg = cast.assign(faces, refs, threshold=0.4)
    assert (asg["face_1"] == -1).all() and (asg["face_0"] >= 0).all()
    assert (asg["n_unassigned"] == 1).all()


def test_leak_series_reads_zero_for_the_own_reference_and_ignores_a_turn_away_from_it():
    """leak = cos(fA, rB) - cos(rA, rB) * cos(fA, rA): 0 for A's reference; a face that moves away from A's
    reference in a direction unrelated to B (a head turn) stays at 0, where the earlier form
    cos(fA, rB) - cos(rA, rB) went negative; a face moving toward B rises by its component along B."""
    a, _ = _ids()
    k = 0.3  # the references resemble each other
    rb = np.zeros(D)
    rb[0], rb[1] = k, np.sqrt(1 - k * k)
    other = np.zeros(D)
    other[2] = 1.0  # orthogonal to both references
    turned = _unit(0.6 * a + 0.8 * other)  # cos(fA, rA) = 0.6
    toward = _unit(0.6 * a + 0.8 * np.array([0.0, 1.0] + [0.0] * (D - 2)))
    fa = np.stack([a, turned, toward, np.full(D, np.nan)])
    got = cast.leak_series(fa, a, rb)
    assert got[0] == pytest.approx(0.0, abs=1e-12) and got[1] == pytest.approx(0.0, abs=1e-12)
    assert got[2] == pytest.approx(0.8 * np.sqrt(1 - k * k))
    assert np.isnan(got[3])
    assert fa[1] @ rb - k < -0.1  # the earlier form read the turn as negative leakage


def test_leakage_rises_with_blending_and_is_flat_for_a_constant_pair():
    a, b = _ids()
    n = 24
    alpha = np.linspace(0.0, 0.9, n)
    blended = [[(_unit((1 - al) * a + al * b), (128.0, 128.0)), (b, (384.0, 128.0))] for al in alpha]
    faces = _faces(blended)
    refs = np.stack([a, b])
    cols, series = cast.cast_summary(faces, cast.assign(faces, refs, threshold=0.4), refs, ["A", "B"], 0,
                                     leak_threshold=0.1)
    trail = series["cast_leak_trail"].to_numpy()
    assert np.all(np.diff(trail) >= -1e-9) and trail[-1] > 0.5
    assert cols["leaking"] == 1 and cols["leakage_end"] > cols["leakage_max"] - 1e-9
    const = _faces([[(a, (128.0, 128.0)), (b, (384.0, 128.0))] for _ in range(n)])
    c2, _ = cast.cast_summary(const, cast.assign(const, refs, threshold=0.4), refs, ["A", "B"], 0,
                              leak_threshold=0.1)
    assert c2["leaking"] == 0 and c2["leakage_max"] == pytest.approx(0.0, abs=1e-6)
    # without a calibrated threshold there is no verdict
    c3, _ = cast.cast_summary(const, cast.assign(const, refs, threshold=0.4), refs, ["A", "B"], 0)
    assert c3["leaking"] is None


def test_region_opening_takes_the_largest_face_in_the_region():
    a, b = _ids()
    faces = _faces([[(a, (128.0, 128.0)), (b, (384.0, 128.0))] for _ in range(6)])
    rows, t_end = cast.region_opening(faces, (0.5, 0.0, 1.0, 1.0), 1.0)
    assert len(rows) == 2 and t_end == 1.0 and (rows["face_index"] == 1).all()
    late = _faces([[(a, (128.0, 128.0))]] * 4 + [[(a, (128.0, 128.0)), (b, (384.0, 128.0))]] * 4)
    rows, t_end = cast.region_opening(late, (0.5, 0.0, 1.0, 1.0), 1.0)
    assert t_end == pytest.approx(3.0) and set(rows["t"]) == {2.0, 2.5}
    empty, _ = cast.region_opening(faces, (0.0, 0.9, 0.1, 1.0), 1.0)
    assert empty.empty


def test_manifest_row_with_a_cast_becomes_one_clip_per_character(tmp_path):
    from types import SimpleNamespace

    from driftbench.sources.folder import FolderSource

    (tmp_path / "scene.mp4").write_bytes(b"x")
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "m.csv").write_text("clip,character,reference\nscene.mp4,anna;ben,a.jpg;first_frame@right\n"
                                    "scene.mp4,anna;ben,a.jpg\n", encoding="utf-8")
    src = FolderSource(SimpleNamespace(path=str(tmp_path / "m.csv"), pattern="*.mp4", recursive=False,
                                       label="m"), None)
    clips = src.clips()
    assert [c.clip_id for c in clips] == ["scene.mp4#anna", "scene.mp4#ben"]
    assert clips[0].references == (str(tmp_path / "a.jpg"),) and clips[1].references == ()
    assert clips[0].path == clips[1].path and clips[0].meta["cast"] == clips[1].meta["cast"]
    assert cast.cast_from_meta(clips[1].meta)[1].region == (0.5, 0.0, 1.0, 1.0)  # type: ignore[index]
    assert len(src.skipped) == 1 and "2 characters" in src.skipped[0].message


def test_synthetic_cast_makes_two_character_clips_with_known_swap_and_leak(tmp_path):
    """`driftbench run model=synthetic model.cast=2`: two embedded identities side by side (constant, swap,
    leak), with ground truth in meta: the swap is found within 1 s of gt_swap_s, the constant pair raises no
    swap, and the morphed character leaks more than the constant pair does."""
    import json

    from tests.test_synthetic import run_cli

    out = run_cli(["model=synthetic", "model.cast=2", "model.duration_s=8", "model.max_clips=6",
                   "sampling.fps=2", f"cache.dir={tmp_path / 'cache'}", "progress=false"], tmp_path / "run")
    clips = pd.read_csv(out / "clips.csv").set_index("clip_id")
    assert len(clips) == 6 and (clips["cast_size"] == 2).all()
    meta = {i: json.loads(m) for i, m in clips["meta"].items()}
    swap = [i for i in clips.index if meta[i]["gt_scenario"] == "swap"]
    const = [i for i in clips.index if meta[i]["gt_scenario"] == "constant"]
    leak = [i for i in clips.index if meta[i]["gt_scenario"] == "leak" and meta[i]["gt_leak_character"]
            == clips.loc[i, "character"]]
    assert len(swap) == 2 and len(const) == 2 and len(leak) == 1
    for i in swap:
        assert clips.loc[i, "swapped"] == 1
        assert abs(clips.loc[i, "swap_onset_s"] - meta[i]["gt_swap_s"]) <= 1.0
    assert (clips.loc[const, "swapped"] == 0).all()
    assert clips.loc[leak[0], "leakage_max"] > clips.loc[const, "leakage_max"].max() + 0.1


def test_bad_cast_config_is_a_usage_error(tmp_path):
    from driftbench.config import compose
    from driftbench.errors import UsageError
    from driftbench.sources.base import SourceContext
    from driftbench.sources.synthetic import SyntheticSource

    cfg = compose(["model=synthetic"]).model
    assert cfg.cast == 1  # the default run is one character per clip
    ctx = SourceContext(work_dir=tmp_path, cache_dir=tmp_path)
    for changes in ({"cast": 3}, {"cast": 0}, {"cast": 2, "source": str(tmp_path)}):
        bad = cfg.copy()
        for k, v in changes.items():
            bad[k] = v
        with pytest.raises(UsageError, match=r"model\.cast"):
            SyntheticSource(bad, ctx).clips()
