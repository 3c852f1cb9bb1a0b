"""Plug-ins without a fork: examples/plugin is installed (pip, into a temporary folder) and driftbench finds
its clip source and mitigation through entry points and its config options through Hydra's SearchPathPlugin;
a generator API it describes in YAML drives the generic HTTP adapter against the local fake Runway server.
No real media: the clips are embedded synthetic ones."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT
from tests.helpers import last_line

EXAMPLE = ROOT / "examples" / "plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/plugin installed the ordinary way (pip), into a folder put on PYTHONPATH."""
    tmp = tmp_path_factory.mktemp("plugin")
    src = shutil.copytree(
        EXAMPLE, tmp / "src", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    target = tmp / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(target), str(src)], capture_output=True, text=True,
                         check=False, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return target


def drift(installed: Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(installed)])}
    return subprocess.run([sys.executable, "-m", "driftbench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900, check=False)


def test_the_packages_config_options_compose_and_show_in_hydras_search_path(installed: Path) -> None:
    res = drift(
        installed, "run", "--cfg", "job", "model=my_clips", "model.path=list.txt", "mitigation=unsharp"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    cfg = yaml.safe_load(res.stdout)
    assert cfg["model"] == {"name": "clip_list", "path": "list.txt", "label": "my_clips"}
    assert cfg["mitigation"]["name"] == "unsharp" and cfg["mitigation"]["params"] == {
        "sigma": 1.5,
        "amount": 0.6,
    }
    info = drift(installed, "run", "--info", "searchpath")
    assert "pkg://driftbench_example.conf" in info.stdout
    # without the package: the option does not exist (exit 2, one line)
    res = subprocess.run([sys.executable, "-m", "driftbench", "run", "model=my_clips"], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "Could not find 'model/my_clips'" in res.stderr


def test_plugin_source_and_mitigation_run_end_to_end(installed: Path, tmp_path: Path) -> None:
    from tests.realruns import synthetic_pairs

    (clip, _ref), _other = synthetic_pairs().values()
    person = tmp_path / "clips" / "astronaut"
    person.mkdir(parents=True)
    shutil.copy(clip, person / "take1.mp4")
    listing = tmp_path / "clips" / "list.txt"
    listing.write_text("# my clips\nastronaut/take1.mp4\nastronaut/missing.mp4\n", encoding="utf-8")
    out = tmp_path / "run"
    res = drift(installed, "run", "model=my_clips", f"model.path={listing}", "mitigation=unsharp",
                "mitigation.params.amount=1.0", "sampling.fps=1", "sampling.end=6", "metrics.horizons=[4]",
                "report.html=false", "progress=false", f"output.dir={out}", f"cache.dir={tmp_path / 'cache'}")
    assert res.returncode == 1, res.stderr[-3000:]  # one listed clip is missing: the rest measured
    assert last_line(res.stdout) == str(out)
    clips = pd.read_csv(out / "clips.csv")
    assert clips["clip_id"].tolist() == ["my_clips:take1"] and clips["mitigation"].tolist() == ["unsharp"]
    assert clips["character"].tolist() == ["astronaut"] and clips["n_samples"].tolist() == [7]
    assert clips["face_rate"].iloc[0] == 1.0 and clips["mean_raw"].iloc[0] > 0.6
    skipped = pd.read_csv(out / "skipped.csv")
    assert skipped["reason"].tolist() == ["missing_file"] and "missing.mp4" in skipped["message"].iloc[0]
    mitigated = list((tmp_path / "mitigated").rglob("*.mp4"))
    assert len(mitigated) == 1  # the plug-in's processor wrote the sharpened clip into the mitigation cache


def test_a_broken_plugin_is_a_usage_error(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "broken_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[driftbench.mitigations]\nbroken = broken_plugin_mod:Nope\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}
    code = (
        "import sys\nfrom driftbench.mitigations import create\nfrom driftbench.errors import UsageError\n"
        "try:\n    create('broken', {})\nexcept UsageError as e:\n    print(e)\n    sys.exit(2)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "plug-in 'broken'" in res.stdout and "broken-plugin" in res.stdout
    assert "-- fix:" in res.stdout


def test_a_generator_api_in_yaml_from_the_package(installed: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """model=runway_gen4 (the package's YAML, built on the shipped runway.yaml) against the fake Runway."""
    from tests.test_generators_fakes import RUNWAY_KEY, FakeRunway, Footage
    from tests.test_kling import kling_source

    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.setenv("RUNWAYML_API_SECRET", RUNWAY_KEY)
    ds = tmp_path / "ds"
    ds.mkdir()
    footage = Footage()
    import av
    import cv2

    with av.open(str(footage.path)) as c:
        cv2.imwrite(str(ds / "presenter.png"), next(c.decode(video=0)).to_ndarray(format="bgr24"))
    (ds / "dataset.yaml").write_text(
        "name: fake_suite\ndurations: [4, 6]\ncharacters:\n  presenter: {references: [presenter.png]}\n"
        "prompts:\n  - {id: talk, stress: [long_take], text: 'The presenter talks.', continue: ['Still "
        "talking.']}\n"
    )
    with FakeRunway(footage) as fake:
        src = kling_source(fake.url, tmp_path / "cache", ds, "model.extend_s=2",
                           "hydra.searchpath=[pkg://driftbench_example.conf]", model="runway_gen4")
        clips = src.clips()
        assert src.skipped == [] and fake.log.rejected == []
        assert {s["model"] for s in fake.log.submits} == {"gen4_turbo"}
        assert {c.model for c in clips} == {"runway_gen4"} and len(clips) == 2
