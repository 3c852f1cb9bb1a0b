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
    return lines


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
