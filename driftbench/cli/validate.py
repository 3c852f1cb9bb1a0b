"""``driftbench validate``: the validity suite on real footage (verification, no-drift control,
decoupling)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from driftbench.errors import ExitCode
from driftbench.validity.material import SECTIONS, SharedPaths
from driftbench.validity.output import summarize, to_markdown, write_outputs
from driftbench.validity.validate import run_suite

log = logging.getLogger("driftbench")

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="driftbench validate",
        description=__doc__.split("\n\n")[0] if __doc__ else "",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit codes: 0 every check passes, 1 a check fails, 2 bad usage.",
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. face=sface sampling.fps=2")
    p.add_argument(
        "--shared", type=Path, default=Path("../shared"), help="the shared test material (default ../shared)"
    )
    p.add_argument("--out", type=Path, default=Path("reports/validate"), help="where the table is written")
    p.add_argument(
        "--fit",
        action="store_true",
        help="refit the decoupler artefact on the footage and photos, recalibrate thresholds, then validate",
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="recalibrate the thresholds (photos + different-person video pairs) and the drift verdict "
        "with the decoupler installed for the key (no refit), then validate",
    )
    p.add_argument(
        "--artefacts",
        type=Path,
        default=None,
        help="directory the fitted artefacts (thresholds, decoupler, drift verdict) are written to and "
        "read from first (default: $DRIFTBENCH_ARTEFACTS, else ~/.local/share/driftbench/artefacts; "
        "driftbench/data writes the packaged ones, for committing)",
    )
    p.add_argument("--splits", type=int, default=200, help="random held-out splits to score (0: skip)")
    p.add_argument(
        "--skip", action="append", default=[], choices=SECTIONS, help="leave a section out (repeatable)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        a = parser.parse_args(argv)
    except SystemExit as exc:
        return ExitCode.OK if exc.code in (0, None) else ExitCode.USAGE
    from driftbench.config import validate_overrides
    from driftbench.errors import DriftbenchError, UsageError

    if a.splits < 0:
        print("driftbench validate: --splits must be >= 0 -- fix: e.g. --splits 200", file=sys.stderr)
        return ExitCode.USAGE
    if a.artefacts is not None:
        import os

        from driftbench.weights.artefacts import ARTEFACTS_ENV

        os.environ[ARTEFACTS_ENV] = str(a.artefacts.expanduser().resolve())
    paths = SharedPaths(a.shared.resolve())
    missing = paths.missing()
    if missing:
        print(
            f"driftbench validate: {missing[0]}: not found -- fix: --shared DIR pointing at the shared test "
            "material (data/video/real, data/video/liveportrait/driving, data/video/generated, "
            "data/faces/deepface)",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    try:
        # the clip sources are validate's own (real, driving, generated, synthetic): compose with a folder
        # model so that the default model's checks (e.g. an uninstalled synthetic source) do not apply
        cfg = validate_overrides(["model=folder", f"model.path={paths.real}", *a.overrides], False)[0]
    except UsageError as exc:
        print(f"driftbench validate: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        rows, meta = run_suite(cfg, list(a.overrides), paths, a.out, fit=a.fit, calibrate=a.calibrate,
                               n_splits=a.splits, skip=set(a.skip))
    except UsageError as exc:
        print(f"driftbench validate: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except DriftbenchError as exc:
        print(f"driftbench validate: {exc}", file=sys.stderr)
        return ExitCode.FAIL
    finally:
        from driftbench.measure.clip import close_analyzer

        close_analyzer()
    write_outputs(rows, a.out, meta)
    print(to_markdown(rows))
    print(summarize(rows))
    print(str(a.out))
    return ExitCode.FAIL if any(r.status == "fail" for r in rows) else ExitCode.OK


