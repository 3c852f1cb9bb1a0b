"""Matplotlib figures as inline data URIs (Agg backend, no display, no network)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd


def _fig_to_uri(fig) -> str:  # matplotlib.figure.Figure -> str
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def bytes_to_uri(data: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _plain(text: str) -> str:
    """User text shown literally: matplotlib parses "$...$" as mathtext and raises on bad math, so a
    model named "$x^$" would otherwise crash the report."""
    return text.replace("$", r"\$")


def curves_figure(curves: pd.DataFrame, clips: pd.DataFrame, column: str, threshold: float | None,
                  title: str) -> str:
    """Similarity-over-time curves, one line per clip, coloured by model/mitigation group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 3.6))
    groups = clips.groupby(["model", "mitigation"], sort=True) if not clips.empty else []
    cmap = plt.get_cmap("tab10")
    for gi, ((model, mit), grp) in enumerate(groups):
        for j, cid in enumerate(grp["clip_id"]):
            c = curves[curves["clip_id"] == cid]
            ax.plot(c["t_mid"], c[column], color=cmap(gi % 10), lw=1.2, alpha=0.8,
                    label=_plain(f"{model} / {mit}") if j == 0 else None)
    if threshold is not None and np.isfinite(threshold):
        ax.axhline(threshold, color="crimson", ls="--", lw=1, label=f"identity-loss threshold {threshold:.3f}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("cosine similarity to reference")
    ax.set_title(title)
    ax.set_ylim(min(-0.05, float(np.nanmin(curves[column])) - 0.05) if curves[column].notna().any() else -0.05, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    return _fig_to_uri(fig)
