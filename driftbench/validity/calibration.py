"""Calibrated identity thresholds per face backend key, with their provenance.

Each backend key (the backend plus the weights variant, e.g. ``sface:yunet-int8bq``) has one thresholds
artefact, named by :func:`driftbench.weights.artefacts.artefact_path` (``<root>/thresholds/<key>.json``; the
packaged ones under ``driftbench/data/thresholds``): for the raw and the decoupled score, the
verification figures on labelled real photo pairs (../shared/data/faces/deepface: 61 photos, 13
people, 1830 pairs) and the similarity at fixed false-accept rates, plus (``domain``) the false-accept
calibration on different-person frame pairs of identity-constant video (:func:`domain_far`).
Identity-loss detection reads its threshold from here, never from a literal in code.
``driftbench calibrate`` regenerates an entry (see :func:`calibrate`) into the user's artefact
directory; ``DRIFTBENCH_THRESHOLDS=FILE`` adds a file of entries of one's own (``{"backends": {key:
entry}}``) that overrides every other.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from driftbench.weights import artefacts

ABOUT = (
    "Identity thresholds calibrated on labelled real photo pairs (and different-person frame pairs of "
    "identity-constant video: domain); regenerate with `driftbench calibrate` or `driftbench validate "
    "--fit`. threshold_at_far_X: similarity above which different-person pairs fall at false-accept rate X."
)


@lru_cache(maxsize=64)
def _load(path: str, mtime: int = 0) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        return {}
    return json.loads(p.read_text(encoding="utf-8"))


def _read(path: Path) -> dict[str, Any]:
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return {}
    return _load(str(path), mtime)


#: an extra thresholds file (e.g. a model pack the user calibrated); its entries override every other
THRESHOLDS_ENV = "DRIFTBENCH_THRESHOLDS"


def user_thresholds_file() -> Path | None:
    value = os.environ.get(THRESHOLDS_ENV)
    return Path(value).expanduser() if value else None


def thresholds(path: Path | None = None) -> dict[str, Any]:
    """``{"backends": {key: entry}}``: of one file (``path``), else every thresholds artefact visible to
    loading (:func:`driftbench.weights.artefacts.find` order) with ``$DRIFTBENCH_THRESHOLDS`` on top."""
    if path is not None:
        return _read(path)
    backends: dict[str, Any] = {}
    for p in artefacts.all_of("thresholds"):
        entry = _read(p)
        if "key" in entry:
            backends[str(entry["key"])] = {**entry, "file": str(p)}
    extra = user_thresholds_file()
    if extra is not None:
        backends.update({k: {**v, "file": str(extra)} for k, v in _read(extra).get("backends", {}).items()})
    return {"about": ABOUT, "backends": backends}


def threshold_for(backend: str, *, far: float = 0.001, score: str = "dec", path: Path | None = None
                  ) -> tuple[float, dict[str, Any]]:
    """(threshold, provenance) for a backend's raw or decoupled score at a false-accept rate."""
    from driftbench.errors import UsageError

    data = thresholds(path)
    entry = data.get("backends", {}).get(backend)
    where = path or (entry or {}).get("file") or artefacts.artefact_path("thresholds", backend)
    if entry is None:
        raise UsageError(
            f"{where}: no calibrated threshold for face backend {backend!r} "
            f"-- fix: run `driftbench calibrate face={backend.split(':')[0]}` with the same "
            f"face.options, or `driftbench validate --fit` ({THRESHOLDS_ENV}=FILE keeps it in a file of "
            "your own)"
        )
    block = entry.get(score)
    if block is None:
        # the decoupled threshold is calibrated on the decoupled score itself, never reused from the raw one
        raise UsageError(f"{where}: backend {backend!r} has no {score!r} threshold "
                         f"-- fix: run `driftbench calibrate face={backend.split(':')[0]}`")
    key = f"threshold_at_far_{far:g}"
    dom = ((entry.get("domain") or {}).get(score) or {}).get("by_far", {}).get(f"{far:g}")
    if dom is not None and dom.get("supported"):
        # calibrated in the domain (different-person frame pairs of video, and photos), people held out
        block = {**block, key: dom["threshold"]}
    if key not in block:
        raise UsageError(f"{where}: backend {backend!r} has no threshold at FAR {far:g} "
                         f"(has: {sorted(k for k in block if k.startswith('threshold_at_far_'))}) "
                         f"-- fix: run `driftbench calibrate face={backend}` or use metrics.far=0.001")
    prov = {"backend": backend, "score": score, "far": far,
            "data": entry.get("data"), "n_same": block.get("n_same"), "n_diff": block.get("n_diff"),
            "decoupler": entry.get("decoupler"), "created": entry.get("created"), "file": str(where)}
    if dom is not None:
        # the false-accept calibration on different-person frame pairs of video: how many lie beyond it
        d = (entry.get("domain") or {})[score]
        prov["calibrated_on"] = "video+photo impostor pairs" if dom.get("supported") else "photo pairs"
        prov["domain"] = {
            **{k: d.get(k) for k in ("far_supported", "n_impostor_pairs", "n_people", "min_beyond")},
            **dom,
        }
    else:
        prov["calibrated_on"] = "photo pairs"
    if score == "dec":
        prov["stale"] = decoupler_changed(backend, entry.get("decoupler"))
        if prov["stale"]:
            import logging

            logging.getLogger("driftbench").warning(
                "%s: the decoupled threshold of backend %r was calibrated for another decoupler fit (%s) -- "
                "fix: "
                "run `driftbench calibrate face=%s`",
                where,
                backend,
                (entry.get("decoupler") or {}).get("fit_id"),
                backend,
            )
    return float(block[key]), prov


def decoupler_changed(backend: str, stored: dict[str, Any] | None) -> bool:
    """True when the installed decoupler of backend key ``backend`` (e.g. ``sface:yunet-int8bq``: each
    weights variant has its own) is not the one the thresholds were calibrated on."""
    from driftbench.measure.decouple import load_decoupler

    live = load_decoupler(backend).describe()
    stored = stored or {}
    return (live.get("name"), live.get("fit_id")) != (stored.get("name"), stored.get("fit_id"))


def calibrate(analyzer: Any, deepface_dir: Path, decoupler: Any, *, fars: tuple[float, ...] = (0.001, 0.01)
              ) -> dict[str, Any]:
    """Verification figures and thresholds for one backend, raw and decoupled."""
    from driftbench.validity import verification as V

    photos = V.deepface_photos(deepface_dir)
    faces = V.photo_faces(analyzer, photos)
    missing = faces.loc[~faces["face_found"], "file"].tolist()
    pairs = V.pair_table(faces)
    pairs["sim_dec"] = decoupler.apply(pairs)
    entry: dict[str, Any] = {
        "data": {"source": photos.source, "dir": deepface_dir.name, "n_photos": len(photos.paths),
                 "n_identities": len(set(photos.labels)), "no_face": missing},
        "decoupler": decoupler.describe(),
        "created": datetime.now(UTC).strftime("%Y-%m-%d"),
        "engine": analyzer.info.engine,
        "weights": analyzer.info.weights,
    }
    for score in ("raw", "dec"):
        entry[score] = V.verification_metrics(
            pairs[f"sim_{score}"].to_numpy(), pairs["same"].to_numpy(), fars
        )
    return entry


def write_thresholds(entries: dict[str, dict[str, Any]], path: Path | None = None) -> Path:
    """Store calibrated entries: each as its key's artefact under
    :func:`driftbench.weights.artefacts.write_root`
    (never inside the installed package unless ``DRIFTBENCH_ARTEFACTS`` points there), or, with ``path``,
    merged into that one file (the ``DRIFTBENCH_THRESHOLDS`` format). Returns the last file written."""
    from driftbench.io import write_json

    if path is not None:
        data = dict(_read(path)) if path.is_file() else {}
        backends = dict(data.get("backends", {}))
        backends.update(entries)
        write_json(path, {"about": ABOUT, "backends": backends})
        _load.cache_clear()
        return path
    out = artefacts.write_root()
    for key, entry in entries.items():
        out = artefacts.artefact_path("thresholds", key)
        write_json(out, {"about": ABOUT, "key": key, **{k: v for k, v in entry.items() if k != "file"}})
    _load.cache_clear()
    return out


# -- false accepts in the domain: different-person frame pairs of identity-constant video ----------------
#: a false-accept rate is claimed only where at least this many different-person pairs lie beyond the
#: threshold
MIN_IMPOSTORS_BEYOND = 20
#: false-accept rates a threshold is stored for (the smallest one that is supported is claimed)
DOMAIN_FARS = (0.001, 0.002, 0.005, 0.01)


def video_impostor_pairs(frames: Any, *, per_clip: int = 16) -> Any:
    """Every pair of sampled frames of two different people in identity-constant footage, as a pair table
    (``sim_raw``, ``d_yaw``, ``d_pitch``, ``d_roll``, ``d_expr``, ``d_age``, ``emb``/``ref_emb``,
    ``person_a``/``person_b``) that a decoupler scores like a frame against its reference.

    ``frames``: one row per sample with ``clip_id``, ``person``, ``t``, ``emb`` (None without a face),
    ``yaw``/``pitch``/``roll``/``age`` and ``blendshapes``. Up to ``per_clip`` faces per clip, evenly
    spread over its length, so long clips do not outweigh short ones."""
    import numpy as np
    import pandas as pd

    picked = []
    for _, g in frames.groupby("clip_id", sort=True):
        g = g[g["emb"].notna()].sort_values("t")
        if g.empty:
            continue
        idx = np.unique(np.round(np.linspace(0, len(g) - 1, min(per_clip, len(g)))).astype(int))
        picked.append(g.iloc[idx])
    sel = pd.concat(picked, ignore_index=True)
    emb = np.stack([np.asarray(e, np.float32) for e in sel["emb"]])
    people = sel["person"].to_numpy()
    i, j = np.triu_indices(len(sel), k=1)
    keep = people[i] != people[j]
    i, j = i[keep], j[keep]

    def col(name: str) -> np.ndarray:
        return (
            pd.to_numeric(sel[name], errors="coerce").to_numpy(np.float64)
            if name in sel
            else np.full(len(sel), np.nan)
        )

    out = pd.DataFrame({"person_a": people[i], "person_b": people[j], "same": False,
                        "sim_raw": np.einsum("nd,nd->n", emb[i], emb[j]).astype(np.float64)})
    for c in ("yaw", "pitch", "roll"):
        v = col(c)
        out[f"d_{c}"] = np.abs(v[i] - v[j])
    if "blendshapes" in sel:
        bs = np.stack(
            [
                np.asarray(b, np.float32)
                if b is not None and np.size(b) == 52
                else np.full(52, np.nan, np.float32)
                for b in sel["blendshapes"]
            ]
        )
        out["d_expr"] = np.linalg.norm(bs[i] - bs[j], axis=1)
    else:
        out["d_expr"] = np.nan
    age = col("age")
    out["d_age"] = age[j] - age[i]
    rows = list(emb)  # views of one matrix: the object columns hold references, not copies
    out["ref_emb"] = pd.Series([rows[k] for k in i], dtype=object)
    out["emb"] = pd.Series([rows[k] for k in j], dtype=object)
    return out


def _threshold_at(neg: Any, far: float) -> float:
    """The similarity at or above which at most ``far`` of the different-person scores ``neg`` fall (the
    rule of :func:`driftbench.validity.verification.verification_metrics`)."""
    import numpy as np

    s = np.sort(np.asarray(neg, np.float64))[::-1]
    n_allowed = int(np.floor(far * len(s)))
    return float(s[n_allowed]) + 1e-6 if n_allowed < len(s) else float(s.min())


def _heldout_far(s: Any, fa: Any, fb: Any, k: int, nominal: float) -> tuple[int, int, list[float]]:
    """(false accepts, pairs, per-fold rates) of thresholds set at ``nominal`` on the pairs of training people
    and applied to the pairs between held-out people, over ``k`` folds of people."""
    n_test = n_fa = 0
    per_fold = []
    for f in range(k):
        train = (fa != f) & (fb != f)
        test = (fa == f) & (fb == f)
        if not train.any() or not test.any():
            continue
        hits = int((s[test] >= _threshold_at(s[train], nominal)).sum())
        per_fold.append(hits / int(test.sum()))
        n_test += int(test.sum())
        n_fa += hits
    return n_fa, n_test, per_fold


def domain_far(scores: Any, groups_a: Any, groups_b: Any, *, fars: tuple[float, ...] = DOMAIN_FARS,
               k: int = 5, seed: int = 0, genuine: Any = None, genuine_groups: Any = None) -> dict[str, Any]:
    """False-accept calibration on different-person pairs (``scores``; each pair's two people in
    ``groups_a``/``groups_b``), held out by person.

    For each claimed false-accept rate ``far``: the threshold is set on all pairs at a nominal rate chosen,
    from ``far``, ``far``/2, ``far``/5, ``far``/10, ``far``/20, as the largest whose person-held-out rate is
    at most ``far`` (over ``k`` folds of people, the threshold from the pairs of training people applied to
    the pairs between held-out people; thresholds fitted on some people let more of other people's pairs
    through than their nominal rate). It is ``supported`` when at least ``MIN_IMPOSTORS_BEYOND`` pairs lie
    at or beyond it. Reported: the pooled held-out rate, its per-fold range and a Clopper-Pearson 95 %
    interval on the pooled count (optimistic: pairs share people). ``far_supported``: the smallest claimed
    rate that is supported. With ``genuine`` (same-person pair scores, their person in ``genuine_groups``):
    ``heldout_tar``, the share of held-out people's same-person pairs at or above the threshold fitted on
    the training people's different-person pairs."""
    import numpy as np
    from scipy.stats import binomtest

    s = np.asarray(scores, np.float64)
    a, b = np.asarray(groups_a).astype(str), np.asarray(groups_b).astype(str)
    ok = np.isfinite(s)
    s, a, b = s[ok], a[ok], b[ok]
    people = np.unique(np.concatenate([a, b]))
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(rng.permutation(people), np.arange(len(people)) % k, strict=True))
    fa, fb = np.array([fold_of[p] for p in a]), np.array([fold_of[p] for p in b])
    out: dict[str, Any] = {"n_impostor_pairs": len(s), "n_people": len(people), "k_folds": k,
                           "min_beyond": MIN_IMPOSTORS_BEYOND, "by_far": {}}
    for far in fars:
        tried = []
        chosen = None
        for nominal in (far, far / 2, far / 5, far / 10, far / 20):
            n_fa, n_test, per_fold = _heldout_far(s, fa, fb, k, nominal)
            rate = n_fa / n_test if n_test else float("nan")
            tried.append({"nominal_far": nominal, "heldout_far": rate})
            if n_test and rate <= far:
                chosen = (nominal, n_fa, n_test, per_fold)
                break
        if chosen is None:
            chosen = (far / 20, n_fa, n_test, per_fold)
        nominal, n_fa, n_test, per_fold = chosen
        thr = _threshold_at(s, nominal)
        beyond = int((s >= thr).sum())
        ci = binomtest(n_fa, n_test).proportion_ci(0.95, method="exact") if n_test else None
        held = n_fa / n_test if n_test else float("nan")
        out["by_far"][f"{far:g}"] = {
            "far": far, "nominal_far": nominal, "threshold": thr, "n_impostor_beyond": beyond,
            "supported": bool(beyond >= MIN_IMPOSTORS_BEYOND and held <= far),
            "heldout_far": held, "heldout_n_pairs": n_test,
            "heldout_far_range": [min(per_fold), max(per_fold)] if per_fold else None,
            "heldout_far_ci95": [float(ci.low), float(ci.high)] if ci is not None else None, "tried": tried}
        if genuine is not None:
            gs, gg = np.asarray(genuine, np.float64), np.asarray(genuine_groups).astype(str)
            gf = np.array([fold_of.get(p, -1) for p in gg])
            acc = tot = 0
            for f in range(k):
                train = (fa != f) & (fb != f)
                if not train.any() or not (gf == f).any():
                    continue
                t = _threshold_at(s[train], nominal)
                acc += int((gs[gf == f] >= t).sum())
                tot += int((gf == f).sum())
            out["by_far"][f"{far:g}"].update({"heldout_tar": acc / tot if tot else float("nan"),
                                              "heldout_n_genuine": tot})
    supported = [f for f in fars if out["by_far"][f"{f:g}"]["supported"]]
    out["far_supported"] = min(supported) if supported else None
    return out


def domain_calibration(frames: Any, photo_pairs: Any, decoupler: Any, *, per_clip: int = 16,
                       fars: tuple[float, ...] = DOMAIN_FARS) -> dict[str, Any]:
    """:func:`domain_far` of the raw and the decoupled score on the different-person frame pairs of
    identity-constant footage (:func:`video_impostor_pairs`) together with the labelled photos'
    different-person pairs (``photo_pairs`` with ``same``, ``label_a``, ``label_b``), people held out."""
    import numpy as np

    vp = video_impostor_pairs(frames, per_clip=per_clip)
    ph = photo_pairs[~photo_pairs["same"].astype(bool)].reset_index(drop=True)
    a = np.concatenate([vp["person_a"].to_numpy(str), ("photo:" + ph["label_a"].astype(str)).to_numpy(str)])
    b = np.concatenate([vp["person_b"].to_numpy(str), ("photo:" + ph["label_b"].astype(str)).to_numpy(str)])
    out: dict[str, Any] = {
        "data": {
            "video_pairs": len(vp),
            "photo_pairs": len(ph),
            "per_clip": per_clip,
            "video_people": int(frames["person"].nunique()),
            "video_clips": int(frames["clip_id"].nunique()),
            "pairs": "every pair of sampled faces of two different people (video: up to "
            f"{per_clip} faces per clip, evenly spread) and every different-person "
            "photo pair",
        },
        "decoupler": decoupler.describe(),
    }
    for score in ("raw", "dec"):
        v = (
            vp["sim_raw"].to_numpy(np.float64)
            if score == "raw"
            else np.asarray(decoupler.apply(vp), np.float64)
        )
        p = (
            ph["sim_raw"].to_numpy(np.float64)
            if score == "raw"
            else np.asarray(decoupler.apply(ph), np.float64)
        )
        gen = photo_pairs[photo_pairs["same"].astype(bool)]
        g = (
            gen["sim_raw"].to_numpy(np.float64)
            if score == "raw"
            else np.asarray(decoupler.apply(gen), np.float64)
        )
        res = domain_far(np.concatenate([v, p]), a, b, fars=fars, genuine=g,
                         genuine_groups=("photo:" + gen["label_a"].astype(str)).to_numpy(str))
        for block in res["by_far"].values():  # each domain's share beyond the pooled threshold
            block["video_far"] = float((v >= block["threshold"]).mean())
            block["photo_far"] = float((p >= block["threshold"]).mean()) if len(p) else float("nan")
        out[score] = res
    return out


# -- the drift verdict: calibrated on identity-constant real footage ---------------------------------------
#: nominal one-sided tail probabilities the threshold may sit at (mean + z * SD of the clips' drift levels)
DRIFT_TAILS = (1e-2, 5e-3, 2e-3, 1e-3, 5e-4, 2e-4, 1e-4, 5e-5, 2e-5, 1e-5)
#: at most this share of held-out real clips may be flagged as drifting
DRIFT_MAX_FPR = 0.01


def _drift_threshold(levels: Any, tail: float) -> float:
    import numpy as np
    from scipy.stats import norm

    v = np.asarray(levels, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean() + norm.isf(tail) * v.std(ddof=1)) if len(v) > 1 else float("inf")


def _lopo_rate(levels: Any, people: Any, tail: float) -> float:
    import numpy as np

    levels, people = np.asarray(levels, np.float64), np.asarray(people)
    flagged = [
        bool(levels[i] > _drift_threshold(levels[people != people[i]], tail)) for i in range(len(levels))
    ]
    return float(np.mean(flagged)) if flagged else float("nan")


def _choose_tail(levels: Any, people: Any) -> float:
    """The largest tail (lowest threshold, most sensitive) whose leave-one-person-out rate of flagged
    clips stays within DRIFT_MAX_FPR."""
    for tail in DRIFT_TAILS:
        if _lopo_rate(levels, people, tail) <= DRIFT_MAX_FPR:
            return tail
    return DRIFT_TAILS[-1]


def noise_floor(noise: Any) -> float:
    """The floor of the noise-unit drift statistic: the median within-clip noise of the calibration clips
    (:func:`driftbench.measure.drift.noise_scale`)."""
    import numpy as np

    v = np.asarray(noise, np.float64)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if len(v) else float("nan")


def noise_units(levels: Any, noise: Any, floor: float) -> Any:
    """Drift levels in units of each clip's own noise, floored: level / sqrt(noise^2 + floor^2) (a clip
    without a noise estimate: level / floor); the statistic
    :func:`driftbench.measure.drift.verdict_threshold` compares."""
    import numpy as np

    from driftbench.measure.drift import floored_noise

    return np.asarray(levels, np.float64) / floored_noise(noise, floor)


def calibrate_drift(levels: Any, people: Any, clips: Any, *, window_s: float, min_s: float,
                    score: str = "dec", noise: Any = None) -> dict[str, Any]:
    """The drift verdict's threshold from identity-constant real clips' drift levels
    (:func:`driftbench.measure.drift.drift_level`), people held out.

    With ``noise`` (each clip's :func:`driftbench.measure.drift.noise_scale`) the statistic is the level in
    units of the clip's own noise, floored (:func:`noise_units`, the floor :func:`noise_floor` of the
    calibration clips; docs/DRIFT-VERDICT.md); without, the level itself (the first shipped rule).
    The threshold is mean + z * SD of the clips' statistics, z at the largest tail of ``DRIFT_TAILS`` whose
    leave-one-person-out flag rate is <= ``DRIFT_MAX_FPR``. ``heldout``: nested leave-one-person-out, the
    floor, the tail and the threshold computed without the held-out person's clips, then applied to them:
    the share of held-out real clips flagged (and which). Clips too short for a run have level -inf:
    they cannot be flagged and do not enter the fit."""
    import numpy as np

    levels, people, clips = np.asarray(levels, np.float64), np.asarray(people).astype(str), np.asarray(clips)
    nz = None if noise is None else np.asarray(noise, np.float64)

    def statistic(train: Any) -> tuple[Any, float | None]:
        if nz is None:
            return levels, None
        floor = noise_floor(nz[train])
        return noise_units(levels, nz, floor), floor

    stat, floor = statistic(np.ones(len(levels), bool))
    tail = _choose_tail(stat, people)
    flagged = []
    for p in np.unique(people):
        tr, te = people != p, people == p
        s_tr, _ = statistic(tr)
        thr = _drift_threshold(s_tr[tr], _choose_tail(s_tr[tr], people[tr]))
        flagged += [str(c) for c, lv in zip(clips[te], s_tr[te], strict=True) if lv > thr]
    finite = np.isfinite(stat)
    if finite.sum() < 2:
        from driftbench.errors import UsageError

        raise UsageError(
            f"drift verdict: {int(finite.sum())} identity-constant clip(s) long enough for a drift "
            "level (>= about 8 s) -- fix: calibrate on more or longer identity-constant footage"
        )
    what = ("level / sqrt(noise^2 + noise_floor^2) (level: the drift level; noise: the clip's own "
            "sample-to-sample noise, driftbench.measure.drift.noise_scale; noise_floor: the median noise of "
            "these clips)" if nz is not None else "the drift levels")
    out: dict[str, Any] = {
        "score": score,
        "window_s": window_s,
        "min_s": min_s,
        "statistic": "noise_units" if nz is not None else "level",
        "threshold": _drift_threshold(stat, tail),
        "tail": tail,
        "rule": f"mean + norm.isf(tail) * SD, over identity-constant real clips, of {what}; "
        f"tail: the largest of {list(DRIFT_TAILS)} whose leave-one-person-out flag rate "
        f"is <= {DRIFT_MAX_FPR:g}",
        "n_clips": len(levels),
        "n_clips_with_level": int(finite.sum()),
        "n_people": len(np.unique(people)),
        "level_mean": float(stat[finite].mean()),
        "level_sd": float(stat[finite].std(ddof=1)),
        "level_max": float(stat[finite].max()),
        "heldout": {
            "method": "nested leave-one-person-out",
            "n_flagged": len(flagged),
            "n_clips": len(levels),
            "rate": len(flagged) / len(levels) if len(levels) else float("nan"),
            "flagged": flagged,
        },
    }
    if floor is not None:
        out["noise_floor"] = floor
    return out
