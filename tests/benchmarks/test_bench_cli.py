"""The command line's own cost: ``driftbench run --help`` and a plain run (one compose, no Hydra launcher)
on an embedded synthetic clip, so it needs no ../shared.

Compare two checkouts in one session (the same machine load for both): the tree under test is
``$DRIFTBENCH_BENCH_ROOT`` (default: this checkout), e.g.

    DRIFTBENCH_BENCH_ROOT=/path/to/main python -m pytest tests/benchmarks/test_bench_cli.py --benchmark-only
    \\
        --benchmark-json=main.json
    python -m pytest tests/benchmarks/test_bench_cli.py --benchmark-only --benchmark-json=branch.json
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.conftest import EXTRA, record
from tests.conftest import ROOT

TREE = Path(os.environ.get("DRIFTBENCH_BENCH_ROOT", ROOT)).resolve()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(TREE)}
    p = subprocess.run([sys.executable, "-m", "driftbench", *args], cwd=TREE, env=env, capture_output=True,
                       text=True, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    return p


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.realruns import synthetic_footage

    d = tmp_path_factory.mktemp("synthetic-clip")
    (d / "astronaut.mp4").symlink_to(synthetic_footage())
    return d


def test_run_help(benchmark) -> None:
    out = benchmark.pedantic(lambda: _run("run", "--help"), rounds=7, iterations=1)
    assert "Config groups:" in out.stdout
    record(benchmark, "cli_run_help")
    EXTRA["tree benchmarked (cli)"] = str(TREE)


def test_plain_run_4s_clip(benchmark, clip_dir: Path, tmp_path: Path) -> None:
    n = 0

    def once() -> subprocess.CompletedProcess[str]:
        nonlocal n
        n += 1  # a fresh run directory each round (the same one would resume)
        return _run(
            "run",
            "model=folder",
            f"model.path={clip_dir}",
            "reference=first_frame",
            "sampling.end=4",
            "cache.enabled=false",
            "report.html=false",
            "progress=false",
            f"output.dir={tmp_path / f'r{n}'}",
        )

    out = benchmark.pedantic(once, rounds=5, iterations=1)
    assert out.stdout.strip().splitlines()[-1] == str(tmp_path / f"r{n}")
    record(benchmark, "cli_plain_run_4s")
