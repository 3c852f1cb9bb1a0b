"""``model=synthetic``: clips with KNOWN identity drift, made from real faces.

A real identity-constant face is morphed, frame by frame, toward another real person: the target's
face is warped (dense thin-plate spline through MediaPipe's landmarks, :mod:`driftbench.mitigations.warp`) onto
the frame's face geometry, whose own shape moves toward the target's by the same amount, and
cross-dissolved inside a feathered, colour-matched face mask with weight ``alpha(t)``. Expression and
head motion stay those of the source, so a measured identity change is the injected one. Schedules
(``SCHEDULES``): ``linear`` (0 -> strength over the clip), ``step`` (strength from ``step_s``; by
default the k-th of n faces steps at (k + 1) / (n + 1) of the clip, so onsets are spread over it),
``late`` (0 until ``late_onset_s``, then linear to strength) and ``none`` (the no-drift control).

Sources of the face:
- ``source=embedded`` (the default, no ../shared needed): photos that installed PyPI packages ship,
  through the model store (scikit-image's astronaut; insightface's Tom Hanks and its group photo
  t1.jpg, whose frontal faces become separate identities). A still has no motion, so every clip gets
  smooth procedural head motion (yaw/pitch-like shifts of the inner face, roll, shift, zoom) and
  speech-like jaw motion, smiles, blinks and brow raises (landmarks moved over time, then warped);
  all schedules of one face share the same motion, so the ``none`` clip is the source clip.
- ``source=<folder or manifest of real clips>``: real footage (sampled at ``fps``, first
  ``duration_s``) whose face is morphed toward a target photo (``targets=`` a folder of photos, or
  ``embedded``), keeping the real expression and head motion.

Each clip records the true identity mix: a sidecar CSV (``t,alpha,face``) and summary facts in
``Clip.meta`` (``gt_schedule``, ``gt_strength``, ``gt_onset_s``, ``gt_alpha_at_{5,30,60}s``,
``gt_alpha_end``, ``gt_csv``). Clips are H.264 MP4 in ``<cache>/synthetic/``, keyed by the inputs'
sha256, every parameter, the sampling and the code version: a rerun regenerates nothing.

Only what is measured is rendered (``render=sampled``, the default): motion, schedule and frames are
functions of the full timeline at ``fps``, but only the frames the run's sampling measures (plus the
last, which keeps the header's duration) are rendered and written, each at its own timestamp
(variable frame rate), so measuring the clip at that sampling reads the same instants, each frame
identical before encoding to the full-rate clip's (at 25 fps and 2 samples/s, 121 of 1500 frames
of a 60 s clip). ``render=full`` writes every frame, to watch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from driftbench.errors import UsageError
from driftbench.sources.base import Clip, Skipped, SourceContext

log = logging.getLogger("driftbench")

#: bump when generated clips change (with warp.WARP_VERSION it keys the cache)
CODE_VERSION = "3"
#: face-oval height as a share of the frame in embedded portraits
FACE_FRAC = 0.5
#: horizons whose ground-truth alpha is recorded in Clip.meta
GT_HORIZONS = (5.0, 30.0, 60.0)
#: embedded identities, frontal enough to animate, in the order bases are taken
EMBEDDED_ORDER = ("astronaut", "t1_face0", "t1_face5", "t1_face2", "t1_face3", "hanks")
#: |yaw| above which a face of the group photo is not used (profile views warp badly)
MAX_EMBEDDED_YAW = 25.0
BATCH = 24
#: share of the target's face shape the morph takes over, and the cap of any landmark's move (share of
#: the face size): texture carries most of the identity, shape the rest (see shape_offset)
SHAPE_GAIN = 0.7
SHAPE_CAP = 0.05
#: inner-lip gap (share of the face size) below which a photo's mouth counts as closed
CLOSED_MOUTH = 0.025


# -- schedules ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Schedule:
    """alpha(t): the share of the target identity in the frame at time t (0 = the source person)."""

    name: str
    strength: float
    duration_s: float
    onset_s: float | None  # when drift starts (step: when it jumps); None for none/linear starts at 0

    def alpha(self, t: np.ndarray) -> np.ndarray:
        return np.clip(SCHEDULES[self.name](np.asarray(t, dtype=np.float64), self), 0.0, 1.0)

    def facts(self) -> dict[str, Any]:
        """Ground truth for Clip.meta (horizons beyond the clip are None)."""
        out: dict[str, Any] = {"gt_schedule": self.name, "gt_strength": self.strength, "gt_onset_s": self.onset_s}
        for h in GT_HORIZONS:
            out[f"gt_alpha_at_{h:g}s"] = float(self.alpha(np.array([h]))[0]) if h <= self.duration_s + 1e-9 else None
        out["gt_alpha_end"] = float(self.alpha(np.array([self.duration_s]))[0])
        return out


def _linear(t: np.ndarray, s: Schedule) -> np.ndarray:
    return s.strength * t / max(s.duration_s, 1e-9)


def _step(t: np.ndarray, s: Schedule) -> np.ndarray:
    return np.where(t >= float(s.onset_s or 0.0) - 1e-9, s.strength, 0.0)


def _late(t: np.ndarray, s: Schedule) -> np.ndarray:
    onset = float(s.onset_s or 0.0)
    return s.strength * np.clip((t - onset) / max(s.duration_s - onset, 1e-9), 0.0, 1.0)


def _none(t: np.ndarray, s: Schedule) -> np.ndarray:
    return np.zeros_like(t)


SCHEDULES: dict[str, Callable[[np.ndarray, Schedule], np.ndarray]] = {
    "linear": _linear, "step": _step, "late": _late, "none": _none,
}


def make_schedule(name: str, cfg: Any, spread: tuple[int, int] = (0, 1)) -> Schedule:
    """The schedule ``name`` of a clip. ``spread`` = (k, n): the clip's face is the k-th of n faces; a
    step without ``step_s`` jumps at (k + 1) / (n + 1) of the duration, so the step onsets of a run are
    spread over the clip (two faces of a 60 s default run: 20 s and 40 s)."""
    duration = float(cfg.duration_s)
    strength = 0.0 if name == "none" else float(cfg.strength)
    onset: float | None = {"linear": 0.0, "none": None}.get(name)
    if name == "step":
        k, n = spread
        onset = float(cfg.step_s) if cfg.step_s is not None else duration * (k + 1) / (max(n, 1) + 1)
    elif name == "late":
        onset = float(cfg.late_onset_s) if cfg.late_onset_s is not None else 0.6 * duration
    return Schedule(name, strength, duration, onset)


# -- identities -----------------------------------------------------------------------------------------
@dataclass
class Portrait:
    """A face image with its 478 landmarks (a base or a target identity)."""

    name: str
    image: np.ndarray  # BGR uint8
    landmarks: np.ndarray  # (478, 2) image pixels
    digest: str  # sha256 of the source file + which face


@dataclass(frozen=True)
class PhotoSpec:
    """Where an identity comes from, known before any model runs (its digest keys the cache)."""

    name: str
    path: Path
    sha256: str
    face: int | None  # index (left to right) among the detected faces; None = the largest

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.sha256}:{self.face}".encode()).hexdigest()


def embedded_specs(download: bool) -> list[PhotoSpec]:
    """The package-shipped identities (astronaut, Tom Hanks, frontal faces of t1.jpg), in base order."""
    from driftbench.errors import ModelNotFoundError
    from driftbench.weights import store

    specs: dict[str, PhotoSpec] = {}
    try:
        a = store.resolve("photo_astronaut", download=download)
        specs["astronaut"] = PhotoSpec("astronaut", a.path, a.sha256, None)
        t1 = store.resolve("photo_t1", download=download)
        for i in range(6):
            specs[f"t1_face{i}"] = PhotoSpec(f"t1_face{i}", t1.path, t1.sha256, i)
        h = store.resolve("photo_hanks", download=download)
        specs["hanks"] = PhotoSpec("hanks", h.path, h.sha256, None)
    except ModelNotFoundError as exc:
        raise UsageError(f"model=synthetic source=embedded: a sample photo is missing ({exc})") from None
    return [specs[n] for n in EMBEDDED_ORDER if n in specs]


def folder_specs(path: Path) -> list[PhotoSpec]:
    from driftbench.sources.folder import IMAGE_SUFFIXES
    from driftbench.weights.store import cached_sha256

    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"{path}: no photos ({', '.join(IMAGE_SUFFIXES)}) for model.targets -- fix: point "
                         "model.targets at a folder of face photos, or use model.targets=embedded")
    return [PhotoSpec(f.stem, f, cached_sha256(f), None) for f in files]


def load_portrait(spec: PhotoSpec, mesh: Any) -> Portrait | None:
    """Detect the spec's face and its landmarks; None when there is no usable face."""
    from driftbench.measure.video import read_image

    image = read_image(spec.path)
    faces = mesh.faces(image)
    if spec.face is not None:
        faces = sorted(faces, key=lambda f: float(f.box[0]))
        if spec.face >= len(faces):
            return None
        face = faces[spec.face]
    elif faces:
        face = faces[0]
    else:
        return None
    mf = mesh.landmarks_for(image, face)
    if mf is None or (spec.face is not None and abs(mf.yaw) > MAX_EMBEDDED_YAW):
        return None
    return Portrait(spec.name, image, mf.landmarks, spec.digest)


def portrait_crop(p: Portrait, size: int, face_frac: float = FACE_FRAC) -> Portrait:
    """The portrait resampled to a ``size`` x ``size`` frame with its face centred (border reflected)."""
    import cv2

    from driftbench.mitigations.warp import FACE_OVAL

    oval = p.landmarks[list(FACE_OVAL)]
    lo, hi = oval.min(0), oval.max(0)
    scale = face_frac * size / max(hi[1] - lo[1], 1.0)
    centre = (lo + hi) / 2.0
    m = np.array([[scale, 0.0, size / 2.0 - scale * centre[0]], [0.0, scale, size / 2.0 - scale * centre[1]]])
    img = cv2.warpAffine(p.image, m, (size, size), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
                         borderMode=cv2.BORDER_REFLECT_101)
    return Portrait(p.name, img, p.landmarks @ m[:, :2].T + m[:, 2], p.digest)


# -- procedural motion (embedded stills) ------------------------------------------------------------------
@dataclass
class Motion:
    """Per-frame head motion and expression controls of an embedded clip (all (T,) arrays)."""

    yaw: np.ndarray  # -1..1: inner face shifted sideways (turning head)
    pitch: np.ndarray  # -1..1: inner face shifted up/down (nodding)
    roll_deg: np.ndarray
    shift: np.ndarray  # (T, 2) pixels
    zoom: np.ndarray  # scale factor around the face centre
    jaw: np.ndarray  # 0..1 mouth opening (speech)
    smile: np.ndarray  # 0..1
    blink: np.ndarray  # 0..1 (1 = closed)
    brow: np.ndarray  # 0..1 brow raise


def _smooth_noise(rng: np.random.Generator, t: np.ndarray, lo: float, hi: float, n: int = 3) -> np.ndarray:
    """Smooth random signal in about [-1, 1]: a sum of ``n`` sinusoids between ``lo`` and ``hi`` Hz."""
    freqs = rng.uniform(lo, hi, n)
    phases = rng.uniform(0, 2 * np.pi, n)
    amps = rng.uniform(0.5, 1.0, n)
    sig = (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None] + phases[:, None])).sum(0)
    return sig / amps.sum()


def procedural_motion(t: np.ndarray, rng: np.random.Generator, size: int, motion: float,
                      expression: float) -> Motion:
    noise = _smooth_noise
    envelope = np.clip(0.55 + 0.8 * noise(rng, t, 0.05, 0.2), 0.0, 1.0)
    syllables = np.abs(np.sin(2 * np.pi * rng.uniform(1.6, 2.3) * t + rng.uniform(0, 2 * np.pi)))
    jaw = expression * envelope * syllables**0.8 * (0.6 + 0.4 * np.abs(noise(rng, t, 0.5, 1.2)))
    blink = np.zeros_like(t)
    tb = rng.uniform(0.5, 2.0)
    while tb < t[-1] + 1:
        blink = np.maximum(blink, np.clip(1.0 - np.abs(t - tb) / 0.15, 0.0, 1.0))
        tb += rng.uniform(2.0, 5.0)
    return Motion(
        yaw=motion * 1.0 * noise(rng, t, 0.08, 0.35),
        pitch=motion * 0.6 * noise(rng, t, 0.1, 0.4),
        roll_deg=motion * 4.0 * noise(rng, t, 0.05, 0.25),
        shift=motion * 0.025 * size * np.stack([noise(rng, t, 0.05, 0.2), noise(rng, t, 0.05, 0.2)], 1),
        zoom=1.0 + motion * 0.04 * noise(rng, t, 0.03, 0.15),
        jaw=np.clip(jaw, 0.0, 1.0),
        smile=expression * 0.6 * np.clip(0.4 + noise(rng, t, 0.05, 0.2), 0.0, 1.0),
        blink=np.clip(expression, 0.0, 1.0) * blink,
        brow=expression * 0.6 * np.clip(noise(rng, t, 0.1, 0.3), 0.0, 1.0),
    )


_UPPER_LIP = (185, 40, 39, 37, 0, 267, 269, 270, 409, 191, 80, 81, 82, 13, 312, 311, 310, 415)
_LOWER_LIP = (146, 91, 181, 84, 17, 314, 405, 321, 375, 95, 88, 178, 87, 14, 317, 402, 318, 324)
_CORNERS = (61, 291, 78, 308)


def deform(lm: np.ndarray, m: Motion, idx: slice | np.ndarray = slice(None)) -> np.ndarray:
    """Move (T, 478, 2) landmarks by the motion controls of frames ``idx``: jaw, smile, blink, brow
    and a yaw/pitch-like shift of the inner face (more at the nose than at the face's edge)."""
    from driftbench.measure.decouple import smoothstep
    from driftbench.mitigations.warp import (
        BROWS,
        FACE_OVAL,
        LEFT_EYE,
        LEFT_LID_PAIRS,
        RIGHT_EYE,
        RIGHT_LID_PAIRS,
    )

    jaw, smile, blink, brow = m.jaw[idx], m.smile[idx], m.blink[idx], m.brow[idx]
    yaw, pitch = m.yaw[idx], m.pitch[idx]
    out = lm.copy()
    ex = lm[:, list(LEFT_EYE)].mean(1) - lm[:, list(RIGHT_EYE)].mean(1)
    iod = np.linalg.norm(ex, axis=1)
    ex = ex / iod[:, None]
    ey = np.stack([-ex[:, 1], ex[:, 0]], 1)  # image-down for an upright face
    mouth = (lm[:, 13] + lm[:, 14]) / 2.0
    rel = lm - mouth[:, None]
    u = np.einsum("tnk,tk->tn", rel, ex)
    v = np.einsum("tnk,tk->tn", rel, ey)
    # jaw: everything below the mouth drops, less towards the sides of the face
    w = smoothstep(v / (0.12 * iod[:, None])) * (1.0 - smoothstep((np.abs(u) - 0.55 * iod[:, None])
                                                                    / (0.6 * iod[:, None])))
    w[:, list(_LOWER_LIP)] = 1.0
    w[:, list(_UPPER_LIP)] = 0.0
    w[:, list(_CORNERS)] = 0.35
    out += (jaw * 0.32 * iod)[:, None, None] * w[..., None] * ey[:, None]
    # smile: mouth corners out and up
    for c in (61, 291):
        d = np.linalg.norm(lm - lm[:, c : c + 1], axis=2) / (0.3 * iod[:, None])
        fall = np.exp(-d * d)
        side = np.sign(u[:, c])[:, None]
        disp = (smile * iod)[:, None, None] * fall[..., None] * (0.07 * side[..., None] * ex[:, None]
                                                                 - 0.05 * ey[:, None])
        out += disp
    # blinks: upper lids onto the lower lids
    for up, low in (*RIGHT_LID_PAIRS, *LEFT_LID_PAIRS):
        out[:, up] += (0.9 * blink)[:, None] * (lm[:, low] - lm[:, up])
    out[:, list(BROWS)] -= (brow * 0.08 * iod)[:, None, None] * ey[:, None]
    # yaw / pitch: the inner face moves sideways / vertically, the face outline stays
    oval_u = np.einsum("tnk,tk->tn", lm[:, list(FACE_OVAL)] - lm[:, 1:2], ex)
    radius = 0.5 * (oval_u.max(1) - oval_u.min(1))
    depth = np.clip(1.0 - (np.linalg.norm(lm - lm[:, 1:2], axis=2) / radius[:, None]) ** 2, 0.0, 1.0)
    out += (yaw * 0.22 * iod)[:, None, None] * depth[..., None] * ex[:, None]
    out += (pitch * 0.12 * iod)[:, None, None] * depth[..., None] * ey[:, None]
    return out


def head_affines(m: Motion, centre: np.ndarray) -> np.ndarray:
    """(T, 2, 3) roll + zoom about the face centre, then shift: the head/camera motion of each frame."""
    th = np.deg2rad(m.roll_deg)
    c, s = np.cos(th) * m.zoom, np.sin(th) * m.zoom
    a = np.zeros((len(th), 2, 3))
    a[:, 0, 0], a[:, 0, 1], a[:, 1, 0], a[:, 1, 1] = c, -s, s, c
    a[:, :, 2] = centre - np.einsum("tij,j->ti", a[:, :, :2], centre) + m.shift
    return a


# -- the morph --------------------------------------------------------------------------------------------
def shape_offset(base_lm: np.ndarray, target_lm: np.ndarray) -> np.ndarray:
    """(478, 2) offset from the base face's shape to the target's, the target similarity-aligned onto
    the base (so only the shape differs, not position, size or roll). A similarity cannot remove a
    head turn, so a photo turned even 15 degrees would fold one side of the face: the offset is
    scaled by ``SHAPE_GAIN`` and each landmark's move capped at ``SHAPE_CAP`` of the face size."""
    from driftbench.mitigations.warp import apply_affine, control_indices, face_size, similarity_to

    idx = control_indices()
    a = similarity_to(target_lm[idx], base_lm[idx])
    delta = (apply_affine(target_lm, a) - base_lm) * SHAPE_GAIN
    cap = SHAPE_CAP * face_size(base_lm)
    norm = np.linalg.norm(delta, axis=1, keepdims=True)
    return delta * np.minimum(1.0, cap / np.maximum(norm, 1e-9))


def recolour_target(target: Portrait, base_image: np.ndarray, base_lm: np.ndarray) -> Portrait:
    """The target photo recoloured to the base face's skin tone and lighting (Lab statistics)."""
    from driftbench.mitigations.warp import color_match, face_size, oval_mask

    tm = oval_mask(target.landmarks, target.image.shape, shrink=0.08 * face_size(target.landmarks))
    bm = oval_mask(base_lm, base_image.shape, shrink=0.08 * face_size(base_lm))
    img = color_match(target.image.astype(np.float32), base_image.astype(np.float32), tm, bm)
    return Portrait(target.name, np.clip(np.rint(img), 0, 255).astype(np.uint8), target.landmarks, target.digest)


def _paint_mouth(img: np.ndarray, lm: np.ndarray, strength: float, fs: float) -> None:
    """Darken the inner-mouth polygon (an opened mouth of a closed-mouth photo shows its interior)."""
    import cv2

    from driftbench.mitigations.warp import LIPS_INNER

    if strength <= 0.01:
        return
    mask = np.zeros(img.shape[:2], np.float32)
    cv2.fillPoly(mask, [np.round(lm[list(LIPS_INNER)]).astype(np.int32)], 1.0)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.6, 0.012 * fs)) * strength
    dark = np.array([38.0, 30.0, 62.0], np.float32)
    img[:] = img * (1 - mask[..., None]) + dark * mask[..., None]


def _mouth_gap(lm: np.ndarray) -> np.ndarray:
    """Inner-lip opening of (T, 478, 2) landmarks, pixels."""
    pairs = ((13, 14), (82, 87), (312, 317))
    return np.mean([np.linalg.norm(lm[:, a] - lm[:, b], axis=1) for a, b in pairs], axis=0)


def blend_frame(base_w: np.ndarray, target_w: np.ndarray, valid: np.ndarray, geometry: np.ndarray,
                box: np.ndarray, alpha: float, area: np.ndarray | None = None) -> np.ndarray:
    """Cross-dissolve the warped target into the warped base inside a feathered face mask. The eye
    openings and the inner mouth stay the base's: a target photo's open eyes or closed lips must not
    be squashed over a blink or stretched over an open mouth (the expression is the source's); so do
    regions the target photo shows foreshortened (:func:`driftbench.mitigations.warp.detail_weight`)."""
    from driftbench.mitigations.warp import (
        LEFT_EYE,
        LIPS_INNER,
        RIGHT_EYE,
        detail_weight,
        face_size,
        region_mask,
    )

    fs = face_size(geometry)
    h, w = base_w.shape[:2]
    mask = region_mask(geometry, box, feather=0.05 * fs, shrink=0.04 * fs, exclude=[LIPS_INNER, RIGHT_EYE, LEFT_EYE],
                       exclude_grow=0.005 * fs, exclude_feather=0.01 * fs)[:h, :w] * valid[:h, :w]
    if area is not None:
        mask = mask * detail_weight(area[:h, :w], mask)
    a = (alpha * mask)[..., None]
    return base_w * (1.0 - a) + target_w[:h, :w] * a


def _with_anchors(target_pts: np.ndarray, geom_pts: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(B, N + A, 2) target control points plus where the output's fixed anchors fall in the target
    image (through each frame's similarity from the output geometry to the target face), so the
    target layer can share the base layer's spline system."""
    from driftbench.mitigations.warp import apply_affine, similarity_to

    out = []
    for g in geom_pts:
        a = similarity_to(g, target_pts)
        out.append(np.concatenate([target_pts, apply_affine(anchors, a)]))
    return np.stack(out)


# -- clip writers -----------------------------------------------------------------------------------------
def render_plan(t: np.ndarray, sampling: Any | None) -> np.ndarray:
    """Indices of the frames of timeline ``t`` a clip holds: every frame without a sampling (``full``),
    else the frames :func:`driftbench.measure.video.sample` measures at that sampling plus the last frame (so
    the clip's header keeps the full clip's duration). Each frame is written at its own time, so the
    sampled clip is measured on the same instants as the full-rate one."""
    from driftbench.mitigations.warp import sampled_indices

    if sampling is None or len(t) == 0:
        return np.arange(len(t))
    idx = sampled_indices(t, float(sampling.fps), float(sampling.start or 0.0), sampling.end)
    return np.union1d(idx, [len(t) - 1]).astype(np.int64)


def render_embedded(base: Portrait, target: Portrait, schedule: Schedule, cfg: Any, out: Path, *,
                    device: str, seed: int, sampling: Any | None = None) -> dict[str, Any]:
    """Write an embedded clip (procedural motion of a still base face morphed toward the target).

    The motion, schedule and every frame are functions of the full timeline at ``cfg.fps``; with a
    ``sampling`` only the frames it measures are rendered (:func:`render_plan`), each bit-identical
    before encoding to the same frame of the full-rate clip."""
    from fractions import Fraction

    from driftbench.mitigations.warp import (
        Layer,
        Mp4Writer,
        border_anchors,
        control_indices,
        face_size,
        tps_warp_layers,
    )

    size, fps = int(cfg.size), float(cfg.fps)
    n = max(1, round(float(cfg.duration_s) * fps))
    t = np.arange(n) / fps
    plan = render_plan(t, sampling)
    alpha = schedule.alpha(t)
    rng = np.random.default_rng([int(seed), int(base.digest[:8], 16)])
    motion = procedural_motion(t, rng, size, float(cfg.motion), float(cfg.expression))
    idx = control_indices()
    anchors = border_anchors(0, 0, size - 1, size - 1, per_side=6)
    delta = shape_offset(base.landmarks, target.landmarks)
    target = recolour_target(target, base.image, base.landmarks)
    oval = base.landmarks[[10, 152]].mean(0)
    affines = head_affines(motion, oval)
    gap0 = float(_mouth_gap(base.landmarks[None])[0])
    # a photo with parted lips (teeth) opens by stretching its own mouth; a closed one gets a dark interior
    closed_mouth = gap0 < CLOSED_MOUTH * face_size(base.landmarks)
    if not closed_mouth:
        motion.jaw *= 0.5
    box = np.array([0, 0, size, size])
    tb = 1 / Fraction(fps).limit_denominator(1001)
    with Mp4Writer(out, fps, size, size, time_base=tb) as writer:
        for s0 in range(0, len(plan), BATCH):
            sl = plan[s0 : s0 + BATCH]
            b = len(sl)
            neutral = base.landmarks[None] + alpha[sl, None, None] * delta[None]
            geom = deform(neutral, motion, sl)
            dst_pts = np.concatenate([geom[:, idx], np.broadcast_to(anchors, (b, *anchors.shape))], 1)
            boxes = np.broadcast_to(box, (b, 4))
            layers = [Layer(base.image, np.concatenate([base.landmarks[idx], anchors]), "reflection")]
            need_target = bool((alpha[sl] > 0).any())
            if need_target:
                layers.append(Layer(target.image, _with_anchors(target.landmarks[idx], geom[:, idx], anchors)))
            warped = tps_warp_layers(layers, dst_pts, boxes, device=device, post_affine=affines[sl])
            bw = warped[0]
            tw = warped[1] if need_target else None
            geom_out = np.einsum("bij,bnj->bni", affines[sl, :, :2], geom) + affines[sl, None, :, 2]
            gaps = _mouth_gap(geom_out)
            for k in range(b):
                i = int(sl[k])
                frame = bw.images[k]
                fs = face_size(geom_out[k])
                if tw is not None and alpha[i] > 0:
                    frame = blend_frame(frame, tw.images[k], tw.valid[k], geom_out[k], box, float(alpha[i]),
                                        tw.area[k] if tw.area is not None else None)
                if closed_mouth:
                    scale = float(np.linalg.det(affines[i, :, :2])) ** 0.5
                    opened = np.clip((gaps[k] - gap0 * scale) / (0.05 * fs), 0.0, 0.85)
                    _paint_mouth(frame, geom_out[k], float(opened), fs)
                writer.write(np.clip(np.rint(frame), 0, 255).astype(np.uint8), t=float(Fraction(i) * tb))
    return {"t": t, "alpha": alpha, "face": np.ones(n, dtype=np.int8), "fps": fps, "rendered": len(plan)}


def render_real(clip_path: str, target: Portrait, schedule: Schedule, cfg: Any, out: Path, *, device: str,
                mesh: Any, sampling: Any | None = None) -> dict[str, Any]:
    """Write a real clip whose face is morphed toward ``target`` (real expression and head motion kept).
    The output's k-th frame is at k / fps; with a ``sampling`` only the frames it measures are found,
    morphed and written (:func:`render_plan`)."""
    from fractions import Fraction

    import cv2

    from driftbench.errors import ClipError
    from driftbench.measure import video
    from driftbench.mitigations.warp import (
        Layer,
        Mp4Writer,
        apply_affine,
        border_anchors,
        control_indices,
        face_box,
        similarity_to,
        tps_warp_layers,
    )

    # never faster than the footage: a 15 fps clip sampled "at 25 fps" yields 15 frames per second
    fps = min(float(cfg.fps), video.probe(clip_path).fps or float(cfg.fps))
    frames, lms = [], []
    prev_box = None
    for fr in video.sample(clip_path, fps, end=float(cfg.duration_s) - 1e-6):
        img = fr.image
        scale = min(1.0, int(cfg.max_side) / max(img.shape[:2]))
        if scale < 1.0:
            img = cv2.resize(img, (round(img.shape[1] * scale) // 2 * 2, round(img.shape[0] * scale) // 2 * 2),
                             interpolation=cv2.INTER_AREA)
        frames.append((fr.t, img))
    plan = render_plan(np.arange(len(frames)) / fps, sampling)
    planned = set(plan.tolist())
    for i, (_t, img) in enumerate(frames):
        face = mesh.detect(img, prev_box) if i in planned else None
        lms.append(None if face is None else face.landmarks)
        if face is not None:
            prev_box = face.box
    found = [i for i, lm in enumerate(lms) if lm is not None]
    if not found:
        raise ClipError(clip_path, "no face found to morph", "use identity-constant footage that shows a face",
                        reason="no_face")
    t = np.array([f[0] for f in frames])
    alpha = schedule.alpha(t)
    idx = control_indices()
    ref_i = found[0]
    ref_img, ref_lm = frames[ref_i][1], lms[ref_i]
    assert ref_lm is not None
    target = recolour_target(target, ref_img, ref_lm)
    delta_ref = shape_offset(ref_lm, target.landmarks)
    h, w = ref_img.shape[:2]
    tb = 1 / Fraction(fps).limit_denominator(1001)
    with Mp4Writer(out, fps, w, h, time_base=tb) as writer:
        for s0 in range(0, len(plan), BATCH):
            ids = [int(i) for i in plan[s0 : s0 + BATCH]]
            todo = [i for i in ids if lms[i] is not None and alpha[i] > 0 and frames[i][1].shape == ref_img.shape]
            results: dict[int, np.ndarray] = {}
            if todo:
                geoms, boxes, src_pts, dst_pts, tgt_anchors = [], [], [], [], []
                for i in todo:
                    lm = lms[i]
                    assert lm is not None
                    a = similarity_to(ref_lm[idx], lm[idx])
                    geom = lm + alpha[i] * (delta_ref @ a[:, :2].T)
                    box = face_box(np.concatenate([lm, geom]), frames[i][1].shape, margin=0.3)
                    anc = border_anchors(float(box[0]), float(box[1]), float(box[2]), float(box[3]), per_side=6)
                    geoms.append(geom)
                    boxes.append(box)
                    src_pts.append(np.concatenate([lm[idx], anc]))
                    dst_pts.append(np.concatenate([geom[idx], anc]))
                    tgt_anchors.append(apply_affine(anc, similarity_to(geom[idx], target.landmarks[idx])))
                layers = [Layer([frames[i][1] for i in todo], np.stack(src_pts), "border"),
                          Layer(target.image, np.stack([np.concatenate([target.landmarks[idx], anc])
                                                        for anc in tgt_anchors]))]
                bw, tw = tps_warp_layers(layers, np.stack(dst_pts), np.stack(boxes), device=device)
                for k, i in enumerate(todo):
                    x0, y0, bwid, bhei = (int(v) for v in boxes[k])
                    face = blend_frame(bw.images[k][:bhei, :bwid], tw.images[k], tw.valid[k], geoms[k],
                                       boxes[k], float(alpha[i]), tw.area[k] if tw.area is not None else None)
                    img = frames[i][1].copy()
                    img[y0 : y0 + bhei, x0 : x0 + bwid] = np.clip(np.rint(face), 0, 255).astype(np.uint8)
                    results[i] = img
            for i in ids:
                img = results.get(i, frames[i][1])
                if img.shape != ref_img.shape:
                    img = cv2.resize(img, (w, h))
                writer.write(img, t=float(Fraction(i) * tb))
    face = np.array([lm is not None if i in planned else -1 for i, lm in enumerate(lms)], dtype=np.int8)
    return {"t": t, "alpha": alpha, "face": face, "fps": fps, "rendered": len(plan)}


# -- the source -------------------------------------------------------------------------------------------
def _write_sidecar(path: Path, gt: dict[str, Any]) -> None:
    import pandas as pd

    from driftbench.io import write_csv

    write_csv(path, pd.DataFrame({"t": gt["t"], "alpha": gt["alpha"], "face": gt["face"]}))


class SyntheticSource:
    """Clips with injected, known identity drift (see the module docstring)."""

    name = "synthetic"

    def __init__(self, cfg: Any, ctx: SourceContext) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self._skipped: list[Skipped] = []
        self.device = str(ctx.options.get("device", "auto"))
        self.download = bool(ctx.options.get("fetch", True))
        self.dir = Path(ctx.cache_dir) / "synthetic"
        self._mesh: Any = None
        self._portraits: dict[str, Portrait | None] = {}
        #: the run's sampling (fps, start, end): with ``render=sampled`` only the frames it measures are
        #: rendered; without one (a source used outside a run) every frame is
        sampling = ctx.options.get("sampling")
        self.sampling = SimpleNamespace(**sampling) if isinstance(sampling, dict) else sampling
        if str(getattr(cfg, "render", "sampled")) == "full":
            self.sampling = None

    @property
    def skipped(self) -> list[Skipped]:
        return self._skipped

    # -- configuration checks (before any work) --
    def _check(self) -> None:
        cfg = self.cfg
        bad = [s for s in cfg.schedules if s not in SCHEDULES]
        if bad or not cfg.schedules:
            raise UsageError(f"model.schedules: unknown schedule(s) {bad} -- fix: choose from {sorted(SCHEDULES)}")
        if not 0.0 <= float(cfg.strength) <= 1.0:
            raise UsageError(f"model.strength={cfg.strength} is outside [0, 1] -- fix: 0 = no drift, 1 = fully "
                             "the other person")
        if str(getattr(cfg, "render", "sampled")) not in ("sampled", "full"):
            raise UsageError(f"model.render={cfg.render!r} -- fix: sampled (only the frames the sampling measures) "
                             "or full (every frame, to watch)")
        if float(cfg.duration_s) <= 0 or float(cfg.fps) <= 0 or int(cfg.size) < 64 or int(cfg.max_clips) < 1:
            raise UsageError("model.duration_s, model.fps must be > 0, model.size >= 64 and model.max_clips >= 1 "
                             "-- fix: e.g. model.duration_s=12 model.fps=25 model.size=256")

    def _params(self) -> dict[str, Any]:
        c = self.cfg
        return {"code": CODE_VERSION, "strength": float(c.strength), "duration_s": float(c.duration_s),
                "fps": float(c.fps), "size": int(c.size), "max_side": int(c.max_side), "seed": int(c.seed),
                "motion": float(c.motion), "expression": float(c.expression), "step_s": c.step_s,
                "late_onset_s": c.late_onset_s, "render": _sampling_tag(self.sampling)}

    def _key(self, *parts: Any) -> str:
        from driftbench.mitigations.warp import WARP_VERSION

        blob = json.dumps({"params": self._params(), "warp": WARP_VERSION, "parts": parts}, sort_keys=True,
                          default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def _mesh_(self) -> Any:
        if self._mesh is None:
            from driftbench.mitigations.warp import FaceMesh

            self._mesh = FaceMesh(download=self.download)
        return self._mesh

    def _portrait(self, spec: PhotoSpec) -> Portrait | None:
        if spec.name not in self._portraits:
            self._portraits[spec.name] = load_portrait(spec, self._mesh_())
        return self._portraits[spec.name]

    def _targets(self) -> list[PhotoSpec]:
        tg = str(self.cfg.targets)
        if tg == "embedded":
            return embedded_specs(self.download)
        p = Path(tg).expanduser()
        if not p.exists():
            raise UsageError(f"{p}: model.targets does not exist -- fix: a folder of face photos, or embedded")
        return folder_specs(p)

    def clips(self) -> list[Clip]:
        self._check()
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            if str(self.cfg.source) == "embedded":
                return self._embedded()
            return self._real()
        finally:
            if self._mesh is not None:
                self._mesh.close()
                self._mesh = None

    def _finish(self, key: str, render: Callable[[Path], dict[str, Any]], meta: dict[str, Any]
                ) -> tuple[Path, dict[str, Any]]:
        """Render the clip unless it is cached; returns the MP4 path and its record."""
        mp4 = self.dir / f"{key}.mp4"
        csv = self.dir / f"{key}.csv"
        info = self.dir / f"{key}.json"
        if mp4.is_file() and csv.is_file() and info.is_file():
            return mp4, json.loads(info.read_text(encoding="utf-8"))
        import time

        from driftbench.io import write_json

        t0 = time.perf_counter()
        gt = render(mp4)
        _write_sidecar(csv, gt)
        record = {**meta, "fps": gt["fps"], "frames": len(gt["t"]), "frames_rendered": gt.get("rendered", len(gt["t"])),
                  "render": _sampling_tag(self.sampling), "render_s": round(time.perf_counter() - t0, 3)}
        write_json(info, record)
        log.info("synthetic: wrote %s (%s) in %.1f s", mp4.name, meta.get("clip_id"), time.perf_counter() - t0)
        return mp4, record

    def _embedded(self) -> list[Clip]:
        import cv2

        from driftbench.io import write_bytes

        specs = embedded_specs(self.download)
        targets = self._targets()
        schedules = list(self.cfg.schedules)
        clips: list[Clip] = []
        n_bases = min(len([s for s in specs if s.name != "hanks"]),
                      -(-int(self.cfg.max_clips) // max(len(schedules), 1)))
        for bi, base_spec in enumerate(s for s in specs if s.name != "hanks"):
            if len(clips) >= int(self.cfg.max_clips):
                break
            tgt_spec = next((s for s in (targets[(bi + 1 + j) % len(targets)] for j in range(len(targets)))
                             if s.digest != base_spec.digest), None)
            if tgt_spec is None:
                raise UsageError("model.targets holds no identity other than the base -- fix: add photos of "
                                 "other people")
            ref_key = self._key("portrait", base_spec.digest)
            ref_png = self.dir / "portraits" / f"{base_spec.name}-{ref_key}.png"
            base = None
            for sched_name in schedules:
                if len(clips) >= int(self.cfg.max_clips):
                    break
                sched = make_schedule(sched_name, self.cfg, (bi, n_bases))
                clip_id = f"synthetic/{base_spec.name}/{tgt_spec.name}/{sched_name}"
                key = self._key("embedded", base_spec.digest, tgt_spec.digest, sched_name)
                meta: dict[str, Any] = {"source": "embedded", "base": base_spec.name, "target": tgt_spec.name,
                                        "clip_id": clip_id, **sched.facts()}

                def render(out: Path, _b: PhotoSpec = base_spec, _t: PhotoSpec = tgt_spec,
                           _s: Schedule = sched) -> dict[str, Any]:
                    nonlocal base
                    if base is None:
                        bp = self._portrait(_b)
                        if bp is None:
                            raise UsageError(f"{_b.path}: no usable face for embedded identity {_b.name!r}")
                        base = portrait_crop(bp, int(self.cfg.size))
                    tp = self._portrait(_t)
                    if tp is None:
                        raise UsageError(f"{_t.path}: no usable face for target identity {_t.name!r} -- fix: "
                                         "use frontal face photos in model.targets")
                    return render_embedded(base, tp, _s, self.cfg, out, device=self.device,
                                           seed=int(self.cfg.seed), sampling=self.sampling)

                mp4, record = self._finish(key, render, meta)
                if not ref_png.is_file():
                    bp = self._portrait(base_spec)
                    assert bp is not None
                    ok, png = cv2.imencode(".png", portrait_crop(bp, int(self.cfg.size)).image)
                    if not ok:
                        raise OSError(f"{ref_png}: PNG encoding failed")
                    write_bytes(ref_png, bytes(png))
                meta.update({"gt_csv": str(mp4.with_suffix(".csv")), "duration_s": float(self.cfg.duration_s),
                             "fps": float(record.get("fps", self.cfg.fps)), "render": _sampling_tag(self.sampling)})
                meta.pop("clip_id")
                clips.append(Clip(clip_id=clip_id, path=str(mp4), character=base_spec.name,
                                  references=(str(ref_png),), prompt_id=f"{tgt_spec.name}-{sched_name}",
                                  seed=int(self.cfg.seed), model=str(self.cfg.label), meta=meta))
        return clips

    def _real(self) -> list[Clip]:
        from driftbench.errors import ClipError
        from driftbench.measure.cache import content_hash
        from driftbench.sources.folder import FolderSource

        src_path = Path(str(self.cfg.source)).expanduser()
        folder = FolderSource(SimpleNamespace(path=str(src_path), pattern=str(self.cfg.pattern), recursive=False,
                                              label=str(self.cfg.label)), self.ctx)
        sources = folder.clips()
        self._skipped.extend(folder.skipped)
        targets = self._targets()
        schedules = list(self.cfg.schedules)
        clips: list[Clip] = []
        n_bases = min(len(sources), -(-int(self.cfg.max_clips) // max(len(schedules), 1)))
        for ci, src in enumerate(sources):
            if len(clips) >= int(self.cfg.max_clips):
                break
            try:
                digest = content_hash(src.path)
            except OSError as exc:
                self._skipped.append(Skipped(src.path, "missing", f"{src.path}: unreadable ({exc.strerror}) -- "
                                             "fix: check the path"))
                continue
            tgt_spec = targets[ci % len(targets)]
            for sched_name in schedules:
                if len(clips) >= int(self.cfg.max_clips):
                    break
                sched = make_schedule(sched_name, self.cfg, (ci, n_bases))
                clip_id = f"synthetic/{_id_part(src.clip_id)}/{tgt_spec.name}/{sched_name}"
                key = self._key("real", digest, tgt_spec.digest, sched_name)
                meta: dict[str, Any] = {"source": "clip", "source_path": src.path, "base": src.character,
                                        "target": tgt_spec.name, "clip_id": clip_id, **sched.facts()}

                def render(out: Path, _src: Clip = src, _t: PhotoSpec = tgt_spec,
                           _s: Schedule = sched) -> dict[str, Any]:
                    tp = self._portrait(_t)
                    if tp is None:
                        raise UsageError(f"{_t.path}: no usable face for target identity {_t.name!r} -- fix: "
                                         "use frontal face photos in model.targets")
                    return render_real(_src.path, tp, _s, self.cfg, out, device=self.device, mesh=self._mesh_(),
                                       sampling=self.sampling)

                try:
                    mp4, record = self._finish(key, render, meta)
                except ClipError as exc:
                    self._skipped.append(Skipped(src.path, exc.reason, str(exc)))
                    break
                meta.update({"gt_csv": str(mp4.with_suffix(".csv")), "duration_s": float(self.cfg.duration_s),
                             "fps": float(record.get("fps", self.cfg.fps)), "render": _sampling_tag(self.sampling)})
                meta.pop("clip_id")
                clips.append(Clip(clip_id=clip_id, path=str(mp4), character=src.character,
                                  references=src.references, prompt_id=f"{src.prompt_id}-{tgt_spec.name}-{sched_name}",
                                  seed=int(self.cfg.seed), model=str(self.cfg.label), meta=meta))
        return clips


def _sampling_tag(sampling: Any | None) -> str:
    """What a clip holds, for cache keys and meta: ``full`` or ``sampled@FPS[:start-end]``."""
    if sampling is None:
        return "full"
    end = "" if sampling.end is None else f"{float(sampling.end):g}"
    return f"sampled@{float(sampling.fps):g}:{float(sampling.start or 0.0):g}-{end}"


def _id_part(clip_id: str) -> str:
    """A source clip's id without its extension and with no dots (run files are named from clip ids,
    and a dot would read as a file suffix)."""
    from pathlib import PurePosixPath

    return str(PurePosixPath(clip_id).with_suffix("")).replace(".", "_")

