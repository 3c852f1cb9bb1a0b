"""From a clip's face track to identity-over-time: references, per-frame similarities, curves and
per-clip drift metrics. Pure functions of tables (no video, no models).

Metric cards (units: cosine similarity of identity embeddings unless stated; higher = more alike):

- ``sim_raw``: cosine between the frame's face and the reference embedding.
- ``sim_dec``: ``sim_raw`` decoupled from the expression / head-pose (/ age) difference to the
  reference (:mod:`driftbench.measure.decouple`); what drift and identity loss are judged on.
- ``sim_open``: cosine to the clip's own opening (mean embedding of its first ``opening_s``).
- ``opening_{raw,dec}``: median similarity over the opening window [start, start + opening_s): start is
  the end of the frames the reference was built from (``reference_s`` for a first-frame reference, the
  face's first second when it appears later), 0 for reference images (``opening_start_s``). A
  first-frame reference's own frames would lift the opening and bias every drift upward. Level, not drift.
- ``sim_{raw,dec}_at_{T}s``: median similarity over [T - window_s, T); empty when the clip is shorter
  than T. Higher is better.
- ``drift_{raw,dec}_at_{T}s``: opening minus sim@T (positive = the face moved away from where it
  started). Lower is better.
- ``sim_{raw,dec}_at_end``, ``drift_{raw,dec}_at_end``: the same over the clip's last ``window_s``:
  the horizon every clip reaches, whatever its length.
- ``slope_{raw,dec}_per_min``: Theil-Sen slope of the per-bin medians, per minute (negative = drift).
- ``auc_{raw,dec}``: time-normalised area under the binned curve (mean similarity over the clip).
- ``time_to_loss_s``: onset of identity loss: the first sample of the first run of at least
  ``min_loss_s`` in which every sample is either below the backend's calibrated threshold (smoothed
  decoupled similarity) or has no face of the character; empty (right-censored at ``duration_s``)
  when identity is never lost. ``lost`` is 0/1. Losing the face is never a gain: a run without a face
  is a loss like a run of another face (``loss_cause`` says which: ``identity`` when the run holds a
  sample below the threshold, ``no_face`` when the face is missing throughout), and a clip in which
  the face is never found stays in n and in survival, lost at its first sample.
- ``drifting`` / ``time_to_drift_s`` / ``drift_level`` / ``drift_threshold``: drift below the identity-loss
  bar. The drift series is the opening minus the trailing ``DRIFT_WINDOW_S`` median of the decoupled score;
  ``drift_level`` is the highest level it holds for ``DRIFT_MIN_S``; a clip is ``drifting`` when that
  exceeds its ``drift_threshold``: the verdict's calibrated number of units of the clip's own
  sample-to-sample noise (:func:`noise_scale`), floored at identity-constant footage's median noise
  (:func:`verdict_threshold`), calibrated on identity-constant real footage (people held out, at most 1 %
  of held-out real clips flagged; :func:`driftbench.validity.calibration.calibrate_drift`;
  docs/DRIFT-VERDICT.md). ``time_to_drift_s`` is the onset of the first such run (empty = censored at the
  end; ``drift_survival_time_s`` for Kaplan-Meier). Both the level and the threshold are in cosine
  similarity. Empty where no calibrated verdict exists for the backend key.
- ``face_rate``: share of samples where the character's face was found; stands beside every
  identity figure (a method that loses the face is flagged, never rewarded). ``longest_no_face_s``:
  the longest run of samples without the face (seconds, a sample counting one sampling period).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from driftbench.faces.base import l2_normalize
from driftbench.measure.preload import pandas as pd


@dataclass
class Reference:
    """The character's reference: identity embedding plus its expression, pose and age."""

    embedding: np.ndarray  # (D,) L2-normalised
    blendshapes: np.ndarray | None  # (52,)
    yaw: float
    pitch: float
    roll: float
    age: float
    mode: str  # "images" | "first_frame"
    n_faces: int  # how many faces (images or opening frames) were averaged
    thumb: bytes | None = None
    #: end of the clip's frames the reference was built from (s); 0 for reference images
    t_end: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "n_faces": self.n_faces, "yaw": self.yaw, "pitch": self.pitch,
                "roll": self.roll, "age": self.age, "t_end": self.t_end,
                "blendshapes": None if self.blendshapes is None else [float(v) for v in self.blendshapes]}

    @classmethod
    def missing(cls, mode: str, dim: int = 128) -> Reference:
        """No face to build the reference from (the face is never found): every similarity is NaN."""
        return cls(
            embedding=np.full(dim, np.nan, dtype=np.float32),
            blendshapes=None,
            yaw=np.nan,
            pitch=np.nan,
            roll=np.nan,
            age=np.nan,
            mode=mode,
            n_faces=0,
        )


def opening_start(ref: Reference) -> float:
    """Where the opening window starts: after the frames a first-frame reference was built from (they
    would lift the opening), at 0 for reference images."""
    return float(ref.t_end) if ref.mode == "first_frame" else 0.0


def _mean_or_nan(values: pd.Series) -> float:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return float(v.mean()) if len(v) else float("nan")


def _stack(series: pd.Series) -> np.ndarray | None:
    arrs = [np.asarray(v, dtype=np.float32) for v in series if v is not None]
    arrs = [a for a in arrs if a.size and np.isfinite(a).all()]
    return np.stack(arrs) if arrs else None


def reference_from_faces(rows: pd.DataFrame, mode: str, t_end: float = 0.0) -> Reference:
    """Average the given face rows (reference images' faces or the opening frames' faces); ``t_end``:
    the end of the clip's frames they come from (first-frame references)."""
    rows = rows[rows["emb"].notna()]
    if rows.empty:
        raise ValueError("no face to build the reference from")
    emb = l2_normalize(_stack(rows["emb"]).mean(axis=0))  # type: ignore[union-attr]
    bs = _stack(rows["blendshapes"]) if "blendshapes" in rows else None
    thumb = next((t for t in rows.get("thumb", pd.Series(dtype=object)) if t), None)
    return Reference(
        embedding=emb,
        blendshapes=None if bs is None else bs.mean(axis=0),
        yaw=_mean_or_nan(rows["yaw"]),
        pitch=_mean_or_nan(rows["pitch"]),
        roll=_mean_or_nan(rows["roll"]),
        age=float(pd.to_numeric(rows["age"], errors="coerce").median())
        if rows["age"].notna().any()
        else np.nan,
        mode=mode,
        n_faces=len(rows),
        thumb=thumb,
        t_end=float(t_end),
    )


def frame_table(track: pd.DataFrame, ref: Reference, *, opening_s: float = 2.0) -> pd.DataFrame:
    """Per-sample similarities and differences to the reference (decoupling is applied later).
    ``sim_open`` compares with the mean embedding of the opening window (:func:`opening_start`)."""
    out = pd.DataFrame({
        "sample_index": track["sample_index"].astype("int32"),
        "t": track["t"].astype("float64"),
        "face_found": track["face_found"].astype(bool),
        "n_faces": track["n_faces"].astype("int16"),
        "det_score": track["det_score"].astype("float32"),
        "face_size": track["face_size"].astype("float32"),
        "blur": track["blur"].astype("float32"),
        "yaw": track["yaw"].astype("float32"),
        "pitch": track["pitch"].astype("float32"),
        "roll": track["roll"].astype("float32"),
        "age": track["age"].astype("float32"),
    })
    found = out["face_found"].to_numpy()
    sim = np.full(len(out), np.nan, dtype=np.float64)
    sim_open = np.full(len(out), np.nan, dtype=np.float64)
    if found.any():
        embs = np.stack([np.asarray(e, dtype=np.float32) for e in track.loc[found, "emb"]])
        sim[found] = embs @ ref.embedding
        lo = opening_start(ref)
        tt = out["t"].to_numpy()
        opening = found & (tt >= lo - 1e-9) & (tt < lo + opening_s - 1e-9)
        if opening.any():
            open_emb = l2_normalize(np.stack([np.asarray(e, np.float32) for e in track.loc[opening, "emb"]])
                                    .mean(axis=0))
            sim_open[found] = embs @ open_emb
    out["sim_raw"] = sim
    out["sim_open"] = sim_open
    # differences to the reference that decoupling accounts for
    out["d_yaw"] = (out["yaw"] - ref.yaw).abs().astype("float32")
    out["d_pitch"] = (out["pitch"] - ref.pitch).abs().astype("float32")
    out["d_roll"] = (out["roll"] - ref.roll).abs().astype("float32")
    expr = np.full(len(out), np.nan, dtype=np.float32)
    if ref.blendshapes is not None and "blendshapes" in track:
        for i, bs in enumerate(track["blendshapes"]):
            if bs is not None:
                a = np.asarray(bs, dtype=np.float32)
                if a.shape == ref.blendshapes.shape and np.isfinite(a).all():
                    expr[i] = float(np.linalg.norm(a - ref.blendshapes))
    out["d_expr"] = expr
    out["d_age"] = (out["age"] - ref.age).astype("float32")
    out["lm_motion"], out["lm_motion_local"] = landmark_motion(track)
    return out


def landmark_motion(track: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: mean displacement of the 478 landmarks since the previous sample, divided by face
    size. ``lm_motion`` includes head motion; ``lm_motion_local`` removes the best similarity
    transform first (expression and articulation only). NaN where either sample lacks landmarks."""
    from driftbench.faces.base import similarity_matrix

    n = len(track)
    total = np.full(n, np.nan, dtype=np.float32)
    local = np.full(n, np.nan, dtype=np.float32)
    if "lm478" not in track:
        return total, local
    prev: np.ndarray | None = None
    for i, (lm, size) in enumerate(zip(track["lm478"], track["face_size"], strict=True)):
        cur = None
        if lm is not None:
            a = np.asarray(lm, dtype=np.float64).reshape(-1, 2)
            cur = a if np.isfinite(a).all() else None
        if cur is not None and prev is not None and np.isfinite(size) and size > 0:
            total[i] = float(np.linalg.norm(cur - prev, axis=1).mean() / size)
            try:
                m = similarity_matrix(prev, cur)
                moved = prev @ m[:, :2].T + m[:, 2]
                local[i] = float(np.linalg.norm(cur - moved, axis=1).mean() / size)
            except ValueError:
                pass
        prev = cur
    return total, local


def smooth(t: np.ndarray, values: np.ndarray, window_s: float) -> np.ndarray:
    """Centred rolling median over a time window (NaN samples are ignored, stay NaN).

    The window is ``window_s`` plus half the median sampling period, closed on both ends: samples land
    on the first frame at or after each instant (at 25 fps and 2 frames/s they are 0.48 or 0.52 s apart),
    so a plain 1 s window would sometimes hold one neighbour instead of both, and a median of two would
    blur a cut by a sample. """
    out = np.full(len(values), np.nan)
    ok = np.isfinite(values)
    if not ok.any():
        return out
    if window_s <= 0:
        out[ok] = values[ok]
        return out
    tt = np.asarray(t, dtype=np.float64)[ok]
    period = float(np.median(np.diff(tt))) if len(tt) > 1 else 0.0
    s = pd.Series(values[ok], index=pd.to_timedelta(tt, unit="s"))
    width = pd.Timedelta(seconds=window_s + 0.5 * period + 1e-6)
    out[ok] = s.rolling(width, center=True, min_periods=1, closed="both").median().to_numpy()
    return out


def loss_run(t: np.ndarray, smoothed: np.ndarray, threshold: float, min_loss_s: float,
             period: float) -> tuple[float, str] | None:
    """(onset, cause) of the first run of at least ``min_loss_s`` in which every sample is below
    ``threshold`` or has no face (NaN); None if there is none.

    Losing the face is never a gain: a sample without a face continues or starts a run like one of
    another face. ``cause`` is ``identity`` when the run holds a sample below the threshold,
    ``no_face`` when the face is missing throughout. A clip without any face is lost at its first
    sample whatever its length. A run's length counts one sample period for its last sample (a run
    of n samples at 2 frames/s lasts n * 0.5 s).
    """
    t = np.asarray(t, dtype=np.float64)
    v = np.asarray(smoothed, dtype=np.float64)
    if len(t) and not np.isfinite(v).any():
        return float(t[0]), "no_face"
    start: float | None = None
    below = False
    for ti, vi in zip(t, v, strict=True):
        face = bool(np.isfinite(vi))
        if not face or vi < threshold:
            if start is None:
                start, below = float(ti), False
            below |= face
            if float(ti) - start + period >= min_loss_s - 1e-9:
                return start, "identity" if below else "no_face"
        else:
            start = None
    return None


def time_to_loss(t: np.ndarray, smoothed: np.ndarray, threshold: float, min_loss_s: float,
                 period: float) -> float | None:
    """Onset of the first loss run (:func:`loss_run`: below ``threshold`` or without a face for at
    least ``min_loss_s``); None if none."""
    run = loss_run(t, smoothed, threshold, min_loss_s, period)
    return None if run is None else run[0]


def longest_no_face_s(face_found: np.ndarray, period: float) -> float:
    """Longest run of consecutive samples without the face, in seconds (n samples last n periods)."""
    best = cur = 0
    for f in np.asarray(face_found, dtype=bool):
        cur = 0 if f else cur + 1
        best = max(best, cur)
    return best * period


def curve(frames: pd.DataFrame, bin_s: float = 1.0) -> pd.DataFrame:
    """Similarity over time at a fixed resolution: per-bin medians, counts and face rate."""
    b = np.floor(frames["t"].to_numpy() / bin_s + 1e-9).astype(int)
    df = frames.assign(bin=b)
    g = df.groupby("bin", sort=True)
    out = pd.DataFrame({
        "t_start": g["t"].min().index.to_numpy() * bin_s,
        "n_samples": g.size().to_numpy(),
        "n_faces": g["face_found"].sum().to_numpy(),
        "sim_raw": g["sim_raw"].median().to_numpy(),
        "sim_dec": g["sim_dec"].median().to_numpy(),
        "sim_open": g["sim_open"].median().to_numpy(),
        "sim_raw_min": g["sim_raw"].min().to_numpy(),
    })
    out["t_mid"] = out["t_start"] + bin_s / 2.0
    out["face_rate"] = out["n_faces"] / out["n_samples"]
    return out


def _window_median(frames: pd.DataFrame, col: str, lo: float, hi: float) -> float:
    m = (frames["t"] >= lo - 1e-9) & (frames["t"] < hi - 1e-9)
    v = frames.loc[m, col].dropna()
    return float(v.median()) if len(v) else float("nan")


def theil_sen_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Theil-Sen slope: the median of the slopes of all pairs of points (robust to outlying bins).

    The same estimate as ``scipy.stats.theilslopes(y, x).slope`` (tests/test_drift.py checks equality
    on real curves), computed with numpy because importing scipy.stats costs ~0.6 s, a sixth of
    measuring a 60 s clip, on the measurement path.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    i, j = np.triu_indices(len(x), k=1)
    dx = x[j] - x[i]
    ok = dx != 0
    return float(np.median((y[j] - y[i])[ok] / dx[ok])) if ok.any() else float("nan")


def _theil_sen_per_min(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan")
    return theil_sen_slope(x[ok], y[ok]) * 60.0


def _auc(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return float(y[ok][0]) if ok.sum() == 1 else float("nan")
    span = x[ok][-1] - x[ok][0]
    return float(np.trapezoid(y[ok], x[ok]) / span) if span > 0 else float(y[ok].mean())


def horizon_label(h: float) -> str:
    return f"{h:g}s"


#: the horizon every clip reaches: its last ``window_s`` (label of the ``*_at_end`` columns)
END = "end"


def end_horizon(frames: pd.DataFrame, col: str, opening: float, *, duration_s: float,
                window_s: float) -> tuple[float, float]:
    """(similarity, drift) over the clip's last window [duration - window_s, duration]: the horizon
    every clip reaches, whatever its length (``sim_{raw,dec}_at_end``, ``drift_{raw,dec}_at_end``)."""
    lo = max(0.0, float(duration_s) - float(window_s))
    m = frames["t"] >= lo - 1e-9
    v = frames.loc[m, col].dropna()
    sim = float(v.median()) if len(v) else float("nan")
    return sim, (opening - sim if np.isfinite(sim) and np.isfinite(opening) else float("nan"))


def clip_summary(frames: pd.DataFrame, curv: pd.DataFrame, *, duration_s: float, threshold: float,
                 metrics: Any, fps: float, opening_start_s: float = 0.0,
                 verdict: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per-clip drift metrics (see the module docstring for each metric's card). ``opening_start_s``:
    :func:`opening_start` of the clip's reference; ``verdict``: the calibrated drift verdict
    (:func:`load_drift_verdict`)."""
    period = 1.0 / fps
    out: dict[str, Any] = {"duration_s": duration_s, "n_samples": len(frames),
                           "face_rate": float(frames["face_found"].mean()) if len(frames) else 0.0,
                           "longest_no_face_s": longest_no_face_s(frames["face_found"].to_numpy(), period),
                           "opening_start_s": float(opening_start_s)}
    for kind, col in (("raw", "sim_raw"), ("dec", "sim_dec")):
        opening = _window_median(
            frames, col, float(opening_start_s), float(opening_start_s) + float(metrics.opening_s)
        )
        out[f"opening_{kind}"] = opening
        out[f"mean_{kind}"] = float(frames[col].mean()) if frames[col].notna().any() else np.nan
        for h in metrics.horizons:
            lab = horizon_label(float(h))
            # available when the clip reaches T (within one sampling period)
            if duration_s + 1.0 / fps >= float(h) - 1e-9:
                v = _window_median(frames, col, float(h) - float(metrics.window_s), float(h))
            else:
                v = np.nan
            out[f"sim_{kind}_at_{lab}"] = v
            out[f"drift_{kind}_at_{lab}"] = opening - v if np.isfinite(v) and np.isfinite(opening) else np.nan
        out[f"sim_{kind}_at_{END}"], out[f"drift_{kind}_at_{END}"] = end_horizon(
            frames, col, opening, duration_s=duration_s, window_s=float(metrics.window_s))
        out[f"slope_{kind}_per_min"] = _theil_sen_per_min(curv["t_mid"].to_numpy(), curv[col].to_numpy())
        out[f"auc_{kind}"] = _auc(curv["t_mid"].to_numpy(), curv[col].to_numpy())
    out["min_bin_raw"] = float(curv["sim_raw"].min()) if curv["sim_raw"].notna().any() else np.nan
    out["min_bin_dec"] = float(curv["sim_dec"].min()) if curv["sim_dec"].notna().any() else np.nan
    score_col = "sim_dec_smooth" if metrics.loss_score == "decoupled" else "sim_raw_smooth"
    run = loss_run(frames["t"].to_numpy(), frames[score_col].to_numpy(), threshold, float(metrics.min_loss_s),
                   period)
    out["threshold"] = threshold
    out["time_to_loss_s"] = run[0] if run is not None else np.nan
    out["lost"] = int(run is not None)
    out["loss_cause"] = run[1] if run is not None else ""
    out["survival_time_s"] = run[0] if run is not None else duration_s
    out.update(verdict_summary(frames, verdict, duration_s=duration_s, opening_start_s=float(opening_start_s),
                               opening_s=float(metrics.opening_s), period=period))
    return out


# -- drift below the loss bar ----------------------------------------------------------------------------
def drift_series(t: np.ndarray, sim: np.ndarray, opening: float, window_s: float) -> np.ndarray:
    """Per sample: the opening minus the median of the score over the trailing window [t - window_s, t]
    (NaN samples ignored; NaN where the window holds no face)."""
    out = np.full(len(t), np.nan)
    ok = np.isfinite(sim)
    if not ok.any() or not np.isfinite(opening):
        return out
    s = pd.Series(np.asarray(sim, np.float64), index=pd.to_timedelta(np.asarray(t, np.float64), unit="s"))
    med = s.rolling(pd.Timedelta(seconds=window_s + 1e-6), min_periods=1, closed="both").median().to_numpy()
    return opening - med


def sustained_drift(t: np.ndarray, d: np.ndarray, min_s: float, period: float) -> tuple[float, float | None]:
    """(m, onset): ``m`` the largest level the drift series ``d`` stays at or above for a run of at least
    ``min_s`` (each sample counting one period; samples without a value end a run), and the first
    sample of such a run at level ``m``. (-inf, None) when no run is long enough."""
    t = np.asarray(t, np.float64)
    d = np.asarray(d, np.float64)
    n_run = max(1, int(np.ceil(min_s / period - 1e-9)))
    best, onset = -np.inf, None
    for i in range(0, len(d) - n_run + 1):
        w = d[i:i + n_run]
        if not np.isfinite(w).all() or t[i + n_run - 1] - t[i] > min_s + period:
            continue
        m = float(w.min())
        if m > best:
            best, onset = m, float(t[i])
    return best, onset


def time_to_drift(
    t: np.ndarray, d: np.ndarray, threshold: float, min_s: float, period: float
) -> float | None:
    """Onset of drift: the first sample of the first run of at least ``min_s`` in which the drift series
    stays above ``threshold``; None (censored) when there is none."""
    t = np.asarray(t, np.float64)
    d = np.asarray(d, np.float64)
    start: float | None = None
    for ti, di in zip(t, d, strict=True):
        if np.isfinite(di) and di > threshold:
            if start is None:
                start = float(ti)
            if float(ti) - start + period >= min_s - 1e-9:
                return start
        else:
            start = None
    return None


#: drift verdict: trailing window of the drift series and the shortest run that counts (4 s / 4 s was tried
#: first: 1 of the 53 identity-constant clips, paddlegan_fom_dv, was flagged when held out)
DRIFT_WINDOW_S = 5.0
DRIFT_MIN_S = 5.0


def drift_level(frames: pd.DataFrame, col: str, *, opening_start_s: float, opening_s: float,
                window_s: float = DRIFT_WINDOW_S, min_s: float = DRIFT_MIN_S, period: float = 0.5
                ) -> tuple[float, np.ndarray]:
    """(level, series): the drift series of score ``col`` after the opening (:func:`drift_series`) and the
    highest level it holds for ``min_s`` (:func:`sustained_drift`; -inf when the clip is too short)."""
    t = frames["t"].to_numpy(np.float64)
    opening = _window_median(frames, col, opening_start_s, opening_start_s + opening_s)
    d = drift_series(t, frames[col].to_numpy(np.float64), opening, window_s)
    d[t < opening_start_s + opening_s - 1e-9] = np.nan
    return sustained_drift(t, d, min_s, period)[0], d


def clip_level_and_noise(frames: pd.DataFrame, col: str, *, opening_s: float, period: float
                         ) -> tuple[float, float]:
    """One clip's drift level (:func:`drift_level`) and noise (:func:`noise_scale`) of score ``col``, from
    its frames (sorted here; the opening starts at the ``opening_start_s`` column where there is one, else
    at 0): the two figures the drift verdict is calibrated and judged on."""
    g = frames.sort_values("t")
    start = float(g["opening_start_s"].iloc[0]) if "opening_start_s" in g else 0.0
    level, _ = drift_level(g, col, opening_start_s=start, opening_s=opening_s, period=period)
    return level, noise_scale(g["t"].to_numpy(np.float64), g[col].to_numpy(np.float64), start)


def noise_scale(t: np.ndarray, sim: np.ndarray, start_s: float = 0.0) -> float:
    """The clip's own sample-to-sample noise of a score: a robust SD of the differences between consecutive
    samples with a face from ``start_s`` on (1.4826 * MAD, divided by sqrt 2: the SD of one sample's noise
    were it independent). Slow drift hardly moves it, a single jump (a cut) does not; expressive footage,
    whose score shakes with every expression, has a large one. NaN with fewer than 3 differences."""
    t = np.asarray(t, np.float64)
    v = np.asarray(sim, np.float64)
    v = v[(t >= start_s - 1e-9) & np.isfinite(v)]
    dv = np.diff(v)
    if len(dv) < 3:
        return float("nan")
    return float(1.4826 * np.median(np.abs(dv - np.median(dv))) / np.sqrt(2.0))


def verdict_threshold(verdict: dict[str, Any], noise: float) -> float:
    """The drift threshold of a clip whose score has sample-to-sample noise ``noise``
    (:func:`noise_scale`), in the drift level's units (cosine similarity).

    A verdict with ``noise_floor`` (``statistic`` ``noise_units``) is calibrated on the drift level in units
    of the clip's own noise, floored: level / sqrt(noise^2 + noise_floor^2) > threshold, i.e.
    level > threshold * sqrt(noise^2 + noise_floor^2). The floor (the calibration clips' median noise)
    keeps a very smooth clip's tiny noise from turning a small level into many units; a clip without a
    noise estimate gets the floor alone. A verdict without one (the first shipped rule) compares the level
    itself."""
    thr = float(verdict["threshold"])
    floor = verdict.get("noise_floor")
    if floor is None:
        return thr
    return thr * float(floored_noise(np.nan if noise is None else noise, float(floor)))


def floored_noise(noise: Any, floor: float) -> Any:
    """sqrt(noise^2 + floor^2), a missing (non-finite) noise counting as 0: the unit of the drift verdict's
    statistic, per clip (:func:`verdict_threshold`) and per population
    (:func:`driftbench.validity.calibration.noise_units`)."""
    n = np.asarray(noise, np.float64)
    return np.hypot(np.where(np.isfinite(n), n, 0.0), floor)


def load_drift_verdict(key: str) -> dict[str, Any] | None:
    """The calibrated drift verdict of backend key ``key`` (:mod:`driftbench.weights.artefacts` kind
    ``drift``)."""
    import json

    from driftbench.weights import artefacts

    path = artefacts.find("drift", key)
    if path is None:
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return {**data, "file": str(path)}


def drift_verdict_stale(verdict: dict[str, Any], decoupler: dict[str, Any]) -> bool:
    """True when the verdict was calibrated on another decoupler fit than ``decoupler`` (its describe())."""
    return (verdict.get("decoupler") or {}) != {k: decoupler.get(k) for k in ("name", "fit_id")}


def verdict_summary(frames: pd.DataFrame, verdict: dict[str, Any] | None, *, duration_s: float,
                    opening_start_s: float, opening_s: float, period: float) -> dict[str, Any]:
    """``drifting`` (0/1), ``time_to_drift_s`` (onset, empty = censored at the clip's end),
    ``drift_survival_time_s``, ``drift_level`` and the clip's ``drift_threshold`` (both in cosine similarity;
    :func:`verdict_threshold`) under a calibrated verdict (empty without one)."""
    empty = {"drift_level": np.nan, "drift_threshold": np.nan, "drifting": np.nan, "time_to_drift_s": np.nan,
             "drift_survival_time_s": np.nan}
    if not verdict:
        return empty
    col = "sim_dec" if verdict.get("score", "dec") == "dec" else "sim_raw"
    level, d = drift_level(frames, col, opening_start_s=opening_start_s, opening_s=opening_s,
                           window_s=float(verdict["window_s"]), min_s=float(verdict["min_s"]), period=period)
    t = frames["t"].to_numpy(np.float64)
    thr = verdict_threshold(verdict, noise_scale(t, frames[col].to_numpy(np.float64), opening_start_s))
    onset = time_to_drift(t, d, thr, float(verdict["min_s"]), period)
    return {"drift_level": level if np.isfinite(level) else np.nan, "drift_threshold": thr,
            "drifting": int(onset is not None), "time_to_drift_s": onset if onset is not None else np.nan,
            "drift_survival_time_s": onset if onset is not None else duration_s}
