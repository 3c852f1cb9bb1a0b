"""Thin-plate-spline and affine warps of images, batched in torch (CUDA when allowed, else the CPU)."""


from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


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
    field. """
    import torch

    b, n, _ = ctrl.shape
    d2 = torch.cdist(ctrl, ctrl).square()
    k = d2 * torch.log(d2.clamp_min(1e-12))
    k = k + regularization * torch.eye(n, dtype=ctrl.dtype, device=ctrl.device)
    p = torch.cat([torch.ones(b, n, 1, dtype=ctrl.dtype, device=ctrl.device), ctrl], dim=2)
    top = torch.cat([k, p], dim=2)
    bottom = torch.cat([p.transpose(1, 2), torch.zeros(b, 3, 3, dtype=ctrl.dtype, device=ctrl.device)], dim=2)
    system = torch.cat([top, bottom], dim=1)
    rhs = torch.cat(
        [values, torch.zeros(b, 3, values.shape[2], dtype=values.dtype, device=values.device)], dim=1
    )
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


def tps_warp_layers(
    layers: Sequence[Layer],
    dst_points: np.ndarray,
    boxes: np.ndarray,
    *,
    device: str = "cpu",
    stride: int = 0,
    regularization: float = 1e-3,
    post_affine: np.ndarray | None = None,
) -> list[WarpBatch]:
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
    t = (
        torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32, device=dev)
        .permute(2, 0, 1)
        .unsqueeze(0)
    )
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


