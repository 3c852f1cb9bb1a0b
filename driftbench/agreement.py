"""Recognizer agreement within one run (``agreement.backends=[dlib]``, or ``face=[sface,dlib]`` on the command
line): after the primary backend (``face=``) has measured the clips, every extra backend measures the same
clips with the same sampling, reference and metric settings and its own calibrated threshold, decoupler and
drift verdict (its signals cached under its own key). Its per-clip results are kept in
``agreement/<name>/parts`` (a killed run resumes there too); the tables comparing them with the primary
backend are written by :func:`write_tables` (logic in :mod:`driftbench.results.agreement`).

The primary backend's clips.csv, curves, leaderboard and gate are exactly those of a run without
``agreement.backends``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from driftbench.measure.clip import ClipResult, MeasureSettings
from driftbench.sources.base import Clip

log = logging.getLogger("driftbench")


@dataclass
class Extra:
    """One extra backend of a run: its settings (threshold included) and where its parts go."""

    name: str
    key: str
    settings: MeasureSettings
    threshold_provenance: dict[str, Any]
    decoupler: dict[str, Any] = field(default_factory=dict)


def prepare(cfg: Any, settings: MeasureSettings, score: str) -> list[Extra]:
    """Check every extra backend before any work (a missing package or threshold exits 2) and build its
    settings: the primary's, with the backend, its options and its own calibrated threshold."""
    from driftbench.config import agreement_faces
    from driftbench.faces.base import preflight
    from driftbench.measure.decouple import load_decoupler
    from driftbench.validity import calibration

    extras = []
    for name, backend, options in agreement_faces(cfg):
        key = preflight(backend, options, download=bool(cfg.fetch))
        threshold, prov = calibration.threshold_for(key, far=float(cfg.metrics.far), score=score)
        s = dataclasses.replace(settings, backend=backend, backend_options=options, threshold=threshold)
        extras.append(Extra(name, key, s, prov, load_decoupler(key, s.decoupler).describe()))
    return extras


def parts_hash(cfg_hash: str, extra: Extra) -> str:
    blob = json.dumps([cfg_hash, extra.name, extra.key, extra.settings.backend_options], sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def measure(extras: list[Extra], clips: list[Clip], run_dir: Path, cfg_hash: str, *, executor: str,
            workers: int, address: str | None, part_store: Callable[[Path, str], Any]
            ) -> dict[str, dict[str, Any]]:
    """Measure ``clips`` with every extra backend (resuming parts already there); returns, per backend,
    ``{"summaries": {clip_id: summary}, "not_measured": [messages]}``. ``part_store(dir, config_hash)``: the
    runner's :class:`~driftbench.runner.PartStore` (passed in: this module sits below the runner)."""
    from driftbench.measure.executors import execute

    out: dict[str, dict[str, Any]] = {}
    for extra in extras:
        parts = part_store(run_dir / "agreement" / extra.name, parts_hash(cfg_hash, extra))
        todo = [c for c in clips if not parts.done(c)]
        if todo:
            log.info("agreement: measuring %d clip(s) with %s", len(todo), extra.name)

        def on_result(res: ClipResult, parts: Any = parts, name: str = extra.name) -> None:
            parts.save(res)
            if res.status != "ok":
                log.warning("agreement %s: %s %s", name, res.status, res.message)

        execute(executor, todo, extra.settings, workers=workers, address=address, on_result=on_result)
        summaries: dict[str, dict[str, Any]] = {}
        missing: list[str] = []
        for clip in clips:
            meta_path = parts._base(clip).with_suffix(".json")
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                missing.append(f"{clip.path}: not measured with {extra.name}")
                continue
            if meta.get("status") != "ok" or meta.get("config_hash") != parts.cfg_hash:
                missing.append(str(meta.get("message") or f"{clip.path}: not measured with {extra.name}"))
                continue
            summaries[clip.clip_id] = meta["summary"]
        out[extra.name] = {"summaries": summaries, "not_measured": missing}
    return out


def write_tables(run_dir: Path, primary: str, primary_decoupler: str, clips_csv: pd.DataFrame,
                 extras: list[Extra], measured: dict[str, dict[str, Any]], *,
                 seed: int = 0) -> dict[str, Any]:
    """agreement_clips.csv and agreement.csv; returns the run.json record of the agreement."""
    from driftbench.io import write_csv
    from driftbench.results.agreement import agreement_table, clip_table

    summaries = {primary: clips_csv}
    decouplers = {primary: primary_decoupler}
    for extra in extras:
        rows = [{"clip_id": cid, **s} for cid, s in measured[extra.name]["summaries"].items()]
        summaries[extra.name] = pd.DataFrame(rows, columns=["clip_id"]) if not rows else pd.DataFrame(rows)
        decouplers[extra.name] = str(extra.decoupler.get("name", ""))
    table = clip_table(summaries, primary, decouplers)
    write_csv(run_dir / "agreement_clips.csv", table, sort_by=["clip_id", "backend"])
    agree = agreement_table(table, primary, seed=seed)
    write_csv(run_dir / "agreement.csv", agree)
    return {
        "primary": primary,
        "backends": {
            e.name: {"key": e.key, "threshold": {"value": e.settings.threshold, **e.threshold_provenance},
                     "decoupler": e.decoupler, "options": e.settings.backend_options,
                     "clips": len(measured[e.name]["summaries"]),
                     "not_measured": measured[e.name]["not_measured"]}
            for e in extras
        },
        "tables": ["agreement_clips.csv", "agreement.csv"],
    }
