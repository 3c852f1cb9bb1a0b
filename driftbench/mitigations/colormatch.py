"""``colormatch``: colour and tone of every frame (or chunk) re-matched to the reference.

The fix practitioners apply to long InfiniteTalk / MultiTalk takes, whose colour and exposure creep from
window to window: the generators' own ``color_correction_strength`` (``match_and_blend_colors`` in
MeiGen-AI/InfiniteTalk's wan/utils/multitalk_utils.py: each decoded frame's Lab mean and spread moved to the
reference image's, blended by the strength), ComfyUI's ColorMatch node and WanVideoWrapper's ``colormatch``
option. The defaults here (``reinhard``, ``frame``, per frame) are that correction. It changes no
geometry: every pixel keeps its place and only its colour moves, through one global transform per frame (or
per chunk), so the question it answers is whether a run's measured identity drift was partly colour.

The transfer works in CIE Lab (OpenCV's float conversion: L 0-100, a/b about -127..127):

- ``method: reinhard``: each Lab channel's mean and standard deviation moved to the reference's
  (Reinhard et al. 2001; the gain is clipped to [1/max_gain, max_gain]);
- ``method: histogram``: each Lab channel's histogram matched to the reference's
  (:func:`skimage.exposure.match_histograms`), applied to every pixel as the monotone map it defines
  (beyond the fitted range, e.g. background outside a face's values, as a constant shift).

``region: frame`` fits the transform on the whole frame against the whole reference (what the ComfyUI node
does); ``region: face`` fits it on the face oval of the frame (MediaPipe landmarks) against the reference's
face oval, and applies it to the whole frame (no seam; a frame without a face takes the last face's
transform). ``chunk_s > 0`` fits one transform per chunk of that many seconds (pooled statistics of the
chunk's frames: of the frames the run measures, with ``render: sampled``), as users correct per generation
window, so tone does not flicker within a window. ``strength`` blends the corrected frame with the original.

The reference is the clip's reference image when it has one (``reference=auto`` / ``images``), else the
clip's opening frame with a face (``first_frame``), the same reference the measurement uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from driftbench.mitigations.base import FrameBatch, FrameProcessor, RefFace, RunInfo

METHODS = ("reinhard", "histogram")
REGIONS = ("frame", "face")
#: pixels drawn (deterministically) from each side to fit a histogram map: the map is a quantile map,
#: stable far below a frame's pixel count
FIT_PIXELS = 200_000


def to_lab(image: np.ndarray) -> np.ndarray:
    """BGR uint8 (or float 0-255) -> float32 CIE Lab (OpenCV: L 0-100, a/b about -127..127)."""
    import cv2

    return cv2.cvtColor(np.clip(image, 0, 255).astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab)


def from_lab(lab: np.ndarray) -> np.ndarray:
    """float32 Lab -> BGR uint8 (rounded, clipped)."""
    import cv2

    bgr = cv2.cvtColor(np.asarray(lab, np.float32), cv2.COLOR_Lab2BGR) * 255.0
    return np.clip(np.rint(bgr), 0, 255).astype(np.uint8)


def _draw(pixels: np.ndarray, n: int = FIT_PIXELS) -> np.ndarray:
    """At most ``n`` rows of (N, 3) pixels, the same rows on every call (a fixed-seed draw)."""
    if len(pixels) <= n:
        return pixels
    return pixels[np.random.default_rng(0).choice(len(pixels), n, replace=False)]


@dataclass
class Transfer:
    """A colour transform in Lab fitted from source pixels to reference pixels."""

    method: str
    #: reinhard: source mean/std and reference mean/std per channel (3,); histogram: per channel the
    #: sorted distinct source values and what the histogram match sends them to
    params: tuple[Any, ...]

    def apply(self, lab: np.ndarray) -> np.ndarray:
        if self.method == "reinhard":
            ms, gain, mr = self.params
            return ((lab - ms) * gain + mr).astype(np.float32)
        out = np.empty_like(lab, dtype=np.float32)
        for c, (xs, ys) in enumerate(self.params):
            x = lab[..., c]
            # beyond the fitted values (background outside a face's range) the map goes on as a shift
            out[..., c] = np.where(x < xs[0], ys[0] + (x - xs[0]),
                                   np.where(x > xs[-1], ys[-1] + (x - xs[-1]), np.interp(x, xs, ys)))
        return out


def fit_transfer(
    src: np.ndarray, ref: np.ndarray, method: str = "reinhard", max_gain: float = 3.0
) -> Transfer:
    """The transform that gives ``src`` pixels (N, 3 Lab) the colour statistics of ``ref`` (M, 3 Lab)."""
    src = np.asarray(src, np.float32).reshape(-1, 3)
    ref = np.asarray(ref, np.float32).reshape(-1, 3)
    if method == "reinhard":
        ms, ss = src.mean(0), src.std(0)
        mr, sr = ref.mean(0), ref.std(0)
        gain = np.clip(sr / np.maximum(ss, 1e-3), 1.0 / max_gain, max_gain)
        return Transfer(method, (ms, gain.astype(np.float32), mr))
    if method == "histogram":
        from skimage.exposure import match_histograms

        s, r = _draw(src), _draw(ref)
        matched = match_histograms(s[:, None, :], r[:, None, :], channel_axis=-1)[:, 0, :]
        maps = []
        for c in range(3):
            xs, first = np.unique(s[:, c], return_index=True)
            maps.append((xs, matched[first, c].astype(np.float32)))
        return Transfer(method, tuple(maps))
    from driftbench.errors import UsageError

    raise UsageError(f"mitigation colormatch: method={method!r} -- fix: choose from {list(METHODS)}")


def face_pixels(lab: np.ndarray, landmarks: np.ndarray, shrink: float) -> np.ndarray:
    """(N, 3) Lab pixels inside the face oval, shrunk by ``shrink`` of the face size."""
    from driftbench.mitigations.warp import face_size, oval_mask

    m = oval_mask(np.asarray(landmarks), lab.shape, shrink=shrink * face_size(np.asarray(landmarks)))
    return lab[m]


def face_tone(image: np.ndarray, landmarks: np.ndarray, shrink: float = 0.08) -> np.ndarray:
    """Mean Lab (3,) of the face oval of a BGR image: the skin tone a viewer sees."""
    return face_pixels(to_lab(image), landmarks, shrink).mean(0)


def delta_e(lab_a: np.ndarray, lab_b: np.ndarray) -> np.ndarray:
    """CIE ΔE2000 between Lab colours (..., 3) (:func:`skimage.color.deltaE_ciede2000`; about 1 is the
    smallest difference a viewer notices side by side, 2-3 is visible at a glance)."""
    from skimage.color import deltaE_ciede2000

    return np.asarray(deltaE_ciede2000(np.asarray(lab_a, np.float64), np.asarray(lab_b, np.float64)))


COLORMATCH_DEFAULTS: dict[str, Any] = {
    #: reinhard (Lab mean and spread) | histogram (per-channel Lab histogram match, scikit-image)
    "method": "reinhard",
    #: frame: whole frame to whole reference | face: fitted on the face ovals, applied to the whole frame
    "region": "frame",
    #: 0: one transform per frame; > 0: one per chunk of this many seconds (pooled statistics)
    "chunk_s": 0.0,
    #: 1: the corrected frame; < 1: blended with the original
    "strength": 1.0,
    #: reinhard: the spread gain is clipped to [1 / max_gain, max_gain]
    "max_gain": 3.0,
    #: region=face: the face oval shrunk inward by this share of the face size (no hair or background)
    "face_shrink": 0.08,
    #: frames per second of the output (0 = the clip's own rate; render=full only)
    "max_fps": 0.0,
    #: sampled: process only the frames the run's sampling measures; full: every frame (to watch)
    "render": "sampled",
}


class ColorMatch(FrameProcessor):
    """Every frame's (or chunk's) colour and tone moved to the reference's; geometry untouched."""

    name = "colormatch"
    defaults: ClassVar[dict[str, Any]] = COLORMATCH_DEFAULTS

    def __init__(self, params: dict[str, Any], device: str = "auto") -> None:
        super().__init__(params, device)
        from driftbench.errors import UsageError

        p = self.params
        for key, allowed in (("method", METHODS), ("region", REGIONS)):
            if p[key] not in allowed:
                raise UsageError(
                    f"mitigation colormatch: {key}={p[key]!r} -- fix: choose from {list(allowed)}"
                )
        if not (float(p["chunk_s"]) >= 0 and math.isfinite(float(p["chunk_s"]))):
            raise UsageError(f"mitigation colormatch: chunk_s={p['chunk_s']!r} -- fix: 0 (every frame) or "
                             "a chunk length in seconds")
        if not 0.0 <= float(p["strength"]) <= 1.0:
            raise UsageError(f"mitigation colormatch: strength={p['strength']!r} -- fix: a value in [0, 1]")

    def start(self, ref: RefFace) -> None:
        super().start(ref)
        lab = to_lab(ref.image)
        if self.params["region"] == "face":
            self._ref_pixels = face_pixels(lab, ref.landmarks, float(self.params["face_shrink"]))
        else:
            self._ref_pixels = lab.reshape(-1, 3)
        self._ref_pixels = _draw(self._ref_pixels)
        self._last: Transfer | None = None

    def group(self, t: float) -> int | None:
        chunk = float(self.params["chunk_s"])
        return math.floor(t / chunk + 1e-9) if chunk > 0 else None

    def _source(self, lab: np.ndarray, face: Any) -> np.ndarray | None:
        if self.params["region"] == "frame":
            return lab.reshape(-1, 3)
        if face is None:
            return None
        return face_pixels(lab, face.landmarks, float(self.params["face_shrink"]))

    def _fit(self, pixels: list[np.ndarray]) -> Transfer | None:
        pixels = [p for p in pixels if len(p) >= 16]
        if not pixels:
            return self._last  # no face to fit on: the last face's transform holds
        self._last = fit_transfer(_draw(np.concatenate(pixels)), self._ref_pixels, str(self.params["method"]),
                                  float(self.params["max_gain"]))
        return self._last

    def process(self, batch: FrameBatch, info: RunInfo) -> list[np.ndarray]:
        labs = [to_lab(img) for img in batch.images]
        sources = [self._source(lab, face) for lab, face in zip(labs, batch.faces, strict=True)]
        if float(self.params["chunk_s"]) > 0:  # base hands over one whole chunk per batch (group())
            chunk = self._fit([s for s in sources if s is not None])
            transfers = [chunk] * len(labs)
        else:
            transfers = [self._fit([s]) if s is not None else self._last for s in sources]
        strength = float(self.params["strength"])
        out = []
        for img, lab, tr in zip(batch.images, labs, transfers, strict=True):
            if tr is None:
                out.append(img)
                continue
            new = tr.apply(lab)
            if strength < 1.0:
                new = lab + strength * (new - lab)
            out.append(from_lab(new))
            info.processed += 1
        return out


def tone_series(path: str, fps: float, mesh: Any, shrink: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """Times (T,) and face-oval mean Lab (T, 3) of a clip sampled at ``fps`` (NaN where no face is found;
    the face is followed from frame to frame, as the mitigation loop does)."""
    from driftbench.measure import video

    times, tones = [], []
    prev_box = None
    for fr in video.sample(path, fps):
        face = mesh.detect(fr.image, prev_box)
        times.append(fr.t)
        if face is None:
            tones.append(np.full(3, np.nan))
            continue
        prev_box = face.box
        tones.append(face_tone(fr.image, face.landmarks, shrink))
    return np.asarray(times, np.float64), np.asarray(tones, np.float64).reshape(-1, 3)


def reference_tone(clip: dict[str, Any], mesh: Any, fps: float = 2.0) -> tuple[np.ndarray, str]:
    """Face-oval mean Lab of a clip's reference (a run's ``parts/*.json`` clip record): its first reference
    image with a face, else the opening frame with a face of the clip's source (a mitigated clip's
    ``mitigation_source``, so a mitigation cannot move its own reference)."""
    from driftbench.measure.video import read_image

    for p in clip.get("references") or ():
        img = read_image(p)
        face = mesh.detect(img)
        if face is not None:
            return face_tone(img, face.landmarks), f"image:{p}"
    src = str((clip.get("meta") or {}).get("mitigation_source") or clip["path"])
    t, tones = tone_series(src, fps, mesh)
    ok = np.flatnonzero(np.isfinite(tones[:, 0]))
    if not len(ok):
        raise ValueError(f"{src}: no frame shows a face")
    return tones[ok[0]], f"first_frame@{t[ok[0]]:.3f}s"


#: the run's own identity figures put beside the colour ones (clips.csv columns, where the run has them)
IDENTITY_COLUMNS = ("opening_raw", "opening_dec", "drift_raw_at_30s", "drift_raw_at_end", "drift_dec_at_30s",
                    "drift_dec_at_end", "drifting", "time_to_drift_s")


def tone_table(run_dir: Any, fps: float = 2.0, window_s: float = 5.0) -> Any:
    """Per clip of a run directory: CIE ΔE2000 of the face's mean Lab to the reference's, averaged over
    the opening ``window_s`` seconds and the last ``window_s`` seconds of samples (the colour a viewer sees
    drift), and its maximum, beside the run's own identity drift (:data:`IDENTITY_COLUMNS` of clips.csv),
    so colour and identity can be read apart; one row per measured clip (``driftbench dev tone-table``)."""
    import json
    from pathlib import Path

    import pandas as pd

    from driftbench.mitigations.warp import FaceMesh

    rows = []
    mesh = FaceMesh(download=True)  # as a run with fetch=true (the default) finds its weights
    try:
        for part in sorted(Path(run_dir, "parts").glob("*.json")):
            rec = json.loads(part.read_text(encoding="utf-8"))
            clip = rec.get("clip") or {}
            if rec.get("status") not in (None, "ok") or not clip.get("path"):
                continue
            ref, origin = reference_tone(clip, mesh, fps)
            t, tones = tone_series(str(clip["path"]), fps, mesh)
            ok = np.isfinite(tones[:, 0])
            de = np.full(len(t), np.nan)
            de[ok] = delta_e(tones[ok], ref[None])
            end = t[ok].max() if ok.any() else 0.0
            rows.append({
                "clip_id": clip.get("clip_id"),
                "run": Path(run_dir).name,
                "mitigation": clip.get("mitigation", "none"),
                "params": (clip.get("meta") or {}).get("mitigation_params", ""),
                "reference": origin,
                "n_samples": int(ok.sum()),
                "de_open": float(np.nanmean(de[t < window_s])) if (ok & (t < window_s)).any() else np.nan,
                "de_end": float(np.nanmean(de[t > end - window_s])) if ok.any() else np.nan,
                "de_max": float(np.nanmax(de)) if ok.any() else np.nan,
            })
    finally:
        mesh.close()
    table = pd.DataFrame(rows)
    clips_csv = Path(run_dir, "clips.csv")
    if len(table) and clips_csv.is_file():
        ident = pd.read_csv(clips_csv)
        keep = ["clip_id", *(c for c in IDENTITY_COLUMNS if c in ident.columns)]
        table = table.merge(ident[keep], on="clip_id", how="left")
    return table
