"""Several characters in one clip (a *cast*): which face is whose, identity swaps and identity leakage.
Pure functions of the face-level table (:mod:`driftbench.measure.signals`) and reference embeddings; no
video, no models.

Semantics (docs/MULTI-CHARACTER.md):

- **A character is a track.** At each sample the faces are assigned to the characters by an optimal
  one-to-one assignment (Hungarian, :func:`scipy.optimize.linear_sum_assignment`) maximising
  ``POS_WEIGHT * continuity + identity``: ``identity`` is the cosine of the face to the character's
  reference, ``continuity`` is 1 - d / ``POS_GATE`` for a face whose centre lies d face sizes (the larger
  of the two boxes) from the character's last box (seen at most ``MAX_GAP_S`` ago), else 0. Continuity
  outweighs identity, so once a track is established it follows the *place*, not the identity: when two
  characters exchange faces where they stand, character A's track shows B's face and the swap is visible
  (an identity-only assignment would silently follow the faces and hide it). Identity decides at the
  start, on re-entry after a gap, and when a face jumps further than ``POS_GATE`` face sizes. A pair is
  admissible only with continuity or an identity cosine at or above the backend's threshold (a bystander
  is not taken for a character).
- **Missing / unassigned**: a sample where no face is assigned to the character counts as missing for it
  (its similarity is NaN there, so a missing character counts towards loss as today); faces that no
  character takes are counted as unassigned.
- **Swap** of A and B: A's face scores higher to B's reference than to A's, while B's face scores higher to
  A's reference than to B's: ``swap(t) = min(cos(fA, rB) - cos(fA, rA), cos(fB, rA) - cos(fB, rB))`` (smoothed
  over ``smooth_s``) stays above 0 for at least ``SWAP_MIN_S``; its onset is the run's first sample.
- **Leakage** of character A toward B: ``leak(t) = cos(fA, rB) - cos(rA, rB) * cos(fA, rA)``: how much more
  A's face resembles B's reference than its resemblance to A's own reference carries (A's reference resembles
  B's by ``cos(rA, rB)``, so a face at ``cos(fA, rA)`` from it is expected at ``cos(rA, rB) * cos(fA, rA)``;
  for unit vectors, the component of the face along B's reference orthogonal to A's, times
  ``sqrt(1 - cos(rA, rB)^2)``). It reads 0 for A's reference itself and for a face that moves away from it
  in a direction unrelated to B; the earlier ``cos(fA, rB) - cos(rA, rB)`` read that move as
  ``cos(rA, rB) * (cos(fA, rA) - 1)``, which also damped the morph (A's face moves away from A as it moves
  toward B). Taken as a trailing ``LEAK_WINDOW_S`` median; ``leakage_max``
  is the highest level held for ``LEAK_MIN_S`` and ``leakage_end`` the median over the clip's last
  ``window_s``. Samples inside a swap (smoothed swap series > 0) are left out: there each place shows the
  other's face, which is a swap, not a blend. ``leaking`` compares ``leakage_max`` with a threshold
  calibrated on identity-constant real two-person composites (:data:`LEAK_THRESHOLDS`); empty for a backend
  without one. The face-to-face form ``cos(fA, fB) - cos(rA, rB)`` (kept per sample as ``cast_leak_faces``)
  carries both faces' pose and expression noise: on the morph composites it follows the morph less
  faithfully; the relative forms ``cos(fA, rB) - cos(fA, rA) + const`` follow it best but read any loss of
  A's own identity (a head turn in an identity-constant clip) as leakage and flag constant pairs
  (docs/MULTI-CHARACTER.md, "Definitions tried").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftbench.measure import drift
from driftbench.measure.preload import pandas as pd

#: weight of position continuity against the identity cosine (continuity in [0, 1], cosine in [-1, 1]):
#: large enough that a face within one face size of a track's last place keeps the track whatever it looks
#: like (3 * (1 - 1 / 1.5) = 1, the whole range identity can add between two people)
POS_WEIGHT = 3.0
#: centre distance (in face sizes: sqrt of the box area, the larger of the previous and the new box) at which
#: continuity reaches 0
POS_GATE = 1.5
#: a character unseen for longer than this is re-identified by identity alone
MAX_GAP_S = 2.0
#: shortest swap that counts (the issue's ">= 2 s")
SWAP_MIN_S = 2.0
#: leakage: trailing median window and the shortest run that counts for leakage_max
LEAK_WINDOW_S = 2.0
LEAK_MIN_S = 2.0
#: leakage verdict per backend threshold key: ``leaking`` when leakage_max exceeds it. Calibrated on
#: identity-constant real two-person composites of ../shared/data/video/real (people held out): the highest
#: leakage_max of 21 constant pairs plus ``cast_eval.LEAK_MARGIN``; produced by ``python -m
#: driftbench.validity.cast_eval docs/multi-character/KEY.json`` (``:`` as ``_``; docs/MULTI-CHARACTER.md)
LEAK_THRESHOLDS: dict[str, float] = {"sface": 0.1518, "sface:yunet-int8bq": 0.1383}

_NAMED_REGIONS = {
    "left": (0.0, 0.0, 0.5, 1.0),
    "right": (0.5, 0.0, 1.0, 1.0),
    "top": (0.0, 0.0, 1.0, 0.5),
    "bottom": (0.0, 0.5, 1.0, 1.0),
}
FIRST_FRAME = "first_frame"


@dataclass(frozen=True)
class Member:
    """One character of a cast: reference images, or a region of the frame (normalised x0, y0, x1, y1)
    whose face in the clip's opening is the reference."""

    name: str
    images: tuple[str, ...] = ()
    region: tuple[float, float, float, float] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "images": list(self.images),
                "region": None if self.region is None else list(self.region)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Member:
        reg = d.get("region")
        return cls(str(d["name"]), tuple(str(p) for p in d.get("images") or ()),
                   None if reg is None else tuple(float(v) for v in reg))  # type: ignore[arg-type]


def strip(i: int, n: int) -> tuple[float, float, float, float]:
    """The i-th of n vertical strips, left to right: the default region of the i-th named character."""
    return (i / n, 0.0, (i + 1) / n, 1.0)


def parse_region(text: str) -> tuple[float, float, float, float]:
    """``left``/``right``/``top``/``bottom`` or ``x0,y0,x1,y1`` in [0, 1]; ValueError with the fix."""
    t = text.strip().lower()
    if t in _NAMED_REGIONS:
        return _NAMED_REGIONS[t]
    parts = [p for p in re.split(r"[,\s]+", t) if p]
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 4 or not (0 <= vals[0] < vals[2] <= 1 and 0 <= vals[1] < vals[3] <= 1):
        raise ValueError(f"region {text!r} is not left, right, top, bottom or x0,y0,x1,y1 with "
                         "0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
    return vals  # type: ignore[return-value]


def parse_cast(characters: str, reference: str | None, resolve: Any = str) -> list[Member]:
    """The cast of a manifest row: ``characters`` = ``anna;ben``; ``reference`` = one entry per character
    separated by ``;`` (each ``first_frame``, ``first_frame@REGION`` or image paths joined by ``|``), or a
    single ``first_frame`` (or empty) for all: then the characters are the frame's vertical strips left to
    right in the order named. ``resolve`` maps an image cell to a path. ValueError with the fix."""
    names = [n.strip() for n in characters.split(";") if n.strip()]
    if len(set(names)) != len(names):
        raise ValueError(f"character {characters!r} names a character twice")
    ref = (reference or "").strip()
    entries = [e.strip() for e in ref.split(";")] if ref else []
    if len(entries) <= 1 and (not entries or entries[0].lower() == FIRST_FRAME):
        entries = [FIRST_FRAME] * len(names)
    if len(entries) != len(names):
        raise ValueError(f"{len(names)} characters ({characters!r}) but {len(entries)} reference entries "
                         f"({ref!r}): give one per character, separated by ';' (several images of one "
                         "character joined by '|', or first_frame@left / first_frame@x0,y0,x1,y1)")
    out = []
    for i, (name, entry) in enumerate(zip(names, entries, strict=True)):
        low = entry.lower()
        if low == FIRST_FRAME or not entry:
            out.append(Member(name, region=strip(i, len(names))))
        elif low.startswith(FIRST_FRAME + "@"):
            out.append(Member(name, region=parse_region(entry[len(FIRST_FRAME) + 1:])))
        else:
            out.append(Member(name, images=tuple(str(resolve(p.strip())) for p in entry.split("|")
                                                 if p.strip())))
    return out


def cast_from_meta(meta: Mapping[str, Any]) -> list[Member] | None:
    """The cast recorded in a clip's meta (``cast``: a list of members), None for a one-character clip."""
    cast = meta.get("cast")
    if not cast:
        return None
    return [Member.from_json(m) for m in cast]


# -- assignment -----------------------------------------------------------------------------------------
def _centre_size(box: Any) -> tuple[np.ndarray, float]:
    x, y, w, h = (float(v) for v in box)
    return np.array([x + w / 2.0, y + h / 2.0]), max(np.sqrt(max(w * h, 0.0)), 1e-6)


def region_opening(faces: pd.DataFrame, region: tuple[float, float, float, float],
                   reference_s: float) -> tuple[pd.DataFrame, float]:
    """The faces a first-frame region reference is built from: per sample the largest face whose centre lies
    in ``region`` over the first ``reference_s`` in which the region shows a face. Returns (rows, t_end);
    empty rows when the region never shows a face."""
    ok = faces[(faces["face_index"] >= 0) & faces["emb"].notna()]
    if ok.empty:
        return ok, reference_s
    boxes = np.stack([np.asarray(b, np.float64) for b in ok["box"]])
    cx = (boxes[:, 0] + boxes[:, 2] / 2.0) / ok["frame_w"].to_numpy(np.float64)
    cy = (boxes[:, 1] + boxes[:, 3] / 2.0) / ok["frame_h"].to_numpy(np.float64)
    x0, y0, x1, y1 = region
    inside = ok[(cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)]
    if inside.empty:
        return inside, reference_s
    t0 = float(inside["t"].min())
    t_end = reference_s if t0 < reference_s else t0 + reference_s  # the face appears later: its first second
    inside = inside[inside["t"] < t_end]
    rows = inside.loc[inside.groupby("sample_index")["face_size"].idxmax()]
    return rows, t_end


def assign(faces: pd.DataFrame, refs: np.ndarray, *, threshold: float) -> pd.DataFrame:
    """Per sample and character: the row label in ``faces`` of the character's face, or -1.

    ``refs``: (k, D) L2-normalised reference embeddings (a row of NaN: a character without a reference,
    taken only by continuity, i.e. never). Returns columns sample_index, t, then ``face_<c>`` (the row
    label, -1 when missing) for c in range(k), and ``n_unassigned`` (faces no character took)."""
    from scipy.optimize import linear_sum_assignment

    k = len(refs)
    refs = np.asarray(refs, np.float64)
    # no calibrated threshold (validation measures with NaN): identity admits any face
    thr = threshold if np.isfinite(threshold) else -np.inf
    last_box: list[Any] = [None] * k
    last_t = [-np.inf] * k
    out: list[dict[str, Any]] = []
    for si, grp in faces.groupby("sample_index", sort=True):
        t = float(grp["t"].iloc[0])
        row: dict[str, Any] = {"sample_index": int(si), "t": t}  # type: ignore[call-overload]
        cands = grp[(grp["face_index"] >= 0) & grp["emb"].notna()]
        labels = list(cands.index)
        chosen = [-1] * k
        if labels:
            emb = np.stack([np.asarray(e, np.float64) for e in cands["emb"]])
            ident = np.nan_to_num(refs @ emb.T, nan=-np.inf)  # (k, m)
            cont = np.zeros_like(ident)
            for c in range(k):
                if last_box[c] is None or t - last_t[c] > MAX_GAP_S + 1e-9:
                    continue
                pc, ps = _centre_size(last_box[c])
                for j, b in enumerate(cands["box"]):
                    bc, bs = _centre_size(b)
                    d = float(np.linalg.norm(bc - pc)) / max(ps, bs)
                    cont[c, j] = max(0.0, 1.0 - d / POS_GATE)
            ok = (cont > 0) | (ident >= thr)
            score = np.where(ok, POS_WEIGHT * cont + np.where(np.isfinite(ident), ident, -1.0), -1e6)
            rr, cc = linear_sum_assignment(-score)
            for c, j in zip(rr, cc, strict=True):
                if ok[c, j]:
                    chosen[c] = int(labels[j])
                    last_box[c] = cands["box"].iloc[j]
                    last_t[c] = t
        for c in range(k):
            row[f"face_{c}"] = chosen[c]
        row["n_unassigned"] = len(labels) - sum(ch >= 0 for ch in chosen)
        out.append(row)
    return pd.DataFrame(out)


_BLANK = ("det_score", "face_size", "blur", "yaw", "pitch", "roll", "age")
_NONE = ("emb", "blendshapes", "lm478", "thumb", "box", "lm5")


def character_track(faces: pd.DataFrame, assignment: pd.DataFrame, c: int) -> pd.DataFrame:
    """The character's track in :func:`driftbench.measure.track.choose_faces`'s form: one row per sample,
    its assigned face, or a row with ``face_found = False`` (no face values) where it is missing."""
    firsts = faces.groupby("sample_index", sort=True).head(1)
    first_of = dict(zip(firsts["sample_index"].to_numpy(), firsts.index, strict=True))
    rows = []
    for si, lab in zip(assignment["sample_index"], assignment[f"face_{c}"], strict=True):
        if lab >= 0:
            r = faces.loc[lab].copy()
            r["face_found"] = True
        else:
            r = faces.loc[first_of[si]].copy()
            for col in _BLANK:
                if col in r:
                    r[col] = np.nan
            for col in _NONE:
                if col in r:
                    r[col] = None
            r["face_found"] = False
        rows.append(r)
    out = pd.DataFrame(rows).reset_index(drop=True)
    out["face_found"] = out["face_found"].astype(bool)
    return out


def _embs(faces: pd.DataFrame, labels: np.ndarray, dim: int) -> np.ndarray:
    out = np.full((len(labels), dim), np.nan)
    for i, lab in enumerate(labels):
        if lab >= 0:
            out[i] = np.asarray(faces.at[lab, "emb"], np.float64)
    return out


# -- events ---------------------------------------------------------------------------------------------
def swap_series(fa: np.ndarray, fb: np.ndarray, ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """Per sample: min(cos(fA, rB) - cos(fA, rA), cos(fB, rA) - cos(fB, rB)); > 0 when A and B each look
    more like the other's reference (NaN where either is missing)."""
    a = fa @ rb - fa @ ra
    b = fb @ ra - fb @ rb
    return np.minimum(a, b)


def leak_series(fa: np.ndarray, ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """Per sample: cos(fA, rB) - cos(rA, rB) * cos(fA, rA), A's face toward B's reference beyond what its
    resemblance to A's reference carries (NaN where A is missing)."""
    return fa @ rb - float(ra @ rb) * (fa @ ra)


def face_leak_series(fa: np.ndarray, fb: np.ndarray, ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """Per sample: cos(fA, fB) - cos(rA, rB), the two faces against their references (NaN where either is
    missing)."""
    return np.einsum("ij,ij->i", fa, fb) - float(ra @ rb)


def _period(t: np.ndarray) -> float:
    return float(np.median(np.diff(t))) if len(t) > 1 else 1.0


def swap_onset(t: np.ndarray, series: np.ndarray, smooth_s: float) -> float | None:
    """Onset of the first run of at least ``SWAP_MIN_S`` in which the smoothed swap series stays above 0."""
    sm = drift.smooth(t, series, smooth_s)
    return drift.time_to_drift(t, sm, 0.0, SWAP_MIN_S, _period(t))


def leakage_figures(t: np.ndarray, series: np.ndarray, window_s: float) -> tuple[np.ndarray, float, float]:
    """(trailing-median leak series, leakage_max held for ``LEAK_MIN_S``, leakage_end over the last
    ``window_s``); NaN figures when the two faces are never seen together long enough."""
    trail = -drift.drift_series(t, series, 0.0, LEAK_WINDOW_S)
    best, _ = drift.sustained_drift(t, trail, LEAK_MIN_S, _period(t))
    ok = np.isfinite(series)
    end = float("nan")
    if ok.any():
        tt = t[ok]
        last = series[ok][tt >= tt.max() - window_s + 1e-9]
        end = float(np.median(last))
    return trail, (float(best) if np.isfinite(best) else float("nan")), end


def cast_summary(faces: pd.DataFrame, assignment: pd.DataFrame, refs: np.ndarray, names: Sequence[str],
                 c: int, *, smooth_s: float = 1.0, window_s: float = 2.0,
                 leak_threshold: float | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """Per-clip cast columns of character ``c`` (see the metric cards ``cast_*``, ``swap_*``, ``leakage_*``):
    against every other character, the earliest swap and the strongest leakage; and per sample the swap and
    leak series (``cast_swap``, ``cast_leak``: raw; ``cast_leak_trail``: the trailing median;
    ``cast_leak_faces``: face to face) against the partner of the strongest leakage."""
    t = assignment["t"].to_numpy(np.float64)
    dim = refs.shape[1]
    fa = _embs(faces, assignment[f"face_{c}"].to_numpy(), dim)
    out: dict[str, Any] = {
        "cast_size": len(names),
        "cast_with": ";".join(n for i, n in enumerate(names) if i != c),
        "cast_missing_samples": int((assignment[f"face_{c}"] < 0).sum()),
        "cast_unassigned_faces": int(assignment["n_unassigned"].sum()),
        "swapped": 0, "swap_onset_s": None, "swap_with": None,
        "leakage_max": None, "leakage_end": None, "leak_with": None, "leaking": None,
    }
    nan = np.full(len(t), np.nan)
    series = pd.DataFrame({"sample_index": assignment["sample_index"].to_numpy(), "cast_swap": nan,
                           "cast_leak": nan, "cast_leak_trail": nan, "cast_leak_faces": nan})
    best_leak = -np.inf
    for o in range(len(names)):
        if o == c:
            continue
        fb = _embs(faces, assignment[f"face_{o}"].to_numpy(), dim)
        sw = swap_series(fa, fb, refs[c], refs[o])
        onset = swap_onset(t, sw, smooth_s)
        if onset is not None and (out["swap_onset_s"] is None or onset < out["swap_onset_s"]):
            out.update(swapped=1, swap_onset_s=onset, swap_with=names[o])
        leak = leak_series(fa, refs[c], refs[o])
        leak = np.where(drift.smooth(t, sw, smooth_s) > 0, np.nan, leak)  # a swap is not a blend
        trail, lmax, lend = leakage_figures(t, leak, window_s)
        stronger = bool(np.isfinite(lmax) and lmax > best_leak)
        if stronger:
            best_leak = lmax
            out.update(leakage_max=lmax, leakage_end=lend, leak_with=names[o])
        if stronger or not np.isfinite(series["cast_leak"]).any():
            series["cast_swap"], series["cast_leak"], series["cast_leak_trail"] = sw, leak, trail
            series["cast_leak_faces"] = face_leak_series(fa, fb, refs[c], refs[o])
    if leak_threshold is not None and out["leakage_max"] is not None:
        out["leaking"] = int(out["leakage_max"] > leak_threshold)
    return out, series
