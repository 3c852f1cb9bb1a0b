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

#: axes titles at their default height, set explicitly: matplotlib otherwise measures every tick label at
#: draw time to lift a title above top-side tick labels or a y offset text, which these figures never have
TITLE_Y = 1.0


def _axes(figsize: tuple[float, float]) -> tuple[Any, Any]:
    """A figure and its axes, off-screen (matplotlib's object API: no pyplot state, no GUI backend).
    Fixed margins, so saving draws the figure once (``bbox_inches="tight"`` and layout engines draw twice)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    fig.subplots_adjust(left=0.075, right=0.985, bottom=0.13, top=0.9)
    return fig, fig.subplots()


def _few_ticks(axis: Any, *, most: int | None = None, at: Sequence[float] | None = None,
               integer: bool = False) -> None:
    """Ticks on ``axis`` exactly ``at`` those values, else at most ``most`` of them: drawing tick labels is
    most of a figure's render time (text layout per label), and these small panels read as well with fewer."""
    from matplotlib.ticker import FixedLocator, MaxNLocator

    axis.set_major_locator(FixedLocator(list(at)) if at is not None
                           else MaxNLocator(nbins=most or "auto", integer=integer))


def _tab10(i: int) -> Any:
    import matplotlib

    return matplotlib.colormaps["tab10"](i % 10)


#: zlib level of the figures' PNGs: 3 encodes in about half the time of PIL's default 6, and as RGB (the
#: figures are opaque) the files are still smaller than the RGBA ones savefig wrote at level 6
PNG_COMPRESS_LEVEL = 3


def _fig_to_uri(fig: Any) -> str:
    """The figure drawn by Agg at 110 dpi, as an RGB PNG (the background is opaque, so the alpha channel
    savefig would write carries nothing) without metadata."""
    import warnings

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    fig.set_dpi(110)
    canvas = FigureCanvasAgg(fig)
    with warnings.catch_warnings():
        # user strings in any script: a glyph the bundled font lacks is drawn as a box, not an error
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        canvas.draw()
    rgba = canvas.buffer_rgba()
    image = Image.frombuffer("RGBA", (rgba.shape[1], rgba.shape[0]), rgba, "raw", "RGBA", 0, 1).convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="png", compress_level=PNG_COMPRESS_LEVEL, dpi=(110, 110))
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


def curves_figure(
    bands: Mapping[str, pd.DataFrame],
    curves: pd.DataFrame,
    members: Mapping[str, Sequence[str]],
    column: str,
    threshold: float | None,
    title: str,
) -> str:
    """Identity over time per group: the mean over the group's clips per 1 s bin with its bootstrap
    95% band (shaded), individual clips as thin lines; below it, the number of clips still observed
    in each bin (the mean moves where clips end, and the count shows where)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.8, 4.6))
    fig.subplots_adjust(left=0.075, right=0.985, bottom=0.1, top=0.92, hspace=0.08)
    ax, ax_n = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [4, 1]})
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
        ax_n.step(band["t_mid"], band["n"], where="mid", color=color, lw=1.2)
    if threshold is not None and np.isfinite(threshold):
        ax.axhline(
            threshold, color="crimson", ls="--", lw=1, label=f"identity-loss threshold {threshold:.3f}"
        )
    ax_n.set_ylabel("clips", fontsize=8)
    ax_n.set_ylim(bottom=0)
    ax_n.grid(alpha=0.3)
    ax_n.tick_params(labelsize=7)
    _few_ticks(ax_n.yaxis, most=2, integer=True)
    _few_ticks(ax.yaxis, most=6)
    _few_ticks(ax.xaxis, most=8)
    ax_n.set_xlabel("time (s); below: clips still observed per bin")
    ax.set_ylabel("cosine similarity to reference")
    ax.set_title(title, y=TITLE_Y)
    ax.set_ylim(min(-0.05, lo_y - 0.05), 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    return _fig_to_uri(fig)


def clip_multiples_figure(curves: pd.DataFrame, clip_ids: Sequence[str], threshold: float | None, title: str,
                          ncols: int = 4) -> str:
    """One small panel per clip (decoupled and raw similarity per 1 s bin, labelled with the clip's id),
    so a reader sees which clip drifts and when."""
    from matplotlib.figure import Figure

    ids = list(clip_ids)
    ncols = max(1, min(ncols, len(ids)))
    nrows = max(1, -(-len(ids) // ncols))
    fig = Figure(figsize=(8.8, 1.55 * nrows + 0.5))
    fig.subplots_adjust(
        left=0.06,
        right=0.99,
        bottom=0.08 if nrows > 2 else 0.14,
        top=1 - 0.62 / (1.55 * nrows + 0.5),
        hspace=0.55,
        wspace=0.18,
    )
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True)).ravel()
    for ax, cid in zip(axes, ids, strict=False):
        c = curves[curves["clip_id"] == cid]
        ax.plot(c["t_mid"], c["sim_raw"], color="#9aa5b1", lw=0.8, label="raw")
        ax.plot(c["t_mid"], c["sim_dec"], color="#2f6fdb", lw=1.3, label="decoupled")
        if threshold is not None and np.isfinite(threshold):
            ax.axhline(threshold, color="crimson", ls="--", lw=0.8)
        ax.set_title(_short(str(cid), 44), fontsize=7, y=TITLE_Y)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    for ax in axes[len(ids):]:
        ax.set_visible(False)
    axes[0].set_ylim(-0.05, 1.02)
    _few_ticks(axes[0].yaxis, at=(0.0, 0.5, 1.0))
    _few_ticks(axes[0].xaxis, most=4)
    axes[0].legend(fontsize=6, loc="lower left")
    fig.suptitle(title, fontsize=9)
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
    _few_ticks(ax.yaxis, at=(0.0, 0.25, 0.5, 0.75, 1.0))
    _few_ticks(ax.xaxis, most=8)
    ax.set_title(title, y=TITLE_Y)
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
        xerr = (
            [[x - row[f"{gain_col}_lo"]], [row[f"{gain_col}_hi"] - x]]
            if np.isfinite(row[f"{gain_col}_lo"])
            else None
        )
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
    ax.set_title(title, y=TITLE_Y)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    return _fig_to_uri(fig)
