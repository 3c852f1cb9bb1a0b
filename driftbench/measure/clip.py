"""Measure one clip: signals (cached) -> the character's track -> per-frame similarities -> curve ->
per-clip metrics. The same function runs in-process, in a local process pool, or on Ray.

Everything a worker needs travels in :class:`MeasureSettings` (plain, picklable values); the face
models are loaded once per process (:func:`get_analyzer`).
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from driftbench.errors import ClipError, DriftbenchError, printable
from driftbench.measure import drift
from driftbench.measure.cache import SignalCache, content_hash, signal_key
from driftbench.measure.preload import measuring_settled
from driftbench.measure.preload import pandas as pd
from driftbench.measure.published import PublishedSettings
from driftbench.measure.signals import FaceAnalyzer, Sampling
from driftbench.sources.base import Clip

log = logging.getLogger("driftbench")


@dataclass(frozen=True)
class MetricSettings:
    bin_s: float = 1.0
    reference_s: float = 1.0
    opening_s: float = 2.0
    window_s: float = 2.0
    horizons: tuple[float, ...] = (5.0, 30.0, 60.0, 120.0)
    smooth_s: float = 1.0
    min_loss_s: float = 2.0
    far: float = 0.001
    loss_score: str = "decoupled"
    #: fewer sampled frames with the face than this: the clip is reported too short, not scored
    min_samples: int = 3


@dataclass(frozen=True)
class MeasureSettings:
    backend: str = "sface"
    backend_options: dict[str, Any] = field(default_factory=dict)
    expression: bool = True
    age: bool = True
    max_faces: int = 3
    device: str = "auto"
    download: bool = False
    sampling: Sampling = field(default_factory=Sampling)
    metrics: MetricSettings = field(default_factory=MetricSettings)
    reference: str = "auto"  # auto | images | first_frame
    cache_dir: str | None = None
    cache_enabled: bool = True
    decoupler: str = "default"
    threshold: float = 0.4
    progress: bool = False
    published: PublishedSettings = field(default_factory=PublishedSettings)

    def analyzer_key(self) -> tuple[Any, ...]:
        return (self.backend, tuple(sorted(self.backend_options.items())), self.expression, self.age,
                self.max_faces, self.device, self.download)


@dataclass
class ClipResult:
    clip: Clip
    status: str  # "ok" | "skipped" | "failed"
    summary: dict[str, Any] = field(default_factory=dict)
    frames: pd.DataFrame | None = None
    curve: pd.DataFrame | None = None
    thumbs: pd.DataFrame | None = None
    reference: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    signals_key: str = ""
    cache_hit: bool = False
    seconds: float = 0.0
    #: backend, engine and weights of the worker that measured the clip (for run.json)
    env: dict[str, Any] = field(default_factory=dict)


_ANALYZER: tuple[tuple[Any, ...], FaceAnalyzer] | None = None


def get_analyzer(settings: MeasureSettings) -> FaceAnalyzer:
    """The process's analyzer for these settings (models load once per process)."""
    global _ANALYZER
    key = settings.analyzer_key()
    if _ANALYZER is None or _ANALYZER[0] != key:
        if _ANALYZER is not None:
            _ANALYZER[1].close()
        _close_at_exit()
        analyzer = FaceAnalyzer.create(settings.backend, expression=settings.expression, age=settings.age,
                                       max_faces=settings.max_faces, device=settings.device,
                                       download=settings.download, backend_options=settings.backend_options)
        _ANALYZER = (key, analyzer)
    return _ANALYZER[1]


_CLOSE_REGISTERED = False


def _close_at_exit() -> None:
    """Close the process's analyzer when the interpreter exits, before ``concurrent.futures`` shuts its
    thread pools down: MediaPipe (1.2) closes its graph through such a pool, so a plain ``atexit`` handler
    (run after that shutdown) fails with "cannot schedule new futures after shutdown" in every process that
    measured in-process and exits normally (pytest, joblib/loky sweep workers). ``threading._register_atexit``
    is the hook concurrent.futures itself uses; its handlers run last-registered first, so this one runs
    before the pools close. Where it is missing (another Python), ``atexit``."""
    global _CLOSE_REGISTERED
    if _CLOSE_REGISTERED:
        return
    import threading

    try:
        threading._register_atexit(close_analyzer)  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # no such hook, or the interpreter is already shutting down
        import atexit

        atexit.register(close_analyzer)
    _CLOSE_REGISTERED = True


def close_analyzer() -> None:
    global _ANALYZER
    if _ANALYZER is not None:
        _ANALYZER[1].close()
        _ANALYZER = None


def video_faces(path: str | Path, analyzer: FaceAnalyzer, sampling: Sampling, cache: SignalCache,
                warnings: list[str] | None = None, progress: bool = False) -> tuple[pd.DataFrame, str, bool]:
    """Face-level table of a clip, from the cache when possible. Returns (table, key, cache_hit)."""
    key = signal_key(content_hash(path), sampling.token(), analyzer.signature())
    hit = cache.get(key)
    if hit is not None:
        measuring_settled()  # nothing to load or decode for this clip
        return hit, key, True
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc=Path(path).name[:40], unit="frame", leave=False)
    try:
        faces = analyzer.analyze_video(path, sampling, warnings=warnings,
                                       progress=(lambda n: bar.update(1)) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    # a truncated video is measured but not cached as complete
    if not (warnings and any("truncated" in w for w in warnings)):
        cache.put(key, faces)
    return faces, key, False


def image_faces(path: str | Path, analyzer: FaceAnalyzer, cache: SignalCache) -> pd.DataFrame:
    from driftbench.measure.video import read_image

    image = read_image(path)  # first: a missing or unreadable reference is a ClipError, not a failed hash
    key = signal_key(content_hash(path), "image", analyzer.signature())
    hit = cache.get(key)
    if hit is not None:
        return hit
    faces = analyzer.analyze_image(image)
    cache.put(key, faces)
    return faces


def reference_from_images(
    paths: tuple[str, ...], analyzer: FaceAnalyzer, cache: SignalCache
) -> drift.Reference:
    """The character's reference from its images: exactly one clear face per image."""
    rows = []
    for p in paths:
        faces = image_faces(p, analyzer, cache)
        faces = faces[(faces["face_index"] >= 0) & faces["emb"].notna()]
        if faces.empty:
            raise ClipError(p, "reference image has no detectable face",
                            "use a photo where the character's face is visible and at least ~40 px wide, or "
                            "reference=first_frame", reason="reference_no_face")
        big = faces["face_size"].max()
        clear = faces[faces["face_size"] >= 0.5 * big]
        if len(clear) > 1:
            raise ClipError(p, f"reference image has {len(clear)} faces of similar size",
                            "crop the reference to the character's face (one face per reference image)",
                            reason="reference_several_faces")
        rows.append(faces.loc[faces["face_size"].idxmax()])
    return drift.reference_from_faces(pd.DataFrame(rows), "images")


def _settings_reference_mode(clip: Clip, settings: MeasureSettings) -> str:
    if settings.reference == "first_frame":
        return "first_frame"
    if settings.reference == "images":
        if not clip.references:
            raise ClipError(clip.path, "reference=images but the clip has no reference image",
                            "add a reference column to the manifest, or use reference=auto / first_frame",
                            reason="no_reference")
        return "images"
    return "images" if clip.references else "first_frame"


def measure_clip(clip: Clip, settings: MeasureSettings) -> ClipResult:
    """Measure one clip; never raises for bad input (the result says skipped/failed and why)."""
    import time

    t0 = time.perf_counter()
    warnings: list[str] = []
    try:
        result = _measure(clip, settings, warnings)
    except ClipError as exc:
        result = ClipResult(clip, "skipped", reason=exc.reason, message=str(exc))
    except DriftbenchError as exc:
        result = ClipResult(clip, "failed", reason="error", message=printable(f"{clip.path}: {exc}"))
    except Exception as exc:  # one broken clip must never cost the others
        log.debug("clip %s failed:\n%s", clip.clip_id, traceback.format_exc())
        result = ClipResult(
            clip,
            "failed",
            reason="error",
            message=printable(
                f"{clip.path}: unexpected {type(exc).__name__}: {exc} -- fix: "
                "report this with the clip attached; the other clips were measured"
            ),
        )
    measuring_settled()  # whatever happened to this clip (skipped before any frame, failed)
    result.warnings = warnings
    result.seconds = time.perf_counter() - t0
    if _ANALYZER is not None:
        a = _ANALYZER[1]
        result.env = {"backend": {"name": a.info.name, "engine": a.info.engine, "weights": a.info.weights,
                                  "versions": a.info.versions},
                      "signal_weights": a.extra_weights, "signal_engines": a.signal_engines,
                      "signals_unavailable": a.unavailable}
    return result


def _measure(clip: Clip, s: MeasureSettings, warnings: list[str]) -> ClipResult:
    from driftbench.measure import video
    from driftbench.measure.decouple import load_decoupler
    from driftbench.measure.track import choose_faces

    analyzer = get_analyzer(s)
    cache = SignalCache(Path(s.cache_dir) if s.cache_dir else None, enabled=s.cache_enabled)
    mode = _settings_reference_mode(clip, s)
    ref = reference_from_images(clip.references, analyzer, cache) if mode == "images" else None
    info = video.probe(clip.path)
    faces, key, hit = video_faces(clip.path, analyzer, s.sampling, cache, warnings, progress=s.progress)
    if faces.empty:
        raise ClipError(
            clip.path,
            "no frame could be sampled",
            "check the clip's length and sampling.start/end",
            reason="empty",
        )
    cast_cols: dict[str, Any] = {}
    cast_series: pd.DataFrame | None = None
    if clip.meta.get("cast"):
        track, ref, cast_cols, cast_series = _cast_track(clip, s, analyzer, cache, faces)
        if cast_cols["cast_size"] > s.max_faces:
            warnings.append(f"{clip.path}: a cast of {cast_cols['cast_size']} characters but at most "
                            f"signals.max_faces={s.max_faces} faces are kept per frame -- fix: raise "
                            "signals.max_faces to the cast's size")
    else:
        track = choose_faces(faces, ref.embedding if ref is not None else None)
    _check_samples(clip, track, s, info.duration_s)
    if not track["face_found"].any():
        # losing the face is never a gain: the clip stays in n and in survival, lost at its first sample
        warnings.append(f"{clip.path}: the character's face was not found in any sampled frame: counted as "
                        "lost (loss_cause no_face) -- fix: check that the clip shows a face (>= ~40 px)")
        if ref is None:
            ref = drift.Reference.missing("first_frame")
    if ref is None:
        opening = track[track["face_found"] & (track["t"] < s.metrics.reference_s)]
        ref_end = s.metrics.reference_s
        if opening.empty:  # the face appears later: the first second in which it is seen
            first_t = float(track.loc[track["face_found"], "t"].min())
            ref_end = first_t + s.metrics.reference_s
            opening = track[track["face_found"] & (track["t"] < ref_end)]
            warnings.append(f"{clip.path}: no face in the first {s.metrics.reference_s:g} s; first_frame "
                            f"reference taken from {first_t:.1f} s")
        ref = drift.reference_from_faces(opening, "first_frame", t_end=ref_end)
    frames = drift.frame_table(track, ref, opening_s=s.metrics.opening_s)
    decoupler = load_decoupler(analyzer.info.threshold_key or s.backend, s.decoupler)
    frames["sim_dec"] = decoupler.apply(frames)
    t = frames["t"].to_numpy()
    frames["sim_raw_smooth"] = drift.smooth(t, frames["sim_raw"].to_numpy(), s.metrics.smooth_s)
    frames["sim_dec_smooth"] = drift.smooth(t, frames["sim_dec"].to_numpy(), s.metrics.smooth_s)
    frames["blendshapes"] = track["blendshapes"].to_numpy()
    if cast_series is not None:  # a cast clip: the swap and leakage series against its partner, per sample
        for col in ("cast_swap", "cast_leak", "cast_leak_trail", "cast_leak_faces"):
            frames[col] = cast_series[col].to_numpy()
    curv = drift.curve(frames, s.metrics.bin_s)
    # a truncated clip is observed only up to its last decoded frame: censor there, not at the header's
    # duration (else survival_time_s would claim seconds nobody measured)
    truncated = any(": video truncated after " in w for w in warnings)
    duration = info.duration_s if info.duration_s > 0 and not truncated else \
        float(frames["t"].max() + 1.0 / max(info.fps, 1e-6))
    summary = drift.clip_summary(frames, curv, duration_s=duration, threshold=s.threshold, metrics=s.metrics,
                                 fps=s.sampling.fps, opening_start_s=drift.opening_start(ref),
                                 verdict=drift.load_drift_verdict(analyzer.info.threshold_key or s.backend))
    summary.update({"video_fps": info.fps, "width": info.width, "height": info.height, "codec": info.codec,
                    "reference_mode": ref.mode, "n_reference_faces": ref.n_faces,
                    "max_faces_seen": int(faces["n_faces"].max())})
    summary.update(cast_cols)
    if s.published.enabled and not cast_cols:  # a cast clip's faces are several people's
        from driftbench.measure import published

        try:
            summary.update(published.clip_metrics(
                clip.path, faces, ref.embedding if ref.mode == "images" else None, analyzer,
                SignalCache(enabled=False) if truncated else cache, s.published,
                recognizer=analyzer.info.threshold_key or s.backend, sampling_fps=s.sampling.fps,
                video_fps=info.fps))
        except Exception as exc:  # an extra never costs the clip's own metrics
            log.debug("published metrics of %s failed:\n%s", clip.clip_id, traceback.format_exc())
            warnings.append(printable(f"{clip.path}: published metrics not computed ({type(exc).__name__}: "
                                      f"{exc}) -- fix: report this with the clip attached; "
                                      "published.enabled=false skips them"))
    thumbs = pd.DataFrame({"sample_index": track["sample_index"].astype("int32"), "t": track["t"],
                           "thumb": track["thumb"]})
    ref_json = ref.to_json()
    ref_json["thumb"] = ref.thumb
    return ClipResult(
        clip,
        "ok",
        summary=summary,
        frames=frames,
        curve=curv,
        thumbs=thumbs,
        reference=ref_json,
        signals_key=key,
        cache_hit=hit,
    )


def _cast_track(clip: Clip, s: MeasureSettings, analyzer: FaceAnalyzer, cache: SignalCache,
                faces: pd.DataFrame
                ) -> tuple[pd.DataFrame, drift.Reference, dict[str, Any], pd.DataFrame | None]:
    """A cast clip (several characters, :mod:`driftbench.measure.cast`): every character's reference (its
    images, or its region's face in the opening), the one-to-one assignment of faces to characters, and the
    track, reference and cast columns of ``clip.character``."""
    from driftbench.measure import cast

    members = cast.cast_from_meta(clip.meta) or []
    names = [m.name for m in members]
    if clip.character not in names:
        raise ClipError(clip.path, f"character {clip.character!r} is not in the clip's cast {names}",
                        "name the character in the manifest's character column", reason="bad_manifest_row")
    found = faces["emb"].dropna()
    dim = len(found.iloc[0]) if len(found) else int(analyzer.info.embedding_dim or 128)
    refs: list[drift.Reference] = []
    for i, m in enumerate(members):
        use_images = bool(m.images) and s.reference != "first_frame"
        if s.reference == "images" and not m.images:
            raise ClipError(clip.path, f"reference=images but character {m.name!r} has no reference image",
                            "give each character an image in the manifest's reference column, or use "
                            "reference=auto / first_frame", reason="no_reference")
        if use_images:
            refs.append(reference_from_images(m.images, analyzer, cache))
            continue
        region = m.region or cast.strip(i, len(members))
        rows, t_end = cast.region_opening(faces, region, s.metrics.reference_s)
        refs.append(drift.reference_from_faces(rows, "first_frame", t_end=t_end) if len(rows)
                    else drift.Reference.missing("first_frame", dim=dim))
    emb = np.stack([np.asarray(r.embedding, np.float64) for r in refs])
    assignment = cast.assign(faces, emb, threshold=s.threshold)
    c = names.index(clip.character)
    track = cast.character_track(faces, assignment, c)
    key = analyzer.info.threshold_key or s.backend
    cols, series = cast.cast_summary(faces, assignment, emb, names, c, smooth_s=s.metrics.smooth_s,
                                     window_s=s.metrics.window_s,
                                     leak_threshold=cast.LEAK_THRESHOLDS.get(key))
    return track, refs[c], cols, series


def _check_samples(clip: Clip, track: pd.DataFrame, s: MeasureSettings, duration_s: float) -> None:
    """A score from one or two samples is noise: a clip with fewer than ``metrics.min_samples`` sampled
    frames (a still image renamed .mp4, a 0.2 s clip) is reported as too short instead of scored. A clip
    long enough whose face is rarely or never seen is scored: losing the face is never a gain (its
    samples without the face count towards identity loss, see :mod:`driftbench.measure.drift`)."""
    need = int(s.metrics.min_samples)
    n = len(track)
    if n >= need:
        return
    fps = s.sampling.fps
    length = f"{duration_s:.2f} s" if duration_s > 0 else "a single frame"
    raise ClipError(clip.path, f"too short to score: {n} frame(s) sampled at sampling.fps={fps:g} (the clip "
                    f"lasts {length}), metrics.min_samples={need} needed",
                    f"use a clip of at least {need / fps:.1f} s (a video, not a still image), raise "
                    "sampling.fps, or lower metrics.min_samples", reason="too_short")


def settings_from_config(cfg: Any, threshold: float, *, progress: bool = False) -> MeasureSettings:
    """Plain settings for workers from the composed run config (the one place configs become objects)."""
    m = cfg.metrics
    return MeasureSettings(
        backend=str(cfg.face.backend),
        backend_options=dict(cfg.face.options),
        expression=bool(cfg.signals.expression),
        age=bool(cfg.signals.age),
        max_faces=int(cfg.signals.max_faces),
        device=str(cfg.device),
        download=bool(cfg.fetch),
        sampling=Sampling(
            float(cfg.sampling.fps),
            float(cfg.sampling.start),
            None if cfg.sampling.end is None else float(cfg.sampling.end),
        ),
        metrics=MetricSettings(
            bin_s=float(m.bin_s),
            reference_s=float(m.reference_s),
            opening_s=float(m.opening_s),
            window_s=float(m.window_s),
            horizons=tuple(float(h) for h in m.horizons),
            smooth_s=float(m.smooth_s),
            min_loss_s=float(m.min_loss_s),
            far=float(m.far),
            loss_score=str(m.loss_score),
            min_samples=int(m.get("min_samples", 3)),
        ),
        reference=str(cfg.reference),
        cache_dir=None if cfg.cache.dir is None else str(cfg.cache.dir),
        cache_enabled=bool(cfg.cache.enabled),
        threshold=threshold,
        progress=progress,
        published=PublishedSettings(**dict(cfg.get("published") or {})),
    )
