"""Calibrated thresholds: the decoupled threshold is calibrated on the decoupled score itself (never
reused from the raw one), matches the installed decoupler, and drives identity-loss detection."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from driftbench import calibration
from driftbench.decouple import load_decoupler
from driftbench.errors import UsageError
from tests.conftest import FACES, ROOT, VIDEO, needs_shared


def test_decoupled_threshold_never_falls_back_to_raw(tmp_path):
    data = json.loads(calibration.THRESHOLDS_FILE.read_text())
    entry = data["backends"]["sface"]
    only_raw = {"backends": {"sface": {k: v for k, v in entry.items() if k != "dec"}}}
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(only_raw))
    raw, _ = calibration.threshold_for("sface", score="raw", path=path)
    assert raw == pytest.approx(entry["raw"]["threshold_at_far_0.001"])
    with pytest.raises(UsageError, match="driftbench calibrate"):
        calibration.threshold_for("sface", score="dec", path=path)


def test_stored_decoupled_threshold_belongs_to_the_installed_decoupler():
    thr, prov = calibration.threshold_for("sface", score="dec")
    live = load_decoupler("sface").describe()
    assert prov["score"] == "dec" and prov["stale"] is False
    assert prov["decoupler"]["fit_id"] == live["fit_id"] and live["name"] == "gated-shift"
    assert 0.2 < thr < 0.6


def test_changed_decoupler_marks_thresholds_stale(tmp_path):
    data = json.loads(calibration.THRESHOLDS_FILE.read_text())
    data["backends"]["sface"]["decoupler"]["fit_id"] = "000000000000"
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(data))
    _, prov = calibration.threshold_for("sface", score="dec", path=path)
    assert prov["stale"] is True


@needs_shared
def test_calibrate_on_real_photos_matches_the_stored_thresholds(analyzer):
    """Recalibrating on the 1830 labelled deepface pairs gives the packaged numbers, and the decoupled
    threshold is the one measured on decoupled scores."""
    from driftbench import verification as V
    from driftbench.cache import SignalCache
    from driftbench.validate import photo_pairs

    dec = load_decoupler("sface")
    entry = calibration.calibrate(analyzer, FACES / "deepface", dec)
    stored = calibration.thresholds()["backends"]["sface"]
    for score in ("raw", "dec"):
        for key in ("threshold_at_far_0.001", "d_prime", "margin", "tar_at_far_0.001", "diff_mean"):
            assert entry[score][key] == pytest.approx(stored[score][key], abs=1e-5), (score, key)
    _, pairs = photo_pairs(analyzer, FACES / "deepface", SignalCache())
    measured = V.verification_metrics(dec.apply(pairs), pairs["same"].to_numpy())
    assert entry["dec"]["threshold_at_far_0.001"] == pytest.approx(measured["threshold_at_far_0.001"], abs=1e-9)
    assert entry["decoupler"]["fit_id"] == dec.describe()["fit_id"]
    # the decoupler leaves different-person scores alone, so the false-accept threshold stays put
    assert entry["dec"]["d_prime"] > entry["raw"]["d_prime"]


@needs_shared
def test_run_detects_identity_loss_of_hard_negative_with_the_decoupled_threshold(tmp_path):
    """`driftbench run` on the hard negative (a similar-looking different woman as reference): identity
    loss is detected on the smoothed decoupled score against the decoupled calibrated threshold."""
    import pandas as pd

    src = VIDEO / "generated"
    name = "negative_hard_aiface4clip_aiface2ref"
    manifest = tmp_path / "clips.csv"
    manifest.write_text(f"clip,reference\n{src / (name + '.mp4')},{src / (name + '.png')}\n")
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "driftbench", "run", "model=folder", f"model.path={manifest}",
                        f"output.dir={out}", "report.html=false", "progress=false", "device=cpu"],
                       cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    run = json.loads((out / "run.json").read_text())
    thr, _ = calibration.threshold_for("sface", score="dec")
    assert run["threshold"]["score"] == "dec" and run["threshold"]["value"] == pytest.approx(thr)
    assert run["decoupler"]["fit_id"] == load_decoupler("sface").describe()["fit_id"]
    clips = pd.read_csv(out / "clips.csv")
    assert int(clips["lost"].iloc[0]) == 1
