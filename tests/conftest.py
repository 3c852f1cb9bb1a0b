"""Shared fixtures. Real media and weights come from ../shared (never copied into the project);
tests that need it skip with a clear reason only when ../shared is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DRIFTBENCH_SHARED", ROOT.parent / "shared")).resolve()
SHARED_MODELS = SHARED / "models"
DATA = SHARED / "data"
VIDEO = DATA / "video"
FACES = DATA / "faces"

needs_shared = pytest.mark.skipif(not (DATA / "video").is_dir(),
                                  reason=f"../shared not found at {SHARED}: real media and weights are needed")


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
    from driftbench.signals import FaceAnalyzer

    a = FaceAnalyzer.create("sface", device="cpu", download=True)
    yield a
    a.close()


# Real runs shared by the leaderboard, report, gate and expressivity tests (tests/realruns.py caches each
# run once per session; these fixtures only skip cleanly without ../shared).
@pytest.fixture(scope="session")
def adversarial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """infinitetalk_dub_9 beside a re-encoded, a frozen and a jittered-still copy (tests/realruns.py)."""
    if not (DATA / "video").is_dir():
        pytest.skip(f"../shared not found at {DATA}: real media and weights are needed")
    from tests.realruns import adversarial_run

    return adversarial_run(tmp_path_factory)


@pytest.fixture(scope="session")
def anitalker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The AniTalker clips of ../shared (Mona Lisa HuBERT/MFCC, aiface2 raw/SR, a negative) as one run."""
    if not (DATA / "video").is_dir():
        pytest.skip(f"../shared not found at {DATA}: real media and weights are needed")
    from tests.realruns import anitalker_run

    return anitalker_run(tmp_path_factory)
