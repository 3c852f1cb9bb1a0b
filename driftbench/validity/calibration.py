"""Calibrated identity thresholds per face backend, with their provenance.

``driftbench/data/thresholds.json`` holds, for each backend and for the raw and the decoupled
score, the verification figures on labelled real photo pairs (../shared/data/faces/deepface: 61
photos, 13 people, 1830 pairs) and the similarity at fixed false-accept rates. Identity-loss
detection reads its threshold from here, never from a literal in code. ``driftbench calibrate``
regenerates the file (see :func:`calibrate`).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

THRESHOLDS_FILE = Path(__file__).resolve().parents[1] / "data" / "thresholds.json"


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        return {}
    return json.loads(p.read_text(encoding="utf-8"))


#: an extra thresholds file (e.g. a model pack the user calibrated); its entries override the packaged ones,
#: and `driftbench calibrate` writes there when it is set
THRESHOLDS_ENV = "DRIFTBENCH_THRESHOLDS"


def user_thresholds_file() -> Path | None:
    value = os.environ.get(THRESHOLDS_ENV)
    return Path(value).expanduser() if value else None


def thresholds(path: Path | None = None) -> dict[str, Any]:
    if path is not None:
        return _load(str(path))
    data = _load(str(THRESHOLDS_FILE))
    extra = user_thresholds_file()
    if extra is None:
        return data
    return {**data, "backends": {**data.get("backends", {}), **_load(str(extra)).get("backends", {})}}


def threshold_for(backend: str, *, far: float = 0.001, score: str = "dec", path: Path | None = None
                  ) -> tuple[float, dict[str, Any]]:
    """(threshold, provenance) for a backend's raw or decoupled score at a false-accept rate."""
    from driftbench.errors import UsageError

    data = thresholds(path)
    entry = data.get("backends", {}).get(backend)
    if entry is None:
        raise UsageError(f"{path or THRESHOLDS_FILE}: no calibrated threshold for face backend {backend!r} "
                         f"-- fix: run `driftbench calibrate face={backend.split(':')[0]}` with the same "
                         f"face.options ({THRESHOLDS_ENV}=FILE keeps it in a file of your own)")
    block = entry.get(score)
    if block is None:
        # the decoupled threshold is calibrated on the decoupled score itself, never reused from the raw one
        raise UsageError(f"{path or THRESHOLDS_FILE}: backend {backend!r} has no {score!r} threshold "
                         f"-- fix: run `driftbench calibrate face={backend.split(':')[0]}`")
    key = f"threshold_at_far_{far:g}"
    if key not in block:
        raise UsageError(f"{path or THRESHOLDS_FILE}: backend {backend!r} has no threshold at FAR {far:g} "
                         f"(has: {sorted(k for k in block if k.startswith('threshold_at_far_'))}) "
                         f"-- fix: run `driftbench calibrate face={backend}` or use metrics.far=0.001")
    prov = {"backend": backend, "score": score, "far": far,
            "data": entry.get("data"), "n_same": block.get("n_same"), "n_diff": block.get("n_diff"),
            "decoupler": entry.get("decoupler"), "created": entry.get("created")}
    if score == "dec":
        prov["stale"] = decoupler_changed(backend, entry.get("decoupler"))
        if prov["stale"]:
            import logging

            logging.getLogger("driftbench").warning(
                "%s: the decoupled threshold of backend %r was calibrated for another decoupler fit (%s) -- fix: "
                "run `driftbench calibrate face=%s`", path or THRESHOLDS_FILE, backend,
                (entry.get("decoupler") or {}).get("fit_id"), backend)
    return float(block[key]), prov


def decoupler_changed(backend: str, stored: dict[str, Any] | None) -> bool:
    """True when the installed decoupler of ``backend`` is not the one the thresholds were calibrated on.
    ``backend`` may be a threshold key (``sface:yunet-int8bq``): decouplers belong to the backend itself."""
    from driftbench.measure.decouple import load_decoupler

    live = load_decoupler(backend.split(":")[0]).describe()
    stored = stored or {}
    return (live.get("name"), live.get("fit_id")) != (stored.get("name"), stored.get("fit_id"))


def calibrate(analyzer: Any, deepface_dir: Path, decoupler: Any, *, fars: tuple[float, ...] = (0.001, 0.01)
              ) -> dict[str, Any]:
    """Verification figures and thresholds for one backend, raw and decoupled."""
    from driftbench.validity import verification as V

    photos = V.deepface_photos(deepface_dir)
    faces = V.photo_faces(analyzer, photos)
    missing = faces.loc[~faces["face_found"], "file"].tolist()
    pairs = V.pair_table(faces)
    pairs["sim_dec"] = decoupler.apply(pairs)
    entry: dict[str, Any] = {
        "data": {"source": photos.source, "dir": deepface_dir.name, "n_photos": len(photos.paths),
                 "n_identities": len(set(photos.labels)), "no_face": missing},
        "decoupler": decoupler.describe(),
        "created": datetime.now(UTC).strftime("%Y-%m-%d"),
        "engine": analyzer.info.engine,
        "weights": analyzer.info.weights,
    }
    for score in ("raw", "dec"):
        entry[score] = V.verification_metrics(pairs[f"sim_{score}"].to_numpy(), pairs["same"].to_numpy(), fars)
    return entry


def write_thresholds(entries: dict[str, dict[str, Any]], path: Path | None = None) -> Path:
    from driftbench.io import write_json

    path = path or user_thresholds_file() or THRESHOLDS_FILE
    data = dict(thresholds(path)) if path.is_file() else {}
    backends = dict(data.get("backends", {}))
    backends.update(entries)
    data = {"about": "Identity thresholds calibrated on labelled real photo pairs; regenerate with "
                     "`driftbench calibrate`. threshold_at_far_X: similarity above which different-person "
                     "pairs fall at false-accept rate X.",
            "backends": backends}
    write_json(path, data)
    _load.cache_clear()
    return path
