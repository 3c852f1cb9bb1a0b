"""The drift verdict in units of the clip's own noise (issue 14, docs/DRIFT-VERDICT.md): pure, no media."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftbench.measure import drift
from driftbench.measure.clip import MetricSettings
from driftbench.validity import calibration


def _frames(t: np.ndarray, sim: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"t": t, "face_found": np.isfinite(sim), "sim_raw": sim, "sim_dec": sim,
                         "sim_open": sim, "sim_raw_smooth": sim, "sim_dec_smooth": sim})


def test_noise_scale_measures_sample_noise_not_slow_drift_or_a_single_jump():
    rng = np.random.default_rng(0)
    t = np.arange(0, 60, 0.5)
    e = rng.normal(0, 0.02, len(t))
    assert drift.noise_scale(t, 0.8 + e) == pytest.approx(0.02, rel=0.2)
    # a slow drift of 0.2 over the clip and a step of 0.3 hardly move it
    base = drift.noise_scale(t, 0.8 + e)
    assert drift.noise_scale(t, 0.8 - 0.2 * t / 60 + e) == pytest.approx(base, rel=0.05)
    step = np.where(t < 30, 0.8, 0.5) + e
    assert drift.noise_scale(t, step) == pytest.approx(drift.noise_scale(t, 0.8 + e), rel=0.1)
    # twice the noise, twice the scale; samples before the start and without a face are left out
    assert drift.noise_scale(t, 0.8 + 2 * e) == pytest.approx(2 * drift.noise_scale(t, 0.8 + e))
    gappy = (0.8 + e).copy()
    gappy[::7] = np.nan
    assert np.isfinite(drift.noise_scale(t, gappy))
    loud_start = np.where(t < 10, 0.8 + 10 * e, 0.8 + e)
    assert drift.noise_scale(t, loud_start, 10.0) == pytest.approx(
        drift.noise_scale(t[t >= 10], (0.8 + e)[t >= 10]))
    assert np.isnan(drift.noise_scale(t[:3], np.full(3, 0.8)))


def test_verdict_threshold_scales_with_the_clip_noise_above_a_floor():
    level_rule = {"threshold": 0.1}
    assert drift.verdict_threshold(level_rule, 0.05) == 0.1  # the first shipped rule: the level itself
    v = {"threshold": 3.0, "noise_floor": 0.02}
    assert drift.verdict_threshold(v, 0.0) == pytest.approx(0.06)
    assert drift.verdict_threshold(v, 0.02) == pytest.approx(3.0 * np.hypot(0.02, 0.02))
    assert drift.verdict_threshold(v, 0.06) > 3.0 * 0.06  # a noisy clip needs a larger drop
    assert drift.verdict_threshold(v, float("nan")) == pytest.approx(0.06)  # no estimate: the floor alone


def _expressive_population(seed: int = 5) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """60 identity-constant clips (2 per person) whose drift level is their own noise times a standard
    normal: clip 0 is the most expressive (noise 0.06), with by far the largest level in similarity units."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0.012, 0.025, 60)
    noise[0] = 0.06
    levels = noise * rng.normal(0.0, 1.0, 60)
    levels[0] = 0.06 * 1.5  # one and a half of its own noise units: ordinary for it, the largest level of all
    return levels, noise, [f"p{i // 2}" for i in range(60)], [f"c{i}" for i in range(60)]


def test_noise_units_keep_an_expressive_real_clip_unflagged_where_the_level_rule_flags_it():
    levels, noise, people, clips = _expressive_population()
    by_level = calibration.calibrate_drift(levels, people, clips, window_s=5.0, min_s=5.0)
    assert "c0" in by_level["heldout"]["flagged"] and by_level["statistic"] == "level"
    assert "noise_floor" not in by_level
    cal = calibration.calibrate_drift(levels, people, clips, window_s=5.0, min_s=5.0, noise=noise)
    assert cal["statistic"] == "noise_units" and cal["heldout"]["flagged"] == []
    assert cal["noise_floor"] == pytest.approx(float(np.median(noise)))
    assert cal["tail"] in calibration.DRIFT_TAILS and cal["heldout"]["n_clips"] == 60
    # the verdict the measurement reads: a drop of 0.15 at ordinary noise (infinitetalk's size) is drifting,
    # the expressive clip's own level is not
    assert drift.verdict_threshold(cal, 0.02) < 0.15
    assert levels[0] < drift.verdict_threshold(cal, noise[0])
    # too few clips with a level: no verdict
    with pytest.raises(Exception, match="identity-constant clip"):
        calibration.calibrate_drift([0.1, -np.inf], ["a", "b"], ["x", "y"], window_s=5.0, min_s=5.0,
                                    noise=[0.02, 0.02])


def test_noise_units_of_a_very_smooth_clip_are_floored():
    # without the floor a near-noiseless clip's small level would be many units
    u = calibration.noise_units([0.03, 0.03], [1e-4, float("nan")], 0.02)
    assert u[0] == pytest.approx(0.03 / np.hypot(1e-4, 0.02)) and u[1] == pytest.approx(1.5)


def test_the_noise_unit_verdict_dates_the_onset_like_the_level_rule():
    t = np.arange(0, 40, 0.5)
    rng = np.random.default_rng(2)
    sim = np.where(t < 20, 0.85, 0.70) + rng.normal(0, 0.005, len(t))
    fr = _frames(t, sim)
    noise = drift.noise_scale(t, sim, 1.0)
    v = {"threshold": 3.0, "noise_floor": 0.02, "window_s": 4.0, "min_s": 4.0, "score": "dec"}
    s = drift.clip_summary(fr, drift.curve(fr, 1.0), duration_s=40.0, threshold=0.4, metrics=MetricSettings(),
                           fps=2.0, opening_start_s=1.0, verdict=v)
    assert s["drift_threshold"] == pytest.approx(drift.verdict_threshold(v, noise))
    level_rule = {**v, "threshold": s["drift_threshold"]}
    del level_rule["noise_floor"]
    s_level = drift.clip_summary(fr, drift.curve(fr, 1.0), duration_s=40.0, threshold=0.4,
                                 metrics=MetricSettings(), fps=2.0, opening_start_s=1.0, verdict=level_rule)
    assert s["drifting"] == 1 and s["time_to_drift_s"] == pytest.approx(s_level["time_to_drift_s"])
    assert 20.0 <= s["time_to_drift_s"] <= 23.0 and s["drift_survival_time_s"] == s["time_to_drift_s"]
    # the same drop in an expressive clip (noise 0.1) is within its own noise: censored at the end
    loud = np.where(t < 20, 0.85, 0.70) + rng.normal(0, 0.1, len(t))
    fl = _frames(t, loud)
    s2 = drift.clip_summary(fl, drift.curve(fl, 1.0), duration_s=40.0, threshold=0.0,
                            metrics=MetricSettings(), fps=2.0, opening_start_s=1.0, verdict=v)
    assert s2["drift_level"] > s_level["drift_threshold"]  # which the level rule would have flagged
    assert s2["drifting"] == 0 and np.isnan(s2["time_to_drift_s"]) and s2["drift_survival_time_s"] == 40.0


def test_drift_variants_table_measures_held_out_flags_and_margins():
    """`driftbench dev drift-variants` (docs/DRIFT-VERDICT.md) on a made-up population: per variant, the
    nested leave-one-person-out flags, infinitetalk's statistic against the threshold, the stable clips'."""
    from driftbench.validity import drift_variants as DV

    levels, noise, people, clips = _expressive_population()
    ctrl = pd.DataFrame({"clip_id": clips, "name": clips, "set": "real", "person": people, "case": "",
                         "level_dec": levels, "noise_dec": noise, "level_raw": levels * 1.5,
                         "noise_raw": noise * 1.2})
    names = ["infinitetalk_dub_9.mp4", "stable_a.mp4", "negative_x.mp4"]
    gen = pd.DataFrame({"clip_id": names, "name": names, "set": "generated",
                        "person": ["g1", "g2", "g3"], "case": ["drift", "", "negative"],
                        "level_dec": [0.2, 0.01, 0.5], "noise_dec": [0.02, 0.02, 0.02],
                        "level_raw": [0.27, 0.02, 0.5], "noise_raw": [0.03, 0.03, 0.03]})
    stats = pd.concat([ctrl, gen], ignore_index=True)
    v0, v1f = DV.evaluate(stats, "V0"), DV.evaluate(stats, "V1f")
    assert v0["heldout_flagged"] == ["c0"] and v1f["heldout_flagged"] == []
    for r in (v0, v1f):
        assert r["n_controls"] == 60 and r["n_stable"] == 1 and r["stable_top"] == "stable_a.mp4"
        assert r["infinitetalk_flagged"] and r["infinitetalk_ratio"] > 1 > r["stable_top_ratio"]
    # V1f's statistic of infinitetalk: its level over sqrt(noise^2 + median control noise^2)
    assert v1f["infinitetalk"][0] == pytest.approx(0.2 / np.hypot(0.02, np.median(noise)))
    md = DV.table([v0, v1f])
    assert "| V0 | 1 of 60 (c0) |" in md and "| V1f | 0 of 60 |" in md
