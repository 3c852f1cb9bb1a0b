"""``reanchor`` and ``chain``: per-frame re-alignment of the face to an identity source.

Both warp an identity source face onto each frame's dense landmarks (thin-plate spline through
MediaPipe's landmarks, :func:`driftbench.mitigations.warp.tps_warp_layers`), colour-match it to the frame and
blend it in with a feathered face mask that leaves the frame's own eyes and inner mouth in place.
Identity comes from the source face; expression and pose from the frame's geometry and its eyes and
mouth.

- ``reanchor`` takes the identity from the reference for every frame, independently of time (a frame
  never depends on another), so errors cannot accumulate.
- ``chain`` takes it from the previous OUTPUT frame (the first one from the reference), as time-chained
  correction does (e.g. conditioning each extension on the last frame): every step re-samples the
  face once more and inherits the previous step's errors, which accumulate over a long clip.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from driftbench.mitigations.base import FrameBatch, FrameProcessor, RefFace, RunInfo

#: what each ``keep`` name leaves of the frame (landmark polygons)
KEEP_REGIONS = {
    "eyes": ("RIGHT_EYE", "LEFT_EYE"),
    "mouth": ("LIPS_INNER",),
    "brows": ("RIGHT_BROW", "LEFT_BROW"),
}

REALIGN_DEFAULTS: dict[str, Any] = {
    #: feather (alpha blend) or seamless (OpenCV Poisson seamlessClone)
    "blend": "feather",
    #: weight of the identity source inside the face mask (1 = full replacement)
    "strength": 1.0,
    #: regions of the frame kept as they are (expression survives): eyes, mouth, brows
    "keep": ["eyes", "mouth"],
    #: Reinhard colour matching of the warped face to the frame (lighting and tone follow the frame)
    "color_match": True,
    #: mask feather / inward shrink / growth of the kept regions, as shares of the face size
    "feather": 0.04,
    "shrink": 0.03,
    "keep_grow": 0.015,
    #: keep the frame's own pixels where the identity source saw the face foreshortened: the blend
    #: weight ramps from 0 to 1 between these shares of the typical source area per pixel ([] = off)
    "foreshortening": [0.25, 0.55],
    #: also use the reference mirrored left-right, for frames whose head turns the other way (a 3/4
    #: reference shows the far cheek foreshortened; its mirror image shows it in full)
    "mirror": True,
    #: degrees by which the mirrored reference must be nearer the frame's yaw before it is used
    "mirror_margin": 5.0,
    #: resampling of the identity source: bilinear or bicubic
    "interpolation": "bilinear",
    #: frames per second of the output (0 = the clip's own rate; render=full only)
    "max_fps": 0.0,
    #: sampled: process only the frames the run's sampling measures; full: every frame (to watch)
    "render": "sampled",
}


def _keep_polys(keep: list[str]) -> list[tuple[int, ...]]:
    from driftbench.mitigations import warp

    polys: list[tuple[int, ...]] = []
    for k in keep:
        if k not in KEEP_REGIONS:
            from driftbench.errors import UsageError

            raise UsageError(
                f"mitigation param keep: unknown region {k!r} -- fix: choose from {sorted(KEEP_REGIONS)}"
            )
        polys.extend(getattr(warp, n) for n in KEEP_REGIONS[k])
    return polys


def transfer_faces(
    src_images: Any,
    src_landmarks: np.ndarray,
    frames: list[np.ndarray],
    frame_landmarks: list[np.ndarray],
    params: dict[str, Any],
    device: str,
) -> list[np.ndarray]:
    """The identity source face(s) warped onto each frame's landmarks and blended into the frame.

    ``src_images``: one image shared by all frames, or one per frame; ``src_landmarks``: (478, 2)
    or (B, 478, 2)."""
    from driftbench.mitigations.warp import (
        Layer,
        apply_affine,
        blend_into,
        border_anchors,
        color_match,
        control_indices,
        detail_weight,
        face_box,
        face_size,
        region_mask,
        similarity_to,
        tps_warp_layers,
    )

    if not frames:
        return []
    idx = control_indices()
    src_lm = np.asarray(src_landmarks, dtype=np.float64)
    per_frame = src_lm.ndim == 3
    boxes, dst_pts, src_pts = [], [], []
    for k, (img, lm) in enumerate(zip(frames, frame_landmarks, strict=True)):
        box = face_box(lm, img.shape, margin=0.12)
        anc = border_anchors(float(box[0]), float(box[1]), float(box[2]), float(box[3]), per_side=5)
        s_lm = src_lm[k] if per_frame else src_lm
        # the box border follows the face's similarity into the source: the spline stays local
        boxes.append(box)
        dst_pts.append(np.concatenate([lm[idx], anc]))
        src_pts.append(np.concatenate([s_lm[idx], apply_affine(anc, similarity_to(lm[idx], s_lm[idx]))]))
    (wb,) = tps_warp_layers([Layer(src_images, np.stack(src_pts), mode=str(params["interpolation"]))],
                            np.stack(dst_pts), np.stack(boxes), device=device)
    keep = _keep_polys(list(params["keep"]))
    out = []
    for k, (img, lm) in enumerate(zip(frames, frame_landmarks, strict=True)):
        box = boxes[k]
        x0, y0, w, h = (int(v) for v in box)
        fs = face_size(lm)
        region = img[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
        hh, ww = region.shape[:2]
        warped = wb.images[k][:hh, :ww]
        mask = region_mask(
            lm,
            box,
            feather=float(params["feather"]) * fs,
            shrink=float(params["shrink"]) * fs,
            exclude=keep,
            exclude_grow=float(params["keep_grow"]) * fs,
        )[:hh, :ww]
        mask = mask * wb.valid[k][:hh, :ww]
        if wb.area is not None and params["foreshortening"]:
            lo, hi = (float(v) for v in params["foreshortening"])
            mask = mask * detail_weight(wb.area[k][:hh, :ww], mask, lo, hi)
        if params["color_match"]:
            warped = color_match(warped, region, mask)
        out.append(blend_into(img, warped, mask * float(params["strength"]), box, mode=str(params["blend"])))
    return out


def pick_reference(ref: RefFace, frame_yaw: float, margin: float) -> RefFace:
    """The reference or its mirror image, whichever faces the way the frame does (by yaw)."""
    m = ref.mirrored
    if m is None or not np.isfinite(frame_yaw) or not (np.isfinite(ref.yaw) and np.isfinite(m.yaw)):
        return ref
    return m if abs(frame_yaw - m.yaw) + margin < abs(frame_yaw - ref.yaw) else ref


class Reanchor(FrameProcessor):
    """Every frame's face re-aligned to the reference identity (anchored to the reference)."""

    name = "reanchor"
    defaults = REALIGN_DEFAULTS

    def process(self, batch: FrameBatch, info: RunInfo) -> list[np.ndarray]:
        out = list(batch.images)
        groups: dict[int, tuple[RefFace, list[int]]] = {}
        for i, face in enumerate(batch.faces):
            if face is not None:
                ref = pick_reference(self.ref, float(face.yaw), float(self.params["mirror_margin"]))
                groups.setdefault(id(ref), (ref, []))[1].append(i)
        for ref, idx in groups.values():
            done = transfer_faces(ref.image, ref.landmarks, [batch.images[i] for i in idx],
                                  [batch.faces[i].landmarks for i in idx], self.params, self.device)
            for i, img in zip(idx, done, strict=True):
                out[i] = img
            info.processed += len(idx)
            if ref is not self.ref:
                info.extra["frames_mirrored"] = info.extra.get("frames_mirrored", 0) + len(idx)
        return out


class Chain(FrameProcessor):
    """Every frame's face re-aligned to the previous output frame (anchored in time): the first
    frame with a face takes the reference, every later one the output before it."""

    name = "chain"
    defaults = REALIGN_DEFAULTS

    def start(self, ref: RefFace) -> None:
        super().start(ref)
        self._src: tuple[np.ndarray, np.ndarray] | None = None

    def process(self, batch: FrameBatch, info: RunInfo) -> list[np.ndarray]:
        out = []
        for img, face in zip(batch.images, batch.faces, strict=True):
            if face is None:
                out.append(img)
                continue
            if self._src is None:  # the first frame with a face takes the reference
                ref = pick_reference(self.ref, float(face.yaw), float(self.params["mirror_margin"]))
                self._src = (ref.image, ref.landmarks)
            (res,) = transfer_faces(
                self._src[0], self._src[1], [img], [face.landmarks], self.params, self.device
            )
            self._src = (res, face.landmarks)
            info.processed += 1
            out.append(res)
        return out
