"""Run ``driftbench run`` from tests: in-process (models load once per test session) or as a
subprocess (for signals, exit codes and memory), and read a run directory's tables back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]

#: overrides every test run uses: short real clips, one sample per second, weights from ../shared only
FAST = ("fetch=false", "sampling.fps=1", "progress=false")

#: lines of third-party start-up noise (MediaPipe/TFLite) that tests ignore in captured output
NOISE = ("W0000", "I0000", "INFO: Created TensorFlow", "WARNING: Logging before InitGoogle")


def run_inprocess(*overrides: str) -> int:
    """``driftbench run OVERRIDES`` in this process; returns the exit code."""
    from driftbench.cli import main

    return main(["run", *FAST, *overrides])


def command(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "driftbench", "run", *FAST, *overrides]


def subprocess_env(cache: Path | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    if cache is not None:
        env["DRIFTBENCH_CACHE"] = str(cache)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run_subprocess(*overrides: str, cache: Path | None = None, timeout: float = 600,
                   **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*overrides),
        cwd=ROOT,
        env=subprocess_env(cache, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def meaningful_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(NOISE)]


def read_csv(path: Path) -> pd.DataFrame:
    """A run table as strings, exactly as written (no NaN guessing)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def only_run_dir(root: Path) -> Path:
    """The single run directory under ``output.root``."""
    dirs = [d for d in Path(root).iterdir() if d.is_dir()]
    assert len(dirs) == 1, f"expected one run directory in {root}, found {dirs}"
    return dirs[0]
