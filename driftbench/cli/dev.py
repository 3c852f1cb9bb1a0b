"""``driftbench dev``: maintainer tasks that regenerate committed artefacts.

``driftbench dev expressivity-reference --shared ../shared`` rebuilds
driftbench/data/expressivity_reference.json
from real footage; ``driftbench dev expressivity-table RUN_DIR`` prints a run's per-clip expressivity as CSV;
``driftbench dev tone-table RUN_DIR...`` prints each clip's face colour drift (ΔE2000 to the reference);
``driftbench dev metrics-readme`` regenerates metrics/README.md from the metric cards; ``driftbench dev
decouple-eval [--out docs/decoupling] [OVERRIDES]`` measures the decoupling figures of docs/DECOUPLING.md;
``driftbench dev drift-variants [--material FILE] [OVERRIDES]`` measures the drift-verdict variants of
docs/DRIFT-VERDICT.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from driftbench.results.expressivity import REFERENCE_PATH, _run_real, build_reference, clip_expressivity
from driftbench.validity.decouple_eval import figures, load_material, morph_material, summary_lines


def decouple_eval(argv: Sequence[str] | None = None) -> int:
    """``driftbench dev decouple-eval``: measure the decoupling figures (docs/DECOUPLING.md)."""
    import argparse
    import json

    from driftbench.io import dumps_json

    ap = argparse.ArgumentParser(prog="driftbench dev decouple-eval",
                                 description="Figures that judge a decoupled score (docs/DECOUPLING.md).")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--shared", type=Path, default=Path("../shared"))
    ap.add_argument("--out", type=Path, default=Path("reports/decouple_eval"))
    ap.add_argument("--methods", default="raw,gated-lift,gated-shift")
    ap.add_argument("--work", type=Path, default=None, help="where morphs are rendered (default OUT/morphs)")
    ap.add_argument("--no-morphs", action="store_true")
    ap.add_argument("--boot", type=int, default=999)
    ap.add_argument("--md-from", type=Path, default=None, help="only rewrite the markdown of a figures JSON")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if a.md_from is not None:
        saved = json.loads(a.md_from.read_text(encoding="utf-8"))
        key = next(iter(saved.values()))["key"]
        md = [
            f"# Decoupling figures, weights key `{key}`",
            "",
            "Measured by `driftbench dev decouple-eval --out docs/decoupling --methods "
            f"{','.join(saved)}` ({'with' if key == 'sface' else 'without'} "
            "DRIFTBENCH_MODELS=../shared/models; "
            "held out by person, 95% bootstrap CIs over people or clips); the numbers are in "
            f"{a.md_from.name}.",
            "",
        ]
        for name, fig in saved.items():
            md += [f"## {name}", "", *summary_lines(fig), ""]
        a.md_from.with_suffix(".md").write_text("\n".join(md), encoding="utf-8")
        return 0
    a.out.mkdir(parents=True, exist_ok=True)
    mat = load_material(a.shared, a.overrides)
    morphs = None if a.no_morphs else morph_material(mat, a.shared, a.work or a.out / "morphs", a.overrides)
    out_json = a.out / f"figures-{mat.key.replace(':', '_')}.json"
    # methods not measured now keep their stored figures (the markdown is rewritten from the merged file)
    allfig: dict[str, Any] = json.loads(out_json.read_text(encoding="utf-8")) if out_json.is_file() else {}
    lines = [f"# Decoupling figures, weights key `{mat.key}`", "",
             f"`driftbench dev decouple-eval {' '.join(argv if argv is not None else sys.argv[1:])}`", ""]
    for name in a.methods.split(","):
        fig = figures(mat, morphs, name, n_boot=a.boot)
        allfig[name] = fig
        lines += [f"## {name}", "", *summary_lines(fig), ""]
        print("\n".join(lines[-len(summary_lines(fig)) - 3:]), flush=True)
    out_json.write_text(dumps_json(json.loads(json.dumps(
        allfig, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))), encoding="utf-8")
    return decouple_eval(["--md-from", str(out_json)])


def drift_variants(argv: Sequence[str]) -> int:
    """``driftbench dev drift-variants [--shared DIR] [--material FILE] [--out FILE.json] [OVERRIDES]``."""
    from driftbench.validity.drift_variants import VARIANTS, run

    ap = argparse.ArgumentParser(prog="driftbench dev drift-variants",
                                 description="Drift-verdict variants side by side (docs/DRIFT-VERDICT.md).")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--shared", type=Path, default=Path("../shared"))
    ap.add_argument("--material", type=Path, default=None,
                    help="parquet of per-sample scores: read when it exists, else measured and written")
    ap.add_argument("--out", type=Path, default=None, help="write every variant's figures as JSON")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    a = ap.parse_args(list(argv))
    return run(a.shared, list(a.overrides), material_path=a.material, out=a.out, variants=a.variants)


def main(argv: Sequence[str] | None = None) -> int:
    if argv and argv[0] == "decouple-eval":
        return decouple_eval(argv[1:])
    if argv and argv[0] == "drift-variants":
        return drift_variants(list(argv[1:]))
    p = argparse.ArgumentParser(prog="driftbench dev",
                                description="Maintainer tasks that regenerate committed artefacts.")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("expressivity-reference", help="(re)build driftbench/data/expressivity_reference.json")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--shared", type=Path, help="../shared: measure its real footage with `driftbench run` first"
    )
    src.add_argument("--runs", type=Path, nargs="+", help="existing run directories of real footage")
    r.add_argument("--work", type=Path, default=Path("reports/tmp/expressivity-reference"),
                   help="where --shared puts its runs")
    r.add_argument("--out", type=Path, default=REFERENCE_PATH)
    m = sub.add_parser("metrics-readme", help="(re)write metrics/README.md from the metric cards")
    m.add_argument("--out", type=Path, default=Path("metrics/README.md"))
    t = sub.add_parser("expressivity-table", help="per-clip expressivity of a run directory as CSV on stdout")
    t.add_argument("run_dir", type=Path)
    c = sub.add_parser("tone-table", help="per-clip face colour (CIE ΔE2000 to the reference at the opening "
                       "and the end) of run directories as CSV on stdout (docs/MITIGATIONS.md)")
    c.add_argument("run_dirs", type=Path, nargs="+")
    c.add_argument("--fps", type=float, default=2.0)
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
    if a.cmd == "tone-table":
        from driftbench.mitigations.colormatch import tone_table

        for i, d in enumerate(a.run_dirs):
            if not (d / "parts").is_dir():
                print(f"{d}: no parts/ folder -- fix: pass a run directory from `driftbench run`",
                      file=sys.stderr)
                return 2
            tone_table(d, fps=a.fps).to_csv(sys.stdout, index=False, header=i == 0, float_format="%.4f")
        return 0
    if a.cmd == "expressivity-table":
        if not (a.run_dir / "frames.parquet").is_file():
            print(f"{a.run_dir}: no frames.parquet -- fix: pass a run directory from `driftbench run`",
                  file=sys.stderr)
            return 2
        thumbs = (
            pd.read_parquet(a.run_dir / "thumbs.parquet")
            if (a.run_dir / "thumbs.parquet").is_file()
            else None
        )
        clips, _ = clip_expressivity(pd.read_parquet(a.run_dir / "frames.parquet"), thumbs)
        clips.to_csv(sys.stdout, index=False, float_format="%.6f")
        return 0
    runs = a.runs if a.runs else _run_real(a.shared, a.work)
    for d in runs:
        if not (Path(d) / "frames.parquet").is_file():
            print(
                f"{d}: no frames.parquet -- fix: pass run directories from `driftbench run`", file=sys.stderr
            )
            return 2
    cmd = "driftbench dev expressivity-reference " + (
        f"--shared {a.shared}" if a.shared else "--runs " + " ".join(str(x) for x in runs))
    from driftbench.io import write_json

    write_json(a.out, build_reference(runs, command=cmd))
    print(a.out)
    return 0
