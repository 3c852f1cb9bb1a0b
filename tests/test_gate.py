"""The regression gate on real runs: passes an identical rerun, fails a real degradation (the same clip
rendered blurred), exits 2 on bad usage, writes Markdown and JUnit XML; the committed baseline is sane."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftbench.cli import gate as cli_gate
from driftbench.results import gate
from tests.conftest import ROOT
from tests.realruns import PAIRS_MODEL as M
from tests.realruns import copy_run, degraded_run

COMMITTED = ROOT / "metrics" / "baselines" / "generated.json"


@pytest.fixture(scope="module")
def baseline(anitalker: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("baseline") / "anitalker.json"
    assert cli_gate.main([str(anitalker), "--baseline", str(path), "--update"]) == 0
    return path


def run_gate(run: Path, baseline: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "driftbench", "gate", str(run), "--baseline", str(baseline), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_baseline_records_every_clip_and_its_provenance(baseline: Path) -> None:
    b = json.loads(baseline.read_text())
    assert b["format"] == gate.BASELINE_FORMAT
    assert set(b["groups"]) == {f"{M}/none", f"{M}/mfcc", f"{M}/sr"}
    g = b["groups"][f"{M}/none"]
    assert g["n_clips"] == 3 and set(g["clips"]) == {"monalisa", "aiface2", "negative"}
    assert (
        g["clips"]["negative"]["survival_at_30s"] == 0.0 and g["clips"]["monalisa"]["survival_at_30s"] == 1.0
    )
    assert g["clips"]["monalisa"]["survival_at_60s"] is None  # 51.6 s clip: unknown at 60 s
    assert g["summary"]["survival_at_30s"]["mean"] == pytest.approx(2 / 3)
    assert b["produced_by"]["backend"] == "sface" and b["produced_by"]["sampling"]["fps"] == 2.0
    assert b["tolerances"]["sim_dec_at_30s"] == 0.02


def test_identical_run_passes_with_markdown_and_junit(
    anitalker: Path, baseline: Path, tmp_path: Path
) -> None:
    junit = tmp_path / "gate.xml"
    summary = tmp_path / "summary.md"
    res = run_gate(anitalker, baseline, "--junit", str(junit), "--summary", str(summary))
    assert res.returncode == 0, res.stdout + res.stderr
    assert (
        "## driftbench gate: passed" in res.stdout and f"| {M}/none | sim_dec_at_30s | pass |" in res.stdout
    )
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


@pytest.mark.parametrize(
    "case", ["no-run", "no-baseline", "bad-json", "bad-format", "bad-tolerance", "no-args"]
)
def test_bad_usage_exits_2(
    case: str, anitalker: Path, baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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
    assert cli_gate.main(argv) == 2
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

    wf = yaml.safe_load(
        (ROOT / "examples" / "ci" / "github-actions-driftbench.yml").read_text(encoding="utf-8")
    )
    steps = wf["jobs"]["drift-gate"]["steps"]
    runs = " ".join(str(s.get("run", "")) for s in steps)
    assert "driftbench run model=folder" in runs and "driftbench gate $RUN_DIR --baseline $BASELINE" in runs
    assert wf["env"]["BASELINE"].startswith("metrics/baselines/")
    # the gate's flags in the example exist
    assert cli_gate.main(["--help"]) == 0


def test_a_clip_that_can_no_longer_be_measured_fails(anitalker: Path, baseline: Path, tmp_path: Path) -> None:
    run = copy_run(anitalker, tmp_path / "shorter")
    clips = pd.read_csv(run / "clips.csv")
    clips.loc[clips["clip_id"] == "monalisa", "sim_dec_at_30s"] = float("nan")  # e.g. the clip got shorter
    clips.to_csv(run / "clips.csv", index=False)
    res = run_gate(run, baseline)
    assert res.returncode == 1 and "no longer measurable for 1 clip(s): monalisa" in res.stdout


# -- issue 16: the gate's input is validated and a vacuous pass is refused (each failed on the old code) -----
def _one_line_exit_2(res: subprocess.CompletedProcess) -> None:
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("driftbench gate: ") and "Traceback" not in res.stderr, (
        res.stderr
    )
    assert "fix:" in lines[0]


@pytest.mark.parametrize("content", [
    {"format": 1, "groups": {}},  # passed with 0 checks, even on a regression
    {"format": 1, "groups": []},  # traceback
    {"format": 1, "groups": {"g": {"clips": {}}}},  # a group without model/mitigation: traceback
    {"format": 1, "groups": {"g": {"model": "anitalker", "mitigation": "none", "clips": {"x": 1}}}},
    [1, 2],  # not an object: traceback
])
def test_malformed_or_empty_baseline_exits_2(anitalker: Path, tmp_path: Path, content: object) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(content))
    _one_line_exit_2(run_gate(anitalker, bad))


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-0.1"])
def test_tolerance_nan_or_inf_exits_2(anitalker: Path, baseline: Path, value: str) -> None:
    _one_line_exit_2(run_gate(anitalker, baseline, "--tolerance", f"face_rate={value}"))


def test_corrupt_run_json_exits_2(anitalker: Path, baseline: Path, tmp_path: Path) -> None:
    run = copy_run(anitalker, tmp_path / "corrupt")
    (run / "run.json").write_text('{"config": {"truncated', encoding="utf-8")
    _one_line_exit_2(run_gate(run, baseline))


def test_clips_csv_without_model_exits_2(anitalker: Path, baseline: Path, tmp_path: Path) -> None:
    run = copy_run(anitalker, tmp_path / "nomodel")
    pd.read_csv(run / "clips.csv").drop(columns=["model"]).to_csv(run / "clips.csv", index=False)
    _one_line_exit_2(run_gate(run, baseline))


def test_a_run_sharing_no_group_says_so_in_one_line(anitalker: Path, baseline: Path, tmp_path: Path) -> None:
    run = copy_run(anitalker, tmp_path / "othermodel")
    clips = pd.read_csv(run / "clips.csv")
    clips["model"] = "another-model"
    clips.to_csv(run / "clips.csv", index=False)
    res = run_gate(run, baseline)
    _one_line_exit_2(res)
    assert "shares no (model/mitigation) group" in res.stderr and "group missing" not in res.stdout


def test_zero_checks_cannot_pass(anitalker: Path, baseline: Path, tmp_path: Path) -> None:
    """A baseline whose every metric is unmeasurable checks nothing: refused, not passed."""
    b = json.loads(baseline.read_text())
    for g in b["groups"].values():
        g["summary"] = {k: {"mean": None, "lo": None, "hi": None, "n": 0} for k in gate.TRACKED}
        g["clips"] = {}
    empty = tmp_path / "unmeasurable.json"
    empty.write_text(json.dumps(b))
    res = run_gate(anitalker, empty)
    _one_line_exit_2(res)
    assert "no metric could be checked" in res.stderr


# -- issue 15: a gate that sees one clip
# ------------------------------------------------------------------------
def test_one_collapsing_clip_fails_the_gate_naming_it(
    anitalker: Path, baseline: Path, tmp_path: Path
) -> None:
    """One clip of the 3-clip anitalker/none group drops 0.1 at 30 s: the mean change (-0.033) has a CI that
    includes 0, which the old rule let pass; the same clip measured twice is deterministic, so it fails."""
    run = copy_run(anitalker, tmp_path / "collapse")
    clips = pd.read_csv(run / "clips.csv")
    clips.loc[clips["clip_id"] == "monalisa", "sim_dec_at_30s"] -= 0.1
    clips.to_csv(run / "clips.csv", index=False)
    res = run_gate(run, baseline)
    assert res.returncode == 1, res.stdout + res.stderr
    row = next(ln for ln in res.stdout.splitlines() if ln.startswith("| anitalker/none | sim_dec_at_30s |"))
    assert "**FAIL**" in row and "monalisa (-0.1000)" in row
    # within tolerance on every clip: passes
    clips.loc[clips["clip_id"] == "monalisa", "sim_dec_at_30s"] += 0.09
    clips.to_csv(run / "clips.csv", index=False)
    assert run_gate(run, baseline).returncode == 0


def test_end_drift_lowest_bin_and_slope_are_gated_raw_beside_decoupled(baseline: Path) -> None:
    b = json.loads(baseline.read_text())
    clip = b["groups"]["anitalker/none"]["clips"]["monalisa"]
    for k in ("drift_dec_at_end", "drift_raw_at_end", "min_bin_dec", "min_bin_raw", "slope_dec_per_min",
              "slope_raw_per_min"):
        assert clip[k] is not None and np.isfinite(clip[k]), k


def test_committed_default_baseline_is_the_embedded_default() -> None:
    """metrics/baselines/default.json: the embedded default (8 synthetic 60 s clips) measured with the weights
    a fresh install resolves; the step clips drift by their end, the no-drift controls do not."""
    b = json.loads((ROOT / "metrics" / "baselines" / "default.json").read_text(encoding="utf-8"))
    prod = b["produced_by"]
    assert prod["model_config"]["source"] == "embedded" and prod["model_config"]["duration_s"] >= 60
    assert prod["command"].startswith("driftbench gate reports/runs/ci-default")
    clips = b["groups"]["synthetic/none"]["clips"]
    assert len(clips) == 8 and all(c["sim_dec_at_60s"] is not None for c in clips.values())
    for cid, c in clips.items():
        if cid.endswith("/step"):
            assert c["drift_dec_at_end"] > 0.3, cid
        if cid.endswith("/none"):
            assert abs(c["drift_dec_at_end"]) < 0.1, cid
