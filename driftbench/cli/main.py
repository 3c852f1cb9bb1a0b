"""The ``driftbench`` executable: dispatches the first argument to one subcommand module of this package.

Imports are lazy: ``driftbench --help``, ``report`` and ``gate`` never import torch or load models.
Exit codes (:class:`driftbench.errors.ExitCode`): 0 ok; 1 some clips failed / a check or gate failed (results
for the rest written); 2 bad usage or configuration (checked before any work); 130 interrupted (resumable);
143 terminated by SIGTERM (resumable, like 130).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from driftbench.errors import ExitCode

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
  dev        maintainer tasks: rebuild the expressivity reference, regenerate metrics/README.md

Run `driftbench SUBCOMMAND --help` for each one's options.
"""


def _setup_logging(verbose: bool = False) -> None:
    import logging

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(message)s",
                        stream=sys.stderr)


def _complete(argv: Sequence[str]) -> int:
    """The completion scripts Hydra installs call ``driftbench -sc query=SHELL`` with the command line in
    $COMP_LINE: the subcommand names, or (after ``run``) Hydra's completion of the overrides."""
    import os

    line = os.environ.get("COMP_LINE", "")
    words = line.split(" ")
    if len(words) <= 2:  # completing the subcommand itself
        print(" ".join(c for c in COMMANDS if c.startswith(words[-1] if len(words) == 2 else "")))
        return ExitCode.OK
    if words[1] != "run":
        return ExitCode.OK  # the other subcommands take paths: the shell's default completion
    os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]])
    from driftbench.cli.run import cmd_run

    return cmd_run(["--shell-completion", *argv])


#: subcommand -> "module:function" of this package, imported only when that subcommand runs
COMMANDS: dict[str, Callable[[Sequence[str]], int] | str] = {
    "run": "driftbench.cli.run:cmd_run",
    "report": "driftbench.cli.report:cmd_report",
    "gate": "driftbench.cli.gate:main",
    "validate": "driftbench.cli.validate:main",
    "compare": "driftbench.cli.compare:main",
    "calibrate": "driftbench.cli.calibrate:cmd_calibrate",
    "fetch": "driftbench.cli.fetch:cmd_fetch",
    "dev": "driftbench.cli.dev:main",
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
        return ExitCode.OK if argv else ExitCode.USAGE
    if argv[0] in ("-V", "--version"):
        from driftbench import __version__

        print(f"driftbench {__version__}")
        return ExitCode.OK
    if argv[0] in ("-sc", "--shell-completion"):
        return _complete(argv[1:])
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"driftbench: unknown subcommand {name!r} -- fix: one of {', '.join(COMMANDS)} "
              "(see `driftbench --help`)", file=sys.stderr)
        return ExitCode.USAGE
    _setup_logging()
    from driftbench.errors import Terminated

    try:
        return _command(name)(rest)
    except Terminated:
        print("driftbench: terminated (SIGTERM); rerun the same command to resume", file=sys.stderr)
        return ExitCode.TERMINATED
    except KeyboardInterrupt:
        print("driftbench: interrupted; rerun the same command to resume", file=sys.stderr)
        return ExitCode.INTERRUPTED


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
