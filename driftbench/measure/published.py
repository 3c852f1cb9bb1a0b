"""Published identity metrics, computed as their authors' released code computes them, on the faces of the
run's own recogniser, so that a clip's figures can stand beside published tables (and beside driftbench's):

* **Human_Identity** (VBench-2.0, ``vbench2/human_identity.py``): every decoded frame; the reference is the
  face of frame 0, which must be the only face there (else the clip is not scored, VBench's ``-1``); each
  later frame with exactly one face is counted and is *consistent* when its cosine to the frame-0 face is
  >= 0.4; a later frame with two or more faces is skipped; a later frame with **no face counts as
  consistent** (RetinaFace's ``predict_jsons`` answers one empty box, which the code treats as a match);
  fewer than 20 counted frames: not scored. Score: consistent / counted. VBench uses RetinaFace-R50 and an
  unaligned grey-scale ArcFace-R18; here the run's detector and recogniser.
* **FaceSim** (OpenS2V-Nexus ``eval/get_facesim.py``; ConsisID ``eval/get_facesim_fid.py`` the same with 16
  frames): ``np.linspace(0, n_frames - 1, 32, dtype=int)`` frames; in each, InsightFace ``FaceAnalysis.get``
  and the largest face by box area; when no face is found the frame is padded by 25% on each side with grey
  (128) and detected again; still none: the frame is left out. Score per frame ``max(0, cos)`` to the
  reference's face; FaceSim = their mean (zeros kept, as FaceSim-Arc's code keeps them); no frame with a
  face: 0.0. FaceSim-Arc is this with antelopev2's ArcFace; FaceSim-Cur (CurricularFace IR-101 on the
  same crops) needs weights not obtainable here and is not computed.
* **CSIM** (talking-head papers: mean cosine of the generated frames' face to the source image's face):
  the largest face of each sampled frame, frames without a face left out; ``csim_5s`` restricted to the
  first 5 s (what a benchmark of 5 s clips reads).

The reference is the clip's reference image (its largest face; several images: their mean embedding,
driftbench's reference) or, with a first-frame reference, the largest face of frame 0 (not driftbench's
mean over the opening second). Every figure is computed with the run's recogniser (``published_recognizer``);
it equals the authors' number only with their models (``face=insightface face.options.pack=antelopev2``,
``face.options.det_size=320`` for FaceSim-Arc; tests/test_published.py shows the procedure equal to a direct
re-implementation calling InsightFace's FaceAnalysis per frame, on a local pack).

Which frames: by default every figure reads the run's sampled frames (FaceSim the sample nearest each of its
32 frames), which costs nothing beyond the run; ``published.exact=true`` decodes and analyses FaceSim's own 32
frames (identity only, cached like the sampled signals; ~0.5 s on a 60 s 25 fps clip, issue 20's default
command budget is why it is opt-in) and ``published.all_frames=true`` reads every decoded frame for
Human_Identity, as VBench-2.0 does (minutes on long clips). ``published_frames`` records which.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from driftbench.measure.preload import pandas as pd

#: OpenS2V-Nexus get_facesim.py --num_frames default (ConsisID's script uses 16)
FACESIM_FRAMES = 32
#: OpenS2V/ConsisID pad a frame without a face by this scale (pad_np_bgr_image) and detect again
PAD_SCALE = 1.25
PAD_VALUE = 128
#: VBench-2.0 human_identity.py: similarity_threshold and mini_frame
HI_THRESHOLD = 0.4
HI_MIN_FRAMES = 20
#: the clip length of talking-head benchmarks' CSIM
CSIM_SHORT_S = 5.0


@dataclass(frozen=True)
class PublishedSettings:
    #: compute the published metrics at all
    enabled: bool = True
    #: FaceSim on its own 32 frames (decoded and analysed exactly); false: on the sampled frames
    exact: bool = False
    #: Human_Identity on every decoded frame (VBench-2.0); false: on the sampled frames
    all_frames: bool = False


# -- definitions on per-frame tables (media-free) ---------------------------------------------------------
def facesim_indices(n_frames: int, num: int = FACESIM_FRAMES) -> np.ndarray:
    """The frames FaceSim reads: ``np.linspace(0, n_frames - 1, num, dtype=int)`` (a clip shorter than
    ``num`` frames repeats frames, each repeat counted, as decord's indexing does)."""
    if n_frames <= 0:
        return np.zeros(0, dtype=int)
    return np.linspace(0, n_frames - 1, num, dtype=int)


def cosine(a: Any, b: Any) -> float:
    """Cosine of two embeddings (neither need be normalised: InsightFace's ``face.embedding`` is not)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def per_frame(faces: pd.DataFrame) -> pd.DataFrame:
    """One row per analysed frame of a face-level table (:mod:`driftbench.measure.signals`): its time,
    frame index, number of faces and the embedding of its largest face (by box area, the first of equal
    ones; None when no face or the largest could not be embedded). One pass over the table's columns (a
    pandas group per frame cost ~1 ms each, on the critical path of every run)."""
    cols = ["sample_index", "t", "frame_index", "n_faces", "emb"]
    if faces.empty:
        return pd.DataFrame(columns=cols)
    face = faces["face_index"].to_numpy()
    size = faces["face_size"].astype(float).to_numpy()
    t, frame, emb = faces["t"].to_numpy(), faces["frame_index"].to_numpy(), faces["emb"].to_numpy()
    groups: dict[int, list[int]] = {}  # sample -> [its first row, faces found, row of the largest or -1]
    for i, sample in enumerate(faces["sample_index"].tolist()):
        g = groups.get(sample)
        if g is None:
            g = groups[sample] = [i, 0, -1]
        if face[i] >= 0:
            g[1] += 1
            if not np.isnan(size[i]) and (g[2] < 0 or size[i] > size[g[2]]):
                g[2] = i
    rows = []
    for sample in sorted(groups):
        first, found, big = groups[sample]
        e = None if big < 0 or emb[big] is None else np.asarray(emb[big], dtype=np.float32)
        rows.append({"sample_index": int(sample), "t": float(t[first]), "frame_index": int(frame[first]),
                     "n_faces": found, "emb": e})
    return pd.DataFrame(rows, columns=cols)


def facesim(reference: Any, embeddings: list[Any]) -> tuple[float, int]:
    """FaceSim-Arc's aggregation: mean of ``max(0, cos)`` over the frames with a face (None: no face, left
    out); 0.0 when no frame has one. Returns (score, frames with a face)."""
    scores = [max(0.0, cosine(reference, e)) for e in embeddings if e is not None]
    return (float(np.mean(scores)) if scores else 0.0), len(scores)


def human_identity(frames: pd.DataFrame, threshold: float = HI_THRESHOLD,
                   min_frames: int = HI_MIN_FRAMES) -> tuple[float, int]:
    """VBench-2.0 Human_Identity of one clip from its :func:`per_frame` table (frames in order, the first
    being frame 0). Returns (score, counted frames); the score is NaN where VBench reports -1 (frame 0
    without exactly one face, or fewer than ``min_frames`` counted frames)."""
    if frames.empty:
        return float("nan"), 0
    first = frames.iloc[0]
    if int(first["n_faces"]) != 1 or first["emb"] is None:
        return float("nan"), 0
    ref = first["emb"]
    counted = consistent = 0
    for n, emb in zip(frames["n_faces"].iloc[1:], frames["emb"].iloc[1:], strict=True):
        if int(n) == 0:  # RetinaFace's empty answer: the code counts it as a consistent frame
            counted += 1
            consistent += 1
        elif int(n) == 1 and emb is not None:
            counted += 1
            consistent += cosine(ref, emb) >= threshold
        # two or more faces: skipped (not counted)
    if counted < min_frames:
        return float("nan"), counted
    return consistent / counted, counted


def csim(reference: Any, frames: pd.DataFrame, t_max: float | None = None) -> tuple[float, int]:
    """Mean cosine of each frame's largest face to the reference over the frames with a face (and
    ``t < t_max``); NaN when none. Returns (score, frames used)."""
    if frames.empty or reference is None:
        return float("nan"), 0
    use = frames[frames["emb"].notna()]
    if t_max is not None:
        use = use[use["t"] < t_max]
    sims = [cosine(reference, e) for e in use["emb"]]
    return (float(np.mean(sims)) if sims else float("nan")), len(sims)


# -- the exact frames (media) -----------------------------------------------------------------------------
def pad_frame(image: np.ndarray, scale: float = PAD_SCALE) -> tuple[np.ndarray, tuple[int, int]]:
    """OpenS2V/ConsisID's ``pad_np_bgr_image``: a grey border of ``int(h * (scale - 1))`` rows and
    ``int(w * (scale - 1))`` columns on each side; returns (padded, (left, top))."""
    import cv2

    h, w = image.shape[:2]
    top = int(h * (scale - 1.0))
    left = int(w * (scale - 1.0))
    padded = cv2.copyMakeBorder(image, top, top, left, left, cv2.BORDER_CONSTANT,
                                value=(PAD_VALUE, PAD_VALUE, PAD_VALUE))
    return padded, (left, top)


def facesim_frames(path: str | Path, analyzer: Any, n_frames: int, num: int = FACESIM_FRAMES,
                   sampled: pd.DataFrame | None = None) -> pd.DataFrame:
    """Face-level table of FaceSim's frames (``sample_index`` = ``frame_index``), with the authors' padded
    second try on the frames where no face was found. Frames among the run's ``sampled`` frames (same
    stream index) reuse their analysis (the same detector and recogniser on the same image: the same
    faces); only the others are decoded and analysed (identity only)."""
    from driftbench.measure import video

    idx = sorted(set(facesim_indices(n_frames, num).tolist()))
    parts = []
    if sampled is not None and not sampled.empty:
        parts.append(sampled[sampled["frame_index"].isin(idx)])
    have = set(parts[0]["frame_index"].astype(int)) if parts else set()
    need = [i for i in idx if i not in have]
    if need:
        parts.append(analyzer.analyze_frames(video.frames_at(path, need), identity_only=True))
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    table["sample_index"] = table["frame_index"].astype("int32")
    missing = sorted(set(table.loc[table["face_index"] < 0, "frame_index"].astype(int)))
    if missing:
        padded = [video.SampledFrame(f.frame_index, f.t, f.frame_index, pad_frame(f.image)[0])
                  for f in video.frames_at(path, missing)]
        again = analyzer.analyze_frames(padded, identity_only=True)
        table = pd.concat([table[~table["frame_index"].isin(missing)], again], ignore_index=True)
    return table.sort_values(["sample_index", "face_index"], kind="mergesort").reset_index(drop=True)


def _cached(cache: Any, path: str | Path, token: str, analyzer: Any, compute: Any) -> pd.DataFrame:
    """The face-level table of a clip's published-metric frames, cached beside the sampled signals in the
    cache's ``published/`` folder (the top-level entries stay one per sampled clip)."""
    from driftbench.measure.cache import SignalCache, content_hash, signal_key

    cache = SignalCache(cache.root / "published", enabled=cache.enabled)
    key = signal_key(content_hash(path), token, analyzer.signature())
    hit = cache.get(key)
    if hit is not None:
        return hit
    table = compute()
    cache.put(key, table)
    return table


def sampled_min_frames(sampling_fps: float, video_fps: float, min_frames: int = HI_MIN_FRAMES) -> int:
    """Human_Identity on sampled frames: VBench's minimum of 20 counted frames, in samples (20 frames of a
    24 fps clip are 2 samples at 2 fps), never below 1."""
    if video_fps <= 0 or sampling_fps >= video_fps:
        return min_frames
    return max(1, int(np.ceil(min_frames * sampling_fps / video_fps)))


def clip_metrics(path: str | Path, sampled: pd.DataFrame, reference: Any, analyzer: Any, cache: Any,
                 settings: PublishedSettings, *, recognizer: str, sampling_fps: float,
                 video_fps: float) -> dict[str, Any]:
    """The published metrics of one clip as clips.csv columns. ``sampled``: the run's face-level table of
    the sampled frames; ``reference``: the reference images' embedding, or None for a first-frame
    reference (then frame 0's largest face)."""
    if not settings.enabled:
        return {}
    from driftbench.measure import video

    samples = per_frame(sampled)
    if settings.exact:
        n = video.frame_count(path)
        exact = per_frame(_cached(cache, path, f"published:facesim:{FACESIM_FRAMES}:n={n}", analyzer,
                                  lambda: facesim_frames(path, analyzer, n, sampled=sampled)))
        # each of the 32 positions reads its frame (a short clip repeats frames; each repeat counts)
        by_index = dict(zip(exact["frame_index"].astype(int), exact["emb"], strict=True))
        fs_embs = [by_index.get(int(i)) for i in facesim_indices(n)]
        fs_first = by_index.get(0)
        unread = len(set(facesim_indices(n).tolist()) - set(by_index))
        fs_source = f"{FACESIM_FRAMES} frames" + (f" ({unread} unreadable, left out)" if unread else "")
    else:
        fs_embs = list(samples["emb"])
        fs_first = samples["emb"].iloc[0] if not samples.empty else None
        fs_source = "samples"
    first = samples["emb"].iloc[0] if not samples.empty else None
    ref_csim = reference if reference is not None else first
    ref_fs = reference if reference is not None else fs_first
    if ref_fs is None:
        fs, fs_n = float("nan"), 0
    else:
        fs, fs_n = facesim(ref_fs, fs_embs)
    if settings.all_frames:
        every = per_frame(_cached(cache, path, "published:all_frames", analyzer,
                                  lambda: analyzer.analyze_frames(video.frames_at(path), identity_only=True)))
        hi, hi_n = human_identity(every)
        hi_source = "all frames"
    else:
        hi, hi_n = human_identity(samples, min_frames=sampled_min_frames(sampling_fps, video_fps))
        hi_source = "samples"
    c, _ = csim(ref_csim, samples)
    c5, _ = csim(ref_csim, samples, t_max=CSIM_SHORT_S)
    return {
        "published_recognizer": recognizer,
        "published_frames": f"facesim: {fs_source}; human_identity: {hi_source}",
        "csim": c,
        "csim_5s": c5,
        "facesim": fs,
        "facesim_faces": fs_n,
        "human_identity": hi,
        "human_identity_frames": hi_n,
    }
