"""Two-character clips made from real footage (nothing downloaded): two identity-constant clips side by side
in one frame, optionally with the two faces exchanged from a known time (a swap), or with one face morphed
toward the other by the synthetic source's morph (:func:`driftbench.sources.synthetic_render.render_real`;
leakage). Test material for :mod:`driftbench.measure.cast` and the frames of ``model=synthetic model.cast=2``.

Each side is the clip's centre square (a portrait video's top square) resized to ``size``; the composite
is ``2 * size`` wide, written at ``fps`` (frame k at k / fps), as long as the shorter clip (at most
``duration_s``). """

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np


def _square(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    s = min(h, w)
    # a portrait (upright) video's face sits in its upper part: its top square; else the centre square
    y0, x0 = (0 if h > w else (h - s) // 2), (w - s) // 2
    crop = img[y0:y0 + s, x0:x0 + s]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_CUBIC)


def _frames(path: str | Path, fps: float, duration_s: float, size: int) -> list[np.ndarray]:
    from driftbench.measure import video

    return [_square(fr.image, size) for fr in video.sample(path, fps, end=duration_s - 1e-6)]


def compose(left: str | Path, right: str | Path, out: Path, *, fps: float = 2.0, duration_s: float = 10.0,
            size: int = 256, swap_at: float | None = None) -> dict[str, Any]:
    """Write ``left`` and ``right`` side by side to ``out`` (H.264 MP4). From ``swap_at`` (s) on, the two
    halves are exchanged: the left place shows the right clip's person and vice versa (each clip continues
    its own timeline). Returns the record: t (frame times), swapped (per frame), fps, size."""
    from driftbench.mitigations.warp import Mp4Writer

    a = _frames(left, fps, duration_s, size)
    b = _frames(right, fps, duration_s, size)
    n = min(len(a), len(b))
    if n == 0:
        raise ValueError(f"{left} / {right}: no frame to composite")
    t = np.arange(n) / fps
    swapped = np.zeros(n, bool) if swap_at is None else t >= swap_at - 1e-9
    out.parent.mkdir(parents=True, exist_ok=True)
    with Mp4Writer(out, fps, 2 * size, size) as w:
        for i in range(n):
            pair = (b[i], a[i]) if swapped[i] else (a[i], b[i])
            w.write(np.concatenate(pair, axis=1))
    return {"t": t, "swapped": swapped, "fps": fps, "size": size, "swap_at": swap_at}


def morph_toward(clip: str | Path, other: str | Path, out: Path, *, fps: float = 2.0,
                 duration_s: float = 10.0, strength: float = 0.9, device: str = "cpu",
                 mesh: Any = None) -> dict[str, Any]:
    """``clip`` with its face morphed toward ``other``'s first-frame face on a linear schedule (0 at the
    start, ``strength`` at ``duration_s``): the synthetic source's real-footage morph. Returns its record
    (t, alpha, face, fps)."""
    import cv2

    from driftbench.io import write_bytes
    from driftbench.measure import video
    from driftbench.sources.synthetic_inputs import PhotoSpec, load_portrait, make_schedule
    from driftbench.sources.synthetic_render import render_real
    from driftbench.weights.store import cached_sha256

    first = next(iter(video.sample(other, 1.0, end=1.0)), None)
    if first is None:
        raise ValueError(f"{other}: no frame to take the target face from")
    png = out.with_name(out.stem + "-target.png")
    ok, buf = cv2.imencode(".png", first.image)
    if not ok:
        raise OSError(f"{png}: PNG encoding failed")
    write_bytes(png, bytes(buf))
    own = mesh is None
    if own:
        from driftbench.mitigations.warp import FaceMesh

        mesh = FaceMesh()
    try:
        target = load_portrait(PhotoSpec(Path(other).stem, png, cached_sha256(png), None), mesh)
        if target is None:
            raise ValueError(f"{other}: no usable face in its first frame to morph toward")
        cfg = SimpleNamespace(fps=fps, duration_s=duration_s, max_side=1024, strength=strength,
                              step_s=None, late_onset_s=None)
        return render_real(str(clip), target, make_schedule("linear", cfg), cfg, out, device=device,
                           mesh=mesh, sampling=None)
    finally:
        if own:
            mesh.close()


def pair_material(left: str | Path, right: str | Path, folder: Path, *, fps: float = 2.0,
                  duration_s: float = 10.0, size: int = 256, swap_at: float | None = None,
                  strength: float = 0.9, mesh: Any = None) -> dict[str, Any]:
    """The three composites of a pair, cached in ``folder`` (an existing file is reused): ``constant``,
    ``swap`` (halves exchanged from ``swap_at``, default 0.43 * duration_s) and ``morph`` (the left face
    morphed toward the right one's). Returns {kind: {"path", "swap_at" | "alpha", "t"}}."""
    folder.mkdir(parents=True, exist_ok=True)
    tag = f"{Path(left).stem}+{Path(right).stem}-{fps:g}fps-{duration_s:g}s-{size}"
    swap_at = round(0.43 * duration_s, 2) if swap_at is None else swap_at
    out: dict[str, Any] = {}
    const = folder / f"{tag}-constant.mp4"
    if not const.is_file():
        compose(left, right, const, fps=fps, duration_s=duration_s, size=size)
    out["constant"] = {"path": str(const)}
    swap = folder / f"{tag}-swap{swap_at:g}.mp4"
    if not swap.is_file():
        compose(left, right, swap, fps=fps, duration_s=duration_s, size=size, swap_at=swap_at)
    out["swap"] = {"path": str(swap), "swap_at": swap_at}
    morphed = folder / f"{tag}-morphed{strength:g}-left.mp4"
    if not morphed.is_file():
        morph_toward(left, right, morphed, fps=fps, duration_s=duration_s, strength=strength, mesh=mesh)
    morph = folder / f"{tag}-morph{strength:g}.mp4"
    if not morph.is_file():
        compose(morphed, right, morph, fps=fps, duration_s=duration_s, size=size)
    t = np.arange(round(duration_s * fps)) / fps
    out["morph"] = {"path": str(morph), "t": t, "alpha": strength * t / duration_s}
    return out
