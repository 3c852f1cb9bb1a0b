"""Face backend interface: detect -> align -> embed, plus the registry of backends by name.

A backend knows nothing of Hydra or the CLI: plain arrays in, plain arrays out.
Landmark order everywhere is YuNet's / InsightFace's five points:
right eye, left eye, nose tip, right mouth corner, left mouth corner (as seen in the image: the
subject's right eye is on the image's left).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from driftbench.registry import Registry

#: InsightFace ``norm_crop`` template for a 112x112 ArcFace-style chip (also what SFace expects)
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


@dataclass
class Face:
    """One detected face in full-frame pixel coordinates."""

    box: np.ndarray  # (4,) x, y, w, h
    landmarks: np.ndarray  # (5, 2)
    score: float

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])

    @property
    def size(self) -> float:
        """Face size in pixels: the geometric mean of box width and height."""
        return float(np.sqrt(max(self.box[2], 0.0) * max(self.box[3], 0.0)))


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity transform mapping ``src`` points onto ``dst``.

    The closed-form least-squares (Umeyama 1991) solution that insightface's ``norm_crop`` computes with
    scikit-image's ``SimilarityTransform.estimate`` (tests/test_faces.py checks it against
    scikit-image), in numpy (a 2x2 SVD, ~35 us). OpenCV's estimateAffinePartial2D costs as much alone, but
    its RANSAC runs through OpenCV's thread pool, which the detector and SFace keep busy from other
    threads: in a run it waited ~3 ms a call (8% of the main thread's samples in issue 20's profile).
    """
    s = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    d = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if (len(s) != len(d) or len(s) < 2 or not (np.isfinite(s).all() and np.isfinite(d).all())
            or np.ptp(s, axis=0).max() <= 1e-9):
        raise ValueError("degenerate landmarks: cannot estimate an alignment")
    mu_s, mu_d = s.mean(axis=0), d.mean(axis=0)
    sc, dc = s - mu_s, d - mu_d
    u, sv, vt = np.linalg.svd(dc.T @ sc / len(s))
    sign = np.array([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])  # no reflection
    r = u @ np.diag(sign) @ vt
    var = (sc ** 2).sum() / len(s)
    scale = float((sv * sign).sum() / var)
    m = np.hstack([scale * r, (mu_d - scale * r @ mu_s)[:, None]])
    if not np.isfinite(m).all():
        raise ValueError("degenerate landmarks: cannot estimate an alignment")
    return m


def align_chip(image: np.ndarray, landmarks: np.ndarray, size: int = 112,
               template: np.ndarray = ARCFACE_TEMPLATE_112) -> np.ndarray:
    """Warp the face to a ``size`` x ``size`` chip whose 5 points sit on ``template`` (scaled)."""
    import cv2

    dst = template * (size / 112.0)
    m = similarity_matrix(landmarks, dst)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))


def blur_score(chip_bgr: np.ndarray) -> float:
    """Sharpness of an aligned chip: variance of its Laplacian (higher is sharper)."""
    import cv2

    gray = cv2.cvtColor(chip_bgr, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


@dataclass(frozen=True)
class BackendInfo:
    """What run.json and cache keys record about a backend."""

    name: str
    engine: str
    weights: dict[str, str] = field(default_factory=dict)  # file -> sha256
    versions: dict[str, str] = field(default_factory=dict)
    embedding_dim: int = 0
    threshold_key: str = ""

    def cache_token(self) -> str:
        parts = [self.name, str(self.embedding_dim)] + [f"{k}={v}" for k, v in sorted(self.weights.items())]
        return "|".join(parts)


class FaceBackend(Protocol):
    """Detector + aligner + identity embedder."""

    info: BackendInfo

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in an upright BGR image, best first."""
        ...

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        """The backend's aligned chip for one face (BGR uint8)."""
        ...

    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        """L2-normalised identity embeddings, one row per chip (float32)."""
        ...


#: every face backend driftbench ships (``face=<name>``), imported on first use; an installed package adds one
#: through the ``driftbench.faces`` entry-point group
BACKENDS: Registry[Callable[..., FaceBackend]] = Registry(
    "face backend",
    {"sface": "driftbench.faces.sface:SFaceBackend",
     "dlib": "driftbench.faces.dlib:DlibBackend",
     "insightface": "driftbench.faces.insightface_backend:InsightFaceBackend",
     "deepface": "driftbench.faces.deepface_backend:DeepFaceBackend"},
    entry_points="driftbench.faces",
    fix="face=<one of sface, dlib, insightface, deepface>")
KNOWN_BACKENDS = tuple(BACKENDS.entries)


def backend_factory(name: str) -> Callable[..., FaceBackend]:
    """The factory of a backend (its module imported on first use); unknown -> UsageError."""
    return BACKENDS.get(name)


def create_backend(name: str, **options: Any) -> FaceBackend:
    """Instantiate a registered backend (importing its module lazily)."""
    return backend_factory(name)(**options)


def preflight(name: str, options: dict[str, Any] | None = None, *, download: bool = False) -> str:
    """Cheap checks before any work; returns the key of the backend's calibrated identity threshold.

    A backend may define ``preflight(download=..., **options) -> str`` (a static or class method): it
    raises :class:`~driftbench.errors.UsageError` when an optional package is missing (exit code 2) and
    returns the threshold key, which differs per model for backends that load several models
    (``deepface:Facenet512``, ``insightface:buffalo_l``). Backends without one use their name.
    """
    factory = backend_factory(name)
    check = getattr(factory, "preflight", None)
    return str(check(download=download, **(options or {}))) if check is not None else name


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)
