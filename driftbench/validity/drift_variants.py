"""Drift-verdict variants measured side by side (docs/DRIFT-VERDICT.md).

``driftbench dev drift-variants [--material FILE] [OVERRIDES]`` loads the material the drift verdict of
``driftbench validate`` is judged on (:func:`collect`: identity-constant real clips scored out of fold,
the real generated clips with the installed decoupler; every signal from the cache), then prints, for
each rule of :data:`VARIANTS`, the held-out flags of the identity-constant clips (nested
leave-one-person-out), infinitetalk_dub_9's statistic against its threshold and the highest statistic of
the stable generated clips. ``--material FILE`` keeps the per-sample scores in a parquet file so that a
second evaluation does not rescore.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("driftbench")

#: per-sample columns kept in the material file
KEEP = ("set", "clip_id", "person", "case", "t", "sim_raw", "sim_dec", "opening_start_s", "duration_s",
        "face_found")


def collect(shared: Path, overrides: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(per-sample scores, info): identity-constant clips (``set`` real / liveportrait) with their decoupled
    score out of fold, as ``driftbench validate`` computes it, and the generated clips (``set`` generated)
    rescored with the installed decoupler."""
    from driftbench.config import validate_overrides
    from driftbench.measure.cache import SignalCache
    from driftbench.measure.clip import get_analyzer, settings_from_config
    from driftbench.measure.decouple import load_decoupler
    from driftbench.measure.published import PublishedSettings
    from driftbench.validity.material import (
        SharedPaths,
        control_footage,
        folder_clips,
        measure_clips,
        photo_pairs,
        rescore,
    )
    from driftbench.validity.validate import oof_rescore, threshold_key

    paths = SharedPaths(shared.resolve())
    cfg = validate_overrides(["model=folder", f"model.path={paths.real}", *overrides], False)[0]
    backend = threshold_key(cfg)
    settings = replace(settings_from_config(cfg, threshold=float("nan")),
                       published=PublishedSettings(enabled=False))
    analyzer = get_analyzer(settings)
    cache = SignalCache(Path(settings.cache_dir) if settings.cache_dir else None,
                        enabled=settings.cache_enabled)
    _, pairs = photo_pairs(analyzer, paths.deepface, cache)
    control = control_footage(paths, cfg, settings)
    decoupler = load_decoupler(backend, settings.decoupler)
    smooth_s = float(cfg.metrics.smooth_s)
    oof = (oof_rescore(control.frames, pairs, smooth_s) if getattr(decoupler, "name", "none") != "none"
           else rescore(control.frames, decoupler, smooth_s))
    gen = measure_clips(folder_clips(paths.generated, cfg), replace(settings, reference="auto"), "generated")
    gen_frames = rescore(gen.frames, decoupler, smooth_s)
    out = pd.concat([oof[[c for c in KEEP if c in oof]], gen_frames[[c for c in KEEP if c in gen_frames]]],
                    ignore_index=True)
    info = {"key": backend, "decoupler": decoupler.describe(), "fps": float(cfg.sampling.fps),
            "opening_s": float(cfg.metrics.opening_s),
            "problems": control.problems + gen.problems}
    return out, info


# -- per-clip statistics ------------------------------------------------------------------------------------
def clip_stats(material: pd.DataFrame, opening_s: float, fps: float) -> pd.DataFrame:
    """Per clip: the drift level and the clip's own noise of the decoupled and the raw score
    (:func:`driftbench.measure.drift.clip_level_and_noise`, as the shipped verdict computes them)."""
    from driftbench.measure import drift

    rows = []
    for cid, g in material.groupby("clip_id", sort=True):
        row: dict[str, Any] = {"clip_id": cid, "name": Path(str(cid)).name, "set": g["set"].iloc[0],
                               "person": g["person"].iloc[0], "case": str(g["case"].iloc[0]),
                               "duration_s": float(g["duration_s"].iloc[0])}
        for kind in ("dec", "raw"):
            row[f"level_{kind}"], row[f"noise_{kind}"] = drift.clip_level_and_noise(
                g, f"sim_{kind}", opening_s=opening_s, period=1.0 / fps)
        rows.append(row)
    return pd.DataFrame(rows)


# -- threshold families ------------------------------------------------------------------------------------
def _finite(v: Any) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v[np.isfinite(v)]


def fit_family(values: Any, family: str) -> Any:
    """``tail -> threshold`` fitted on ``values`` (finite ones): ``normal`` mean + z * SD, ``robust`` median +
    z * 1.4826 MAD, ``t`` the upper ``tail`` quantile of a Student t fitted by maximum likelihood."""
    from scipy import stats

    v = _finite(values)
    if len(v) < 2:
        return lambda tail: float("inf")
    if family == "normal":
        m, s = float(v.mean()), float(v.std(ddof=1))
        return lambda tail: m + float(stats.norm.isf(tail)) * s
    if family == "robust":
        m = float(np.median(v))
        s = 1.4826 * float(np.median(np.abs(v - m)))
        return lambda tail: m + float(stats.norm.isf(tail)) * s
    if family == "t":
        df, loc, scale = _t_fit(tuple(np.sort(v)))
        return lambda tail: float(stats.t.isf(tail, df, loc, scale))
    raise ValueError(f"unknown threshold family {family!r}")


@cache
def _t_fit(values: tuple[float, ...]) -> tuple[float, float, float]:
    """Maximum-likelihood Student t (df, loc, scale); memoised: nested leave-one-person-out fits each
    training set twice."""
    from scipy import stats

    return tuple(float(x) for x in stats.t.fit(np.asarray(values)))  # type: ignore[return-value]


# -- variants -----------------------------------------------------------------------------------------------
def _level(kind: str) -> Any:
    return lambda df, train: df[[f"level_{kind}"]].to_numpy(np.float64)


def _noise_units(kind: str, floor: bool, q: float = 50.0) -> Any:
    from driftbench.validity.calibration import noise_units

    def stat(df: pd.DataFrame, train: pd.DataFrame) -> np.ndarray:
        sd = df[f"noise_{kind}"].to_numpy(np.float64)
        level = df[f"level_{kind}"].to_numpy(np.float64)
        if floor:  # the statistic the shipped verdict calibrates, with the floor at the q-th percentile
            s0 = float(np.nanpercentile(train[f"noise_{kind}"].to_numpy(np.float64), q))
            return np.asarray(noise_units(level, sd, s0))[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            return (level / sd)[:, None]

    return stat


def _both(df: pd.DataFrame, train: pd.DataFrame) -> np.ndarray:
    return df[["level_dec", "level_raw"]].to_numpy(np.float64)


#: name -> (statistic(df, train) -> (n, k) array, flagged when every column exceeds its threshold; family;
#: what it is)
VARIANTS: dict[str, tuple[Any, str, str]] = {
    "V0": (_level("dec"), "normal", "decoupled drift level; mean + z SD (first shipped)"),
    "V1": (_noise_units("dec", False), "normal",
           "decoupled drift level / the clip's own noise (robust SD of sample-to-sample differences); "
           "mean + z SD"),
    "V1f": (_noise_units("dec", True), "normal",
            "V1 with the noise floored: level / sqrt(noise^2 + s0^2), s0 the median noise of the "
            "calibration clips; mean + z SD"),
    "V1f-q25": (_noise_units("dec", True, 25.0), "normal",
                "sensitivity of V1f: the floor at the 25th percentile of the calibration clips' noise"),
    "V1f-q75": (_noise_units("dec", True, 75.0), "normal",
                "sensitivity of V1f: the floor at the 75th percentile"),
    "V1f-raw": (_noise_units("raw", True), "normal", "V1f on the raw score (no decoupling)"),
    "V2": (_both, "normal", "decoupled and raw drift levels both above their own threshold (one tail); "
           "mean + z SD"),
    "V3": (_level("dec"), "t", "decoupled drift level; Student t fitted by maximum likelihood"),
    "V4": (_level("dec"), "robust", "decoupled drift level; median + z * 1.4826 MAD"),
    "V5": (_noise_units("dec", False), "t", "V1's statistic; Student t fit"),
    "V6": (_noise_units("dec", True), "t", "V1f's statistic; Student t fit"),
}


def _fits(S: np.ndarray, family: str) -> list[Any]:
    return [fit_family(S[:, j], family) for j in range(S.shape[1])]


def _flag(S: np.ndarray, thr: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.all(np.nan_to_num(S, nan=-np.inf) > thr[None, :], axis=1)


def choose_tail(S: np.ndarray, people: np.ndarray, family: str) -> float:
    """The largest tail of DRIFT_TAILS whose leave-one-person-out flag rate is <= DRIFT_MAX_FPR (the rule of
    :func:`driftbench.validity.calibration.calibrate_drift`)."""
    from driftbench.validity.calibration import DRIFT_MAX_FPR, DRIFT_TAILS

    folds = [(people == p, _fits(S[people != p], family)) for p in np.unique(people)]
    for tail in DRIFT_TAILS:
        n = 0
        for te, fits in folds:
            n += int(_flag(S[te], np.array([f(tail) for f in fits])).sum())
        if n / len(S) <= DRIFT_MAX_FPR:
            return tail
    return DRIFT_TAILS[-1]


def calibrate(train: pd.DataFrame, variant: str) -> tuple[np.ndarray, float]:
    stat, family, _ = VARIANTS[variant]
    S = stat(train, train)
    people = train["person"].to_numpy(str)
    tail = choose_tail(S, people, family)
    return np.array([f(tail) for f in _fits(S, family)]), tail


def evaluate(stats: pd.DataFrame, variant: str) -> dict[str, Any]:
    """Held-out flags of the identity-constant clips (nested leave-one-person-out), infinitetalk_dub_9's
    statistic and the stable generated clips' highest, against the threshold fitted on every control."""
    from driftbench.validity.material import DRIFT_CLIP

    stat, _, what = VARIANTS[variant]
    ctrl = stats[stats["set"] != "generated"].reset_index(drop=True)
    gen = stats[stats["set"] == "generated"].reset_index(drop=True)
    people = ctrl["person"].to_numpy(str)
    flagged = []
    for p in np.unique(people):
        tr, te = ctrl[people != p], ctrl[people == p]
        thr, _ = calibrate(tr, variant)
        flagged += list(te["name"][_flag(stat(te, tr), thr)])
    thr, tail = calibrate(ctrl, variant)
    Sg = stat(gen, ctrl)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.min(Sg / thr[None, :], axis=1)
    inf = gen["name"] == DRIFT_CLIP
    stable = ~inf & ~gen["name"].str.startswith("negative") & ~gen["case"].str.contains("negative")
    flags_g = _flag(Sg, thr)
    i_inf = int(np.flatnonzero(inf)[0])
    i_top = int(np.flatnonzero(stable)[np.argmax(ratio[stable])])
    return {"variant": variant, "what": what, "tail": tail, "threshold": [float(x) for x in thr],
            "heldout_flagged": flagged, "n_controls": len(ctrl),
            "flagged_in_sample": int(_flag(stat(ctrl, ctrl), thr).sum()),
            "infinitetalk": [float(x) for x in Sg[i_inf]], "infinitetalk_flagged": bool(flags_g[i_inf]),
            "infinitetalk_ratio": float(ratio[i_inf]), "n_stable": int(stable.sum()),
            "stable_flagged": list(gen["name"][stable & flags_g]), "stable_top": str(gen["name"][i_top]),
            "stable_top_stat": [float(x) for x in Sg[i_top]], "stable_top_ratio": float(ratio[i_top])}


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| variant | held-out flagged (of n) | infinitetalk stat / threshold (ratio) | "
             "stable flagged | highest stable stat (ratio, clip) | tail |", "|---|---|---|---|---|---|"]

    def fmt(v: list[float]) -> str:
        return " & ".join(f"{x:.3f}" for x in v)

    for r in results:
        lines.append(
            f"| {r['variant']} | {len(r['heldout_flagged'])} of {r['n_controls']}"
            f"{' (' + ', '.join(r['heldout_flagged']) + ')' if r['heldout_flagged'] else ''} | "
            f"{fmt(r['infinitetalk'])} / {fmt(r['threshold'])} ({r['infinitetalk_ratio']:.2f}"
            f"{'' if r['infinitetalk_flagged'] else ', NOT flagged'}) | "
            f"{len(r['stable_flagged'])} of {r['n_stable']} | {fmt(r['stable_top_stat'])} "
            f"({r['stable_top_ratio']:.2f}, {r['stable_top']}) | {r['tail']:g} |")
    return "\n".join(lines)


def run(shared: Path, overrides: list[str], *, material_path: Path | None = None, out: Path | None = None,
        variants: str = ",".join(VARIANTS)) -> int:
    """``driftbench dev drift-variants``: measure (or read ``material_path``) and print every variant's
    figures; ``out``: also write them as JSON."""
    import json

    from driftbench.io import dumps_json

    logging.basicConfig(level=logging.WARNING)
    info_path = material_path.with_suffix(".json") if material_path is not None else None
    if material_path is not None and material_path.is_file() and info_path is not None \
            and info_path.is_file():
        material = pd.read_parquet(material_path)
        info = json.loads(info_path.read_text(encoding="utf-8"))
    else:
        material, info = collect(shared, list(overrides))
        if material_path is not None and info_path is not None:
            material_path.parent.mkdir(parents=True, exist_ok=True)
            material.to_parquet(material_path)
            info_path.write_text(dumps_json(json.loads(json.dumps(info, default=str))), encoding="utf-8")
    stats = clip_stats(material, float(info["opening_s"]), float(info["fps"]))
    results = [evaluate(stats, v) for v in variants.split(",")]
    print(f"key {info['key']}, decoupler {info['decoupler'].get('name')} {info['decoupler'].get('fit_id')}")
    print(table(results))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(dumps_json(json.loads(json.dumps(
            {"key": info["key"], "decoupler": info["decoupler"], "variants": results,
             "clips": stats.replace([np.inf, -np.inf], np.nan).to_dict(orient="records")}, default=str))),
            encoding="utf-8")
    return 0
