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


def test_time_to_loss_ignores_missing_faces_inside_a_run():
    t = np.arange(0, 6, 0.5)
    v = np.array([0.8, 0.8, 0.1, np.nan, 0.1, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8])
    assert drift.time_to_loss(t, v, 0.4, 2.0, 0.5) is None  # below from 1.0 to 2.0 s: 1.5 s
    v[5] = 0.1  # now below from 1.0 through 2.5 s (2 s), the hidden face at 1.5 s does not break it
    assert drift.time_to_loss(t, v, 0.4, 2.0, 0.5) == 1.0


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
    return pd.DataFrame({"t": t, "face_found": np.isfinite(sim), "sim_raw": sim, "sim_dec": sim, "sim_open": sim,
                         "sim_raw_smooth": drift.smooth(t, sim, 1.0), "sim_dec_smooth": drift.smooth(t, sim, 1.0)})


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
    m = SimpleNamespace(opening_s=2.0, window_s=2.0, horizons=(5.0, 30.0), loss_score="decoupled", min_loss_s=2.0)
    s = drift.clip_summary(frames, curv, duration_s=12.0, threshold=0.4, metrics=m, fps=2.0)
    assert np.isnan(s["drift_dec_at_30s"])  # a 12 s clip does not reach 30 s
    assert s["sim_dec_at_end"] == pytest.approx(0.5) and s["drift_dec_at_end"] == pytest.approx(0.4)
    assert s["drift_raw_at_end"] == pytest.approx(0.4)
