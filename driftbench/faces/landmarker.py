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
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """(yaw, pitch, roll) in degrees from MediaPipe's 4x4 facial transformation matrix.

    Extrinsic x-y-z Euler angles, the same as scipy's ``Rotation.as_euler("xyz")`` (tests check it),
    read with OpenCV's RQ decomposition: importing scipy.spatial costs ~0.35 s of the run."""
    import cv2

    rot = np.asarray(matrix, dtype=np.float64)[:3, :3]
    # remove scale (the canonical model is scaled into the camera frame)
    u, _, vt = np.linalg.svd(rot)
    rot = u @ vt
    pitch, yaw, roll = cv2.RQDecomp3x3(rot)[0]
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


#: lines MediaPipe/TFLite/absl print natively on fd 2 while a graph is built and first run
NATIVE_NOISE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl|"
                          r"WARNING: Logging before InitGoogle|INFO: Created TensorFlow|INFO: TfLite)")
_QUIET_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Hide MediaPipe's native start-up log lines (warnings about its own defaults when a graph is built
    and first run) without losing anything else written to stderr meanwhile.

    fd 2 belongs to the whole process, and this runs on a loader thread while other threads keep
    logging; pointing fd 2 at /dev/null silenced their warnings too. Instead fd 2 goes to a temporary
    file for the window; afterwards every captured line that is not native noise (``NATIVE_NOISE``) is
    written to the real stderr, so another thread's message is delayed by the window, never dropped."""
    import tempfile

    with _QUIET_LOCK:  # two windows at once would restore fd 2 out of order
        try:
            saved = os.dup(2)
        except OSError:
            yield
            return
        try:
            capture = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _replay
        except OSError:
            os.close(saved)
            yield
            return
        try:
            sys.stderr.flush()
            os.dup2(capture.fileno(), 2)
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()  # Python-level text written in the window, into the capture
            os.dup2(saved, 2)
            os.close(saved)
            _replay(capture)


def _replay(capture: Any) -> None:
    """Write the captured lines that are not native noise to (the restored) fd 2."""
    try:
        capture.seek(0)
        data = capture.read()
    except OSError:
        return
    finally:
        capture.close()
    kept = [ln for ln in data.splitlines(keepends=True)
            if not NATIVE_NOISE.match(ln.decode("utf-8", "replace"))]
    out = memoryview(b"".join(kept))
    with contextlib.suppress(OSError):
        while out:
            out = out[os.write(2, out):]


# the packages whose __init__ imports every MediaPipe task (audio with sounddevice/PortAudio, drawing
# utilities with matplotlib.pyplot): ~0.6 s of a 4 s run, for modules driftbench never uses
_DEFER_LOCK = threading.Lock()
_MEDIAPIPE_PACKAGES = (
    "mediapipe",
    "mediapipe.tasks",
    "mediapipe.tasks.python",
    "mediapipe.tasks.python.vision",
)


def _defer_packages(root: str) -> None:
    """Put ``_MEDIAPIPE_PACKAGES`` in ``sys.modules`` as bare package modules: importing their
    submodules works, and their ``__init__`` code runs on the first access to a name they do not hold
    yet (PEP 562 ``__getattr__``). Then all of them run, deepest first, which is the order a plain
    ``import mediapipe`` runs them in (mediapipe's own ``__init__`` rebinds ``mediapipe.tasks`` last), so
    the process ends up with exactly the package a plain import makes."""
    import importlib.util
    import sys

    deferred = []
    for name in _MEDIAPIPE_PACKAGES:
        if name in sys.modules:
            continue
        directory = os.path.join(root, *name.split(".")[1:])
        spec = importlib.util.spec_from_file_location(name, os.path.join(directory, "__init__.py"),
                                                      submodule_search_locations=[directory])
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        parent, _, child = name.rpartition(".")
        if parent in sys.modules:  # bound on its parent, as the import system does
            setattr(sys.modules[parent], child, module)
        sys.modules[name] = module
        deferred.append((module, spec.loader))

    def complete() -> None:
        hooked = [(m, loader) for m, loader in deferred if m.__dict__.pop("__getattr__", None) is not None]
        for module, loader in reversed(hooked):
            loader.exec_module(module)

    for module, _ in deferred:
        def __getattr__(attr: str, _module=module):  # the PEP 562 hook
            complete()
            try:
                return _module.__dict__[attr]
            except KeyError:
                raise AttributeError(f"module {_module.__name__!r} has no attribute {attr!r}") from None

        module.__getattr__ = __getattr__  # type: ignore[method-assign]


def mediapipe_face_landmarker():  # -> tuple[ModuleType, ModuleType, ModuleType, ModuleType]
    """MediaPipe's FaceLandmarker, Image, BaseOptions and running-mode modules, imported without
    running the ``__init__`` of ``mediapipe`` and its task packages (see ``_MEDIAPIPE_PACKAGES``).
    ``import mediapipe`` later in the process still gives the complete package (tests check it)."""
    import importlib
    import importlib.util
    import sys

    with _DEFER_LOCK:  # two analyzers built at once in one process
        if "mediapipe" not in sys.modules:
            spec = importlib.util.find_spec("mediapipe")
            if spec is None or not spec.submodule_search_locations:
                raise ModuleNotFoundError("No module named 'mediapipe'", name="mediapipe")
            _defer_packages(next(iter(spec.submodule_search_locations)))
    vision = "mediapipe.tasks.python.vision"
    return (
        importlib.import_module(f"{vision}.face_landmarker"),
        importlib.import_module(f"{vision}.core.image"),
        importlib.import_module("mediapipe.tasks.python.core.base_options"),
        importlib.import_module(f"{vision}.core.vision_task_running_mode"),
    )


class Landmarker:
    """One MediaPipe FaceLandmarker graph (IMAGE mode), reused for every face of a process."""

    def __init__(self, model_path: str | Path) -> None:
        with quiet_native_stderr():
            self._create(model_path)

    def _create(self, model_path: str | Path) -> None:
        face_landmarker, image, base_options, running_mode = mediapipe_face_landmarker()
        self._image, self._srgb = image.Image, image.ImageFormat.SRGB
        opts = face_landmarker.FaceLandmarkerOptions(
            base_options=base_options.BaseOptions(model_asset_path=str(model_path)),
            running_mode=running_mode.VisionTaskRunningMode.IMAGE,
            num_faces=1,
            min_face_detection_confidence=0.3,
            min_face_presence_confidence=0.3,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        self._lm = face_landmarker.FaceLandmarker.create_from_options(opts)
        self.blendshape_names: list[str] = []
        # the first inference prints its own warnings: run it now, silenced
        self._lm.detect(
            self._image(image_format=self._srgb, data=np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8))
        )

    def analyze(self, image_bgr: np.ndarray, box: np.ndarray) -> LandmarkResult:
        """Landmarks, expression and pose of the face in ``box`` (x, y, w, h) of a full frame."""
        x0, y0, side = crop_box(box)
        return self.analyze_crop(square_crop(image_bgr, x0, y0, side, CROP_SIZE), x0, y0, side)

    def analyze_crop(self, crop_bgr: np.ndarray, x0: float, y0: float, side: float) -> LandmarkResult:
        """Same as :meth:`analyze` on a crop made by :func:`square_crop` (so threads can share work)."""
        import cv2

        rgb = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2RGB)
        res = self._lm.detect(self._image(image_format=self._srgb, data=rgb))
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
