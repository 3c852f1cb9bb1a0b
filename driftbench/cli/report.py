"""``driftbench report``: re-render a report from stored run tables (no video, no models)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from driftbench.errors import ExitCode


def add_charts_option(p: argparse.ArgumentParser) -> None:
    """``--charts browser|png`` (config.Charts), for the commands that render a report."""
    from driftbench.config import Charts

    p.add_argument("--charts", choices=list(Charts.__members__), default=Charts.browser.value,
                   help="browser: charts drawn by the page from its embedded data (interactive; default); "
                        "png: matplotlib images (a page that needs no script)")


def cmd_report(argv: Sequence[str]) -> int:
    from pathlib import Path

    p = argparse.ArgumentParser(
        prog="driftbench report",
        description="Re-render report.html from stored run tables (no video, no models).",
    )
    p.add_argument("run_dirs", nargs="+", type=Path, help="run directories (several are merged)")
    p.add_argument("--out", type=Path, default=None,
                   help="output directory (default: the run directory; several runs: reports/compare-<hash>)")
    p.add_argument("--title", default="driftbench report")
    add_charts_option(p)
    a = p.parse_args(argv)
    from driftbench.errors import UsageError
    from driftbench.io import check_run_tables
    from driftbench.report import render_runs

    for d in a.run_dirs:
        if not (d / "clips.csv").is_file():
            print(
                f"driftbench report: {d}: not a run directory (no clips.csv) -- fix: pass the directory that "
                "`driftbench run` printed",
                file=sys.stderr,
            )
            return ExitCode.USAGE
        try:
            check_run_tables(d)  # a corrupt run.json or truncated table: one line, exit 2 (no traceback)
        except UsageError as exc:
            print(f"driftbench report: {exc}", file=sys.stderr)
            return ExitCode.USAGE
    out_dir = a.out
    if len(a.run_dirs) > 1 and out_dir is None:  # a merged report never overwrites one run's own report
        from driftbench.results.leaderboard import default_out

        out_dir = default_out(a.run_dirs)
    out = render_runs(a.run_dirs, out_dir, title=a.title, charts=a.charts)
    print(out)
    return ExitCode.OK
