"""Kill a real ``python -m driftbench run`` at any moment and rerun the same command: it resumes
and writes the same tables, byte for byte, as a run that was never interrupted.

The run measures 8 short real clips (4-7 s each, 2 frames/s); each interrupted run is killed as
soon as its first clip's part is saved, i.e. mid-run, with clips queued and in flight.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from tests.conftest import VIDEO, needs_shared
from tests.data import media
from tests.data.runs import (
    ROOT,
    command,
    meaningful_lines,
    only_run_dir,
    run_inprocess,
    run_subprocess,
    subprocess_env,
)

pytestmark = needs_shared

CLIPS = ["pcavs_input_00010", "pcavs_pose_620900105", "pcavs_pose_517600055", "pcavs_pose_731200067",
         "pcavs_audio_00373", "pcavs_audio_00086", "pcavs_input_00002", "pcavs_pose_00473"]
TABLES = ("clips.csv", "curves.csv", "skipped.csv")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("resume")
    rows = [{"clip": str(VIDEO / "real" / f"{c}.mp4"), "reference": "first_frame"} for c in CLIPS]
    pd.DataFrame(rows).to_csv(d / "manifest.csv", index=False)
    return d / "manifest.csv"


def overrides(manifest: Path, root: Path, workers: int = 1) -> list[str]:
    return ["model=folder", f"model.path={manifest}", "sampling.fps=2", f"output.root={root}",
            f"executor.workers={workers}"]


@pytest.fixture(scope="module")
def reference_run(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run every resumed run is compared with (fresh cache)."""
    base = tmp_path_factory.mktemp("reference")
    p = run_subprocess(*overrides(dataset, base / "runs"), cache=base / "cache")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return only_run_dir(base / "runs")


def assert_same_tables(a: Path, b: Path) -> None:
    for name in TABLES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs between {a} and {b}"
    pd.testing.assert_frame_equal(
        pd.read_parquet(a / "frames.parquet"), pd.read_parquet(b / "frames.parquet")
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(a / "thumbs.parquet"), pd.read_parquet(b / "thumbs.parquet")
    )


def _parts(root: Path) -> list[Path]:
    return sorted(root.glob("*/parts/*.json"))


def start_and_kill(args: list[str], root: Path, cache: Path, sig: signal.Signals
                   ) -> tuple[subprocess.CompletedProcess[str], list[int]]:
    """Start the run, send ``sig`` once the first clip is saved; returns the finished process and the
    pids of its children (pool workers) at the moment of the signal."""
    p = subprocess.Popen(command(*args), cwd=ROOT, env=subprocess_env(cache), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while not _parts(root) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert p.poll() is None, "the run ended before it could be interrupted"
    children = [c.pid for c in psutil.Process(p.pid).children(recursive=True)]
    if sig == signal.SIGINT:
        os.killpg(p.pid, sig)  # Ctrl-C in a terminal reaches the whole process group, workers included
    else:
        p.send_signal(sig)  # SIGKILL (OOM killer, scheduler) hits the parent alone
    out, err = p.communicate(timeout=120)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err), children


def assert_gone(pids: list[int], within_s: float = 15.0) -> None:
    deadline = time.monotonic() + within_s
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if psutil.pid_exists(pid) and
                 psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.2)
    assert not alive, f"worker processes {alive} outlived their killed parent"


def assert_resumes_to_reference(args: list[str], root: Path, cache: Path, reference: Path) -> None:
    saved_before = {p.name for p in _parts(root)}
    for p in _parts(root):  # every part left behind is complete JSON (atomic writes, JSON last)
        json.loads(p.read_text(encoding="utf-8"))
    p = run_subprocess(*args, cache=cache)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    run_dir = only_run_dir(root)
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["resumed_clips"] == len(saved_before) >= 1
    assert_same_tables(reference, run_dir)


@pytest.mark.parametrize("sig,workers", [
    (signal.SIGKILL, 1),
    (signal.SIGINT, 2),
    pytest.param(signal.SIGINT, 1, marks=pytest.mark.slow),
    pytest.param(signal.SIGKILL, 2, marks=pytest.mark.slow),
], ids=["sigkill-sequential", "sigint-pool2", "sigint-sequential", "sigkill-pool2"])
def test_killed_run_resumes_to_the_same_tables(sig, workers, dataset, reference_run, tmp_path) -> None:
    root, cache = tmp_path / "runs", tmp_path / "cache"
    args = overrides(dataset, root, workers)
    done, children = start_and_kill(args, root, cache, sig)
    if sig == signal.SIGKILL:
        assert done.returncode == -signal.SIGKILL
    else:
        output = meaningful_lines(done.stdout + done.stderr)
        assert done.returncode == 130, "\n".join(output[-20:])
        notes = [ln for ln in output if "interrupted" in ln]
        assert len(notes) == 1 and "rerun the same command to resume" in notes[0], output
        assert not any("Traceback" in ln for ln in output), "\n".join(output)
        # Ctrl-C stops the run: no queued clip is measured after it. The signal cache shows what was
        # computed: at most the saved clips plus those in flight (an executor that drains its queue
        # on shutdown computes every remaining clip and throws the results away)
        computed = len(list(cache.glob("??/*.parquet")))  # sampled-signal entries (not published/)
        assert computed <= len(_parts(root)) + workers, (
            f"{computed} clips computed, {len(_parts(root))} saved"
        )
    if workers > 1:
        assert children, "the pool had no worker processes"
        assert_gone(children)
    assert len(_parts(root)) < len(CLIPS)
    assert_resumes_to_reference(args, root, cache, reference_run)


def test_same_inputs_give_byte_identical_tables(dataset, reference_run, tmp_path) -> None:
    """A second, independent run (other output folder, other cold cache, in-process instead of a
    subprocess) writes the same bytes: seeded statistics, sorted rows, rounded floats, no times."""
    code = run_inprocess(*overrides(dataset, tmp_path / "runs"), f"cache.dir={tmp_path / 'cache'}")
    assert code == 0
    run_dir = only_run_dir(tmp_path / "runs")
    assert run_dir.name == reference_run.name, "the run folder is named by the config hash"
    assert_same_tables(reference_run, run_dir)
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert "timing_s" in run  # wall times live in run.json only


# -- no partial file is ever read as complete ------------------------------------------------------
def test_atomic_write_leaves_old_content_or_nothing(tmp_path) -> None:
    from driftbench.io import atomic_path, write_text

    target = tmp_path / "table.csv"
    write_text(target, "old\n")
    for exc in (RuntimeError("disk full"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), atomic_path(target) as tmp:
            tmp.write_text("half a ta")
            raise exc
        assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"], "no temp file left behind"


def test_damaged_cache_entry_is_recomputed(reference_run, tmp_path) -> None:
    """A truncated or garbled signal-cache entry (e.g. a disk filled up elsewhere) is never trusted."""
    from driftbench.measure.cache import SignalCache

    src = next((reference_run / "parts").glob("*.frames.parquet"))
    cache = SignalCache(tmp_path)
    df = pd.read_parquet(src)
    cache.put("ab" * 32, df)
    path = cache.path_for("ab" * 32)
    assert cache.get("ab" * 32) is not None
    data = path.read_bytes()
    for broken in (data[: len(data) // 2], b"", data[:-8] + b"\0" * 8):
        path.write_bytes(broken)
        assert cache.get("ab" * 32) is None
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]


def test_unfinished_part_is_measured_again(reference_run, tmp_path) -> None:
    """A part whose JSON (written last) is missing, torn, from another config or for another clip is
    not done: the clip is measured again instead of being read as complete."""
    from driftbench.runner import PartStore
    from driftbench.sources.base import Clip

    run = json.loads((reference_run / "run.json").read_text(encoding="utf-8"))
    parts = PartStore(tmp_path, run["config_hash"])
    meta_src = next((reference_run / "parts").glob("*.json"))
    meta = json.loads(meta_src.read_text(encoding="utf-8"))
    clip = Clip(meta["clip_id"], meta["clip"]["path"], meta["clip"]["character"])
    for suffix in (".frames.parquet", ".curve.parquet", ".thumbs.parquet", ".json"):
        src = meta_src.with_name(meta_src.name.removesuffix(".json") + suffix)
        shutil.copy(src, parts._base(clip).with_suffix(suffix))
    assert parts.done(clip)
    js = parts._base(clip).with_suffix(".json")
    good = js.read_text(encoding="utf-8")
    js.write_text(good[: len(good) // 2], encoding="utf-8")
    assert not parts.done(clip)
    js.write_text(good.replace(run["config_hash"], "0" * 10), encoding="utf-8")
    assert not parts.done(clip)
    js.write_text(good, encoding="utf-8")
    parts._base(clip).with_suffix(".curve.parquet").unlink()
    assert not parts.done(clip)
    other = Clip(clip.clip_id + ".2", clip.path, clip.character)
    assert not parts.done(other)


def test_part_of_a_changed_clip_is_measured_again(tmp_path) -> None:
    """A clip measured while still downloading (truncated) and completed before the rerun: resume
    must not keep the truncated result. Same for a clip or reference replaced by other bytes."""
    from driftbench.measure.clip import ClipResult
    from driftbench.runner import PartStore
    from driftbench.sources.base import Clip

    clip_path = tmp_path / "clip.mp4"
    media.truncate(VIDEO / "real" / f"{CLIPS[0]}.mp4", clip_path, 0.5)
    ref = tmp_path / "ref.jpg"
    ref.write_bytes(b"jpeg")
    clip = Clip("c", str(clip_path), "c", references=(str(ref),))
    parts = PartStore(tmp_path / "run", "cfg")
    empty = pd.DataFrame({"t": [0.0]})
    parts.save(ClipResult(clip, "ok", frames=empty, curve=empty, thumbs=empty))
    assert parts.done(clip)
    shutil.copy(VIDEO / "real" / f"{CLIPS[0]}.mp4", clip_path)  # the download completed
    assert not parts.done(clip)
    parts.save(ClipResult(clip, "ok", frames=empty, curve=empty, thumbs=empty))
    assert parts.done(clip)
    ref.write_bytes(b"another photo")
    assert not parts.done(clip)
