"""tests/benchmarks/roundstats.py: the interval the interleaved benchmarks report (no media needed)."""

from __future__ import annotations

from tests.benchmarks.roundstats import round_median_ci


def test_round_median_ci_brackets_the_median_and_widens_with_spread():
    """The interval the interleaved benchmark reports beside its median of round ratios."""
    tight = [1.20, 1.21, 1.19, 1.20, 1.22, 1.20, 1.21]
    wide = [1.05, 1.35, 1.15, 1.28, 1.10, 1.30, 1.20]
    lo, hi = round_median_ci(tight)
    assert lo <= 1.20 <= hi and hi - lo < 0.03
    wlo, whi = round_median_ci(wide)
    assert wlo <= 1.20 <= whi and whi - wlo > 2 * (hi - lo)
    assert round_median_ci([1.3, 1.2]) == (1.25, 1.25)
