"""``driftbench run``: the Hydra app (one run, or a sweep with -m) and its argument handling.

Imports are lazy: ``driftbench --help``, ``report`` and ``gate`` never import torch or load models.
Exit codes: 0 ok; 1 some clips failed / a check or gate failed (results for the rest written);
2 bad usage or configuration (checked before any work); 130 interrupted (resumable); 143 terminated by
SIGTERM (resumable, like 130).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from driftbench.config import _config_error, _expand_sweeps, compose, validate_overrides
from driftbench.errors import ExitCode

RUN_HELP = """\
usage: driftbench run [-m] [--yes] [-cd DIR] [--cfg job|hydra|all [--resolve] [-p PKG]] [--info [WHAT]]
                      [--hydra-help] [-sc install=bash|zsh|fish] [OVERRIDE ...]

Measure identity over time for every clip of a model (clip source), write a run directory
(clips.csv, curves.csv, frames.parquet, skipped.csv, run.json, report.html) and print its path
as the last line. Rerunning the same command resumes an interrupted run.

Overrides are Hydra overrides (key=value); an unknown key or a wrong type exits 2 before any work.
  model=synthetic|folder|kling|...   where clips come from (default: synthetic, built offline)
  model.path=DIR_OR_MANIFEST         for model=folder: a folder of clips or a CSV/YAML/JSON manifest
                                     (character=anna;ben: several characters, docs/MULTI-CHARACTER.md)
  model.cast=2                       for model=synthetic: two-character clips (constant, swap, leakage)
  reference=auto|images|first_frame  reference images of the character, or the clip's own opening
  mitigation=none|reanchor|chain|colormatch|freeze|paste|extend
  face=sface                         face backend (detector + aligner + embedder)
  face=[sface,dlib]                  recognizer agreement: the first drives the results, the others measure
                                     the same clips too (same as agreement.backends=[dlib]; agreement.csv)
  sampling.fps=2.0                   frames measured per second of video
  metrics.horizons=[5,30,60,120]     seconds at which sim@T and drift@T are reported
  published.exact=false|true         FaceSim on the samples (default) or on its own 32 frames;
                                     published.enabled=false: none; published.all_frames=true: Human_Identity
                                     on every frame
  executor=local|ray executor.workers=N
  output.dir=PATH                    run directory (default reports/runs/<model>-<mitigation>-<hash>),
                                     with -m the sweep folder (one subfolder per job); hydra.run.dir=PATH /
                                     hydra.sweep.dir=PATH are the same setting
  device=auto|cpu|cuda               GPU when present (auto), CPU otherwise
  report.charts=browser|png          report charts drawn by the page (default) or as matplotlib images;
                                     report.html=false: tables only
  -m / --multirun                    sweep comma-separated values, e.g. -m mitigation=none,reanchor
  --yes                              allow generator APIs to spend credits (after the cost estimate)

Hydra's own options (handed to Hydra):
  --cfg job|hydra|all, -c            print the composed config and exit (--resolve, --package/-p PKG)
  --info [all|config|defaults|defaults-tree|plugins|searchpath]   Hydra's information and exit
  --hydra-help                       Hydra's help
  --shell-completion, -sc            install=bash|zsh|fish prints the completion script (see README)
  --config-dir DIR, -cd DIR          add your own config groups/options (model/*.yaml, mitigation/*.yaml,
                                     ...) beside the shipped ones; same as hydra.searchpath=[file://DIR]
  --config-name NAME, -cn NAME       another primary config (found in a --config-dir)

Config groups: {groups}
Exit 130 (interrupted) and 143 (terminated, SIGTERM): the run resumes when the same command is rerun.
Exit codes: 0 all measured, 1 some clips failed (the rest written), 2 bad usage/config or run dir in use.
"""


def _groups_text(extra_dirs: Sequence[str] = ()) -> str:
    """``group={options}`` for the shipped config groups and those of ``extra_dirs`` (--config-dir)."""
    from driftbench.config import conf_dir

    groups: dict[str, set[str]] = {}
    for root in (conf_dir(), *(Path(d) for d in extra_dirs)):
        if not root.is_dir():
            continue
        for d in (p for p in root.iterdir() if p.is_dir()):
            opts = {f.stem for f in d.glob("*.yaml")}
            if opts:
                groups.setdefault(d.name, set()).update(opts)
    return " ".join(f"{g}={{{','.join(sorted(o))}}}" for g, o in sorted(groups.items()))


# -- run ----------------------------------------------------------------------------------------------
_RUN_EXIT: list[int] = []


def _register_resolvers() -> None:
    """``${driftbench_dirname:TEXT}``: a sweep job's override set as one safe folder name. Hydra's own
    ``override_dirname`` keeps '/' and '..' from values (``model.path=../clips``), which nests folders
    or escapes the sweep directory; what driftbench writes must stay inside it."""
    from omegaconf import OmegaConf

    from driftbench.sources.base import safe_key

    if not OmegaConf.has_resolver("driftbench_dirname"):
        OmegaConf.register_new_resolver("driftbench_dirname", lambda text: safe_key(str(text), 120))


# at import: launcher workers (joblib, ray) import this module to run _task, and resolve the job dir there
_register_resolvers()


def _execute_job(cfg, run_dir) -> int:
    """One run into ``run_dir``; errors become exit codes with a one-line message (never a traceback)."""
    from driftbench.errors import DriftbenchError, RunDirBusy, Terminated, UsageError
    from driftbench.io import write_json
    from driftbench.runner import execute_run

    try:
        code = execute_run(cfg, run_dir)
    except RunDirBusy as exc:  # the directory belongs to the run holding it: its status.json is left alone
        print(f"driftbench run: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except UsageError as exc:
        print(f"driftbench run: {exc}", file=sys.stderr)
        code = ExitCode.USAGE
    except DriftbenchError as exc:
        print(f"driftbench run: {exc}", file=sys.stderr)
        code = ExitCode.FAIL
    except Terminated:
        print(
            f"driftbench run: terminated (SIGTERM); the clips measured so far are kept in {run_dir}; rerun "
            "the "
            "same command to resume",
            file=sys.stderr,
        )
        code = ExitCode.TERMINATED
    except KeyboardInterrupt:
        print(f"driftbench run: interrupted; the clips measured so far are kept in {run_dir}; rerun the same "
              "command to resume", file=sys.stderr)
        code = ExitCode.INTERRUPTED
    except Exception as exc:  # a bug, not bad input: one line here, the traceback in the run's log
        import logging
        import traceback

        logging.getLogger("driftbench").debug("%s", traceback.format_exc())
        try:
            from driftbench.errors import scrub

            with open(run_dir / "driftbench.log", "a", encoding="utf-8") as fh:
                fh.write(scrub(traceback.format_exc()))  # no credential in a file meant to be shared
        except OSError:
            pass
        from driftbench.errors import scrub

        print(
            f"driftbench run: internal error {type(exc).__name__}: {scrub(str(exc))} (traceback in "
            f"{run_dir}/driftbench.log) "
            "-- fix: please report it; clips measured so far are kept, rerun to resume",
            file=sys.stderr,
        )
        code = ExitCode.FAIL
    try:
        write_json(run_dir / "status.json", {"exit_code": code})
    except OSError:
        pass
    return code


def _task(cfg) -> None:  # the Hydra task function (multirun jobs, or runs with hydra.* overrides)
    from pathlib import Path

    from hydra.core.hydra_config import HydraConfig

    code = _execute_job(cfg, Path(HydraConfig.get().runtime.output_dir))
    _RUN_EXIT.append(code)
    if code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
        raise SystemExit(code)


def _run_single(cfg, overrides: list[str], run_dir) -> int:
    """A single run needs none of Hydra's launcher machinery: the config composed (and validated) once is
    run directly, and ``.hydra/`` gets the same config.yaml and overrides.yaml an app run would write."""
    from omegaconf import OmegaConf

    from driftbench.errors import RunDirBusy
    from driftbench.io import write_text
    from driftbench.runner import discard_refused_run, run_lock

    fresh = not any(run_dir.iterdir())
    try:
        with run_lock(run_dir):  # before .hydra/ is written: a second writer changes nothing of the first's
            write_text(run_dir / ".hydra" / "config.yaml", OmegaConf.to_yaml(cfg))
            write_text(
                run_dir / ".hydra" / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(overrides)))
            )
            code = _execute_job(cfg, run_dir)
    except RunDirBusy as exc:
        print(f"driftbench run: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    if code == ExitCode.USAGE and fresh:
        discard_refused_run(run_dir)  # refused before any clip (no clips, duplicate ids, no API key)
    return code


@dataclass
class RunArgs:
    """``driftbench run``'s command line, read by Hydra's own argument parser."""

    #: the user's overrides, with --config-dir folded into ``hydra.searchpath``
    overrides: list[str]
    multirun: bool = False
    #: Hydra's own commands (--cfg, --info, --hydra-help, --shell-completion): the argv handed to
    #: ``@hydra.main``
    hydra_argv: list[str] = field(default_factory=list)
    config_name: str = "config"
    #: extra config folders (--config-dir and ``hydra.searchpath=[file://...]``), for --help's group list
    search_dirs: list[str] = field(default_factory=list)


#: options of Hydra's parser that driftbench does not take (its primary config folder is fixed)
_REFUSED = {"config_path": "--config-path/-cp (use --config-dir DIR to add your own config groups)",
            "experimental_rerun": "--experimental-rerun (rerun the same command instead: runs resume)",
            "run": "--run/-r (a run is the default)"}


def parse_run_args(argv: Sequence[str]) -> RunArgs:
    """Parse with Hydra's own argument parser (every spelling Hydra accepts: ``--cfg=job``, ``-c job``,
    ``-cd DIR``...); raise UsageError with a one-line message for what driftbench cannot take.
    A command line of overrides only (no argument starting with '-') is what Hydra's parser reads as
    exactly those overrides: it is taken as such without importing Hydra (~0.2 s)."""
    from driftbench.errors import UsageError

    if not any(str(a).startswith("-") for a in argv):
        overrides = face_list_overrides([str(o) for o in argv])
        return RunArgs(overrides, search_dirs=_searchpath_dirs(overrides))
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.prog = "driftbench run"

    def error(message: str) -> NoReturn:
        message = message.replace("unrecognized arguments", "unknown option")
        raise UsageError(f"{message} -- fix: see `driftbench run --help`")

    parser.error = error  # type: ignore[method-assign]
    # flags (-m, --cfg job, -cd DIR) may stand anywhere among the overrides
    ns = parser.parse_intermixed_args(list(argv))
    for key, what in _REFUSED.items():
        if getattr(ns, key, None):
            raise UsageError(f"driftbench run does not take {what} -- fix: see `driftbench run --help`")
    overrides = face_list_overrides([str(o) for o in ns.overrides])
    search_dirs = _searchpath_dirs(overrides)
    if ns.config_dir is not None:
        d = Path(ns.config_dir).expanduser().resolve()
        if not d.is_dir():
            raise UsageError(
                f"--config-dir {ns.config_dir}: not a folder -- fix: a folder holding config groups, "
                "e.g. DIR/model/mine.yaml"
            )
        search_dirs.append(str(d))
        overrides = _with_searchpath(overrides, f"file://{d}")
    hydra_argv: list[str] = []
    if ns.cfg is not None:
        hydra_argv += ["--cfg", ns.cfg, *(["--resolve"] if ns.resolve else []),
                       *(["--package", ns.package] if ns.package else [])]
    elif ns.resolve or ns.package:
        raise UsageError(
            "--resolve and --package go with --cfg -- fix: e.g. driftbench run --cfg job --resolve"
        )
    if ns.info is not None:
        hydra_argv += ["--info", ns.info]
    if ns.hydra_help:
        hydra_argv.append("--hydra-help")
    if ns.shell_completion:
        hydra_argv.append("--shell-completion")
    if ns.multirun and hydra_argv:
        # Hydra takes one of --cfg/--info/--shell-completion/--multirun (it raises a traceback otherwise)
        raise UsageError(
            f"-m cannot go with {hydra_argv[0]}: Hydra answers for one composed config, not a sweep's -- "
            "fix: drop -m and give one value per key (e.g. driftbench run --cfg job mitigation=reanchor)"
        )
    return RunArgs(overrides, bool(ns.multirun), hydra_argv, ns.config_name or "config", search_dirs)


def face_list_overrides(overrides: list[str]) -> list[str]:
    """``face=[a,b,...]`` (several recognizers in one run) as ``face=a agreement.backends=[b,...]``: the
    first backend is the primary one, the others are measured for recognizer agreement. (Hydra would read
    the list as a multi-select of the ``face`` group and merge the options into one backend.)"""
    from driftbench.errors import UsageError

    out: list[str] = []
    extra: list[str] = []
    for o in overrides:
        key, sep, value = o.partition("=")
        value = value.strip()
        if key.strip() == "face" and sep and value.startswith("[") and value.endswith("]"):
            names = [v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip()]
            if not names:
                raise UsageError("face=[] names no backend -- fix: e.g. face=[sface,dlib]")
            out.append(f"face={names[0]}")
            extra += names[1:]
        else:
            out.append(o)
    if extra:
        if any(o.partition("=")[0].lstrip("+~") == "agreement.backends" for o in out):
            raise UsageError("face=[...] and agreement.backends both name extra backends -- fix: use one of "
                             "them, e.g. face=[sface,dlib]")
        out.append(f"agreement.backends=[{','.join(extra)}]")
    return out


def _help_dirs(args: Sequence[str]) -> list[str]:
    """The config folders named by -cd/--config-dir and hydra.searchpath file:// entries, read without
    Hydra's parser (for --help; a run parses them with Hydra's own)."""
    import re

    dirs = []
    for i, a in enumerate(args):
        if a in ("-cd", "--config-dir") and i + 1 < len(args):
            dirs.append(args[i + 1])
        elif a.startswith("--config-dir="):
            dirs.append(a.split("=", 1)[1])
        elif a.lstrip("+~").startswith("hydra.searchpath="):
            dirs += re.findall(r"file://([^,'\"\]\s]+)", a)
    return [str(Path(d).expanduser()) for d in dirs]


def _searchpath_value(overrides: list[str]) -> tuple[int, list[str]] | None:
    """(index, entries) of a ``hydra.searchpath=[...]`` override, parsed by Hydra's override grammar."""
    for i, o in enumerate(overrides):
        if o.lstrip("+~").split("=", 1)[0] == "hydra.searchpath" and "=" in o:
            from hydra.core.override_parser.overrides_parser import OverridesParser

            value = OverridesParser.create().parse_override(o).value()
            return i, [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return None


def _searchpath_dirs(overrides: list[str]) -> list[str]:
    found = _searchpath_value(overrides)
    return [e[len("file://"):] for e in found[1] if e.startswith("file://")] if found else []


def _with_searchpath(overrides: list[str], entry: str) -> list[str]:
    """``overrides`` with ``entry`` added to (or as) the ``hydra.searchpath`` override."""
    found = _searchpath_value(overrides)
    if found is None:
        return [*overrides, f"hydra.searchpath=[{_hydra_quote(entry)}]"]
    i, entries = found
    value = ",".join(_hydra_quote(e) for e in [*entries, entry])
    return [*overrides[:i], f"hydra.searchpath=[{value}]", *overrides[i + 1:]]


#: hydra.* overrides a single run honours without Hydra's launcher (the config is composed once)
_FAST_HYDRA_KEYS = ("hydra.searchpath", "hydra.run.dir")


def _hydra_key(override: str) -> str | None:
    key = override.lstrip("+~").split("=", 1)[0]
    return key if key.startswith(("hydra.", "hydra/")) else None


def _dir_setting(run_args: RunArgs, key: str) -> str | None:
    """The directory a user's ``hydra.run.dir`` / ``hydra.sweep.dir`` override names, resolved the way
    Hydra resolves it (``${now:...}``, ``${hydra:job.name}``, ``${output.root}``), or None when not given."""
    if not any(_hydra_key(o) == key for o in run_args.overrides):
        return None
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from driftbench.errors import UsageError

    combo = _expand_sweeps(run_args.overrides)[0] if run_args.multirun else run_args.overrides
    try:
        cfg = compose(combo, run_args.config_name, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        return str(OmegaConf.select(cfg, key, throw_on_missing=True))
    except Exception as exc:
        raise UsageError(
            f"{key}: {_config_error(exc)} -- fix: a folder path (or use output.dir=PATH)"
        ) from None


def _run_dir_and_args(cfgs: list, run_args: RunArgs) -> tuple[Path, list[str]]:
    """The run (or sweep) directory and the hydra.* settings a Hydra-launched run gets.

    ``hydra.run.dir`` is the same setting as ``output.dir`` (both given and different: exit 2);
    ``hydra.sweep.dir`` is the sweep folder (default ``<output.root>/sweep-<hash of the overrides>``)."""
    from omegaconf import OmegaConf

    from driftbench.errors import UsageError
    from driftbench.runner import default_run_name

    args = run_args.overrides
    first = OmegaConf.to_container(cfgs[0], resolve=True)
    assert isinstance(first, dict)
    root = Path(str(first["output"]["root"]))
    hydra_args = ["hydra.job.chdir=False", "hydra/hydra_logging=disabled", "hydra/job_logging=none"]
    if run_args.multirun:
        import hashlib

        sweep = _dir_setting(run_args, "hydra.sweep.dir")
        out_dirs = {str(OmegaConf.select(c, "output.dir")) for c in cfgs}
        if len(out_dirs) > 1:
            raise UsageError(f"output.dir is swept ({', '.join(sorted(out_dirs))}); in a sweep it names the "
                             "sweep folder -- fix: give one output.dir (each job gets a subfolder of it)")
        sweep_out = first["output"].get("dir")
        if sweep_out is not None:
            if sweep is not None and Path(sweep) != Path(str(sweep_out)):
                raise UsageError(
                    f"hydra.sweep.dir={sweep} and output.dir={sweep_out} name two sweep folders -- fix: "
                    "give one of them (in a sweep they are the same setting)"
                )
            sweep = str(sweep_out)
        if sweep is None:
            tag = hashlib.sha256("\0".join(sorted(args)).encode()).hexdigest()[:10]
            sweep = str(root / f"sweep-{tag}")
        hydra_args += [f"hydra.sweep.dir={_hydra_quote(sweep)}",
                       "hydra.sweep.subdir='${driftbench_dirname:${hydra.job.num}-${hydra:job.override_dirname}}'"]
        return Path(sweep), hydra_args
    out_dir = first["output"].get("dir")
    hydra_dir = _dir_setting(run_args, "hydra.run.dir")
    if hydra_dir is not None and out_dir is not None and Path(hydra_dir) != Path(str(out_dir)):
        raise UsageError(
            f"hydra.run.dir={hydra_dir} and output.dir={out_dir} name two run directories -- fix: "
            "give one of them (they are the same setting)"
        )
    run_dir = Path(str(out_dir or hydra_dir or root / default_run_name(first)))
    hydra_args.append(f"hydra.run.dir={_hydra_quote(str(run_dir))}")
    return run_dir, hydra_args


def _hydra_main(argv: list[str], config_name: str) -> None:
    """Hand ``argv`` to Hydra's own ``@hydra.main`` entry (runs ``_task`` for each job)."""
    import hydra

    from driftbench.config import conf_dir, register_configs

    register_configs()
    saved = sys.argv
    sys.argv = [saved[0], *argv]
    try:
        hydra.main(config_path=str(conf_dir()), config_name=config_name, version_base="1.3")(_task)()
    finally:
        sys.argv = saved


def _hydra_command(run_args: RunArgs) -> int:
    """--cfg, --info, --hydra-help, --shell-completion: Hydra's own answer (its exit code)."""
    from driftbench.errors import UsageError

    if "--shell-completion" not in run_args.hydra_argv:
        try:  # a bad override: driftbench's one-line message and exit 2, not Hydra's traceback
            validate_overrides(run_args.overrides, run_args.multirun, run_args.config_name,
                               preflight_sources=False)
        except UsageError as exc:
            print(f"driftbench run: {exc}", file=sys.stderr)
            return ExitCode.USAGE
    import logging

    for handler in list(logging.getLogger().handlers):  # Hydra sets up its own (stdout) for what it prints
        logging.getLogger().removeHandler(handler)
    try:
        _hydra_main([*run_args.hydra_argv, *run_args.overrides], run_args.config_name)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else ExitCode.FAIL
    return ExitCode.OK


def cmd_run(argv: Sequence[str]) -> int:
    from driftbench.errors import UsageError

    args = list(argv)
    if "--yes" in args:
        args = [a for a in args if a != "--yes"]
        import os

        os.environ["DRIFTBENCH_CONFIRM_SPEND"] = "1"
    if any(a in ("-h", "--help") for a in args):  # before Hydra is imported: --help stays quick
        print(RUN_HELP.format(groups=_groups_text(_help_dirs(args))))
        return ExitCode.OK
    try:
        run_args = parse_run_args(args)
    except UsageError as exc:
        print(f"driftbench run: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except SystemExit as exc:  # Hydra's --version
        return exc.code if isinstance(exc.code, int) else ExitCode.OK
    if run_args.hydra_argv:
        return _hydra_command(run_args)
    try:
        cfgs = validate_overrides(run_args.overrides, run_args.multirun, run_args.config_name)
        result_dir, hydra_args = _run_dir_and_args(cfgs, run_args)
    except UsageError as exc:
        print(f"driftbench run: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    from driftbench.runner import _check_writable

    try:  # before Hydra creates anything there (it would crash with a traceback and exit 1)
        _check_writable(result_dir)
    except UsageError as exc:
        print(f"driftbench run: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    overrides = run_args.overrides
    if not run_args.multirun and all(_hydra_key(a) in (None, *_FAST_HYDRA_KEYS) for a in overrides):
        code = _run_single(cfgs[0], overrides, result_dir)
        if result_dir.is_dir():  # a run refused before any work leaves no directory to print
            from driftbench.report.summary import print_summary

            print_summary(result_dir)
            print(str(result_dir))
        return code
    _RUN_EXIT.clear()
    # the user's hydra.run.dir / hydra.sweep.dir are resolved above: the resolved value (hydra_args) wins
    user = [a for a in overrides if _hydra_key(a) not in ("hydra.run.dir", "hydra.sweep.dir")]
    try:
        _hydra_main([*(["-m"] if run_args.multirun else []), *user, *hydra_args], run_args.config_name)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else ExitCode.FAIL
        if code != ExitCode.OK:
            print(str(result_dir))
            return code
    if run_args.multirun:
        # status.json of every job, plus this process's own codes (a job refused because another run holds
        # its directory leaves that run's status.json alone)
        codes = [*_sweep_codes(result_dir), *_RUN_EXIT]
        _render_sweep(result_dir)
    else:
        codes = _RUN_EXIT
    from driftbench.report.summary import print_summary

    print_summary(result_dir, sweep=run_args.multirun)
    print(str(result_dir))
    return max(codes) if codes else ExitCode.FAIL


def _render_sweep(sweep_dir) -> None:
    """The sweep's leaderboard and report (a report failure never changes the run's exit code)."""
    import logging

    from driftbench.report import render_sweep

    try:
        render_sweep(sweep_dir)
    except Exception as exc:
        logging.getLogger("driftbench").error(
            "sweep report for %s failed: %s: %s -- fix: rerun `driftbench compare %s/*/`",
            sweep_dir,
            type(exc).__name__,
            exc,
            sweep_dir,
        )


def _hydra_quote(value: str) -> str:
    """``value`` as a quoted Hydra override value, read back verbatim: unquoted, a run directory with
    a space, parentheses, a comma or '=' is a grammar error that Hydra reports with a traceback."""
    import re

    value = re.sub(
        r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value
    )  # quotes and the backslashes before them
    value = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, value)  # backslashes before the closing quote
    return "'" + value.replace("${", "\\${") + "'"  # no interpolation inside a path


def _sweep_codes(sweep_dir) -> list[int]:
    import json

    codes = []
    for st in sorted(sweep_dir.glob("*/status.json")):
        try:
            codes.append(int(json.loads(st.read_text())["exit_code"]))
        except (OSError, ValueError, KeyError):
            codes.append(ExitCode.FAIL)
    return codes


