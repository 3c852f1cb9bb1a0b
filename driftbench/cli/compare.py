"""``driftbench compare``: the leaderboard of several runs, mitigations paired against mitigation=none."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from driftbench.errors import ExitCode
from driftbench.results import expressivity as expr
from driftbench.results import stats
from driftbench.results.leaderboard import (
    LeaderboardSettings,
    RunLoadError,
    _h,
    build,
    default_out,
    load_runs,
    measured_horizons,
    unreached_horizons,
    write,
)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="driftbench compare",
                                description="Leaderboard of runs: each (model, mitigation) paired against "
                                            "mitigation=none on the same (character, prompt_id, seed).")
    p.add_argument("run_dirs", nargs="+", type=Path, help="run directories (from `driftbench run`)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default reports/compare-<hash>)")
    p.add_argument(
        "--horizons",
        default=None,
        help="seconds for drift reduction and survival, comma-separated (default 30,60 where the clips "
        "reach them, else the two longest horizons measured)",
    )
    p.add_argument("--floor", type=float, default=expr.DEFAULT_FLOOR,
                   help="expressivity floor: share of the paired baseline a row must keep (default 0.70)")
    p.add_argument("--copy-limit", type=float, default=None,
                   help="reference-copy score above which a row is flagged (default: from real footage)")
    p.add_argument(
        "--include-flagged", action="store_true", help="rank flagged rows too (still shown flagged)"
    )
    p.add_argument("--rank-by", default=None, help="leaderboard column to rank by (default drift reduction)")
    p.add_argument("--seed", type=int, default=stats.DEFAULT_SEED, help="bootstrap seed")
    p.add_argument("--title", default="driftbench leaderboard")
    p.add_argument("--no-html", action="store_true", help="only leaderboard.csv/json")
    from driftbench.cli.report import add_charts_option

    add_charts_option(p)
    try:
        a = p.parse_args(argv)
    except SystemExit as exc:
        return ExitCode.OK if exc.code == 0 else ExitCode.USAGE
    try:
        horizons = tuple(float(x) for x in str(a.horizons).split(",") if x.strip()) if a.horizons else None
    except ValueError:
        print(
            f"driftbench compare: --horizons {a.horizons!r} is not a list of numbers -- fix: e.g. "
            "--horizons 30,60",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    if not 0.0 <= a.floor <= 1.5:
        print(
            f"driftbench compare: --floor {a.floor} is outside 0-1.5 -- fix: e.g. --floor 0.7",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    try:
        runset = load_runs(a.run_dirs)
    except RunLoadError as exc:
        print(f"driftbench compare: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    if horizons:
        unreached = unreached_horizons(runset, horizons)
        if unreached:
            print(
                f"driftbench compare: --horizons: {'; '.join(unreached)} -- fix: choose among "
                f"{', '.join(_h(h) for h in measured_horizons(runset.clips)) or 'none'} (the end of each "
                "clip is "
                "always shown), or rerun with longer clips / metrics.horizons",
                file=sys.stderr,
            )
            return ExitCode.USAGE
    out = a.out or default_out(a.run_dirs)
    settings = LeaderboardSettings(horizons=horizons or None, floor=a.floor, copy_limit=a.copy_limit,
                                   include_flagged=a.include_flagged, rank_by=a.rank_by, seed=a.seed)
    lb = build(runset, settings)
    if a.rank_by and a.rank_by not in lb.rows:
        print(f"driftbench compare: --rank-by {a.rank_by!r} is not a leaderboard column -- fix: one of "
              f"{', '.join(c for c in lb.rows.columns if c.endswith('_mean'))}", file=sys.stderr)
        return ExitCode.USAGE
    write(lb, out)
    if not a.no_html:
        from driftbench.report import render_runset

        render_runset(runset, out, title=a.title, leaderboard=lb, charts=a.charts)
    print(out)
    return ExitCode.OK
