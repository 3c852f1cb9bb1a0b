"""The report's charts as data: one JSON-safe spec per chart, drawn either in the reader's browser (uPlot,
inlined with the page: ``report.charts=browser``, the default) or as PNG images by matplotlib
(``report.charts=png``, :mod:`driftbench.report.figures`). Both renderers draw the same spec, so what a
chart shows does not depend on where it is drawn, and both are drawn from the same tables (and the same
statistics) as the report's numbers.

A spec is a dict:

- ``{"kind": "xy", "title", "height", "x": {"label", "min", "max", "ticks"}, "y": {...}, "series": [...],
  "hlines": [...], "vlines": [...], "legend": "lower left" | "upper right" | None}``: one set of axes.
  A series is ``{"label", "color", "width", "alpha", "legend", "x", "y"}`` and optionally ``"step": True``
  (a post step, as survival curves are), ``"band": {"lo", "hi", "alpha"}`` (shaded between),
  ``"markers": "o"`` (points only), ``"hollow"``, ``"err": {"xlo", "xhi", "ylo", "yhi"}`` (whiskers) and
  ``"text"`` (a label beside each point). A line is ``{"y" (or "x"), "color", "dash", "width", "label"}``.
- ``{"kind": "group", "layout": "grid" | "stack", "title", "cols", "panels": [xy, ...], "share_x"}``: small
  panels in a grid (a clip per panel), or full-width panels stacked (a curve above its count of clips).

Numbers are plain floats; a missing value (NaN: a bin without a face) is ``None``, a gap in the line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from driftbench.results.stats import finite_or_none

#: matplotlib's tab10 (the colour cycle the PNG figures always used), as hex for the browser
TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
         "#17becf")
LOSS = "#dc143c"  # crimson: the identity-loss threshold
FLAG = "#b3261e"
MAIN = "#2f6fdb"
GREY = "#9aa5b1"
#: opacity of a 95 % band: lighter under a survival step than under a curve
BAND_ALPHA, STEP_BAND_ALPHA = 0.18, 0.15


def color(i: int) -> str:
    return TAB10[i % len(TAB10)]


def values(v: Iterable[Any]) -> list[float | None]:
    """Floats for JSON, a non-finite value as None (a gap)."""
    return [None if x is None else finite_or_none(float(x)) for x in v]


def short(text: str, n: int = 48) -> str:
    """User text shortened for a legend or label (drawn as text by both renderers, never parsed)."""
    return text if len(text) <= n else text[: n - 1] + "…"


def _threshold_line(threshold: float | None, width: float = 1.0,
                    labelled: bool = True) -> list[dict[str, Any]]:
    if threshold is None or not np.isfinite(threshold):
        return []
    return [{"y": float(threshold), "color": LOSS, "dash": True, "width": width,
             "label": f"identity-loss threshold {threshold:.3f}" if labelled else None}]


def curves_chart(
    bands: Mapping[str, pd.DataFrame],
    curves: pd.DataFrame,
    members: Mapping[str, Sequence[str]],
    column: str,
    threshold: float | None,
    title: str,
) -> dict[str, Any]:
    """Identity over time per group: the mean over the group's clips per 1 s bin with its bootstrap
    95% band (shaded), individual clips as thin lines; below it, the number of clips still observed
    in each bin (the mean moves where clips end, and the count shows where)."""
    series: list[dict[str, Any]] = []
    counts: list[dict[str, Any]] = []
    lo_y = 1.0
    by_clip = {str(k): g for k, g in curves.groupby("clip_id", sort=False)} if not curves.empty else {}
    for gi, (name, band) in enumerate(sorted(bands.items())):
        c = color(gi)
        for cid in members.get(name, []):
            g = by_clip.get(str(cid))
            if g is None or not len(g):
                continue
            series.append({"label": str(cid), "color": c, "width": 0.6, "alpha": 0.35, "legend": False,
                           "x": values(g["t_mid"]), "y": values(g[column])})
            if g[column].notna().any():
                lo_y = min(lo_y, float(np.nanmin(g[column])))
        if band.empty:
            continue
        series.append({"label": f"{short(name)} (n={int(band['n'].max())})", "color": c, "width": 2.0,
                       "alpha": 1.0, "legend": True, "x": values(band["t_mid"]), "y": values(band["mean"]),
                       "band": {"lo": values(band["lo"]), "hi": values(band["hi"]), "alpha": BAND_ALPHA}})
        # a post step from each bin's start, closed at the last bin's end: each bin's count spans its bin
        edges = [*values(band["t_mid"] - 0.5), float(band["t_mid"].iloc[-1]) + 0.5]
        counts.append({"label": short(name), "color": c, "width": 1.2, "alpha": 1.0, "legend": False,
                       "step": True, "x": edges, "y": [*values(band["n"]), float(band["n"].iloc[-1])]})
    main = {"kind": "xy", "title": title, "height": 330, "legend": "lower left", "series": series,
            "hlines": _threshold_line(threshold),
            "x": {"label": None, "ticks": 8},
            "y": {"label": "cosine similarity to reference", "min": min(-0.05, lo_y - 0.05), "max": 1.02,
                  "ticks": 6}}
    n_max = max((int(np.nanmax(b["n"])) for b in bands.values() if not b.empty), default=1)
    count = {"kind": "xy", "title": None, "height": 140, "legend": None, "series": counts, "hlines": [],
             "x": {"label": "time (s); below: clips still observed per bin", "ticks": 8},
             "y": {"label": "clips", "min": 0, "max": n_max * 1.15, "at": sorted({0, n_max})}}
    return {"kind": "group", "layout": "stack", "title": None, "cols": 1, "share_x": True,
            "panels": [main, count]}


def multiples_chart(curves: pd.DataFrame, clip_ids: Sequence[str], threshold: float | None,
                    title: str, ncols: int = 4) -> dict[str, Any]:
    """One small panel per clip (decoupled and raw similarity per 1 s bin, labelled with the clip's id),
    so a reader sees which clip drifts and when."""
    ids = [str(c) for c in clip_ids]
    by_clip = {str(k): g for k, g in curves.groupby("clip_id", sort=False)} if not curves.empty else {}
    panels = []
    for i, cid in enumerate(ids):
        g = by_clip.get(cid, curves.iloc[:0])
        panels.append({
            "kind": "xy", "title": short(cid, 44), "height": 150, "legend": "lower left" if i == 0 else None,
            "series": [
                {"label": "raw", "color": GREY, "width": 0.8, "alpha": 1.0, "legend": True,
                 "x": values(g["t_mid"]), "y": values(g["sim_raw"])},
                {"label": "decoupled", "color": MAIN, "width": 1.3, "alpha": 1.0, "legend": True,
                 "x": values(g["t_mid"]), "y": values(g["sim_dec"])},
            ],
            "hlines": _threshold_line(threshold, width=0.8, labelled=False),
            "x": {"label": None, "ticks": 4}, "y": {"label": None, "min": -0.05, "max": 1.02,
                                                    "at": [0.0, 0.5, 1.0]},
        })
    return {"kind": "group", "layout": "grid", "title": title, "cols": max(1, min(ncols, len(ids))),
            "share_x": True,
            "panels": panels}


def survival_chart(curves: Mapping[str, pd.DataFrame], title: str) -> dict[str, Any]:
    """Kaplan-Meier survival curves (steps) with their 95% bands; censored clips marked on the curve."""
    series: list[dict[str, Any]] = []
    for gi, (name, km) in enumerate(sorted(curves.items())):
        if km.empty:
            continue
        c = color(gi)
        series.append({"label": short(name), "color": c, "width": 1.8, "alpha": 1.0, "legend": True,
                       "step": True, "x": values(km["t"]), "y": values(km["survival"]),
                       "band": {"lo": values(km["lo"]), "hi": values(km["hi"]), "alpha": STEP_BAND_ALPHA}})
        if "censored_t" in km.attrs and len(km.attrs["censored_t"]):
            ct = np.asarray(km.attrs["censored_t"], dtype=float)
            idx = np.searchsorted(km["t"].to_numpy(), ct, side="right") - 1
            s = km["survival"].to_numpy()[np.clip(idx, 0, len(km) - 1)]
            series.append({"label": f"{short(name)} censored", "color": c, "width": 1.0, "alpha": 1.0,
                           "legend": False, "markers": "|", "x": values(ct), "y": values(s)})
    return {"kind": "xy", "title": title, "height": 300, "legend": "lower left", "series": series,
            "hlines": [],
            "x": {"label": "time (s)", "ticks": 8},
            "y": {"label": "share still the same person", "min": -0.02, "max": 1.05,
                  "at": [0.0, 0.25, 0.5, 0.75, 1.0]}}


def scatter_chart(rows: pd.DataFrame, gain_col: str, floor: float, title: str) -> dict[str, Any]:
    """Identity gain (x) vs expressivity retained (y) per mitigation row, with CI whiskers; the floor as a
    dashed line and flagged rows drawn hollow."""
    series: list[dict[str, Any]] = []
    top = 1.15
    for _, row in rows[~rows["baseline"]].iterrows():
        x, y = row.get(f"{gain_col}_mean"), row.get("expressivity_retained_mean")
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        flagged = bool(row.get("flags"))
        top = max(top, float(row["expressivity_retained_hi"]) + 0.05
                  if np.isfinite(row["expressivity_retained_hi"]) else y + 0.05)
        series.append({
            "label": short(f"{row['model']}/{row['mitigation']}", 36), "color": FLAG if flagged else MAIN,
            "width": 1.0, "alpha": 1.0, "legend": False, "markers": "o", "hollow": flagged,
            "x": [float(x)], "y": [float(y)], "text": [short(f"{row['model']}/{row['mitigation']}", 36)],
            "err": {"xlo": values([row[f"{gain_col}_lo"]]), "xhi": values([row[f"{gain_col}_hi"]]),
                    "ylo": values([row["expressivity_retained_lo"]]),
                    "yhi": values([row["expressivity_retained_hi"]])},
        })
    return {"kind": "xy", "title": title, "height": 380, "width": 680, "legend": "upper right",
            "series": series,
            "hlines": [{"y": float(floor), "color": FLAG, "dash": True, "width": 1.0,
                        "label": f"expressivity floor {floor:.0%}"},
                       {"y": 1.0, "color": "#888888", "dash": True, "width": 1.0, "label": None}],
            "vlines": [{"x": 0.0, "color": "#888888", "dash": True, "width": 1.0, "label": None}],
            "x": {"label": f"identity gain: {gain_col.replace('_', ' ')} (cosine)", "ticks": 8},
            "y": {"label": "expressivity retained (x baseline)", "min": -0.05, "max": top, "ticks": 8}}
