"""The regression gate on real runs: passes an identical rerun, fails a real degradation (the same clip
rendered blurred), exits 2 on bad usage, writes Markdown and JUnit XML; the committed baseline is sane."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

from driftbench import gate
from tests.conftest import ROOT
from tests.realruns import PAIRS_MODEL as M
from tests.realruns import copy_run, degraded_run

COMMITTED = ROOT / "metrics" / "baselines" / "generated.json"


@pytest.fixture(scope="module")
def baseline(anitalker: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("baseline") / "anitalker.json"
    assert gate.main([str(anitalker), "--baseline", str(path), "--update"]) == 0
    return path


def run_gate(run: Path, baseline: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "driftbench", "gate", str(run), "--baseline", str(baseline), *extra],
                          cwd=ROOT, capture_output=True, text=True, check=False)


def test_baseline_records_every_clip_and_its_provenance(baseline: Path) -> None:
    b = json.loads(baseline.read_text())
    assert b["format"] == gate.BASELINE_FORMAT
    assert set(b["groups"]) == {f"{M}/none", f"{M}/mfcc", f"{M}/sr"}
    g = b["groups"][f"{M}/none"]
    assert g["n_clips"] == 3 and set(g["clips"]) == {"monalisa", "aiface2", "negative"}
    assert g["clips"]["negative"]["survival_at_30s"] == 0.0 and g["clips"]["monalisa"]["survival_at_30s"] == 1.0
    assert g["clips"]["monalisa"]["survival_at_60s"] is None  # 51.6 s clip: unknown at 60 s
    assert g["summary"]["survival_at_30s"]["mean"] == pytest.approx(2 / 3)
    assert b["produced_by"]["backend"] == "sface" and b["produced_by"]["sampling"]["fps"] == 2.0
    assert b["tolerances"]["sim_dec_at_30s"] == 0.02


def test_identical_run_passes_with_markdown_and_junit(anitalker: Path, baseline: Path, tmp_path: Path) -> None:
    junit = tmp_path / "gate.xml"
    summary = tmp_path / "summary.md"
    res = run_gate(anitalker, baseline, "--junit", str(junit), "--summary", str(summary))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "## driftbench gate: passed" in res.stdout and f"| {M}/none | sim_dec_at_30s | pass |" in res.stdout
    assert summary.read_text() == res.stdout.rstrip("\n") + "\n"
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    assert int(suite.get("tests", "0")) == 3 * len(gate.TRACKED)
    assert int(suite.get("skipped", "0")) >= 3  # nothing at 60 s in these clips


def test_a_real_degradation_fails_the_gate(tmp_path_factory: pytest.TempPathFactory, baseline: Path,
                                           tmp_path: Path) -> None:
    """The Mona Lisa clip rendered blurred, under the same clip id: its similarity falls, the gate says 1."""
    degraded = degraded_run(tmp_path_factory)
    res = run_gate(degraded, baseline, "--junit", str(tmp_path / "g.xml"))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "## driftbench gate: FAILED" in res.stdout
    assert f"| {M}/none | sim_dec_at_30s | **FAIL** |" in res.stdout
    assert "lost coverage" in res.stdout  # the mfcc/sr groups are missing from this run
    failures = ET.parse(tmp_path / "g.xml").getroot().iter("failure")
    assert any("paired over 1 clip" in (f.get("message") or "") for f in failures)


def test_tolerance_and_ci_decide(anitalker: Path, baseline: Path, tmp_path: Path) -> None:
    run = copy_run(anitalker, tmp_path / "shifted")
    clips = pd.read_csv(run / "clips.csv")
    small = clips.copy()
    small["sim_dec_at_30s"] -= 0.01  # within the 0.02 tolerance
    small.to_csv(run / "clips.csv", index=False)
    assert run_gate(run, baseline).returncode == 0
    assert run_gate(run, baseline, "--tolerance", "sim_dec_at_30s=0.005").returncode == 1
    # unpaired (other clip ids): the CI of both sides widens what is tolerated
    renamed = clips.copy()
    renamed["clip_id"] = renamed["clip_id"] + "-new"
    renamed.to_csv(run / "clips.csv", index=False)
    res = run_gate(run, baseline)
    assert res.returncode == 0 and "| 0.02 | unpaired |" in res.stdout
    renamed["sim_dec_at_30s"] -= 0.5  # far beyond tolerance + both CIs
    renamed.to_csv(run / "clips.csv", index=False)
    res = run_gate(run, baseline)
    assert res.returncode == 1 and "no common clips" in res.stdout


@pytest.mark.parametrize("case", ["no-run", "no-baseline", "bad-json", "bad-format", "bad-tolerance", "no-args"])
def test_bad_usage_exits_2(case: str, anitalker: Path, baseline: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    argv = [str(anitalker), "--baseline", str(baseline)]
    if case == "no-run":
        argv[0] = str(tmp_path)
    elif case == "no-baseline":
        argv[2] = str(tmp_path / "missing.json")
    elif case == "bad-json":
        bad.write_text("{not json")
        argv[2] = str(bad)
    elif case == "bad-format":
        bad.write_text(json.dumps({"format": 99}))
        argv[2] = str(bad)
    elif case == "bad-tolerance":
        argv += ["--tolerance", "nonsense=1"]
    else:
        argv = []
    assert gate.main(argv) == 2
    if argv:
        assert "fix:" in capsys.readouterr().err or case == "bad-tolerance"


def test_committed_baseline_is_a_real_measurement() -> None:
    b = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert b["format"] == gate.BASELINE_FORMAT
    prod = b["produced_by"]
    assert prod["backend"] == "sface" and prod["sampling"]["fps"] == 2.0
    assert prod["model_config"]["path"].endswith("generated/manifest.csv")
    clips = {cid for g in b["groups"].values() for cid in g["clips"]}
    assert len(clips) == 17 and "infinitetalk_dub_9.mp4" in clips
    neg = next(g for g in b["groups"].values() if "negative_aiface3clip_aiface4ref.mp4" in g["clips"])
    assert neg["clips"]["negative_aiface3clip_aiface4ref.mp4"]["survival_at_30s"] == 0.0
    mona = next(g for g in b["groups"].values() if "anitalker_monalisa_mfcc.mp4" in g["clips"])
    assert mona["clips"]["anitalker_monalisa_mfcc.mp4"]["sim_dec_at_30s"] > 0.85


def test_example_workflow_runs_the_gate_on_a_committed_baseline() -> None:
    import yaml

    wf = yaml.safe_load((ROOT / "examples" / "ci" / "github-actions-driftbench.yml").read_text(encoding="utf-8"))
    steps = wf["jobs"]["drift-gate"]["steps"]
    runs = " ".join(str(s.get("run", "")) for s in steps)
    assert "driftbench run model=folder" in runs and "driftbench gate $RUN_DIR --baseline $BASELINE" in runs
    assert wf["env"]["BASELINE"].startswith("metrics/baselines/")
    # the gate's flags in the example exist
    assert gate.main(["--help"]) == 0


def test_a_clip_that_can_no_longer_be_measured_fails(anitalker: Path, baseline: Path, tmp_path: Path) -> None:
    run = copy_run(anitalker, tmp_path / "shorter")
    clips = pd.read_csv(run / "clips.csv")
    clips.loc[clips["clip_id"] == "monalisa", "sim_dec_at_30s"] = float("nan")  # e.g. the clip got shorter
    clips.to_csv(run / "clips.csv", index=False)
    res = run_gate(run, baseline)
    assert res.returncode == 1 and "no longer measurable for 1 clip(s): monalisa" in res.stdout
