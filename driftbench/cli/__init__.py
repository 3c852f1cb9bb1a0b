"""cli: the command line, the only package that parses arguments (argparse, Hydra's app) -- one module per
subcommand (``run``, ``report``, ``gate``, ``validate``, ``compare``, ``calibrate``, ``fetch``, ``dev``) and
:mod:`~driftbench.cli.main`, which dispatches to them. A subcommand module turns arguments into calls of the
stage packages and an exit code (:class:`driftbench.errors.ExitCode`); it holds no measurement or statistics
of its own. It may import every other package; nothing outside ``cli/`` imports it (import-linter contract in
pyproject.toml). Adding a subcommand: a module here with ``main(argv) -> int`` and one entry in
:data:`driftbench.cli.main.COMMANDS`.
"""

from driftbench.cli.main import console_main, main

__all__ = ["console_main", "main"]
