"""Writing and summarising tables at the size of a large run (no media): CSV writing scrubs every text cell
for credentials and neutralises spreadsheet formulas, and the report's statistics take finite floats from
every bin; both must stay cheap per cell."""

from __future__ import annotations

import numpy as np
import pandas as pd

from driftbench.io import read_csv, write_csv
from driftbench.results.stats import _finite
from tests.benchmarks.conftest import record


def test_write_csv_20000_rows_two_text_columns(benchmark, tmp_path):
    """A curves.csv-sized table (e.g. 200 clips x 100 bins): 40,000 text cells."""
    n = 20000
    df = pd.DataFrame({"clip_id": [f"clip{i // 100}" for i in range(n)], "model": ["=m"] * n,
                       "t_mid": np.arange(n) % 100 + 0.5, "sim_dec": np.linspace(0, 1, n)})
    path = tmp_path / "t.csv"
    benchmark.pedantic(lambda: write_csv(path, df), rounds=5, iterations=1)
    back = read_csv(path)
    assert len(back) == n and back["model"].iloc[0] == "=m"  # neutralised on disk, restored on read
    record(benchmark, "write_csv_40000_text_cells")


def test_finite_of_a_60_bin_series(benchmark):
    s = pd.Series(np.random.default_rng(0).normal(size=60))
    # fixed rounds: the default calibration takes ~20,000 rounds of a 2 us call, all kept in the JSON
    out = benchmark.pedantic(_finite, args=(s,), rounds=50, iterations=200)
    assert len(out) == 60
    record(benchmark, "stats_finite_60")
