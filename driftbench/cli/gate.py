"""``driftbench gate``: exit 1 when a tracked metric regresses beyond its tolerance vs a committed
baseline."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from driftbench.errors import ExitCode
from driftbench.results import stats
from driftbench.results.gate import (
    TRACKED,
    GateUsageError,
    _parse_tolerances,
    build_baseline,
    check_baseline,
    compare,
    junit,
    markdown,
)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="driftbench gate",
        description="Exit 1 when a tracked metric regresses beyond its tolerance and its "
        "confidence interval vs a committed baseline.",
    )
    p.add_argument("run_dir", type=Path, help="run directory (from `driftbench run`)")
    p.add_argument(
        "--baseline", type=Path, required=True, help="baseline JSON, e.g. metrics/baselines/generated.json"
    )
    p.add_argument("--update", action="store_true", help="rewrite the baseline from this run (deliberately)")
    p.add_argument("--junit", type=Path, default=None, help="JUnit XML path (default RUN_DIR/gate-junit.xml)")
    p.add_argument("--summary", type=Path, default=None,
                   help="also write the Markdown summary here (default: $GITHUB_STEP_SUMMARY when set)")
    p.add_argument("--tolerance", action="append", default=[], metavar="NAME=VALUE",
                   help=f"override a tolerance ({', '.join(TRACKED)})")
    p.add_argument("--seed", type=int, default=stats.DEFAULT_SEED)
    try:
        a = p.parse_args(argv)
    except SystemExit as exc:
        return ExitCode.OK if exc.code == 0 else ExitCode.USAGE
    err = sys.stderr
    if not (a.run_dir / "clips.csv").is_file():
        print(
            f"driftbench gate: {a.run_dir}: not a run directory (no clips.csv) -- fix: pass the directory "
            "that "
            "`driftbench run` printed",
            file=err,
        )
        return ExitCode.USAGE
    try:
        tols = _parse_tolerances(a.tolerance)
    except GateUsageError as exc:
        print(f"driftbench gate: {exc}", file=err)
        return ExitCode.USAGE
    try:
        clips = pd.read_csv(a.run_dir / "clips.csv")
    except pd.errors.EmptyDataError:
        clips = pd.DataFrame()
    except pd.errors.ParserError as exc:
        print(
            f"driftbench gate: {a.run_dir / 'clips.csv'}: unreadable ({exc}) -- fix: rerun `driftbench run`",
            file=err,
        )
        return ExitCode.USAGE
    if clips.empty or "clip_id" not in clips:
        print(
            f"driftbench gate: {a.run_dir / 'clips.csv'}: no measured clip -- fix: check skipped.csv of the "
            "run",
            file=err,
        )
        return ExitCode.FAIL
    missing_cols = [c for c in ("model", "mitigation") if c not in clips]
    if missing_cols:
        print(
            f"driftbench gate: {a.run_dir / 'clips.csv'}: no {'/'.join(missing_cols)} column, so its clips "
            "cannot "
            "be matched to the baseline's groups -- fix: rerun `driftbench run` to rewrite it",
            file=err,
        )
        return ExitCode.USAGE
    run: dict[str, Any] = {}
    if (a.run_dir / "run.json").is_file():
        try:
            run = json.loads((a.run_dir / "run.json").read_text(encoding="utf-8"))
            if not isinstance(run, dict):
                raise ValueError(f"expected a JSON object, found {type(run).__name__}")
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
            print(f"driftbench gate: {a.run_dir / 'run.json'}: unreadable ({exc}) -- fix: rerun the same "
                  "`driftbench run` command to rewrite it", file=err)
            return ExitCode.USAGE
    if a.update:
        from driftbench.io import write_json

        cmd = "driftbench gate " + " ".join(sys.argv[1:] if argv is None else list(argv))
        write_json(
            a.baseline, build_baseline(a.run_dir, clips, run, seed=a.seed, tolerances=tols, command=cmd)
        )
        print(f"driftbench gate: baseline {a.baseline} rewritten from {a.run_dir} "
              f"({_dt.date.today().isoformat()}); review and commit the diff")
        return ExitCode.OK
    if not a.baseline.is_file():
        print(
            f"driftbench gate: {a.baseline}: no such baseline -- fix: create it with `driftbench gate "
            f"{a.run_dir} "
            f"--baseline {a.baseline} --update` and commit it",
            file=err,
        )
        return ExitCode.USAGE
    try:
        baseline = json.loads(a.baseline.read_text(encoding="utf-8"))
        problem = check_baseline(baseline)
        if problem:
            raise ValueError(problem)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        print(
            f"driftbench gate: {a.baseline}: not a usable driftbench baseline ({exc}) -- fix: regenerate it "
            "with "
            f"`driftbench gate RUN_DIR --baseline {a.baseline} --update`",
            file=err,
        )
        return ExitCode.USAGE
    run_groups = {
        f"{m}/{t}" for m, t in zip(clips["model"].astype(str), clips["mitigation"].astype(str), strict=True)
    }
    base_groups = {(str(g["model"]), str(g["mitigation"])) for g in baseline["groups"].values()}
    if not any(f"{m}/{t}" in run_groups for m, t in base_groups):
        print(
            f"driftbench gate: {a.run_dir} shares no (model/mitigation) group with {a.baseline} (run: "
            f"{', '.join(sorted(run_groups)[:3])}{' ...' if len(run_groups) > 3 else ''}; baseline: "
            f"{', '.join(sorted(baseline['groups'])[:3])}{' ...' if len(baseline['groups']) > 3 else ''}), "
            "so nothing "
            "can be compared -- fix: gate the run against the baseline built from the same command",
            file=err,
        )
        return ExitCode.USAGE
    prod = baseline.get("produced_by") or {}
    for key, now in (
        ("backend", (run.get("backend") or {}).get("name")),
        ("threshold", (run.get("threshold") or {}).get("value")),
    ):
        if prod.get(key) is not None and now is not None and prod.get(key) != now:
            print(
                f"driftbench gate: note: {key} differs from the baseline's ({prod.get(key)} -> {now})",
                file=err,
            )
    checks = compare(baseline, clips, tolerances=tols, seed=a.seed)
    if not any(c.status in ("pass", "fail") for c in checks):
        print(
            f"driftbench gate: {a.run_dir} vs {a.baseline}: no metric could be checked ({len(checks)} "
            "skipped), so "
            "the gate cannot pass -- fix: rebuild the baseline from a run whose clips reach its horizons",
            file=err,
        )
        return ExitCode.USAGE
    gb = baseline.get("groups") or {}
    new_groups = sorted(
        {f"{m}/{t}" for m, t in zip(clips["model"].astype(str), clips["mitigation"].astype(str), strict=True)}
        - set(gb)
    )
    md = markdown(checks, a.run_dir, a.baseline, new_groups)
    print(md)
    import os

    summary = a.summary or (
        Path(os.environ["GITHUB_STEP_SUMMARY"]) if os.environ.get("GITHUB_STEP_SUMMARY") else None
    )
    if summary is not None:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(md)
    junit(checks, a.junit or (a.run_dir / "gate-junit.xml"))
    return ExitCode.FAIL if any(c.status == "fail" for c in checks) else ExitCode.OK
