"""``driftbench calibrate``: recompute a face backend's identity thresholds from labelled photo pairs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from driftbench.config import validate_overrides
from driftbench.errors import ExitCode


def cmd_calibrate(argv: Sequence[str]) -> int:
    from pathlib import Path

    p = argparse.ArgumentParser(
        prog="driftbench calibrate",
        description="Recompute a face backend's identity thresholds (raw and decoupled) "
        "from labelled real photo pairs and store them with their provenance.",
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. face=sface")
    p.add_argument("--data", type=Path, default=Path("../shared/data/faces/deepface"),
                   help="deepface-style folder: photos + face-recognition-pivot.csv")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="one thresholds file to merge the entry into (default: the key's artefact in "
        "$DRIFTBENCH_ARTEFACTS or ~/.local/share/driftbench/artefacts, never the installed package)",
    )
    a = p.parse_args(argv)
    from driftbench.errors import DriftbenchError, UsageError

    if not (a.data / "face-recognition-pivot.csv").is_file():
        print(
            f"driftbench calibrate: {a.data}: no face-recognition-pivot.csv -- fix: --data DIR with labelled "
            "pairs",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    try:
        cfg = validate_overrides(list(a.overrides), False)[0]
    except UsageError as exc:
        print(f"driftbench calibrate: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    from driftbench.faces.base import preflight
    from driftbench.measure.clip import settings_from_config
    from driftbench.measure.decouple import load_decoupler
    from driftbench.measure.signals import FaceAnalyzer
    from driftbench.validity import calibration

    backend = str(cfg.face.backend)
    options = settings_from_config(cfg, 0.0).backend_options
    try:
        key = preflight(backend, dict(cfg.face.options), download=bool(cfg.fetch))
    except DriftbenchError as exc:
        print(f"driftbench calibrate: {exc}", file=sys.stderr)
        return ExitCode.USAGE if isinstance(exc, UsageError) else ExitCode.FAIL
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
    return ExitCode.OK
