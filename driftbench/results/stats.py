"""Statistics over clips: bootstrap confidence intervals, Kaplan-Meier identity survival and paired
comparisons. Tables in, plain values out: this module never imports video decoding, face backends
or torch, so leaderboards, reports and gates re-run from stored tables in a second.

Why these methods:
- Clips differ far more from each other than frames within a clip do, so every interval here is a
  bootstrap over *clips* (scipy.stats.bootstrap, BCa, seeded so reruns give identical bytes).
- Clips end at different times and most never lose identity: a mean time-to-loss would hide the
  short ones, so identity survival is a Kaplan-Meier curve (scipy.stats.ecdf) with clips that were never
  lost right-censored at their duration; "still the same person at T" is S(T) from that curve.
- A mitigation is compared with its own baseline on the *same* (character, prompt, seed): paired
  differences remove the between-clip spread; the interval is a bootstrap of the mean paired
  difference and the test a Wilcoxon signed-rank test (scipy), which assumes no normality.

Metric cards for the figures this module produces (also in the report's glossary):
- ``mean`` of a per-clip metric: units of that metric; CI = seeded BCa bootstrap over clips (95%).
- ``survival_at_{T}s``: Kaplan-Meier probability that a clip is still the same person at T seconds
  (0-1, higher is better); CI = exponential Greenwood (log-log) interval; empty ("not measurable")
  when no clip was observed up to T (a clip lost at 6 s that ends at 12 s says nothing about 30 s).
- ``median_survival_s``: the time at which the KM curve crosses 0.5; ``inf`` ("not reached") when
  more than half of the clips keep their identity to the end.
- paired ``delta``: mean of (treated - baseline) per pair, bootstrap CI over pairs, Wilcoxon
  signed-rank p-value (two-sided; zero differences dropped, p = 1 when every difference is zero).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

#: the columns that pair clips across models and mitigations (DESIGN: paired per character, prompt, seed)
PAIR_KEY = ("character", "prompt_id", "seed")
GROUP_KEY = ("model", "mitigation")
BASELINE = "none"
DEFAULT_SEED = 0
DEFAULT_RESAMPLES = 9999
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval and the number of values it rests on."""

    value: float
    lo: float
    hi: float
    n: int
    method: str = "bootstrap BCa (clips)"

    def to_dict(self, prefix: str = "") -> dict[str, Any]:
        return {f"{prefix}{k}" if prefix else k: v for k, v in asdict(self).items() if k != "method"}

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2.0 if np.isfinite(self.lo) and np.isfinite(self.hi) else float("nan")


NAN_ESTIMATE = Estimate(float("nan"), float("nan"), float("nan"), 0, "none")


def _finite(values: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    """The finite values as floats; anything that is not a number (None, text, NA) left out."""
    if isinstance(values, (np.ndarray, pd.Series)) and values.dtype.kind in "fiub":
        # numeric already: the same floats without a round trip through object dtype (~0.15 ms a call)
        a = values.to_numpy(dtype=np.float64) if isinstance(values, pd.Series) else values.astype(np.float64)
    else:
        a = pd.to_numeric(pd.Series(values, dtype="object"), errors="coerce").to_numpy(dtype=np.float64)
    return a[np.isfinite(a)]


def bootstrap_mean(values: Sequence[float] | np.ndarray | pd.Series, *, seed: int = DEFAULT_SEED,
                   confidence: float = CONFIDENCE, n_resamples: int = DEFAULT_RESAMPLES,
                   method: str = "BCa", statistic: str = "mean") -> Estimate:
    """Mean (or median) of the finite values with a seeded bootstrap CI (scipy.stats.bootstrap).

    One value: the CI is undefined (NaN). All values equal: the CI collapses to the value (scipy
    would return NaN for a degenerate sample). BCa falls back to the percentile method when its
    acceleration cannot be estimated (tiny samples)."""
    a = _finite(values)
    fn = np.mean if statistic == "mean" else np.median
    if a.size == 0:
        return NAN_ESTIMATE
    point = float(fn(a))
    if a.size == 1:
        return Estimate(point, float("nan"), float("nan"), 1, "single value")
    if np.ptp(a) == 0.0:
        return Estimate(point, point, point, int(a.size), "constant sample")
    n = int(a.size)
    return _bootstrap_estimate((a,), fn, point, n, method=method, paired=False, seed=seed,
                               confidence=confidence, n_resamples=n_resamples,
                               what=f"({n} values, {n_resamples} resamples)")


def _bootstrap_estimate(data: tuple[np.ndarray, ...], statistic: Any, point: float, n: int, *, method: str,
                        paired: bool, seed: int, confidence: float, n_resamples: int, what: str) -> Estimate:
    """``point`` with the seeded ``scipy.stats.bootstrap`` CI of ``statistic`` (vectorised), falling back
    from ``method`` to the percentile method where the CI comes out undefined (tiny samples); ``what``
    describes the sample in the estimate's note."""
    from scipy.stats import bootstrap  # here: a one-clip run's report never imports scipy.stats

    for m in (method, "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = bootstrap(data, statistic, paired=paired, vectorized=True, n_resamples=n_resamples,
                            confidence_level=confidence, method=m, rng=np.random.default_rng(seed))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if np.isfinite(lo) and np.isfinite(hi):
            return Estimate(point, lo, hi, n, f"bootstrap {m} {what}")
    return Estimate(point, float("nan"), float("nan"), n, "bootstrap failed")


# -- survival ------------------------------------------------------------------------------------------
@dataclass
class Survival:
    """A Kaplan-Meier identity-survival curve and the figures read off it."""

    timeline: np.ndarray
    survival: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    at_risk: np.ndarray
    n: int
    n_lost: int
    median: float  # inf when not reached
    median_lo: float
    median_hi: float
    max_observed: float
    durations: np.ndarray
    #: how long each clip was observed (its duration); None: the survival times stand for it
    observed: np.ndarray | None = None

    def n_observed(self, t: float) -> int:
        """Clips observed up to ``t`` (a clip lost at 6 s that ends at 12 s is not observed to 30 s)."""
        obs = self.observed if self.observed is not None else self.durations
        return int(np.sum(obs + 1e-6 >= t))

    def at(self, t: float) -> Estimate:
        """S(t) with its CI; "not measurable" (NaN) when no clip was observed up to t, whatever the
        curve carries forward (a 12 s run says nothing about 30 s, even when its one clip was lost at
        6 s). ``n``: the clips observed up to t."""
        if self.n == 0:
            return NAN_ESTIMATE
        idx = int(np.searchsorted(self.timeline, t, side="right")) - 1
        idx = max(idx, 0)
        s = float(self.survival[idx])
        n_obs = self.n_observed(t)
        # without the clips' observed lengths, a curve that reached 0 stays defined (every clip was lost)
        unknown = n_obs == 0 if self.observed is not None else (t > self.max_observed and s > 0.0)
        if unknown:
            return Estimate(float("nan"), float("nan"), float("nan"), n_obs, "not measurable")
        return Estimate(
            s, float(self.lo[idx]), float(self.hi[idx]), n_obs, "Kaplan-Meier, exponential Greenwood"
        )

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"t": self.timeline, "survival": self.survival, "lo": self.lo, "hi": self.hi,
                             "at_risk": self.at_risk})


def kaplan_meier(
    durations: Sequence[float] | np.ndarray,
    lost: Sequence[int] | np.ndarray,
    *,
    confidence: float = CONFIDENCE,
    observed: Sequence[float] | np.ndarray | None = None,
) -> Survival:
    """Kaplan-Meier curve of identity survival: ``durations`` are the survival times (the loss onset
    for lost clips, the clip's duration for the others) and ``lost`` marks observed losses; clips
    never lost are right-censored. Curve and exponential-Greenwood ("log-log") band from
    ``scipy.stats.ecdf``, read on lifelines' timeline (0 and every distinct duration; tests check
    equality with lifelines, which costs ~0.5 s more to import). The median and its CI are where the
    curve and its band bounds first reach 0.5, lifelines' ``median_survival_times`` reading. One clip's
    curve is read without scipy (:func:`_one_clip_curve`, equal to scipy's: tests/test_stats.py)."""
    d = np.asarray(durations, dtype=np.float64)
    lost_f = np.asarray(lost, dtype=np.float64)
    ok = np.isfinite(d) & np.isfinite(lost_f)
    obs = None
    if observed is not None:
        o = np.asarray(observed, dtype=np.float64)
        obs = np.where(np.isfinite(o), o, d)[ok]
    d, e = d[ok], lost_f[ok] > 0
    if d.size == 0:
        empty = np.zeros(0)
        return Survival(empty, empty, empty, empty, empty, 0, 0, float("nan"), float("nan"), float("nan"),
                        float("nan"), empty)
    timeline = np.unique(np.concatenate([[0.0], d]))
    surv, lo, hi = (_one_clip_curve if d.size == 1 else _scipy_curve)(d, e, timeline, confidence)
    at_risk = np.array([np.sum(d >= t) for t in timeline], dtype=np.float64)

    def crossing(curve: np.ndarray) -> float:
        below = np.flatnonzero(curve <= 0.5)
        return float(timeline[below[0]]) if below.size else float("inf")

    return Survival(
        timeline=timeline,
        survival=surv,
        lo=lo,
        hi=hi,
        at_risk=at_risk,
        n=int(d.size),
        n_lost=int(e.sum()),
        median=crossing(surv),
        median_lo=crossing(lo),
        median_hi=crossing(hi),
        max_observed=float(d.max() if obs is None else max(d.max(), obs.max())),
        durations=d,
        observed=obs,
    )


def _scipy_curve(d: np.ndarray, e: np.ndarray, timeline: np.ndarray,
                 confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S, band low, band high) on ``timeline``: ``scipy.stats.ecdf`` with the exponential-Greenwood
    band, closed (to S's 0 or 1) where it is undefined, as lifelines."""
    from scipy.stats import CensoredData, ecdf

    sf = ecdf(CensoredData.right_censored(d, ~e)).sf
    surv = sf.evaluate(timeline)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the band is undefined where S is 0 or 1: closed there, as lifelines
        band = sf.confidence_interval(confidence, method="log-log")
    closed = np.where(surv >= 1.0, 1.0, 0.0)
    lo = np.where(np.isnan(low := band.low.evaluate(timeline)), closed, low)
    hi = np.where(np.isnan(high := band.high.evaluate(timeline)), closed, high)
    return surv, lo, hi


def _one_clip_curve(d: np.ndarray, e: np.ndarray, timeline: np.ndarray,
                    confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_scipy_curve` of a single clip, which needs no estimation: S is 1 until the clip's loss and 0
    from it on (1 throughout when it was never lost), and S is 0 or 1 everywhere, where the band is
    closed to S (at t=0 scipy's band is [1, 1] too). Spares a one-clip run's report the ~0.5 s CPU of
    importing scipy.stats (issue 20)."""
    surv = np.where(e[0] & (timeline >= d[0]), 0.0, 1.0)
    return surv, surv.copy(), surv.copy()


def survival_from_clips(clips: pd.DataFrame) -> Survival:
    """KM curve of a clips.csv table (``survival_time_s``, ``lost``)."""
    if clips.empty:
        return kaplan_meier([], [])
    observed = (
        pd.to_numeric(clips["duration_s"], errors="coerce").to_numpy() if "duration_s" in clips else None
    )
    return kaplan_meier(pd.to_numeric(clips["survival_time_s"], errors="coerce").to_numpy(),
                        pd.to_numeric(clips["lost"], errors="coerce").fillna(0).to_numpy(), observed=observed)


def still_same_person(clips: pd.DataFrame, t: float) -> pd.Series:
    """Per clip observed up to ``t`` s: 1 if still the same person at ``t``, 0 if lost before ``t``;
    NaN (not measurable) for a clip that ended before ``t``, lost or not. The per-clip counterpart of
    the KM figure S(t)."""
    lost = pd.to_numeric(clips["lost"], errors="coerce").fillna(0).astype(bool)
    st = pd.to_numeric(clips["survival_time_s"], errors="coerce")
    dur = pd.to_numeric(clips["duration_s"], errors="coerce")
    out = pd.Series(np.nan, index=clips.index, dtype=np.float64)
    reached = dur + 1e-6 >= t
    out[lost & (st < t) & reached] = 0.0
    out[(~lost | (st >= t)) & reached] = 1.0
    return out


# -- paired comparisons --------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairedComparison:
    """Treated minus baseline over matched pairs: mean delta with CI and a Wilcoxon signed-rank test."""

    delta: Estimate
    p_value: float
    statistic: float
    n_pairs: int
    n_zero: int
    test: str = "Wilcoxon signed-rank (two-sided)"

    def to_dict(self, prefix: str = "") -> dict[str, Any]:
        out = self.delta.to_dict(prefix)
        out.update({f"{prefix}p": self.p_value, f"{prefix}n_pairs": self.n_pairs})
        return out


def wilcoxon_p(diffs: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test of paired differences: (statistic, p). Zero differences
    are dropped (Wilcoxon's convention); p = 1 when all differences are zero, NaN without pairs."""
    from scipy.stats import wilcoxon

    d = _finite(diffs)
    if d.size == 0:
        return float("nan"), float("nan")
    if np.all(d == 0.0):
        return 0.0, 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def paired_compare(treated: Sequence[float] | np.ndarray, baseline: Sequence[float] | np.ndarray, *,
                   seed: int = DEFAULT_SEED, confidence: float = CONFIDENCE,
                   n_resamples: int = DEFAULT_RESAMPLES) -> PairedComparison:
    """Paired comparison of two aligned arrays (pairs where either side is missing are dropped)."""
    t = np.asarray(pd.to_numeric(pd.Series(treated, dtype="object"), errors="coerce"), dtype=np.float64)
    b = np.asarray(pd.to_numeric(pd.Series(baseline, dtype="object"), errors="coerce"), dtype=np.float64)
    if t.shape != b.shape:
        raise ValueError(f"paired arrays differ in length ({t.size} vs {b.size})")
    d = (t - b)[np.isfinite(t) & np.isfinite(b)]
    est = bootstrap_mean(d, seed=seed, confidence=confidence, n_resamples=n_resamples)
    stat, p = wilcoxon_p(d)
    return PairedComparison(est, p, stat, int(d.size), int(np.sum(d == 0.0)))


def bootstrap_spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, *,
                       seed: int = DEFAULT_SEED, confidence: float = CONFIDENCE,
                       n_resamples: int = DEFAULT_RESAMPLES) -> Estimate:
    """Spearman rank correlation of two aligned per-clip arrays (pairs where either is missing dropped)
    with a seeded paired bootstrap CI over clips (scipy.stats.bootstrap, BCa, percentile fallback).
    Fewer than 3 pairs, or a side without spread: NaN (ranks that do not vary say nothing)."""
    from scipy.stats import rankdata, spearmanr

    a = np.asarray(pd.to_numeric(pd.Series(x, dtype="object"), errors="coerce"), dtype=np.float64)
    b = np.asarray(pd.to_numeric(pd.Series(y, dtype="object"), errors="coerce"), dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in length ({a.size} vs {b.size})")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = int(a.size)
    if n < 3 or np.ptp(a) == 0.0 or np.ptp(b) == 0.0:
        return Estimate(float("nan"), float("nan"), float("nan"), n, "too few varying pairs")

    def rho(u: np.ndarray, v: np.ndarray, axis: int = -1) -> np.ndarray:
        # Spearman = Pearson of the (average) ranks; vectorised over bootstrap resamples
        ru, rv = rankdata(u, axis=axis), rankdata(v, axis=axis)
        ru = ru - ru.mean(axis=axis, keepdims=True)
        rv = rv - rv.mean(axis=axis, keepdims=True)
        den = np.sqrt((ru * ru).sum(axis=axis) * (rv * rv).sum(axis=axis))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray((ru * rv).sum(axis=axis) / den)

    point = float(spearmanr(a, b).statistic)
    return _bootstrap_estimate((a, b), rho, point, n, method="BCa", paired=True, seed=seed,
                               confidence=confidence, n_resamples=n_resamples,
                               what=f"over clips ({n} pairs, {n_resamples} resamples)")


@dataclass
class Pairing:
    """Rows of a treated group matched to the baseline group of the same model on the pair key."""

    pairs: pd.DataFrame  # one row per pair: key columns + <col>_t and <col>_b for every column
    unmatched: list[str]  # treated clip ids without a baseline clip
    ambiguous: list[str]  # pair keys with several clips on one side (left out, never guessed)


def _key_frame(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for c in PAIR_KEY:
        if c not in out:
            out[c] = ""
    out["seed"] = pd.to_numeric(out["seed"], errors="coerce").fillna(0).astype(int)
    out["character"] = out["character"].astype(str)
    out["prompt_id"] = out["prompt_id"].astype(str)
    return out


def pair_with_baseline(treated: pd.DataFrame, baseline: pd.DataFrame) -> Pairing:
    """Match treated clips to baseline clips on (character, prompt_id, seed). A key that appears more
    than once on either side is ambiguous and left out (reported), never paired by guesswork."""
    t, b = _key_frame(treated), _key_frame(baseline)
    key = list(PAIR_KEY)
    dup_t = t[t.duplicated(key, keep=False)]
    dup_b = b[b.duplicated(key, keep=False)]
    amb_keys = {tuple(r) for r in dup_t[key].itertuples(index=False)} | {
        tuple(r) for r in dup_b[key].itertuples(index=False)}
    if amb_keys:
        t = t[[tuple(r) not in amb_keys for r in t[key].itertuples(index=False)]]
        b = b[[tuple(r) not in amb_keys for r in b[key].itertuples(index=False)]]
    merged = t.merge(b, on=key, how="left", suffixes=("_t", "_b"), indicator=True)
    unmatched = sorted(merged.loc[merged["_merge"] == "left_only", "clip_id_t"].astype(str))
    pairs = merged[merged["_merge"] == "both"].drop(columns="_merge").sort_values(key, kind="mergesort")
    return Pairing(pairs.reset_index(drop=True), unmatched,
                   sorted("/".join(map(str, k)) for k in amb_keys))


def restricted_survival_pairs(pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: identity-survival time of each side restricted to the shorter clip of the pair, so a
    longer clip cannot look better merely by lasting longer (restricted survival time)."""
    st_t = pd.to_numeric(pairs["survival_time_s_t"], errors="coerce").to_numpy(dtype=np.float64)
    st_b = pd.to_numeric(pairs["survival_time_s_b"], errors="coerce").to_numpy(dtype=np.float64)
    tau = np.minimum(pd.to_numeric(pairs["duration_s_t"], errors="coerce").to_numpy(dtype=np.float64),
                     pd.to_numeric(pairs["duration_s_b"], errors="coerce").to_numpy(dtype=np.float64))
    return np.minimum(st_t, tau), np.minimum(st_b, tau)


def logrank_p(
    durations_a: np.ndarray, lost_a: np.ndarray, durations_b: np.ndarray, lost_b: np.ndarray
) -> float:
    """Two-sided log-rank test (scipy.stats.logrank; equal to lifelines' ``logrank_test``, tested)
    between two survival samples; NaN when no loss was observed."""
    from scipy.stats import CensoredData, logrank

    if len(durations_a) == 0 or len(durations_b) == 0 or (np.sum(lost_a) + np.sum(lost_b)) == 0:
        return float("nan")

    def sample(d: np.ndarray, lost: np.ndarray) -> CensoredData:
        return CensoredData.right_censored(np.asarray(d, np.float64), ~np.asarray(lost, bool))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(logrank(sample(durations_a, lost_a), sample(durations_b, lost_b)).pvalue)


# -- per-group summaries and curve bands ---------------------------------------------------------------
def finite_or_none(x: Any) -> Any:
    if isinstance(x, float | np.floating) and not math.isfinite(float(x)):
        return None
    return x


def group_curve_band(curves: pd.DataFrame, clip_ids: Sequence[str], column: str, *, seed: int = DEFAULT_SEED,
                     n_resamples: int = 999, min_clips: int = 2) -> pd.DataFrame:
    """Mean of ``column`` over the clips of a group per 1 s bin with a percentile bootstrap band
    (bins with fewer than ``min_clips`` clips get the mean only)."""
    sub = curves[curves["clip_id"].isin(list(clip_ids))]
    rows = []
    for t_mid, g in sub.groupby("t_mid", sort=True):
        vals = _finite(g[column])
        if vals.size == 0:
            continue
        est = (
            bootstrap_mean(vals, seed=seed, n_resamples=n_resamples, method="percentile")
            if vals.size >= min_clips
            else Estimate(float(vals.mean()), float("nan"), float("nan"), int(vals.size))
        )
        rows.append({"t_mid": float(t_mid), "mean": est.value, "lo": est.lo, "hi": est.hi, "n": est.n})
    return pd.DataFrame(rows, columns=["t_mid", "mean", "lo", "hi", "n"])
