"""Real runs for the statistics, leaderboard, expressivity, report and gate tests.

Every table these tests read comes from the real pipeline (``python -m driftbench run``) on real clips
from ../shared, or on clips derived from them with PyAV exactly the way an adversarial mitigation would
make them (``freeze``: the first frame repeated; ``paste``: a still of the face nudged around so only
the crop position moves). Runs are made once per test session and shared by the test modules.

Without ../shared, the same runs are made on the embedded synthetic clips (``model=synthetic``: package
photos animated, with a known identity drift): the pipeline, the tables and the logic under test are the
same; only the tests that check what real footage is known to show stay real-only.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import HAVE_SHARED, ROOT, VIDEO

GENERATED = VIDEO / "generated"
SECONDS = 20.0
#: the model label of the paired runs (real AniTalker clips, or their synthetic stand-ins)
PAIRS_MODEL = "anitalker" if HAVE_SHARED else "synthetic"
#: the model label of the adversarial and dropout runs
ADV_MODEL = "infinitetalk" if HAVE_SHARED else "synthetic"


# -- embedded synthetic clips (no ../shared needed) ---------------------------------------------------------
def synthetic_clips(*overrides: str) -> dict[str, tuple[Path, Path]]:
    """``model=synthetic`` clips (package photos, procedural motion and drift): clip_id -> (mp4, the base
    identity's portrait). Rendered once into the user's clip cache (content-keyed, reused across sessions)."""
    from driftbench.config import compose
    from driftbench.measure.cache import signals_dir
    from driftbench.sources.base import SourceContext, create_source

    cfg = compose(["model=synthetic", *overrides])
    cache = signals_dir().parent / "clips"
    src = create_source(cfg.model, SourceContext(work_dir=cache / "work", cache_dir=cache, progress=False))
    return {c.clip_id: (Path(c.path), Path(c.references[0])) for c in src.clips()}


def synthetic_drifting() -> Path:
    """20 s of the astronaut turning into another person at 4 s (the stand-in for infinitetalk_dub_9, which
    falls ~0.3 within 10 s)."""
    clips = synthetic_clips("model.schedules=[step]", "model.step_s=4", "model.max_clips=1",
                            f"model.duration_s={SECONDS:g}", "model.fps=10")
    return clips["synthetic/astronaut/t1_face0/step"][0]


def drifting_clip() -> Path:
    return GENERATED / "infinitetalk_dub_9.mp4" if HAVE_SHARED else synthetic_drifting()


def synthetic_pairs() -> dict[str, tuple[Path, Path]]:
    """36 s still-identity clips of two people (astronaut, t1_face0) and their portraits."""
    return synthetic_clips(
        "model.schedules=[none]", "model.max_clips=2", "model.duration_s=36", "model.fps=10"
    )


def synthetic_footage() -> Path:
    """12 s of the astronaut at 25 fps, talking and moving, no drift (the stand-in for generator footage)."""
    clips = synthetic_clips(
        "model.schedules=[none]", "model.max_clips=1", "model.duration_s=12", "model.fps=25"
    )
    return clips["synthetic/astronaut/t1_face0/none"][0]


# -- PyAV helpers -------------------------------------------------------------------------------------------
def read_frames(src: Path, seconds: float) -> tuple[list[np.ndarray], float]:
    """RGB frames of the first ``seconds`` of ``src`` and its frame rate."""
    import av

    frames: list[np.ndarray] = []
    with av.open(str(src)) as c:
        stream = c.streams.video[0]
        fps = float(stream.average_rate or 25)
        for fr in c.decode(stream):
            if fr.time is not None and fr.time >= seconds:
                break
            frames.append(fr.to_ndarray(format="rgb24"))
    return frames, fps


def write_clip(dst: Path, frames: Iterable[np.ndarray], fps: float) -> Path:
    """Encode RGB frames as H.264 (yuv420p) with PyAV."""
    from fractions import Fraction

    import av

    dst.parent.mkdir(parents=True, exist_ok=True)
    it: Iterator[np.ndarray] = iter(frames)
    first = next(it)
    h, w = first.shape[:2]
    with av.open(str(dst), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(round(fps * 1000), 1000))
        stream.width, stream.height, stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for img in (first, *it):
            vf = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(img[: h - h % 2, : w - w % 2]), format="rgb24"
            )
            for pkt in stream.encode(vf):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return dst


def frozen(frames: list[np.ndarray]) -> list[np.ndarray]:
    """What the ``freeze`` mitigation does: the first frame for the whole clip."""
    return [frames[0]] * len(frames)


def jittered_still(frames: list[np.ndarray], seed: int = 0, max_shift: int = 12) -> list[np.ndarray]:
    """A ``paste``-like clip: the first frame's face held still while the picture shifts by a few pixels
    per frame (the aligned crop, pose and expression stay the reference's; only the position moves)."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = frames[0].shape[:2]
    out = []
    for _ in frames:
        dx, dy = rng.integers(-max_shift, max_shift + 1, size=2)
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        out.append(cv2.warpAffine(frames[0], m, (w, h), borderMode=cv2.BORDER_REFLECT))
    return out


def dropouts(frames: list[np.ndarray], fps: float, every_s: float = 2.0) -> list[np.ndarray]:
    """The clip with the picture black in every other ``every_s`` window: the face is gone half the time."""
    return [f if int(i / fps // every_s) % 2 == 0 else np.zeros_like(f) for i, f in enumerate(frames)]


def blurred(frames: list[np.ndarray], sigma: float) -> list[np.ndarray]:
    """A degraded rendering of the same clip (a real regression a gate must catch)."""
    import cv2

    return [cv2.GaussianBlur(f, (0, 0), sigma) for f in frames]


# -- runs ----------------------------------------------------------------------------------------------------
def write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    return path


def run_pipeline(
    model_path: Path, out_dir: Path, *overrides: str, multirun: bool = False
) -> subprocess.CompletedProcess:
    """``python -m driftbench run model=folder model.path=...`` from the repository root."""
    cmd = [sys.executable, "-m", "driftbench", "run", *(["-m"] if multirun else []), "model=folder",
           f"model.path={model_path}", "progress=false", *overrides]
    if not multirun:
        cmd.append(f"output.dir={out_dir}")
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)


def _cached_run(base: Path, name: str, manifest_rows: list[dict[str, str]], *overrides: str) -> Path:
    run_dir = base / name
    if (run_dir / "clips.csv").is_file() and (run_dir / "run.json").is_file():
        return run_dir
    manifest = write_manifest(base / f"{name}.csv", manifest_rows)
    res = run_pipeline(manifest, run_dir, "report.html=false", *overrides)
    if res.returncode != 0:
        raise AssertionError(
            f"driftbench run failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
        )
    return run_dir


def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.getbasetemp() / "realruns"
    d.mkdir(parents=True, exist_ok=True)
    return d


def adversarial_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """infinitetalk_dub_9 (real generated drift) as the baseline, beside a re-encoded copy (a control that
    must pass), a frozen copy and a jittered still (both must be flagged); first 20 s of each."""
    base = session_dir(tmp_path_factory)
    clips = base / "adversarial-clips"
    if not (clips / "paste.mp4").is_file():
        frames, fps = read_frames(drifting_clip(), SECONDS)
        write_clip(clips / "reencode.mp4", frames, fps)
        write_clip(clips / "freeze.mp4", frozen(frames), fps)
        write_clip(clips / "paste.mp4", jittered_still(frames), fps)
    key = {"character": "infinitetalk_dub_9", "prompt_id": "dub_9", "seed": "0", "model": ADV_MODEL,
           "reference": "first_frame"}
    rows = [
        {"clip": str(drifting_clip()), "clip_id": "dub9-none", "mitigation": "none", **key},
        {"clip": str(clips / "reencode.mp4"), "clip_id": "dub9-reencode", "mitigation": "reencode", **key},
        {"clip": str(clips / "freeze.mp4"), "clip_id": "dub9-freeze", "mitigation": "freeze", **key},
        {"clip": str(clips / "paste.mp4"), "clip_id": "dub9-paste", "mitigation": "paste", **key},
    ]
    return _cached_run(base, "adversarial", rows, f"sampling.end={SECONDS:g}", "metrics.horizons=[5,10,20]")


def anitalker_rows() -> list[dict[str, str]]:
    """Real AniTalker pairs from ../shared (same inputs through two variants) plus the clean negative."""
    if not HAVE_SHARED:
        return synthetic_pair_rows()
    g = GENERATED
    return [
        {
            "clip": str(g / "anitalker_monalisa_hubert.mp4"),
            "clip_id": "monalisa",
            "reference": str(g / "anitalker_monalisa_hubert.jpg"),
            "character": "monalisa",
            "prompt_id": "monalisa",
            "seed": "0",
            "model": "anitalker",
            "mitigation": "none",
        },
        {
            "clip": str(g / "anitalker_monalisa_mfcc.mp4"),
            "clip_id": "monalisa-mfcc",
            "reference": str(g / "anitalker_monalisa_mfcc.jpg"),
            "character": "monalisa",
            "prompt_id": "monalisa",
            "seed": "0",
            "model": "anitalker",
            "mitigation": "mfcc",
        },
        {
            "clip": str(g / "anitalker_aiface2_intro.mp4"),
            "clip_id": "aiface2",
            "reference": str(g / "anitalker_aiface2_intro.png"),
            "character": "aiface2",
            "prompt_id": "intro",
            "seed": "0",
            "model": "anitalker",
            "mitigation": "none",
        },
        {
            "clip": str(g / "anitalker_aiface2_intro_sr.mp4"),
            "clip_id": "aiface2-sr",
            "reference": str(g / "anitalker_aiface2_intro_sr.png"),
            "character": "aiface2",
            "prompt_id": "intro",
            "seed": "0",
            "model": "anitalker",
            "mitigation": "sr",
        },
        {
            "clip": str(g / "negative_aiface3clip_aiface4ref.mp4"),
            "clip_id": "negative",
            "reference": str(g / "negative_aiface3clip_aiface4ref.png"),
            "character": "aiface4",
            "prompt_id": "negative",
            "seed": "0",
            "model": "anitalker",
            "mitigation": "none",
        },
    ]


def synthetic_pair_rows() -> list[dict[str, str]]:
    """The stand-in for :func:`anitalker_rows` on embedded synthetic clips, under the same clip ids: two
    people each with a faithful variant (re-encoded; lightly blurred), and a negative (one person's clip
    against the other's portrait)."""
    base = synthetic_derived_dir()
    clips = synthetic_pairs()
    (a, a_ref), (b, b_ref) = (
        clips["synthetic/astronaut/t1_face0/none"],
        clips["synthetic/t1_face0/t1_face5/none"],
    )
    # named after the source clips' cache keys: a re-rendered source gets new variants
    a_var, b_var = base / f"{a.stem}-reencoded.mp4", base / f"{b.stem}-blurred.mp4"
    if not a_var.is_file():
        frames, fps = read_frames(a, 60.0)
        write_clip(a_var, frames, fps)
    if not b_var.is_file():
        frames, fps = read_frames(b, 60.0)
        write_clip(b_var, blurred(frames, 1.0), fps)
    m = {"seed": "0", "model": PAIRS_MODEL}
    return [
        {
            "clip": str(a),
            "clip_id": "monalisa",
            "reference": str(a_ref),
            "character": "astronaut",
            "prompt_id": "monalisa",
            "mitigation": "none",
            **m,
        },
        {
            "clip": str(a_var),
            "clip_id": "monalisa-mfcc",
            "reference": str(a_ref),
            "character": "astronaut",
            "prompt_id": "monalisa",
            "mitigation": "mfcc",
            **m,
        },
        {
            "clip": str(b),
            "clip_id": "aiface2",
            "reference": str(b_ref),
            "character": "t1_face0",
            "prompt_id": "intro",
            "mitigation": "none",
            **m,
        },
        {
            "clip": str(b_var),
            "clip_id": "aiface2-sr",
            "reference": str(b_ref),
            "character": "t1_face0",
            "prompt_id": "intro",
            "mitigation": "sr",
            **m,
        },
        {
            "clip": str(a),
            "clip_id": "negative",
            "reference": str(b_ref),
            "character": "t1_face0",
            "prompt_id": "negative",
            "mitigation": "none",
            **m,
        },
    ]


def synthetic_derived_dir() -> Path:
    from driftbench.measure.cache import signals_dir

    d = signals_dir().parent / "clips" / "test-derived"
    d.mkdir(parents=True, exist_ok=True)
    return d


def anitalker_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _cached_run(session_dir(tmp_path_factory), "anitalker", anitalker_rows())


def degraded_run(tmp_path_factory: pytest.TempPathFactory, sigma: float = 2.5) -> Path:
    """The Mona Lisa clip of :func:`anitalker_run` rendered blurred, under the same clip id."""
    base = session_dir(tmp_path_factory)
    dst = base / "degraded-clips" / "monalisa_blur.mp4"
    if not dst.is_file():
        frames, fps = read_frames(Path(anitalker_rows()[0]["clip"]), 60.0)
        write_clip(dst, blurred(frames, sigma), fps)
    row = {**anitalker_rows()[0], "clip": str(dst)}
    return _cached_run(base, "degraded", [row])


def dropout_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 8 s of infinitetalk_dub_9 and the same clip with the face gone half the time."""
    base = session_dir(tmp_path_factory)
    dst = base / "dropout-clips" / "dropout.mp4"
    if not dst.is_file():
        frames, fps = read_frames(drifting_clip(), 8.0)
        write_clip(dst, dropouts(frames, fps), fps)
    key = {"character": "infinitetalk_dub_9", "prompt_id": "dub_9", "seed": "0", "model": ADV_MODEL,
           "reference": "first_frame"}
    rows = [{"clip": str(drifting_clip()), "clip_id": "dub9-none", "mitigation": "none", **key},
            {"clip": str(dst), "clip_id": "dub9-dropout", "mitigation": "dropout", **key}]
    return _cached_run(base, "dropout", rows, "sampling.end=8", "metrics.horizons=[4,8]")


def copy_run(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("parts", "work"))
    return dst
