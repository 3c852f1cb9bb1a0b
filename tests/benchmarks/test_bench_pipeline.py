"""Per-stage and end-to-end speed on the 60 s real clip (real/edtalk_pose_source2.mp4, 2 frames/s).

Stages: sample/decode, detect, align+embed, expression/pose (MediaPipe), one clip end to end with
models loaded, the whole `driftbench run` command (start-up, imports and model loading included),
the same command with a warm signal cache, and the floor (tests/benchmarks/floor.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.benchmarks.conftest import CLIP_60S, EXTRA, needs_shared_floor, record, shared_floor_cmd
from tests.benchmarks.roundstats import round_median_ci
from tests.conftest import ROOT, SHARED_MODELS, needs_shared

pytestmark = [pytest.mark.benchmark, needs_shared]


def _env(cache: str | None = None) -> dict[str, str]:
    env = {**os.environ, "DRIFTBENCH_MODELS": str(SHARED_MODELS)}
    if cache:
        env["DRIFTBENCH_CACHE"] = cache
    return env


@pytest.fixture(scope="module")
def frames():
    from driftbench.measure import video

    return list(video.sample(CLIP_60S, 2.0))


@pytest.fixture(scope="module")
def models():
    from driftbench.faces.base import create_backend
    from driftbench.faces.landmarker import Landmarker
    from driftbench.weights import store

    backend = create_backend("sface", device="cpu")
    lm = Landmarker(store.resolve("face_landmarker").path)
    yield backend, lm
    lm.close()


def test_stage_sample_decode(benchmark):
    from driftbench.measure import video

    n = benchmark.pedantic(lambda: sum(1 for _ in video.sample(CLIP_60S, 2.0)), rounds=5, iterations=1)
    assert n == 120
    record(benchmark, "stage_decode_120_samples")


def test_stage_decode_1080p_skipping_vs_full(benchmark):
    """Sampling 2 frames/s from a 1080x1920 HEVC clip (24 s, B-frames), against decoding every frame of it
    in the same run (PyAV, the same threading): what skipping unreferenced frames before each sampling
    instant saves where decoding is the dominant cost."""
    import statistics
    import time

    import av

    from driftbench.measure import video

    clip = CLIP_60S.parent / "latentsync_demo3_video.mp4"

    def full() -> int:
        with av.open(str(clip)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            return sum(1 for _ in c.decode(s))

    full_s: list[float] = []

    def time_full_decode() -> None:  # pedantic's untimed setup: each round's full decode beside it
        t = time.perf_counter()
        full()
        full_s.append(time.perf_counter() - t)

    n = benchmark.pedantic(lambda: sum(1 for _ in video.sample(clip, 2.0)), setup=time_full_decode, rounds=5,
                           iterations=1)
    assert n == 40
    benchmark.extra_info["median_full_decode_s"] = statistics.median(full_s)
    record(benchmark, "stage_decode_1080p_sampled")
    EXTRA["decode 1080p HEVC, sampled / full decode"] = (
        f"{benchmark.stats.stats.median:.3f} s / {statistics.median(full_s):.3f} s")


def test_stage_detect(benchmark, frames, models):
    backend, _ = models
    faces = benchmark.pedantic(lambda: [backend.detect(f.image) for f in frames], rounds=5, iterations=1)
    assert all(len(f) == 1 for f in faces)
    record(benchmark, "stage_detect_120")


def test_stage_align_embed(benchmark, frames, models):
    backend, _ = models
    faces = [backend.detect(f.image)[0] for f in frames]

    def run():
        return backend.embed([backend.align(f.image, fc) for f, fc in zip(frames, faces, strict=True)])

    emb = benchmark.pedantic(run, rounds=5, iterations=1)
    assert emb.shape == (120, 128)
    record(benchmark, "stage_align_embed_120")


def test_stage_expression_pose(benchmark, frames, models):
    backend, lm = models
    boxes = [backend.detect(f.image)[0].box for f in frames]
    res = benchmark.pedantic(lambda: [lm.analyze(f.image, b) for f, b in zip(frames, boxes, strict=True)],
                             rounds=3, iterations=1)
    assert sum(r.found for r in res) == 120
    record(benchmark, "stage_mediapipe_120")


def test_clip_end_to_end_models_loaded(benchmark):
    from driftbench.measure.signals import FaceAnalyzer, Sampling

    with FaceAnalyzer.create("sface", device="cpu") as analyzer:
        analyzer.analyze_video(CLIP_60S, Sampling(2.0, end=2.0))  # warm: models loaded before timing
        df = benchmark.pedantic(
            lambda: analyzer.analyze_video(CLIP_60S, Sampling(2.0)), rounds=3, iterations=1
        )
    assert len(df) == 120 and df["yaw"].notna().all()
    record(benchmark, "clip_60s_end_to_end")


def test_clip_30s_end_to_end(benchmark):
    """Issue 2's benchmark: processing a 30 s clip at 2 frames/s on CPU (models loaded)."""
    from driftbench.measure.signals import FaceAnalyzer, Sampling

    with FaceAnalyzer.create("sface", device="cpu") as analyzer:
        analyzer.analyze_video(CLIP_60S, Sampling(2.0, end=2.0))
        df = benchmark.pedantic(lambda: analyzer.analyze_video(CLIP_60S, Sampling(2.0, end=29.9)), rounds=3,
                                iterations=1)
    assert len(df) == 60
    record(benchmark, "clip_30s_end_to_end")


def _command(clip_dir, out, *extra, cache=None):
    cmd = [sys.executable, "-m", "driftbench", "run", "model=folder", f"model.path={clip_dir}",
           "reference=first_frame", f"output.dir={out}", *extra]
    p = subprocess.run(cmd, cwd=ROOT, env=_env(cache), capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    return p


VARIANTS = {
    # the default command: identity + expression/pose + age, report.html written
    "default": [],
    "no_report": ["report.html=false"],
    "mediapipe": ["report.html=false", "signals.age=false"],  # what the floor with MediaPipe computes
    "identity_only": ["report.html=false", "signals.expression=false", "signals.age=false"],
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_command_60s(benchmark, clip_dir, tmp_path, variant):
    n = 0

    def once():
        nonlocal n
        n += 1  # a fresh run directory each round: a rerun into the same one would resume, not measure
        return _command(clip_dir, tmp_path / f"run{n}", "cache.enabled=false", *VARIANTS[variant])

    benchmark.pedantic(once, rounds=5, iterations=1)
    record(benchmark, f"command_60s_{variant}")


def test_command_60s_warm_cache_recomputes_no_face(benchmark, clip_dir, tmp_path):
    cache = str(tmp_path / "cache")
    _command(clip_dir, tmp_path / "first", cache=cache)
    n = 0

    def again():
        nonlocal n
        n += 1
        return _command(clip_dir, tmp_path / f"again{n}", cache=cache)

    benchmark.pedantic(again, rounds=3, iterations=1)
    import json

    run = json.loads((tmp_path / f"again{n}" / "run.json").read_text())
    assert run["cache_hits"] == 1
    record(benchmark, "command_60s_warm_cache")


@pytest.mark.parametrize("variant", ["mediapipe", "identity_only"])
def test_floor_60s(benchmark, variant):
    cmd = [sys.executable, "-m", "tests.benchmarks.floor", str(CLIP_60S)]
    if variant == "identity_only":
        cmd.append("--no-mediapipe")
    benchmark.pedantic(lambda: subprocess.run(cmd, cwd=ROOT, env=_env(), check=True, capture_output=True),
                       rounds=5, iterations=1)
    record(benchmark, f"floor_60s_{variant}")


def test_startup_help_and_no_torch(benchmark):
    """`driftbench --help` starts fast and imports neither torch nor any model runtime."""
    code = (
        "import sys, driftbench.cli as c; c.main(['--help']); "
        "bad = [m for m in ('torch', 'mediapipe', 'onnxruntime', 'cv2', 'matplotlib') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    benchmark.pedantic(lambda: subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                                              capture_output=True), rounds=5, iterations=1)
    record(benchmark, "startup_help")


@needs_shared_floor
def test_default_command_vs_shared_floor_interleaved(benchmark, clip_dir, tmp_path):
    """Issue 20's measurement: the default command (report included, signal cache off) against
    ../shared/tools/floor.py --mp, identity-only against the floor without MediaPipe, and the default
    command with a warm signal cache, interleaved round by round in this one run (the load of a shared
    machine then weighs on all alike); medians of the rounds. The benchmark's own figure is a whole round."""
    import json
    import resource
    import statistics
    import time

    cache = str(tmp_path / "cache")
    _command(clip_dir, tmp_path / "warmup", cache=cache)  # fills the cache; first-touch file reads too
    times: dict[str, list[float]] = {
        k: [] for k in ("floor", "default", "floor_identity", "identity_only", "warm")
    }
    loads: dict[str, list[float]] = {k: [] for k in times}  # 1-min load average as each command starts
    cpu: dict[str, list[float]] = {k: [] for k in times}  # CPU seconds (user + system) of each command
    n = 0

    def children_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def timed(key, fn):
        loads[key].append(os.getloadavg()[0])
        c, t = children_cpu(), time.perf_counter()
        fn()
        times[key].append(time.perf_counter() - t)
        cpu[key].append(children_cpu() - c)

    def round_():
        nonlocal n
        n += 1
        timed(
            "floor",
            lambda: subprocess.run(shared_floor_cmd(CLIP_60S), cwd=ROOT, check=True, capture_output=True),
        )
        timed("default", lambda: _command(clip_dir, tmp_path / f"d{n}", "cache.enabled=false"))
        timed("floor_identity", lambda: subprocess.run(shared_floor_cmd(CLIP_60S, mediapipe=False), cwd=ROOT,
                                                       check=True, capture_output=True))
        timed("identity_only", lambda: _command(clip_dir, tmp_path / f"i{n}", "cache.enabled=false",
                                                *VARIANTS["identity_only"]))
        timed("warm", lambda: _command(clip_dir, tmp_path / f"w{n}", cache=cache))

    # more rounds steady the medians on a loaded machine: DRIFTBENCH_BENCH_ROUNDS=5
    rounds = max(1, int(os.environ.get("DRIFTBENCH_BENCH_ROUNDS", "3")))
    benchmark.pedantic(round_, rounds=rounds, iterations=1)
    assert json.loads((tmp_path / f"w{n}" / "run.json").read_text())["cache_hits"] == 1
    assert (tmp_path / f"d{n}" / "report.html").is_file()
    med = {k: statistics.median(v) for k, v in times.items()}
    benchmark.extra_info.update({f"median_{k}_s": v for k, v in med.items()})
    benchmark.extra_info["load_avg_1min"] = os.getloadavg()[0]
    # every round's figures beside the load they ran under (other sessions may load the machine)
    benchmark.extra_info["rounds_s"] = times
    benchmark.extra_info["rounds_load_avg_1min"] = loads
    # CPU time hardly depends on the load that stretches wall time: the work each side does
    benchmark.extra_info["rounds_cpu_s"] = cpu
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    benchmark.extra_info.update({f"median_cpu_{k}_s": v for k, v in med_cpu.items()})
    benchmark.extra_info["ratio_default_over_floor"] = med["default"] / med["floor"]
    benchmark.extra_info["ratio_identity_over_floor_identity"] = med["identity_only"] / med["floor_identity"]
    # each round's own ratio (its commands ran seconds apart, under nearly the same load), then the median
    ratios = [d / f for d, f in zip(times["default"], times["floor"], strict=True)]
    paired = statistics.median(ratios)
    benchmark.extra_info["median_round_ratio_default_over_floor"] = paired
    # how far one run's figure can move: a 95 % bootstrap interval of that median over the rounds
    lo, hi = round_median_ci(ratios)
    benchmark.extra_info["median_round_ratio_ci95"] = [lo, hi]
    r = med["default"] / med["floor"]
    EXTRA["interleaved: default command / shared floor --mp (target <= 1.2x)"] = (
        f"{med['default']:.2f} s / {med['floor']:.2f} s = {r:.2f}x")
    EXTRA["interleaved: identity-only command / shared floor without MediaPipe"] = (
        f"{med['identity_only']:.2f} s / {med['floor_identity']:.2f} s = "
        f"{med['identity_only'] / med['floor_identity']:.2f}x")
    EXTRA["interleaved: default command / shared floor --mp, median of each round's ratio"] = (
        f"{paired:.2f}x (95 % CI over the {len(ratios)} rounds {lo:.2f}-{hi:.2f}x)")
    EXTRA["interleaved: CPU seconds, default command / shared floor --mp"] = (
        f"{med_cpu['default']:.2f} s / {med_cpu['floor']:.2f} s = "
        f"{med_cpu['default'] / med_cpu['floor']:.2f}x")
    EXTRA["interleaved: default command, warm signal cache"] = f"{med['warm']:.2f} s"
    EXTRA["interleaved: load average (1 min) at the end"] = (
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (as each command started: "
        f"{min(min(v) for v in loads.values()):.1f}-{max(max(v) for v in loads.values()):.1f})"
    )
