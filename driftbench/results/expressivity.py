"""Expressivity: does the face still move? Computed from a run's tables (frames.parquet, thumbs.parquet),
never from video, so a mitigation that "fixes" drift by freezing the face or pasting the reference is
caught by the same tables that score it.

Why: identity similarity rewards a face that stops moving. A frozen frame or a pasted reference never
drifts, yet it is not a talking character any more. So every drift-reduction figure stands beside the
expressivity the method kept, and a method that keeps too little (or copies the reference) is flagged
and left out of the ranking.

Per clip and per 1 s bin (samples at the run's sampling rate, usually 2 per second):

Metric cards (direction: for a mitigation, *more* retained is better; 1.0 = as lively as its reference):
- ``expr_spread``: total standard deviation of the 52 MediaPipe blendshape scores over the clip
  (sqrt of the summed per-score variances; blendshape L2 units). Per bin: the same within the bin.
- ``expr_speed``: median change of the blendshape vector between consecutive samples, per second
  (L2 units / s).
- ``pose_range``: p95 - p5 of yaw, pitch and roll, combined as an L2 norm (degrees).
- ``pose_speed``: median head-rotation change between consecutive samples, per second (deg / s).
- ``lm_motion``: mean displacement of the 478 landmarks between consecutive samples, per second, in
  face sizes (head motion included); ``lm_motion_local`` after removing the similarity transform
  (articulation only: mouth, eyes, brows).
- ``crop_change``: mean absolute grey-level difference between consecutive aligned 112x112 face
  crops (0-1): what a viewer sees change.
- ``ref_copy``: how close each frame's face is to the reference in pose, expression and pixels, the
  geometric mean of exp(-pose distance / 5 deg), exp(-blendshape distance / 0.25) and the zero-mean
  normalised cross-correlation of the aligned crops (clipped at 0); 1 = an exact copy of the
  reference. Per clip: the median over frames. Lower is better; real footage sets the plausible range.
- ``expressivity index`` of a clip relative to a reference value per component: the mean over
  :data:`INDEX_COMPONENTS` of min(clip / reference, :data:`RATIO_CAP`) (components where the
  reference is ~0 are left out). Against the paired ``mitigation=none`` clip this is the
  *expressivity retained* (default floor 0.70); against real identity-constant footage
  (:data:`REFERENCE_PATH`) it is *expressivity vs real*. CI: bootstrap over clips / pairs.

The real-footage reference figures are a versioned artefact (``driftbench/data/expressivity_reference.json``)
with the data and the command that produced them; regenerate with
``driftbench dev expressivity-reference --shared ../shared`` (runs ``driftbench run`` on the real
control footage, then reads its tables) or ``... reference --runs RUN_DIR ...`` from existing runs.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: per-clip components of the expressivity index (ref_copy is judged separately: lower is better)
INDEX_COMPONENTS = ("expr_spread", "expr_speed", "pose_range", "pose_speed", "lm_motion_local", "crop_change")
COMPONENTS = (*INDEX_COMPONENTS, "lm_motion")
#: a component ratio counts at most this much, so extra jitter in one cannot hide stillness in another
RATIO_CAP = 1.5
#: below this fraction of the reference value a component's reference is treated as ~0 (left out)
MIN_REFERENCE = 1e-6
#: scales of the reference-copy score (pose in degrees, expression in blendshape L2 units)
COPY_POSE_SCALE = 5.0
COPY_EXPR_SCALE = 0.25
#: default expressivity floor: a row keeping less than this share of its paired baseline is flagged
DEFAULT_FLOOR = 0.70
REFERENCE_PATH = Path(__file__).resolve().parents[1] / "data" / "expressivity_reference.json"
REFERENCE_VERSION = 1

UNITS = {"expr_spread": "blendshape L2", "expr_speed": "blendshape L2 / s", "pose_range": "degrees",
         "pose_speed": "deg / s", "lm_motion": "face sizes / s", "lm_motion_local": "face sizes / s",
         "crop_change": "grey level 0-1", "ref_copy": "0-1 (1 = copy)"}


# -- per-sample quantities -----------------------------------------------------------------------------
def _grey_crops(thumbs: pd.DataFrame) -> dict[int, np.ndarray]:
    """sample_index -> grey float32 112x112 crop (JPEG decoded with OpenCV; no video, no models)."""
    import cv2

    out: dict[int, np.ndarray] = {}
    for si, data in zip(thumbs["sample_index"], thumbs["thumb"], strict=True):
        if data is None or (isinstance(data, float) and not np.isfinite(data)) or len(data) == 0:
            continue
        img = cv2.imdecode(np.frombuffer(bytes(data), dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
        if img is not None:
            out[int(si)] = img.astype(np.float32) / 255.0
    return out


def _zncc(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("nan")
    a0, b0 = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a0 * a0).sum() * (b0 * b0).sum()))
    return float((a0 * b0).sum() / den) if den > 0 else float("nan")


def sample_table(frames: pd.DataFrame, thumbs: pd.DataFrame | None) -> pd.DataFrame:
    """Per sample of ONE clip: the change since the previous sample with a face (per second where it
    is a speed), crop change and reference-copy score. Rows without a face are NaN."""
    fr = frames.sort_values("sample_index", kind="mergesort").reset_index(drop=True)
    n = len(fr)
    t = fr["t"].to_numpy(dtype=np.float64)
    found = fr["face_found"].to_numpy(dtype=bool)
    bs = np.full((n, 52), np.nan)
    if "blendshapes" in fr:
        for i, v in enumerate(fr["blendshapes"]):
            if v is not None and not (isinstance(v, float)):
                a = np.asarray(v, dtype=np.float64)
                if a.shape == (52,) and np.isfinite(a).all():
                    bs[i] = a
    pose = fr[["yaw", "pitch", "roll"]].to_numpy(dtype=np.float64)
    crops = _grey_crops(thumbs) if thumbs is not None and not thumbs.empty else {}
    ref_crop = crops.get(-1)
    expr_speed = np.full(n, np.nan)
    pose_speed = np.full(n, np.nan)
    crop_change = np.full(n, np.nan)
    prev: int | None = None
    for i in range(n):
        if not found[i]:
            continue
        if prev is not None:
            dt = t[i] - t[prev]
            if dt > 0:
                expr_speed[i] = float(np.linalg.norm(bs[i] - bs[prev])) / dt
                pose_speed[i] = float(np.linalg.norm(pose[i] - pose[prev])) / dt
            si, sp = int(fr.at[i, "sample_index"]), int(fr.at[prev, "sample_index"])
            if si in crops and sp in crops and crops[si].shape == crops[sp].shape:
                crop_change[i] = float(np.abs(crops[si] - crops[sp]).mean())
        prev = i
    dt_prev = np.diff(t, prepend=np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        lm = fr["lm_motion"].to_numpy(dtype=np.float64) / dt_prev if "lm_motion" in fr else np.full(n, np.nan)
        lml = (fr["lm_motion_local"].to_numpy(dtype=np.float64) / dt_prev if "lm_motion_local" in fr
               else np.full(n, np.nan))
    d_pose = np.sqrt(fr["d_yaw"].to_numpy(np.float64) ** 2 + fr["d_pitch"].to_numpy(np.float64) ** 2
                     + fr["d_roll"].to_numpy(np.float64) ** 2)
    d_expr = fr["d_expr"].to_numpy(np.float64)
    pix = np.full(n, np.nan)
    if ref_crop is not None:
        for i in range(n):
            si = int(fr.at[i, "sample_index"])
            if found[i] and si in crops:
                pix[i] = max(_zncc(crops[si], ref_crop), 0.0)
    terms = np.vstack([np.exp(-d_pose / COPY_POSE_SCALE), np.exp(-d_expr / COPY_EXPR_SCALE), pix])
    logs = np.log(np.clip(terms, 1e-9, None))
    n_terms = np.isfinite(logs).sum(axis=0)
    copy = np.full(n, np.nan)
    ok = found & (n_terms > 0)
    copy[ok] = np.exp(np.nansum(logs[:, ok], axis=0) / n_terms[ok])
    return pd.DataFrame({"sample_index": fr["sample_index"].to_numpy(), "t": t, "face_found": found,
                         "expr_speed": expr_speed, "pose_speed": pose_speed, "lm_motion": lm,
                         "lm_motion_local": lml, "crop_change": crop_change, "ref_copy": copy,
                         "copy_pose": terms[0], "copy_expr": terms[1], "copy_pixels": terms[2],
                         **{f"_bs{k}": bs[:, k] for k in range(52)},
                         "_yaw": pose[:, 0], "_pitch": pose[:, 1], "_roll": pose[:, 2]})


_BS_COLUMNS = [f"_bs{k}" for k in range(52)]
_POSE_COLUMNS = ["_yaw", "_pitch", "_roll"]
_SCALAR_COLUMNS = ("expr_speed", "pose_speed", "lm_motion", "lm_motion_local", "crop_change", "ref_copy")


def _arrays(st: pd.DataFrame) -> dict[str, np.ndarray]:
    """The columns of a :func:`sample_table` that the summaries read, as arrays (taken once per clip: the
    per-bin summaries then slice rows instead of building 60 small DataFrames, ~0.06 s of a report)."""
    out = {c: st[c].to_numpy(dtype=np.float64) for c in _SCALAR_COLUMNS}
    out["bs"] = st[_BS_COLUMNS].to_numpy(dtype=np.float64)
    out["pose"] = st[_POSE_COLUMNS].to_numpy(dtype=np.float64)
    out["face_found"] = st["face_found"].to_numpy(dtype=bool)
    return out


def _spread(v: np.ndarray) -> float:
    v = v[np.isfinite(v).all(axis=1)]
    return float(np.sqrt(v.var(axis=0).sum())) if len(v) >= 2 else float("nan")


def _pose_range(p: np.ndarray) -> float:
    p = p[np.isfinite(p).all(axis=1)]
    if len(p) < 2:
        return float("nan")
    r = np.percentile(p, 95, axis=0) - np.percentile(p, 5, axis=0)
    return float(np.linalg.norm(r))


def _nanmedian(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def _nanmean(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(np.mean(v)) if v.size else float("nan")


def _summarise(a: dict[str, np.ndarray], rows: slice | np.ndarray = slice(None)) -> dict[str, float]:
    """Expressivity figures of the ``rows`` of one clip's :func:`_arrays` (all of them by default)."""
    found = a["face_found"][rows]
    ref_copy = a["ref_copy"][rows]
    return {
        "expr_spread": _spread(np.ascontiguousarray(a["bs"][rows])),
        "expr_speed": _nanmedian(a["expr_speed"][rows]),
        "pose_range": _pose_range(a["pose"][rows]),
        "pose_speed": _nanmedian(a["pose_speed"][rows]),
        "lm_motion": _nanmean(a["lm_motion"][rows]),
        "lm_motion_local": _nanmean(a["lm_motion_local"][rows]),
        "crop_change": _nanmean(a["crop_change"][rows]),
        "ref_copy": _nanmedian(ref_copy),
        "near_copy_share": float((ref_copy >= 0.9).sum() / max(int(found.sum()), 1)),
        "n_faces": int(found.sum()),
    }


def clip_expressivity(frames: pd.DataFrame, thumbs: pd.DataFrame | None = None, *,
                      bin_s: float = 1.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per clip, per bin) expressivity tables for every clip in ``frames`` (run tables)."""
    clip_rows, bin_rows = [], []
    th_groups = (
        dict(tuple(thumbs.groupby("clip_id", sort=False))) if thumbs is not None and not thumbs.empty else {}
    )
    for cid, fr in frames.groupby("clip_id", sort=True):
        st = sample_table(fr, th_groups.get(cid))
        a = _arrays(st)
        clip_rows.append({"clip_id": cid, **_summarise(a)})
        b = np.floor(st["t"].to_numpy() / bin_s + 1e-9).astype(int)
        for k in np.unique(b):  # ascending, each bin's rows in table order (as a groupby on b)
            bin_rows.append({"clip_id": cid, "t_start": float(k) * bin_s, "t_mid": (float(k) + 0.5) * bin_s,
                             **_summarise(a, np.flatnonzero(b == k))})
    cols = ["clip_id", *COMPONENTS, "ref_copy", "near_copy_share", "n_faces"]
    clips = pd.DataFrame(clip_rows, columns=cols)
    bins = pd.DataFrame(bin_rows, columns=["clip_id", "t_start", "t_mid", *cols[1:]])
    return clips, bins


# -- normalisation ---------------------------------------------------------------------------------------
def index_against(
    values: pd.DataFrame | pd.Series | dict[str, Any],
    reference: pd.DataFrame | pd.Series | dict[str, Any],
    components: Sequence[str] = INDEX_COMPONENTS,
) -> np.ndarray:
    """Expressivity index of each row of ``values`` relative to ``reference`` (a row-aligned table, or
    one value per component): mean over components of min(value / reference, RATIO_CAP)."""
    v = pd.DataFrame([values]) if isinstance(values, dict | pd.Series) else values.reset_index(drop=True)
    if len(v) == 0:
        return np.zeros(0, dtype=np.float64)
    if isinstance(reference, dict | pd.Series):
        r = pd.DataFrame([dict(reference)] * len(v))
    else:
        r = reference.reset_index(drop=True)
    ratios = []
    for c in components:
        num = pd.to_numeric(v[c], errors="coerce").to_numpy(dtype=np.float64)
        den = pd.to_numeric(r[c], errors="coerce").to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(
                np.isfinite(den) & (den > MIN_REFERENCE), np.minimum(num / den, RATIO_CAP), np.nan
            )
        ratios.append(ratio)
    m = np.vstack(ratios)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(m).sum(axis=0)
        out = np.where(ok > 0, np.nansum(m, axis=0) / np.maximum(ok, 1), np.nan)
    return out


def load_reference(path: Path | None = None) -> dict[str, Any]:
    """The real-footage reference figures (versioned artefact)."""
    p = Path(path) if path else REFERENCE_PATH
    data = json.loads(p.read_text(encoding="utf-8"))
    if int(data.get("version", 0)) != REFERENCE_VERSION:
        raise ValueError(
            f"{p}: expressivity reference version {data.get('version')} != {REFERENCE_VERSION} -- "
            "fix: regenerate with `driftbench dev expressivity-reference --shared ../shared`"
        )
    return data


def reference_medians(ref: dict[str, Any]) -> dict[str, float]:
    return {c: float(ref["components"][c]["median"]) for c in COMPONENTS if c in ref["components"]}


def reference_bin_medians(ref: dict[str, Any]) -> dict[str, float]:
    """Per-1-s-bin reference values (spread and range within a bin are smaller than over a clip)."""
    comps = ref.get("bin_components") or {}
    return {c: float(comps[c]["median"]) for c in COMPONENTS if c in comps}


def retained_per_bin(treated_bins: pd.DataFrame, baseline_bins: pd.DataFrame) -> pd.DataFrame:
    """Expressivity retained per 1 s bin: each bin of the treated clip against the baseline clip's bin
    at the same time (bins only one side has are left out)."""
    m = treated_bins.merge(baseline_bins, on="t_start", suffixes=("", "_b"))
    out = m[["clip_id", "t_start"]].copy()
    out["expressivity_retained"] = index_against(
        m[list(INDEX_COMPONENTS)],
        m[[f"{c}_b" for c in INDEX_COMPONENTS]].set_axis(list(INDEX_COMPONENTS), axis=1),
    )
    return out


def copy_limit(ref: dict[str, Any]) -> float:
    """Clip-level reference-copy score above which a clip is implausibly close to its reference."""
    return float(ref["ref_copy"]["limit"])


# -- the reference artefact --------------------------------------------------------------------------------
def _files_digest(paths: Sequence[str]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(Path(p).name.encode())
        try:
            h.update(hashlib.sha256(Path(p).read_bytes()).hexdigest().encode())
        except OSError:
            h.update(b"missing")
    return h.hexdigest()


def build_reference(run_dirs: Sequence[Path], *, command: str = "") -> dict[str, Any]:
    """Reference figures from runs on real identity-constant footage: per component the median, p5 and
    p95 over clips, and the reference-copy limit (the highest clip median seen on real footage plus a
    margin of half its distance to 1)."""
    per_clip, per_bin = [], []
    sources, fps, backends = [], set(), set()
    run_records = []
    for d in run_dirs:
        d = Path(d)
        frames = pd.read_parquet(d / "frames.parquet")
        thumbs = pd.read_parquet(d / "thumbs.parquet")
        from driftbench.io import read_csv

        clips = read_csv(d / "clips.csv")
        run = json.loads((d / "run.json").read_text(encoding="utf-8"))
        fps.add(float(run["config"]["sampling"]["fps"]))
        backends.add(str((run.get("backend") or {}).get("name")))
        run_records.append(
            {
                "run": d.name,
                "config_hash": run.get("config_hash"),
                "git_commit": run.get("git_commit"),
                "argv": run.get("argv"),
                "weights": (run.get("backend") or {}).get("weights"),
                "signal_weights": run.get("signal_weights"),
                "n_clips": len(clips),
            }
        )
        ce, be = clip_expressivity(frames, thumbs)
        per_bin.append(be)
        ce = ce.merge(clips[["clip_id", "path", "duration_s", "reference_mode"]], on="clip_id")
        ce["run"] = d.name
        per_clip.append(ce)
        sources.extend(clips["path"].astype(str))
    table = pd.concat(per_clip, ignore_index=True)
    comps = {}
    for c in COMPONENTS:
        v = table[c].to_numpy(dtype=np.float64)
        v = v[np.isfinite(v)]
        comps[c] = {"median": float(np.median(v)), "p5": float(np.percentile(v, 5)),
                    "p95": float(np.percentile(v, 95)), "n_clips": int(v.size), "units": UNITS[c]}
    bins = pd.concat(per_bin, ignore_index=True)
    bin_comps = {}
    for c in COMPONENTS:
        v = bins[c].to_numpy(dtype=np.float64)
        v = v[np.isfinite(v)]
        bin_comps[c] = {"median": float(np.median(v)), "n_bins": int(v.size), "units": UNITS[c]}
    rc = table["ref_copy"].to_numpy(dtype=np.float64)
    rc = rc[np.isfinite(rc)]
    rc_max = float(rc.max())
    idx_real = index_against(table, {c: comps[c]["median"] for c in INDEX_COMPONENTS})
    return {
        "version": REFERENCE_VERSION,
        "what": "expressivity of real identity-constant footage, measured with driftbench's own pipeline",
        "backend": sorted(backends),
        "sampling_fps": sorted(fps),
        "components": comps,
        "bin_components": bin_comps,
        "ref_copy": {
            "median": float(np.median(rc)),
            "p95": float(np.percentile(rc, 95)),
            "max": rc_max,
            "limit": rc_max + 0.5 * (1.0 - rc_max),
            "n_clips": int(rc.size),
            "rule": "limit = max clip median on real footage + half its distance to 1",
        },
        "index_vs_real": {
            "median": float(np.nanmedian(idx_real)),
            "p5": float(np.nanpercentile(idx_real, 5)),
            "p95": float(np.nanpercentile(idx_real, 95)),
        },
        "data": {
            "n_clips": len(table),
            "seconds": float(table["duration_s"].sum()),
            "files": sorted(Path(p).name for p in sources),
            "runs": run_records,
            "sha256_of_files": _files_digest(sources),
            "source": "../shared/data/video/real (manifest.csv) and "
                      "../shared/data/video/liveportrait/driving "
            "(reference=first_frame)",
        },
        "code": {
            "module": "driftbench.results.expressivity",
            "index_components": list(INDEX_COMPONENTS),
            "ratio_cap": RATIO_CAP,
            "copy_scales": {"pose_deg": COPY_POSE_SCALE, "expr_l2": COPY_EXPR_SCALE},
            "command": command or "driftbench dev expressivity-reference --shared ../shared",
        },
        "clips": [
            {"file": Path(str(r["path"])).name, **{c: r[c] for c in (*COMPONENTS, "ref_copy")}}
            for r in table.sort_values("clip_id").to_dict(orient="records")
        ],
    }


def _run_real(shared: Path, root: Path) -> list[Path]:
    """Measure the real control footage with the real pipeline (``driftbench run``) into ``root``, with
    the weights in ``shared/models`` first (the ones the tests and CI measure with)."""
    import os

    env = dict(os.environ)
    if (shared / "models").is_dir():
        env["DRIFTBENCH_MODELS"] = os.pathsep.join(
            p for p in (str(shared / "models"), env.get("DRIFTBENCH_MODELS")) if p
        )
    jobs = [
        ("real", [f"model.path={shared / 'data/video/real/manifest.csv'}"]),
        ("driving", [f"model.path={shared / 'data/video/liveportrait/driving'}", "reference=first_frame"]),
    ]
    out = []
    for name, extra in jobs:
        run_dir = root / name
        cmd = [sys.executable, "-m", "driftbench", "run", "model=folder", *extra, f"output.dir={run_dir}",
               "report.html=false", "progress=false"]
        print("+", " ".join(cmd), file=sys.stderr)
        rc = subprocess.run(cmd, check=False, env=env).returncode
        if rc != 0:
            raise SystemExit(f"driftbench run failed (exit {rc}) on {name}; see the log above")
        out.append(run_dir)
    return out
