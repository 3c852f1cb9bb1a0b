"""Without ../shared, the pytest run says so once at the top (what is skipped, how to get the material) and
sums the skips up by reason, instead of one line per skipped test."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_one_header_line_and_skips_by_reason() -> None:
    env = {**os.environ, "DRIFTBENCH_SHARED": "/nonexistent"}
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_identity_real.py", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:]
    lines = res.stdout.splitlines()
    header = [ln for ln in lines if ln.startswith("driftbench: ")]
    assert len(header) == 1 and "../shared not found at /nonexistent" in header[0]
    assert "DRIFTBENCH_SHARED=PATH" in header[0] and "skipped" in header[0]
    assert lines.index(header[0]) < next(i for i, ln in enumerate(lines) if "collected" in ln)  # at the top
    assert not any(ln.startswith("SKIPPED [") for ln in lines)  # no line per skipped test
    summary = lines[next(i for i, ln in enumerate(lines) if "skipped, by reason" in ln) + 1:]
    n = int(summary[0].split()[0])
    assert n >= 1 and "../shared not found" in summary[0] and f"{n} skipped" in res.stdout
