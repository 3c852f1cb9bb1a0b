"""Face masks, Reinhard colour matching and feathered blending (per frame, OpenCV on the CPU)."""


from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from driftbench.mitigations.warp.landmarks import FACE_OVAL


# -- masks and blending ---------------------------------------------------------------------------------
def face_size(landmarks: np.ndarray) -> float:
    """Face scale in pixels: the square root of the face oval's area."""
    import cv2

    pts = np.asarray(landmarks, dtype=np.float32).reshape(-1, 2)[list(FACE_OVAL)]
    return float(np.sqrt(max(cv2.contourArea(pts), 1.0)))


def face_box(landmarks: np.ndarray, shape: tuple[int, ...], margin: float = 0.25) -> np.ndarray:
    """Integer box (x0, y0, w, h) around the face landmarks plus ``margin`` of their extent, clipped
    to the image."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    lo, hi = lm.min(0), lm.max(0)
    pad = (hi - lo) * margin
    x0, y0 = np.floor(np.maximum(lo - pad, 0)).astype(int)
    x1 = int(np.ceil(min(hi[0] + pad[0], shape[1])))
    y1 = int(np.ceil(min(hi[1] + pad[1], shape[0])))
    return np.array([x0, y0, max(x1 - x0, 2), max(y1 - y0, 2)], dtype=np.int64)


def region_mask(landmarks: np.ndarray, box: np.ndarray, *, feather: float, shrink: float = 0.0,
                exclude: Sequence[Sequence[int]] = (), exclude_grow: float = 0.0,
                exclude_feather: float | None = None) -> np.ndarray:
    """Feathered face mask (float32 0..1) in box coordinates: the face oval shrunk by ``shrink`` px
    and blurred by ``feather`` px, with the polygons of ``exclude`` (e.g. eyes and inner mouth,
    grown by ``exclude_grow`` px) cut out."""
    import cv2

    x0, y0, w, h = (int(v) for v in box)
    lm = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2) - np.array([x0, y0])
    mask: Any = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(lm[list(FACE_OVAL)]).astype(np.int32)], 255)
    if shrink > 0:
        k = max(1, round(shrink))
        mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    m: Any = mask.astype(np.float32) / 255.0
    if feather > 0:
        m = cv2.GaussianBlur(m, (0, 0), feather)
    if exclude:
        hole: Any = np.zeros((h, w), np.uint8)
        for poly in exclude:
            cv2.fillPoly(hole, [np.round(lm[list(poly)]).astype(np.int32)], 255)
        if exclude_grow > 0:
            k = max(1, round(exclude_grow))
            hole = cv2.dilate(hole, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
        hf: Any = hole.astype(np.float32) / 255.0
        ef = feather / 2 if exclude_feather is None else exclude_feather
        if ef > 0:
            hf = cv2.GaussianBlur(hf, (0, 0), ef)
        m = m * (1.0 - hf)
    return np.clip(m, 0.0, 1.0)


def detail_weight(area: np.ndarray, mask: np.ndarray, lo: float = 0.25, hi: float = 0.55) -> np.ndarray:
    """Confidence (0..1) of a warped face per pixel from its source area (:attr:`WarpBatch.area`)
    relative to the median inside ``mask``: regions the source saw strongly foreshortened (below
    ``lo`` of the typical area: the far cheek of a turned head) or folded (area <= 0) hold no usable
    texture, so a blend should keep the frame's own pixels there."""
    m = np.asarray(mask) > 0.5
    pos = area[m & (area > 0)]
    if pos.size < 16:
        return np.ones_like(area, dtype=np.float32)
    ratio = area / float(np.median(pos))
    x = np.clip((ratio - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return (x * x * (3.0 - 2.0 * x)).astype(np.float32)


def color_match(src: np.ndarray, ref: np.ndarray, mask: np.ndarray, ref_mask: np.ndarray | None = None,
                max_gain: float = 3.0) -> np.ndarray:
    """Reinhard colour transfer: ``src`` recoloured so that its Lab mean and spread inside ``mask``
    equal ``ref``'s inside ``ref_mask`` (default: the same mask; both images float or uint8 BGR 0-255,
    the masks their own sizes). Keeps a warped face from showing a seam of skin tone or lighting."""
    import cv2

    m = np.asarray(mask) > 0.5
    rm = m if ref_mask is None else np.asarray(ref_mask) > 0.5
    if m.sum() < 16 or rm.sum() < 16:
        return np.asarray(src, dtype=np.float32)
    s = cv2.cvtColor(np.clip(src, 0, 255).astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab)
    r = cv2.cvtColor(np.clip(ref, 0, 255).astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab)
    ms, ss = s[m].mean(0), s[m].std(0)
    mr, sr = r[rm].mean(0), r[rm].std(0)
    gain = np.clip(sr / np.maximum(ss, 1e-3), 1.0 / max_gain, max_gain)
    out = (s - ms) * gain + mr
    return np.clip(cv2.cvtColor(out.astype(np.float32), cv2.COLOR_Lab2BGR) * 255.0, 0, 255)


def oval_mask(landmarks: np.ndarray, shape: tuple[int, ...], shrink: float = 0.0) -> np.ndarray:
    """Hard face-oval mask (bool) of an image, optionally shrunk by ``shrink`` pixels."""
    box = np.array([0, 0, shape[1], shape[0]])
    return region_mask(landmarks, box, feather=0.0, shrink=shrink) > 0.5


def blend_into(frame: np.ndarray, face: np.ndarray, alpha: np.ndarray, box: np.ndarray, *,
               mode: str = "feather") -> np.ndarray:
    """Blend ``face`` (box-sized, float 0-255) into a copy of ``frame`` (uint8) with ``alpha``
    (box-sized 0..1): ``feather`` is a plain alpha blend; ``seamless`` uses OpenCV's Poisson
    ``seamlessClone`` on the mask's support (then the alpha blend keeps soft edges)."""
    import cv2

    x0, y0, w, h = (int(v) for v in box)
    out = frame.copy()
    region = out[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
    hh, ww = region.shape[:2]
    face, alpha = face[:hh, :ww], alpha[:hh, :ww]
    if mode == "seamless":
        support = (alpha > 0.05).astype(np.uint8) * 255
        ys, xs = np.nonzero(support)
        if len(xs) > 16 and xs.min() > 0 and xs.max() < ww - 1 and ys.min() > 0 and ys.max() < hh - 1:
            centre = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
            cloned = cv2.seamlessClone(
                np.clip(face, 0, 255).astype(np.uint8),
                region.astype(np.uint8),
                support,
                centre,
                cv2.NORMAL_CLONE,
            )
            face = cloned.astype(np.float32)
        elif mode == "seamless":
            pass  # the face touches the box edge: the plain feathered blend is the safe fallback
    elif mode != "feather":
        raise ValueError(f"blend mode must be feather or seamless, got {mode!r}")
    a = alpha[..., None]
    region = region * (1.0 - a) + face * a
    out[y0 : y0 + hh, x0 : x0 + ww] = np.clip(np.rint(region), 0, 255).astype(np.uint8)
    return out


