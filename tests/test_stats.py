"""driftbench.results.stats against independent reference implementations on the same numbers, and on real
run tables with the expected direction of the effect."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftbench.results import stats
from tests.conftest import needs_shared
from tests.realruns import anitalker_run


# -- reference implementations written here, independently of the module under test ------------------------
def product_limit(durations: np.ndarray, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Textbook Kaplan-Meier: S(t) = prod over event times t_i <= t of (1 - d_i / n_i)."""
    times = np.unique(durations)
    s, out = 1.0, []
    for t in times:
        at_risk = np.sum(durations >= t)
        d = np.sum((durations == t) & events)
        s *= 1.0 - d / at_risk
        out.append(s)
    return times, np.array(out)


def exact_signed_rank_p(diffs: np.ndarray) -> float:
    """Two-sided exact Wilcoxon signed-rank p by enumerating all 2^n sign patterns (no ties, no zeros)."""
    ranks = pd.Series(np.abs(diffs)).rank().to_numpy()
    w_obs = ranks[diffs > 0].sum()
    total = ranks.sum()
    stat_obs = min(w_obs, total - w_obs)
    count = 0
    n = len(diffs)
    for signs in itertools.product((0, 1), repeat=n):
        w = ranks[np.array(signs, dtype=bool)].sum()
        if min(w, total - w) <= stat_obs + 1e-12:
            count += 1
    return min(1.0, count / 2**n)


def percentile_bootstrap(x: np.ndarray, n: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n, len(x)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


# -- bootstrap -----------------------------------------------------------------------------------------------
def test_bootstrap_mean_matches_an_independent_percentile_bootstrap() -> None:
    x = np.random.default_rng(7).normal(0.8, 0.1, size=40)
    ours = stats.bootstrap_mean(x, method="percentile", n_resamples=20000, seed=1)
    lo, hi = percentile_bootstrap(x, 20000, seed=99)
    assert ours.value == pytest.approx(x.mean())
    assert ours.n == 40
    assert ours.lo == pytest.approx(lo, abs=0.004) and ours.hi == pytest.approx(hi, abs=0.004)
    # and the BCa default agrees with the normal-theory interval on a normal sample
    bca = stats.bootstrap_mean(x, seed=1)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert bca.lo == pytest.approx(x.mean() - half, abs=0.006) and bca.hi == pytest.approx(
        x.mean() + half, abs=0.006
    )


def test_bootstrap_is_seeded_and_handles_edge_cases() -> None:
    x = [0.71, 0.62, 0.93, 0.55, 0.8, np.nan, None]
    a, b = stats.bootstrap_mean(x, seed=3), stats.bootstrap_mean(x, seed=3)
    assert a == b and a.n == 5
    assert stats.bootstrap_mean(x, seed=4) != a  # the seed is really used
    one = stats.bootstrap_mean([0.5])
    assert one.value == 0.5 and np.isnan(one.lo) and one.n == 1
    const = stats.bootstrap_mean([0.3, 0.3, 0.3])
    assert (const.lo, const.hi) == (0.3, 0.3)
    assert np.isnan(stats.bootstrap_mean([]).value)


def test_bootstrap_ci_covers_the_true_mean_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(11)
    hits = 0
    trials = 150
    for i in range(trials):
        x = rng.exponential(1.0, size=30)  # skewed, like per-clip drift
        e = stats.bootstrap_mean(x, seed=i, n_resamples=2000)
        hits += e.lo <= 1.0 <= e.hi
    assert 0.87 <= hits / trials <= 0.99


# -- Kaplan-Meier
# ----------------------------------------------------------------------------------------------
def test_kaplan_meier_matches_the_product_limit_formula_with_ties_and_censoring() -> None:
    d = np.array([2.0, 3.0, 3.0, 5.0, 8.0, 8.0, 12.0, 15.0, 15.0, 20.0])
    e = np.array([1, 1, 0, 1, 1, 0, 0, 1, 0, 0], dtype=bool)
    km = stats.kaplan_meier(d, e)
    times, ref = product_limit(d, e)
    for t, s in zip(times, ref, strict=True):
        assert km.at(t).value == pytest.approx(s, abs=1e-12)
    assert km.at(4.0).value == pytest.approx(ref[times <= 4.0][-1])  # step function between events
    assert km.n == 10 and km.n_lost == 5
    assert km.at(6.0).n == 6  # clips still observed at 6 s
    # the median is the first time S(t) <= 0.5
    assert km.median == pytest.approx(times[np.argmax(ref <= 0.5)])
    assert km.at(8.0).lo <= km.at(8.0).value <= km.at(8.0).hi


def test_kaplan_meier_is_undefined_after_the_last_censored_clip_and_median_may_not_be_reached() -> None:
    km = stats.kaplan_meier([10.0, 30.0, 40.0], [0, 0, 1])
    assert km.at(35.0).value == 1.0
    assert km.at(40.0).value == 0.0
    assert km.at(60.0).value == 0.0  # every clip lost by then: defined
    km2 = stats.kaplan_meier([10.0, 30.0, 40.0], [1, 0, 0])
    assert km2.at(30.0).value == pytest.approx(2 / 3)
    assert np.isnan(km2.at(41.0).value)  # nobody observed beyond 40 s and S > 0
    assert np.isinf(km2.median)


@pytest.mark.parametrize("lost", [True, False])
@pytest.mark.parametrize("duration", [0.0, 0.5, 12.5, 60.0])
def test_one_clip_curve_equals_scipys(duration: float, lost: bool) -> None:
    """A single clip's curve and band are read without importing scipy.stats (issue 20): the same arrays
    as scipy's ecdf with the closed exponential-Greenwood band, and the same Survival figures."""
    d, e = np.array([duration]), np.array([lost])
    timeline = np.unique(np.concatenate([[0.0], d]))
    fast = stats._one_clip_curve(d, e, timeline, stats.CONFIDENCE)
    ref = stats._scipy_curve(d, e, timeline, stats.CONFIDENCE)
    for a, b in zip(fast, ref, strict=True):
        np.testing.assert_array_equal(a, b)
    km = stats.kaplan_meier([duration], [int(lost)], observed=[60.0])
    assert km.n == 1 and km.n_lost == int(lost)
    assert km.median == (duration if lost else float("inf"))
    assert km.at(30.0).value == (0.0 if lost and duration <= 30.0 else 1.0)


def test_a_one_clip_report_path_imports_no_scipy_stats() -> None:
    """The statistics a one-clip run's report computes (survival, bootstrap of one value) leave scipy.stats
    unimported (a fresh interpreter: ~0.5 s CPU of the default command, issue 20)."""
    import subprocess
    import sys

    code = (
        "import sys; from driftbench.results import stats; "
        "km = stats.kaplan_meier([12.0], [1], observed=[60.0]); e = stats.bootstrap_mean([0.3]); "
        "assert km.median == 12.0 and e.n == 1; sys.exit(1 if 'scipy.stats' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("seed", range(40))
def test_kaplan_meier_and_logrank_equal_lifelines(seed: int) -> None:
    """scipy.stats computes the curve, its exponential-Greenwood band and the log-rank test; lifelines
    (the reference implementation, a dev dependency) must give the same numbers, ties and all."""
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test
    from lifelines.utils import median_survival_times

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    d = np.round(rng.uniform(0.5, 60.0, n), 1)
    e = rng.random(n) < rng.uniform(0.0, 1.0)
    if seed % 3 == 0:
        d[: n // 2] = 60.0  # ties at the clip length, as real runs have
    km = stats.kaplan_meier(d, e.astype(int))
    ref = KaplanMeierFitter(alpha=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(d, event_observed=e)
        med_ci = np.asarray(median_survival_times(ref.confidence_interval_)).ravel()
    ci = ref.confidence_interval_survival_function_
    np.testing.assert_allclose(km.timeline, ref.survival_function_.index.to_numpy(float))
    np.testing.assert_allclose(km.survival, ref.survival_function_.iloc[:, 0].to_numpy(), atol=1e-12)
    np.testing.assert_allclose(km.lo, ci.iloc[:, 0].to_numpy(), atol=1e-9)
    np.testing.assert_allclose(km.hi, ci.iloc[:, 1].to_numpy(), atol=1e-9)
    np.testing.assert_allclose(km.at_risk, ref.event_table["at_risk"].reindex(ref.survival_function_.index))
    assert km.median == ref.median_survival_time_
    assert (km.median_lo, km.median_hi) == (med_ci[0], med_ci[1])
    m = n // 2
    if m and e.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = logrank_test(d[:m], d[m:], event_observed_A=e[:m], event_observed_B=e[m:]).p_value
        assert stats.logrank_p(d[:m], e[:m], d[m:], e[m:]) == pytest.approx(p, abs=1e-9)


def test_still_same_person_per_clip() -> None:
    clips = pd.DataFrame({"lost": [1, 1, 0, 0], "survival_time_s": [10.0, 45.0, 20.0, 61.0],
                          "duration_s": [50.0, 50.0, 20.0, 61.0]})
    got = stats.still_same_person(clips, 30.0).tolist()
    assert got[:2] == [0.0, 1.0] and np.isnan(got[2]) and got[3] == 1.0


# -- paired comparisons
# -----------------------------------------------------------------------------------------
def test_wilcoxon_matches_exact_enumeration() -> None:
    diffs = np.array([0.031, -0.012, 0.044, 0.027, 0.058, -0.006, 0.019, 0.036])
    _, p = stats.wilcoxon_p(diffs)
    assert p == pytest.approx(exact_signed_rank_p(diffs), abs=1e-12)
    assert stats.wilcoxon_p([0.0, 0.0, 0.0]) == (0.0, 1.0)
    assert np.isnan(stats.wilcoxon_p([])[1])


def test_paired_compare_drops_incomplete_pairs() -> None:
    t = [0.9, 0.8, np.nan, 0.7, 0.95]
    b = [0.8, 0.75, 0.6, np.nan, 0.9]
    pc = stats.paired_compare(t, b)
    assert pc.n_pairs == 3
    assert pc.delta.value == pytest.approx(np.mean([0.1, 0.05, 0.05]))
    with pytest.raises(ValueError):
        stats.paired_compare([1.0], [1.0, 2.0])


def test_pairing_on_character_prompt_seed_leaves_ambiguous_keys_out() -> None:
    base = pd.DataFrame({"clip_id": ["b1", "b2", "b3", "b3x"], "character": ["a", "b", "c", "c"],
                         "prompt_id": ["p", "p", "p", "p"], "seed": [0, 0, 0, 0], "x": [1, 2, 3, 4]})
    treat = pd.DataFrame({"clip_id": ["t1", "t2", "t3", "t4"], "character": ["a", "b", "c", "d"],
                          "prompt_id": ["p", "p", "p", "p"], "seed": [0, 1, 0, 0], "x": [10, 20, 30, 40]})
    pr = stats.pair_with_baseline(treat, base)
    assert pr.pairs["clip_id_t"].tolist() == ["t1"] and pr.pairs["clip_id_b"].tolist() == ["b1"]
    assert pr.ambiguous == ["c/p/0"]
    assert pr.unmatched == ["t2", "t4"]


def test_restricted_survival_uses_the_shorter_clip_of_each_pair() -> None:
    pairs = pd.DataFrame({"survival_time_s_t": [30.0, 12.0], "survival_time_s_b": [20.0, 5.0],
                          "duration_s_t": [30.0, 40.0], "duration_s_b": [25.0, 40.0]})
    t, b = stats.restricted_survival_pairs(pairs)
    assert t.tolist() == [25.0, 12.0] and b.tolist() == [20.0, 5.0]


# -- against scikit-learn and lifelines on real tables, and the expected direction
# ----------------------------------
@pytest.fixture(scope="module")
def anitalker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The AniTalker run, or (without ../shared) its stand-in on embedded synthetic clips."""
    return anitalker_run(tmp_path_factory)


def test_time_normalised_auc_matches_scikit_learn_on_real_curves(anitalker: Path) -> None:
    from sklearn.metrics import auc as sk_auc

    curves = pd.read_csv(anitalker / "curves.csv")
    clips = pd.read_csv(anitalker / "clips.csv").set_index("clip_id")
    for cid, c in curves.groupby("clip_id"):
        c = c.dropna(subset=["sim_dec"])
        x, y = c["t_mid"].to_numpy(), c["sim_dec"].to_numpy()
        assert clips.at[cid, "auc_dec"] == pytest.approx(sk_auc(x, y) / (x[-1] - x[0]), abs=1e-6)


def test_survival_on_a_real_run_matches_lifelines_and_the_negative_is_the_one_lost(anitalker: Path) -> None:
    from lifelines import KaplanMeierFitter

    clips = pd.read_csv(anitalker / "clips.csv")
    base = clips[clips["mitigation"] == "none"]
    assert base.loc[base["lost"] == 1, "clip_id"].tolist() == ["negative"]  # a different person: lost at once
    km = stats.survival_from_clips(base)
    ref = KaplanMeierFitter().fit(base["survival_time_s"], base["lost"].astype(bool))
    times, s = product_limit(base["survival_time_s"].to_numpy(), base["lost"].astype(bool).to_numpy())
    for t in (0.0, 5.0, 30.0):
        assert km.at(t).value == pytest.approx(float(ref.survival_function_at_times(t).iloc[0]))
        assert km.at(t).value == pytest.approx(s[times <= t][-1] if (times <= t).any() else 1.0)
    assert km.at(30.0).value == pytest.approx(2 / 3)
    assert np.isinf(km.median)


@needs_shared
@pytest.mark.parametrize(("treated", "baseline", "sign"), [
    ("aiface2-sr", "aiface2", -1),  # face super-resolution costs ~0.05 (VALIDITY: raw > SR in 30/32 bins)
    ("monalisa-mfcc", "monalisa", +1),  # MFCC beats HuBERT on Mona Lisa (52/52 bins)
])
def test_paired_bins_show_the_known_direction_on_real_pairs(anitalker: Path, treated: str, baseline: str,
                                                            sign: int) -> None:
    curves = pd.read_csv(anitalker / "curves.csv")
    t = curves[curves["clip_id"] == treated].set_index("t_start")["sim_raw"]
    b = curves[curves["clip_id"] == baseline].set_index("t_start")["sim_raw"]
    common = t.index.intersection(b.index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pc = stats.paired_compare(t[common].to_numpy(), b[common].to_numpy())
    assert pc.n_pairs >= 30
    assert sign * pc.delta.value > 0.02
    assert sign * pc.delta.lo > 0 if sign > 0 else pc.delta.hi < 0
    assert pc.p_value < 1e-4


def test_group_curve_band_brackets_the_group_mean(anitalker: Path) -> None:
    curves = pd.read_csv(anitalker / "curves.csv")
    ids = ["monalisa", "aiface2", "negative"]
    band = stats.group_curve_band(curves, ids, "sim_dec")
    assert len(band) >= 31
    first = band.iloc[5]
    vals = curves[(curves["clip_id"].isin(ids)) & (curves["t_mid"] == first["t_mid"])]["sim_dec"]
    assert first["mean"] == pytest.approx(vals.mean())
    assert first["lo"] <= first["mean"] <= first["hi"] and first["n"] == 3


def test_survival_at_t_counts_only_clips_observed_to_t():
    """Issue 15: a 12 s run whose one clip was lost at 6 s says "not measurable" at 30 s, not 0.0; the
    per-clip indicator likewise; with a clip observed to 30 s, S(30) is defined and n counts it."""
    short = pd.DataFrame({"clip_id": ["a"], "lost": [1], "survival_time_s": [6.0], "duration_s": [12.0]})
    km = stats.survival_from_clips(short)
    assert km.at(10.0).value == 0.0
    est = km.at(30.0)
    assert np.isnan(est.value) and est.n == 0 and est.method == "not measurable"
    assert stats.still_same_person(short, 30.0).isna().all()
    assert stats.still_same_person(short, 10.0).tolist() == [0.0]
    both = pd.concat([short, pd.DataFrame({"clip_id": ["b"], "lost": [0], "survival_time_s": [60.0],
                                           "duration_s": [60.0]})], ignore_index=True)
    est = stats.survival_from_clips(both).at(30.0)
    assert est.value == pytest.approx(0.5) and est.n == 1
    assert stats.still_same_person(both, 30.0).tolist()[1] == 1.0 and np.isnan(
        stats.still_same_person(both, 30.0)[0]
    )
