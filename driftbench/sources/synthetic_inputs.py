"""The synthetic source's ingredients: its constants, drift schedules (alpha over time) and the identities
(portraits of real photos with their landmarks). See :mod:`driftbench.sources.synthetic`."""


from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from driftbench.errors import UsageError

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
        out: dict[str, Any] = {
            "gt_schedule": self.name,
            "gt_strength": self.strength,
            "gt_onset_s": self.onset_s,
        }
        for h in GT_HORIZONS:
            out[f"gt_alpha_at_{h:g}s"] = (
                float(self.alpha(np.array([h]))[0]) if h <= self.duration_s + 1e-9 else None
            )
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

    files = (
        [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    )
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


