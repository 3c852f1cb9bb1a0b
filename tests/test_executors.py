"""Executors give the same tables: in-process, a local process pool, and a local Ray instance."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.conftest import VIDEO, needs_shared
from tests.helpers import run_cli

pytestmark = needs_shared

CLIPS = ["real3dportrait_may_5s.mp4", "retalking_face1.mp4", "tpsmm_driving.mp4"]
TABLES = ("clips.csv", "curves.csv", "skipped.csv")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("exec-clips")
    for name in CLIPS:
        (d / name).symlink_to(VIDEO / "real" / name)
    return d


def _run(clip_dir: Path, out: Path, *extra: str) -> Path:
    code, _, err = run_cli("run", "model=folder", f"model.path={clip_dir}", "reference=first_frame",
                           f"output.dir={out}", "report.html=false", *extra)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def reference_run(clip_dir, tmp_path_factory, cache_dir) -> Path:
    return _run(clip_dir, tmp_path_factory.mktemp("inproc"), "executor.workers=1")


def _same_tables(a: Path, b: Path) -> None:
    for name in TABLES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_process_pool_gives_the_same_tables(clip_dir, reference_run, tmp_path):
    out = _run(clip_dir, tmp_path / "pool", "executor.workers=2", "cache.enabled=false")
    _same_tables(reference_run, out)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="ray not installed (pip install 'driftbench[ray]')"
)
def test_ray_local_instance_gives_the_same_tables(clip_dir, reference_run, tmp_path):
    out = _run(clip_dir, tmp_path / "ray", "executor=ray", "cache.enabled=false")
    _same_tables(reference_run, out)


def test_multirun_sweep_with_joblib_launcher(clip_dir, tmp_path, cache_dir):
    """`-m` sweeps through Hydra's joblib launcher: one job folder per value, exit code = worst job."""
    code, out, err = run_cli("run", "-m", "hydra/launcher=joblib", "model=folder", f"model.path={clip_dir}",
                             "reference=first_frame", "sampling.fps=1,2", f"output.root={tmp_path}",
                             "report.html=false")
    assert code == 0, err
    sweep = Path(out.strip().splitlines()[-1])
    jobs = sorted(p for p in sweep.iterdir() if (p / "clips.csv").is_file())
    assert [j.name.split("-", 1)[0] for j in jobs] == ["0", "1"]
    assert all("sampling.fps" in j.name and "model.path" not in j.name for j in jobs)
