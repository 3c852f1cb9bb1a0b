"""FaceSim on its own 32 frames (published.exact=true) against FaceSim on the run's 2 fps samples
(published.exact=false), per clip of a finished run, with the signals from that run's cache.

    python docs/published/facesim_frames.py RUN_DIR CACHE_DIR
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from driftbench.measure import published as P
from driftbench.measure.cache import SignalCache
from driftbench.measure.clip import reference_from_images, video_faces
from driftbench.measure.signals import FaceAnalyzer, Sampling

run, cache_dir = Path(sys.argv[1]), Path(sys.argv[2])
clips = pd.read_csv(run / "clips.csv")
analyzer = FaceAnalyzer.create("sface", device="cpu")
cache = SignalCache(cache_dir)
rows = []
for r in clips.to_dict(orient="records"):
    sampled, _, _ = video_faces(r["path"], analyzer, Sampling(2.0), cache)
    ref = None
    if r["reference_mode"] == "images":  # ../shared/data/video/generated: the photo beside the clip
        photo = next(p for p in (Path(r["path"]).with_suffix(x) for x in (".png", ".jpg")) if p.is_file())
        ref = reference_from_images((str(photo),), analyzer, cache).embedding
    base = dict(sampled=sampled, reference=ref, analyzer=analyzer, cache=cache, recognizer="sface",
                sampling_fps=2.0, video_fps=float(r["video_fps"]))
    exact = P.clip_metrics(r["path"], settings=P.PublishedSettings(exact=True), **base)
    samples = P.clip_metrics(r["path"], settings=P.PublishedSettings(exact=False), **base)
    rows.append({"clip_id": r["clip_id"], "facesim_32": exact["facesim"],
                 "facesim_samples": samples["facesim"], "n_samples": len(set(sampled["sample_index"]))})
out = pd.DataFrame(rows)
out["diff"] = out["facesim_samples"] - out["facesim_32"]
print(out.round(4).to_string(index=False))
print(f"max |diff| {np.abs(out['diff']).max():.4f}, mean |diff| {np.abs(out['diff']).mean():.4f} "
      f"over {len(out)} clips")
analyzer.close()
