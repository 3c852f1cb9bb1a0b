"""Render a self-contained report (HTML + the same numbers as CSV and JSON) from run tables.

Never touches video or models: everything comes from clips.csv, curves.csv, frames.parquet,
thumbs.parquet, skipped.csv and run.json, so ``driftbench report`` re-renders in seconds and can merge
several runs. Every user string (clip ids, prompts, character names, manifest columns) is escaped by
Jinja2's autoescape; the only script is a fixed, inline table sorter allowed by its sha256 in the
Content-Security-Policy, and images are data: URIs, so the page makes no request at all.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from driftbench.report import charts as ch
from driftbench.report.figures import bytes_to_uri
from driftbench.results import stats
from driftbench.results.cards import headers as card_headers
from driftbench.results.leaderboard import Leaderboard, LeaderboardSettings, RunSet, build, load_runs, write

TEMPLATES = Path(__file__).resolve().parent / "templates"

#: the 52 MediaPipe FaceLandmarker blendshape categories, in the order the signals table stores them
BLENDSHAPE_NAMES = (
    "_neutral",
    "browDownLeft",
    "browDownRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "cheekPuff",
    "cheekSquintLeft",
    "cheekSquintRight",
    "eyeBlinkLeft",
    "eyeBlinkRight",
    "eyeLookDownLeft",
    "eyeLookDownRight",
    "eyeLookInLeft",
    "eyeLookInRight",
    "eyeLookOutLeft",
    "eyeLookOutRight",
    "eyeLookUpLeft",
    "eyeLookUpRight",
    "eyeSquintLeft",
    "eyeSquintRight",
    "eyeWideLeft",
    "eyeWideRight",
    "jawForward",
    "jawLeft",
    "jawOpen",
    "jawRight",
    "mouthClose",
    "mouthDimpleLeft",
    "mouthDimpleRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthFunnel",
    "mouthLeft",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthPucker",
    "mouthRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "noseSneerLeft",
    "noseSneerRight",
)

#: columns of the per-clip table (clips.csv plus expressivity), with their headings
#: drift first (the verdict where the run has one, drift at 30 s / 60 s / the end, loss, slope, lowest bin),
#: then levels, then who the clip is
_HEADERS = {
    "clip_id": "clip",
    "drifting": "verdict",
    "duration_s": "duration s",
    "model": "model",
    "mitigation": "mitigation",
    "character": "character",
    "prompt_id": "prompt",
    "seed": "seed",
    "loss_cause": "loss cause",
    **card_headers(),
}  # a metric column's header comes from its metric card
TABLE_COLUMNS = [
    (c, _HEADERS[c])
    for c in (
        "clip_id",
        "drifting",
        "drift_dec_at_30s",
        "drift_dec_at_60s",
        "drift_dec_at_end",
        "drift_raw_at_end",
        "time_to_loss_s",
        "slope_dec_per_min",
        "min_bin_dec",
        "duration_s",
        "face_rate",
        "opening_raw",
        "opening_dec",
        "sim_dec_at_5s",
        "sim_dec_at_30s",
        "sim_dec_at_60s",
        "sim_dec_at_end",
        "time_to_drift_s",
        "loss_cause",
        "longest_no_face_s",
        "model",
        "mitigation",
        "character",
        "prompt_id",
        "seed",
        "expressivity_vs_real",
        "ref_copy",
    )
]
#: at most this many clips get a small panel of their own in a single run's report
MAX_MULTIPLES = 24
TEXT_COLUMNS = frozenset({"clip_id", "model", "mitigation", "character", "prompt_id", "loss_cause"})
SORT_JS = (TEMPLATES / "sort.js").read_text(encoding="utf-8")
STATIC = Path(__file__).resolve().parent / "static"
#: report.charts=browser: uPlot 1.6.32 (MIT, static/uPlot.LICENSE) and the page's chart drawer, inlined
CHART_SCRIPTS = ("uPlot.iife.min.js", "charts.js")
CHART_STYLE = "uPlot.min.css"


def _csp_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


@functools.cache
def _static(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


class Charts:
    """The report's chart slots: each spec (:mod:`driftbench.report.charts`) becomes an inline PNG
    (``png``) or a placeholder the page's script draws from the embedded data (``browser``)."""

    #: the renderers (driftbench.config.Charts names the same for Hydra; the report layer reads no config)
    MODES = ("browser", "png")

    def __init__(self, mode: str) -> None:
        if str(mode) not in self.MODES:
            raise ValueError(f"report charts {mode!r}: expected one of {', '.join(self.MODES)}")
        self.mode = str(mode)
        self.specs: list[dict[str, Any]] = []

    def slot(self, spec: dict[str, Any]) -> dict[str, Any]:
        if self.mode == "png":
            from driftbench.report.figures import png

            return {"uri": png(spec)}
        self.specs.append(spec)
        return {"chart": len(self.specs) - 1}

    def page(self) -> dict[str, Any]:
        """What the template needs: the scripts the CSP admits (by their sha256), and the data to draw."""
        scripts = [SORT_JS]
        out: dict[str, Any] = {"chart_json": None, "chart_scripts": [], "chart_style": None}
        if self.specs:
            chart_scripts = [_static(n) for n in CHART_SCRIPTS]
            scripts += chart_scripts
            # a data block, never run; "<" and ">" escaped so no user string can close the element
            data = json.dumps(self.specs, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            out.update(chart_json=_markup(data.replace("<", "\\u003c").replace(">", "\\u003e")
                                          .replace("&", "\\u0026")),
                       chart_scripts=[_markup(js) for js in chart_scripts],
                       chart_style=_markup(_static(CHART_STYLE)))
        out["csp_script"] = " ".join(_csp_hash(js) for js in scripts)
        return out


def _template_cache() -> Any:
    """Jinja's compiled code of the report template, kept under the user's cache directory
    (``$XDG_CACHE_HOME`` or ``~/.cache``, then ``driftbench/templates``) like ``__pycache__``: compiling
    report.html.j2 costs ~0.1 s of CPU per report, loading the compiled code ~2 ms. Jinja keys each
    entry by the template's name and path and checks the source's checksum and its own bytecode
    version, so an edited template or another Jinja recompiles. A cache that cannot be read or written
    is passed over (the template is compiled as without one)."""
    import os

    from jinja2 import FileSystemBytecodeCache

    class _Cache(FileSystemBytecodeCache):
        def load_bytecode(self, bucket: Any) -> None:
            try:
                super().load_bytecode(bucket)
            except Exception:  # unreadable or truncated entry: compile afresh (and rewrite it)
                bucket.reset()

        def dump_bytecode(self, bucket: Any) -> None:
            try:
                Path(self.directory).mkdir(parents=True, exist_ok=True)
                super().dump_bytecode(bucket)
            except OSError:
                pass

    try:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    except RuntimeError:  # no home directory to resolve
        return None
    return _Cache(str(Path(base) / "driftbench" / "templates"))


def _env() -> Any:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]),
                      bytecode_cache=_template_cache())
    env.filters["num"] = _num
    env.filters["pct"] = _pct
    return env


def _finite(v: Any) -> bool:
    return (
        isinstance(v, int | float | np.integer | np.floating)
        and not isinstance(v, bool)
        and bool(np.isfinite(v))
    )


def _num(v: Any, digits: int = 3) -> str:
    if v is None or v is pd.NA:
        return "–"
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, float | np.floating):
        if np.isnan(v):
            return "–"
        if np.isinf(v):
            return "not reached" if v > 0 else "-inf"
        return f"{float(v):.{digits}f}"
    return str(v)


def _pct(v: Any) -> str:
    return f"{float(v):.0%}" if _finite(v) else "–"


def _sortval(v: Any) -> str:
    """Value for the table sorter (numbers as plain text, missing values sort last)."""
    if _finite(v):
        return repr(float(v))
    if isinstance(v, float) and np.isinf(v):
        return "1e308"
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def _ci(row: dict[str, Any], prefix: str, digits: int = 3, pct: bool = False) -> dict[str, Any]:
    """A figure with its CI, n and p for the template."""
    m = row.get(f"{prefix}_mean", row.get(prefix))
    fmt = _pct if pct else (lambda x: _num(x, digits))
    lo, hi = row.get(f"{prefix}_lo"), row.get(f"{prefix}_hi")
    return {"value": fmt(m), "raw": m, "ci": f"[{fmt(lo)}, {fmt(hi)}]" if _finite(lo) and _finite(hi) else "",
            "n": int(row[f"{prefix}_n"]) if _finite(row.get(f"{prefix}_n")) else None,
            "p": float(row[f"{prefix}_p"]) if _finite(row.get(f"{prefix}_p")) else None,
            "sort": _sortval(m),
            "positive": _finite(m) and _finite(lo) and float(m) > 0 and float(lo) > 0,  # type: ignore[arg-type]
            "negative": _finite(m) and _finite(hi) and float(m) < 0 and float(hi) < 0}  # type: ignore[arg-type]


def _load_table_frames(runset: RunSet) -> tuple[pd.DataFrame, pd.DataFrame]:
    return runset.frames, runset.thumbs


def filmstrips(
    thumbs: pd.DataFrame, frames: pd.DataFrame, clips: pd.DataFrame, n: int
) -> list[dict[str, Any]]:
    """For each clip: the reference crop and ``n`` evenly spaced face crops with their decoupled
    similarity."""
    strips: list[dict[str, Any]] = []
    if thumbs.empty or clips.empty:
        return strips
    th_by = dict(tuple(thumbs.groupby("clip_id", sort=False)))
    fr_by = dict(tuple(frames.groupby("clip_id", sort=False))) if not frames.empty else {}
    for cid in clips["clip_id"]:
        th = th_by.get(cid)
        if th is None:
            continue
        ref = th[th["sample_index"] == -1]
        th = th[(th["sample_index"] >= 0) & th["thumb"].notna()].sort_values("sample_index")
        if th.empty:
            continue
        fr = fr_by.get(cid, pd.DataFrame(columns=["sample_index", "sim_dec"])).set_index("sample_index")
        idx = np.unique(np.linspace(0, len(th) - 1, num=min(n, len(th))).round().astype(int))
        cells = []
        for _, row in th.iloc[idx].iterrows():
            si = int(row["sample_index"])
            sim = float(fr.at[si, "sim_dec"]) if si in fr.index and "sim_dec" in fr else float("nan")
            cells.append({"uri": bytes_to_uri(row["thumb"]), "t": float(row["t"]), "sim": sim})
        strips.append(
            {
                "clip_id": cid,
                "ref": bytes_to_uri(ref.iloc[0]["thumb"]) if len(ref) and ref.iloc[0]["thumb"] else None,
                "cells": cells,
            }
        )
    return strips


def worst_frames(
    frames: pd.DataFrame, thumbs: pd.DataFrame, n: int, per_clip: int = 2
) -> list[dict[str, Any]]:
    """The ``n`` frames with the lowest decoupled similarity (at most ``per_clip`` per clip), each with
    its reference, pose, expression distance and strongest blendshapes, so a reader can judge whether
    the identity changed or the face only turned or grimaced."""
    if frames.empty or n <= 0:
        return []
    f = frames[frames["face_found"].astype(bool) & frames["sim_dec"].notna()]
    f = f.sort_values(["sim_dec", "clip_id", "sample_index"], kind="mergesort")
    f = f.groupby("clip_id", sort=False).head(per_clip).head(n)
    key = (
        thumbs.set_index(["clip_id", "sample_index"])["thumb"]
        if not thumbs.empty
        else pd.Series(dtype=object)
    )
    out = []
    for _, r in f.iterrows():
        thumb = key.get((r["clip_id"], int(r["sample_index"])))
        ref = key.get((r["clip_id"], -1))
        top: list[str] = []
        bs = r.get("blendshapes")
        if bs is not None and not isinstance(bs, float):
            a = np.asarray(bs, dtype=float)
            if a.shape == (len(BLENDSHAPE_NAMES),):
                order = np.argsort(-a)
                top = [
                    f"{BLENDSHAPE_NAMES[i]} {a[i]:.2f}" for i in order if BLENDSHAPE_NAMES[i] != "_neutral"
                ][:3]
        out.append(
            {
                "clip_id": r["clip_id"],
                "t": float(r["t"]),
                "sample_index": int(r["sample_index"]),
                "sim_dec": float(r["sim_dec"]),
                "sim_raw": float(r["sim_raw"]),
                "yaw": float(r["yaw"]),
                "pitch": float(r["pitch"]),
                "roll": float(r["roll"]),
                "d_expr": float(r["d_expr"]),
                "age": float(r["age"]),
                "blendshapes": top,
                "uri": bytes_to_uri(thumb) if thumb is not None and not isinstance(thumb, float) else None,
                "ref": bytes_to_uri(ref) if ref is not None and not isinstance(ref, float) else None,
            }
        )
    return out


def _run_info(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for label, r in runs.items():
        thr = r.get("threshold") or {}
        out.append(
            {
                "label": label,
                "driftbench": r.get("driftbench"),
                "git_commit": r.get("git_commit"),
                "config_hash": r.get("config_hash"),
                "backend": (r.get("backend") or {}).get("name"),
                # the backend's engines, then the signal networks' (age) where the run recorded them
                "engine": ";".join([e for e in [(r.get("backend") or {}).get("engine")] if e]
                                   + [f"{k}:{v}" for k, v in sorted((r.get("signal_engines") or {}).items())])
                or None,
                "weights": (r.get("backend") or {}).get("weights"),
                "signal_weights": r.get("signal_weights"),
                "signals_unavailable": r.get("signals_unavailable"),
                "threshold": thr.get("value"),
                "threshold_score": thr.get("score"),
                "far": thr.get("far"),
                "threshold_data": (thr.get("data") or {}).get("source"),
                "decoupler": r.get("decoupler"),
                "mitigation": r.get("mitigation"),
                "counts": r.get("counts"),
                "versions": r.get("versions") or {},
                "config": json.dumps(r.get("config", {}), indent=2, sort_keys=True),
            }
        )
    return out


def _leaderboard_view(lb: Leaderboard) -> list[dict[str, Any]]:
    from driftbench.results.leaderboard import END

    view = []
    hs = [f"{h:g}s" for h in lb.horizons]
    rank_prefix = lb.rank_by.removesuffix("_mean")
    for r in lb.rows.to_dict(orient="records"):
        rank = r.get("rank")
        sig = r.get("significant")
        view.append(
            {
                "rank": ""
                if rank is None or rank is pd.NA or (isinstance(rank, float) and np.isnan(rank))
                else int(rank),
                "significant": None if sig is None or sig is pd.NA else bool(sig),
                "tied_with": r.get("tied_with") or "",
                "rank_p_holm": r.get(f"{rank_prefix}_p_holm"),
                "model": r["model"],
                "mitigation": r["mitigation"],
                "stage": r["stage"],
                "baseline": bool(r["baseline"]),
                "n_clips": r["n_clips"],
                "n_pairs": r["n_pairs"],
                "flags": r["flags"],
                "excluded": bool(r["excluded"]),
                "drift": [
                    {
                        "h": h,
                        **_ci(r, f"drift_reduction_{h}"),
                        "p_holm": r.get(f"drift_reduction_{h}_p_holm")
                        if _finite(r.get(f"drift_reduction_{h}_p_holm"))
                        else None,
                    }
                    for h in [*hs, END]
                ],
                "sim": [{"h": h, **_ci(r, f"sim_dec_at_{h}")} for h in [*hs, END]],
                "survival": [_survival_cell(r, h) for h in hs],
                "median_survival": _num(r.get("median_survival_s"), 1),
                "survival_gain": _ci(r, "survival_gain_s", 2),
                "face_rate": _ci(r, "face_rate", pct=True),
                "face_rate_delta": _ci(r, "face_rate_delta", 3),
                "expr_retained": _ci(r, "expressivity_retained", pct=True),
                "expr_real": _ci(r, "expressivity_vs_real", pct=True),
                "ref_copy": _ci(r, "ref_copy", 2),
            }
        )
    return view


def _verdict(v: Any) -> tuple[str, str]:
    """The drift verdict's badge text and class (``drifting`` column of the validity work)."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–", "text"
    drifting = str(v).strip().lower() in ("1", "1.0", "true", "yes", "drifting")
    return ("drifting", "text badge bad") if drifting else ("stable", "text badge good")


def _survival_cell(r: dict[str, Any], h: str) -> dict[str, Any]:
    cell = {
        "h": h,
        **_ci(
            {
                "x_mean": r.get(f"survival_at_{h}"),
                "x_lo": r.get(f"survival_at_{h}_lo"),
                "x_hi": r.get(f"survival_at_{h}_hi"),
                "x_n": r.get(f"survival_at_{h}_n"),
            },
            "x",
            pct=True,
        ),
    }
    if not _finite(r.get(f"survival_at_{h}")):
        cell["value"] = "not measurable"  # no clip of the row was observed up to h
    return cell


def _clip_rows(clips: pd.DataFrame, cols: list[tuple[str, str]], text_cols: set[str]) -> list[dict[str, Any]]:
    rows = []
    for r in clips.to_dict(orient="records"):
        cells: list[dict[str, Any]] = []
        for c, _ in cols:
            if c == "drifting":
                text, cls = _verdict(r.get(c))
                cells.append({"text": text, "sort": text, "col": c, "cls": cls})
                continue
            cells.append({"text": _num(r.get(c)), "sort": _sortval(r.get(c)), "col": c,
                          "cls": ("text" if c in text_cols else "")
                          + (" lost" if c == "time_to_loss_s" and _finite(r.get(c)) else ""),
                          "badges": _cast_badges(r) if c == "clip_id" else []})
        rows.append({"cells": cells})
    return rows


def _cast_badges(r: dict[str, Any]) -> list[dict[str, str]]:
    """A cast clip's character row (driftbench.measure.cast): who else is in the clip, and its swap and
    leakage verdicts as badges beside the clip id."""
    if not _finite(r.get("cast_size")):
        return []
    out = [{"text": f"cast of {int(r['cast_size'])} · with {r.get('cast_with')}", "cls": ""}]
    if _finite(r.get("swap_onset_s")):
        out.append({"text": f"swap with {r.get('swap_with')} at {_num(r['swap_onset_s'], 1)} s",
                    "cls": "bad"})
    if _finite(r.get("leaking")):
        leaking = bool(r["leaking"])
        out.append({"text": f"leakage {_num(r.get('leakage_max'), 2)}" + (f" with {r.get('leak_with')}"
                    if leaking else ""), "cls": "bad" if leaking else "good"})
    return out


def _json_records(df: pd.DataFrame, cols: Sequence[str]) -> list[dict[str, Any]]:
    present = [c for c in cols if c in df]
    return [{k: stats.finite_or_none(v) for k, v in r.items()} for r in df[present].to_dict(orient="records")]


def render_runset(runset: RunSet, out_dir: Path, *, title: str = "driftbench report",
                  settings: LeaderboardSettings | None = None, leaderboard: Leaderboard | None = None,
                  filmstrip_frames: int = 8, worst_n: int = 12, html_name: str = "report.html",
                  charts: str = "browser") -> Path:
    """Write report.html, report.json, leaderboard.csv/json, report_clips.csv and expressivity tables."""
    from driftbench.io import write_csv, write_json, write_text
    from driftbench.report.glossary import cards

    out_dir = Path(out_dir)
    slots = Charts(charts)
    lb = leaderboard or build(runset, settings)
    write(lb, out_dir)
    clips = runset.clips.merge(lb.clip_expressivity, on="clip_id", how="left") if not runset.clips.empty \
        else runset.clips
    threshold = runset.threshold
    groups = (
        {f"{m}/{t}": g["clip_id"].tolist() for (m, t), g in clips.groupby(["model", "mitigation"], sort=True)}
        if not clips.empty
        else {}
    )
    figures = []
    band_json: dict[str, Any] = {}
    #: a sweep (or any comparison) opens with its leaderboard, a single run with its identity figures
    sweep = len(runset.run_dirs) > 1 or (not lb.rows.empty and bool((~lb.rows["baseline"]).any()))
    if not sweep and not clips.empty and not runset.curves.empty and len(clips) <= MAX_MULTIPLES:
        figures.append(
            (
                "Identity over time, one panel per clip (1 s bins; dashed: identity-loss threshold)",
                slots.slot(ch.multiples_chart(
                    runset.curves,
                    sorted(clips["clip_id"].astype(str)),
                    threshold,
                    "each clip: decoupled (blue) and raw (grey) similarity to the reference",
                )),
            )
        )
    if groups and not runset.curves.empty:
        for col, label in (("sim_dec", "decoupled"), ("sim_raw", "raw")):
            bands = {name: stats.group_curve_band(runset.curves, ids, col, seed=lb.settings.seed)
                     for name, ids in groups.items()}
            figures.append(
                (
                    f"Identity over time ({label}): group mean per 1 s bin with bootstrap 95% band; below "
                    "it, the clips still observed per bin",
                    slots.slot(ch.curves_chart(
                        bands, runset.curves, groups, col, threshold, f"{label} similarity to the reference"
                    )),
                )
            )
            band_json[col] = {
                k: _json_records(v, ["t_mid", "mean", "lo", "hi", "n"]) for k, v in bands.items()
            }
    km_frames = {}
    survival_json = {}
    for name, sv in sorted(lb.survival.items()):
        km = sv.to_frame()
        g = clips[(clips["model"].astype(str) + "/" + clips["mitigation"].astype(str)) == name]
        km.attrs["censored_t"] = pd.to_numeric(
            g.loc[g["lost"] == 0, "survival_time_s"], errors="coerce"
        ).tolist()
        km_frames[name] = km
        survival_json[name] = {
            "n": sv.n,
            "n_lost": sv.n_lost,
            "median_s": sv.median,
            "median_lo": sv.median_lo,
            "median_hi": sv.median_hi,
            **{f"at_{h:g}s": sv.at(h).to_dict() for h in lb.horizons},
            "curve": _json_records(km, ["t", "survival", "lo", "hi", "at_risk"]),
        }
    survival_fig = slots.slot(ch.survival_chart(km_frames, "Kaplan-Meier identity survival (95% band; "
                                                "| = censored)")) if km_frames else None
    drift_spec, drift_json = drift_survival(clips)
    drift_survival_fig = slots.slot(drift_spec) if drift_spec is not None else None
    rank_col = lb.rank_by.removesuffix("_mean")
    scatter_fig = None
    if not lb.rows.empty and (~lb.rows["baseline"]).any() and f"{rank_col}_mean" in lb.rows:
        scatter_fig = slots.slot(ch.scatter_chart(lb.rows, rank_col, lb.settings.floor,
                                                  "Identity gain vs expressivity retained"))
    cols = [(c, h) for c, h in TABLE_COLUMNS if c in clips.columns]
    if len(runset.run_dirs) > 1:
        cols.insert(1, ("run", "run"))
    frames, thumbs = _load_table_frames(runset)
    worst = worst_frames(frames, thumbs, worst_n)
    strips = filmstrips(thumbs, frames, clips, filmstrip_frames)
    skipped = runset.skipped.to_dict(orient="records") if not runset.skipped.empty else []
    glossary = cards()
    runs = _run_info(runset.runs)
    from driftbench.report.agreement import agreement_view

    agreement = agreement_view(runset.run_dirs, list(runset.runs))

    from driftbench.report import published as pub

    published_view = pub.view(clips)
    html = (
        _env()
        .get_template("report.html.j2")
        .render(
            title=title,
            **slots.page(),
            sort_js=_markup(SORT_JS),
            runs=runs,
            n_clips=len(clips),
            n_skipped=len(skipped),
            threshold=threshold,
            leaderboard=_leaderboard_view(lb),
            horizons=[f"{h:g}s" for h in lb.horizons],
            sweep=sweep,
            rank_by=lb.rank_by,
            settings=lb.to_json()["settings"],
            notes=lb.notes,
            scatter=scatter_fig,
            figures=figures,
            survival_fig=survival_fig,
            survival=survival_json,
            drift_survival_fig=drift_survival_fig,
            table_cols=cols,
            rows=_clip_rows(clips, cols, {*TEXT_COLUMNS, "run"}),
            strips=strips,
            worst=worst,
            skipped=skipped,
            glossary=glossary,
            agreement=agreement,
            published=published_view,
        )
    )
    html_path = out_dir / html_name
    write_text(html_path, html)
    table = clips[[c for c, _ in cols]] if not clips.empty else clips
    write_csv(out_dir / "report_clips.csv", table, sort_by=["clip_id"] if not clips.empty else None)
    if not lb.clip_expressivity.empty:
        write_csv(out_dir / "expressivity.csv", lb.clip_expressivity, sort_by=["clip_id"])
    if not lb.bin_expressivity.empty:
        write_csv(out_dir / "expressivity_bins.csv", lb.bin_expressivity, sort_by=["clip_id", "t_start"])
    report = {
        "title": title,
        "runs": [{k: v for k, v in r.items() if k != "config"} for r in runs],
        "leaderboard": lb.to_json(),
        "survival": survival_json,
        "drift_survival": drift_json,
        "curve_bands": band_json,
        "clips": _json_records(table, [c for c, _ in cols]),
        "worst_frames": [{k: v for k, v in w.items() if k not in ("uri", "ref")} for w in worst],
        "skipped": [{k: stats.finite_or_none(v) for k, v in s.items()} for s in skipped],
        "glossary": glossary,
        **({"agreement": agreement} if agreement else {}),
        "published": pub.to_json(published_view),
    }
    write_json(out_dir / "report.json", report)
    return html_path


def _markup(text: str) -> Any:
    from markupsafe import Markup

    return Markup(text)


def render_runs(run_dirs: Sequence[Path], out_dir: Path | None = None, *, title: str = "driftbench report",
                filmstrip_frames: int = 8, worst_frames: int = 12,
                settings: LeaderboardSettings | None = None, charts: str = "browser") -> Path:
    """Merge run directories and render their report (default: into the first run directory)."""
    runset = load_runs(run_dirs)
    return render_runset(
        runset,
        Path(out_dir) if out_dir else Path(run_dirs[0]),
        title=title,
        settings=settings,
        filmstrip_frames=filmstrip_frames,
        worst_n=worst_frames,
        charts=charts,
    )


def render_run(run_dir: Path, *, title: str = "driftbench report", filmstrip_frames: int = 8,
               worst_frames: int = 12, out: Path | None = None, charts: str = "browser") -> Path:
    """One run's report; ``out`` is the HTML path (the CSV/JSON files go beside it)."""
    out_dir = Path(out).parent if out else Path(run_dir)
    runset = load_runs([run_dir])
    return render_runset(
        runset,
        out_dir,
        title=title,
        filmstrip_frames=filmstrip_frames,
        worst_n=worst_frames,
        html_name=Path(out).name if out else "report.html",
        charts=charts,
    )


def sweep_run_dirs(sweep_dir: Path) -> list[Path]:
    """Hydra multirun job directories: directories under the sweep holding run.json and clips.csv (at any
    depth: an override value with a '/' such as model.path=a/b.csv nests the job directory)."""
    return sorted(p.parent for p in Path(sweep_dir).rglob("run.json")
                  if p.parent != Path(sweep_dir) and (p.parent / "clips.csv").is_file())


def render_sweep(sweep_dir: Path, *, title: str = "driftbench sweep", charts: str | None = None) -> Path:
    """The leaderboard and report of a sweep (``driftbench run -m ...``), written into the sweep dir; its
    charts drawn as the first job's ``report.charts`` says unless ``charts`` is given."""
    dirs = sweep_run_dirs(Path(sweep_dir))
    if not dirs:
        raise FileNotFoundError(
            f"{sweep_dir}: no job directory with run.json and clips.csv -- fix: pass the sweep "
            "directory that `driftbench run -m` printed"
        )
    return render_runs(dirs, Path(sweep_dir), title=title, charts=charts or run_charts(dirs[0]))


def run_charts(run_dir: Path) -> str:
    """How a run asked for its report's charts (``report.charts`` in its run.json; ``browser`` for a run made
    before the setting existed)."""
    config = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8")).get("config") or {}
    return str((config.get("report") or {}).get("charts") or "browser")


def drift_survival(clips: pd.DataFrame) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Kaplan-Meier drift-free survival per model / mitigation (``time_to_drift_s`` below the loss bar, clips
    without a calibrated drift verdict left out): the chart beside identity survival, and its curves."""
    if clips.empty or "drifting" not in clips or "drift_survival_time_s" not in clips:
        return None, {}
    frames, out = {}, {}
    names = clips["model"].astype(str) + "/" + clips["mitigation"].astype(str)
    for name, g in clips.groupby(names, sort=True):
        ev = pd.to_numeric(g["drifting"], errors="coerce")
        t = pd.to_numeric(g["drift_survival_time_s"], errors="coerce")
        ok = ev.notna() & t.notna()
        if not ok.any():
            continue
        sv = stats.kaplan_meier(t[ok], ev[ok])
        km = sv.to_frame()
        km.attrs["censored_t"] = t[ok & (ev == 0)].tolist()
        frames[str(name)] = km
        out[str(name)] = {"n": sv.n, "n_drifting": sv.n_lost, "median_s": sv.median,
                          "curve": _json_records(km, ["t", "survival", "lo", "hi", "at_risk"])}
    if not frames:
        return None, {}
    return ch.survival_chart(frames, "Kaplan-Meier drift-free survival (95% band; | = censored)"), out
