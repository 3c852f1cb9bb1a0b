"""Identity over time on real footage: the no-drift control, a splice to another person, and face
verification on labelled real photos (issue 2's acceptance checks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import FACES, VIDEO, needs_shared
from tests.helpers import last_line, run_cli, splice

pytestmark = needs_shared


@pytest.fixture(scope="module")
def control_run(tmp_path_factory, cache_dir) -> Path:
    out = tmp_path_factory.mktemp("control")
    code, stdout, stderr = run_cli("run", "model=folder", f"model.path={VIDEO / 'liveportrait/driving'}",
                                   "reference=first_frame", f"output.dir={out}", "report.html=false")
    assert code == 0, stderr
    assert Path(last_line(stdout)) == out
    return out


def test_identity_constant_footage_never_loses_identity(control_run):
    clips = pd.read_csv(control_run / "clips.csv")
    curves = pd.read_csv(control_run / "curves.csv")
    assert len(clips) == 10
    assert clips["time_to_loss_s"].isna().all(), clips[["clip_id", "time_to_loss_s"]]
    assert (clips["lost"] == 0).all()
    assert (clips["face_rate"] > 0.95).all()
    # VALIDITY.md: raw single-frame minimum 0.448, every 1 s median well above the FAR-0.1% threshold
    min_bin = curves["sim_raw"].min()
    print(f"control: minimum per-bin median (raw) {min_bin:.3f}, (decoupled) {curves['sim_dec'].min():.3f}")
    assert min_bin > clips["threshold"].iloc[0] + 0.05
    # the per-minute slope in clips.csv is scipy's Theil-Sen on the stored curve
    from scipy.stats import theilslopes

    for cid, c in curves.groupby("clip_id"):
        ok = c["sim_raw"].notna()
        want = theilslopes(c.loc[ok, "sim_raw"], c.loc[ok, "t_mid"]).slope * 60
        assert clips.set_index("clip_id").loc[cid, "slope_raw_per_min"] == pytest.approx(
            want, abs=1e-4
        )  # both rounded in CSV
    # d6.mp4: 0.82 in the first 5 s -> ~0.70 later (expressive, not drift)
    d6 = clips.set_index("clip_id").loc["d6.mp4"]
    assert 0.6 < d6["sim_raw_at_30s"] < 0.9


def test_run_directory_contents(control_run):
    for name in ("clips.csv", "curves.csv", "frames.parquet", "thumbs.parquet", "skipped.csv", "run.json"):
        assert (control_run / name).is_file(), name
    run = json.loads((control_run / "run.json").read_text())
    assert run["backend"]["weights"]["face_recognition_sface_2021dec_int8bq.onnx"].startswith("fb143eea")
    assert run["threshold"]["far"] == 0.001 and 0.3 < run["threshold"]["value"] < 0.5
    assert run["config"]["reference"] == "first_frame"
    assert "versions" in run and run["versions"]["onnxruntime"]
    import importlib.metadata as md

    # the torch engine's converter is recorded where it is installed (a dev dependency), absent elsewhere
    try:
        assert run["versions"]["onnx2fx"] == md.version("onnx2fx")
    except md.PackageNotFoundError:
        assert "onnx2fx" not in run["versions"]
    frames = pd.read_parquet(control_run / "frames.parquet")
    curves = pd.read_csv(control_run / "curves.csv")
    # curves at a fixed 1 s resolution with per-bin median and count
    assert set(np.diff(curves.groupby("clip_id")["t_start"].apply(list).iloc[0])) == {1.0}
    assert (curves["n_samples"] == 2).mean() > 0.9
    got = frames[frames["clip_id"] == "d0.mp4"]
    assert got["t"].is_monotonic_increasing and got["face_found"].all()
    assert {"yaw", "pitch", "roll", "age", "d_expr", "sim_raw", "sim_dec"} <= set(frames.columns)


@pytest.fixture(scope="module")
def splice_run(tmp_path_factory, cache_dir) -> Path:
    d = tmp_path_factory.mktemp("splice")
    clips = d / "clips"
    clips.mkdir()
    a, b = VIDEO / "liveportrait/driving/d6.mp4", VIDEO / "liveportrait/driving/d10.mp4"
    splice([(a, 0.0, 15.0), (b, 0.0, 10.0)], clips / "other_person_at_15s.mp4")
    splice([(a, 0.0, 15.0), (a, 15.0, 25.0)], clips / "same_person_at_15s.mp4")
    out = d / "run"
    code, _, stderr = run_cli("run", "model=folder", f"model.path={clips}", "reference=first_frame",
                              f"output.dir={out}", "report.html=false")
    assert code == 0, stderr
    return out


def test_splice_to_another_person_is_identity_loss_within_1s(splice_run):
    clips = pd.read_csv(splice_run / "clips.csv").set_index("clip_id")
    ttl = clips.loc["other_person_at_15s.mp4", "time_to_loss_s"]
    print(f"splice at 15.0 s: identity loss onset {ttl} s")
    assert abs(ttl - 15.0) <= 0.5  # the issue asks for 1 s; the cut lands on its own sample
    frames = pd.read_parquet(splice_run / "frames.parquet")
    after = frames[(frames["clip_id"] == "other_person_at_15s.mp4") & (frames["t"] > 16)]
    assert after["sim_raw"].median() < 0.3  # another person: ~0.0-0.2


def test_splice_of_the_same_person_is_not_identity_loss(splice_run):
    clips = pd.read_csv(splice_run / "clips.csv").set_index("clip_id")
    assert np.isnan(clips.loc["same_person_at_15s.mp4", "time_to_loss_s"])


def test_labelled_photos_same_person_above_different_person(analyzer):
    from driftbench.validity import verification as V

    faces = V.photo_faces(analyzer, V.deepface_photos(FACES / "deepface"))
    assert faces["face_found"].all()
    pairs = V.pair_table(faces)
    m = V.verification_metrics(pairs["sim_raw"].to_numpy(), pairs["same"].to_numpy())
    print(
        f"deepface photos: AUC {m['auc']:.4f}, EER {m['eer']:.4f} at threshold {m['eer_threshold']:.3f}, "
        f"d' {m['d_prime']:.2f}, margin {m['margin']:+.3f}, threshold@FAR0.1% "
        f"{m['threshold_at_far_0.001']:.3f}"
    )
    assert m["n_same"] == 140 and m["n_diff"] == 1690
    # VALIDITY.md baseline: AUC 1.000, d' 7.13, margin +0.08, TAR@FAR0.1% 100%
    assert m["auc"] >= 0.999 and m["d_prime"] > 6.5 and m["margin"] > 0.0 and m["tar_at_far_0.001"] == 1.0
    small = V.pair_table(V.photo_faces(analyzer, V.labelled_photos(FACES / "photos")))
    assert small.loc[small["same"], "sim_raw"].min() > small.loc[~small["same"], "sim_raw"].max()


def test_calibrated_threshold_matches_the_photo_evidence():
    from driftbench.validity.calibration import threshold_for

    thr, prov = threshold_for("sface", far=0.001, score="raw")
    assert 0.3 < thr < 0.5
    assert prov["n_diff"] == 1690 and prov["data"]["n_photos"] == 61
