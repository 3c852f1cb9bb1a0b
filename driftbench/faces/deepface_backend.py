"""deepface backend (``face=deepface``): deepface's recognition models behind driftbench's interface.

Detection is always our YuNet (:class:`driftbench.faces.sface.YuNetDetector`, capped near 640 px), never
deepface's default Haar cascade, which misreads eyes and rotates faces by ~70 degrees (VALIDITY.md).
Alignment uses YuNet's landmarks in one of two ways (``face.options.align``):

- ``deepface``: deepface's own crop for its models (``detection.extract_face``: rotate so the eyes are
  level, crop the box, pad-resize to the model's input), which its Facenet / VGG-Face / OpenFace ... saw;
- ``arcface``: the 5-point similarity warp onto the ArcFace template at the model's input size, which is
  how ArcFace-family models (ArcFace, SFace, GhostFaceNet, Buffalo_L) were trained;
- ``auto`` (default): ``arcface`` for those four, ``deepface`` for the rest.

deepface 0.0.103 runs on onnxruntime without TensorFlow (``face.options.engine=onnx``, the default:
deepface would otherwise pick torch when it is installed, whose models need other weight files). It
reads weights from ``$DEEPFACE_HOME/.deepface/weights`` (``$DEEPFACE_HOME`` defaults to the home
folder) and downloads missing ones from GitHub / Hugging Face / Google Drive with ``fetch=true``. A
missing weight file is reported in one line: the file, where deepface expects it and the fix.

Installing: deepface declares ``opencv-contrib-python-headless`` (which would overwrite our ``cv2``
folder) and ``retina-face`` (only for its RetinaFace detector, unused here):
``pip install --no-deps 'deepface==0.0.103' && pip install 'driftbench[deepface]'``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from driftbench.errors import ModelNotFoundError, UsageError
from driftbench.faces.base import ARCFACE_TEMPLATE_112, BackendInfo, Face, align_chip, l2_normalize
from driftbench.weights import store

INSTALL_FIX = "pip install --no-deps 'deepface==0.0.103' && pip install 'driftbench[deepface]'"
ENGINES = ("onnx", "pytorch", "tensorflow")

#: weight files deepface 0.0.103 reads for each recognition model on its onnx engine (relative to
#: $DEEPFACE_HOME/.deepface/weights); tests/test_backends.py checks this table against deepface itself
ONNX_WEIGHTS: dict[str, str] = {
    "VGG-Face": "vgg_face_weights.onnx",
    "Facenet": "facenet_weights.onnx",
    "Facenet512": "facenet512_weights.onnx",
    "OpenFace": "openface_weights.onnx",
    "DeepFace": "VGGFace2_DeepFace_weights_val-0.9034.onnx",
    "DeepID": "deepid_weights.onnx",
    "ArcFace": "arcface_weights.onnx",
    "SFace": "face_recognition_sface_2021dec.onnx",
    "GhostFaceNet": "ghostfacenet_v1.onnx",
    "Dlib": "dlib_face_recognition_resnet_model_v1.dat",
    "Buffalo_L": os.path.join("buffalo_l", "webface_r50.onnx"),
}

#: models trained on 5-point aligned ArcFace-style crops
ARCFACE_FAMILY = frozenset({"ArcFace", "SFace", "GhostFaceNet", "Buffalo_L"})

# deepface's weight hook is a module global: patch it for one model build at a time
_BUILD_LOCK = threading.Lock()


def weights_dir() -> Path:
    """Where deepface reads its weights: ``$DEEPFACE_HOME/.deepface/weights``."""
    return Path(os.environ.get("DEEPFACE_HOME") or os.path.expanduser("~")) / ".deepface" / "weights"


def missing_weights_message(model_name: str, file_name: str) -> str:
    target = weights_dir() / file_name
    return (f"{target}: deepface model {model_name!r} needs its weight file {Path(file_name).name}, which is "
            f"missing -- fix: run with fetch=true so deepface downloads it, or copy the file to {target} "
            f"(DEEPFACE_HOME={os.environ.get('DEEPFACE_HOME') or '~'})")


def _import_deepface(engine: str) -> Any:
    """deepface's modules, with its backend engine chosen before deepface first decides it."""
    if engine not in ENGINES:
        raise UsageError(
            f"face.options.engine={engine!r} is not a deepface engine -- fix: one of {', '.join(ENGINES)}"
        )
    try:
        import deepface
        from deepface.commons import backend_utils
        from deepface.modules import detection, modeling, preprocessing  # noqa: F401
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "deepface"
        raise UsageError(f"face=deepface needs {missing} -- fix: {INSTALL_FIX}") from None
    chosen = backend_utils._backend_engine
    if chosen is not None and chosen != engine:
        raise UsageError(
            f"deepface already runs on {chosen} in this process -- fix: face.options.engine={chosen}, "
            "or a fresh process"
        )
    if chosen is None:
        os.environ[backend_utils.BACKEND_ENGINE_ENV_VAR] = engine
        backend_utils.get_backend_engine()  # validates that the engine's packages are installed
    return deepface


@contextmanager
def _weights_guard(model_name: str, download: bool, seen: list[Path]) -> Iterator[None]:
    """Route deepface's weight lookups through a check: a missing file without ``download`` raises
    our one-line error instead of a network attempt; every file used is recorded (for hashes)."""
    from deepface.commons import weight_utils

    original = weight_utils.download_weights_if_necessary

    def guarded(file_name: str, source_url: Any, compress_type: str | None = None) -> str:
        target = weights_dir() / file_name
        if not target.is_file():
            if not download:
                raise ModelNotFoundError(missing_weights_message(model_name, file_name))
            try:
                path = original(file_name=file_name, source_url=source_url, compress_type=compress_type)
            except Exception as exc:
                cause = type(exc.__cause__ or exc).__name__
                raise ModelNotFoundError(
                    f"{target}: deepface model {model_name!r} needs its weight file {Path(file_name).name}; "
                    f"deepface could not download it ({cause}) -- fix: copy the file to {target} "
                    f"(DEEPFACE_HOME={os.environ.get('DEEPFACE_HOME') or '~'}), or rerun where deepface "
                    "reaches "
                    "its download hosts"
                ) from None
            target = Path(path)
        seen.append(target)
        return str(target)

    with _BUILD_LOCK:
        weight_utils.download_weights_if_necessary = guarded
        try:
            yield
        finally:
            weight_utils.download_weights_if_necessary = original


class DeepFaceBackend:
    """YuNet detection + YuNet-landmark alignment + a deepface recognition model (onnxruntime)."""

    @staticmethod
    def preflight(download: bool = False, model_name: str = "Facenet512", engine: str = "onnx",
                  **_options: Any) -> str:
        _import_deepface(str(engine))
        from deepface.modules import modeling

        if model_name not in modeling.AVAILABLE_MODELS["facial_recognition"]:
            known = ", ".join(modeling.AVAILABLE_MODELS["facial_recognition"])
            raise UsageError(
                f"face.options.model_name={model_name!r} is not a deepface model -- fix: one of {known}"
            )
        file_name = ONNX_WEIGHTS.get(model_name) if engine == "onnx" else None
        if file_name and not download and not (weights_dir() / file_name).is_file():
            raise ModelNotFoundError(missing_weights_message(model_name, file_name))
        return f"deepface:{model_name}"

    def __init__(self, device: str = "auto", download: bool = False, model_name: str = "Facenet512",
                 engine: str = "onnx", align: str = "auto", normalization: str = "base",
                 score_threshold: float = 0.6, detect_max_side: int = 640, batch_size: int = 16) -> None:
        import cv2

        from driftbench.faces import engines
        from driftbench.faces.sface import YuNetDetector

        self.preflight(download=download, model_name=model_name, engine=engine)
        deepface = _import_deepface(engine)
        from deepface.modules import modeling

        if align == "auto":
            align = "arcface" if model_name in ARCFACE_FAMILY else "deepface"
        if align not in ("arcface", "deepface"):
            raise UsageError(f"face.options.align={align!r} -- fix: auto, arcface or deepface")
        dev = engines.resolve_device(device)
        if engine == "onnx":
            # deepface picks onnxruntime providers from this variable (CUDA first when installed)
            os.environ["DEEPFACE_ONNX_PROVIDERS"] = "cuda,cpu" if dev == "cuda" else "cpu"
        seen: list[Path] = []
        with _weights_guard(model_name, download, seen):
            # the class, not modeling.build_model: its process-wide cache would outlive $DEEPFACE_HOME changes
            self.model = modeling.get_model_class(task="facial_recognition", model_name=model_name)()
        det = store.resolve("yunet", download=download)
        self.detector = YuNetDetector(
            det.path, score_threshold=score_threshold, max_side=detect_max_side, device=dev
        )
        self.model_name = model_name
        self.align_mode = align
        self.normalization = normalization
        self.batch_size = int(batch_size)
        # deepface's input_shape is (width, height) for its resize (DeepID's 47x55 shows it)
        self.target_size = (int(self.model.input_shape[1]), int(self.model.input_shape[0]))
        self._lock = threading.Lock()
        providers: list[str] = getattr(getattr(self.model, "model", None), "get_providers", lambda: [])()
        on_gpu = any("CUDA" in p for p in providers)
        self.info = BackendInfo(
            name="deepface",
            engine=f"yunet:opencv-{cv2.__version__};deepface-{deepface.__version__}:{model_name}({engine});"
                   f"align:{align};normalization:{normalization};device:{'cuda' if on_gpu else 'cpu'}",
            weights={det.path.name: det.sha256, **{p.name: store.cached_sha256(p) for p in seen}},
            versions={"deepface": str(deepface.__version__), "opencv": cv2.__version__},
            embedding_dim=int(self.model.output_shape),
            threshold_key=f"deepface:{model_name}",
        )

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.detector.detect(image)

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        """The model's input chip (BGR uint8, deepface's (height, width))."""
        th, tw = self.target_size
        if self.align_mode == "arcface" and th == tw:
            return align_chip(image, face.landmarks, th, ARCFACE_TEMPLATE_112)
        return self._deepface_chip(image, face)

    def _deepface_chip(self, image: np.ndarray, face: Face) -> np.ndarray:
        from deepface.models.Detector import FacialAreaRegion
        from deepface.modules import detection, preprocessing

        x, y, w, h = (int(v) for v in face.box)
        lm = np.rint(face.landmarks).astype(int)
        # deepface's eyes are the person's: "left" is the image-right eye (YuNet's second point)
        region = FacialAreaRegion(
            x=max(x, 0),
            y=max(y, 0),
            w=w,
            h=h,
            confidence=face.score,
            left_eye=(int(lm[1, 0]), int(lm[1, 1])),
            right_eye=(int(lm[0, 0]), int(lm[0, 1])),
        )
        crop = detection.extract_face(facial_area=region, img=image, align=True, expand_percentage=0,
                                      width_border=0, height_border=0, detector_backend="yunet").img
        if crop.size == 0:
            return np.zeros((*self.target_size, 3), dtype=np.uint8)
        resized = preprocessing.resize_image(img=np.ascontiguousarray(crop), target_size=self.target_size)[0]
        return np.clip(np.rint(resized * 255.0), 0, 255).astype(np.uint8)

    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        from deepface.modules import preprocessing

        if not chips:
            return np.zeros((0, self.info.embedding_dim), dtype=np.float32)
        out = []
        for i in range(0, len(chips), self.batch_size):
            batch = np.stack([c.astype(np.float32) / 255.0 for c in chips[i : i + self.batch_size]])
            batch = preprocessing.normalize_input(img=batch, normalization=self.normalization)
            with self._lock:
                feats = self.model.forward(batch)
            out.append(np.asarray(feats, dtype=np.float32).reshape(len(batch), -1))
        return l2_normalize(np.concatenate(out, axis=0))
