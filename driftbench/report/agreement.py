"""The report's "Recognizer agreement" section, from a run's agreement.csv and agreement_clips.csv (written
when the run measured its clips with several face backends; see :mod:`driftbench.results.agreement`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from driftbench.results.agreement import VERDICTS


def _read(path: Path) -> pd.DataFrame:
    from driftbench.io import read_csv

    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        return read_csv(path, keep_default_na=True)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _f(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None


def _verdict(v: Any) -> str:
    x = _f(v)
    return "–" if x is None else ("yes" if x >= 0.5 else "no")


def agreement_view(run_dirs: Sequence[Path], labels: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One entry per run directory that holds agreement tables: the rank/verdict agreement rows and, per
    clip, each backend's end drift (raw, decoupled) and verdicts, disagreeing clips first."""
    out = []
    for i, d in enumerate(run_dirs):
        table = _read(Path(d) / "agreement.csv")
        clips = _read(Path(d) / "agreement_clips.csv")
        if table.empty or clips.empty:
            continue
        clips["clip_id"] = clips["clip_id"].astype(str)
        backends = [str(b) for b in clips.sort_values("primary", ascending=False, kind="mergesort")["backend"]
                    .drop_duplicates()]
        primary = backends[0]
        rank = [{"backend": r["backend"], "vs": r["vs"], "metric": r["metric"],
                 "score_other": r["score_other"],
                 "n": int(r["n"]), "rho": _f(r["spearman"]), "lo": _f(r["spearman_lo"]),
                 "hi": _f(r["spearman_hi"]), "note": "" if pd.isna(r["note"]) else str(r["note"])}
                for r in table[table["kind"] == "rank"].to_dict(orient="records")]
        verdicts = [{"backend": r["backend"], "vs": r["vs"], "metric": r["metric"], "n": int(r["n"]),
                     "n_disagree": int(_f(r["n_disagree"]) or 0), "agreement": _f(r["agreement"]),
                     "clips": [] if pd.isna(r["disagree_clips"]) else str(r["disagree_clips"]).split(";"),
                     "note": "" if pd.isna(r["note"]) else str(r["note"])}
                    for r in table[table["kind"] == "verdict"].to_dict(orient="records")]
        disagree = {c for v in verdicts for c in v["clips"]}
        rows = []
        for cid, g in clips.groupby("clip_id", sort=True):
            by = {str(r["backend"]): r for r in g.to_dict(orient="records")}
            cells = []
            for b in backends:
                r = by.get(b, {})
                cells.append({"raw": _f(r.get("drift_raw_at_end")), "dec": _f(r.get("drift_dec_at_end")),
                              **{v: _verdict(r.get(v)) for v in VERDICTS}})
            rows.append({"clip_id": cid, "disagree": cid in disagree, "cells": cells})
        rows.sort(key=lambda r: (not r["disagree"], r["clip_id"]))
        out.append({"run": labels[i] if labels else Path(d).name, "primary": primary, "backends": backends,
                    "rank": rank, "verdicts": verdicts, "rows": rows})
    return out
