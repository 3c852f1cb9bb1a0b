"""Render ``report.html`` from a run directory's tables (no video, no models)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from driftbench.report.figures import bytes_to_uri, curves_figure

TEMPLATES = Path(__file__).resolve().parent / "templates"

#: columns of clips.csv shown in the report's per-clip table, with their headings
TABLE_COLUMNS = [
    ("clip_id", "clip"), ("model", "model"), ("mitigation", "mitigation"), ("character", "character"),
    ("duration_s", "duration s"), ("face_rate", "face rate"), ("opening_raw", "opening (raw)"),
    ("sim_dec_at_5s", "sim@5s"), ("sim_dec_at_30s", "sim@30s"), ("sim_dec_at_60s", "sim@60s"),
    ("drift_dec_at_30s", "drift@30s"), ("slope_dec_per_min", "slope /min"), ("min_bin_raw", "min bin (raw)"),
    ("time_to_loss_s", "time to loss s"),
]


def _env():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]))
    env.filters["num"] = _num
    return env


def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, float | np.floating):
        return f"{float(v):.{digits}f}"
    return str(v)


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        return pd.read_csv(path, keep_default_na=True)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def filmstrips(thumbs: pd.DataFrame, frames: pd.DataFrame, clips: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    """For each clip: the reference thumb and ``n`` evenly spaced face crops with their similarity."""
    strips = []
    for cid in clips["clip_id"]:
        th = thumbs[thumbs["clip_id"] == cid]
        ref = th[th["sample_index"] == -1]
        th = th[(th["sample_index"] >= 0) & th["thumb"].notna()]
        fr = frames[frames["clip_id"] == cid].set_index("sample_index")
        if th.empty:
            continue
        idx = np.unique(np.linspace(0, len(th) - 1, num=min(n, len(th))).round().astype(int))
        cells = []
        for _, row in th.iloc[idx].iterrows():
            si = int(row["sample_index"])
            sim = fr["sim_raw"].get(si, np.nan) if si in fr.index else np.nan
            cells.append({"uri": bytes_to_uri(row["thumb"]), "t": float(row["t"]), "sim": sim})
        strips.append({"clip_id": cid,
                       "ref": bytes_to_uri(ref.iloc[0]["thumb"]) if len(ref) and ref.iloc[0]["thumb"] else None,
                       "cells": cells})
    return strips


def render_run(run_dir: Path, *, title: str = "driftbench report", filmstrip_frames: int = 8,
               worst_frames: int = 12, out: Path | None = None) -> Path:
    run_dir = Path(run_dir)
    clips = _read_csv(run_dir / "clips.csv")
    curves = _read_csv(run_dir / "curves.csv")
    skipped = _read_csv(run_dir / "skipped.csv")
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8")) if (run_dir / "run.json").is_file() else {}
    frames = pd.read_parquet(run_dir / "frames.parquet") if (run_dir / "frames.parquet").is_file() else pd.DataFrame()
    thumbs = pd.read_parquet(run_dir / "thumbs.parquet") if (run_dir / "thumbs.parquet").is_file() else pd.DataFrame()
    threshold = (run.get("threshold") or {}).get("value")
    figs = []
    if not clips.empty and not curves.empty:
        figs.append(("Identity similarity over time (decoupled)",
                     curves_figure(curves, clips, "sim_dec", threshold, "decoupled similarity to the reference")))
        figs.append(("Identity similarity over time (raw)",
                     curves_figure(curves, clips, "sim_raw", threshold, "raw similarity to the reference")))
    table_cols = [(c, h) for c, h in TABLE_COLUMNS if c in clips.columns]
    rows = clips.to_dict(orient="records") if not clips.empty else []
    strips = filmstrips(thumbs, frames, clips, filmstrip_frames) if not thumbs.empty and not clips.empty else []
    html = _env().get_template("report.html.j2").render(
        title=title, run=run, run_json=json.dumps(run.get("config", {}), indent=2, sort_keys=True),
        versions=run.get("versions", {}), counts=run.get("counts", {}), threshold=run.get("threshold", {}),
        figures=figs, table_cols=table_cols, rows=rows, strips=strips,
        skipped=skipped.to_dict(orient="records") if not skipped.empty else [],
    )
    from driftbench.io import write_text

    path = out or (run_dir / "report.html")
    write_text(path, html)
    return path
