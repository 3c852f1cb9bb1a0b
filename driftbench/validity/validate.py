"""``driftbench validate``: the validity suite on real footage and photos (../shared/VALIDITY.md).

It measures (through the signal cache) the labelled photo pairs, the identity-constant real footage
(data/video/real + liveportrait/driving, reference = first frame), the real generated clips
(data/video/generated) and, when installed, ``model=synthetic`` clips with known injected drift, and
writes one table (``validate.csv``, ``validate.json``, ``validate.md`` in ``--out``) of:

- face verification on the photos, raw and decoupled (AUC, EER, TAR@FAR 0.1 %, d', worst-pair
  margin) beside deepface's published distances on the same pairs;
- decoupling: sensitivity of raw vs decoupled similarity to pose and expression, held out by person;
- false identity loss on the identity-constant footage (loss events, lowest per-bin medians, low
  percentiles);
- age stability and whether age enters the decoupled score;
- the real generated clips: infinitetalk_dub_9's drift under the decoupled score, the negatives
  lost, the stable clips not lost;
- Spearman correlation of injected and measured drift on synthetic clips.

Each row is ``pass``/``fail`` against its target, or ``info``/``unavailable``. ``--fit`` refits the
decoupler artefact (:mod:`driftbench.measure.decouple`) on the same footage and photos, recalibrates the
backend's thresholds (photos and video impostor pairs) and the drift verdict (``--calibrate``: these two only,
with the installed decoupler), all for the backend key in use
(backend + weights variant), writes them where :mod:`driftbench.weights.artefacts` says (``--artefacts
DIR``), then validates with them. Exit codes: 0 every check passes, 1 a check fails, 2 bad usage.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from driftbench.validity.material import (
    DRIFT_CLIP,
    MIN_DRIFT,
    MIN_DRIFT_SHARE,
    TARGET_D_PRIME,
    TARGET_MARGIN,
    TARGET_RATIO,
    Measured,
    Row,
    SharedPaths,
    bin_medians,
    check,
    control_footage,
    folder_clips,
    loss_onsets,
    measure_clips,
    photo_pairs,
    rescore,
    rescore_smooth,
)

log = logging.getLogger("driftbench")

# -- sections ---------------------------------------------------------------------------------------------
def verification_rows(pairs: pd.DataFrame, faces: pd.DataFrame, decoupler: Any, backend: str,
                      deepface_dir: Path) -> list[Row]:
    from driftbench.validity import calibration
    from driftbench.validity.verification import verification_metrics

    same = pairs["same"].to_numpy(bool)
    raw = verification_metrics(pairs["sim_raw"].to_numpy(np.float64), same)
    dec_scores = decoupler.apply(pairs)
    dec = verification_metrics(dec_scores, same)
    sec = "verification"
    no_face = faces.loc[~faces["face_found"].astype(bool), "file"].tolist()
    rows = [
        Row(
            sec,
            "photos / identities / pairs (same, different)",
            f"{len(faces)} / {faces['label'].nunique()} / {raw['n_same']}, {raw['n_diff']}",
            None,
            "no photo without a face",
            check(not no_face),
            "deepface unit-test photos" + (f"; no face: {', '.join(no_face)}" if no_face else ""),
        ),
        Row(sec, "AUC", raw["auc"], dec["auc"], ">= best published (deepface models)", "info"),
        Row(sec, "EER", raw["eer"], dec["eer"], "0", check(dec["eer"] <= 1e-12)),
        Row(
            sec,
            "TAR at FAR 0.1%",
            raw["tar_at_far_0.001"],
            dec["tar_at_far_0.001"],
            "100%",
            check(dec["tar_at_far_0.001"] >= 1.0 - 1e-12),
        ),
        Row(
            sec,
            "threshold at FAR 0.1%",
            raw["threshold_at_far_0.001"],
            dec["threshold_at_far_0.001"],
            "calibrated on the score itself",
            "info",
        ),
        Row(
            sec,
            "d'",
            raw["d_prime"],
            dec["d_prime"],
            f">= {TARGET_D_PRIME}",
            check(dec["d_prime"] >= TARGET_D_PRIME),
        ),
        Row(
            sec,
            "worst-pair margin (worst same - worst different)",
            raw["margin"],
            dec["margin"],
            f">= +{TARGET_MARGIN}",
            check(dec["margin"] >= TARGET_MARGIN),
        ),
        Row(
            sec,
            "mean different-person score",
            raw["diff_mean"],
            dec["diff_mean"],
            "not raised",
            check(dec["diff_mean"] <= raw["diff_mean"] + 1e-9),
            "BY CONSTRUCTION: the decoupler leaves every different-person score unchanged (fitted on these "
            "pairs)"
            if np.allclose(np.asarray(dec_scores)[~same], pairs["sim_raw"].to_numpy(np.float64)[~same])
            else "",
        ),
        Row(
            sec,
            "worst different-person / worst same-person score",
            f"{raw['diff_max']:.3f} / {raw['same_min']:.3f}",
            f"{dec['diff_max']:.3f} / {dec['same_min']:.3f}",
            "",
            "info",
        ),
    ]
    # the stored thresholds must be calibrated on this decoupler's own scores
    try:
        thr, prov = calibration.threshold_for(backend, far=0.001, score="dec")
        stored_fit = (prov.get("decoupler") or {}).get("fit_id")
        live_fit = decoupler.describe().get("fit_id")
        domain = str(prov.get("calibrated_on", "")).startswith("video")
        ok = (domain or abs(thr - dec["threshold_at_far_0.001"]) <= 1e-4) and stored_fit == live_fit
        rows.append(Row(sec, "stored decoupled threshold (thresholds artefact)", None, thr,
                        "calibrated on sim_dec of this decoupler fit", check(ok),
                        ("on different-person video + photo pairs (see the FAR row below); " if domain else
                         "on the photo pairs; ") + f"{prov.get('file')}"
                        + ("" if ok else " -- stale: fix: run `driftbench validate --fit`")))
    except Exception as exc:  # a missing entry is a failed check, not a crash
        rows.append(
            Row(
                sec,
                "stored decoupled threshold (thresholds artefact)",
                None,
                None,
                "present",
                "fail",
                str(exc),
            )
        )
    rows.extend(published_rows(pairs, dec_scores, deepface_dir))
    rows.extend(domain_rows(backend))
    return rows


def domain_rows(backend: str, far: float = 0.001) -> list[Row]:
    """The loss threshold's false-accept rate in the domain: different-person frame pairs of
    identity-constant video and photos, threshold from training people applied to held-out ones."""
    from driftbench.validity import calibration

    entry = calibration.thresholds().get("backends", {}).get(backend, {})
    dom = entry.get("domain")
    if not dom:
        return [Row("verification", f"loss threshold's FAR {far:.1%} on video impostor pairs", None, None,
                    f">= {calibration.MIN_IMPOSTORS_BEYOND} impostor pairs beyond", "fail",
                    "no domain calibration stored -- fix: `driftbench validate --fit`")]
    cells, notes, ok = [], [], True
    for score in ("raw", "dec"):
        b = dom[score]["by_far"][f"{far:g}"]
        ok &= bool(b["supported"])
        ci = b.get("heldout_far_ci95") or [np.nan, np.nan]
        cells.append(
            f"thr {b['threshold']:.3f}, {b['n_impostor_beyond']} beyond, held-out FAR {b['heldout_far']:.2%}"
            + (f", held-out photo TAR {b['heldout_tar']:.1%}" if "heldout_tar" in b else "")
        )
        ok &= b.get("heldout_tar", 1.0) >= 1.0 - 1e-12
        notes.append(
            f"{score}: held-out FAR 95% CI {ci[0]:.2%}-{ci[1]:.2%} (per fold {b['heldout_far_range'][0]:.2%}-"
            f"{b['heldout_far_range'][1]:.2%}), video {b['video_far']:.2%} / photos {b['photo_far']:.2%} "
            "beyond"
        )
    d = dom["data"]
    return [
        Row(
            "verification",
            f"loss threshold at FAR {far:.1%}: different-person pairs beyond it (video + photos)",
            cells[0],
            cells[1],
            f">= {calibration.MIN_IMPOSTORS_BEYOND} beyond, held-out FAR <= {far:.1%}, held-out TAR 100%",
            check(ok),
            f"{d['video_pairs']} video pairs ({d['video_people']} people, {d['video_clips']} clips) + "
            f"{d['photo_pairs']} photo pairs; {dom['dec']['k_folds']} folds of people: threshold from "
            "training "
            "people, applied to pairs of held-out people; smallest supported FAR "
            f"{dom['dec']['far_supported']}; "
            + "; ".join(notes)
            + " (CI optimistic: pairs share people)",
        )
    ]


def weights_rows(backend: str, weights: dict[str, str], decoupler: Any) -> list[Row]:
    """The stored thresholds and the decoupler must come from the weights in use (another detector file,
    e.g. YuNet int8 instead of fp32, moves every score)."""
    from driftbench.validity import calibration

    stored = calibration.thresholds().get("backends", {}).get(backend, {}).get("weights") or {}
    fitted = getattr(decoupler, "record", {}).get("backend_weights") or {}
    rows = []
    for what, ref in (("thresholds artefact", stored), ("decoupler artefact", fitted)):
        if not ref:
            continue
        diff = sorted(set(ref.items()) ^ set(weights.items()))
        rows.append(
            Row(
                "verification",
                f"weights in use = weights of the {what}",
                None,
                None,
                "identical",
                check(not diff),
                ""
                if not diff
                else "differ: "
                + ", ".join(sorted({k for k, _ in diff}))
                + f" -- fix: point DRIFTBENCH_MODELS at the calibrated weights, or refit with "
                f"`driftbench validate --fit face={backend.split(':')[0]}` with the weights in use",
            )
        )
    return rows


def published_rows(pairs: pd.DataFrame, dec_scores: np.ndarray, deepface_dir: Path) -> list[Row]:
    """deepface's own models on its 280 published pairs (distance -> similarity = -distance) beside ours
    on the same pairs."""
    from driftbench.validity.verification import verification_metrics

    pub = pd.read_csv(deepface_dir / "face-recognition-pivot.csv")
    pub["a"] = pub["file_x"].map(lambda s: Path(s).name)
    pub["b"] = pub["file_y"].map(lambda s: Path(s).name)
    pub["same"] = pub["decision"].str.lower() == "yes"
    ours = pairs.assign(sim_dec=dec_scores)
    key = {tuple(sorted(ab)): i for i, ab in enumerate(zip(ours["a"], ours["b"], strict=True))}
    idx = [key.get(tuple(sorted(ab))) for ab in zip(pub["a"], pub["b"], strict=True)]
    have = np.array([i is not None for i in idx])
    sec = "verification"
    rows = []
    best_auc, best_dp = 0.0, -np.inf
    for col in [c for c in pub.columns if c.endswith("_cosine")]:
        m = verification_metrics(-pub[col].to_numpy(np.float64), pub["same"].to_numpy(bool))
        best_auc, best_dp = max(best_auc, m["auc"]), max(best_dp, m["d_prime"])
        rows.append(Row(sec, f"published: deepface {col.removesuffix('_cosine')} (280 pairs)",
                        f"AUC {m['auc']:.3f}, EER {m['eer']:.3f}, d' {m['d_prime']:.2f}", None, "", "info"))
    sel = np.array([i for i in idx if i is not None], dtype=int)
    same = pub.loc[have, "same"].to_numpy(bool)
    r = verification_metrics(ours["sim_raw"].to_numpy()[sel], same)
    d = verification_metrics(ours["sim_dec"].to_numpy()[sel], same)
    ok = d["auc"] >= best_auc - 1e-9 and d["d_prime"] >= best_dp
    rows.append(Row(sec, "ours on the same 280 pairs (AUC, d')", f"AUC {r['auc']:.3f}, d' {r['d_prime']:.2f}",
                    f"AUC {d['auc']:.3f}, d' {d['d_prime']:.2f}",
                    f">= best published (AUC {best_auc:.3f}, d' {best_dp:.2f})", check(ok),
                    f"{int(have.sum())} of {len(pub)} published pairs have both faces"))
    return rows


def decoupling_rows(
    control: pd.DataFrame,
    pairs: pd.DataFrame,
    decoupler: Any,
    *,
    n_splits: int,
    age_stable: bool,
    heldout: dict[str, Any] | None = None,
) -> tuple[list[Row], dict[str, Any]]:
    """Held-out sensitivity rows (``heldout``: figures just computed by a fit, else computed here)."""
    from driftbench.measure import decouple as D

    sec = "decoupling"
    rows = [Row(sec, "decoupler", None, f"{decoupler.name} v{decoupler.version}",
                "fitted on identity-constant footage", "info", _form_note(decoupler))]
    if not isinstance(decoupler, D.GatedLiftDecoupler):
        rows.append(
            Row(
                sec,
                "held-out sensitivity ratio (decoupled / raw)",
                1.0,
                None,
                f"<= {TARGET_RATIO}",
                "fail",
                decoupler.describe().get("note", "no fitted decoupler"),
            )
        )
        return rows, {}
    heldout = heldout or {}
    ho = D.heldout_footage(control, pairs, age_stable=age_stable)
    by_bin = relative_by_bin(D.fit_frames(control), ho.pop("dec_scores"))
    r, d = ho["raw"], ho["dec"]
    note = (
        f"leave-people-out ({ho['k_folds']} folds, {ho['n_people']} people, {ho['n_frames']} frames after "
        "the "
        "1 s reference window); within-clip least squares on |d_yaw|, d_expr"
    )
    rows += [
        Row(
            sec,
            "similarity change per 10 deg of yaw (held out)",
            r["per_10deg_yaw"],
            d["per_10deg_yaw"],
            "towards 0",
            "info",
            note,
        ),
        Row(
            sec,
            "similarity change per unit of blendshape distance (held out)",
            r["per_unit_expr"],
            d["per_unit_expr"],
            "towards 0",
            "info",
        ),
        Row(sec, "R^2 of pose + expression (within clip, held out)", r["r2"], d["r2"], "towards 0", "info"),
        Row(
            sec,
            "SD of the pose/expression component (held out)",
            r["component_sd"],
            d["component_sd"],
            "",
            "info",
        ),
        Row(
            sec,
            "held-out sensitivity ratio (decoupled / raw)",
            1.0,
            ho["ratio"],
            f"<= {TARGET_RATIO}",
            check(ho["ratio"] <= TARGET_RATIO),
            f"95% CI {ho['ratio_ci95'][0]:.3f}-{ho['ratio_ci95'][1]:.3f} (bootstrap over people)",
        ),
    ]
    for col, label in (("d_yaw", "|d_yaw| (deg)"), ("d_expr", "blendshape distance")):
        b = by_bin[col]
        rows.append(Row(sec, f"score minus clip median by {label} (held out): " + " / ".join(b["bins"]),
                        " / ".join(f"{v:+.3f}" for v in b["raw"]), " / ".join(f"{v:+.3f}" for v in b["dec"]),
                        "flat", "info", "frames per bin: " + " / ".join(str(n) for n in b["n"])))
    out: dict[str, Any] = {"footage_kfold": ho}
    if n_splits > 0:
        sp = heldout.get("random_splits") or D.heldout_splits(
            control, pairs, n_splits=n_splits, age_stable=age_stable
        )
        out["random_splits"] = sp
        rows.append(
            Row(
                sec,
                "random splits meeting every target",
                None,
                sp["share_all_targets"],
                "prototype: 64% of 252 splits",
                "info",
                f"{n_splits} splits: half the people fit, the other half tested; 4 photo identities held "
                f"out; ratio <= 0.5 in {sp['share_ratio_le_half']:.0%}, photo separation kept in "
                f"{sp['share_photo_ok']:.0%} ({sp['share_photo_ok_tol']:.0%} and all targets in "
                f"{sp['share_all_targets_tol']:.0%} tolerating a different-person mean raise below "
                f"{sp['diff_mean_tolerance']:g}; max raise {sp['max_diff_mean_raise']:.1e}); median ratio "
                f"{sp['median_ratio']:.3f}, median held-out "
                f"d' {sp['median_raw_d_prime']:.2f} -> {sp['median_d_prime']:.2f}, margin "
                f"{sp['median_raw_margin']:+.3f} -> {sp['median_margin']:+.3f}",
            )
        )
    return rows, out


def relative_by_bin(frames: pd.DataFrame, dec: np.ndarray) -> dict[str, dict[str, list[Any]]]:
    """Mean score minus its clip's median, per range of |d_yaw| and of blendshape distance: whether the
    large head turns and expressions (few frames) are covered, not only the average slope."""
    edges = {"d_yaw": [0.0, 10.0, 20.0, np.inf], "d_expr": [0.0, 0.8, 1.6, np.inf]}
    df = frames.assign(sim_dec=dec)
    out: dict[str, dict[str, list[Any]]] = {}
    for col, e in edges.items():
        res: dict[str, list[Any]] = {"bins": [], "raw": [], "dec": [], "n": []}
        v = df[col].abs()
        for lo, hi in pairwise(e):
            m = (v >= lo) & (v < hi)
            res["bins"].append(f"{lo:g}-{hi:g}" if np.isfinite(hi) else f">{lo:g}")
            res["n"].append(int(m.sum()))
            for c, key in (("sim_raw", "raw"), ("sim_dec", "dec")):
                rel = df[c] - df.groupby("clip_id")[c].transform("median")
                res[key].append(float(rel[m].mean()) if m.any() else float("nan"))
        out[col] = res
    return out


def _form_note(decoupler: Any) -> str:
    d = decoupler.describe()
    p = d.get("params")
    if not p:
        return str(d.get("note", ""))
    w = ", ".join(f"{f} {v:.4f}" for f, v in zip(p["features"], p["weights"], strict=True))
    return (f"lift = gate(s) * softmin(explained, typical - s); explained per unit: {w}; gate "
            f"{p['gate_lo']:.3f}-{p['gate_hi']:.3f}; typical {p['typical']:.3f}; fit {d.get('fit_id')}")


def control_rows(control: pd.DataFrame, thr_raw: float, thr_dec: float, metrics: Any, fps: float,
                 eer: tuple[float, float] | None = None) -> list[Row]:
    """False identity loss on identity-constant footage (``eer``: raw and decoupled EER thresholds)."""
    sec = "control"
    period = 1.0 / fps
    lost_raw = {k: v for k, v in loss_onsets(control, "sim_raw", thr_raw, metrics.min_loss_s, period).items()
                if v is not None}
    lost_dec = {k: v for k, v in loss_onsets(control, "sim_dec", thr_dec, metrics.min_loss_s, period).items()
                if v is not None}
    n_clips = control["clip_id"].nunique()
    ok = control["sim_raw"].notna()
    lifted = bool((control.loc[ok, "sim_dec"] >= control.loc[ok, "sim_raw"] - 1e-12).all())
    by_construction = (
        "BY CONSTRUCTION given raw (sim_dec >= sim_raw on every frame and threshold dec <= raw): "
        if lifted and thr_dec <= thr_raw + 1e-12 and not lost_raw
        else ""
    )
    rows = [
        Row(
            sec,
            f"identity-loss events ({n_clips} clips, {control['person'].nunique()} people)",
            len(lost_raw),
            len(lost_dec),
            "0 (decoupled)",
            check(not lost_dec),
            by_construction
            + ("raw lost: " + ", ".join(sorted(lost_raw)) + "; " if lost_raw else "")
            + ("decoupled lost: " + ", ".join(sorted(lost_dec)) if lost_dec else "")
            + f"thresholds raw {thr_raw:.3f}, decoupled {thr_dec:.3f}; smoothing {metrics.smooth_s:g} s, "
            f"min run {metrics.min_loss_s:g} s",
        )
    ]
    for name, sub in [("all footage", control), *control.groupby("set", sort=True)]:
        ok = sub["sim_raw"].notna()
        raw, dec = sub.loc[ok, "sim_raw"].to_numpy(), sub.loc[ok, "sim_dec"].to_numpy()
        min_bin = {
            c: min(bin_medians(g, c).min() for _, g in sub.groupby("clip_id")) for c in ("sim_raw", "sim_dec")
        }
        rows += [
            Row(
                sec,
                f"{name}: lowest per-bin median (1 s)",
                min_bin["sim_raw"],
                min_bin["sim_dec"],
                "above the threshold",
                check(min_bin["sim_dec"] > thr_dec),
            ),
            Row(
                sec,
                f"{name}: 1st / 5th percentile of frames",
                f"{np.quantile(raw, 0.01):.3f} / {np.quantile(raw, 0.05):.3f}",
                f"{np.quantile(dec, 0.01):.3f} / {np.quantile(dec, 0.05):.3f}",
                "decoupled >= raw",
                check(
                    np.quantile(dec, 0.01) >= np.quantile(raw, 0.01)
                    and np.quantile(dec, 0.05) >= np.quantile(raw, 0.05)
                ),
                "BY CONSTRUCTION: sim_dec >= sim_raw on every frame" if lifted else "",
            ),
            Row(
                sec,
                f"{name}: minimum / mean / SD of frames",
                f"{raw.min():.3f} / {raw.mean():.3f} / {raw.std():.3f}",
                f"{dec.min():.3f} / {dec.mean():.3f} / {dec.std():.3f}",
                "",
                "info",
                f"{len(raw)} frames, {sub['clip_id'].nunique()} clips",
            ),
            Row(
                sec,
                f"{name}: single frames below the threshold",
                float((raw < thr_raw).mean()),
                float((dec < thr_dec).mean()),
                "",
                "info",
            ),
        ]
        if eer is not None:
            rows.append(
                Row(
                    sec,
                    f"{name}: single frames below the EER threshold",
                    float((raw < eer[0]).mean()),
                    float((dec < eer[1]).mean()),
                    "",
                    "info",
                    f"EER thresholds raw {eer[0]:.3f}, decoupled {eer[1]:.3f} (VALIDITY.md: 0.85% of "
                    "liveportrait frames raw)",
                )
            )
    return rows


#: identity-constant footage: the median drift at every horizon (and at the end) lies within this of 0
TARGET_NULL_DRIFT = 0.01


def clip_drifts(frames: pd.DataFrame, metrics: Any, fps: float) -> pd.DataFrame:
    """Per clip, the drift metrics of :func:`driftbench.measure.drift.clip_summary` (opening after the
    reference's own frames, drift at every horizon the clip reaches and at its end) on the given (rescored)
    frames."""
    from driftbench.measure import drift

    rows = []
    for cid, g in frames.groupby("clip_id", sort=True):
        g = g.sort_values("t")
        dur = float(g["duration_s"].iloc[0]) if "duration_s" in g else float(g["t"].max() + 1.0 / fps)
        start = float(g["opening_start_s"].iloc[0]) if "opening_start_s" in g else 0.0
        s = drift.clip_summary(
            g,
            drift.curve(g, float(metrics.bin_s)),
            duration_s=dur,
            threshold=float("nan"),
            metrics=metrics,
            fps=fps,
            opening_start_s=start,
        )
        rows.append(
            {
                "clip_id": cid,
                "person": g["person"].iloc[0] if "person" in g else "",
                "duration_s": dur,
                **{k: v for k, v in s.items() if k.startswith(("drift_", "opening_", "slope_"))},
            }
        )
    return pd.DataFrame(rows)


def null_drift_rows(drifts: pd.DataFrame, metrics: Any, *, n_boot: int = 999, seed: int = 0) -> list[Row]:
    """Median drift of identity-constant clips at every horizon a clip reaches and at its end: an unbiased
    opening puts it at 0 (issue 14: the opening used to hold a first-frame reference's own frames)."""
    from scipy.stats import bootstrap

    from driftbench.measure.drift import horizon_label

    rows = []
    for lab in [*(f"at_{horizon_label(float(h))}" for h in metrics.horizons), "at_end"]:
        cells: list[float | None] = []
        ok, notes = True, []
        for kind in ("raw", "dec"):
            v = drifts[f"drift_{kind}_{lab}"].dropna().to_numpy(np.float64)
            if len(v) == 0:
                cells.append(None)
                continue
            med = float(np.median(v))
            ok &= abs(med) <= TARGET_NULL_DRIFT
            cells.append(med)
            if len(v) >= 3:
                ci = bootstrap((v,), np.median, n_resamples=n_boot, method="percentile", random_state=seed)
                notes.append(
                    f"{kind} 95% CI {ci.confidence_interval.low:+.3f}..{ci.confidence_interval.high:+.3f}"
                )
        n = int(drifts[f"drift_raw_{lab}"].notna().sum())
        if n == 0:
            rows.append(
                Row(
                    "control",
                    f"median drift {lab.replace('_', ' ')} (identity-constant clips)",
                    None,
                    None,
                    f"within +-{TARGET_NULL_DRIFT:g}",
                    "unavailable",
                    "no clip reaches this horizon",
                )
            )
            continue
        rows.append(
            Row(
                "control",
                f"median drift {lab.replace('_', ' ')} (identity-constant clips)",
                cells[0],
                cells[1],
                f"within +-{TARGET_NULL_DRIFT:g} (raw and decoupled)",
                check(ok),
                f"{n} clips reach it; opening [reference_s, reference_s + opening_s) after the first-frame "
                f"reference; " + "; ".join(notes) + " (bootstrap over clips)",
            )
        )
    return rows


def fit_decoupler(frames: pd.DataFrame, pairs: pd.DataFrame) -> Any:
    """A decoupler fitted on these frames and photo pairs only: the hook out-of-fold scoring uses."""
    from driftbench.measure import decouple as D

    return D.fit_decoupler(frames, pairs)


def oof_rescore(frames: pd.DataFrame, pairs: pd.DataFrame, smooth_s: float, *, k: int = 5) -> pd.DataFrame:
    """:func:`rescore` out of fold: each person's frames scored by a decoupler fitted without that person
    (person-grouped folds), so no control figure is in sample."""
    from sklearn.model_selection import GroupKFold

    people = frames["person"].to_numpy()
    k = min(k, len(np.unique(people)))
    out = frames.copy()
    dec = np.full(len(frames), np.nan)
    for tr, te in GroupKFold(n_splits=k).split(np.zeros(len(frames)), groups=people):
        d = fit_decoupler(frames.iloc[tr].reset_index(drop=True), pairs)
        dec[te] = d.apply(frames.iloc[te].reset_index(drop=True))
    out["sim_dec"] = dec
    return rescore_smooth(out, smooth_s)




def drift_levels(frames: pd.DataFrame, metrics: Any, fps: float, score: str = "dec") -> pd.DataFrame:
    """Per clip: its drift level (:func:`driftbench.measure.drift.drift_level`) on the raw or decoupled
    score and the score's own sample-to-sample noise (:func:`driftbench.measure.drift.noise_scale`)."""
    from driftbench.measure import drift

    rows = []
    col = "sim_dec" if score == "dec" else "sim_raw"
    for cid, g in frames.groupby("clip_id", sort=True):
        level, noise = drift.clip_level_and_noise(g, col, opening_s=float(metrics.opening_s),
                                                  period=1.0 / fps)
        rows.append({"clip_id": cid, "person": g["person"].iloc[0], "level": level, "noise": noise})
    return pd.DataFrame(rows)


def fit_drift_verdict(control: pd.DataFrame, metrics: Any, fps: float, backend: str,
                      decoupler: dict[str, Any] | None = None) -> dict[str, Any]:
    """Calibrate the drift verdict on (out-of-fold scored) identity-constant footage and write its artefact
    (``decoupler``: the description of the decoupler installed for the key, recorded for staleness checks)."""
    from driftbench.io import write_json
    from driftbench.measure import drift
    from driftbench.validity.calibration import calibrate_drift
    from driftbench.weights import artefacts

    lv = drift_levels(control, metrics, fps)
    cal = calibrate_drift(lv["level"], lv["person"], lv["clip_id"], window_s=drift.DRIFT_WINDOW_S,
                          min_s=drift.DRIFT_MIN_S, noise=lv["noise"])
    record = {
        "about": "Drift verdict calibrated on identity-constant real footage "
                 "(driftbench.validity.calibration."
        f"calibrate_drift); recompute with `driftbench validate --calibrate face={backend.split(':')[0]}` "
        f"with the weights of key {backend}.",
        "decoupler": {k: (decoupler or {}).get(k) for k in ("name", "fit_id")},
        "key": backend,
        "created": datetime.now(UTC).strftime("%Y-%m-%d"),
        **cal,
        "data": "data/video/real + liveportrait/driving, decoupled score out of fold (person-grouped folds)",
    }
    write_json(artefacts.artefact_path("drift", backend), record)
    return record


def verdict_rows(
    control: pd.DataFrame,
    gen: pd.DataFrame | None,
    verdict: dict[str, Any] | None,
    metrics: Any,
    fps: float,
    decoupler_desc: dict[str, Any],
) -> list[Row]:
    """Drift below the loss bar: held-out false flags on real footage, infinitetalk_dub_9 flagged, the
    stable generated clips not."""
    if not verdict:
        return [Row("control", "drift verdict", None, None, "calibrated", "fail",
                    "no drift verdict for this backend key -- fix: `driftbench validate --fit`")]
    thr = float(verdict["threshold"])
    ho = verdict.get("heldout", {})
    live = {k: decoupler_desc.get(k) for k in ("name", "fit_id")}
    if verdict.get("decoupler") != live:
        return [
            Row(
                "control",
                "drift verdict",
                None,
                None,
                "calibrated with the installed decoupler",
                "fail",
                f"{verdict.get('file')}: calibrated with decoupler {verdict.get('decoupler')}, installed "
                f"{live} "
                "-- fix: `driftbench validate --calibrate`",
            )
        ]
    from driftbench.measure.drift import verdict_threshold

    unit = ("in units of the clip's own noise, floored at " f"{float(verdict['noise_floor']):.4f}"
            if verdict.get("noise_floor") is not None else "on the drift level")
    lv = drift_levels(control, metrics, fps)
    lv["thr"] = [verdict_threshold(verdict, n) for n in lv["noise"]]
    rows = [Row("control", "drift verdict: held-out real clips flagged drifting", None, ho.get("rate"),
                "<= 1% (people held out)", check(ho.get("rate", 1.0) <= 0.01 + 1e-12),
                f"{ho.get('n_flagged')} of {ho.get('n_clips')} clips, nested leave-one-person-out "
                f"({', '.join(ho.get('flagged', [])) or 'none'}); threshold {thr:.3f} {unit} "
                f"(drift level: opening - trailing {verdict['window_s']:g} s median held "
                f"{verdict['min_s']:g} s), tail {verdict['tail']:g}; clips flagged with these scores: "
                f"{int((lv['level'] > lv['thr']).sum())}")]
    if gen is None or gen.empty:
        return rows
    g = drift_levels(gen, metrics, fps)
    g["thr"] = [verdict_threshold(verdict, n) for n in g["noise"]]
    g["name"] = g["clip_id"].map(lambda c: Path(str(c)).name)
    gen_case = gen.groupby("clip_id")["case"].first()
    drifting = g[g["name"] == DRIFT_CLIP]
    if not drifting.empty:
        lvl, cthr = float(drifting["level"].iloc[0]), float(drifting["thr"].iloc[0])
        rows.append(
            Row(
                "generated",
                f"{DRIFT_CLIP}: drift verdict",
                None,
                "drifting" if lvl > cthr else "not drifting",
                "drifting",
                check(lvl > cthr),
                f"drift level {lvl:.3f} vs its threshold {cthr:.3f} ({lvl / cthr:.2f} x)",
            )
        )
    stable = g[(g["name"] != DRIFT_CLIP) & ~g["name"].str.startswith("negative")
               & ~g["clip_id"].map(gen_case).astype(str).str.contains("negative")].copy()
    stable["ratio"] = stable["level"] / stable["thr"]
    flagged = stable[stable["level"] > stable["thr"]]
    top = stable.loc[stable["ratio"].idxmax()] if len(stable) else None
    rows.append(
        Row(
            "generated",
            f"stable generated clips flagged drifting ({len(stable)} clips)",
            None,
            len(flagged),
            "0",
            check(flagged.empty),
            (f"highest drift level / threshold {top['ratio']:.2f} ({top['name']}: {top['level']:.3f} vs "
             f"{top['thr']:.3f})" if top is not None else "no stable clip")
            + (f"; flagged: {', '.join(flagged['name'])}" if len(flagged) else ""),
        )
    )
    return rows


def age_rows(st: dict[str, Any], decoupler: Any) -> list[Row]:
    """Age stability (:func:`driftbench.measure.decouple.age_stability`) and which case holds."""
    from driftbench.measure import decouple as D

    sec = "age"
    if not st.get("available"):
        return [Row(sec, "age stability", None, None, "", "unavailable", st.get("note", ""))]
    used = D.AGE_FEATURE in (decoupler.describe().get("params") or {}).get("features", [])
    case = (
        "age is stable: it may enter the decoupled score"
        if st["stable"]
        else "age is not stable on the control footage: it is reported (smoothed) but does not enter the "
             "decoupled score"
    )
    rows = [
        Row(sec, "per-clip age spread, single frames (median / 90th pct, SD in years)",
            f"{st['raw_median']:.2f} / {st['raw_p90']:.2f}", None, "", "info", f"{st['n_clips']} clips"),
        Row(sec, f"per-clip age spread after a {st['window_s']:g} s rolling median (median / 90th pct / max)",
            f"{st['smoothed_median']:.2f} / {st['smoothed_p90']:.2f} / {st['smoothed_max']:.2f}", None,
            f"<= {st['max_spread_y']:g} y", "info",
            f"{st['share_clips_within']:.0%} of clips within {st['max_spread_y']:g} y (stable needs "
            f">= {st['min_share']:.0%})"),
        Row(sec, "age in the decoupled score", None, "used" if used else "not used", case,
            check(st["stable"] or not used), case),
    ]
    return rows


def generated_rows(gen: pd.DataFrame, thr_raw: float, thr_dec: float, metrics: Any, fps: float) -> list[Row]:
    sec = "generated"
    rows: list[Row] = []
    period = 1.0 / fps
    lost_raw = loss_onsets(gen, "sim_raw", thr_raw, metrics.min_loss_s, period)
    lost_dec = loss_onsets(gen, "sim_dec", thr_dec, metrics.min_loss_s, period)
    names = gen["clip_id"].map(lambda c: Path(str(c)).name)
    drift = gen[names == DRIFT_CLIP]
    if drift.empty:
        rows.append(Row(sec, f"{DRIFT_CLIP}: drift", None, None, "visible", "fail", "clip not measured"))
    else:
        fig = {}
        for c in ("sim_raw", "sim_dec"):
            b = bin_medians(drift, c)
            opening = float(b.iloc[: max(1, round(metrics.opening_s / metrics.bin_s))].median())
            low = float(b.rolling(3, center=True, min_periods=1).median().min())
            fig[c] = (opening, low, float(b.iloc[-5:].median()))
        dr, dd = fig["sim_raw"][0] - fig["sim_raw"][1], fig["sim_dec"][0] - fig["sim_dec"][1]
        rows += [
            Row(
                sec,
                f"{DRIFT_CLIP}: opening -> lowest 3 s -> last 5 s",
                "{:.3f} -> {:.3f} -> {:.3f}".format(*fig["sim_raw"]),
                "{:.3f} -> {:.3f} -> {:.3f}".format(*fig["sim_dec"]),
                "drift still visible",
                "info",
                "reference = first second; VALIDITY.md: 0.88 -> 0.70 raw",
            ),
            Row(
                sec,
                f"{DRIFT_CLIP}: drift (opening - lowest 3 s)",
                dr,
                dd,
                f">= {MIN_DRIFT:g} and >= {MIN_DRIFT_SHARE:g} x raw",
                check(dd >= MIN_DRIFT and dd >= MIN_DRIFT_SHARE * dr),
            ),
        ]
    for cid, g in gen.groupby("clip_id", sort=True):
        name = Path(str(cid)).name
        case = str(g["case"].iloc[0])
        tags = set(case.split(";")) if case else set()
        neg = any(t.startswith("negative") for t in tags) or name.startswith("negative")
        if name == DRIFT_CLIP:
            continue
        b_raw, b_dec = bin_medians(g, "sim_raw"), bin_medians(g, "sim_dec")
        levels = (
            f"bins {b_raw.min():.2f}-{b_raw.max():.2f} raw, {b_dec.min():.2f}-{b_dec.max():.2f} decoupled"
        )
        tr, td = lost_raw.get(cid), lost_dec.get(cid)
        if neg:
            rows.append(
                Row(sec, f"negative {name}", _lost(tr), _lost(td), "lost", check(td is not None), levels)
            )
        else:
            rows.append(Row(sec, f"stable {name}", _lost(tr), _lost(td), "not lost", check(td is None),
                            f"{g['generator'].iloc[0]}; {levels}"))
    return rows


def _lost(onset: float | None) -> str:
    return f"lost at {onset:.1f} s" if onset is not None else "not lost"


def synthetic_rows(cfg_overrides: list[str], settings: Any, metrics: Any, decoupler: Any, out_dir: Path
                   ) -> list[Row]:
    """Spearman correlation of injected and measured drift on ``model=synthetic`` clips."""
    import importlib.util

    sec = "synthetic"
    if importlib.util.find_spec("driftbench.sources.synthetic") is None:
        return [Row(sec, "Spearman(injected, measured drift)", None, None, "> 0 (p < 0.05)", "unavailable",
                    "unavailable: synthetic source not installed (driftbench.sources.synthetic)")]
    from scipy.stats import spearmanr

    from driftbench.config import compose
    from driftbench.measure.cache import signals_dir
    from driftbench.sources.base import SourceContext, create_source

    cfg = compose(["model=synthetic", *cfg_overrides])
    root = Path(cfg.cache.dir).expanduser() if cfg.cache.dir else signals_dir()
    # the clips hold only the frames this sampling measures (model.render=sampled), as in a run
    ctx = SourceContext(
        work_dir=out_dir / "work",
        cache_dir=root.parent / "clips",
        mitigation=cfg.mitigation,
        seed=int(cfg.seed),
        progress=False,
        options={"sampling": dict(vars(settings.sampling))},
    )
    clips = create_source(cfg.model, ctx).clips()
    m = measure_clips(clips, replace(settings, reference="auto"), "synthetic")
    if m.frames.empty:
        return [Row(sec, "Spearman(injected, measured drift)", None, None, "> 0 (p < 0.05)", "fail",
                    "no synthetic clip measured: " + "; ".join(m.problems[:3]))]
    frames = rescore(m.frames, decoupler, metrics.smooth_s)
    pts = []
    truths: dict[str, np.ndarray] = {}
    ends: list[tuple[float, float, float]] = []  # (injected alpha at the end, raw drift, decoupled drift)
    for clip in clips:
        g = frames[frames["clip_id"] == clip.clip_id]
        if g.empty:
            continue
        truth = injected_alpha(clip.meta, g["t"].to_numpy(np.float64))
        if truth is None:
            continue
        truths[clip.clip_id] = truth
        t = g["t"].to_numpy(np.float64)
        first, last = g[t < metrics.opening_s], g[t >= t.max() - metrics.window_s]
        ends.append((float(truth[-1]), float(first["sim_raw"].median() - last["sim_raw"].median()),
                     float(first["sim_dec"].median() - last["sim_dec"].median())))
        b = np.floor(g["t"].to_numpy() / metrics.bin_s + 1e-9).astype(int)
        per_bin = (
            pd.DataFrame({"bin": b, "alpha": truth, "raw": g["sim_raw"], "dec": g["sim_dec"]})
            .groupby("bin")
            .median()
        )
        opening = per_bin.iloc[: max(1, round(metrics.opening_s / metrics.bin_s))].median()
        for _, r in per_bin.iterrows():
            pts.append((r["alpha"], opening["raw"] - r["raw"], opening["dec"] - r["dec"]))
    if not pts:
        return [Row(sec, "Spearman(injected, measured drift)", None, None, "> 0 (p < 0.05)", "fail",
                    "synthetic clips carry no ground truth (gt_csv / gt_alpha_at_*)")]
    arr = np.asarray(pts, dtype=np.float64)
    ok = np.isfinite(arr).all(axis=1)
    rr, pr = spearmanr(arr[ok, 0], arr[ok, 1])
    rd, pd_ = spearmanr(arr[ok, 0], arr[ok, 2])
    from driftbench.validity.decouple_eval import synthetic_clip_rows

    rows = [
        Row(
            sec,
            "Spearman(injected alpha, measured drift) per 1 s bin",
            float(rr),
            float(rd),
            "> 0 (p < 0.05)",
            check(bool(rd > 0 and pd_ < 0.05)),
            f"{len(clips)} clips, {int(ok.sum())} bins; p raw {pr:.1e}, decoupled {pd_:.1e}; drift = "
            "opening - bin "
            "(pooled bins are autocorrelated: the per-clip row below is the figure)",
        ),
        *synthetic_clip_rows(frames, truths),
    ]
    e = np.asarray(ends, dtype=np.float64).reshape(-1, 3)
    drifting, still = e[e[:, 0] > 0], e[e[:, 0] <= 0]
    if len(drifting):
        rows.append(
            Row(
                sec,
                "mean drift at the end, clips with injected drift (opening - last window)",
                float(drifting[:, 1].mean()),
                float(drifting[:, 2].mean()),
                "",
                "info",
                f"{len(drifting)} clips, mean injected alpha {drifting[:, 0].mean():.2f}; the share kept by "
                "decoupling shows how much identity change it mistakes for pose/expression",
            )
        )
    if len(still):
        rows.append(Row(sec, "mean drift at the end, no-drift clips", float(still[:, 1].mean()),
                        float(still[:, 2].mean()), "~0", "info", f"{len(still)} clips"))
    return rows


def injected_alpha(meta: Any, t: np.ndarray) -> np.ndarray | None:
    """True identity mix at times ``t``: the clip's sidecar CSV (t, alpha), else its gt_alpha_at_*s facts."""
    import re

    csv = meta.get("gt_csv")
    if csv and Path(str(csv)).is_file():
        gt = pd.read_csv(str(csv))
        return np.interp(t, gt["t"].to_numpy(np.float64), gt["alpha"].to_numpy(np.float64))
    pts = sorted((float(mm.group(1)), float(v)) for k, v in meta.items()
                 if (mm := re.fullmatch(r"gt_alpha_at_([0-9.]+)s", str(k))) and v is not None)
    if not pts:
        return None
    xs, ys = zip(*([(0.0, 0.0), *pts]), strict=True)
    return np.interp(t, np.asarray(xs), np.asarray(ys))


# -- fitting the artefact ---------------------------------------------------------------------------------
def fit_artefact(control: Measured, faces: pd.DataFrame, pairs: pd.DataFrame, analyzer: Any, settings: Any,
                 backend: str, *, n_splits: int) -> Any:
    """The decoupler artefact of the weights key ``backend``
    (:func:`driftbench.validity.decouple_eval.fit_artefact`;
    ``n_splits`` is no longer used: held-out figures come from person and identity folds)."""
    from driftbench.validity.decouple_eval import fit_artefact as fit_shift

    return fit_shift(control.frames, control.clips, faces, pairs, analyzer, settings, backend)


def threshold_key(cfg: Any) -> str:
    """The key of the backend model's thresholds and decoupler: the backend's name, or, where the
    backends provide ``faces.base.preflight`` (per-model keys such as ``insightface:buffalo_l``), its key."""
    try:
        from driftbench.faces.base import preflight  # type: ignore[attr-defined]
    except ImportError:
        return str(cfg.face.backend)
    return str(preflight(str(cfg.face.backend), dict(cfg.face.options), download=bool(cfg.fetch)))


def run_suite(cfg: Any, overrides: list[str], paths: SharedPaths, out_dir: Path, *, fit: bool = False,
              calibrate: bool = False,
              n_splits: int = 200, skip: set[str] | None = None) -> tuple[list[Row], dict[str, Any]]:
    """Every section's rows and the metadata for validate.json."""
    from driftbench.errors import UsageError
    from driftbench.measure.cache import SignalCache
    from driftbench.measure.clip import get_analyzer, settings_from_config
    from driftbench.measure.decouple import age_stability, load_decoupler
    from driftbench.measure.published import PublishedSettings
    from driftbench.runner import git_commit, versions
    from driftbench.validity import calibration

    skip = skip or set()
    backend = threshold_key(cfg)
    metrics = cfg.metrics
    fps = float(cfg.sampling.fps)
    # validation measures driftbench's own metrics: no published-metric extras (their frames cost time)
    settings = replace(settings_from_config(cfg, threshold=float("nan")),
                       published=PublishedSettings(enabled=False))
    analyzer = get_analyzer(settings)
    cache = SignalCache(
        Path(settings.cache_dir) if settings.cache_dir else None, enabled=settings.cache_enabled
    )
    log.info("validate: photos (%s)", paths.deepface)
    faces, pairs = photo_pairs(analyzer, paths.deepface, cache)
    faces.attrs["dir"] = str(paths.deepface)
    log.info("validate: identity-constant footage")
    control = control_footage(paths, cfg, settings)
    if control.frames.empty:
        raise UsageError(f"{paths.real}: no identity-constant clip could be measured -- fix: check ../shared")
    heldout: dict[str, Any] = {}
    if fit:
        log.info("validate: fitting the decoupler for %s", backend)
        fitted = fit_artefact(control, faces, pairs, analyzer, settings, backend, n_splits=n_splits)
        heldout = fitted.record.get("heldout", {})
    if fit or calibrate:
        # thresholds (photos + different-person video pairs) from the decoupler now installed for this key
        fitted_dec = load_decoupler(backend)
        entry = calibration.calibrate(analyzer, paths.deepface, fitted_dec)
        log.info("validate: false-accept calibration on different-person video frame pairs")
        entry["domain"] = calibration.domain_calibration(control.frames, pairs, fitted_dec)
        calibration.write_thresholds({backend: entry})
    decoupler = load_decoupler(backend, settings.decoupler)
    # every control figure out of fold: a person's clips scored by a decoupler fitted without that person
    log.info("validate: out-of-fold decoupled scores of the identity-constant footage")
    oof = (
        oof_rescore(control.frames, pairs, float(metrics.smooth_s))
        if getattr(decoupler, "name", "none") != "none"
        else rescore(control.frames, decoupler, float(metrics.smooth_s))
    )
    if fit or calibrate:
        log.info("validate: calibrating the drift verdict for %s", backend)
        fit_drift_verdict(oof, metrics, fps, backend, load_decoupler(backend).describe())
    from driftbench.measure.drift import load_drift_verdict

    verdict = load_drift_verdict(backend)
    thr_raw, _ = calibration.threshold_for(backend, far=float(metrics.far), score="raw")
    thr_dec, prov = calibration.threshold_for(backend, far=float(metrics.far), score="dec")
    rows: list[Row] = (
        [
            Row(
                "verification",
                "measurement problems",
                None,
                len(control.problems),
                "0",
                check(not control.problems),
                "; ".join(control.problems[:3]),
            )
        ]
        if control.problems
        else []
    )
    details: dict[str, Any] = {}
    frames = rescore(control.frames, decoupler, float(metrics.smooth_s))
    age = age_stability(frames)
    if "verification" not in skip:
        rows += weights_rows(backend, analyzer.info.weights, decoupler)
        rows += verification_rows(pairs, faces, decoupler, backend, paths.deepface)
    if "decoupling" not in skip:
        from driftbench.measure import decouple as D

        if isinstance(decoupler, D.GatedShiftDecoupler):
            from driftbench.validity.decouple_eval import validate_section

            log.info("validate: decoupling figures held out by person (morphs rendered once, then cached)")
            r, details = validate_section(frames, pairs, faces, paths.root, overrides, backend,
                                          morphs="synthetic" not in skip)
            rows += [
                Row(
                    "decoupling",
                    "decoupler",
                    None,
                    f"{decoupler.name} v{decoupler.version}",
                    "fitted on identity-constant footage",
                    "info",
                    str(decoupler.describe().get("params")),
                ),
                *r,
            ]
        else:
            r, details = decoupling_rows(frames, pairs, decoupler, n_splits=n_splits,
                                         age_stable=bool(age.get("stable")), heldout=heldout)
            rows += r
    if "control" not in skip:
        from driftbench.validity.calibration import thresholds

        entry = thresholds().get("backends", {}).get(backend, {})
        eer = (
            (float(entry["raw"]["eer_threshold"]), float(entry["dec"]["eer_threshold"]))
            if "eer_threshold" in entry.get("raw", {}) and "eer_threshold" in entry.get("dec", {})
            else None
        )
        rows += control_rows(oof, thr_raw, thr_dec, metrics, fps, eer)
        rows += null_drift_rows(clip_drifts(oof, metrics, fps), metrics)
    if "age" not in skip:
        rows += age_rows(age, decoupler)
    gen_frames = None
    if "generated" not in skip:
        log.info("validate: real generated clips")
        gen = measure_clips(
            folder_clips(paths.generated, cfg), replace(settings, reference="auto"), "generated"
        )
        rows += [Row("generated", "measurement problems", None, len(gen.problems), "0", "fail",
                     "; ".join(gen.problems[:3]))] if gen.problems else []
        if not gen.frames.empty:
            gen_frames = rescore(gen.frames, decoupler, float(metrics.smooth_s))
            rows += generated_rows(gen_frames, thr_raw, thr_dec, metrics, fps)
    if "control" not in skip:
        rows += verdict_rows(oof, gen_frames, verdict, metrics, fps, decoupler.describe())
    if "synthetic" not in skip:
        log.info("validate: synthetic clips")
        rows += synthetic_rows(overrides, settings, metrics, decoupler, out_dir)
    meta = {
        "command": "validate",
        "command_line": " ".join(["driftbench validate", *sys.argv[2:]])
        if sys.argv[1:2] == ["validate"]
        else "driftbench validate",
        "backend": backend,
        "decoupler": decoupler.describe(),
        "thresholds": {"raw": thr_raw, "dec": thr_dec, "provenance": prov},
        "drift_verdict": verdict,
        "control_scores": "out of fold (person-grouped folds)",
        "git_commit": git_commit(),
        "versions": versions(),
        "shared": str(paths.root),
        "age": age,
        "heldout": details,
        "sampling": settings.sampling.token(),
        "engine": analyzer.info.engine,
        "weights": analyzer.info.weights,
    }
    return rows, meta
