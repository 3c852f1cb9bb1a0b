"""Benchmarks (pytest-benchmark): run with

    python -m pytest tests/benchmarks --benchmark-only [--benchmark-autosave | --benchmark-json=PATH]

and compare commits with ``--benchmark-compare``. Speed is reported, never asserted. At the end the
session prints the product/floor ratios measured in this same session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SHARED, VIDEO

CLIP_60S = VIDEO / "real/edtalk_pose_source2.mp4"
#: the leanest floor built here (../shared/tools/floor.py, README beside it); it loads the fp32 SFace that
#: ../shared/tools/make_sface_fp32.py writes to $FLOOR_WEIGHTS (default ~/.cache/driftbench-floor)
SHARED_FLOOR = SHARED / "tools" / "floor.py"
FLOOR_WEIGHTS = Path(os.environ.get("FLOOR_WEIGHTS", Path.home() / ".cache" / "driftbench-floor"))
needs_shared_floor = pytest.mark.skipif(
    not (SHARED_FLOOR.is_file() and (FLOOR_WEIGHTS / "sface_fp32_dynbatch.onnx").is_file()),
    reason=f"the shared floor needs {SHARED_FLOOR} and {FLOOR_WEIGHTS}/sface_fp32_dynbatch.onnx (make it "
           "with "
    "python ../shared/tools/make_sface_fp32.py ../shared/models/sface/"
    "face_recognition_sface_2021dec_int8bq.onnx ~/.cache/driftbench-floor)",
)


def shared_floor_cmd(clip: Path, mediapipe: bool = True) -> list[str]:
    """The command running ../shared/tools/floor.py on one clip (with MediaPipe unless told otherwise)."""
    return [sys.executable, str(SHARED_FLOOR), str(clip), *(["--mp"] if mediapipe else [])]
RESULTS: dict[str, float] = {}
EXTRA: dict[str, str] = {}


def record(benchmark, key: str) -> None:
    """Remember a benchmark's median (seconds) for the end-of-session ratio table."""
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        RESULTS[key] = float(stats.stats.median)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RESULTS and not EXTRA:
        return
    tr = terminalreporter
    tr.section("driftbench speed (medians, this session)")
    for k, v in sorted(RESULTS.items()):
        tr.write_line(f"{k:45s} {v * 1000:10.1f} ms")
    pairs = [
        ("command_60s_mediapipe", "floor_60s_mediapipe"),
        ("command_60s_identity_only", "floor_60s_identity_only"),
        ("command_60s_no_report", "floor_60s_mediapipe"),
        ("command_60s_default", "floor_60s_mediapipe"),
        ("clip_60s_end_to_end", "floor_60s_mediapipe"),
    ]
    for prod, floor in pairs:
        if prod in RESULTS and floor in RESULTS:
            tr.write_line(f"ratio {prod} / {floor}: {RESULTS[prod] / RESULTS[floor]:.2f}x (target <= 1.2x)")
    if "command_60s_default" in RESULTS:
        # ../shared/VALIDITY.md: insightface FaceAnalysis per frame (identity only) takes 9.4-12 s for this
        # clip here
        v = RESULTS["command_60s_default"]
        tr.write_line(
            f"insightface per-frame loop (9.4-12 s, VALIDITY.md) vs the default command: {9.4 / v:.1f}-"
            f"{12 / v:.1f}x faster"
        )
    for k, v in sorted(EXTRA.items()):
        tr.write_line(f"{k}: {v}")


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    """A folder holding only the 60 s real clip (a folder run measures just that)."""
    d = tmp_path_factory.mktemp("clip60")
    (d / CLIP_60S.name).symlink_to(CLIP_60S)
    return d


@pytest.fixture(scope="session", autouse=True)
def compiled_bytecode() -> None:
    """driftbench's modules compiled to bytecode before anything is timed, as installing the wheel does
    (pip compiles on install). An editable checkout under PYTHONDONTWRITEBYTECODE=1 (this sandbox) would
    otherwise compile the ~50 modules a run imports from source in every timed command (~0.2 s of CPU
    the floor, one script, never pays); the libraries in site-packages already hold theirs."""
    import compileall

    compileall.compile_dir(str(ROOT / "driftbench"), quiet=1)
