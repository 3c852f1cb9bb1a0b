"""A colour-only drift: a real clip whose Lab colour creeps linearly from none at the start to ``--shift``
at the end (every pixel, geometry untouched), written as H.264. docs/MITIGATIONS.md measures with it what
colour alone does to the identity score.

    python docs/mitigations/tint.py ../shared/data/video/real/infinitetalk_ref_video.mp4 OUT.mp4 \
        --shift=-2.2,5.6,0
"""

from __future__ import annotations

import argparse

import numpy as np

from driftbench.measure import video
from driftbench.mitigations.colormatch import from_lab, to_lab
from driftbench.mitigations.warp import Mp4Writer

ap = argparse.ArgumentParser()
ap.add_argument("src")
ap.add_argument("out")
ap.add_argument("--shift", default="-2.2,5.6,0", help="Lab shift (L, a, b) reached at the last frame")
a = ap.parse_args()
shift = np.array([float(v) for v in a.shift.split(",")], np.float32)
info = video.probe(a.src)
with Mp4Writer(a.out, info.fps, info.width, info.height) as w:
    for fr in video.sample(a.src, info.fps):
        w.write(from_lab(to_lab(fr.image) + shift * (fr.t / max(info.duration_s, 1e-6))))
print(a.out)
