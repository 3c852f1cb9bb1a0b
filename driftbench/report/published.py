"""The report's "Published metrics beside driftbench's" section: per clip, VBench-2.0 Human_Identity,
FaceSim and CSIM (clips.csv columns from :mod:`driftbench.measure.published`, each labelled with the
recogniser it was computed with) beside driftbench's end drift and verdicts, and the clips on which they
disagree.

A published figure has no verdict of its own; here it *says the same person* when a cosine average (csim,
csim_5s, facesim) is at or above the run's calibrated identity threshold (the recogniser's own same-person
bar at FAR 0.1%) and when Human_Identity is at least 0.5 (most frames pass VBench's 0.4 bar). driftbench
*flags* a clip that drifts (its drift verdict) or loses the identity. They disagree when driftbench flags a
clip that every published figure calls the same person (an average hiding a late drift), or when a
published figure calls a clip another person while driftbench sees it steady.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

#: published column -> label stem (the recogniser is added in brackets)
FIGURES = (("human_identity", "human_identity"), ("facesim", "facesim"), ("csim", "csim"),
           ("csim_5s", "csim_5s"))
#: Human_Identity at or above this: most frames match frame 0 by VBench's own bar
HI_SAME = 0.5


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


def _flag(r: dict[str, Any]) -> str:
    """driftbench's verdict in words, '' when steady."""
    out = []
    if _num(r.get("drifting")) == 1:
        t = _num(r.get("time_to_drift_s"))
        out.append(f"drifting from {t:.0f} s" if math.isfinite(t) else "drifting")
    if _num(r.get("lost")) == 1:
        t = _num(r.get("time_to_loss_s"))
        out.append(f"identity lost at {t:.0f} s" if math.isfinite(t) else "identity lost")
    return ", ".join(out)


def same_person(col: str, value: float, threshold: float) -> bool | None:
    """Whether a published figure calls the clip the same person (None: not measured)."""
    if not math.isfinite(value):
        return None
    if col == "human_identity":
        return value >= HI_SAME
    return math.isfinite(threshold) and value >= threshold


def view(clips: pd.DataFrame) -> dict[str, Any] | None:
    """Rows and disagreements for the report (None when the run has no published columns)."""
    if clips.empty or "facesim" not in clips or "published_recognizer" not in clips:
        return None
    rows: list[dict[str, Any]] = []
    disagree: list[dict[str, Any]] = []
    for r in clips.sort_values("clip_id").to_dict(orient="records"):
        rec = str(r.get("published_recognizer") or "")
        thr = _num(r.get("threshold"))
        figures: list[dict[str, Any]] = []
        verdicts: list[bool | None] = []
        for col, stem in FIGURES:
            v = _num(r.get(col))
            same = same_person(col, v, thr)
            verdicts.append(same)
            figures.append({"col": col, "label": f"{stem}[{rec}]", "value": v, "same": same})
        flag = _flag(r)
        measured = [s for s in verdicts if s is not None]
        note = ""
        if flag and measured and all(measured):
            note = f"driftbench: {flag}; no published figure shows it (all say the same person)"
        elif not flag and measured and not all(measured):
            low = ", ".join(f["label"] for f in figures if f["same"] is False)
            note = f"{low} below the same-person bar; driftbench sees no drift or loss"
        row = {"clip_id": str(r["clip_id"]), "recognizer": rec,
               "frames": str(r.get("published_frames") or ""), "figures": figures,
               "drift_dec_at_end": _num(r.get("drift_dec_at_end")),
               "threshold": thr, "flag": flag or "steady", "disagreement": note}
        rows.append(row)
        if note:
            disagree.append(row)
    recs = sorted({str(r["recognizer"]) for r in rows})
    # one recogniser: it goes into each heading; several (a sweep over face=...): each row names its own
    heads = [f"{stem}[{recs[0]}]" if len(recs) == 1 else f"{stem}[recognizer]" for _, stem in FIGURES]
    return {"rows": rows, "disagreements": disagree, "heads": heads, "several": len(recs) > 1,
            "hi_same": HI_SAME}


def to_json(v: dict[str, Any] | None) -> list[dict[str, Any]]:
    """report.json's ``published``: one record per clip, NaN as null."""
    if not v:
        return []
    out = []
    for r in v["rows"]:
        rec = {"clip_id": r["clip_id"], "recognizer": r["recognizer"], "frames": r["frames"],
               "driftbench": r["flag"], "drift_dec_at_end": r["drift_dec_at_end"],
               "disagreement": r["disagreement"] or None}
        rec.update({f["label"]: f["value"] for f in r["figures"]})
        out.append({k: (None if isinstance(x, float) and not math.isfinite(x) else x)
                    for k, x in rec.items()})
    return out
