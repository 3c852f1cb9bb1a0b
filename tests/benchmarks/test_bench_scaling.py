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

from tests.benchmarks.conftest import CLIP_60S, EXTRA, needs_shared_floor, record, shared_floor_cmd
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


#: many clips: the first 20 real clips of ../shared (sorted by name; 3-60 s each, several sizes and sources)
MANY = 20
RSS_WRAPPER = (
    "import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "sys.stderr.write(p.stderr[-3000:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); sys.exit(p.returncode)"
)


def _real_clips(n: int) -> list[Path]:
    from tests.conftest import VIDEO

    return sorted((VIDEO / "real").glob("*.mp4"))[:n]


def _minutes(clips: list[Path]) -> float:
    import av

    total = 0.0
    for c in clips:
        with av.open(str(c)) as f:
            s = f.streams.video[0]
            total += float(s.duration * s.time_base) if s.duration else f.duration / 1e6
    return total / 60.0


def _folder_run(folder: Path, out: Path, *extra: str) -> float:
    """`driftbench run` on a folder (signal cache off, report on: what a user runs); the peak RSS (MB) of
    its largest process (the run or one pool worker) is returned."""
    env = {**os.environ, "DRIFTBENCH_MODELS": str(SHARED_MODELS)}
    cmd = [sys.executable, "-c", RSS_WRAPPER, sys.executable, "-m", "driftbench", "run", "model=folder",
           f"model.path={folder}", "reference=first_frame", f"output.dir={out}", "cache.enabled=false",
           "progress=false", *extra]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert p.returncode in (0, 1), p.stderr[-2000:]  # 1: a gate/verdict failure is still a finished run
    return float(p.stdout.strip().splitlines()[-1])


@needs_shared_floor
def test_many_clips_vs_shared_floor(benchmark, tmp_path):
    """Issue 20: >= 20 real clips, per minute of video, the default command (one run over the folder,
    executor.workers=1 and =2) against ../shared/tools/floor.py --mp run once per clip (its imports and
    model loading paid per clip: that is what the floor costs on many clips), interleaved round by round;
    medians of 3 rounds. Peak RSS at 5, 10 and 20 clips (workers=1) shows memory flat in the number of
    clips."""
    import statistics
    import time

    clips = _real_clips(MANY)
    assert len(clips) == MANY
    folders = {}
    for n in (5, 10, MANY):
        d = tmp_path / f"clips{n}"
        d.mkdir()
        for c in clips[:n]:
            (d / c.name).symlink_to(c)
        folders[n] = d
    minutes = _minutes(clips)
    times: dict[str, list[float]] = {"floor": [], "workers1": [], "workers2": []}
    rss: dict[str, float] = {}
    k = 0

    def round_():
        nonlocal k
        k += 1
        t = time.perf_counter()
        for c in clips:
            subprocess.run(shared_floor_cmd(c), cwd=ROOT, check=True, capture_output=True)
        times["floor"].append(time.perf_counter() - t)
        for w in (1, 2):
            t = time.perf_counter()
            rss[f"{MANY} clips, workers={w}"] = _folder_run(folders[MANY], tmp_path / f"w{w}-{k}",
                                                            f"executor.workers={w}")
            times[f"workers{w}"].append(time.perf_counter() - t)

    benchmark.pedantic(round_, rounds=3, iterations=1)
    for n in (5, 10):
        rss[f"{n} clips, workers=1"] = _folder_run(folders[n], tmp_path / f"rss{n}", "executor.workers=1")
    med = {key: statistics.median(v) / minutes for key, v in times.items()}  # seconds per minute of video
    benchmark.extra_info.update({f"s_per_video_min_{key}": v for key, v in med.items()})
    benchmark.extra_info.update({f"peak_rss_mb {key}": v for key, v in rss.items()})
    benchmark.extra_info["video_minutes"] = minutes
    EXTRA[f"many clips ({MANY} real, {minutes:.1f} min of video): floor per clip"] = (
        f"{med['floor']:.2f} s/min"
    )
    for w in (1, 2):
        EXTRA[f"many clips: default command, executor.workers={w} (target <= 1.05x floor)"] = (
            f"{med[f'workers{w}']:.2f} s/min = {med[f'workers{w}'] / med['floor']:.2f}x")
    EXTRA["many clips: peak RSS of the largest process"] = ", ".join(f"{key}: {v:.0f} MB" for key, v in
                                                                   sorted(rss.items()))
    EXTRA["many clips: load average (1 min) at the end"] = (
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
