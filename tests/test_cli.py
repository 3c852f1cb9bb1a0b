from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
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
    from driftbench.cli import compose

    conf = ROOT / "conf"
    groups = [p for p in conf.iterdir() if p.is_dir()]
    assert groups
    for g in groups:
        for y in sorted(g.glob("*.yaml")):
            extra = ["model.path=/tmp"] if (g.name, y.stem) == ("model", "folder") else []
            cfg = compose([f"{g.name}={y.stem}", *extra])
            assert cfg[g.name] is not None, y


def test_missing_folder_path_is_a_usage_error(tmp_path):
    code, _, err = run_cli("run", "model=folder", f"model.path={tmp_path / 'nope'}", f"output.root={tmp_path}")
    assert code == 2 and "does not exist" in err


def test_conf_is_found_from_the_package():
    from driftbench.config import conf_dir

    assert (conf_dir() / "config.yaml").is_file()
    assert Path(conf_dir()).name == "conf"
