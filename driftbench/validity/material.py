"""The validity suite's material: the shared folders, measuring clips and photos through the signal cache, and
the result row every section returns."""


from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("driftbench")

SECTIONS = ("verification", "decoupling", "control", "age", "generated", "synthetic")
#: VALIDITY.md targets
TARGET_D_PRIME = 7.1
TARGET_MARGIN = 0.08
TARGET_RATIO = 0.5
DRIFT_CLIP = "infinitetalk_dub_9.mp4"
#: infinitetalk's decoupled drift must stay at least this large, and at least this share of the raw one
MIN_DRIFT = 0.10
MIN_DRIFT_SHARE = 0.5


@dataclass
class Row:
    section: str
    metric: str
    raw: Any = None
    dec: Any = None
    target: str = ""
    status: str = "info"  # pass | fail | info | unavailable
    note: str = ""


def check(ok: bool) -> str:
    return "pass" if ok else "fail"


@dataclass
class SharedPaths:
    root: Path

    @property
    def real(self) -> Path:
        return self.root / "data" / "video" / "real" / "manifest.csv"

    @property
    def driving(self) -> Path:
        return self.root / "data" / "video" / "liveportrait" / "driving"

    @property
    def generated(self) -> Path:
        return self.root / "data" / "video" / "generated" / "manifest.csv"

    @property
    def deepface(self) -> Path:
        return self.root / "data" / "faces" / "deepface"

    def missing(self) -> list[Path]:
        return [
            p
            for p in (self.real, self.driving, self.generated, self.deepface / "face-recognition-pivot.csv")
            if not p.exists()
        ]


# -- measuring --------------------------------------------------------------------------------------------
@dataclass
class Measured:
    frames: pd.DataFrame  # one row per sample of every clip (clip_id, person, set, t, sim_raw, d_*, ...)
    clips: list[dict[str, Any]] = field(default_factory=list)  # provenance per clip
    problems: list[str] = field(default_factory=list)


def folder_clips(path: Path, cfg: Any) -> list[Any]:
    """Clips of a folder or manifest through the ``folder`` source (same parsing as ``driftbench run``)."""
    from omegaconf import OmegaConf

    from driftbench.sources.base import SourceContext, create_source

    model = OmegaConf.create({"name": "folder", "path": str(path), "pattern": "*.mp4", "recursive": False,
                              "label": path.parent.name if path.is_file() else path.name})
    ctx = SourceContext(work_dir=Path("."), cache_dir=Path("."), seed=int(cfg.seed), progress=False)
    source = create_source(model, ctx)
    clips = source.clips()
    for s in source.skipped:
        log.warning("validate: skipped %s", s.message)
    return clips


def measure_clips(clips: Sequence[Any], settings: Any, set_name: str) -> Measured:
    from driftbench.measure.cache import content_hash
    from driftbench.measure.clip import measure_clip

    frames, info, problems = [], [], []
    for clip in clips:
        res = measure_clip(clip, settings)
        if res.status != "ok" or res.frames is None:
            problems.append(f"{set_name}: {res.message}")
            continue
        f = res.frames.copy()
        if "emb" not in f:
            f["emb"] = track_embeddings(clip, settings, f)
        f.insert(0, "clip_id", clip.clip_id)
        f.insert(1, "person", f"{set_name}:{clip.character}")
        f.insert(2, "set", set_name)
        f["case"] = str(clip.meta.get("case", ""))
        # where the clip's opening starts (after a first-frame reference's own frames) and how long it is
        f["opening_start_s"] = float(res.summary.get("opening_start_s", 0.0))
        f["duration_s"] = float(res.summary.get("duration_s", np.nan))
        f["generator"] = str(clip.meta.get("generator", clip.model))
        frames.append(f)
        info.append(
            {
                "set": set_name,
                "clip": Path(clip.path).name,
                "person": f"{set_name}:{clip.character}",
                "sha256": content_hash(clip.path),
                "n_samples": len(f),
                "reference": res.summary.get("reference_mode"),
                "meta": {k: v for k, v in clip.meta.items() if k.startswith("gt_")},
            }
        )
        log.info(
            "validate: %s %s (%d samples%s)",
            set_name,
            clip.clip_id,
            len(f),
            ", cached" if res.cache_hit else "",
        )
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return Measured(df, info, problems)


def track_embeddings(clip: Any, settings: Any, frames: pd.DataFrame) -> list[Any]:
    """Each sample's embedding of the character's face (None without one), as measure_clip chose it, from
    the signal cache (for frame pairs across clips:
    :func:`driftbench.validity.calibration.video_impostor_pairs`)."""
    from driftbench.measure.cache import SignalCache
    from driftbench.measure.clip import get_analyzer, video_faces
    from driftbench.measure.track import choose_faces

    if settings.reference != "first_frame":
        return [None] * len(frames)
    cache = SignalCache(
        Path(settings.cache_dir) if settings.cache_dir else None, enabled=settings.cache_enabled
    )
    faces, _, _ = video_faces(clip.path, get_analyzer(settings), settings.sampling, cache)
    track = choose_faces(faces, None).set_index("sample_index")
    emb = track["emb"].where(track["face_found"].astype(bool), None)
    return [emb.get(int(i)) for i in frames["sample_index"]]


def control_footage(paths: SharedPaths, cfg: Any, settings: Any) -> Measured:
    """Identity-constant real footage, reference = the clip's first second."""
    s = replace(settings, reference="first_frame")
    real = measure_clips(folder_clips(paths.real, cfg), s, "real")
    driving = measure_clips(folder_clips(paths.driving, cfg), s, "liveportrait")
    return Measured(pd.concat([real.frames, driving.frames], ignore_index=True), real.clips + driving.clips,
                    real.problems + driving.problems)


def photo_pairs(analyzer: Any, deepface_dir: Path, cache: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(faces, pairs) of the labelled deepface photos, as verification.photo_faces/pair_table compute
    them, with each photo's faces from the signal cache and both labels on every pair."""
    from driftbench.measure.clip import image_faces
    from driftbench.validity import verification as V

    photos = V.deepface_photos(deepface_dir)
    faces_df = V.photo_faces(analyzer, photos, faces_of=lambda path: image_faces(path, analyzer, cache))
    pairs = V.pair_table(faces_df)
    labels = dict(zip(faces_df["file"], faces_df["label"], strict=True))
    pairs["label_a"] = pairs["a"].map(labels)
    pairs["label_b"] = pairs["b"].map(labels)
    return faces_df, pairs


def rescore(frames: pd.DataFrame, decoupler: Any, smooth_s: float) -> pd.DataFrame:
    """sim_dec and both smoothed scores with the given decoupler (per clip, as measure does)."""
    out = frames.copy()
    out["sim_dec"] = decoupler.apply(out)
    return rescore_smooth(out, smooth_s)


def loss_onsets(frames: pd.DataFrame, col: str, threshold: float, min_loss_s: float, period: float
                ) -> dict[str, float | None]:
    from driftbench.measure.drift import time_to_loss

    return {cid: time_to_loss(g["t"].to_numpy(), g[f"{col}_smooth"].to_numpy(), threshold, min_loss_s, period)
            for cid, g in frames.groupby("clip_id", sort=True)}


def bin_medians(frames: pd.DataFrame, col: str, bin_s: float = 1.0) -> pd.Series:
    b = np.floor(frames["t"].to_numpy() / bin_s + 1e-9).astype(int)
    return frames.groupby(b)[col].median()

def rescore_smooth(frames: pd.DataFrame, smooth_s: float) -> pd.DataFrame:
    from driftbench.measure.drift import smooth

    out = frames.copy()
    for col in ("sim_raw", "sim_dec"):
        sm = np.full(len(out), np.nan)
        for _, idx in out.groupby("clip_id", sort=False).indices.items():
            sm[idx] = smooth(out["t"].to_numpy(np.float64)[idx], out[col].to_numpy(np.float64)[idx], smooth_s)
        out[f"{col}_smooth"] = sm
    return out
