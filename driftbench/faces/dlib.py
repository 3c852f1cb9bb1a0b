"""dlib backend: HOG (or CNN) face detector + 5-point shape predictor + ResNet 128-D descriptor.

Weights are the CC0 files of PyPI ``face-recognition-models`` (read from its package folder without
importing it: its ``__init__`` needs ``pkg_resources``, which current setuptools no longer ships) or
from a folder on ``$DRIFTBENCH_MODELS``; dlib itself comes prebuilt from PyPI ``dlib-bin``.

Similarity: dlib documents its descriptor by euclidean distance (same person below 0.6). The backend
exposes, like every backend, the cosine of the L2-normalised descriptors. Descriptor norms vary little,
so the cosine is nearly a monotone function of the distance (``cos ~ 1 - d^2 / (2 r^2)``), but its
range is compressed (different people ~0.8 where SFace gives ~0.1): never reuse another backend's
threshold; ``driftbench calibrate face=dlib`` stores dlib's own, and :func:`euclidean_distance` gives
dlib's documented distance where a caller wants dlib's own semantics.

Landmarks: the 5-point model gives two corners per eye and the base of the nose, not the mouth. The
backend reports YuNet/InsightFace-order points with eye centres (mean of the corners), dlib's nose
base as the nose, and mouth corners placed by the ArcFace template fitted to the two eye centres: an
estimate, used for nothing but the stored ``lm5``. Alignment uses dlib's own ``get_face_chip`` on the
shape predictor's points, as the ResNet was trained.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np

from driftbench.errors import ModelNotFoundError, UsageError
from driftbench.faces import engines
from driftbench.faces.base import (
    ARCFACE_TEMPLATE_112,
    BackendInfo,
    Face,
    l2_normalize,
    similarity_matrix,
)
from driftbench.weights import store

INSTALL_FIX = "pip install 'driftbench[dlib]'"
PACKAGE = "face_recognition_models"

#: file -> sha256 of the CC0 weights in face-recognition-models 0.3.0
WEIGHTS = {
    "recognizer": ("dlib_face_recognition_resnet_model_v1.dat",
                   "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"),
    "shape5": ("shape_predictor_5_face_landmarks.dat",
               "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888"),
    "cnn": ("mmod_human_face_detector.dat",
            "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6"),
}

#: side of dlib's aligned chip and its default padding (what the ResNet expects)
CHIP_SIZE = 150
CHIP_PADDING = 0.25


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError:
        raise UsageError(f"face=dlib needs dlib -- fix: {INSTALL_FIX}") from None
    return dlib


def weight_path(role: str) -> Path:
    """A dlib weight file, sha256-checked: ``$DRIFTBENCH_MODELS`` / the model cache first, then the
    installed face-recognition-models package."""
    filename, sha = WEIGHTS[role]
    candidates: list[Path] = []
    for d in store.search_dirs():
        candidates += [d / filename, d / "dlib" / filename]
    try:
        spec = importlib.util.find_spec(
            PACKAGE
        )  # locate without importing (its __init__ needs pkg_resources)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(loc) / "models" / filename for loc in spec.submodule_search_locations]
    for p in candidates:
        if p.is_file() and store.cached_sha256(p) == sha:
            return p
    if spec is None:
        raise UsageError(f"face=dlib needs the {PACKAGE} weights ({filename}) -- fix: {INSTALL_FIX}")
    raise ModelNotFoundError(f"{filename} (sha256 {sha[:12]}...) not found in {[str(c) for c in candidates]} "
                             f"-- fix: pip install --force-reinstall 'face-recognition-models==0.3.0'")


def euclidean_distance(cos_sim: np.ndarray | float, norm_a: np.ndarray | float = 1.0,
                       norm_b: np.ndarray | float = 1.0) -> np.ndarray:
    """dlib's euclidean descriptor distance from the cosine and the raw descriptor norms."""
    a, b = np.asarray(norm_a, np.float64), np.asarray(norm_b, np.float64)
    return np.sqrt(np.maximum(a * a + b * b - 2.0 * a * b * np.asarray(cos_sim, np.float64), 0.0))


class DlibBackend:
    """dlib HOG/CNN detector + 5-point alignment + ResNet 128-D (CC0 weights)."""

    @staticmethod
    def preflight(download: bool = False, **options: Any) -> str:
        _import_dlib()
        for role in ("recognizer", "shape5") + (("cnn",) if options.get("detector") == "cnn" else ()):
            weight_path(role)
        return "dlib"

    def __init__(self, device: str = "auto", download: bool = False, detector: str = "hog", upsample: int = 0,
                 detect_side: int = 640, adjust_threshold: float = 0.0, num_jitters: int = 0,
                 batch_size: int = 16) -> None:
        dlib = _import_dlib()
        if detector not in ("hog", "cnn"):
            raise UsageError(f"face.options.detector={detector!r} is not a dlib detector -- fix: hog or cnn")
        self._dlib = dlib
        dev = engines.resolve_device(device)
        # dlib-bin is a CPU build; a CUDA build of dlib (compiled by the user) runs the CNN parts on the GPU
        self.device = "cuda" if dev == "cuda" and bool(getattr(dlib, "DLIB_USE_CUDA", False)) else "cpu"
        paths = {role: weight_path(role) for role in ("recognizer", "shape5")}
        if detector == "cnn":
            paths["cnn"] = weight_path("cnn")
            self._cnn = dlib.cnn_face_detection_model_v1(str(paths["cnn"]))
        else:
            self._hog = dlib.get_frontal_face_detector()
        self.detector = detector
        self.upsample = int(upsample)
        self.detect_side = int(detect_side)
        self.adjust_threshold = float(adjust_threshold)
        self.num_jitters = int(num_jitters)
        self.batch_size = int(batch_size)
        self._shape = dlib.shape_predictor(str(paths["shape5"]))
        self._rec = dlib.face_recognition_model_v1(str(paths["recognizer"]))
        self._lock = threading.Lock()
        self.info = BackendInfo(
            name="dlib",
            engine=f"dlib-{detector}(side {self.detect_side}, upsample {self.upsample})+shape5+resnet128;"
                   f"similarity:cosine;device:{self.device}",
            weights={p.name: store.cached_sha256(p) for p in paths.values()},
            versions={"dlib": str(dlib.__version__)},
            embedding_dim=128,
            threshold_key="dlib",
        )

    # -- detection --------------------------------------------------------------------------------
    def _detect_rects(self, rgb: np.ndarray) -> list[tuple[Any, float]]:
        with self._lock:
            if self.detector == "cnn":
                found = self._cnn(rgb, self.upsample)
                return [(d.rect, float(d.confidence)) for d in found]
            rects, scores, _ = self._hog.run(rgb, self.upsample, self.adjust_threshold)
            return list(zip(rects, (float(s) for s in scores), strict=True))

    def _shape_points(self, rgb: np.ndarray, rect: Any) -> np.ndarray:
        with self._lock:
            shape = self._shape(rgb, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces on a copy resized to ``detect_side`` (longer side), mapped back to full resolution.

        dlib's HOG finds faces of about 80 px and up at ``upsample=0``: at the default side of 640 that
        is about 12 % of the frame's longer side; raise ``upsample`` for smaller faces (4x the cost).
        """
        import cv2

        h, w = image.shape[:2]
        scale = self.detect_side / float(max(h, w)) if self.detect_side > 0 else 1.0
        interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        small = (
            image
            if scale == 1.0
            else cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)
        )
        rgb = np.ascontiguousarray(small[:, :, ::-1])
        faces = []
        inv = 1.0 / scale
        for rect, score in self._detect_rects(rgb):
            pts = self._shape_points(rgb, rect) * inv
            box = np.array([rect.left(), rect.top(), rect.width(), rect.height()], dtype=np.float64) * inv
            faces.append(Face(box=box, landmarks=self.five_points(pts), score=score))
        faces.sort(key=lambda f: -f.area)
        return faces

    @staticmethod
    def five_points(dlib5: np.ndarray) -> np.ndarray:
        """dlib's 5 points (image-right eye corners 0-1, image-left eye corners 2-3, nose base 4) in
        YuNet/InsightFace order; the mouth corners are the ArcFace template's, fitted to the eyes."""
        eye_l = dlib5[2:4].mean(axis=0)  # image-left eye (the subject's right)
        eye_r = dlib5[0:2].mean(axis=0)
        m = similarity_matrix(ARCFACE_TEMPLATE_112[:2], np.stack([eye_l, eye_r]))
        mouth = ARCFACE_TEMPLATE_112[3:5] @ m[:, :2].T + m[:, 2]
        return np.vstack([eye_l, eye_r, dlib5[4], mouth]).astype(np.float64)

    # -- alignment and embedding ------------------------------------------------------------------
    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        """dlib's own 150x150 chip (``get_face_chip``) from the shape predictor run on the full frame."""
        dlib = self._dlib
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        x, y, w, h = (float(v) for v in face.box)
        rect = dlib.rectangle(round(x), round(y), round(x + w), round(y + h))
        with self._lock:
            shape = self._shape(rgb, rect)
            chip = dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
        return np.ascontiguousarray(np.asarray(chip)[:, :, ::-1])

    def descriptors(self, chips: list[np.ndarray]) -> np.ndarray:
        """Raw (unnormalised) dlib descriptors: euclidean distance < 0.6 is dlib's "same person"."""
        if not chips:
            return np.zeros((0, 128), dtype=np.float32)
        out = []
        for i in range(0, len(chips), self.batch_size):
            batch = [np.ascontiguousarray(c[:, :, ::-1]) for c in chips[i : i + self.batch_size]]
            with self._lock:
                vecs = self._rec.compute_face_descriptor(batch, self.num_jitters)
            out.append(np.array([np.asarray(v) for v in vecs], dtype=np.float32).reshape(len(batch), 128))
        return np.concatenate(out, axis=0)

    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        return l2_normalize(self.descriptors(chips))
