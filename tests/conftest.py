"""Shared fixtures. Real media and weights come from ../shared (never copied into the project);
tests that need it skip with a clear reason only when ../shared is absent."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DRIFTBENCH_SHARED", ROOT.parent / "shared")).resolve()
SHARED_MODELS = SHARED / "models"
DATA = SHARED / "data"
VIDEO = DATA / "video"
FACES = DATA / "faces"

HAVE_SHARED = (DATA / "video").is_dir()
SHARED_REASON = f"../shared not found at {SHARED}: real media and weights are needed"
#: how to get the material (said once, at the top of the run)
SHARED_HINT = (
    "get it: put the project's shared folder (data/video, data/faces, models) beside the checkout as "
    "../shared, or point DRIFTBENCH_SHARED=PATH at a copy (provenance: ../shared/README.md)"
)

needs_shared = pytest.mark.skipif(not HAVE_SHARED, reason=SHARED_REASON)


def pytest_configure(config: pytest.Config) -> None:
    # weights for tests and CI come from ../shared/models (plus the user's store)
    if SHARED_MODELS.is_dir():
        existing = os.environ.get("DRIFTBENCH_MODELS", "")
        if str(SHARED_MODELS) not in existing.split(os.pathsep):
            os.environ["DRIFTBENCH_MODELS"] = os.pathsep.join(p for p in (str(SHARED_MODELS), existing) if p)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One signal cache for the whole session (tests that measure caching make their own)."""
    d = tmp_path_factory.mktemp("signal-cache")
    os.environ["DRIFTBENCH_CACHE"] = str(d)
    return d


@pytest.fixture(scope="session")
def analyzer():
    """The default analyzer (YuNet + SFace + MediaPipe + age), loaded once per session."""
    if not SHARED_MODELS.is_dir():
        pytest.skip(f"../shared/models not found at {SHARED_MODELS}")
    from driftbench.measure.signals import FaceAnalyzer

    a = FaceAnalyzer.create("sface", device="cpu", download=True)
    yield a
    a.close()


# Real runs shared by the leaderboard, report, gate and expressivity tests (tests/realruns.py caches each
# run once per session; without ../shared they are made on the embedded synthetic clips).
@pytest.fixture(scope="session")
def adversarial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """infinitetalk_dub_9 (without ../shared: a synthetic drifting clip) beside a re-encoded, a frozen and a
    jittered-still copy (tests/realruns.py)."""
    from tests.realruns import adversarial_run

    return adversarial_run(tmp_path_factory)


@pytest.fixture(scope="session")
def anitalker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The AniTalker clips of ../shared (Mona Lisa HuBERT/MFCC, aiface2 raw/SR, a negative) as one run;
    without ../shared, their stand-ins on embedded synthetic clips (tests/realruns.py:
    synthetic_pair_rows)."""
    from tests.realruns import anitalker_run

    return anitalker_run(tmp_path_factory)


def pytest_report_header(config: pytest.Config) -> str:
    """One line at the top of the run: whether ../shared is there, and how to get it when it is not."""
    if HAVE_SHARED:
        return f"driftbench: real media and weights from {SHARED}"
    return (f"driftbench: {SHARED_REASON}: the tests on real footage are skipped (counted at the end); "
            f"the rest run on embedded synthetic clips -- {SHARED_HINT}")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Skips grouped by reason, one line each (pytest's -rs would list every test that skipped)."""
    from collections import Counter

    reasons: Counter[str] = Counter()
    for rep in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(rep, "longrepr", None)
        reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    if not reasons:
        return
    terminalreporter.write_sep("-", "skipped, by reason")
    for reason, n in reasons.most_common():
        hint = f" -- {SHARED_HINT}" if reason == SHARED_REASON or "../shared" in reason else ""
        terminalreporter.write_line(f"{n:4d} {reason}{hint}")
