"""Small truths: ``n_references`` counts the references a clip was measured against, and ``executor=ray``
starts nothing when every clip is already measured. No real media: embedded synthetic clips."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT
from tests.realruns import synthetic_pairs, write_manifest


def test_n_references_counts_the_references_used(tmp_path: Path) -> None:
    (clip, ref), _other = synthetic_pairs().values()
    # two reference images of the same person (the portrait and a copy): images mode averages both
    ref_copy = tmp_path / "ref_copy.png"
    ref_copy.write_bytes(ref.read_bytes())
    manifest = write_manifest(
        tmp_path / "m.csv", [{"clip": str(clip), "clip_id": "two", "reference": f"{ref};{ref_copy}"}]
    )
    common = [
        sys.executable,
        "-m",
        "driftbench",
        "run",
        "model=folder",
        f"model.path={manifest}",
        "sampling.fps=1",
        "sampling.end=3",
        "report.html=false",
        "progress=false",
    ]
    for mode, out, want in (("auto", tmp_path / "auto", 2), ("first_frame", tmp_path / "ff", 1)):
        res = subprocess.run(
            [*common, f"reference={mode}", f"output.dir={out}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        row = pd.read_csv(out / "clips.csv").iloc[0]
        assert row["n_references"] == want, (mode, row["reference_mode"])
    assert pd.read_csv(tmp_path / "ff" / "clips.csv").iloc[0]["reference_mode"] == "first_frame"


def test_ray_is_not_started_when_nothing_is_left_to_measure(monkeypatch: pytest.MonkeyPatch) -> None:
    from driftbench.measure import executors
    from driftbench.measure.clip import MeasureSettings

    started: list[str] = []
    fake = types.ModuleType("ray")
    fake.is_initialized = lambda: False  # type: ignore[attr-defined]
    fake.init = lambda *a, **k: started.append("init")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray", fake)
    results: list[object] = []
    executors.execute("ray", [], MeasureSettings(), on_result=results.append)
    assert started == [] and results == []
