"""``driftbench validate``: the validity suite on real footage (verification, no-drift control, decoupling)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from driftbench.errors import ExitCode
from driftbench.validity.validate import (
    SECTIONS,
    Row,
    SharedPaths,
    age_rows,
    check,
    control_footage,
    control_rows,
    decoupling_rows,
    fit_artefact,
    folder_clips,
    generated_rows,
    measure_clips,
    photo_pairs,
    rescore,
    summarize,
    synthetic_rows,
    to_markdown,
    verification_rows,
    weights_rows,
    write_outputs,
)

log = logging.getLogger("driftbench")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="driftbench validate", description=__doc__.split("\n\n")[0] if __doc__ else "",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Exit codes: 0 every check passes, 1 a check fails, 2 bad usage.")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. face=sface sampling.fps=2")
    p.add_argument("--shared", type=Path, default=Path("../shared"), help="the shared test material (default ../shared)")
    p.add_argument("--out", type=Path, default=Path("reports/validate"), help="where the table is written")
    p.add_argument("--fit", action="store_true",
                   help="refit the decoupler artefact on the footage and photos, recalibrate thresholds, then validate")
    p.add_argument("--splits", type=int, default=200, help="random held-out splits to score (0: skip)")
    p.add_argument("--skip", action="append", default=[], choices=SECTIONS, help="leave a section out (repeatable)")
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
    paths = SharedPaths(a.shared.resolve())
    missing = paths.missing()
    if missing:
        print(f"driftbench validate: {missing[0]}: not found -- fix: --shared DIR pointing at the shared test "
              "material (data/video/real, data/video/liveportrait/driving, data/video/generated, data/faces/deepface)",
              file=sys.stderr)
        return ExitCode.USAGE
    try:
        # the clip sources are validate's own (real, driving, generated, synthetic): compose with a folder
        # model so that the default model's checks (e.g. an uninstalled synthetic source) do not apply
        cfg = validate_overrides(["model=folder", f"model.path={paths.real}", *a.overrides], False)[0]
    except UsageError as exc:
        print(f"driftbench validate: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        rows, meta = run_suite(cfg, list(a.overrides), paths, a.out, fit=a.fit, n_splits=a.splits, skip=set(a.skip))
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


def threshold_key(cfg: Any) -> str:
    """The key of the backend model's thresholds and decoupler: the backend's name, or, where the
    backends provide ``faces.base.preflight`` (per-model keys such as ``insightface:buffalo_l``), its key."""
    try:
        from driftbench.faces.base import preflight  # type: ignore[attr-defined]
    except ImportError:
        return str(cfg.face.backend)
    return str(preflight(str(cfg.face.backend), dict(cfg.face.options), download=bool(cfg.fetch)))


def run_suite(cfg: Any, overrides: list[str], paths: SharedPaths, out_dir: Path, *, fit: bool = False,
              n_splits: int = 200, skip: set[str] | None = None) -> tuple[list[Row], dict[str, Any]]:
    """Every section's rows and the metadata for validate.json."""
    from driftbench.errors import UsageError
    from driftbench.measure.cache import SignalCache
    from driftbench.measure.clip import get_analyzer, settings_from_config
    from driftbench.measure.decouple import age_stability, load_decoupler
    from driftbench.runner import git_commit, versions
    from driftbench.validity import calibration

    skip = skip or set()
    backend = threshold_key(cfg)
    metrics = cfg.metrics
    fps = float(cfg.sampling.fps)
    settings = settings_from_config(cfg, threshold=float("nan"))
    analyzer = get_analyzer(settings)
    cache = SignalCache(Path(settings.cache_dir) if settings.cache_dir else None, enabled=settings.cache_enabled)
    log.info("validate: photos (%s)", paths.deepface)
    faces, pairs = photo_pairs(analyzer, paths.deepface, cache)
    faces.attrs["dir"] = str(paths.deepface)
    log.info("validate: identity-constant footage")
    control = control_footage(paths, cfg, settings)
    if control.frames.empty:
        raise UsageError(f"{paths.real}: no identity-constant clip could be measured -- fix: check ../shared")
    heldout: dict[str, Any] = {}
    if fit:
        log.info("validate: fitting the decoupler for %s", backend)
        fitted = fit_artefact(control, faces, pairs, analyzer, settings, backend, n_splits=n_splits)
        heldout = fitted.record.get("heldout", {})
        entry = calibration.calibrate(analyzer, paths.deepface, load_decoupler(backend))
        calibration.write_thresholds({backend: entry})
    decoupler = load_decoupler(backend, settings.decoupler)
    thr_raw, _ = calibration.threshold_for(backend, far=float(metrics.far), score="raw")
    thr_dec, prov = calibration.threshold_for(backend, far=float(metrics.far), score="dec")
    rows: list[Row] = [Row("verification", "measurement problems", None, len(control.problems), "0",
                           check(not control.problems), "; ".join(control.problems[:3]))] if control.problems else []
    details: dict[str, Any] = {}
    frames = rescore(control.frames, decoupler, float(metrics.smooth_s))
    age = age_stability(frames)
    if "verification" not in skip:
        rows += weights_rows(backend, analyzer.info.weights, decoupler)
        rows += verification_rows(pairs, faces, decoupler, backend, paths.deepface)
    if "decoupling" not in skip:
        r, details = decoupling_rows(frames, pairs, decoupler, n_splits=n_splits, age_stable=bool(age.get("stable")),
                                     heldout=heldout)
        rows += r
    if "control" not in skip:
        from driftbench.validity.calibration import thresholds

        entry = thresholds().get("backends", {}).get(backend, {})
        eer = ((float(entry["raw"]["eer_threshold"]), float(entry["dec"]["eer_threshold"]))
               if "eer_threshold" in entry.get("raw", {}) and "eer_threshold" in entry.get("dec", {}) else None)
        rows += control_rows(frames, thr_raw, thr_dec, metrics, fps, eer)
    if "age" not in skip:
        rows += age_rows(age, decoupler)
    if "generated" not in skip:
        log.info("validate: real generated clips")
        gen = measure_clips(folder_clips(paths.generated, cfg), replace(settings, reference="auto"), "generated")
        rows += [Row("generated", "measurement problems", None, len(gen.problems), "0", "fail",
                     "; ".join(gen.problems[:3]))] if gen.problems else []
        if not gen.frames.empty:
            rows += generated_rows(rescore(gen.frames, decoupler, float(metrics.smooth_s)), thr_raw, thr_dec,
                                   metrics, fps)
    if "synthetic" not in skip:
        log.info("validate: synthetic clips")
        rows += synthetic_rows(overrides, settings, metrics, decoupler, out_dir)
    meta = {"command": "validate", "backend": backend, "decoupler": decoupler.describe(),
            "thresholds": {"raw": thr_raw, "dec": thr_dec, "provenance": prov}, "git_commit": git_commit(),
            "versions": versions(), "shared": str(paths.root), "age": age, "heldout": details,
            "sampling": settings.sampling.token(), "engine": analyzer.info.engine, "weights": analyzer.info.weights}
    return rows, meta
