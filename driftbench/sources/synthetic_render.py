"""The synthetic source's rendering: procedural head and face motion for stills, the identity morph
(shape offset, recolouring, blend) and the clip writers (embedded stills, real footage). See
:mod:`driftbench.sources.synthetic`."""


from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from driftbench.sources.synthetic_inputs import BATCH, CLOSED_MOUTH, SHAPE_CAP, SHAPE_GAIN, Portrait, Schedule

log = logging.getLogger("driftbench")

# -- procedural motion (embedded stills) ------------------------------------------------------------------
@dataclass
class Motion:
    """Per-frame head motion and expression controls of an embedded clip (all (T,) arrays)."""

    yaw: np.ndarray  # -1..1: inner face shifted sideways (turning head)
    pitch: np.ndarray  # -1..1: inner face shifted up/down (nodding)
    roll_deg: np.ndarray
    shift: np.ndarray  # (T, 2) pixels
    zoom: np.ndarray  # scale factor around the face centre
    jaw: np.ndarray  # 0..1 mouth opening (speech)
    smile: np.ndarray  # 0..1
    blink: np.ndarray  # 0..1 (1 = closed)
    brow: np.ndarray  # 0..1 brow raise


def _smooth_noise(rng: np.random.Generator, t: np.ndarray, lo: float, hi: float, n: int = 3) -> np.ndarray:
    """Smooth random signal in about [-1, 1]: a sum of ``n`` sinusoids between ``lo`` and ``hi`` Hz."""
    freqs = rng.uniform(lo, hi, n)
    phases = rng.uniform(0, 2 * np.pi, n)
    amps = rng.uniform(0.5, 1.0, n)
    sig = (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None] + phases[:, None])).sum(0)
    return sig / amps.sum()


def procedural_motion(t: np.ndarray, rng: np.random.Generator, size: int, motion: float,
                      expression: float) -> Motion:
    noise = _smooth_noise
    envelope = np.clip(0.55 + 0.8 * noise(rng, t, 0.05, 0.2), 0.0, 1.0)
    syllables = np.abs(np.sin(2 * np.pi * rng.uniform(1.6, 2.3) * t + rng.uniform(0, 2 * np.pi)))
    jaw = expression * envelope * syllables**0.8 * (0.6 + 0.4 * np.abs(noise(rng, t, 0.5, 1.2)))
    blink = np.zeros_like(t)
    tb = rng.uniform(0.5, 2.0)
    while tb < t[-1] + 1:
        blink = np.maximum(blink, np.clip(1.0 - np.abs(t - tb) / 0.15, 0.0, 1.0))
        tb += rng.uniform(2.0, 5.0)
    return Motion(
        yaw=motion * 1.0 * noise(rng, t, 0.08, 0.35),
        pitch=motion * 0.6 * noise(rng, t, 0.1, 0.4),
        roll_deg=motion * 4.0 * noise(rng, t, 0.05, 0.25),
        shift=motion * 0.025 * size * np.stack([noise(rng, t, 0.05, 0.2), noise(rng, t, 0.05, 0.2)], 1),
        zoom=1.0 + motion * 0.04 * noise(rng, t, 0.03, 0.15),
        jaw=np.clip(jaw, 0.0, 1.0),
        smile=expression * 0.6 * np.clip(0.4 + noise(rng, t, 0.05, 0.2), 0.0, 1.0),
        blink=np.clip(expression, 0.0, 1.0) * blink,
        brow=expression * 0.6 * np.clip(noise(rng, t, 0.1, 0.3), 0.0, 1.0),
    )


_UPPER_LIP = (185, 40, 39, 37, 0, 267, 269, 270, 409, 191, 80, 81, 82, 13, 312, 311, 310, 415)
_LOWER_LIP = (146, 91, 181, 84, 17, 314, 405, 321, 375, 95, 88, 178, 87, 14, 317, 402, 318, 324)
_CORNERS = (61, 291, 78, 308)


def deform(lm: np.ndarray, m: Motion, idx: slice | np.ndarray = slice(None)) -> np.ndarray:
    """Move (T, 478, 2) landmarks by the motion controls of frames ``idx``: jaw, smile, blink, brow
    and a yaw/pitch-like shift of the inner face (more at the nose than at the face's edge)."""
    from driftbench.measure.decouple import smoothstep
    from driftbench.mitigations.warp import (
        BROWS,
        FACE_OVAL,
        LEFT_EYE,
        LEFT_LID_PAIRS,
        RIGHT_EYE,
        RIGHT_LID_PAIRS,
    )

    jaw, smile, blink, brow = m.jaw[idx], m.smile[idx], m.blink[idx], m.brow[idx]
    yaw, pitch = m.yaw[idx], m.pitch[idx]
    out = lm.copy()
    ex = lm[:, list(LEFT_EYE)].mean(1) - lm[:, list(RIGHT_EYE)].mean(1)
    iod = np.linalg.norm(ex, axis=1)
    ex = ex / iod[:, None]
    ey = np.stack([-ex[:, 1], ex[:, 0]], 1)  # image-down for an upright face
    mouth = (lm[:, 13] + lm[:, 14]) / 2.0
    rel = lm - mouth[:, None]
    u = np.einsum("tnk,tk->tn", rel, ex)
    v = np.einsum("tnk,tk->tn", rel, ey)
    # jaw: everything below the mouth drops, less towards the sides of the face
    w = smoothstep(v / (0.12 * iod[:, None])) * (1.0 - smoothstep((np.abs(u) - 0.55 * iod[:, None])
                                                                    / (0.6 * iod[:, None])))
    w[:, list(_LOWER_LIP)] = 1.0
    w[:, list(_UPPER_LIP)] = 0.0
    w[:, list(_CORNERS)] = 0.35
    out += (jaw * 0.32 * iod)[:, None, None] * w[..., None] * ey[:, None]
    # smile: mouth corners out and up
    for c in (61, 291):
        d = np.linalg.norm(lm - lm[:, c : c + 1], axis=2) / (0.3 * iod[:, None])
        fall = np.exp(-d * d)
        side = np.sign(u[:, c])[:, None]
        disp = (smile * iod)[:, None, None] * fall[..., None] * (0.07 * side[..., None] * ex[:, None]
                                                                 - 0.05 * ey[:, None])
        out += disp
    # blinks: upper lids onto the lower lids
    for up, low in (*RIGHT_LID_PAIRS, *LEFT_LID_PAIRS):
        out[:, up] += (0.9 * blink)[:, None] * (lm[:, low] - lm[:, up])
    out[:, list(BROWS)] -= (brow * 0.08 * iod)[:, None, None] * ey[:, None]
    # yaw / pitch: the inner face moves sideways / vertically, the face outline stays
    oval_u = np.einsum("tnk,tk->tn", lm[:, list(FACE_OVAL)] - lm[:, 1:2], ex)
    radius = 0.5 * (oval_u.max(1) - oval_u.min(1))
    depth = np.clip(1.0 - (np.linalg.norm(lm - lm[:, 1:2], axis=2) / radius[:, None]) ** 2, 0.0, 1.0)
    out += (yaw * 0.22 * iod)[:, None, None] * depth[..., None] * ex[:, None]
    out += (pitch * 0.12 * iod)[:, None, None] * depth[..., None] * ey[:, None]
    return out


def head_affines(m: Motion, centre: np.ndarray) -> np.ndarray:
    """(T, 2, 3) roll + zoom about the face centre, then shift: the head/camera motion of each frame."""
    th = np.deg2rad(m.roll_deg)
    c, s = np.cos(th) * m.zoom, np.sin(th) * m.zoom
    a = np.zeros((len(th), 2, 3))
    a[:, 0, 0], a[:, 0, 1], a[:, 1, 0], a[:, 1, 1] = c, -s, s, c
    a[:, :, 2] = centre - np.einsum("tij,j->ti", a[:, :, :2], centre) + m.shift
    return a


# -- the morph --------------------------------------------------------------------------------------------
def shape_offset(base_lm: np.ndarray, target_lm: np.ndarray) -> np.ndarray:
    """(478, 2) offset from the base face's shape to the target's, the target similarity-aligned onto
    the base (so only the shape differs, not position, size or roll). A similarity cannot remove a
    head turn, so a photo turned even 15 degrees would fold one side of the face: the offset is
    scaled by ``SHAPE_GAIN`` and each landmark's move capped at ``SHAPE_CAP`` of the face size."""
    from driftbench.mitigations.warp import apply_affine, control_indices, face_size, similarity_to

    idx = control_indices()
    a = similarity_to(target_lm[idx], base_lm[idx])
    delta = (apply_affine(target_lm, a) - base_lm) * SHAPE_GAIN
    cap = SHAPE_CAP * face_size(base_lm)
    norm = np.linalg.norm(delta, axis=1, keepdims=True)
    return delta * np.minimum(1.0, cap / np.maximum(norm, 1e-9))


def recolour_target(target: Portrait, base_image: np.ndarray, base_lm: np.ndarray) -> Portrait:
    """The target photo recoloured to the base face's skin tone and lighting (Lab statistics)."""
    from driftbench.mitigations.warp import color_match, face_size, oval_mask

    tm = oval_mask(target.landmarks, target.image.shape, shrink=0.08 * face_size(target.landmarks))
    bm = oval_mask(base_lm, base_image.shape, shrink=0.08 * face_size(base_lm))
    img = color_match(target.image.astype(np.float32), base_image.astype(np.float32), tm, bm)
    return Portrait(
        target.name, np.clip(np.rint(img), 0, 255).astype(np.uint8), target.landmarks, target.digest
    )


def _paint_mouth(img: np.ndarray, lm: np.ndarray, strength: float, fs: float) -> None:
    """Darken the inner-mouth polygon (an opened mouth of a closed-mouth photo shows its interior)."""
    import cv2

    from driftbench.mitigations.warp import LIPS_INNER

    if strength <= 0.01:
        return
    mask = np.zeros(img.shape[:2], np.float32)
    cv2.fillPoly(mask, [np.round(lm[list(LIPS_INNER)]).astype(np.int32)], 1.0)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.6, 0.012 * fs)) * strength
    dark = np.array([38.0, 30.0, 62.0], np.float32)
    img[:] = img * (1 - mask[..., None]) + dark * mask[..., None]


def _mouth_gap(lm: np.ndarray) -> np.ndarray:
    """Inner-lip opening of (T, 478, 2) landmarks, pixels."""
    pairs = ((13, 14), (82, 87), (312, 317))
    return np.mean([np.linalg.norm(lm[:, a] - lm[:, b], axis=1) for a, b in pairs], axis=0)


def blend_frame(base_w: np.ndarray, target_w: np.ndarray, valid: np.ndarray, geometry: np.ndarray,
                box: np.ndarray, alpha: float, area: np.ndarray | None = None) -> np.ndarray:
    """Cross-dissolve the warped target into the warped base inside a feathered face mask. The eye
    openings and the inner mouth stay the base's: a target photo's open eyes or closed lips must not
    be squashed over a blink or stretched over an open mouth (the expression is the source's); so do
    regions the target photo shows foreshortened (:func:`driftbench.mitigations.warp.detail_weight`)."""
    from driftbench.mitigations.warp import (
        LEFT_EYE,
        LIPS_INNER,
        RIGHT_EYE,
        detail_weight,
        face_size,
        region_mask,
    )

    fs = face_size(geometry)
    h, w = base_w.shape[:2]
    mask = (
        region_mask(
            geometry,
            box,
            feather=0.05 * fs,
            shrink=0.04 * fs,
            exclude=[LIPS_INNER, RIGHT_EYE, LEFT_EYE],
            exclude_grow=0.005 * fs,
            exclude_feather=0.01 * fs,
        )[:h, :w]
        * valid[:h, :w]
    )
    if area is not None:
        mask = mask * detail_weight(area[:h, :w], mask)
    a = (alpha * mask)[..., None]
    return base_w * (1.0 - a) + target_w[:h, :w] * a


def _with_anchors(target_pts: np.ndarray, geom_pts: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(B, N + A, 2) target control points plus where the output's fixed anchors fall in the target
    image (through each frame's similarity from the output geometry to the target face), so the
    target layer can share the base layer's spline system."""
    from driftbench.mitigations.warp import apply_affine, similarity_to

    out = []
    for g in geom_pts:
        a = similarity_to(g, target_pts)
        out.append(np.concatenate([target_pts, apply_affine(anchors, a)]))
    return np.stack(out)


# -- clip writers -----------------------------------------------------------------------------------------
def render_plan(t: np.ndarray, sampling: Any | None) -> np.ndarray:
    """Indices of the frames of timeline ``t`` a clip holds: every frame without a sampling (``full``),
    else the frames :func:`driftbench.measure.video.sample` measures at that sampling plus the last frame (so
    the clip's header keeps the full clip's duration). Each frame is written at its own time, so the
    sampled clip is measured on the same instants as the full-rate one."""
    from driftbench.mitigations.warp import sampled_indices

    if sampling is None or len(t) == 0:
        return np.arange(len(t))
    idx = sampled_indices(t, float(sampling.fps), float(sampling.start or 0.0), sampling.end)
    return np.union1d(idx, [len(t) - 1]).astype(np.int64)


def render_embedded(base: Portrait, target: Portrait, schedule: Schedule, cfg: Any, out: Path, *,
                    device: str, seed: int, sampling: Any | None = None) -> dict[str, Any]:
    """Write an embedded clip (procedural motion of a still base face morphed toward the target).

    The motion, schedule and every frame are functions of the full timeline at ``cfg.fps``; with a
    ``sampling`` only the frames it measures are rendered (:func:`render_plan`), each bit-identical
    before encoding to the same frame of the full-rate clip."""
    from fractions import Fraction

    from driftbench.mitigations.warp import (
        Layer,
        Mp4Writer,
        border_anchors,
        control_indices,
        face_size,
        tps_warp_layers,
    )

    size, fps = int(cfg.size), float(cfg.fps)
    n = max(1, round(float(cfg.duration_s) * fps))
    t = np.arange(n) / fps
    plan = render_plan(t, sampling)
    alpha = schedule.alpha(t)
    rng = np.random.default_rng([int(seed), int(base.digest[:8], 16)])
    motion = procedural_motion(t, rng, size, float(cfg.motion), float(cfg.expression))
    idx = control_indices()
    anchors = border_anchors(0, 0, size - 1, size - 1, per_side=6)
    delta = shape_offset(base.landmarks, target.landmarks)
    target = recolour_target(target, base.image, base.landmarks)
    oval = base.landmarks[[10, 152]].mean(0)
    affines = head_affines(motion, oval)
    gap0 = float(_mouth_gap(base.landmarks[None])[0])
    # a photo with parted lips (teeth) opens by stretching its own mouth; a closed one gets a dark interior
    closed_mouth = gap0 < CLOSED_MOUTH * face_size(base.landmarks)
    if not closed_mouth:
        motion.jaw *= 0.5
    box = np.array([0, 0, size, size])
    tb = 1 / Fraction(fps).limit_denominator(1001)
    with Mp4Writer(out, fps, size, size, time_base=tb) as writer:
        for s0 in range(0, len(plan), BATCH):
            sl = plan[s0 : s0 + BATCH]
            b = len(sl)
            neutral = base.landmarks[None] + alpha[sl, None, None] * delta[None]
            geom = deform(neutral, motion, sl)
            dst_pts = np.concatenate([geom[:, idx], np.broadcast_to(anchors, (b, *anchors.shape))], 1)
            boxes = np.broadcast_to(box, (b, 4))
            layers = [Layer(base.image, np.concatenate([base.landmarks[idx], anchors]), "reflection")]
            need_target = bool((alpha[sl] > 0).any())
            if need_target:
                layers.append(
                    Layer(target.image, _with_anchors(target.landmarks[idx], geom[:, idx], anchors))
                )
            warped = tps_warp_layers(layers, dst_pts, boxes, device=device, post_affine=affines[sl])
            bw = warped[0]
            tw = warped[1] if need_target else None
            geom_out = np.einsum("bij,bnj->bni", affines[sl, :, :2], geom) + affines[sl, None, :, 2]
            gaps = _mouth_gap(geom_out)
            for k in range(b):
                i = int(sl[k])
                frame = bw.images[k]
                fs = face_size(geom_out[k])
                if tw is not None and alpha[i] > 0:
                    frame = blend_frame(frame, tw.images[k], tw.valid[k], geom_out[k], box, float(alpha[i]),
                                        tw.area[k] if tw.area is not None else None)
                if closed_mouth:
                    scale = float(np.linalg.det(affines[i, :, :2])) ** 0.5
                    opened = np.clip((gaps[k] - gap0 * scale) / (0.05 * fs), 0.0, 0.85)
                    _paint_mouth(frame, geom_out[k], float(opened), fs)
                writer.write(np.clip(np.rint(frame), 0, 255).astype(np.uint8), t=float(Fraction(i) * tb))
    return {"t": t, "alpha": alpha, "face": np.ones(n, dtype=np.int8), "fps": fps, "rendered": len(plan)}


def render_real(clip_path: str, target: Portrait, schedule: Schedule, cfg: Any, out: Path, *, device: str,
                mesh: Any, sampling: Any | None = None) -> dict[str, Any]:
    """Write a real clip whose face is morphed toward ``target`` (real expression and head motion kept).
    The output's k-th frame is at k / fps; with a ``sampling`` only the frames it measures are found,
    morphed and written (:func:`render_plan`)."""
    from fractions import Fraction

    import cv2

    from driftbench.errors import ClipError
    from driftbench.measure import video
    from driftbench.mitigations.warp import (
        Layer,
        Mp4Writer,
        apply_affine,
        border_anchors,
        control_indices,
        face_box,
        similarity_to,
        tps_warp_layers,
    )

    # never faster than the footage: a 15 fps clip sampled "at 25 fps" yields 15 frames per second
    fps = min(float(cfg.fps), video.probe(clip_path).fps or float(cfg.fps))
    frames, lms = [], []
    prev_box = None
    for fr in video.sample(clip_path, fps, end=float(cfg.duration_s) - 1e-6):
        img = fr.image
        scale = min(1.0, int(cfg.max_side) / max(img.shape[:2]))
        if scale < 1.0:
            img = cv2.resize(
                img,
                (round(img.shape[1] * scale) // 2 * 2, round(img.shape[0] * scale) // 2 * 2),
                interpolation=cv2.INTER_AREA,
            )
        frames.append((fr.t, img))
    plan = render_plan(np.arange(len(frames)) / fps, sampling)
    planned = set(plan.tolist())
    for i, (_t, img) in enumerate(frames):
        face = mesh.detect(img, prev_box) if i in planned else None
        lms.append(None if face is None else face.landmarks)
        if face is not None:
            prev_box = face.box
    found = [i for i, lm in enumerate(lms) if lm is not None]
    if not found:
        raise ClipError(
            clip_path,
            "no face found to morph",
            "use identity-constant footage that shows a face",
            reason="no_face",
        )
    t = np.array([f[0] for f in frames])
    alpha = schedule.alpha(t)
    idx = control_indices()
    ref_i = found[0]
    ref_img, ref_lm = frames[ref_i][1], lms[ref_i]
    assert ref_lm is not None
    target = recolour_target(target, ref_img, ref_lm)
    delta_ref = shape_offset(ref_lm, target.landmarks)
    h, w = ref_img.shape[:2]
    tb = 1 / Fraction(fps).limit_denominator(1001)
    with Mp4Writer(out, fps, w, h, time_base=tb) as writer:
        for s0 in range(0, len(plan), BATCH):
            ids = [int(i) for i in plan[s0 : s0 + BATCH]]
            todo = [
                i for i in ids if lms[i] is not None and alpha[i] > 0 and frames[i][1].shape == ref_img.shape
            ]
            results: dict[int, np.ndarray] = {}
            if todo:
                geoms, boxes, src_pts, dst_pts, tgt_anchors = [], [], [], [], []
                for i in todo:
                    lm = lms[i]
                    assert lm is not None
                    a = similarity_to(ref_lm[idx], lm[idx])
                    geom = lm + alpha[i] * (delta_ref @ a[:, :2].T)
                    box = face_box(np.concatenate([lm, geom]), frames[i][1].shape, margin=0.3)
                    anc = border_anchors(
                        float(box[0]), float(box[1]), float(box[2]), float(box[3]), per_side=6
                    )
                    geoms.append(geom)
                    boxes.append(box)
                    src_pts.append(np.concatenate([lm[idx], anc]))
                    dst_pts.append(np.concatenate([geom[idx], anc]))
                    tgt_anchors.append(apply_affine(anc, similarity_to(geom[idx], target.landmarks[idx])))
                layers = [Layer([frames[i][1] for i in todo], np.stack(src_pts), "border"),
                          Layer(target.image, np.stack([np.concatenate([target.landmarks[idx], anc])
                                                        for anc in tgt_anchors]))]
                bw, tw = tps_warp_layers(layers, np.stack(dst_pts), np.stack(boxes), device=device)
                for k, i in enumerate(todo):
                    x0, y0, bwid, bhei = (int(v) for v in boxes[k])
                    face = blend_frame(bw.images[k][:bhei, :bwid], tw.images[k], tw.valid[k], geoms[k],
                                       boxes[k], float(alpha[i]), tw.area[k] if tw.area is not None else None)
                    img = frames[i][1].copy()
                    img[y0 : y0 + bhei, x0 : x0 + bwid] = np.clip(np.rint(face), 0, 255).astype(np.uint8)
                    results[i] = img
            for i in ids:
                img = results.get(i, frames[i][1])
                if img.shape != ref_img.shape:
                    img = cv2.resize(img, (w, h))
                writer.write(img, t=float(Fraction(i) * tb))
    face = np.array([lm is not None if i in planned else -1 for i, lm in enumerate(lms)], dtype=np.int8)
    return {"t": t, "alpha": alpha, "face": face, "fps": fps, "rendered": len(plan)}


