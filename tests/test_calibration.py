"""Calibrated thresholds: the decoupled threshold is calibrated on the decoupled score itself (never
reused from the raw one), matches the installed decoupler, and drives identity-loss detection."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from driftbench.errors import UsageError
from driftbench.measure.decouple import load_decoupler
from driftbench.validity import calibration
from driftbench.weights import artefacts
from tests.conftest import FACES, ROOT, VIDEO, needs_shared


def test_decoupled_threshold_never_falls_back_to_raw(tmp_path):
    entry = calibration.thresholds()["backends"]["sface"]
    only_raw = {"backends": {"sface": {k: v for k, v in entry.items() if k != "dec"}}}
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(only_raw))
    raw, _ = calibration.threshold_for("sface", score="raw", path=path)
    # the raw threshold is unchanged (in-domain calibration where the entry has one, else the photo pairs')
    assert raw == pytest.approx(calibration.threshold_for("sface", score="raw")[0])
    with pytest.raises(UsageError, match="driftbench calibrate"):
        calibration.threshold_for("sface", score="dec", path=path)


def test_stored_decoupled_threshold_belongs_to_the_installed_decoupler():
    thr, prov = calibration.threshold_for("sface", score="dec")
    live = load_decoupler("sface").describe()
    assert prov["score"] == "dec" and prov["stale"] is False
    assert prov["decoupler"]["fit_id"] == live["fit_id"] and live["name"] == "gated-shift"
    assert 0.2 < thr < 0.6


def test_changed_decoupler_marks_thresholds_stale(tmp_path):
    data = calibration.thresholds()
    data["backends"]["sface"]["decoupler"]["fit_id"] = "000000000000"
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(data))
    _, prov = calibration.threshold_for("sface", score="dec", path=path)
    assert prov["stale"] is True


def test_one_function_names_every_artefact_by_backend_key(tmp_path, monkeypatch):
    """Thresholds, decoupler and drift calibration of a weights variant live under one name each, written
    to the user's directory (never into the package) and found there before the packaged ones."""
    monkeypatch.setenv(artefacts.ARTEFACTS_ENV, str(tmp_path))
    for kind in artefacts.KINDS:
        assert (
            artefacts.artefact_path(kind, "sface:yunet-int8bq") == tmp_path / kind / "sface_yunet-int8bq.json"
        )
    packaged = artefacts.find("thresholds", "sface:yunet-int8bq")
    assert packaged == artefacts.PACKAGED_ROOT / "thresholds" / "sface_yunet-int8bq.json"
    entry = {k: v for k, v in calibration.thresholds()["backends"]["sface:yunet-int8bq"].items()
             if k not in ("file", "domain")}
    entry["dec"] = {**entry["dec"], "threshold_at_far_0.001": 0.123}
    written = calibration.write_thresholds({"sface:yunet-int8bq": entry})
    assert written == tmp_path / "thresholds" / "sface_yunet-int8bq.json"
    assert artefacts.find("thresholds", "sface:yunet-int8bq") == written
    thr, prov = calibration.threshold_for("sface:yunet-int8bq", score="dec")
    assert thr == 0.123 and prov["file"] == str(written)
    # without the variable, nothing is written inside the package: the user directory is the default
    monkeypatch.delenv(artefacts.ARTEFACTS_ENV)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert artefacts.write_root() == tmp_path / "xdg" / "driftbench" / "artefacts"
    assert artefacts.PACKAGED_ROOT not in artefacts.write_root().parents


def test_domain_far_holds_people_out_and_counts_pairs_beyond():
    import numpy as np

    rng = np.random.default_rng(1)
    people = [f"p{i}" for i in range(30)]
    a = rng.choice(people, 300000)
    b = rng.choice(people, 300000)
    keep = a != b
    s = rng.normal(0.1, 0.08, keep.sum())
    res = calibration.domain_far(s, a[keep], b[keep], fars=(0.001, 0.00001), genuine=np.full(60, 0.8),
                                 genuine_groups=[people[i % 30] for i in range(60)])
    blk = res["by_far"]["0.001"]
    # the threshold sits at the largest nominal rate whose person-held-out rate is within the claim
    assert blk["supported"] and blk["n_impostor_beyond"] >= 20 and blk["heldout_n_pairs"] > 0
    assert blk["heldout_far"] <= 0.001 and blk["nominal_far"] <= 0.001
    assert blk["n_impostor_beyond"] == int(blk["nominal_far"] * keep.sum())
    assert blk["heldout_tar"] == 1.0 and blk["heldout_n_genuine"] == 60
    assert res["by_far"]["1e-05"]["supported"] is False  # < 3 pairs beyond: 0.001% is not claimed
    assert res["far_supported"] == 0.001


@needs_shared
def test_calibrate_on_real_photos_matches_the_stored_thresholds(analyzer):
    """Recalibrating on the 1830 labelled deepface pairs gives the packaged numbers, and the decoupled
    threshold is the one measured on decoupled scores."""
    from driftbench.measure.cache import SignalCache
    from driftbench.validity import verification as V
    from driftbench.validity.validate import photo_pairs

    dec = load_decoupler("sface")
    entry = calibration.calibrate(analyzer, FACES / "deepface", dec)
    stored = calibration.thresholds()["backends"]["sface"]
    for score in ("raw", "dec"):
        for key in ("threshold_at_far_0.001", "d_prime", "margin", "tar_at_far_0.001", "diff_mean"):
            assert entry[score][key] == pytest.approx(stored[score][key], abs=1e-5), (score, key)
    _, pairs = photo_pairs(analyzer, FACES / "deepface", SignalCache())
    measured = V.verification_metrics(dec.apply(pairs), pairs["same"].to_numpy())
    assert entry["dec"]["threshold_at_far_0.001"] == pytest.approx(
        measured["threshold_at_far_0.001"], abs=1e-9
    )
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


def test_drift_verdict_calibration_keeps_held_out_false_flags_within_one_percent():
    import numpy as np

    rng = np.random.default_rng(3)
    levels = rng.normal(0.0, 0.02, 60)
    people = [f"p{i // 2}" for i in range(60)]
    cal = calibration.calibrate_drift(levels, people, [f"c{i}" for i in range(60)], window_s=4.0, min_s=4.0)
    # the tail is the most sensitive one whose leave-one-person-out flag rate is <= 1 %; the nested held-out
    # rate (tail and threshold chosen without the held-out person) is reported beside it
    assert calibration._lopo_rate(levels, np.asarray(people), cal["tail"]) <= 0.01
    assert 0.0 <= cal["heldout"]["rate"] <= 0.05 and cal["heldout"]["n_clips"] == 60
    assert cal["threshold"] < 0.15  # a drop of 0.15 (infinitetalk_dub_9's size) is flagged
    assert cal["tail"] in calibration.DRIFT_TAILS and cal["n_people"] == 30
    # an outlying clip is flagged when held out, and the rule then moves to a smaller tail
    levels[0] = 0.2
    cal2 = calibration.calibrate_drift(levels, people, [f"c{i}" for i in range(60)], window_s=4.0, min_s=4.0)
    assert "c0" in cal2["heldout"]["flagged"]
