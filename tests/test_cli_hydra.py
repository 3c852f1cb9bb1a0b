"""The whole Hydra command line on ``driftbench run``: Hydra's own flags are handed to ``@hydra.main``
(--cfg, --info, --hydra-help, --shell-completion), --config-dir / hydra.searchpath add the user's config
groups, hydra.run.dir / hydra.sweep.dir are honoured. No real media: config composition and one run on the
embedded synthetic clips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.helpers import last_line, run_cli


def drift(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftbench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
        check=False,
    )


@pytest.fixture()
def user_conf(tmp_path: Path) -> Path:
    """A user's config folder: a dataset of their own (model group) and a tuned mitigation preset."""
    d = tmp_path / "myconf"
    (d / "model").mkdir(parents=True)
    (d / "mitigation").mkdir()
    (d / "model" / "my_clips.yaml").write_text(
        f"defaults:\n  - folder_schema\nname: folder\npath: {tmp_path}\nlabel: my_clips\n")
    (d / "mitigation" / "soft_reanchor.yaml").write_text(
        "defaults:\n  - reanchor\nparams:\n  strength: 0.5\n")
    return d


@pytest.mark.parametrize("flags", [["--cfg", "job"], ["--cfg=job"], ["-c", "job"]])
def test_cfg_job_prints_the_composed_config_and_runs_nothing(flags: list[str], tmp_path: Path) -> None:
    res = drift(
        "run", *flags, "model=folder", f"model.path={tmp_path}", "sampling.fps=3", f"output.root={tmp_path}"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    cfg = yaml.safe_load(res.stdout)
    assert cfg["model"]["path"] == str(tmp_path) and cfg["sampling"]["fps"] == 3.0 and "hydra" not in cfg
    assert not any(tmp_path.iterdir())  # printed, nothing run


def test_cfg_resolve_package_and_hydra() -> None:
    res = drift(
        "run",
        "--cfg",
        "job",
        "--resolve",
        "--package",
        "output",
        "output.root=/tmp/x",
        "output.dir=${output.root}/y",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert yaml.safe_load(res.stdout.split("\n", 1)[1]) == {"root": "/tmp/x", "dir": "/tmp/x/y"}
    res = drift("run", "--cfg", "hydra")
    assert res.returncode == 0 and "hydra:" in res.stdout and "searchpath" in res.stdout


def test_info_and_hydra_help_are_hydras(user_conf: Path) -> None:
    res = drift("run", "--info", "searchpath", "-cd", str(user_conf))
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"file://{user_conf}" in res.stdout and "file://" + str(ROOT / "conf") in res.stdout
    assert "DEBUG" not in res.stdout + res.stderr  # printed once, by Hydra
    res = drift("run", "--info")
    assert res.returncode == 0 and "Defaults List" in res.stdout
    res = drift("run", "--hydra-help")
    assert res.returncode == 0 and "Hydra (1." in res.stdout and "--cfg" in res.stdout


def test_config_dir_adds_the_users_groups_beside_the_shipped_ones(user_conf: Path, tmp_path: Path) -> None:
    code, out, _ = run_cli("run", "--help", "-cd", str(user_conf))
    assert code == 0 and "my_clips" in out and "soft_reanchor" in out and "kling" in out
    for args in (["-cd", str(user_conf)], ["--config-dir", str(user_conf)],
                 [f"hydra.searchpath=[file://{user_conf}]"]):
        res = drift("run", "--cfg", "job", *args, "model=my_clips", "mitigation=soft_reanchor")
        assert res.returncode == 0, res.stderr[-2000:]
        cfg = yaml.safe_load(res.stdout)
        assert (
            cfg["model"]["label"] == "my_clips" and cfg["model"]["recursive"] is False
        )  # typed by the schema
        assert cfg["mitigation"]["name"] == "reanchor" and cfg["mitigation"]["params"]["strength"] == 0.5
    from driftbench.cli.run import parse_run_args
    from driftbench.config import validate_overrides

    ra = parse_run_args(["-cd", str(user_conf), "hydra.searchpath=[pkg://driftbench]", "model=my_clips"])
    assert ra.search_dirs == [str(user_conf)]
    (cfg,) = validate_overrides(
        ra.overrides, False, preflight_sources=False
    )  # the plain-run path composes with both entries
    assert cfg.model.label == "my_clips"


@pytest.mark.parametrize(("args", "says"), [
    (["--bogus"], "unknown option: --bogus"),
    (["--cfg", "nope"], "invalid choice: 'nope'"),
    (["-cp", "/tmp"], "--config-path"),
    (["-cd", "/nonexistent/conf"], "--config-dir /nonexistent/conf: not a folder"),
    (["--resolve"], "--resolve and --package go with --cfg"),
    (["--cfg", "job", "model=nope"], "Could not find 'model/nope'"),
    (["hydra.run.dir=OUT/a", "output.dir=OUT/b"], "name two run directories"),
    (["-m", "mitigation=none,reanchor", "--cfg", "job"], "-m cannot go with --cfg"),
    (["--info", "-m", "mitigation=none,reanchor"], "-m cannot go with --info"),
])
def test_bad_flags_exit_2_with_one_line(args: list[str], says: str, tmp_path: Path) -> None:
    args = [a.replace("OUT", str(tmp_path)) for a in args]
    code, _out, err = run_cli("run", *args, f"output.root={tmp_path}")
    assert code == 2 and says in err and "-- fix:" in err and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_install_scripts(shell: str) -> None:
    res = drift("run", "-sc", f"install={shell}")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "complete" in res.stdout and "-sc query=" in res.stdout


def test_shell_completion_queries_complete_groups_options_and_subcommands() -> None:
    def query(line: str) -> list[str]:
        res = drift("-sc", "query=bash", env={"COMP_LINE": line, "COMP_POINT": str(len(line))})
        assert res.returncode == 0, res.stderr[-2000:]
        return res.stdout.split()

    assert {"model=folder", "model=kling", "model=runway", "model=synthetic"} <= set(
        query("driftbench run model=")
    )
    assert query("driftbench run mitigation=rea") == ["mitigation=reanchor"]
    assert "sampling.fps=" in query("driftbench run sampling.")
    assert query("driftbench r") == ["run", "report"]


def test_hydra_run_dir_is_the_run_directory(tmp_path: Path) -> None:
    """hydra.run.dir (with Hydra's interpolations) is honoured on the plain one-compose path and
    when another hydra.* setting sends the run through Hydra's launcher."""
    common = ["run", "model=synthetic", "model.max_clips=1", "model.duration_s=3", "model.schedules=[none]",
              "sampling.fps=1", "report.html=false", "progress=false", f"cache.dir={tmp_path / 'cache'}"]
    res = drift(
        *common, f"hydra.run.dir={tmp_path}/out/" + "${now:%Y}", env={"DRIFTBENCH_CACHE": str(tmp_path)}
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = Path(last_line(res.stdout))
    assert out.parent == tmp_path / "out" and out.name.isdigit() and (out / "clips.csv").is_file()
    assert not (ROOT / "reports" / "runs" / "synthetic-none").exists()
    res = drift(*common, f"hydra.run.dir={tmp_path}/out2", "hydra.job.name=mine",
                env={"DRIFTBENCH_CACHE": str(tmp_path)})
    assert res.returncode == 0, res.stderr[-3000:]
    assert last_line(res.stdout) == str(tmp_path / "out2") and (tmp_path / "out2" / "clips.csv").is_file()
    assert (tmp_path / "out2" / ".hydra" / "hydra.yaml").is_file()  # written by Hydra's own run


def test_hydra_sweep_dir_is_the_sweep_folder(tmp_path: Path) -> None:
    from driftbench.cli.run import _run_dir_and_args, parse_run_args
    from driftbench.config import validate_overrides

    ra = parse_run_args(["-m", "mitigation=none,reanchor", f"hydra.sweep.dir={tmp_path}/sw-" + "${now:%Y}"])
    sweep, hydra_args = _run_dir_and_args(validate_overrides(ra.overrides, True), ra)
    assert sweep.parent == tmp_path and sweep.name.startswith("sw-20")
    assert f"hydra.sweep.dir='{sweep}'" in hydra_args


def test_output_dir_is_the_sweep_folder_with_m(tmp_path: Path) -> None:
    from driftbench.cli.run import _run_dir_and_args, parse_run_args
    from driftbench.config import validate_overrides

    ra = parse_run_args(["-m", "mitigation=none,reanchor", f"output.dir={tmp_path}/mine"])
    sweep, hydra_args = _run_dir_and_args(validate_overrides(ra.overrides, True), ra)
    assert sweep == tmp_path / "mine" and f"hydra.sweep.dir='{sweep}'" in hydra_args
    # the same folder named twice is one setting
    ra = parse_run_args(["-m", "mitigation=none,reanchor", f"output.dir={tmp_path}/mine",
                         f"hydra.sweep.dir={tmp_path}/mine"])
    assert _run_dir_and_args(validate_overrides(ra.overrides, True), ra)[0] == tmp_path / "mine"


@pytest.mark.parametrize(("args", "says"), [
    (["-m", "mitigation=none,reanchor", "hydra.sweep.dir=OUT/a", "output.dir=OUT/b"],
     "name two sweep folders"),
    (["-m", "output.dir=OUT/a,OUT/b"], "output.dir is swept"),
])
def test_sweep_folder_conflicts_exit_2_with_one_line(args: list[str], says: str, tmp_path: Path) -> None:
    args = [a.replace("OUT", str(tmp_path)) for a in args]
    code, _out, err = run_cli("run", *args, f"output.root={tmp_path}")
    assert code == 2 and says in err and "-- fix:" in err and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())
