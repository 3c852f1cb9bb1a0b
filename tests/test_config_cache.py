"""The composed-config cache (driftbench.config.compose_cached): what it returns is what Hydra composes,
any config change composes afresh, and a plain run with a warm cache never imports Hydra."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig, ListConfig, OmegaConf

from driftbench import config
from driftbench.errors import UsageError
from tests.conftest import ROOT


def _nodes(node, path: str = "") -> list[tuple]:
    """Every node of a config with its type, metadata (flags, schema types) and value: two configs with
    equal lists behave alike (the resolver cache, which holds ${now:...} values, is left out)."""
    meta = {k: v for k, v in vars(node._metadata).items() if k != "resolver_cache"}
    out: list[tuple] = [(path, type(node).__name__, repr(meta))]
    if isinstance(node, DictConfig | ListConfig):
        if node._is_none() or node._is_missing() or node._is_interpolation():
            return [*out, (path, repr(node._content))]
        keys = list(node._content) if isinstance(node, DictConfig) else range(len(node._content))
        for k in keys:
            out += _nodes(node._get_node(k), f"{path}.{k}")
        return out
    return [*out, (path, repr(node._val), type(node._val).__name__)]


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "config-cache"
    monkeypatch.setenv("DRIFTBENCH_CONFIG_CACHE", str(d))
    return d


@pytest.fixture()
def composes(monkeypatch) -> list[list[str]]:
    """The overrides of every real (Hydra) compose."""
    calls: list[list[str]] = []
    real = config.compose

    def counting(overrides, *a, **k):
        calls.append(list(overrides))
        return real(overrides, *a, **k)

    monkeypatch.setattr(config, "compose", counting)
    return calls


OVERRIDE_SETS = [
    [],
    ["model=folder", "model.path=/data/clips", "reference=first_frame", "output.dir=/tmp/runs/a",
     "cache.enabled=false"],
    ["model=folder", "model.path=clips/v2", "output.root=rel/runs", "report.html=false"],
    ["model=synthetic", "mitigation=reanchor", "sampling.fps=4", "metrics.horizons=[5,10]"],
    ["face=dlib", "output.dir=runs/${now:%Y}", "seed=3"],
    ["model=folder", "model.path=/a", "+agreement.options={}", "executor.workers=2"],
]


@pytest.mark.parametrize("overrides", OVERRIDE_SETS)
def test_cached_config_is_what_hydra_composes(overrides, cache, composes):
    fresh = config.compose(overrides)
    first = config.compose_cached(overrides)  # composes and keeps it
    again = config.compose_cached(overrides)  # from the cache
    assert _nodes(first) == _nodes(fresh) == _nodes(again)
    assert OmegaConf.to_yaml(again) == OmegaConf.to_yaml(fresh)
    assert OmegaConf.is_struct(again) and OmegaConf.get_type(again) is config.RunConfig
    assert len(composes) == 2  # the fresh one, then the first cached call; never the second


def test_path_overrides_share_one_entry(cache, composes):
    base = ["model=folder", "reference=first_frame", "cache.enabled=false"]
    for i in range(3):
        overrides = [*base, "model.path=/clips", f"output.dir=/tmp/runs/d{i}"]
        cfg = config.compose_cached(overrides)
        assert cfg.output.dir == f"/tmp/runs/d{i}" and cfg.model.path == "/clips"
        assert _nodes(cfg) == _nodes(config.compose(overrides))
    assert len(list(cache.glob("*.pickle"))) == 1
    assert composes.count(base) == 1  # composed once, for the first run


@pytest.mark.parametrize("overrides, kept", [
    (["output.dir=/a/b"], []),
    (["output.dir=/a", "output.dir=/b"], ["output.dir=/a", "output.dir=/b"]),  # the same key twice
    (["output={dir:/a}", "output.dir=/b"], ["output={dir:/a}", "output.dir=/b"]),  # a dict around it
    (["~output.dir", "output.dir=/b"], ["~output.dir", "output.dir=/b"]),
    (["output=null", "output.dir=/b"], ["output=null", "output.dir=/b"]),
    (["model=folder", "model.path=/c"], ["model=folder"]),  # a group option: composed first by Hydra too
])
def test_split_paths_sets_apart_only_what_cannot_interact(overrides, kept):
    assert config._split_paths(overrides)[0] == kept


@pytest.mark.parametrize("value", ["1e3", "true", "null", "x", "${now:%H}", "a\\/b", "a b/c", "/a,/b", "'/a'",
                                   "/é"])
def test_values_hydra_would_not_read_verbatim_stay_in_the_key(value):
    assert config._split_paths([f"output.dir={value}"]) == ([f"output.dir={value}"], [])


@pytest.mark.parametrize("value", ["/a", "a/b", "./x", "../up/1.5", "/tmp/a-b_c.d/"])
def test_plain_paths_are_set_apart(value):
    assert config._split_paths([f"output.dir={value}"]) == ([], [("output.dir", value)])


def _conf_copy(tmp_path, monkeypatch) -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(config.conf_dir(), conf)
    monkeypatch.setattr(config, "conf_dir", lambda: conf)
    return conf


def test_editing_adding_or_removing_a_config_file_composes_afresh(tmp_path, monkeypatch, cache, composes):
    conf = _conf_copy(tmp_path, monkeypatch)
    overrides = ["model=folder", "model.path=/clips"]
    assert config.compose_cached(overrides).model.pattern == "*.mp4"
    config.compose_cached(overrides)
    assert len(composes) == 1
    folder = conf / "model" / "folder.yaml"
    folder.write_text(folder.read_text().replace("*.mp4", "*.mov") if "*.mp4" in folder.read_text()
                      else folder.read_text() + "\npattern: '*.mov'\n")
    assert config.compose_cached(overrides).model.pattern == "*.mov"
    assert len(composes) == 2
    (conf / "mitigation" / "mine.yaml").write_text("name: mine\n")  # a file the compose does not select
    config.compose_cached(overrides)
    assert len(composes) == 3
    (conf / "mitigation" / "mine.yaml").unlink()
    config.compose_cached(overrides)
    assert len(composes) == 4
    assert config.compose_cached(overrides).model.pattern == "*.mov"
    assert len(composes) == 4  # unchanged files: the entry serves


def test_a_config_dir_change_composes_afresh(tmp_path, cache, composes):
    user = tmp_path / "user"
    (user / "model").mkdir(parents=True)
    (user / "model" / "mine.yaml").write_text("defaults:\n  - folder_schema\n  - _self_\nname: folder\n"
                                              "path: /clips\nlabel: first\n")
    overrides = ["model=mine", f"hydra.searchpath=[file://{user}]"]
    assert config.compose_cached(overrides).model.label == "first"
    assert config.compose_cached(overrides).model.label == "first"
    assert len(composes) == 1
    (user / "model" / "mine.yaml").write_text((user / "model" / "mine.yaml").read_text()
                                              .replace("first", "second"))
    assert config.compose_cached(overrides).model.label == "second"
    assert len(composes) == 2


def test_an_environment_interpolation_in_a_config_folder_is_never_kept(tmp_path, cache):
    user = tmp_path / "user"
    (user / "model").mkdir(parents=True)
    (user / "model" / "env.yaml").write_text("defaults:\n  - folder_schema\n  - _self_\nname: folder\n"
                                             "path: ${oc.env:HOME}\n")
    config.compose_cached(["model=env", f"hydra.searchpath=[file://{user}]"])
    assert not list(cache.glob("*.pickle"))


def test_now_is_the_time_of_each_run(cache):
    overrides = ["output.root=runs/${now:%H-%M-%S-%f}"]
    config.compose_cached(overrides)
    cached = config.compose_cached(overrides)
    assert not OmegaConf.get_cache(cached)  # resolved when read, not when the entry was written


def test_a_damaged_entry_is_composed_again(cache, composes):
    config.compose_cached(["seed=1"])
    for entry in cache.glob("*.pickle"):
        entry.write_bytes(b"not a pickle")
    assert config.compose_cached(["seed=1"]).seed == 1
    assert len(composes) == 2


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX ownership and modes")
@pytest.mark.parametrize("who", ["entry", "folder"])
def test_an_entry_others_could_write_is_never_unpickled(cache, composes, who):
    """A pickle runs code when loaded: an entry (or a cache folder) writable by group or others, e.g. a
    shared DRIFTBENCH_CONFIG_CACHE, is composed afresh; what the cache writes is for this user only."""
    config.compose_cached(["seed=2"])
    (entry,) = cache.glob("*.pickle")
    assert entry.stat().st_mode & 0o777 == 0o600 and cache.stat().st_mode & 0o077 == 0
    assert config.compose_cached(["seed=2"]).seed == 2 and len(composes) == 1
    os.chmod(entry if who == "entry" else cache, 0o666 if who == "entry" else 0o777)
    assert config.compose_cached(["seed=2"]).seed == 2
    assert len(composes) == 2


def test_the_cache_keeps_the_newest_entries(tmp_path):
    for i in range(5):
        (tmp_path / f"{i}.pickle").write_bytes(b"x")
        os.utime(tmp_path / f"{i}.pickle", (1000 + i, 1000 + i))
    (tmp_path / "other.txt").write_text("not an entry")
    config._prune(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3.pickle", "4.pickle", "other.txt"]
    assert config.CONFIG_CACHE_MAX_ENTRIES >= 64


@pytest.mark.parametrize("overrides", [
    ["model=synthetic", "model.path=/clips"],  # no such key: Hydra's message
    ["sampling.end=/x"],  # a path into a float: Hydra's message
    ["model=nope"],
    ["model=folder"],  # model.path missing
])
def test_config_errors_read_the_same_with_and_without_the_cache(overrides, tmp_path, monkeypatch):
    messages = []
    for setting in ("0", str(tmp_path / "c"), str(tmp_path / "c")):
        monkeypatch.setenv("DRIFTBENCH_CONFIG_CACHE", setting)
        with pytest.raises(UsageError) as err:
            config.validate_overrides(overrides, multirun=False)
        messages.append(str(err.value))
    assert messages[0] == messages[1] == messages[2]


def test_sweep_jobs_are_composed_alike(cache, monkeypatch):
    overrides = ["model=synthetic", "mitigation=none,reanchor", "sampling.fps=1,2", "output.dir=/tmp/sweep"]
    cached = config.validate_overrides(overrides, multirun=True)
    cached_again = config.validate_overrides(overrides, multirun=True)
    monkeypatch.setenv("DRIFTBENCH_CONFIG_CACHE", "off")
    fresh = config.validate_overrides(overrides, multirun=True)
    assert len(fresh) == 4
    assert [_nodes(c) for c in cached] == [_nodes(c) for c in cached_again] == [_nodes(c) for c in fresh]


def test_off_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFTBENCH_CONFIG_CACHE", "0")
    assert config.config_cache_dir() is None
    monkeypatch.delenv("DRIFTBENCH_CONFIG_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert config.config_cache_dir() == tmp_path / "driftbench" / "config"


def test_a_plain_run_with_a_warm_cache_imports_no_hydra(tmp_path):
    """What `driftbench run` does before measuring (arguments, config, run directory), in a fresh process:
    the second time, Hydra is not imported at all."""
    code = (
        "import sys\n"
        "from driftbench.cli.run import parse_run_args, _run_dir_and_args\n"
        "from driftbench.config import validate_overrides\n"
        f"args = parse_run_args(['model=folder', 'model.path={tmp_path}', 'output.dir={tmp_path}/run', "
        "'cache.enabled=false'])\n"
        "cfgs = validate_overrides(args.overrides, args.multirun, preflight_sources=False)\n"
        "_run_dir_and_args(cfgs, args)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] == 'hydra'}))\n"
    )
    env = {**__import__("os").environ, "DRIFTBENCH_CONFIG_CACHE": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                           check=True).stdout.strip() for _ in range(2)]
    assert runs == ["['hydra']", "[]"]
