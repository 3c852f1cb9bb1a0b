"""Statistics of interleaved benchmark rounds: how far one run's median can move. Used by
test_bench_pipeline.py's interleaved benchmark and by ab_interleaved.sh."""

from __future__ import annotations


def round_median_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval (scipy.stats.bootstrap) of the median of per-round figures; the value
    itself twice when there are too few rounds to resample."""
    import numpy as np
    from scipy.stats import bootstrap

    x = np.asarray(values, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0:
        return float(np.median(x)), float(np.median(x))
    ci = bootstrap((x,), np.median, confidence_level=confidence, method="percentile", n_resamples=2000,
                   random_state=0).confidence_interval
    return float(ci.low), float(ci.high)
