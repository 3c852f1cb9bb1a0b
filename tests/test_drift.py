"""Metric definitions on small, hand-checkable series (the real-media checks live elsewhere)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftbench.measure import drift
from driftbench.measure.clip import MetricSettings


def test_time_to_loss_needs_a_run_of_min_duration():
    t = np.arange(0, 10, 0.5)
    v = np.full_like(t, 0.8)
    v[6:9] = 0.1  # 1.5 s below: not a loss at min 2 s
    assert drift.time_to_loss(t, v, 0.4, 2.0, 0.5) is None
    v[12:16] = 0.1  # 6.0 .. 7.5 s: 4 samples = 2 s
    assert drift.time_to_loss(t, v, 0.4, 2.0, 0.5) == 6.0


def test_face_loss_is_never_a_gain():
    """A sample without a face continues or starts a loss run like one of another face (issue 14: it used
    to neither start nor break one, so losing the face could only improve survival)."""
    t = np.arange(0, 6, 0.5)
    v = np.array([0.8, 0.8, 0.1, np.nan, 0.1, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8])
    assert drift.time_to_loss(t, v, 0.4, 2.0, 0.5) is None  # below or faceless from 1.0 to 2.0 s: 1.5 s
    v[5] = 0.1  # below or faceless from 1.0 through 2.5 s (2 s)
    assert drift.loss_run(t, v, 0.4, 2.0, 0.5) == (1.0, "identity")
    # a run of missing faces alone is a loss of its own cause
    v2 = np.full_like(t, 0.8)
    v2[6:10] = np.nan
    assert drift.loss_run(t, v2, 0.4, 2.0, 0.5) == (3.0, "no_face")
    v2[9] = 0.8  # 1.5 s without the face: no loss
    assert drift.loss_run(t, v2, 0.4, 2.0, 0.5) is None
    # a clip without any face is lost at its first sample, however short
    assert drift.loss_run(t[:2], np.full(2, np.nan), 0.4, 2.0, 0.5) == (0.0, "no_face")
    assert drift.longest_no_face_s(np.isfinite(v2), 0.5) == 1.5


def test_no_face_clip_stays_in_n_and_survival():
    t = np.arange(0, 10, 0.5)
    fr = _frames(t, np.full(len(t), np.nan))
    s = drift.clip_summary(fr, drift.curve(fr, 1.0), duration_s=10.0, threshold=0.4, metrics=MetricSettings(),
                           fps=2.0)
    assert s["lost"] == 1 and s["time_to_loss_s"] == 0.0 and s["survival_time_s"] == 0.0
    assert s["loss_cause"] == "no_face" and s["face_rate"] == 0.0 and s["longest_no_face_s"] == 10.0


def test_opening_starts_after_a_first_frame_reference():
    """The opening excludes the frames a first-frame reference is built from ([0, 1 s)): their high
    similarity would bias every drift upward (issue 14)."""
    t = np.arange(0, 20, 0.5)
    sim = np.where(t < 1.0, 0.99, 0.8)  # the reference frames are (nearly) the reference itself
    fr = _frames(t, sim)
    cv = drift.curve(fr, 1.0)
    m = MetricSettings()
    ref = drift.Reference(np.ones(4, np.float32), None, 0.0, 0.0, 0.0, 30.0, "first_frame", 2, t_end=1.0)
    start = drift.opening_start(ref)
    assert start == 1.0
    s = drift.clip_summary(fr, cv, duration_s=20.0, threshold=0.4, metrics=m, fps=2.0, opening_start_s=start)
    assert s["opening_dec"] == pytest.approx(0.8) and s["drift_dec_at_5s"] == pytest.approx(0.0)
    assert s["drift_dec_at_end"] == pytest.approx(0.0) and s["opening_start_s"] == 1.0
    old = drift.clip_summary(fr, cv, duration_s=20.0, threshold=0.4, metrics=m, fps=2.0)  # [0, 2 s)
    assert old["opening_dec"] == pytest.approx(0.895) and old["drift_dec_at_5s"] > 0.09
    # reference images: the opening starts at 0
    assert drift.opening_start(drift.Reference(np.ones(4, np.float32), None, 0, 0, 0, 30, "images", 1)) == 0.0


def test_centred_smoothing_keeps_a_step_at_its_place():
    t = np.arange(0, 20, 0.5)
    v = np.where(t < 15, 0.8, 0.1)
    s = drift.smooth(t, v, 1.0)
    assert s[t == 14.5][0] == 0.8 and s[t == 15.0][0] == 0.1
    # jittered sampling (25 fps video at 2 frames/s: 0.48 / 0.52 s apart) keeps both neighbours
    tj = np.ceil(np.arange(0, 20, 0.5) * 25 - 1e-9) / 25  # the first 25 fps frame at or after k/2 s
    sj = drift.smooth(tj, np.where(tj < 15, 0.8, 0.1), 1.0)
    assert sj[tj == 15.0][0] == 0.1 and sj[tj == 14.52][0] == 0.8
    # an isolated bad frame is removed by the median
    v2 = np.full_like(t, 0.8)
    v2[10] = -0.2
    assert np.all(drift.smooth(t, v2, 1.0) == 0.8)


def _frames(t, sim):
    return pd.DataFrame(
        {
            "t": t,
            "face_found": np.isfinite(sim),
            "sim_raw": sim,
            "sim_dec": sim,
            "sim_open": sim,
            "sim_raw_smooth": drift.smooth(t, sim, 1.0),
            "sim_dec_smooth": drift.smooth(t, sim, 1.0),
        }
    )


def test_clip_summary_drift_slope_and_horizons():
    t = np.arange(0, 40, 0.5)
    sim = 0.9 - 0.3 * t / 40  # linear decline: -0.45 per minute
    fr = _frames(t, sim)
    cv = drift.curve(fr, 1.0)
    s = drift.clip_summary(fr, cv, duration_s=40.0, threshold=0.4, metrics=MetricSettings(), fps=2.0)
    assert s["opening_dec"] == pytest.approx(np.median(sim[t < 2]))
    assert s["sim_dec_at_30s"] == pytest.approx(np.median(sim[(t >= 28) & (t < 30)]))
    assert s["drift_dec_at_30s"] == pytest.approx(s["opening_dec"] - s["sim_dec_at_30s"])
    assert s["slope_dec_per_min"] == pytest.approx(-0.45, abs=0.01)
    assert np.isnan(s["sim_dec_at_60s"])  # the clip is shorter than 60 s
    assert s["lost"] == 0 and np.isnan(s["time_to_loss_s"]) and s["survival_time_s"] == 40.0
    assert s["auc_dec"] == pytest.approx(sim.mean(), abs=0.01)
    assert s["sim_dec_at_end"] == pytest.approx(np.median(sim[t >= 38]))
    assert s["drift_dec_at_end"] == pytest.approx(s["opening_dec"] - s["sim_dec_at_end"])


def test_curve_bins_have_median_and_count():
    t = np.arange(0, 3, 0.5)
    sim = np.array([0.9, 0.7, 0.5, np.nan, 0.4, 0.2])
    cv = drift.curve(_frames(t, sim), 1.0)
    assert list(cv["t_start"]) == [0.0, 1.0, 2.0]
    assert list(cv["n_samples"]) == [2, 2, 2]
    assert list(cv["n_faces"]) == [2, 1, 2]
    assert cv["sim_raw"].tolist() == pytest.approx([0.8, 0.5, 0.3])


def test_theil_sen_equals_scipy_on_random_data():
    """(tests/test_identity_real.py checks the same on real curves.)"""
    from scipy.stats import theilslopes

    rng = np.random.default_rng(1)
    for n in (3, 4, 17, 60):
        x = np.sort(rng.uniform(0, 60, n))
        y = rng.normal(0.8, 0.1, n) - 0.002 * x
        assert drift.theil_sen_slope(x, y) == pytest.approx(theilslopes(y, x).slope, rel=1e-12, abs=1e-15)
    x = np.array([0.0, 1.0, 1.0, 2.0])  # ties in x are skipped, as scipy does
    y = np.array([0.9, 0.8, 0.7, 0.6])
    assert drift.theil_sen_slope(x, y) == pytest.approx(theilslopes(y, x).slope)


def test_end_horizon_is_the_last_window_of_any_clip():
    """Issue 15: drift at the end (the clip's last window_s) exists for clips of any length."""
    from types import SimpleNamespace

    from driftbench.measure import drift

    t = np.arange(0, 12, 0.5)
    sim = np.where(t < 8, 0.9, 0.5)
    frames = pd.DataFrame({"t": t, "face_found": True, "sim_raw": sim, "sim_dec": sim,
                           "sim_dec_smooth": sim, "sim_raw_smooth": sim})
    curv = drift.curve(frames.assign(sim_open=sim), 1.0)
    m = SimpleNamespace(
        opening_s=2.0, window_s=2.0, horizons=(5.0, 30.0), loss_score="decoupled", min_loss_s=2.0
    )
    s = drift.clip_summary(frames, curv, duration_s=12.0, threshold=0.4, metrics=m, fps=2.0)
    assert np.isnan(s["drift_dec_at_30s"])  # a 12 s clip does not reach 30 s
    assert s["sim_dec_at_end"] == pytest.approx(0.5) and s["drift_dec_at_end"] == pytest.approx(0.4)
    assert s["drift_raw_at_end"] == pytest.approx(0.4)


def test_drift_verdict_flags_a_sustained_drop_and_dates_its_onset():
    t = np.arange(0, 40, 0.5)
    sim = np.where(t < 20, 0.85, 0.70)  # a 0.15 drop at 20 s, held to the end
    fr = _frames(t, sim)
    level, _ = drift.drift_level(fr, "sim_dec", opening_start_s=1.0, opening_s=2.0, window_s=4.0, min_s=4.0)
    assert level == pytest.approx(0.15)
    verdict = {"threshold": 0.05, "window_s": 4.0, "min_s": 4.0, "score": "dec"}
    s = drift.clip_summary(fr, drift.curve(fr, 1.0), duration_s=40.0, threshold=0.4, metrics=MetricSettings(),
                           fps=2.0, opening_start_s=1.0, verdict=verdict)
    # the trailing 4 s median crosses once more than half its window lies after the drop: 22 s
    assert s["drifting"] == 1 and s["time_to_drift_s"] == pytest.approx(22.0)
    assert s["drift_survival_time_s"] == s["time_to_drift_s"] and s["lost"] == 0
    # a brief dip shorter than the run is not drift, and without a calibrated verdict the columns are empty
    dip = np.where((t >= 20) & (t < 23), 0.6, 0.85)
    s2 = drift.clip_summary(
        _frames(t, dip),
        drift.curve(_frames(t, dip), 1.0),
        duration_s=40.0,
        threshold=0.4,
        metrics=MetricSettings(),
        fps=2.0,
        opening_start_s=1.0,
        verdict=verdict,
    )
    assert s2["drifting"] == 0 and np.isnan(s2["time_to_drift_s"]) and s2["drift_survival_time_s"] == 40.0
    s3 = drift.clip_summary(
        fr,
        drift.curve(fr, 1.0),
        duration_s=40.0,
        threshold=0.4,
        metrics=MetricSettings(),
        fps=2.0,
        opening_start_s=1.0,
    )
    assert np.isnan(s3["drifting"])
    # too short for a run: no level
    assert drift.sustained_drift(t[:4], np.full(4, 0.3), 4.0, 0.5) == (-np.inf, None)


def test_a_drift_verdict_of_another_decoupler_fit_is_stale():
    v = {"threshold": 0.08, "decoupler": {"name": "gated-lift", "fit_id": "abc"}}
    assert not drift.drift_verdict_stale(v, {"name": "gated-lift", "fit_id": "abc", "params": {}})
    assert drift.drift_verdict_stale(v, {"name": "gated-lift", "fit_id": "def"})
    assert drift.drift_verdict_stale({"threshold": 0.08}, {"name": "none"})
