"""The post-processing loop every mitigation shares: reference face, per-frame landmarks, batched
processing, H.264 output and the content-keyed cache.

A mitigation is a :class:`FrameProcessor`: it gets the reference face once and then batches of frames
with their 478 landmarks (None where no face was found) and returns the processed frames. The loop
decodes with PyAV, finds landmarks with :class:`driftbench.mitigations.warp.FaceMesh` (following the face from
frame to frame), writes the result as MP4 into the cache under a key made of the source clip's
sha256, the mitigation's name and params, the reference's hash and the code version, and returns a
:class:`Clip` that pairs with its source (same clip_id, character, prompt_id, seed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from driftbench.errors import ClipError
from driftbench.sources.base import Clip

log = logging.getLogger("driftbench")

#: bump when any mitigation's output changes (with warp.WARP_VERSION it keys the cache)
CODE_VERSION = "1"
BATCH = 16


@dataclass
class RefFace:
    """The identity a mitigation anchors to: an image and its face's landmarks."""

    image: np.ndarray  # BGR uint8
    landmarks: np.ndarray  # (478, 2)
    lm5: np.ndarray  # (5, 2) detector points
    digest: str  # what the reference is (image sha256, or the clip's hash + the frame index)
    origin: str  # "image:<path>" or "first_frame@<t>s"
    yaw: float = 0.0  # MediaPipe yaw of the reference face, degrees
    #: the reference mirrored left-right, with its own landmarks (a turned-away reference shows the
    #: other side of the face only this way); None when not asked for or not detected
    mirrored: RefFace | None = None


@dataclass
class FrameBatch:
    images: list[np.ndarray]
    faces: list[Any]  # MeshFace | None per frame


@dataclass
class RunInfo:
    """What a processor reports about a clip (goes into Clip.meta)."""

    frames: int = 0
    faces: int = 0
    processed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class FrameProcessor:
    """A post-processing mitigation. Subclasses set ``name`` and ``defaults`` and implement
    :meth:`process`; :meth:`start` is called once per clip with the reference."""

    name = ""
    #: default params (the config's ``params`` override them; all of them key the cache)
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, params: dict[str, Any], device: str = "auto") -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            from driftbench.errors import UsageError

            raise UsageError(f"mitigation {self.name!r}: unknown params {unknown} -- fix: use "
                             f"{sorted(self.defaults)} (see conf/mitigation/{self.name}.yaml)")
        self.params = {**self.defaults, **params}
        if str(self.params.get("render", "full")) not in ("sampled", "full"):
            from driftbench.errors import UsageError

            raise UsageError(
                f"mitigation {self.name!r}: render={self.params['render']!r} -- fix: sampled (only the "
                "frames the sampling measures) or full (every frame, to watch)"
            )
        self.device = device

    def start(self, ref: RefFace) -> None:
        self.ref = ref

    def group(self, t: float) -> int | None:
        """Frames that :meth:`process` must see together (e.g. one chunk of time) share a key: the loop
        hands over a batch whenever the key changes. None (the default): batches of ``BATCH`` frames."""
        return None

    def process(self, batch: FrameBatch, info: RunInfo) -> list[np.ndarray]:
        raise NotImplementedError


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def cache_key(source_sha: str, name: str, params: dict[str, Any], ref_digest: str, fps: float,
              render: str = "full", mesh: dict[str, str] | None = None) -> str:
    """The mitigated clip's cache key: everything its frames depend on, the landmark models' weights
    (``mesh``, :func:`driftbench.mitigations.warp.mesh_weights`) included."""
    from driftbench.mitigations.warp import WARP_VERSION

    blob = _json({"source": source_sha, "mitigation": name, "params": params, "reference": ref_digest,
                  "fps": round(fps, 6), "code": CODE_VERSION, "warp": WARP_VERSION, "render": render,
                  "mesh": mesh or {}})
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def reference_from_images(paths: tuple[str, ...], mesh: Any) -> RefFace | None:
    """The first reference image with a face (largest face)."""
    from driftbench.measure.video import read_image
    from driftbench.weights.store import cached_sha256

    for p in paths:
        img = read_image(p)
        face = mesh.detect(img)
        if face is not None:
            return RefFace(img, face.landmarks, face.lm5, cached_sha256(Path(p)), f"image:{p}", face.yaw)
    return None


def _frames(path: str, fps: float) -> Iterator[tuple[float, np.ndarray]]:
    from driftbench.measure import video

    for fr in video.sample(path, fps):
        yield fr.t, fr.image


def reference_from_clip(path: str, source_sha: str, mesh: Any, fps: float) -> RefFace | None:
    """The clip's first frame with a face (the first_frame reference)."""
    for i, (t, img) in enumerate(_frames(path, fps)):
        face = mesh.detect(img)
        if face is not None:
            return RefFace(img, face.landmarks, face.lm5, f"{source_sha}:frame{i}", f"first_frame@{t:.3f}s",
                           face.yaw)
    return None


def mirror_reference(ref: RefFace, mesh: Any) -> RefFace | None:
    """The reference flipped left-right, its landmarks found afresh (MediaPipe's indices keep their
    anatomical meaning, so the flipped face warps like any other source)."""
    flipped = np.ascontiguousarray(ref.image[:, ::-1])
    face = mesh.detect(flipped)
    if face is None:
        return None
    return RefFace(
        flipped, face.landmarks, face.lm5, ref.digest + ":mirrored", ref.origin + " (mirrored)", face.yaw
    )


def output_fps(path: str, max_fps: float) -> float:
    from driftbench.measure import video

    native = video.probe(path).fps or 25.0
    return min(native, float(max_fps)) if max_fps and max_fps > 0 else native


def render_tag(proc: FrameProcessor, sampling: Any | None) -> str:
    """``full`` (every frame) or ``sampled@FPS:START-END`` (only the frames that sampling measures)."""
    if sampling is None or str(proc.params.get("render", "full")) == "full":
        return "full"
    end = "" if sampling.end is None else f"{float(sampling.end):g}"
    return f"sampled@{float(sampling.fps):g}:{float(sampling.start or 0.0):g}-{end}"


def process_clip(clip: Clip, proc: FrameProcessor, *, reference_mode: str, mesh_factory: Any,
                 cache_dir: Path, sampling: Any | None = None, mesh_weights: dict[str, str] | None = None
                 ) -> Clip:
    """Run one mitigation on one clip (or take it from the cache); raises ClipError when it cannot.

    With ``sampling`` and ``render: sampled`` (the default) only the frames that sampling measures are
    processed, in batches, and written at their own timestamps (plus copies at the clip's first and
    last frame times, which the sampling never reads, so the output keeps the source's timeline and
    duration): measuring the output at the same sampling reads the same instants as a full-rate
    output. Processors whose frames depend on earlier frames (``chain``, ``freeze``) then see only the
    sampled frames: ``chain`` takes each frame's identity from the previous *sampled* output."""
    from driftbench.io import write_json
    from driftbench.measure import video
    from driftbench.measure.cache import content_hash
    from driftbench.mitigations.warp import Mp4Writer, stream_timeline

    video.probe(clip.path)  # a missing or unreadable clip fails here with its own reason and fix
    source_sha = content_hash(clip.path)
    render = render_tag(proc, sampling)
    timeline = stream_timeline(clip.path) if render != "full" else None
    fps = (
        output_fps(clip.path, float(proc.params.get("max_fps", 0) or 0))
        if timeline is None
        else timeline.rate
    )
    use_images = reference_mode == "images" or (reference_mode == "auto" and bool(clip.references))
    if use_images and not clip.references:
        raise ClipError(clip.path, "reference=images but the clip has no reference image",
                        "add a reference to the manifest, or use reference=auto / first_frame",
                        reason="no_reference")
    if use_images:
        from driftbench.weights.store import cached_sha256

        ref_tag = "images:" + ",".join(cached_sha256(Path(p)) for p in clip.references)
    else:
        ref_tag = "first_frame"
    key = cache_key(source_sha, proc.name, proc.params, ref_tag, fps, render, mesh_weights)
    out = cache_dir / proc.name / f"{key}.mp4"
    info_path = out.with_suffix(".json")
    if out.is_file() and info_path.is_file():
        info_json = json.loads(info_path.read_text(encoding="utf-8"))
        return _result_clip(clip, proc, out, info_json)
    mesh = mesh_factory()
    ref = reference_from_images(clip.references, mesh) if use_images else \
        reference_from_clip(clip.path, source_sha, mesh, fps)
    if ref is None:
        what = "no reference image shows a face" if use_images else "no frame of the clip shows a face"
        raise ClipError(
            clip.path,
            f"cannot apply mitigation {proc.name!r}: {what}",
            "use a reference photo with one clear face, or a clip that shows the character's face",
            reason="no_reference_face",
        )
    if proc.params.get("mirror"):
        ref.mirrored = mirror_reference(ref, mesh)
    t0 = time.perf_counter()
    proc.start(ref)
    info = RunInfo()
    prev_box = None
    written: list[float] = []
    last: list[np.ndarray] = []
    if timeline is None:
        frames = _frames(clip.path, fps)
    else:
        assert sampling is not None
        frames = (
            (fr.t, fr.image)
            for fr in video.sample(
                clip.path, float(sampling.fps), start=float(sampling.start or 0.0), end=sampling.end
            )
        )
    with Mp4Writer(
        out, fps, *_size(clip.path), time_base=None if timeline is None else timeline.time_base
    ) as writer:
        images: list[np.ndarray] = []
        faces: list[Any] = []
        times: list[float] = []

        def put(img: np.ndarray, t: float) -> None:
            if timeline is None:
                writer.write(img)
                return
            if not written and t > 0:
                writer.write(img, t=0.0)  # the source's first instant: keeps the timeline's origin
            writer.write(img, t=t)
            written.append(t)
            last[:] = [img]

        def flush() -> None:
            if images:
                for img, t in zip(proc.process(FrameBatch(images, faces), info), times, strict=True):
                    put(img, t)
                images.clear()
                faces.clear()
                times.clear()

        group: int | None = None
        for t, img in frames:
            frame_group = proc.group(t)
            if frame_group != group:
                flush()  # a new group (chunk) starts
                group = frame_group
            face = mesh.detect(img, prev_box)
            if face is not None:
                prev_box = face.box
                info.faces += 1
            info.frames += 1
            images.append(img)
            faces.append(face)
            times.append(t)
            if group is None and len(images) >= BATCH:
                flush()
        flush()
        if timeline is not None and last and timeline.t_last > written[-1] + 1e-6:
            writer.write(last[0], t=timeline.t_last)  # the source's last frame time: keeps its duration
    seconds = time.perf_counter() - t0
    record = {"source_path": clip.path, "source_sha256": source_sha, "mitigation": proc.name,
              "reference_yaw": ref.yaw, "mirrored_reference": ref.mirrored is not None,
              "params": proc.params, "reference": ref.origin, "reference_digest": ref.digest, "fps": fps,
              "render": render, "frames": info.frames, "frames_with_face": info.faces,
              "frames_processed": info.processed,
              "seconds": round(seconds, 3), **info.extra}
    write_json(info_path, record)
    log.info("mitigation %s: %s (%d frames, %.1f s)", proc.name, clip.clip_id, info.frames, seconds)
    return _result_clip(clip, proc, out, record)


def _size(path: str) -> tuple[int, int]:
    from driftbench.measure import video

    info = video.probe(path)
    return info.width, info.height


def _result_clip(clip: Clip, proc: FrameProcessor, out: Path, record: dict[str, Any]) -> Clip:
    meta = dict(clip.meta)
    meta.update({
        "mitigation_source": clip.path,
        "mitigation_stage": "post",
        "mitigation_params": _json(proc.params),
        "mitigation_reference": record.get("reference"),
        "mitigation_frames": record.get("frames"),
        "mitigation_frames_with_face": record.get("frames_with_face"),
        "mitigation_frames_processed": record.get("frames_processed"),
        "mitigation_frames_mirrored": record.get("frames_mirrored", 0),
        "mitigation_fps": record.get("fps"),
        "mitigation_render": record.get("render", "full"),
    })
    return replace(clip, path=str(out), mitigation=proc.name, meta=meta)
