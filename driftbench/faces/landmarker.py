"""Expression and head pose: MediaPipe FaceLandmarker (Tasks API) on a detector crop.

MediaPipe misses small faces on full frames, so it runs on a square crop around the detector's box
(1.8x the box, resized to 256 px). Outputs per face: 52 blendshape scores (expression), yaw/pitch/roll
in degrees from the facial transformation matrix (head pose), and the 478 landmarks mapped back to
full-frame pixels (used for landmark motion and for the warps of the synthetic drift generator and
of the post-processing mitigations). MediaPipe 1.2 ships no model: the ``face_landmarker.task`` file
comes from the model store. ``close()`` releases the graph explicitly.

Pose convention: MediaPipe's canonical face frame (x to the subject's left as seen in the image,
y up, z towards the camera); ``yaw`` is rotation about y (positive: face turned to the image's
right), ``pitch`` about x (positive: chin up), ``roll`` about z. Frontal is (0, 0, 0).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CROP_SCALE = 1.8
CROP_SIZE = 256
N_BLENDSHAPES = 52
N_LANDMARKS = 478


@dataclass
class LandmarkResult:
    found: bool
    blendshapes: np.ndarray  # (52,) float32, NaN when not found
    yaw: float
    pitch: float
    roll: float
    landmarks: np.ndarray  # (478, 2) float32 full-frame pixels, NaN when not found

    @classmethod
    def missing(cls) -> LandmarkResult:
        return cls(False, np.full(N_BLENDSHAPES, np.nan, np.float32), np.nan, np.nan, np.nan,
                   np.full((N_LANDMARKS, 2), np.nan, np.float32))


def euler_from_transform(matrix: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from MediaPipe's 4x4 facial transformation matrix."""
    from scipy.spatial.transform import Rotation

    rot = np.asarray(matrix, dtype=np.float64)[:3, :3]
    # remove scale (the canonical model is scaled into the camera frame)
    u, _, vt = np.linalg.svd(rot)
    rot = u @ vt
    pitch, yaw, roll = Rotation.from_matrix(rot).as_euler("xyz", degrees=True)
    return float(yaw), float(pitch), float(roll)


def crop_box(box: np.ndarray, scale: float = CROP_SCALE) -> tuple[float, float, float]:
    """Square crop (x0, y0, side) centred on a face box; may extend past the image (padded)."""
    x, y, w, h = (float(v) for v in box[:4])
    side = max(w, h) * scale
    cx, cy = x + w / 2.0, y + h / 2.0
    return cx - side / 2.0, cy - side / 2.0, side


def square_crop(image: np.ndarray, x0: float, y0: float, side: float, out: int) -> np.ndarray:
    """Resample the square (x0, y0, side) of ``image`` to ``out`` x ``out`` pixels (zero padded)."""
    import cv2

    s = out / side
    m = np.array([[s, 0.0, -x0 * s], [0.0, s, -y0 * s]], dtype=np.float64)
    return cv2.warpAffine(image, m, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence native (C++/absl) log lines on fd 2 for a moment: MediaPipe prints several warnings
    about its own defaults when a graph is built and first run. Python-level messages are unaffected
    unless written in that window (runs also log to driftbench.log)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class Landmarker:
    """One MediaPipe FaceLandmarker graph (IMAGE mode), reused for every face of a process."""

    def __init__(self, model_path: str | Path) -> None:
        with quiet_native_stderr():
            self._create(model_path)

    def _create(self, model_path: str | Path) -> None:
        import mediapipe as mp
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        self._mp = mp
        opts = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=1,
            min_face_detection_confidence=0.3,
            min_face_presence_confidence=0.3,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        self._lm = vision.FaceLandmarker.create_from_options(opts)
        self.blendshape_names: list[str] = []
        # the first inference prints its own warnings: run it now, silenced
        self._lm.detect(mp.Image(image_format=mp.ImageFormat.SRGB,
                                 data=np.zeros((CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)))

    def analyze(self, image_bgr: np.ndarray, box: np.ndarray) -> LandmarkResult:
        """Landmarks, expression and pose of the face in ``box`` (x, y, w, h) of a full frame."""
        x0, y0, side = crop_box(box)
        return self.analyze_crop(square_crop(image_bgr, x0, y0, side, CROP_SIZE), x0, y0, side)

    def analyze_crop(self, crop_bgr: np.ndarray, x0: float, y0: float, side: float) -> LandmarkResult:
        """Same as :meth:`analyze` on a crop made by :func:`square_crop` (so threads can share work)."""
        import cv2

        rgb = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2RGB)
        res = self._lm.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb))
        if not res.face_landmarks:
            return LandmarkResult.missing()
        cats = res.face_blendshapes[0] if res.face_blendshapes else []
        if cats and not self.blendshape_names:
            self.blendshape_names = [c.category_name for c in cats]
        bs = (np.array([c.score for c in cats], dtype=np.float32) if cats
              else np.full(N_BLENDSHAPES, np.nan, np.float32))
        if res.facial_transformation_matrixes:
            yaw, pitch, roll = euler_from_transform(np.asarray(res.facial_transformation_matrixes[0]))
        else:
            yaw = pitch = roll = float("nan")
        pts = np.array([[p.x, p.y] for p in res.face_landmarks[0]], dtype=np.float32)
        pts = pts * np.float32(side) + np.array([x0, y0], dtype=np.float32)
        return LandmarkResult(True, bs, yaw, pitch, roll, pts)

    def close(self) -> None:
        if self._lm is not None:
            self._lm.close()
            self._lm = None

    def __enter__(self) -> Landmarker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
