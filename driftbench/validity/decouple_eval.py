"""Figures that judge a decoupled score by what compression cannot fake (issue 14), and the data they
are measured on.

Every figure is scale-free or compares raw and decoupled drift in the same units, and each is held out
by person (GroupKFold over ``person``: the decoupler scoring a person's frames never saw that person):

- ``r2``: within-clip R^2 of the pose + expression differences on the score (clip fixed effects);
- ``morph_dprime``: identity-constant real clips morphed toward another (held-out) person at alpha
  ~0.3 by the synthetic source's morph; per clip, (mean score of un-morphed frames - mean score of
  the same frames morphed) / within-clip SD of the un-morphed frames;
- ``drift ratio``: decoupled / raw mean drop on those morphs and on infinitetalk_dub_9;
- generated clips' levels: decoupled keeps raw's order wherever raw differs by > 0.02;
- verification on the labelled photo pairs with the threshold at FAR 0.1 % calibrated on training
  identities and applied to held-out ones.

Measuring needs the models and ../shared; the figures themselves are pure functions of tables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("driftbench")

#: raw's within-clip R^2 on the control footage is ~0.33; the target is this
TARGET_R2 = 0.10
TARGET_DPRIME_GAIN = 1.2
DRIFT_RATIO_RANGE = (0.85, 1.15)
ORDER_MIN_GAP = 0.02
TARGET_SPEARMAN = 0.9
MORPH_ALPHA = 0.3
R2_FEATURES = ("d_yaw", "d_pitch", "d_expr")


# -- data -------------------------------------------------------------------------------------------------
def stack_emb(values: Sequence[Any]) -> np.ndarray:
    """(N, D) float64 matrix of an object column of embeddings (None -> NaN row)."""
    def ok(v: Any) -> bool:
        return v is not None and np.ndim(v) == 1

    first = next((v for v in values if ok(v)), None)
    if first is None:
        return np.full((len(values), 0), np.nan)
    out = np.full((len(values), len(first)), np.nan)
    for i, v in enumerate(values):
        if ok(v):
            out[i] = np.asarray(v, dtype=np.float64)
    return out


def clip_frames(clip: Any, settings: Any, set_name: str) -> pd.DataFrame | None:
    """measure_clip's per-frame table of one clip with ``emb`` and ``ref_emb`` (the reference
    embedding) on every row; None when the clip could not be measured."""
    from driftbench.measure.clip import measure_clip

    res = measure_clip(clip, settings)
    if res.status != "ok" or res.frames is None:
        log.warning("decouple_eval: %s %s: %s", set_name, clip.clip_id, res.message)
        return None
    f = res.frames.copy()
    if res.reference.get("mode") == "first_frame":
        # the embeddings (for the embedding-space candidates): the track's, and the reference's as measure
        # builds it (mean of the opening's faces), from the signal cache
        from driftbench.faces.base import l2_normalize
        from driftbench.measure.cache import SignalCache
        from driftbench.measure.clip import get_analyzer, video_faces
        from driftbench.measure.track import choose_faces

        faces, _, _ = video_faces(clip.path, get_analyzer(settings), settings.sampling,
                                  SignalCache(Path(settings.cache_dir) if settings.cache_dir else None,
                                              enabled=settings.cache_enabled))
        track = choose_faces(faces, None).set_index("sample_index")
        emb = track["emb"].reindex(f["sample_index"]).to_numpy()
        f["emb"] = emb
        opening = [np.asarray(e, np.float64) for e, t in zip(emb, f["t"], strict=True)
                   if e is not None and t < settings.metrics.reference_s]
        if opening:
            ref = l2_normalize(np.mean(opening, axis=0))
            f["ref_emb"] = pd.Series([ref] * len(f), index=f.index, dtype=object)
    f.insert(0, "clip_id", clip.clip_id)
    f.insert(1, "person", f"{set_name}:{clip.character}")
    f.insert(2, "set", set_name)
    return f


@dataclass
class Material:
    """Everything the figures are measured on, for one weights key."""

    key: str
    control: pd.DataFrame  # identity-constant real footage, reference = first second
    generated: pd.DataFrame  # the real generated clips, reference = their images (or first second)
    pairs: pd.DataFrame  # labelled photo pairs (same, label_a, label_b, sim_raw, d_*, emb, ref_emb)
    faces: pd.DataFrame


def load_material(shared: Path, overrides: Sequence[str] = (), *, generated: bool = True) -> Material:
    """Measure (through the signal cache) the control footage, the generated clips and the photos."""
    from driftbench.config import validate_overrides
    from driftbench.measure.cache import SignalCache
    from driftbench.measure.clip import get_analyzer, settings_from_config
    from driftbench.validity.material import SharedPaths, folder_clips, photo_pairs

    paths = SharedPaths(shared.resolve())
    cfg = validate_overrides(["model=folder", f"model.path={paths.real}", *overrides], False)[0]
    settings = replace(settings_from_config(cfg, threshold=float("nan")), decoupler="none")
    analyzer = get_analyzer(settings)
    key = analyzer.info.threshold_key or settings.backend
    cache = SignalCache(
        Path(settings.cache_dir) if settings.cache_dir else None, enabled=settings.cache_enabled
    )
    faces, pairs = photo_pairs(analyzer, paths.deepface, cache)
    s_ctrl = replace(settings, reference="first_frame")
    ctrl = [clip_frames(c, s_ctrl, "real") for c in folder_clips(paths.real, cfg)]
    ctrl += [clip_frames(c, s_ctrl, "liveportrait") for c in folder_clips(paths.driving, cfg)]
    gen: list[pd.DataFrame | None] = []
    if generated:
        s_gen = replace(settings, reference="auto")
        gen = [clip_frames(c, s_gen, "generated") for c in folder_clips(paths.generated, cfg)]
    cat = lambda xs: pd.concat([x for x in xs if x is not None], ignore_index=True) if any(  # noqa: E731
        x is not None for x in xs) else pd.DataFrame()
    return Material(key, cat(ctrl), cat(gen), pairs, faces)


# -- morphs of real footage (the synthetic source's morph) ------------------------------------------------
#: renders per clip: (name, schedule, strength, target): "self" = a later frame of the same clip
MORPHS: tuple[tuple[str, str, float, str], ...] = (
    ("none", "none", 0.0, "other"),
    ("step", "step", MORPH_ALPHA, "other"),
    ("ramp", "late", 0.6, "other"),
    ("self", "late", 0.6, "self"),
    ("shuffle", "shuffled", 0.6, "other"),
    ("shuffle-self", "shuffled", 0.6, "self"),
)


@dataclass(frozen=True)
class ShuffledSchedule:
    """alpha levels evenly spaced in [0, strength], in a seeded random order over the frames after
    ``onset_s`` (0 before): injected identity change that is not confounded with time (a time ramp
    also correlates with the slow pose/expression wander away from the reference)."""

    strength: float
    onset_s: float
    seed: int = 0

    def alpha(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        out = np.zeros_like(t)
        after = np.flatnonzero(t >= self.onset_s - 1e-9)
        levels = np.linspace(0.0, self.strength, len(after))
        out[after] = np.random.default_rng(self.seed).permutation(levels)
        return out
MORPH_DURATION_S = 16.0
MORPH_FPS = 2.0
MORPH_ONSET_S = 1.0  # the first second (the reference) stays the source's


def _seed(text: str) -> int:
    import hashlib

    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def _frame_png(clip_path: Path, t: float, out: Path) -> Path:
    import cv2

    from driftbench.measure import video

    if not out.is_file():
        last = None
        for fr in video.sample(clip_path, 2.0, end=t + 0.25):  # the frame at t (decoding from the start)
            last = fr
        if last is None:
            raise ValueError(f"{clip_path}: no frame at {t} s")
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), last.image)
    return out


def morph_targets(control: pd.DataFrame, folds: int = 5) -> dict[str, tuple[str, float]]:
    """Per clip, the clip (and time) whose face its morph moves toward: another person of the same
    person-fold (so a decoupler scoring the clip never saw the target either), at its middle."""
    from sklearn.model_selection import GroupKFold

    clips = control.groupby("clip_id").agg(person=("person", "first"), t_end=("t", "max")).reset_index()
    out: dict[str, tuple[str, float]] = {}
    for _, te in GroupKFold(min(folds, clips["person"].nunique())).split(clips, groups=clips["person"]):
        sub = clips.iloc[te].reset_index(drop=True)
        for i, row in sub.iterrows():
            for k in range(1, len(sub)):
                cand = sub.iloc[(int(i) + k) % len(sub)]  # type: ignore[call-overload]
                if cand["person"] != row["person"]:
                    out[str(row["clip_id"])] = (str(cand["clip_id"]), min(float(cand["t_end"]) / 2, 8.0))
                    break
    return out


def render_morphs(clip_paths: dict[str, Path], control: pd.DataFrame, work: Path, *, device: str = "cpu",
                  only: Sequence[str] | None = None) -> pd.DataFrame:
    """Render every clip's morphs (:data:`MORPHS`) with :func:`driftbench.sources.synthetic.render_real`;
    returns (clip_id, person, morph, target, path, gt_csv). Rendered files are reused."""
    from types import SimpleNamespace

    from driftbench.mitigations.warp import FaceMesh
    from driftbench.sources import synthetic as S

    targets = morph_targets(control)
    persons = control.groupby("clip_id")["person"].first().to_dict()
    cfg = SimpleNamespace(fps=MORPH_FPS, duration_s=MORPH_DURATION_S, max_side=640)
    rows = []
    with FaceMesh(device=device) as mesh:
        for cid, path in sorted(clip_paths.items()):
            if cid not in targets or (only is not None and cid not in only):
                continue
            for name, sched, strength, tgt in MORPHS:
                out = work / f"{Path(cid).stem}.{name}.mp4"
                gt = out.with_suffix(".csv")
                tcid, tt = (cid, 8.0) if tgt == "self" else targets[cid]
                if not (out.is_file() and gt.is_file()):
                    png = _frame_png(clip_paths[tcid], tt, work / "targets" / f"{Path(tcid).stem}_{tt:g}.png")
                    portrait = S.load_portrait(S.PhotoSpec(png.stem, png, "", None), mesh)
                    if portrait is None:
                        log.warning("decouple_eval: no usable target face in %s", png)
                        continue
                    onset = None if sched == "none" else MORPH_ONSET_S
                    schedule: Any = (
                        ShuffledSchedule(strength, MORPH_ONSET_S, seed=_seed(cid))
                        if sched == "shuffled"
                        else S.Schedule(sched, strength, MORPH_DURATION_S, onset)
                    )
                    res = S.render_real(str(path), portrait, schedule, cfg, out, device=device, mesh=mesh)
                    pd.DataFrame({"t": res["t"], "alpha": res["alpha"]}).to_csv(gt, index=False)
                rows.append({"clip_id": cid, "person": persons[cid], "morph": name, "target": tcid,
                             "path": str(out), "gt_csv": str(gt)})
    return pd.DataFrame(rows)


def measure_morphs(index: pd.DataFrame, shared: Path, overrides: Sequence[str] = ()) -> pd.DataFrame:
    """Per-frame tables of the rendered morphs (reference = their first, un-morphed second), with the
    injected ``alpha`` per frame and ``morph``/``source_clip``/``target`` columns."""
    from driftbench.config import validate_overrides
    from driftbench.measure.clip import settings_from_config
    from driftbench.sources.base import Clip
    from driftbench.validity.material import SharedPaths

    paths = SharedPaths(shared.resolve())
    cfg = validate_overrides(["model=folder", f"model.path={paths.real}", *overrides], False)[0]
    s = replace(settings_from_config(cfg, threshold=float("nan")), decoupler="none", reference="first_frame")
    out = []
    for row in index.itertuples():
        clip = Clip(clip_id=f"{row.clip_id}#{row.morph}", path=str(row.path), character=str(row.person))
        f = clip_frames(clip, s, "morph")
        if f is None:
            continue
        gt = pd.read_csv(str(row.gt_csv))
        f["person"] = row.person
        f["alpha"] = np.interp(
            f["t"].to_numpy(np.float64), gt["t"].to_numpy(np.float64), gt["alpha"].to_numpy(np.float64)
        )
        f["morph"], f["source_clip"], f["target"] = row.morph, row.clip_id, row.target
        out.append(f)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


# -- methods and held-out scoring -------------------------------------------------------------------------
#: a method fits a decoupler from training footage frames and training photo pairs
Method = Callable[[pd.DataFrame, pd.DataFrame], Any]


def method_raw(frames: pd.DataFrame, pairs: pd.DataFrame) -> Any:
    from driftbench.measure.decouple import IdentityDecoupler

    return IdentityDecoupler()


def method_gated_lift(frames: pd.DataFrame, pairs: pd.DataFrame) -> Any:
    """The first release's capped gated lift (selection included)."""
    from driftbench.measure import decouple as D

    return D.GatedLiftDecoupler(D.select_and_fit(frames.reset_index(drop=True), pairs).params)


def method_gated_shift(frames: pd.DataFrame, pairs: pd.DataFrame) -> Any:
    from driftbench.measure import decouple as D

    return D.GatedShiftDecoupler(D.select_shift(frames, pairs)[0])


def method_shift(options: Any) -> Method:
    """The uncapped form fitted with other :class:`~driftbench.measure.decouple.ShiftOptions` (a variant)."""
    from driftbench.measure import decouple as D

    return lambda frames, pairs: D.GatedShiftDecoupler(D.select_shift(frames, pairs, options=options)[0])


def _feature_sets(text: str) -> tuple[tuple[str, ...], ...]:
    """``yaw+expr|yaw+pitch+expr`` -> (("d_yaw", "d_expr"), ("d_yaw", "d_pitch", "d_expr"))."""
    return tuple(tuple(f"d_{f}" for f in fs.split("+")) for fs in text.split("|"))


def parse_shift_variant(name: str) -> Any:
    """``gated-shift[q=0.95,q_yaw=0.8,shrink=0.9,gate=normal,width=0.03,tail=1e-4,feats=yaw+expr|yaw+roll+expr]``
    -> ShiftOptions (fields not named keep version 1's values,
    :data:`~driftbench.measure.decouple.SHIFT_V1_OPTIONS`, so a variant names what it changes from the first
    uncapped release); raises ValueError on anything else."""
    from driftbench.measure import decouple as D

    if not (name.startswith("gated-shift[") and name.endswith("]")):
        raise ValueError(f"{name!r}: not a gated-shift variant")
    kw: dict[str, Any] = {}
    keys: dict[str, tuple[str, Callable[[str], Any]]] = {
        "q": ("support_quantile", float), "shrink": ("shrink", float), "gate": ("gate_hi", str),
        "width": ("gate_width", float), "tail": ("gate_tail", float),
        "feats": ("feature_sets", _feature_sets)}
    for item in filter(None, name[len("gated-shift["):-1].split(",")):
        k, sep, v = item.partition("=")
        if sep and k.strip().startswith("q_"):  # a per-feature support quantile, q_yaw=0.8
            kw.setdefault("feature_quantiles", ())
            kw["feature_quantiles"] += ((f"d_{k.strip()[2:]}", float(v)),)
            continue
        if not sep or k.strip() not in keys:
            raise ValueError(
                f"{name!r}: expected q=, q_<feature>=, shrink=, gate=, width=, tail= or feats= items, "
                f"got {item!r}"
            )
        field_name, conv = keys[k.strip()]
        kw[field_name] = conv(v.strip())
    return replace(D.SHIFT_V1_OPTIONS, **kw)


def _v1() -> Any:
    from driftbench.measure import decouple as D

    return D.SHIFT_V1_OPTIONS


def method_for(name: str) -> Method:
    """A named method of :data:`METHODS` or a ``gated-shift[...]`` variant (:func:`parse_shift_variant`)."""
    if name in METHODS:
        return METHODS[name]
    return method_shift(parse_shift_variant(name))


class NapDecoupler:
    """Research candidate (not shipped): nuisance attribute projection of speaker/face verification.
    The ``k`` leading directions of the within-clip covariance of the embeddings (identity-constant
    footage: what varies there is pose, expression, light) are projected out, then cosine."""

    name = "nap"
    version = "research"

    def __init__(self, frames: pd.DataFrame, k: int) -> None:
        e = stack_emb(frames["emb"].tolist())
        ok = np.isfinite(e).all(axis=1)
        dev = pd.DataFrame(e[ok]) - pd.DataFrame(e[ok]).groupby(frames["clip_id"].to_numpy()[ok]).transform(
            "mean"
        )
        _, vecs = np.linalg.eigh(dev.to_numpy().T @ dev.to_numpy())
        v = vecs[:, ::-1][:, :k]
        self.proj = np.eye(e.shape[1]) - v @ v.T
        self.k = k

    def apply(self, table: pd.DataFrame) -> np.ndarray:
        if "emb" not in table or "ref_emb" not in table:
            return np.full(len(table), np.nan)
        ea, eb = stack_emb(table["emb"].tolist()), stack_emb(table["ref_emb"].tolist())
        if ea.shape[1] != self.proj.shape[0] or eb.shape[1] != self.proj.shape[0]:
            return np.full(len(table), np.nan)
        a, b = ea @ self.proj, eb @ self.proj
        return np.asarray((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1), np.float64)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "k": self.k}


def method_nap(k: int) -> Method:
    return lambda frames, pairs: NapDecoupler(frames, k)


class WccnDecoupler(NapDecoupler):
    """Research candidate (not shipped): within-class covariance normalisation. Cosine after whitening
    by the within-clip covariance of the embeddings, shrunk toward its mean eigenvalue by ``lam``."""

    name = "wccn"

    def __init__(self, frames: pd.DataFrame, lam: float) -> None:
        e = stack_emb(frames["emb"].tolist())
        ok = np.isfinite(e).all(axis=1)
        dev = (
            pd.DataFrame(e[ok])
            - pd.DataFrame(e[ok]).groupby(frames["clip_id"].to_numpy()[ok]).transform("mean")
        ).to_numpy()
        w = dev.T @ dev / len(dev)
        w = (1.0 - lam) * w + lam * np.trace(w) / len(w) * np.eye(len(w))
        vals, vecs = np.linalg.eigh(w)
        self.proj = vecs @ np.diag(vals ** -0.5) @ vecs.T
        self.k = -1
        self.lam = lam

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "lam": self.lam}


def method_wccn(lam: float) -> Method:
    return lambda frames, pairs: WccnDecoupler(frames, lam)


METHODS: dict[str, Method] = {
    "raw": method_raw,
    "gated-lift": method_gated_lift,
    "gated-shift": method_gated_shift,
    "gated-shift-v1": lambda frames, pairs: method_shift(_v1())(frames, pairs),
    "nap-8": method_nap(8),
    "nap-16": method_nap(16),
    "wccn-0.4": method_wccn(0.4),
}


def person_folds(people: Sequence[str], k: int = 5) -> dict[str, int]:
    """Person -> fold (GroupKFold over the sorted distinct people, deterministic)."""
    from sklearn.model_selection import GroupKFold

    uniq = np.array(sorted(set(people)))
    out: dict[str, int] = {}
    for f, (_, te) in enumerate(GroupKFold(min(k, len(uniq))).split(uniq, groups=uniq)):
        out.update({str(p): f for p in uniq[te]})
    return out


@dataclass
class Scored:
    """Out-of-fold decoupled scores of one method on every table."""

    method: str
    control: np.ndarray
    morphs: np.ndarray | None
    generated: np.ndarray | None
    pairs: np.ndarray  # each pair scored by a decoupler whose gate never saw either identity
    pair_threshold: np.ndarray  # the FAR 0.1 % threshold of the pair's training identities
    n_impostors_beyond: np.ndarray  # training different-person pairs at or above that threshold


def score_heldout(method: Method, name: str, control: pd.DataFrame, pairs: pd.DataFrame,
                  morphs: pd.DataFrame | None = None, generated: pd.DataFrame | None = None, *, k: int = 5,
                  photo_k: int = 5, far: float = 0.001) -> Scored:
    """Score every table out of sample: footage and its morphs by a decoupler fitted without the
    person's fold (the morph targets lie in the same fold), the generated clips by one fitted on all
    footage, and each photo pair by one whose photo side (gate) and threshold come from the identities
    outside the pair's folds."""
    from driftbench.measure import decouple as D
    from driftbench.validity.verification import verification_metrics

    fit_frames = D.fit_frames(control)
    folds = person_folds(control["person"].astype(str).tolist(), k)
    ctrl = np.full(len(control), np.nan)
    mor = np.full(len(morphs), np.nan) if morphs is not None else None
    for f in sorted(set(folds.values())):
        train = fit_frames[fit_frames["person"].map(folds) != f]
        dec = method(train, pairs)
        m = (control["person"].map(folds) == f).to_numpy()
        ctrl[m] = dec.apply(control[m])
        if morphs is not None and mor is not None:
            mm = (morphs["person"].map(folds) == f).to_numpy()
            if mm.any():
                mor[mm] = dec.apply(morphs[mm])
    gen = method(fit_frames, pairs).apply(generated) if generated is not None else None
    ids = sorted(set(pairs["label_a"]) | set(pairs["label_b"]))
    id_fold = person_folds(ids, photo_k)
    fa = pairs["label_a"].map(id_fold).to_numpy()
    fb = pairs["label_b"].map(id_fold).to_numpy()
    sc = np.full(len(pairs), np.nan)
    thr = np.full(len(pairs), np.nan)
    nbeyond = np.zeros(len(pairs), dtype=int)
    nf = max(id_fold.values()) + 1
    for f1 in range(nf):
        for f2 in range(f1, nf):
            test = ((fa == f1) & (fb == f2)) | ((fa == f2) & (fb == f1))
            if not test.any():
                continue
            train = ~np.isin(fa, (f1, f2)) & ~np.isin(fb, (f1, f2))
            tp = pairs[train].reset_index(drop=True)
            dec = method(fit_frames, tp)
            s_train = dec.apply(tp)
            vm = verification_metrics(s_train, tp["same"].to_numpy(bool), (far,))
            t = float(vm[f"threshold_at_far_{far:g}"])
            sc[test] = dec.apply(pairs[test])
            thr[test] = t
            nbeyond[test] = int((s_train[~tp["same"].to_numpy(bool)] >= t).sum())
    return Scored(name, ctrl, mor, gen, sc, thr, nbeyond)


# -- figures ----------------------------------------------------------------------------------------------
def _boot_ci(groups: np.ndarray, stat: Callable[[np.ndarray], float], *, n: int = 999, seed: int = 0
             ) -> tuple[float, float]:
    """95 % percentile bootstrap CI of ``stat(indices of the drawn groups)`` resampling whole groups
    (clips or people: never pooled, autocorrelated frames)."""
    from scipy.stats import bootstrap

    if len(groups) < 3:
        return float("nan"), float("nan")
    res = bootstrap((np.arange(len(groups)),), lambda i: stat(np.asarray(i, dtype=int)), vectorized=False,
                    n_resamples=n, method="percentile", random_state=seed, confidence_level=0.95)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _stat(v: np.ndarray, fn: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], float]:
    def stat(i: np.ndarray) -> float:
        return float(fn(v[i]))

    return stat


def r2_figure(control: pd.DataFrame, score: np.ndarray, features: Sequence[str] = ("d_yaw", "d_expr"),
              *, n_boot: int = 499) -> dict[str, Any]:
    """Within-clip R^2 of the pose + expression differences on ``score`` (frames outside the reference
    window), with a bootstrap CI over people (a person drawn twice counts as two sets of clips)."""
    from driftbench.measure import decouple as D

    ok = (
        (control["t"] >= 1.0 - 1e-9).to_numpy()
        & control["face_found"].astype(bool).to_numpy()
        & np.isfinite(np.asarray(score, np.float64))
    )
    f = control[ok].reset_index(drop=True)
    s = np.asarray(score, np.float64)[ok]
    people = np.array(sorted(f["person"].unique()))
    index = {p: np.flatnonzero(f["person"].to_numpy() == p) for p in people}
    r2 = D.sensitivity(f, s, features)["r2"]

    def stat(idx: np.ndarray) -> float:
        rows = np.concatenate([index[people[i]] for i in idx])
        labels = np.concatenate([[f"{c}#{d}" for c in f["clip_id"].to_numpy()[index[people[i]]]]
                                 for d, i in enumerate(idx)])
        return D.sensitivity(f.iloc[rows].assign(clip_id=labels), s[rows], features)["r2"]

    return {"r2": r2, "ci95": _boot_ci(people, stat, n=n_boot), "n_frames": len(f), "n_people": len(people),
            "features": list(features)}


def morph_figures(morphs: pd.DataFrame, raw: np.ndarray, dec: np.ndarray, *, onset_s: float = MORPH_ONSET_S,
                  n_boot: int = 999) -> dict[str, Any]:
    """Detectability and drift kept, per clip, from the ``none`` and ``step`` renders of each clip (the
    same frames un-morphed and at alpha ``MORPH_ALPHA``), and the per-clip Spearman correlation of the
    injected alpha with the similarity drop on the ``ramp`` renders and their same-person control
    (``self``)."""
    from scipy.stats import spearmanr

    m = morphs.assign(raw=np.asarray(raw, np.float64), dec=np.asarray(dec, np.float64))
    m = m[(m["t"] >= onset_s - 1e-9) & m["face_found"].astype(bool)]
    rows = []
    for cid, g in m.groupby("source_clip", sort=True):
        by = {k: v.set_index("sample_index") for k, v in g.groupby("morph")}
        row: dict[str, Any] = {"clip_id": cid}
        if "none" in by and "step" in by:
            common = by["none"].index.intersection(by["step"].index)
            a, b = by["none"].loc[common], by["step"].loc[common]
            for col in ("raw", "dec"):
                sd = float(a[col].std(ddof=1))
                drop = float(a[col].mean() - b[col].mean())
                row[f"drift_{col}"] = drop
                row[f"dprime_{col}"] = drop / sd if sd > 0 else float("nan")
        for name in ("ramp", "self", "none", "shuffle", "shuffle-self"):
            if name not in by:
                continue
            r = by[name]
            for col in ("raw", "dec"):
                if name != "none" and r["alpha"].nunique() > 2 and len(r) >= 5:
                    row[f"spearman_{name}_{col}"] = float(spearmanr(r["alpha"], -r[col]).statistic)
                t = r["t"].to_numpy()
                first = r.loc[t < onset_s + 2.0, col]
                last = r.loc[t >= t.max() - 2.0, col]
                row[f"end_drift_{name}_{col}"] = float(first.median() - last.median())
        rows.append(row)
    per = pd.DataFrame(rows)
    out: dict[str, Any] = {"per_clip": per, "n_clips": len(per), "alpha": MORPH_ALPHA}
    if {"dprime_raw", "dprime_dec"} <= set(per):
        ok = per[["dprime_raw", "dprime_dec", "drift_raw", "drift_dec"]].notna().all(axis=1).to_numpy()
        p = per[ok].reset_index(drop=True)

        def dratio(i: np.ndarray) -> float:
            return float(p["dprime_dec"].to_numpy()[i].mean() / p["dprime_raw"].to_numpy()[i].mean())

        def kratio(i: np.ndarray) -> float:
            return float(p["drift_dec"].to_numpy()[i].mean() / p["drift_raw"].to_numpy()[i].mean())

        out.update({"n_paired": int(ok.sum()), "dprime_raw": float(p["dprime_raw"].mean()),
                    "dprime_dec": float(p["dprime_dec"].mean()), "dprime_ratio": dratio(np.arange(len(p))),
                    "dprime_ratio_ci95": _boot_ci(np.arange(len(p)), dratio, n=n_boot),
                    "dprime_ratio_median_clip": float((p["dprime_dec"] / p["dprime_raw"]).median()),
                    "drift_raw": float(p["drift_raw"].mean()), "drift_dec": float(p["drift_dec"].mean()),
                    "drift_ratio": kratio(np.arange(len(p))),
                    "drift_ratio_ci95": _boot_ci(np.arange(len(p)), kratio, n=n_boot)})
    for name in ("ramp", "self", "shuffle", "shuffle-self"):
        for col in ("raw", "dec"):
            c = f"spearman_{name}_{col}"
            if c in per:
                v = per[c].dropna().to_numpy(np.float64)
                out[c] = {"median": float(np.median(v)) if len(v) else float("nan"), "n": len(v),
                          "ci95": _boot_ci(np.arange(len(v)), _stat(v, np.median), n=n_boot)}
            c = f"end_drift_{name}_{col}"
            if c in per:
                v = per[c].dropna().to_numpy(np.float64)
                out[c] = {"mean": float(v.mean()) if len(v) else float("nan"), "n": len(v),
                          "ci95": _boot_ci(np.arange(len(v)), _stat(v, np.mean), n=n_boot)}
    return out


def drift_first_last(frames: pd.DataFrame, col: str, start_s: float = 1.0, window_s: float = 5.0) -> float:
    """Median over [start_s, start_s + window_s) minus median over the last ``window_s`` (the hidden
    real pair's figure: opening from 1 s, first-to-last 5 s drop)."""
    f = frames[frames["face_found"].astype(bool)]
    t = f["t"].to_numpy()
    first = f.loc[(t >= start_s - 1e-9) & (t < start_s + window_s), col]
    last = f.loc[t >= t.max() - window_s + 1e-9, col]
    return float(first.median() - last.median())


def order_kept(levels_raw: np.ndarray, levels_dec: np.ndarray, min_gap: float = ORDER_MIN_GAP
               ) -> tuple[int, int, list[tuple[int, int]]]:
    """(pairs checked, pairs whose order flipped, the flipped index pairs): every pair of clips whose raw
    levels differ by more than ``min_gap`` must keep raw's order under the decoupled score."""
    a, b = np.triu_indices(len(levels_raw), k=1)
    gap = levels_raw[a] - levels_raw[b]
    chk = np.abs(gap) > min_gap
    flip = chk & (np.sign(levels_dec[a] - levels_dec[b]) != np.sign(gap))
    return int(chk.sum()), int(flip.sum()), [(int(i), int(j)) for i, j in zip(a[flip], b[flip], strict=True)]


def photo_figures(pairs: pd.DataFrame, sc: Scored, far: float = 0.001) -> dict[str, Any]:
    """Verification with out-of-fold scores: d', margin and the held-out TAR / FAR at the threshold of
    the training identities."""
    from driftbench.validity.verification import verification_metrics

    same = pairs["same"].to_numpy(bool)
    vm = verification_metrics(sc.pairs, same, (far,))
    return {"d_prime": vm["d_prime"], "margin": vm["margin"], "auc": vm["auc"], "diff_mean": vm["diff_mean"],
            "tar_heldout": float((sc.pairs[same] >= sc.pair_threshold[same]).mean()),
            "far_heldout": float((sc.pairs[~same] >= sc.pair_threshold[~same]).mean()),
            "n_diff_heldout_beyond": int((sc.pairs[~same] >= sc.pair_threshold[~same]).sum()),
            "min_train_impostors_beyond": int(sc.n_impostors_beyond.min()),
            "n_same": int(same.sum()), "n_diff": int((~same).sum())}


def drift_end(frames: pd.DataFrame, col: str, reference_s: float = 1.0, opening_s: float = 2.0,
              window_s: float = 2.0) -> float:
    """The benchmark's end-of-clip drift: the opening after the reference window, median over
    [reference_s, reference_s + opening_s), minus the median over the last ``window_s``."""
    f = frames[frames["face_found"].astype(bool)]
    t = f["t"].to_numpy()
    opening = f.loc[(t >= reference_s - 1e-9) & (t < reference_s + opening_s - 1e-9), col]
    last = f.loc[t >= t.max() - window_s + 1e-9, col]
    return float(opening.median() - last.median())


# -- all figures of one method ----------------------------------------------------------------------------
DRIFT_CLIP = "infinitetalk_dub_9.mp4"


def figures(mat: Material, morphs: pd.DataFrame | None, method: str = "gated-shift", *, n_boot: int = 999
            ) -> dict[str, Any]:
    """Every held-out figure of ``method`` beside raw (see the module docstring), with 95 % bootstrap
    CIs over people (R^2) or clips (morphs)."""
    sc = score_heldout(method_for(method), method, mat.control, mat.pairs, morphs,
                       mat.generated if not mat.generated.empty else None)
    out: dict[str, Any] = {
        "method": method,
        "key": mat.key,
        "n_control_clips": int(mat.control["clip_id"].nunique()),
        "n_people": int(mat.control["person"].nunique()),
    }
    raw_ctrl = mat.control["sim_raw"].to_numpy(np.float64)
    for feats, tag in ((("d_yaw", "d_expr"), "r2"), (R2_FEATURES, "r2_pitch")):
        out[tag] = {"raw": r2_figure(mat.control, raw_ctrl, feats, n_boot=n_boot // 2),
                    "dec": r2_figure(mat.control, sc.control, feats, n_boot=n_boot // 2)}
    from driftbench.measure import decouple as D

    ff = D.fit_frames(mat.control.assign(_dec=sc.control))
    sd_raw = ff.groupby("clip_id")["sim_raw"].std().median()
    sd_dec = ff.groupby("clip_id")["_dec"].std().median()
    out["within_clip_sd"] = {"raw": float(sd_raw), "dec": float(sd_dec)}
    if morphs is not None and sc.morphs is not None and not morphs.empty:
        mf = morph_figures(morphs, morphs["sim_raw"].to_numpy(np.float64), sc.morphs, n_boot=n_boot)
        mf["per_clip"] = mf["per_clip"].to_dict(orient="records")
        out["morphs"] = mf
    if sc.generated is not None:
        g = mat.generated.assign(_dec=sc.generated)
        it = g[g["clip_id"].map(lambda c: Path(str(c)).name) == DRIFT_CLIP]
        if not it.empty:
            out["drift_clip"] = {"clip": DRIFT_CLIP,
                                 "end_drift": {"raw": drift_end(it, "sim_raw"), "dec": drift_end(it, "_dec")},
                                 "first_last_5s": {"raw": drift_first_last(it, "sim_raw"),
                                                   "dec": drift_first_last(it, "_dec")}}
        lv = g.groupby("clip_id")[["sim_raw", "_dec"]].mean().dropna()  # a candidate may not score every clip
        n, nflip, flips = order_kept(lv["sim_raw"].to_numpy(), lv["_dec"].to_numpy())
        out["generated_order"] = {"n_clips": len(lv), "pairs_checked": n, "flipped": nflip,
                                  "flipped_pairs": [(str(lv.index[i]), str(lv.index[j])) for i, j in flips],
                                  "levels": {str(k): [float(a), float(b)] for k, (a, b) in lv.iterrows()}}
    out["photos"] = {
        "raw": photo_figures(mat.pairs, score_heldout(method_raw, "raw", mat.control, mat.pairs)),
        "dec": photo_figures(mat.pairs, sc),
    }
    return out


# -- command ----------------------------------------------------------------------------------------------
def control_clip_paths(shared: Path) -> dict[str, Path]:
    """clip_id -> file of the identity-constant footage (the folder source names clips by file name)."""
    from driftbench.validity.material import SharedPaths

    p = SharedPaths(shared.resolve())
    real = pd.read_csv(p.real)
    out = {str(f): p.real.parent / str(f) for f in real["file"]}
    out.update({f.name: f for f in sorted(p.driving.glob("*.mp4"))})
    return out


def morph_material(mat: Material, shared: Path, work: Path, overrides: Sequence[str] = ()) -> pd.DataFrame:
    """Render (once; files are reused) and measure the morphs of every control clip."""
    paths = {k: v for k, v in control_clip_paths(shared).items() if k in set(mat.control["clip_id"])}
    index = render_morphs(paths, mat.control, work)
    return measure_morphs(index, shared, overrides)


def summary_lines(fig: dict[str, Any]) -> list[str]:
    """One line per figure beside its target (markdown bullets)."""
    def ci(v: Any) -> str:
        return f" (95% CI {v[0]:.3f}-{v[1]:.3f})" if v and np.all(np.isfinite(v)) else ""

    out = [f"- key `{fig['key']}`, method `{fig['method']}`: {fig['n_control_clips']} control clips, "
           f"{fig['n_people']} people (5 person folds)"]
    r = fig["r2"]
    out.append(
        f"- (a) within-clip R^2 of |d_yaw| + d_expr: raw {r['raw']['r2']:.3f}{ci(r['raw']['ci95'])} -> "
        f"{r['dec']['r2']:.3f}{ci(r['dec']['ci95'])} (target <= {TARGET_R2}); with pitch: raw "
        f"{fig['r2_pitch']['raw']['r2']:.3f} -> {fig['r2_pitch']['dec']['r2']:.3f}"
    )
    out.append(f"- within-clip SD (median clip): raw {fig['within_clip_sd']['raw']:.4f} -> "
               f"{fig['within_clip_sd']['dec']:.4f}")
    m = fig.get("morphs")
    if m and "dprime_ratio" in m:
        out.append(
            f"- (b) morph alpha {m['alpha']}: d' raw {m['dprime_raw']:.2f} -> {m['dprime_dec']:.2f}, ratio "
            f"{m['dprime_ratio']:.3f}{ci(m['dprime_ratio_ci95'])} (target >= {TARGET_DPRIME_GAIN}; median "
            "clip "
            f"{m['dprime_ratio_median_clip']:.3f}; {m['n_paired']} clips)"
        )
        out.append(f"- (c) morph drift kept: raw {m['drift_raw']:.4f} -> {m['drift_dec']:.4f}, ratio "
                   f"{m['drift_ratio']:.3f}{ci(m['drift_ratio_ci95'])} (target {DRIFT_RATIO_RANGE[0]}-"
                   f"{DRIFT_RATIO_RANGE[1]})")
        labels = {"ramp": "other person, alpha rising 0 -> 0.6 over time",
                  "self": "same-person control, alpha rising 0 -> 0.6 over time",
                  "shuffle": "other person, alpha 0 -> 0.6 in shuffled order",
                  "shuffle-self": "same-person control, alpha 0 -> 0.6 in shuffled order"}
        for name, label in labels.items():
            for col in ("raw", "dec"):
                sp = m.get(f"spearman_{name}_{col}")
                ed = m.get(f"end_drift_{name}_{col}")
                if sp:
                    out.append(
                        f"- synthetic {name} ({label}) {col}: per-clip Spearman(alpha, drop) median "
                        f"{sp['median']:.3f}{ci(sp['ci95'])} (n {sp['n']})"
                        + (
                            f"; end drift {ed['mean']:.4f}{ci(ed['ci95'])}"
                            if ed and name in ("ramp", "self")
                            else ""
                        )
                    )
    d = fig.get("drift_clip")
    if d:
        e, f5 = d["end_drift"], d["first_last_5s"]
        out.append(
            f"- (c) {d['clip']}: end drift (opening [1,3) s - last 2 s) raw {e['raw']:.3f} -> "
            f"{e['dec']:.3f}, "
            f"ratio {e['dec'] / e['raw']:.3f}; first-to-last 5 s raw {f5['raw']:.3f} -> {f5['dec']:.3f}, "
            "ratio "
            f"{f5['dec'] / f5['raw']:.3f}"
        )
    o = fig.get("generated_order")
    if o:
        out.append(
            f"- (c) generated levels (clip means, {o['n_clips']} clips): {o['flipped']} of "
            f"{o['pairs_checked']} "
            f"pairs with raw gap > {ORDER_MIN_GAP} flipped"
            + (
                ": "
                + "; ".join(f"{a} / {b}" for a, b in o["flipped_pairs"][:8])
                + ("; ..." if len(o["flipped_pairs"]) > 8 else "")
                if o["flipped_pairs"]
                else ""
            )
        )
    for col in ("raw", "dec"):
        p = fig["photos"][col]
        out.append(
            f"- separation {col} ({p['n_same']} same / {p['n_diff']} different pairs, out-of-fold): d' "
            f"{p['d_prime']:.2f}, margin {p['margin']:+.3f}, held-out TAR {p['tar_heldout']:.3f} at the "
            f"training identities' FAR 0.1% threshold (held-out FAR {p['far_heldout']:.4f}, "
            f"{p['n_diff_heldout_beyond']} held-out different pairs beyond it)"
        )
    return out


# -- rows of `driftbench validate` ------------------------------------------------------------------------
def validate_rows(fig: dict[str, Any]) -> list[Any]:
    """The figures as validate's rows (section ``decoupling``; the synthetic morphs in ``synthetic``)."""
    from driftbench.validity.material import Row, check

    sec = "decoupling"

    def ci(v: Any) -> str:
        return f"95% CI {v[0]:.3f}-{v[1]:.3f}" if v and np.all(np.isfinite(v)) else ""

    folds = (
        f"held out by person (5 folds, {fig['n_people']} people, {fig['n_control_clips']} clips): each "
        "person "
        "scored by a decoupler fitted, selection included, without their fold"
    )
    r = fig["r2"]
    rows = [
        Row(
            sec,
            "within-clip R^2 of |d_yaw| + d_expr on the score",
            r["raw"]["r2"],
            r["dec"]["r2"],
            f"<= {TARGET_R2} (raw 0.33)",
            check(r["dec"]["r2"] <= TARGET_R2),
            f"{folds}; raw {ci(r['raw']['ci95'])}, decoupled {ci(r['dec']['ci95'])} (bootstrap over people). "
            "A linear correction in these features removes their linear trend nearly by construction; see "
            "the "
            "morph rows for what it costs",
        ),
        Row(
            sec,
            "within-clip R^2 of |d_yaw| + |d_pitch| + d_expr",
            fig["r2_pitch"]["raw"]["r2"],
            fig["r2_pitch"]["dec"]["r2"],
            "",
            "info",
        ),
        Row(
            sec,
            "within-clip SD (median clip)",
            fig["within_clip_sd"]["raw"],
            fig["within_clip_sd"]["dec"],
            "",
            "info",
            "the noise against which drift is seen",
        ),
    ]
    m = fig.get("morphs")
    if m and "dprime_ratio" in m:
        rows += [
            Row(
                sec,
                f"morph detectability d' (alpha {m['alpha']} toward a held-out person)",
                m["dprime_raw"],
                m["dprime_dec"],
                f">= {TARGET_DPRIME_GAIN}x raw",
                check(m["dprime_ratio"] >= TARGET_DPRIME_GAIN),
                f"ratio {m['dprime_ratio']:.3f} ({ci(m['dprime_ratio_ci95'])}, bootstrap over clips; median "
                "clip "
                f"{m['dprime_ratio_median_clip']:.3f}); {m['n_paired']} real clips, same frames un-morphed "
                "vs morphed, "
                "noise = within-clip SD",
            ),
            Row(
                sec,
                "morph drift kept (decoupled / raw)",
                m["drift_raw"],
                m["drift_dec"],
                f"ratio in [{DRIFT_RATIO_RANGE[0]}, {DRIFT_RATIO_RANGE[1]}]",
                check(DRIFT_RATIO_RANGE[0] <= m["drift_ratio"] <= DRIFT_RATIO_RANGE[1]),
                f"ratio {m['drift_ratio']:.3f} ({ci(m['drift_ratio_ci95'])})",
            ),
        ]
        syn = "synthetic"
        for name, label in (("shuffle", "alpha 0 -> 0.6 in shuffled order (not confounded with time)"),
                            ("ramp", "alpha rising 0 -> 0.6 over time")):
            sr, sd = m.get(f"spearman_{name}_raw"), m.get(f"spearman_{name}_dec")
            ctrl = {"shuffle": "shuffle-self", "ramp": "self"}[name]
            cr, cd = m.get(f"spearman_{ctrl}_raw"), m.get(f"spearman_{ctrl}_dec")
            if sr and sd:
                rows.append(
                    Row(
                        syn,
                        f"per-clip Spearman(injected alpha, similarity drop): real clips morphed toward "
                        f"another person, {label}",
                        sr["median"],
                        sd["median"],
                        f"median >= {TARGET_SPEARMAN}",
                        check(sd["median"] >= TARGET_SPEARMAN),
                        f"{sd['n']} clips; raw {ci(sr['ci95'])}, decoupled {ci(sd['ci95'])} (bootstrap over "
                        "clips)"
                        + (
                            f"; same-person control (the blend without identity change): raw "
                            f"{cr['median']:.3f}, decoupled {cd['median']:.3f}"
                            if cr and cd
                            else ""
                        ),
                    )
                )
        for name, label, target in (("ramp", "other person", "> 0"), ("self", "same-person control", "~0"),
                                    ("none", "no morph", "~0")):
            er, ed = m.get(f"end_drift_{name}_raw"), m.get(f"end_drift_{name}_dec")
            if er and ed:
                rows.append(
                    Row(
                        syn,
                        f"end drift, {label} (median [1,3) s - last 2 s, mean over clips)",
                        er["mean"],
                        ed["mean"],
                        target,
                        "info",
                        f"raw {ci(er['ci95'])}, decoupled {ci(ed['ci95'])}",
                    )
                )
    d = fig.get("drift_clip")
    if d:
        e = d["end_drift"]
        ratio = e["dec"] / e["raw"] if e["raw"] else float("nan")
        f5 = d["first_last_5s"]
        rows.append(Row(sec, f"{d['clip']}: end drift kept (opening [1,3) s - last 2 s)", e["raw"], e["dec"],
                        f"ratio in [{DRIFT_RATIO_RANGE[0]}, {DRIFT_RATIO_RANGE[1]}]",
                        check(DRIFT_RATIO_RANGE[0] <= ratio <= DRIFT_RATIO_RANGE[1]),
                        f"ratio {ratio:.3f}; first-to-last 5 s {f5['raw']:.3f} -> {f5['dec']:.3f} (ratio "
                        f"{f5['dec'] / f5['raw']:.3f}); decoupler fitted on all control footage"))
    o = fig.get("generated_order")
    if o:
        rows.append(Row(sec, f"generated clip levels keep raw's order (pairs with raw gap > {ORDER_MIN_GAP})",
                        o["pairs_checked"], o["flipped"], "0 flipped", check(o["flipped"] == 0),
                        "; ".join(f"{a} / {b}" for a, b in o["flipped_pairs"])))
    pr, pdec = fig["photos"]["raw"], fig["photos"]["dec"]
    note = (
        "out-of-fold: each pair scored by a decoupler whose gate never saw its identities (5 identity "
        "folds); "
        "threshold at FAR 0.1% from the training identities' pairs"
    )
    rows += [
        Row(
            sec,
            "separation held out: d'",
            pr["d_prime"],
            pdec["d_prime"],
            ">= 7.1",
            check(pdec["d_prime"] >= 7.1),
            note,
        ),
        Row(
            sec,
            "separation held out: worst-pair margin",
            pr["margin"],
            pdec["margin"],
            ">= +0.08",
            check(pdec["margin"] >= 0.08),
        ),
        Row(
            sec,
            "separation held out: TAR at the training identities' FAR 0.1% threshold",
            pr["tar_heldout"],
            pdec["tar_heldout"],
            "100%",
            check(pdec["tar_heldout"] >= 1.0 - 1e-12),
            f"held-out FAR raw {pr['far_heldout']:.4f} ({pr['n_diff_heldout_beyond']} pairs), decoupled "
            f"{pdec['far_heldout']:.4f} ({pdec['n_diff_heldout_beyond']} pairs)",
        ),
    ]
    return rows


# -- fitting the shipped artefact -------------------------------------------------------------------------
def fit_artefact(
    frames: pd.DataFrame,
    clips: list[dict[str, Any]],
    faces: pd.DataFrame,
    pairs: pd.DataFrame,
    analyzer: Any,
    settings: Any,
    key: str,
    path: Path | None = None,
    *,
    n_boot: int = 499,
) -> Any:
    """Fit the ``gated-shift`` decoupler on all identity-constant footage and photo pairs, record its
    data, code and held-out figures, and write it (default: :func:`driftbench.measure.decouple.artefact_path`
    of the weights key)."""
    from datetime import UTC, datetime

    from driftbench import __version__
    from driftbench.measure import decouple as D
    from driftbench.measure.cache import content_hash
    from driftbench.runner import git_commit

    age = D.age_stability(frames)
    sel = D.fit(frames, pairs, age_stable=bool(age.get("stable")))
    sc = score_heldout(method_gated_shift, "gated-shift", frames, pairs)
    raw_sc = score_heldout(method_raw, "raw", frames, pairs)
    heldout = {
        "r2_yaw_expr": {"raw": r2_figure(frames, frames["sim_raw"].to_numpy(np.float64), n_boot=n_boot),
                        "dec": r2_figure(frames, sc.control, n_boot=n_boot)},
        "photos": {"raw": photo_figures(pairs, raw_sc), "dec": photo_figures(pairs, sc)},
        "note": "5 person folds on the footage (selection nested), 5 identity folds on the photos (gate and "
                "threshold from the training identities); morph figures: `driftbench dev decouple-eval`",
    }
    photos_dir = Path(str(faces.attrs.get("dir", "")))
    same = pairs["same"].to_numpy(bool)
    record = {
        "backend": key,
        "created": datetime.now(UTC).strftime("%Y-%m-%d"),
        "about": "Decoupled identity similarity (driftbench.measure.decouple, form gated-shift: sim_raw + "
                 "gate(sim_raw) * "
        "sum_k w_k min(|d_k|, support_k), no cap). Refit with `driftbench validate --fit` with the same "
        "weights.",
        "selection": {
            "features": list(sel.params.features),
            "candidates": sel.table,
            "criterion": "lowest person-held-out within-clip variance (5 person-grouped folds)",
            "options": D.ShiftOptions().to_json(),
        },
        "age": {**age, "used": D.AGE_FEATURE in sel.params.features},
        "data": {
            "footage": clips,
            "fit_frames": "samples with a face at t >= 1 s (outside the first-frame reference window)",
            "n_fit_frames": len(D.fit_frames(frames)),
            "photos": [
                {"file": f, "label": lab, "sha256": content_hash(photos_dir / f) if photos_dir.name else None}
                for f, lab in zip(faces["file"], faces["label"], strict=True)
            ],
            "photo_pairs": {
                "n_same": int(same.sum()),
                "n_diff": int((~same).sum()),
                "labels": "connected components of the pairs CSV's Yes pairs",
            },
            "sampling": settings.sampling.token(),
            "reference": "first_frame (mean embedding of the first 1 s)",
        },
        "code": {
            "module": "driftbench/measure/decouple.py",
            "sha256": D.code_sha256(),
            "git_commit": git_commit(),
            "driftbench": __version__,
            "command": "driftbench validate --fit",
        },
        "backend_engine": analyzer.info.engine,
        "backend_weights": analyzer.info.weights,
        "heldout": heldout,
    }
    if path is None:  # the one naming function of derived artefacts
        from driftbench.weights import artefacts

        path = Path(artefacts.artefact_path("decouple", key))
    return D.write_artefact(path, sel.params, record)


def default_work_dir() -> Path:
    from driftbench.measure.cache import signals_dir

    return signals_dir().parent / "decouple-morphs"


def validate_section(control: pd.DataFrame, pairs: pd.DataFrame, faces: pd.DataFrame, shared: Path,
                     overrides: Sequence[str], key: str, *, morphs: bool = True, work: Path | None = None,
                     n_boot: int = 999) -> tuple[list[Any], dict[str, Any]]:
    """validate's decoupling rows: every held-out figure of the shipped form (refitted per fold), on the
    control footage validate measured, the generated clips and (``morphs``) the rendered morphs."""
    from driftbench.config import validate_overrides
    from driftbench.measure.clip import settings_from_config
    from driftbench.validity.material import SharedPaths, folder_clips

    paths = SharedPaths(shared.resolve())
    cfg = validate_overrides(["model=folder", f"model.path={paths.real}", *overrides], False)[0]
    s = replace(settings_from_config(cfg, threshold=float("nan")), decoupler="none", reference="auto")
    gen = [clip_frames(c, s, "generated") for c in folder_clips(paths.generated, cfg)]
    have = [g for g in gen if g is not None]
    mat = Material(key, control, pd.concat(have, ignore_index=True) if have else pd.DataFrame(), pairs, faces)
    mo = morph_material(mat, shared, work or default_work_dir(), overrides) if morphs else None
    fig = figures(mat, mo, "gated-shift", n_boot=n_boot)
    rows = validate_rows(fig)
    if "morphs" in fig:
        fig["morphs"] = {k: v for k, v in fig["morphs"].items() if k != "per_clip"}
    return rows, fig


def synthetic_clip_rows(
    frames: pd.DataFrame, truth: dict[str, np.ndarray], *, n_boot: int = 999
) -> list[Any]:
    """Per-clip Spearman(injected alpha, similarity drop) on ``model=synthetic`` clips (frames with
    ``sim_raw``/``sim_dec`` per clip, ``truth`` the injected alpha per frame), median over clips with a
    bootstrap CI over clips: the clip, not the autocorrelated bin, is the unit."""
    from scipy.stats import spearmanr

    from driftbench.validity.material import Row, check

    vals: dict[str, list[float]] = {"raw": [], "dec": []}
    per_clip: list[str] = []
    for cid, g in frames.groupby("clip_id", sort=True):
        a = truth.get(str(cid))
        if a is None or len(a) != len(g):
            continue
        ok = g["face_found"].astype(bool).to_numpy() & np.isfinite(g["sim_raw"].to_numpy(np.float64))
        if np.unique(a[ok]).size < 3:  # a constant schedule (the no-drift clips) has no rank to correlate
            continue
        for col, key in (("sim_raw", "raw"), ("sim_dec", "dec")):
            vals[key].append(float(spearmanr(a[ok], -g[col].to_numpy(np.float64)[ok]).statistic))
        name, ceiling = str(cid).removeprefix("synthetic/"), spearman_ceiling(a[ok])
        per_clip.append(f"{name} {vals['raw'][-1]:.3f} / {vals['dec'][-1]:.3f} ({ceiling:.3f})")
    if not vals["dec"]:
        return [
            Row(
                "synthetic",
                "per-clip Spearman(injected alpha, similarity drop), model=synthetic",
                None,
                None,
                f"median >= {TARGET_SPEARMAN}",
                "unavailable",
                "no synthetic clip with a varying schedule",
            )
        ]
    r, d = np.asarray(vals["raw"]), np.asarray(vals["dec"])
    ci_r = _boot_ci(np.arange(len(r)), _stat(r, np.median), n=n_boot)
    ci_d = _boot_ci(np.arange(len(d)), _stat(d, np.median), n=n_boot)
    return [
        Row(
            "synthetic",
            "per-clip Spearman(injected alpha, similarity drop), model=synthetic clips",
            float(np.median(r)),
            float(np.median(d)),
            f"median >= {TARGET_SPEARMAN}",
            check(float(np.median(d)) >= TARGET_SPEARMAN),
            f"{len(d)} clips with a varying schedule; 95% CI raw {ci_r[0]:.3f}-{ci_r[1]:.3f}, decoupled "
            f"{ci_d[0]:.3f}-{ci_d[1]:.3f} (bootstrap over clips); time schedules (alpha rises with time); "
            f"per clip raw / decoupled (the highest Spearman its schedule allows, set by its ties in alpha): "
            f"{'; '.join(per_clip)}",
        )
    ]


def spearman_ceiling(alpha: np.ndarray) -> float:
    """The highest Spearman correlation any measurement can reach against the schedule ``alpha``: with
    tied alphas (a ``late`` schedule is 0 for its first 60 %) a perfect measurement still orders the tied
    samples among themselves, so its ranks correlate with alpha's only as much as alpha's average ranks
    vary: sd(average ranks) / sd(ranks 1..n), 1 without ties (``linear``), 0.880 for ``late``."""
    from scipy.stats import rankdata

    avg = rankdata(alpha, method="average")
    return float(np.std(avg) / np.std(np.arange(1, len(alpha) + 1)))
