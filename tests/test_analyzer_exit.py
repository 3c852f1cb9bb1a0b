"""A process that measured in-process and exits normally closes MediaPipe's graph before Python shuts its
thread pools down (driftbench.measure.clip._close_at_exit): no "Exception ignored in atexit callback"
traceback at exit (pytest, joblib/loky sweep workers); and one that exits while SFace is still loading on
its background thread does not abort in OpenCV's static destructors ("terminate called without an active
exception", SIGABRT; about half of such exits before the loader thread was joined at exit, so the child
runs several times)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT, SHARED_MODELS, needs_shared

CODE = """
from driftbench.config import compose
from driftbench.measure.clip import get_analyzer, settings_from_config
analyzer = get_analyzer(settings_from_config(compose(["device=cpu"]), threshold=float("nan")))
print("analyzer", type(analyzer).__name__)
"""


RUNS = 6


@needs_shared
def test_exiting_with_an_open_analyzer_prints_nothing():
    env = {**os.environ, "DRIFTBENCH_MODELS": str(SHARED_MODELS), "DRIFTBENCH_CONFIG_CACHE": "0"}
    for _ in range(RUNS):
        p = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        assert "analyzer FaceAnalyzer" in p.stdout
        assert "Exception ignored" not in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
