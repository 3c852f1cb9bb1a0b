"""How time and peak memory grow with clip length: 10 s, 60 s and 10 min inputs (the 10 min input
loops the real 60 s clip by remuxing its packets, no re-encode). Memory must stay flat: frames are
streamed, never held."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.conftest import CLIP_60S, EXTRA, record
from tests.conftest import ROOT, SHARED_MODELS, needs_shared

pytestmark = [pytest.mark.benchmark, needs_shared]

PROBE = """
import json, resource, sys, time
t = time.perf_counter()
from driftbench.measure.signals import FaceAnalyzer, Sampling
with FaceAnalyzer.create("sface", device="cpu") as a:
    df = a.analyze_video(sys.argv[1], Sampling(2.0))
print(json.dumps({"samples": len(df), "seconds": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def loop_clip(src: Path, dst: Path, times: int, max_s: float | None = None) -> Path:
    """Concatenate ``times`` copies of a clip's video packets (stream copy), optionally cut at max_s."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        ivs = inp.streams.video[0]
        ovs = out.add_stream_from_template(ivs)
        period = None
        for k in range(times):
            inp.seek(0)
            offset = None
            last = 0
            for pkt in inp.demux(ivs):
                if pkt.pts is None:
                    continue
                if period is None and k == 0:
                    pass
                offset = offset if offset is not None else 0
                shift = k * (period or 0)
                t = float((pkt.pts + shift) * ivs.time_base)
                if max_s is not None and t >= max_s:
                    break
                last = max(last, pkt.pts + (pkt.duration or 0))
                pkt.pts += shift
                if pkt.dts is not None:
                    pkt.dts += shift
                pkt.stream = ovs
                out.mux(pkt)
            if period is None:
                period = last
    return dst


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("scaling")
    return {"10s": loop_clip(CLIP_60S, d / "clip_10s.mp4", 1, max_s=10.0), "60s": CLIP_60S,
            "10min": loop_clip(CLIP_60S, d / "clip_10min.mp4", 10)}


@pytest.mark.parametrize("length", ["10s", "60s", "10min"])
def test_time_and_peak_memory_by_length(benchmark, inputs, length):
    env = {**os.environ, "DRIFTBENCH_MODELS": str(SHARED_MODELS)}
    result: dict = {}

    def run():
        p = subprocess.run([sys.executable, "-c", PROBE, str(inputs[length])], cwd=ROOT, env=env,
                           capture_output=True, text=True, check=True)
        result.update(json.loads(p.stdout.strip().splitlines()[-1]))

    benchmark.pedantic(run, rounds=1 if length == "10min" else 3, iterations=1)
    expected = {"10s": 20, "60s": 120, "10min": 1199}[length]
    assert abs(result["samples"] - expected) <= 2
    record(benchmark, f"scaling_{length}")
    EXTRA[f"scaling {length}"] = (f"{result['samples']} samples, {result['seconds']:.1f} s in-process, "
                                  f"peak RSS {result['peak_rss_mb']:.0f} MB")
