"""Matplotlib figures as inline data URIs (Agg backend, no display, no network).

Figures are drawn from the same tables (and the same statistics) as the report's numbers, so what a
reader sees in a plot is what the CSV/JSON say.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd


def _axes(figsize: tuple[float, float]) -> tuple[Any, Any]:
    """A figure and its axes, off-screen (matplotlib's object API: no pyplot state, no GUI backend).
    Fixed margins, so saving draws the figure once (``bbox_inches="tight"`` and layout engines draw twice)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    fig.subplots_adjust(left=0.075, right=0.985, bottom=0.13, top=0.9)
    return fig, fig.subplots()


def _tab10(i: int) -> Any:
    import matplotlib

    return matplotlib.colormaps["tab10"](i % 10)


def _fig_to_uri(fig: Any) -> str:
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():
        # user strings in any script: a glyph the bundled font lacks is drawn as a box, not an error
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def bytes_to_uri(data: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64," + base64.b64encode(bytes(data)).decode("ascii")


def _short(text: str, n: int = 48) -> str:
    """User text shortened for a legend or label, shown literally (see :func:`_plain`)."""
    return _plain(text if len(text) <= n else text[: n - 1] + "…")


def _plain(text: str) -> str:
    """User text shown literally: matplotlib parses "$...$" as mathtext and raises on bad math, so a
    model named "$x^$" would otherwise crash the report."""
    return text.replace("$", r"\$")


def curves_figure(bands: Mapping[str, pd.DataFrame], curves: pd.DataFrame, members: Mapping[str, Sequence[str]],
                  column: str, threshold: float | None, title: str) -> str:
    """Identity over time per group: the mean over the group's clips per 1 s bin with its bootstrap
    95% band (shaded), individual clips as thin lines."""
    fig, ax = _axes((8.8, 3.8))
    lo_y = 1.0
    for gi, (name, band) in enumerate(sorted(bands.items())):
        color = _tab10(gi)
        for cid in members.get(name, []):
            c = curves[curves["clip_id"] == cid]
            if len(c):
                ax.plot(c["t_mid"], c[column], color=color, lw=0.6, alpha=0.35)
                if c[column].notna().any():
                    lo_y = min(lo_y, float(np.nanmin(c[column])))
        if band.empty:
            continue
        ax.plot(band["t_mid"], band["mean"], color=color, lw=2.0,
                label=f"{_short(name)} (n={int(band['n'].max())})")
        ok = band["lo"].notna() & band["hi"].notna()
        ax.fill_between(band["t_mid"][ok], band["lo"][ok], band["hi"][ok], color=color, alpha=0.18, lw=0)
    if threshold is not None and np.isfinite(threshold):
        ax.axhline(threshold, color="crimson", ls="--", lw=1, label=f"identity-loss threshold {threshold:.3f}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("cosine similarity to reference")
    ax.set_title(title)
    ax.set_ylim(min(-0.05, lo_y - 0.05), 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    return _fig_to_uri(fig)


def survival_figure(curves: Mapping[str, pd.DataFrame], title: str) -> str:
    """Kaplan-Meier identity-survival curves (steps) with their 95% bands; censoring marks as ticks."""
    fig, ax = _axes((8.8, 3.4))
    for gi, (name, km) in enumerate(sorted(curves.items())):
        if km.empty:
            continue
        color = _tab10(gi)
        ax.step(km["t"], km["survival"], where="post", color=color, lw=1.8, label=_short(name))
        ax.fill_between(km["t"], km["lo"], km["hi"], step="post", color=color, alpha=0.15, lw=0)
        if "censored_t" in km.attrs:
            ct = np.asarray(km.attrs["censored_t"], dtype=float)
            idx = np.searchsorted(km["t"].to_numpy(), ct, side="right") - 1
            ax.plot(ct, km["survival"].to_numpy()[np.clip(idx, 0, len(km) - 1)], "|", color=color, ms=8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("share still the same person")
    ax.set_ylim(-0.02, 1.05)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    return _fig_to_uri(fig)


def scatter_figure(rows: pd.DataFrame, gain_col: str, floor: float, title: str) -> str:
    """Identity gain (x) vs expressivity retained (y) per mitigation row, with CI whiskers; the floor as a
    dashed line and flagged rows drawn hollow."""
    fig, ax = _axes((6.8, 4.2))
    r = rows[~rows["baseline"]]
    for _, row in r.iterrows():
        x, y = row.get(f"{gain_col}_mean"), row.get("expressivity_retained_mean")
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        flagged = bool(row.get("flags"))
        xerr = [[x - row[f"{gain_col}_lo"]], [row[f"{gain_col}_hi"] - x]] if np.isfinite(row[f"{gain_col}_lo"]) else None
        yerr = ([[y - row["expressivity_retained_lo"]], [row["expressivity_retained_hi"] - y]]
                if np.isfinite(row["expressivity_retained_lo"]) else None)
        color = "#b3261e" if flagged else "#2f6fdb"
        ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="o", color=color, mfc="white" if flagged else color,
                    ms=7, capsize=3, lw=1)
        ax.annotate(_short(f"{row['model']}/{row['mitigation']}", 36), (x, y), textcoords="offset points",
                    xytext=(6, 5), fontsize=7)
    ax.axhline(floor, color="#b3261e", ls="--", lw=1, label=f"expressivity floor {floor:.0%}")
    ax.axhline(1.0, color="#888", ls=":", lw=1)
    ax.axvline(0.0, color="#888", ls=":", lw=1)
    ax.set_xlabel(f"identity gain: {gain_col.replace('_', ' ')} (cosine)")
    ax.set_ylabel("expressivity retained (x baseline)")
    ax.set_ylim(-0.05, max(1.15, ax.get_ylim()[1]))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    return _fig_to_uri(fig)
