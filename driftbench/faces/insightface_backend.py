"""InsightFace backend (``face=insightface``): any InsightFace model pack, through InsightFace 2.1.

A pack is a folder of ONNX files that ``insightface.app.FaceAnalysis`` routes by shape: an SCRFD-style
detector (5 landmarks) and an ArcFace-style recogniser. ``face.options.pack`` is either an absolute
folder (a local pack) or a pack name under ``<root>/models`` (``buffalo_l``, ``antelopev2``: InsightFace
downloads those itself when ``fetch=true``; their licence is InsightFace's non-commercial research one).
The module is not called ``insightface.py`` so that it never shadows the package it wraps.

Installing: insightface 2.1 declares ``opencv-python``, which would overwrite the ``cv2`` folder of our
``opencv-contrib-python``; install it without its declared dependencies, then its real needs:
``pip install --no-deps 'insightface==2.1' && pip install 'driftbench[insightface]'``.

:func:`export_recognizer` turns an SFace-style ONNX (e.g. the OpenCV Zoo int8 file) into a recogniser
InsightFace reads correctly. InsightFace picks the input normalisation by looking for ``Sub``/``Mul``
node names among the first 8 graph nodes (graphs that normalise inside get raw pixels, the others
``(x - 127.5) / 127.5``). The int8 file starts with dequantisation ``DequantizeLinear``/``Reshape``
chains that hide SFace's own Sub/Mul, so a half-folded file gets the wrong normalisation and every
similarity reads about 0.99. Folding every constant chain puts Sub/Mul first again; the export checks
it and refuses to write a file InsightFace would misread.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from driftbench.errors import ModelNotFoundError, UsageError
from driftbench.faces import engines
from driftbench.faces.base import BackendInfo, Face, l2_normalize
from driftbench.weights import store

INSTALL_FIX = "pip install --no-deps 'insightface==2.1' && pip install 'driftbench[insightface]'"
DEFAULT_ROOT = "~/.insightface"

#: InsightFace's ArcFaceONNX heuristic: node names it reads as "the graph normalises its input itself"
_SUB_PREFIXES = ("Sub", "_minus")
_MUL_PREFIXES = ("Mul", "_mul")
_HEURISTIC_NODES = 8


def _import_insightface() -> Any:
    try:
        import insightface
        from insightface.app import FaceAnalysis  # noqa: F401  (fails early when a real need is missing)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "insightface"
        raise UsageError(f"face=insightface needs {missing} -- fix: {INSTALL_FIX}") from None
    return insightface


def reads_raw_pixels(model: Any) -> bool:
    """Whether InsightFace 2.1 will feed this recogniser raw 0-255 pixels (mean 0, std 1)."""
    first = model.graph.node[:_HEURISTIC_NODES]
    sub = any(n.name.startswith(_SUB_PREFIXES) for n in first)
    mul = any(n.name.startswith(_MUL_PREFIXES) for n in first)
    return sub and mul


def export_recognizer(src: str | Path, dst: str | Path) -> Path:
    """Write an SFace-style recogniser (normalises its raw 0-255 RGB input inside the graph) as a plain
    fp32 ONNX file that InsightFace's ArcFace path runs with the right input normalisation."""
    import onnx

    from driftbench.faces.onnx_fix import load_fixed

    model = onnx.load_from_string(load_fixed(src, fold=True))
    if not reads_raw_pixels(model):
        first = [(n.name, n.op_type) for n in model.graph.node[:_HEURISTIC_NODES]]
        raise ValueError(
            f"{src}: after folding, the first graph nodes {first} hide the input normalisation "
            "from InsightFace (it would feed (x-127.5)/127.5 and every similarity would read ~0.99) "
            "-- fix: use a recogniser whose graph starts with its Sub/Mul normalisation"
        )
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst


def build_pack(dst_dir: str | Path, detector: str | Path, recognizer: str | Path) -> Path:
    """A local InsightFace pack: an SCRFD-style detector (linked) + an exported SFace-style recogniser."""
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    det = dst / f"det_{Path(detector).name}"
    if not det.exists():
        os.symlink(Path(detector).resolve(), det)
    export_recognizer(recognizer, dst / f"rec_{Path(recognizer).stem}_fp32.onnx")
    return dst


def resolve_pack(pack: str, root: str = DEFAULT_ROOT, *, download: bool = False) -> tuple[Path | None, str]:
    """(folder, name) of a pack; folder None when it must still be downloaded (allowed)."""
    direct = Path(pack).expanduser()
    if direct.is_dir():
        return direct.resolve(), direct.resolve().name
    if os.sep in pack or pack.startswith((".", "~")):
        raise ModelNotFoundError(
            f"{pack}: InsightFace model pack folder not found -- fix: "
            "face.options.pack=/abs/folder/of/onnx/files or a pack name such as buffalo_l"
        )
    folder = Path(root).expanduser() / "models" / pack
    if folder.is_dir() and any(folder.glob("*.onnx")):
        return folder, pack
    if download:
        return None, pack
    raise ModelNotFoundError(f"InsightFace model pack {pack!r} not found in {folder} -- fix: fetch=true lets "
                             f"InsightFace download it into {folder}, or face.options.pack=/abs/folder")


class InsightFaceBackend:
    """SCRFD-style detection + 5-point ``norm_crop`` alignment + ArcFace-style embedding (InsightFace)."""

    @staticmethod
    def preflight(download: bool = False, pack: str = "buffalo_l", root: str = DEFAULT_ROOT,
                  **_options: Any) -> str:
        _import_insightface()
        _, name = resolve_pack(str(pack), str(root), download=download)
        return f"insightface:{name}"

    def __init__(self, device: str = "auto", download: bool = False, pack: str = "buffalo_l",
                 root: str = DEFAULT_ROOT, det_size: int = 640, det_thresh: float = 0.5,
                 batch_size: int = 16) -> None:
        insightface = _import_insightface()
        import onnxruntime
        from insightface.app import FaceAnalysis

        folder, name = resolve_pack(str(pack), str(root), download=download)
        dev = engines.resolve_device(device)
        providers = ["CPUExecutionProvider"]
        if dev == "cuda" and "CUDAExecutionProvider" in engines.ort_providers_available():
            providers.insert(0, "CUDAExecutionProvider")
        else:
            dev = "cpu"
        try:
            app = FaceAnalysis(name=str(folder) if folder is not None else name, root=str(root),
                               allowed_modules=["detection", "recognition"], providers=providers)
        except (AssertionError, OSError, RuntimeError, ValueError) as exc:
            where = folder or Path(root).expanduser() / "models" / name
            if folder is None and not any(where.glob("*.onnx")):
                raise ModelNotFoundError(
                    f"InsightFace could not download pack {name!r} into {where} "
                    f"({type(exc).__name__}) -- fix: put the pack's .onnx files there, or "
                    "face.options.pack=/abs/folder/of/onnx/files"
                ) from None
            raise ModelNotFoundError(
                f"InsightFace pack {name!r} ({where}) could not be loaded "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}) "
                "-- fix: a folder with an SCRFD-style detector and an ArcFace-style "
                "recogniser (.onnx)"
            ) from None
        if "recognition" not in app.models:
            raise ModelNotFoundError(f"InsightFace pack {name!r} ({app.model_dir}) has no recognition model "
                                     "-- fix: add an ArcFace-style .onnx (see export_recognizer for SFace)")
        size = int(det_size)
        app.prepare(ctx_id=0 if dev == "cuda" else -1, det_thresh=float(det_thresh),
                    det_size=(size, size) if size > 0 else None)
        self._app = app
        self._det = app.det_model
        self._rec = app.models["recognition"]
        fixed = self._rec.input_shape[0]
        # a recogniser exported with a fixed batch of 1 runs one chip at a time
        self.batch_size = 1 if isinstance(fixed, int) and fixed == 1 else int(batch_size)
        self._lock = threading.Lock()
        files = [Path(self._det.model_file), Path(self._rec.model_file)]
        self.info = BackendInfo(
            name="insightface",
            engine=f"insightface-{insightface.__version__}:{name};det_size:{size};"
                   f"input_norm:({self._rec.input_mean:g},{self._rec.input_std:g});device:{dev}",
            weights={f.name: store.cached_sha256(f) for f in files},
            versions={"insightface": str(insightface.__version__), "onnxruntime": onnxruntime.__version__},
            embedding_dim=int(self._rec.output_shape[-1]),
            threshold_key=f"insightface:{name}",
        )

    @property
    def input_norm(self) -> tuple[float, float]:
        """(mean, std) InsightFace applies to the recogniser's input (0, 1 means raw pixels)."""
        return float(self._rec.input_mean), float(self._rec.input_std)

    def detect(self, image: np.ndarray) -> list[Face]:
        with self._lock:
            boxes, kpss = self._det.detect(image, max_num=0)
        faces = []
        for k in range(boxes.shape[0]):
            x1, y1, x2, y2, score = (float(v) for v in boxes[k, :5])
            if kpss is None:
                continue  # no landmarks: the recogniser cannot be aligned
            faces.append(Face(box=np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float64),
                              landmarks=np.asarray(kpss[k], dtype=np.float64).reshape(5, 2), score=score))
        faces.sort(key=lambda f: -f.area)
        return faces

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        from insightface.utils import face_align

        with warnings.catch_warnings():  # scikit-image's deprecation of SimilarityTransform.estimate
            warnings.simplefilter("ignore", FutureWarning)
            return face_align.norm_crop(image, landmark=face.landmarks.astype(np.float32),
                                        image_size=int(self._rec.input_size[0]))

    def embed(self, chips: list[np.ndarray]) -> np.ndarray:
        if not chips:
            return np.zeros((0, self.info.embedding_dim), dtype=np.float32)
        out = []
        for i in range(0, len(chips), self.batch_size):
            batch = chips[i : i + self.batch_size]
            with self._lock:
                feats = self._rec.get_feat(list(batch))
            out.append(np.asarray(feats, dtype=np.float32).reshape(len(batch), -1))
        return l2_normalize(np.concatenate(out, axis=0))
