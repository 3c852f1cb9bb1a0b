"""The report's charts drawn by matplotlib as inline PNG data URIs (Agg backend, no display, no network):
``report.charts=png``, for a page that shows its figures without running a script (mail, print, an
archive). Each figure draws one spec of :mod:`driftbench.report.charts`, the data the browser renderer
draws by default, so the two show the same thing.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: axes titles at their default height, set explicitly: matplotlib otherwise measures every tick label at
#: draw time to lift a title above top-side tick labels or a y offset text, which these figures never have
TITLE_Y = 1.0


def _few_ticks(axis: Any, *, most: int | None = None, at: Sequence[float] | None = None,
               integer: bool = False) -> None:
    """Ticks on ``axis`` exactly ``at`` those values, else at most ``most`` of them: drawing tick labels is
    most of a figure's render time (text layout per label), and these small panels read as well with fewer."""
    from matplotlib.ticker import FixedLocator, MaxNLocator

    axis.set_major_locator(FixedLocator(list(at)) if at is not None
                           else MaxNLocator(nbins=most or "auto", integer=integer))


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


def _plain(text: str | None) -> str | None:
    """User text shown literally: matplotlib parses "$...$" as mathtext and raises on bad math, so a
    model named "$x^$" would otherwise crash the report."""
    return None if text is None else text.replace("$", r"\$")


#: panels at most this tall (the clip counts under a curve) get smaller tick and axis labels
COMPACT_HEIGHT = 150


def _arr(v: Sequence[float | None]) -> np.ndarray:
    return np.asarray(v, dtype=float)  # None (a gap in the spec) -> NaN


def _whisker(mid: float, lo: Sequence[float | None], hi: Sequence[float | None]) -> list[list[float]] | None:
    """matplotlib's errorbar extent of one point from its CI bounds, or None without a lower bound."""
    low, high = _arr(lo)[0], _arr(hi)[0]
    return [[mid - low], [high - mid]] if np.isfinite(low) else None


def _axis(ax: Any, spec: Mapping[str, Any], which: str) -> None:
    a = spec.get(which) or {}
    axis = ax.xaxis if which == "x" else ax.yaxis
    if a.get("at") is not None:
        _few_ticks(axis, at=a["at"])
    elif a.get("ticks"):
        _few_ticks(axis, most=int(a["ticks"]), integer=bool(a.get("integer")))
    lim = (ax.set_xlim if which == "x" else ax.set_ylim)
    if a.get("min") is not None or a.get("max") is not None:
        lim(a.get("min"), a.get("max"))
    if a.get("label"):
        compact = which == "y" and spec.get("height", 300) <= COMPACT_HEIGHT
        set_label = ax.set_xlabel if which == "x" else ax.set_ylabel
        set_label(_plain(a["label"]), fontsize=8 if compact else None)


def _draw_xy(ax: Any, spec: Mapping[str, Any], small: bool) -> None:
    """One set of axes of a spec: lines, steps, bands, markers with whiskers, reference lines."""
    for s in spec["series"]:
        x, y = _arr(s["x"]), _arr(s["y"])
        label = _plain(s["label"]) if s.get("legend") else None
        kw = {"color": s["color"], "alpha": s.get("alpha", 1.0), "label": label}
        if s.get("markers") == "o":
            err = s.get("err") or {}
            xe = _whisker(x[0], err["xlo"], err["xhi"]) if err else None
            ye = _whisker(y[0], err["ylo"], err["yhi"]) if err else None
            ax.errorbar(x, y, xerr=xe, yerr=ye, fmt="o", color=s["color"], ms=7, capsize=3, lw=1,
                        mfc="white" if s.get("hollow") else s["color"])
            for xi, yi, t in zip(x, y, s.get("text") or [], strict=False):
                ax.annotate(_plain(t), (xi, yi), textcoords="offset points", xytext=(6, 5), fontsize=7)
            continue
        if s.get("markers") == "|":
            ax.plot(x, y, "|", color=s["color"], ms=8)
            continue
        if s.get("step"):
            ax.step(x, y, where="post", lw=s["width"], **kw)
        else:
            ax.plot(x, y, lw=s["width"], **kw)
        band = s.get("band")
        if band:
            lo, hi = _arr(band["lo"]), _arr(band["hi"])
            ok = np.isfinite(lo) & np.isfinite(hi)
            ax.fill_between(x[ok], lo[ok], hi[ok], color=s["color"], lw=0, alpha=band["alpha"],
                            step="post" if s.get("step") else None)
    for line in spec.get("hlines", []):
        ax.axhline(line["y"], color=line["color"], ls="--" if line.get("dash") else "-",
                   lw=line.get("width", 1), label=_plain(line.get("label")))
    for line in spec.get("vlines", []):
        ax.axvline(line["x"], color=line["color"], ls=":" if line.get("dash") else "-",
                   lw=line.get("width", 1))
    _axis(ax, spec, "x")
    _axis(ax, spec, "y")
    if spec.get("title"):
        ax.set_title(_plain(spec["title"]), y=TITLE_Y, fontsize=7 if small else None)
    ax.grid(alpha=0.3)
    if small:
        ax.tick_params(labelsize=6)
    elif spec.get("height", 300) <= COMPACT_HEIGHT:
        ax.tick_params(labelsize=7)
    if spec.get("legend"):
        ax.legend(fontsize=6 if small else 7, loc=spec["legend"], ncol=1 if small else 2)


def png(spec: Mapping[str, Any]) -> str:
    """The spec drawn as a PNG data URI."""
    from matplotlib.figure import Figure

    width = spec.get("width", 880) / 100
    if spec["kind"] == "xy":
        fig = Figure(figsize=(width, spec["height"] / 100 + 0.6))
        fig.subplots_adjust(left=0.075, right=0.985, bottom=0.13, top=0.9)
        _draw_xy(fig.subplots(), spec, small=False)
        return _fig_to_uri(fig)
    panels = spec["panels"]
    ncols = max(1, int(spec.get("cols", 1)))
    nrows = max(1, -(-len(panels) // ncols))
    if spec.get("layout") == "stack":  # a curve above its clip counts: heights as the spec gives them
        fig = Figure(figsize=(width, sum(p["height"] for p in panels) / 100 + 0.6))
        fig.subplots_adjust(left=0.075, right=0.985, bottom=0.1, top=0.92, hspace=0.08)
        axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=bool(spec.get("share_x")),
                                          gridspec_kw={"height_ratios": [p["height"] for p in panels]}))
        small = False
    else:  # small multiples: one panel per clip
        h = 1.55 * nrows + 0.5
        fig = Figure(figsize=(width, h))
        fig.subplots_adjust(left=0.06, right=0.99, bottom=0.08 if nrows > 2 else 0.14, top=1 - 0.62 / h,
                            hspace=0.55, wspace=0.18)
        axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=bool(spec.get("share_x")),
                                          sharey=True)).ravel()
        small = True
    for ax, panel in zip(axes, panels, strict=False):
        _draw_xy(ax, panel, small=small)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if spec.get("title"):
        fig.suptitle(str(_plain(spec["title"])), fontsize=9)
    return _fig_to_uri(fig)
