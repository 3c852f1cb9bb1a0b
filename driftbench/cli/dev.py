"""``driftbench dev``: maintainer tasks that regenerate committed artefacts.

``driftbench dev expressivity-reference --shared ../shared`` rebuilds driftbench/data/expressivity_reference.json
from real footage; ``driftbench dev expressivity-table RUN_DIR`` prints a run's per-clip expressivity as CSV;
``driftbench dev metrics-readme`` regenerates metrics/README.md from the metric cards.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from driftbench.results.expressivity import REFERENCE_PATH, _run_real, build_reference, clip_expressivity


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="driftbench dev",
                                description="Maintainer tasks that regenerate committed artefacts.")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("expressivity-reference", help="(re)build driftbench/data/expressivity_reference.json")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--shared", type=Path, help="../shared: measure its real footage with `driftbench run` first")
    src.add_argument("--runs", type=Path, nargs="+", help="existing run directories of real footage")
    r.add_argument("--work", type=Path, default=Path("reports/tmp/expressivity-reference"),
                   help="where --shared puts its runs")
    r.add_argument("--out", type=Path, default=REFERENCE_PATH)
    m = sub.add_parser("metrics-readme", help="(re)write metrics/README.md from the metric cards")
    m.add_argument("--out", type=Path, default=Path("metrics/README.md"))
    t = sub.add_parser("expressivity-table", help="per-clip expressivity of a run directory as CSV on stdout")
    t.add_argument("run_dir", type=Path)
    try:
        a = p.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    if a.cmd == "metrics-readme":
        from driftbench.results.cards import readme

        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(readme(), encoding="utf-8")
        print(a.out)
        return 0
    if a.cmd == "expressivity-table":
        if not (a.run_dir / "frames.parquet").is_file():
            print(f"{a.run_dir}: no frames.parquet -- fix: pass a run directory from `driftbench run`",
                  file=sys.stderr)
            return 2
        thumbs = pd.read_parquet(a.run_dir / "thumbs.parquet") if (a.run_dir / "thumbs.parquet").is_file() else None
        clips, _ = clip_expressivity(pd.read_parquet(a.run_dir / "frames.parquet"), thumbs)
        clips.to_csv(sys.stdout, index=False, float_format="%.6f")
        return 0
    runs = a.runs if a.runs else _run_real(a.shared, a.work)
    for d in runs:
        if not (Path(d) / "frames.parquet").is_file():
            print(f"{d}: no frames.parquet -- fix: pass run directories from `driftbench run`", file=sys.stderr)
            return 2
    cmd = "driftbench dev expressivity-reference " + (
        f"--shared {a.shared}" if a.shared else "--runs " + " ".join(str(x) for x in runs))
    from driftbench.io import write_json

    write_json(a.out, build_reference(runs, command=cmd))
    print(a.out)
    return 0
