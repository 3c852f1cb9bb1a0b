"""Seconds the published metrics add per run: published.clip_metrics on every clip of a finished run, its
sampled signals read from that run's cache, its own frames measured afresh (their cache off).

    python docs/published/time_extras.py RUN_DIR CACHE_DIR
"""

import sys
import time
from pathlib import Path

import pandas as pd

from driftbench.measure import published as P
from driftbench.measure import video
from driftbench.measure.cache import SignalCache
from driftbench.measure.clip import video_faces
from driftbench.measure.signals import FaceAnalyzer, Sampling

run, cache_dir = Path(sys.argv[1]), Path(sys.argv[2])
clips = pd.read_csv(run / "clips.csv")
analyzer = FaceAnalyzer.create("sface", device="cpu")
cache, off = SignalCache(cache_dir), SignalCache(enabled=False)
wall = cpu = 0.0
for path in clips["path"]:
    sampled, _, hit = video_faces(path, analyzer, Sampling(2.0), cache)
    assert hit, f"{path}: not in {cache_dir} (run the run first)"
    t0, c0 = time.perf_counter(), time.process_time()
    P.clip_metrics(path, sampled, None, analyzer, off, P.PublishedSettings(), recognizer="sface",
                   sampling_fps=2.0, video_fps=video.probe(path).fps)
    wall += time.perf_counter() - t0
    cpu += time.process_time() - c0
print(f"{len(clips)} clips: published extras {wall:.2f} s wall, {cpu:.2f} s CPU in all")
analyzer.close()
