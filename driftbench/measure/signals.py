"""Per-frame face signals for a clip or an image: every detected face, with identity, expression,
head pose, age and quality.

The result is a *face-level* table (one row per face per sample; a row with ``face_index == -1``
marks a sample where no face was found). It does not depend on the reference, so it is cached by
(video content hash, sampling, models) and reused by every reference, mitigation table, report
and leaderboard (:mod:`driftbench.measure.cache`). Choosing the character's face among several is a pure
function of this table (:mod:`driftbench.measure.track`).

Speed: frames are decoded in a background thread (:mod:`driftbench.measure.video`), detection and
alignment run in the calling thread, SFace embeds in batches, and MediaPipe (+ the age network)
runs in its own worker thread on small crops, so a 2-core machine keeps both cores busy.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from driftbench.faces.base import BackendInfo, Face, FaceBackend, blur_score, create_backend
from driftbench.faces.landmarker import CROP_SIZE, LandmarkResult, crop_box, square_crop
from driftbench.measure.preload import measuring_settled
from driftbench.measure.preload import pandas as pd

#: bump when the face-level table's columns or their meaning change (invalidates caches)
SCHEMA_VERSION = 3  # 2: OpenCV least-squares alignment, age in OpenCV DNN; 3: closed-form (Umeyama) alignment
THUMB_SIZE = 112
THUMB_QUALITY = 85


@dataclass(frozen=True)
class Sampling:
    """Which instants of a clip are measured."""

    fps: float = 2.0
    start: float = 0.0
    end: float | None = None

    def token(self) -> str:
        return (
            f"fps={self.fps:g};start={self.start:g};end={self.end if self.end is None else f'{self.end:g}'}"
        )


def _encode_thumb(chip: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", chip, [cv2.IMWRITE_JPEG_QUALITY, THUMB_QUALITY])
    return bytes(buf) if ok else b""


class FaceAnalyzer:
    """All face models of one process, loaded once and reused for every clip and image."""

    def __init__(self, backend: FaceBackend, *, landmarker_path: Path | None = None,
                 age_path: Path | None = None, max_faces: int = 3, batch_size: int = 16,
                 weights: dict[str, str] | None = None, unavailable: dict[str, str] | None = None,
                 device: str = "cpu") -> None:
        self.backend = backend
        self.max_faces = max_faces
        self.batch_size = batch_size
        self._landmarker_path = landmarker_path
        self._age_path = age_path
        self._landmarker: Any = None
        self._age: Any = None
        self.extra_weights = dict(weights or {})
        self.unavailable = dict(unavailable or {})
        self.device = device
        self._pool: cf.ThreadPoolExecutor | None = None
        self._loaded: cf.Future | None = None

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def create(cls, backend: str = "sface", *, expression: bool = True, age: bool = True, max_faces: int = 3,
               device: str = "auto", download: bool = False, backend_options: dict[str, Any] | None = None,
               batch_size: int = 16) -> FaceAnalyzer:
        """Build an analyzer; an optional signal whose weights are missing is marked unavailable."""
        from driftbench.errors import ModelNotFoundError
        from driftbench.weights import store

        fb = create_backend(backend, device=device, download=download, **(backend_options or {}))
        weights: dict[str, str] = {}
        unavailable: dict[str, str] = {}
        lm_path = age_path = None
        if expression:
            try:
                r = store.resolve("face_landmarker", download=download)
                lm_path, weights[r.path.name] = r.path, r.sha256
            except ModelNotFoundError as exc:
                unavailable["expression"] = unavailable["pose"] = str(exc)
        if age:
            if lm_path is None:
                unavailable["age"] = "age needs the MediaPipe landmarks (expression signal) for its face chip"
            else:
                try:
                    r = store.resolve("age", download=download)
                    age_path, weights[r.path.name] = r.path, r.sha256
                except ModelNotFoundError as exc:
                    unavailable["age"] = str(exc)
        from driftbench.faces.engines import resolve_device

        return cls(fb, landmarker_path=lm_path, age_path=age_path, max_faces=max_faces, batch_size=batch_size,
                   device=resolve_device(device),
                   weights=weights, unavailable=unavailable)

    @property
    def info(self) -> BackendInfo:
        return self.backend.info

    def signature(self) -> dict[str, Any]:
        """Everything that changes the face-level table (part of the cache key)."""
        return {
            "schema": SCHEMA_VERSION,
            "backend": self.backend.info.cache_token(),
            "signals": sorted(self.extra_weights.items()),
            "max_faces": self.max_faces,
            "thumb": THUMB_SIZE,
        }

    def _load_signal_models(self) -> None:
        """Runs in the worker thread: importing mediapipe and building its graph (~1 s) overlaps with
        the first frames' decoding and detection in the calling thread."""
        if self._landmarker is None and self._landmarker_path is not None:
            from driftbench.faces.landmarker import Landmarker

            self._landmarker = Landmarker(self._landmarker_path)
        if self._age is None and self._age_path is not None:
            from driftbench.faces.age import AgeEstimator

            self._age = AgeEstimator(self._age_path, device=self.device, engine=self._age_engine)

    @property
    def _age_engine(self) -> str:
        from driftbench.faces import engines

        return engines.auto_engine(self.device, opencv_cuda=False)

    @property
    def signal_engines(self) -> dict[str, str]:
        """The engine each signal network runs on (recorded in run.json); decided from the device, so a run
        whose first clip came from the signal cache (the network not loaded yet) records it too."""
        return {"age": self._age_engine} if self._age_path is not None else {}

    def _ensure_signal_models(self) -> None:
        if self._pool is None:
            self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="driftbench-landmarks")
            self._loaded = self._pool.submit(self._load_signal_models)
            self._loaded.add_done_callback(lambda _: measuring_settled())

    @property
    def _has_landmarks(self) -> bool:
        return self._landmarker_path is not None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
            self._loaded = None
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> FaceAnalyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- work -----------------------------------------------------------------------------------
    def _landmark_job(self, row: int, crop: np.ndarray, x0: float, y0: float, side: float,
                      ages: dict[int, float], pending: list[tuple[int, np.ndarray]]) -> LandmarkResult:
        """Runs in the worker thread: MediaPipe on the crop, then the age chip from its landmarks; the
        age network runs here too, in batches, so it overlaps with detection and embedding."""
        res = self._landmarker.analyze_crop(crop, x0, y0, side)
        if self._age is not None and res.found:
            from driftbench.faces.age import age_chip

            scale = CROP_SIZE / side
            lm_crop = (res.landmarks - np.array([x0, y0], dtype=np.float32)) * np.float32(scale)
            chip = age_chip(crop, lm_crop)
            if chip is not None:
                pending.append((row, chip))
                if len(pending) >= self.batch_size:
                    self._age_batch(ages, pending)
        return res

    def _age_batch(self, ages: dict[int, float], pending: list[tuple[int, np.ndarray]]) -> None:
        """Worker thread: apparent age of the pending chips."""
        if self._age is not None and pending:
            preds = self._age.predict([c for _, c in pending])
            ages.update({r: float(a) for (r, _), a in zip(pending, preds, strict=True)})
        pending.clear()

    def analyze_frames(self, frames: Any, *, progress: Callable[[int], None] | None = None,
                       identity_only: bool = False) -> pd.DataFrame:
        """Face-level table for an iterable of :class:`driftbench.measure.video.SampledFrame`;
        ``identity_only``: detection, alignment and embedding only (no landmarks, pose, expression or age:
        what published identity metrics need, at a fraction of the cost)."""
        landmarks = self._has_landmarks and not identity_only
        if landmarks:
            self._ensure_signal_models()
        rows: list[dict[str, Any]] = []
        chips: list[np.ndarray] = []
        chip_rows: list[int] = []
        futures: list[tuple[int, cf.Future]] = []
        embs: dict[int, np.ndarray] = {}
        ages: dict[int, float] = {}  # written by the worker thread only
        age_pending: list[tuple[int, np.ndarray]] = []

        def flush_embeddings() -> None:
            if chips:
                out = self.backend.embed(chips)
                for r, e in zip(chip_rows, out, strict=True):
                    embs[r] = e
                chips.clear()
                chip_rows.clear()

        for n, fr in enumerate(frames):
            faces: list[Face] = self.backend.detect(fr.image)[: self.max_faces]
            base = {"sample_index": fr.sample_index, "t": fr.t, "frame_index": fr.frame_index,
                    "n_faces": len(faces), "frame_h": fr.image.shape[0], "frame_w": fr.image.shape[1]}
            if not faces:
                rows.append({**base, "face_index": -1})
            for i, face in enumerate(faces):
                try:
                    chip = self.backend.align(fr.image, face)
                except ValueError:
                    chip = None
                row = {**base, "face_index": i, "det_score": face.score,
                       "box": face.box.astype(np.float32), "lm5": face.landmarks.astype(np.float32).ravel(),
                       "face_size": face.size}
                if chip is not None:
                    row["blur"] = blur_score(chip)
                    row["thumb"] = _encode_thumb(chip)
                    chips.append(chip)
                    chip_rows.append(len(rows))
                if landmarks:
                    x0, y0, side = crop_box(face.box)
                    crop = square_crop(fr.image, x0, y0, side, CROP_SIZE)
                    assert self._pool is not None
                    futures.append(
                        (
                            len(rows),
                            self._pool.submit(
                                self._landmark_job, len(rows), crop, x0, y0, side, ages, age_pending
                            ),
                        )
                    )
                rows.append(row)
            if len(chips) >= self.batch_size:
                flush_embeddings()
            if n == 0 and (not landmarks or (self._loaded is not None and self._loaded.done())):
                measuring_settled()  # no signal models (left) to load: the first frame is analysed
            if progress is not None:
                progress(n + 1)
        flush_embeddings()
        wait_loaded = getattr(self.backend, "wait_loaded", None)
        if wait_loaded is not None:  # a model that failed to load says so even when no face was seen
            wait_loaded()
        if landmarks and self._loaded is not None:
            self._loaded.result()  # surfaces a model-loading error here, once
        if self._pool is not None and futures:
            # the worker's last (partial) age batch; FIFO: runs after every landmark job
            self._pool.submit(self._age_batch, ages, age_pending).result()
        for r, fut in futures:
            res = fut.result()
            rows[r].update({"lm_found": res.found, "blendshapes": res.blendshapes, "yaw": res.yaw,
                            "pitch": res.pitch, "roll": res.roll, "lm478": res.landmarks.ravel()})
        for r, a in ages.items():
            rows[r]["age"] = a
        for r, e in embs.items():
            rows[r]["emb"] = e
        return face_table(rows)

    def analyze_video(self, path: str | Path, sampling: Sampling = Sampling(), *,
                      warnings: list[str] | None = None,
                      progress: Callable[[int], None] | None = None) -> pd.DataFrame:
        from driftbench.measure import video

        frames = video.sample(path, sampling.fps, start=sampling.start, end=sampling.end, warnings=warnings)
        return self.analyze_frames(frames, progress=progress)

    def analyze_image(self, image: np.ndarray) -> pd.DataFrame:
        from driftbench.measure.video import SampledFrame

        return self.analyze_frames([SampledFrame(0, 0.0, 0, image)])


FACE_COLUMNS: dict[str, str] = {
    "sample_index": "int32", "t": "float64", "frame_index": "int32", "face_index": "int16",
    "n_faces": "int16", "frame_w": "int32", "frame_h": "int32", "det_score": "float32",
    "face_size": "float32", "blur": "float32", "lm_found": "bool", "yaw": "float32", "pitch": "float32",
    "roll": "float32", "age": "float32",
}
LIST_COLUMNS = ("box", "lm5", "emb", "blendshapes", "lm478")


def face_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Typed face-level DataFrame from row dicts (missing values -> NaN / None)."""
    df = pd.DataFrame(rows)
    for col, dtype in FACE_COLUMNS.items():
        if col not in df:
            df[col] = False if dtype == "bool" else np.nan
        if dtype == "bool":
            # True only where the row says True (None / NaN: False), without fillna's object downcasting
            # (deprecated in pandas 2.2, a FutureWarning in every run)
            df[col] = df[col].eq(True).astype(bool)
        elif dtype.startswith("int"):
            df[col] = df[col].astype(dtype)
        else:
            df[col] = df[col].astype(dtype)
    for col in (*LIST_COLUMNS, "thumb"):
        if col not in df:
            df[col] = None
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    ordered = [*list(FACE_COLUMNS), *LIST_COLUMNS, "thumb"]
    return df[ordered].sort_values(["sample_index", "face_index"], kind="mergesort").reset_index(drop=True)
