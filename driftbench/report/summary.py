"""The few lines printed after a run, before its directory: how many clips were measured, skipped,
drifting (where the run holds a ``drifting`` verdict) and lost, and the clip that drifted most by the
end, so a reader knows at a glance whether to open the report. Read from the run's tables only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def _read(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame()
    except (pd.errors.EmptyDataError, pd.errors.ParserError, OSError, UnicodeDecodeError):
        return pd.DataFrame()


def _num(df: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(df[col], errors="coerce") if col in df else pd.Series(np.nan, index=df.index)


def run_summary(run_dir: Path, prefix: str = "") -> list[str]:
    """Summary lines of one run directory (empty when it holds no table)."""
    run_dir = Path(run_dir)
    clips = _read(run_dir / "clips.csv")
    skipped = _read(run_dir / "skipped.csv")
    if clips.empty and skipped.empty:
        return []
    parts = [f"measured {len(clips)}", f"skipped {len(skipped)}"]
    if "drifting" in clips:
        parts.append(f"drifting {int(_num(clips, 'drifting').fillna(0).astype(bool).sum())}")
    parts.append(f"lost {int(_num(clips, 'lost').fillna(0).astype(bool).sum())}")
    lines = [f"{prefix}{' · '.join(parts)}"]
    end = _num(clips, "drift_dec_at_end")
    if end.notna().any():
        i = end.idxmax()
        row = clips.loc[i]
        opening, sim_end = _num(clips, "opening_dec")[i], _num(clips, "sim_dec_at_end")[i]
        detail = (
            f" (opening {opening:.3f} -> end {sim_end:.3f})"
            if np.isfinite(opening) and np.isfinite(sim_end)
            else ""
        )
        lines.append(f"{prefix}worst clip: {row['clip_id']}, end drift {end[i]:+.3f} decoupled{detail}")
    lines += [f"{prefix}{ln}" for ln in agreement_summary(run_dir)]
    return lines


def agreement_summary(run_dir: Path) -> list[str]:
    """One line per extra backend of a run with recognizer agreement (agreement.csv): Spearman of the raw
    end drift and the clips whose verdicts differ."""
    table = _read(Path(run_dir) / "agreement.csv")
    if table.empty or "backend" not in table:
        return []
    out = []
    for backend, g in table.groupby("backend", sort=True):
        vs = str(g["vs"].iloc[0])
        bits = []
        r = g[g["metric"] == "drift_raw_at_end"]
        if len(r) and np.isfinite(_num(r, "spearman").iloc[0]):
            rho, lo, hi = (_num(r, c).iloc[0] for c in ("spearman", "spearman_lo", "spearman_hi"))
            n = int(r["n"].iloc[0])
            bits.append(f"Spearman of raw end drift {rho:.2f} [{lo:.2f}, {hi:.2f}] over {n} clips")
        for _, v in g[g["kind"] == "verdict"].iterrows():
            if int(v["n"]):
                bits.append(f"{v['metric']} differs on {int(v['n_disagree'])} of {int(v['n'])}")
        out.append(f"agreement {backend} vs {vs}: {'; '.join(bits) or 'nothing comparable'} (agreement.csv)")
    return out


def sweep_summary(sweep_dir: Path) -> list[str]:
    """One summary per job of a sweep, each prefixed with the job's folder name."""
    from driftbench.report.html import sweep_run_dirs

    out: list[str] = []
    for d in sweep_run_dirs(Path(sweep_dir)):
        out += run_summary(d, prefix=f"{d.relative_to(sweep_dir)}: ")
    return out


def print_summary(result_dir: Path, *, sweep: bool = False) -> None:
    """Print the summary (never raises: a summary must not cost the run its exit code or its path)."""
    import sys

    try:
        lines = sweep_summary(result_dir) if sweep else run_summary(result_dir)
    except Exception:  # the run's result stands without its summary
        return
    for ln in lines:
        print(ln)
    sys.stdout.flush()
