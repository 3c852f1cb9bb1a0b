from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT, SHARED_MODELS, VIDEO, needs_shared
from tests.helpers import run_cli


def test_help_lists_subcommands():
    code, out, _ = run_cli("--help")
    assert code == 0
    for sub in ("run", "report", "gate", "validate", "calibrate", "fetch", "compare"):
        assert f"  {sub}" in out


def test_run_help_lists_config_groups():
    code, out, _ = run_cli("run", "--help")
    assert code == 0 and "model={" in out and "exit codes" in out.lower()


@pytest.mark.parametrize("override", ["model.nope=1", "metrics.bin_s=abc", "model=does_not_exist", "nope=1",
                                      "model=folder"])
def test_bad_config_exits_2_before_any_work(override, tmp_path):
    code, _out, err = run_cli("run", override, f"output.root={tmp_path}")
    assert code == 2
    assert "fix:" in err and err.count("\n") <= 2
    assert not any(tmp_path.iterdir())  # nothing was written


def test_unknown_subcommand_exits_2():
    code, _, err = run_cli("frobnicate")
    assert code == 2 and "unknown subcommand" in err


def test_every_config_composes():
    """Every YAML in conf/ composes with its schema (a wrong key anywhere fails CI)."""
    from driftbench.config import compose

    conf = ROOT / "conf"
    groups = [p for p in conf.iterdir() if p.is_dir()]
    assert groups
    for g in groups:
        for y in sorted(g.glob("*.yaml")):
            extra = ["model.path=/tmp"] if (g.name, y.stem) == ("model", "folder") else []
            cfg = compose([f"{g.name}={y.stem}", *extra])
            assert cfg[g.name] is not None, y


def test_missing_folder_path_is_a_usage_error(tmp_path):
    code, _, err = run_cli(
        "run", "model=folder", f"model.path={tmp_path / 'nope'}", f"output.root={tmp_path}"
    )
    assert code == 2 and "does not exist" in err


def test_conf_is_found_from_the_package():
    from driftbench.config import conf_dir

    assert (conf_dir() / "config.yaml").is_file()
    assert Path(conf_dir()).name == "conf"


_IMPORT_PROBE = """
import json, sys, threading, time
events = []

def hook(event, args):
    if event == "import" and str(args[0]).split(".")[0] in ("scipy", "matplotlib", "jinja2", "onnxruntime"):
        events.append((threading.current_thread().name, str(args[0]), time.perf_counter()))

sys.addaudithook(hook)
import driftbench.measure.preload as preload

waited = []
wait = preload.Preload.wait

def timed_wait(self):
    wait(self)
    waited.append(time.perf_counter())

preload.Preload.wait = timed_wait
import driftbench.measure.signals as signals

loaded = []
load = signals.FaceAnalyzer._load_signal_models

def timed_load(self):
    load(self)
    loaded.append(time.perf_counter())

signals.FaceAnalyzer._load_signal_models = timed_load
from driftbench.cli import main

code = main(sys.argv[1:])
print(json.dumps({"code": code, "events": events, "waited": waited, "loaded": loaded}))
"""


@needs_shared
def test_report_modules_are_imported_only_by_the_preload_thread_while_clips_are_measured(tmp_path):
    """The report's modules are imported on a background thread while a real clip is measured; no
    other thread may import them until that thread is joined (two threads importing scipy at once
    can see a half-initialised module)."""
    import json
    import os
    import subprocess
    import sys

    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "clip.mp4").symlink_to(VIDEO / "real" / "edtalk_pose_source2.mp4")
    env = {**os.environ, "DRIFTBENCH_MODELS": str(SHARED_MODELS)}
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            _IMPORT_PROBE,
            "run",
            "model=folder",
            f"model.path={clips}",
            "reference=first_frame",
            "sampling.end=6",
            f"output.dir={tmp_path / 'run'}",
            "cache.enabled=false",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["code"] == 0 and len(out["waited"]) == 1
    # the OpenCV engines on a CPU: onnxruntime is never imported, not even for its version (run.json reads
    # it from the package metadata)
    assert not [m for _, m, _ in out["events"] if m.startswith("onnxruntime")]
    before = [(thread, module) for thread, module, t in out["events"] if t < out["waited"][0]]
    assert before and {thread for thread, _ in before} == {"driftbench-preload"}, before[:5]
    # and only once the clip's own models are loaded (MediaPipe's import would wait on the same GIL)
    assert len(out["loaded"]) == 1 and min(t for _, _, t in out["events"]) > out["loaded"][0]
    assert (tmp_path / "run" / "report.html").is_file()
    # charts drawn in the browser (the default): the run never imports matplotlib
    assert not [m for _, m, _ in out["events"] if m.startswith("matplotlib")]


def test_a_one_clip_run_preloads_no_scipy_but_a_several_clip_run_does():
    """One clip's report needs no scipy.stats (driftbench.results.stats): the preload spares the ~0.5 s CPU
    of importing it; with several clips the report's statistics import it, so it is preloaded. matplotlib
    only when the report draws PNG figures (report.charts=png)."""
    from driftbench.measure.preload import REPORT_MODULES, report_modules

    assert "scipy.stats" in REPORT_MODULES
    assert not any(m.startswith("scipy") for m in report_modules(1, "png"))
    assert set(report_modules(1, "png")) | {"scipy.stats"} == set(REPORT_MODULES)
    assert report_modules(2, "png") == REPORT_MODULES
    assert report_modules(2) == report_modules(2, "browser") == tuple(
        m for m in REPORT_MODULES if not m.startswith("matplotlib"))
    assert report_modules(1) == ("jinja2",)


def test_executable_exit_codes_and_output_survive_the_quick_exit():
    """`python -m driftbench` ends with os._exit after flushing: exit codes and piped output intact."""
    import subprocess
    import sys

    ok = subprocess.run(
        [sys.executable, "-m", "driftbench", "--version"], cwd=ROOT, capture_output=True, text=True
    )
    assert ok.returncode == 0 and ok.stdout.startswith("driftbench ")
    bad = subprocess.run([sys.executable, "-m", "driftbench", "nosuchcommand"], cwd=ROOT, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "unknown subcommand" in bad.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "driftbench", "run", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    # the whole text arrives, down to its last line
    assert helped.returncode == 0 and helped.stdout.rstrip().splitlines()[-1].startswith(
        "Exit codes: 0 all measured"
    )
