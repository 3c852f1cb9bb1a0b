"""One run: clips from a source -> (mitigation) -> measured in parallel -> tables -> report.

A run directory holds (tables are the source of truth; reports and gates read only these):
  frames.parquet   per-sample table of every clip (similarities, signals, smoothed scores)
  thumbs.parquet   the character's aligned face per sample (JPEG bytes) for filmstrips
  curves.csv       identity over time, 1 s bins
  clips.csv        per-clip metrics (one row per measured clip)
  skipped.csv      what was not measured, why, and the fix
  run.json         config, versions, weights hashes, engine, threshold provenance, git commit, timings
  report.html      self-contained report
  parts/           per-clip results, written as each clip finishes (resume after an interruption)

Each clip's part is written atomically, JSON last, so a killed run resumes where it stopped and a
partial file is never read as complete.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from driftbench import __version__
from driftbench.errors import DriftbenchError, ExitCode, RunDirBusy, Terminated, UsageError
from driftbench.faces.base import preflight
from driftbench.io import write_csv, write_json, write_parquet
from driftbench.measure.clip import ClipResult, settings_from_config
from driftbench.measure.preload import MEASURE_MODULES, Preload, report_modules
from driftbench.measure.preload import pandas as pd
from driftbench.sources.base import Clip, Skipped, SourceContext

log = logging.getLogger("driftbench")

#: the lock file of a run directory (held while a run writes there) and the record of its holder
LOCK_FILE, HOLDER_FILE = ".driftbench.lock", ".driftbench.lock.json"
CLIP_KEYS = ("clip_id", "model", "mitigation", "character", "prompt_id", "seed", "path", "reference_mode")


def config_hash(cfg_container: dict[Any, Any]) -> str:
    """Hash of the measurement-relevant config (output/progress/executor/cache settings excluded: the same
    measurement resumes in the same run directory wherever its cache lives)."""
    relevant = {k: v for k, v in cfg_container.items()
                if k not in {"output", "progress", "executor", "report", "gate", "cache"}}
    if not (relevant.get("agreement") or {}).get("backends"):
        relevant.pop("agreement", None)  # no extra backend: the hash (and run folder) of a one-backend run
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:10]


def default_run_name(cfg_container: dict[Any, Any]) -> str:
    from driftbench.sources.base import safe_key

    model = str(cfg_container.get("model", {}).get("name", "model"))
    mit = str(cfg_container.get("mitigation", {}).get("name", "none"))
    model_part, mit_part = safe_key(model, 20).rsplit("-", 1)[0], safe_key(mit, 20).rsplit("-", 1)[0]
    return f"{model_part}-{mit_part}-{config_hash(cfg_container)}"


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    # every onnxruntime build (engines.ort_version reads the first one installed) and the torch engine's
    # converter: a package that is not installed is left out
    for pkg in ("driftbench", "numpy", "pandas", "pyarrow", "opencv-contrib-python", "onnxruntime",
                "onnxruntime-gpu", "onnx", "onnx2fx", "mediapipe", "av", "torch", "scipy", "scikit-learn",
                "hydra-core", "matplotlib"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        r = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                           timeout=5, check=False)
        if r.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5, check=False).stdout.strip()
            return r.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def _check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"{run_dir}: output directory is not writable ({exc.strerror}) -- fix: choose another with "
            "output.dir=PATH or output.root=PATH"
        ) from None


_HELD: dict[str, Any] = {}  # run directories whose lock this process holds -> [lock, depth]


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock for a run (or a sweep job): a second writer gets :class:`RunDirBusy`
    (exit 2) naming the holder (pid, host, command, start time) instead of mixing its results with
    the first one's. The lock is an OS file lock (``filelock``): a killed holder releases it, and a
    stale lock file is never mistaken for a live run. Re-entrant within one process."""
    from filelock import FileLock, Timeout

    run_dir.mkdir(parents=True, exist_ok=True)
    key = str(run_dir.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    lock = FileLock(str(run_dir / LOCK_FILE), timeout=0)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunDirBusy(
            f"{run_dir}: another driftbench run is writing to this directory ({_holder(run_dir)}) "
            "-- fix: wait for it to finish (then rerun to resume), or choose another output.dir"
        ) from None
    _HELD[key] = [lock, 1]
    try:
        from driftbench.io import write_json

        write_json(run_dir / HOLDER_FILE, {"pid": os.getpid(), "host": socket.gethostname(),
                                          "command": " ".join(["driftbench", *sys.argv[1:]]),
                                          "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        yield
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            (run_dir / HOLDER_FILE).unlink()
        lock.release()


def _holder(run_dir: Path) -> str:
    try:
        h = json.loads((run_dir / HOLDER_FILE).read_text(encoding="utf-8"))
        return (f"pid {h.get('pid')} on {h.get('host')}, started {h.get('started')}: "
                f"{str(h.get('command'))[:200]}")
    except (OSError, ValueError, AttributeError):
        return "holder unknown"


def discard_refused_run(run_dir: Path) -> bool:
    """Remove the directory of a run refused (exit 2) before any clip was measured, when it holds only
    what this run wrote there (.hydra/, driftbench.log, status.json, the lock): a refused command leaves
    no run directory behind. Returns whether it was removed."""
    import shutil

    ours = {".hydra", "driftbench.log", "status.json", "work", LOCK_FILE, HOLDER_FILE}
    try:
        if (
            not run_dir.is_dir()
            or (run_dir / "parts").exists()
            or not {p.name for p in run_dir.iterdir()} <= ours
        ):
            return False
        shutil.rmtree(run_dir)
    except OSError:
        return False
    return True


class DamagedParts(Exception):
    """Parts on disk that cannot be read back (a truncated Parquet file, ...): measured again."""

    def __init__(self, clips: list[Clip], details: list[str]) -> None:
        super().__init__("; ".join(details))
        self.clips = clips
        self.details = details


class PartStore:
    """Per-clip results in ``run_dir/parts``: written as each clip finishes, read back to resume."""

    def __init__(self, run_dir: Path, cfg_hash: str) -> None:
        self.dir = run_dir / "parts"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cfg_hash = cfg_hash

    def _base(self, clip: Clip) -> Path:
        # ".clip" is the placeholder that every ``with_suffix`` below replaces: without it, with_suffix
        # would cut the key's hash off after its last dot, and clips "a.mp4" and "a.mov" (or "take.1"
        # and "take.2") would share one set of part files, one clip's result standing for both
        return self.dir / f"{clip.file_key()}.clip"

    def done(self, clip: Clip) -> bool:
        meta = self._base(clip).with_suffix(".json")
        if not meta.is_file():
            return False
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return False
        if data.get("config_hash") != self.cfg_hash or data.get("clip_id") != clip.clip_id:
            return False
        if data.get("status") != "ok":
            return False  # skipped/failed clips are retried on the next run (the input may be fixed)
        if data.get("inputs") != input_stats(clip):
            return False  # the clip or a reference changed since (re-downloaded, fixed): measure again
        problem = self.damage(clip)
        if problem:
            log.warning("%s: %s -- measuring the clip again", clip.path, problem)
            return False
        return True

    def damage(self, clip: Clip) -> str | None:
        """Why the parquet files of an ok part cannot be used (missing, truncated), or None. Reads only
        each file's footer (cheap); a part damaged deeper is caught when it is loaded (:func:`assemble`)."""
        import pyarrow.parquet as pq

        for suffix in (".frames.parquet", ".curve.parquet", ".thumbs.parquet"):
            path = self._base(clip).with_suffix(suffix)
            try:
                pq.read_metadata(path)
            except FileNotFoundError:
                return f"part file {path.name} is missing"
            except Exception as exc:
                return (
                    f"part file {path} is damaged ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
                )
        return None

    def discard(self, clip: Clip) -> None:
        """Forget a part (its JSON first: without it the clip counts as not measured)."""
        base = self._base(clip)
        for suffix in (".json", ".frames.parquet", ".curve.parquet", ".thumbs.parquet", ".ref.jpg"):
            with contextlib.suppress(OSError):
                base.with_suffix(suffix).unlink()

    def save(self, res: ClipResult) -> None:
        base = self._base(res.clip)
        if res.status == "ok":
            assert res.frames is not None and res.curve is not None and res.thumbs is not None
            write_parquet(base.with_suffix(".frames.parquet"), res.frames)
            write_parquet(base.with_suffix(".curve.parquet"), res.curve)
            write_parquet(base.with_suffix(".thumbs.parquet"), res.thumbs)
        ref = {k: v for k, v in res.reference.items() if k != "thumb"}
        if res.reference.get("thumb"):
            from driftbench.io import write_bytes

            write_bytes(base.with_suffix(".ref.jpg"), res.reference["thumb"])
        from driftbench.errors import scrub

        meta = {
            "config_hash": self.cfg_hash,
            "clip_id": res.clip.clip_id,
            "status": res.status,
            "reason": res.reason,
            "message": scrub(res.message),
            "warnings": [scrub(w) for w in res.warnings],
            "summary": res.summary,
            "reference": ref,
            "signals_key": res.signals_key,
            "cache_hit": res.cache_hit,
            "seconds": res.seconds,
            "clip": clip_record(res.clip),
            "inputs": input_stats(res.clip),
        }
        write_json(base.with_suffix(".json"), meta)

    def load(self, clip: Clip) -> dict[str, Any]:
        base = self._base(clip)
        meta = json.loads(base.with_suffix(".json").read_text(encoding="utf-8"))
        if meta["status"] == "ok":
            meta["frames"] = pd.read_parquet(base.with_suffix(".frames.parquet"))
            meta["curve"] = pd.read_parquet(base.with_suffix(".curve.parquet"))
            meta["thumbs"] = pd.read_parquet(base.with_suffix(".thumbs.parquet"))
        ref_jpg = base.with_suffix(".ref.jpg")
        meta["reference_thumb"] = ref_jpg.read_bytes() if ref_jpg.is_file() else None
        return meta


def input_stats(clip: Clip) -> list[list[int] | None]:
    """(size, mtime) of the clip and its references. A part measured from other bytes must not be
    resumed: a clip still downloading when the run started is measured truncated, and after the
    download completes a rerun would otherwise keep the truncated result."""
    import os

    out: list[list[int] | None] = []
    for p in (clip.path, *clip.references):
        try:
            st = os.stat(p)
            out.append([st.st_size, st.st_mtime_ns])
        except (OSError, ValueError):
            out.append(None)
    return out


def clip_record(clip: Clip) -> dict[str, Any]:
    return {"clip_id": clip.clip_id, "path": clip.path, "character": clip.character,
            "references": list(clip.references), "prompt_id": clip.prompt_id, "seed": clip.seed,
            "model": clip.model, "mitigation": clip.mitigation, "meta": dict(clip.meta)}


def assemble(run_dir: Path, clips: list[Clip], parts: PartStore, skipped: list[Skipped], *,
             remeasure: bool = False) -> dict[str, Any]:
    """Write the run's tables from the parts of ``clips`` measured with this run's configuration;
    returns counts (cache hits among them). A part that cannot be read raises :class:`DamagedParts`
    before anything is written when ``remeasure`` (the caller measures those clips again), else
    becomes a not_run row."""
    rows, frames, curves, thumbs, skip_rows = [], [], [], [], []
    cache_hits = 0
    for s in skipped:
        skip_rows.append(
            {"clip_id": "", "item": s.item, "stage": s.stage, "reason": s.reason, "message": s.message}
        )
    damaged: list[Clip] = []
    details: list[str] = []
    for clip in sorted(clips, key=lambda c: c.clip_id):
        if not parts._base(clip).with_suffix(".json").is_file():
            skip_rows.append(
                {
                    "clip_id": clip.clip_id,
                    "item": clip.path,
                    "stage": "measure",
                    "reason": "not_run",
                    "message": f"{clip.path}: not measured (run interrupted) -- fix: rerun the same "
                    "command to resume",
                }
            )
            continue
        try:
            part = parts.load(clip)
            if part.get("config_hash") != parts.cfg_hash:
                # never mix: a part measured with other settings (another run into this directory)
                skip_rows.append(
                    {
                        "clip_id": clip.clip_id,
                        "item": clip.path,
                        "stage": "measure",
                        "reason": "not_run",
                        "message": f"{clip.path}: its stored result was measured "
                        "with another configuration -- fix: rerun the same command to measure it again",
                    }
                )
                continue
        except Exception as exc:
            if remeasure:
                damaged.append(clip)
                details.append(f"{clip.path}: stored part unreadable ({type(exc).__name__}: "
                               f"{' '.join(str(exc).split())[:120]})")
                continue
            skip_rows.append(
                {
                    "clip_id": clip.clip_id,
                    "item": clip.path,
                    "stage": "measure",
                    "reason": "not_run",
                    "message": f"{clip.path}: its stored result is damaged ({type(exc).__name__}) -- fix: "
                    "rerun the same command to measure it again",
                }
            )
            continue
        if part["status"] != "ok":
            skip_rows.append({"clip_id": clip.clip_id, "item": clip.path, "stage": "measure",
                              "reason": part["reason"], "message": part["message"]})
            continue
        rec = clip_record(clip)
        row = {k: rec[k] for k in CLIP_KEYS if k in rec}
        row["reference_mode"] = part["summary"].get("reference_mode")
        # the references used: the clip's images (each one face, all averaged), or its own opening
        row["n_references"] = len(clip.references) if row["reference_mode"] == "images" else 1
        row.update({k: v for k, v in part["summary"].items() if k not in row})
        row["signals_key"] = part["signals_key"]
        row["warnings"] = " | ".join(part.get("warnings") or [])
        row["meta"] = json.dumps(dict(clip.meta), sort_keys=True, ensure_ascii=False, default=str)
        rows.append(row)
        cache_hits += bool(part.get("cache_hit"))
        frames.append(part["frames"].assign(clip_id=clip.clip_id))
        curves.append(part["curve"].assign(clip_id=clip.clip_id))
        thumbs.append(part["thumbs"].assign(clip_id=clip.clip_id))
        if part.get("reference_thumb"):
            thumbs.append(
                pd.DataFrame(
                    {
                        "sample_index": [-1],
                        "t": [np.nan],
                        "thumb": [part["reference_thumb"]],
                        "clip_id": [clip.clip_id],
                    }
                )
            )
    if damaged:
        raise DamagedParts(damaged, details)
    clips_df = pd.DataFrame(rows)
    if not clips_df.empty:
        lead = [c for c in CLIP_KEYS if c in clips_df]
        clips_df = clips_df[lead + [c for c in clips_df.columns if c not in lead]]
    write_csv(run_dir / "clips.csv", clips_df, sort_by=["clip_id"] if not clips_df.empty else None)
    skip_df = pd.DataFrame(skip_rows, columns=["clip_id", "item", "stage", "reason", "message"])
    write_csv(run_dir / "skipped.csv", skip_df, sort_by=["stage", "clip_id", "item"])
    if frames:
        fr = pd.concat(frames, ignore_index=True)
        fr = fr[["clip_id"] + [c for c in fr.columns if c != "clip_id"]]
        write_parquet(
            run_dir / "frames.parquet", fr.sort_values(["clip_id", "sample_index"], kind="mergesort")
        )
        cv = pd.concat(curves, ignore_index=True)
        cv = cv[["clip_id"] + [c for c in cv.columns if c != "clip_id"]]
        write_csv(run_dir / "curves.csv", cv, sort_by=["clip_id", "t_start"])
        th = pd.concat(thumbs, ignore_index=True)
        write_parquet(run_dir / "thumbs.parquet", th[["clip_id", "sample_index", "t", "thumb"]]
                      .sort_values(["clip_id", "sample_index"], kind="mergesort"))
    else:
        for name in ("frames.parquet", "thumbs.parquet"):
            (run_dir / name).unlink(missing_ok=True)
        write_csv(run_dir / "curves.csv", pd.DataFrame(columns=["clip_id", "t_start"]))
    return {
        "clips": len(clips),
        "ok": len(rows),
        "not_measured": sum(1 for r in skip_rows if r["stage"] != "source"),
        "source_skipped": len(skipped),
        "cache_hits": cache_hits,
    }


def execute_run(cfg: Any, run_dir: Path) -> int:
    """Run the whole pipeline for one composed config; returns the exit code (0 / 1)."""
    from omegaconf import OmegaConf

    from driftbench.config import validate_config

    t_start = time.perf_counter()
    validate_config(cfg)
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    cfg_hash = config_hash(container)
    _check_writable(run_dir)
    with run_lock(run_dir), _sigterm_as_interrupt(), _terminal_logging():
        handler = _LogFile(run_dir / "driftbench.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        try:
            return _execute(cfg, run_dir, container, cfg_hash, t_start)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                where = exc.filename or run_dir
                raise DriftbenchError(
                    f"{where}: no space left on the device (disk full) -- fix: free space on the disk "
                    f"holding {run_dir} (or choose output.dir on another disk), then rerun the same "
                    "command to resume; the clips measured so far are kept"
                ) from None
            raise
        finally:
            log.removeHandler(handler)
            handler.close()


@contextlib.contextmanager
def _terminal_logging() -> Iterator[None]:
    """The run's messages reach the terminal and driftbench.log whatever logging config is active: a Hydra
    sweep (``hydra/hydra_logging=disabled``) disables every existing logger, this one included, sets the
    root level to ERROR and removes the root's handlers, after which a sweep job logged nothing at all."""
    was_disabled, level = log.disabled, log.level
    log.disabled = False
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    added = None
    if not logging.getLogger().handlers and not any(
        isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in log.handlers
    ):
        added = logging.StreamHandler(sys.stderr)
        added.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        log.addHandler(added)
    try:
        yield
    finally:
        if added is not None:
            log.removeHandler(added)
        log.setLevel(level)
        log.disabled = was_disabled


class _LogFile(logging.FileHandler):
    """driftbench.log; a record that cannot be written (full disk) is dropped quietly: the terminal
    still shows it, and the run's own error message says what happened."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler's stop, ``kill``) raises :class:`Terminated` in the main thread: the run stops
    like after Ctrl-C (results kept, status.json written, resumable) and exits 143 with a message."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _execute(cfg: Any, run_dir: Path, container: dict[Any, Any], cfg_hash: str, t_start: float) -> int:
    from driftbench.measure.cache import signals_dir
    from driftbench.measure.executors import execute
    from driftbench.sources.base import create_source
    from driftbench.validity import calibration

    score = "dec" if cfg.metrics.loss_score == "decoupled" else "raw"
    # optional packages checked before any work (exit 2); the threshold is the backend model's own
    key = preflight(str(cfg.face.backend), dict(cfg.face.options), download=bool(cfg.fetch))
    threshold, prov = calibration.threshold_for(key, far=float(cfg.metrics.far), score=score)
    progress = bool(cfg.progress) and sys.stderr.isatty()
    settings = settings_from_config(cfg, threshold, progress=progress)
    extras = _agreement_prepare(cfg, settings, score)
    cache_root = Path(cfg.cache.dir).expanduser() if cfg.cache.dir else signals_dir()
    ctx = SourceContext(work_dir=run_dir / "work", cache_dir=cache_root.parent / "clips",
                        mitigation=cfg.mitigation, seed=int(cfg.seed), progress=progress,
                        options={"device": str(cfg.device), "fetch": bool(cfg.fetch),
                                 "sampling": dict(vars(settings.sampling))})
    t0 = time.perf_counter()
    source = create_source(cfg.model, ctx)
    clips = source.clips()
    skipped = list(source.skipped)
    stage = mitigation_stage(cfg.mitigation, source)
    if stage == "post":
        from driftbench.mitigations import apply_post

        clips, mit_skipped = apply_post(clips, cfg.mitigation, settings, cache_root.parent / "mitigated")
        skipped.extend(mit_skipped)
    t_source = time.perf_counter() - t0
    for s in skipped:
        log.warning("skipped %s", s.message)
    parts = PartStore(run_dir, cfg_hash)
    todo = [c for c in clips if not parts.done(c)]
    resumed = len(clips) - len(todo)
    if resumed:
        log.info("resuming: %d of %d clips already measured in %s", resumed, len(clips), run_dir)
    env: dict[str, Any] = {}
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="clips", unit="clip")

    def on_result(res: ClipResult) -> None:
        parts.save(res)
        if res.env and not env:
            env.update(res.env)
        if res.status != "ok":
            log.warning("%s %s", res.status, res.message)
        for w in res.warnings:
            log.warning("%s", w)
        if bar is not None:
            bar.update(1)

    t0 = time.perf_counter()
    # pandas (first needed once a clip's frames are analysed) and the report's imports overlap with
    # measuring, which imports none of the report's (tests/test_cli.py checks); clips measured here: once
    # the measurement's own imports are done (they would compete for the GIL)
    from driftbench.measure.executors import in_process

    gated = in_process(str(cfg.executor.name), len(todo), int(cfg.executor.workers))
    wanted = (*MEASURE_MODULES,
              *(report_modules(len(clips), str(cfg.report.charts)) if cfg.report.html else ()))
    preload = Preload(wanted, gated=gated) if todo else None
    try:
        execute(str(cfg.executor.name), todo, settings, workers=int(cfg.executor.workers),
                address=cfg.executor.address, on_result=on_result)
    finally:
        if bar is not None:
            bar.close()
        if preload is not None:
            preload.wait()
    t_measure = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        counts = assemble(run_dir, clips, parts, skipped, remeasure=True)
    except DamagedParts as exc:  # unreadable parts are measured again, never an error on every rerun
        for detail in exc.details:
            log.warning("%s -- measuring the clip again", detail)
        for clip in exc.clips:
            parts.discard(clip)
        execute(str(cfg.executor.name), exc.clips, settings, workers=int(cfg.executor.workers),
                address=cfg.executor.address, on_result=on_result)
        counts = assemble(run_dir, clips, parts, skipped)
    cache_hits = counts.pop("cache_hits")
    agreement = _agreement_run(cfg, run_dir, clips, cfg_hash, settings, key, extras) if extras else None
    run_meta = {
        "driftbench": __version__,
        "command": "run",
        "argv": sys.argv[1:],
        "config": container,
        "config_hash": cfg_hash,
        "versions": versions(),
        "git_commit": git_commit(),
        "threshold": {"value": threshold, **prov},
        "counts": counts,
        "cache_hits": cache_hits,
        "resumed_clips": resumed,
        "mitigation": {"name": str(cfg.mitigation.name), "stage": stage},
        **_backend_env(settings, env, key),
        **({"agreement": agreement} if agreement is not None else {}),
    }
    t_tables = time.perf_counter() - t0
    if cfg.report.html:
        t0 = time.perf_counter()
        from driftbench.report import render_run

        write_json(run_dir / "run.json", run_meta)
        render_run(run_dir, title=str(cfg.report.title), filmstrip_frames=int(cfg.report.filmstrip_frames),
                   worst_frames=int(cfg.report.worst_frames), charts=str(cfg.report.charts))
        run_meta["timing_report_s"] = time.perf_counter() - t0
    run_meta["timing_s"] = {"source": t_source, "measure": t_measure, "tables": t_tables,
                            "total": time.perf_counter() - t_start}
    write_json(run_dir / "run.json", run_meta)
    write_json(run_dir / "status.json", {"exit_code": _exit_code(counts)})
    return _exit_code(counts)


def _agreement_prepare(cfg: Any, settings: Any, score: str) -> list[Any]:
    """The extra backends of ``agreement.backends`` (checked before any work), or []."""
    agreement = cfg.get("agreement") if hasattr(cfg, "get") else None
    if not agreement or not agreement.get("backends"):
        return []
    from driftbench import agreement as agree

    return agree.prepare(cfg, settings, score)


def _agreement_run(cfg: Any, run_dir: Path, clips: list[Clip], cfg_hash: str, settings: Any, key: str,
                   extras: list[Any]) -> dict[str, Any]:
    """Measure the clips with the extra backends and write agreement_clips.csv / agreement.csv."""
    from driftbench import agreement as agree
    from driftbench.io import read_csv
    from driftbench.measure.decouple import load_decoupler

    measured = agree.measure(extras, clips, run_dir, cfg_hash, executor=str(cfg.executor.name),
                             workers=int(cfg.executor.workers), address=cfg.executor.address,
                             part_store=PartStore)
    clips_csv = read_csv(run_dir / "clips.csv") if (run_dir / "clips.csv").stat().st_size else pd.DataFrame()
    if clips_csv.empty:
        clips_csv = pd.DataFrame(columns=["clip_id"])
    return agree.write_tables(run_dir, str(cfg.face.backend), load_decoupler(key, settings.decoupler)
                              .describe().get("name", ""), clips_csv, extras, measured, seed=int(cfg.seed))


def mitigation_stage(mitigation: Any, source: Any) -> str:
    """Which stage runs a mitigation: ``generation`` when the clip source applies it while generating
    (it lists the name in ``generation_mitigations``), else ``post`` (applied to the clips before
    measurement); ``none`` for the baseline. ``stage: auto`` picks generation where supported."""
    name, stage = str(mitigation.name), str(mitigation.stage)
    if name == "none" or stage == "none":
        return "none"
    supported = set(getattr(source, "generation_mitigations", ()) or ())
    if stage == "auto":
        return "generation" if name in supported else "post"
    if stage == "generation" and name not in supported:
        raise UsageError(
            f"mitigation {name!r} has no generation-time form for model {getattr(source, 'name', '?')!r} "
            f"-- fix: use mitigation.stage=post (or auto)"
        )
    return stage


def _exit_code(counts: dict[str, Any]) -> int:
    return ExitCode.OK if counts["not_measured"] == 0 and counts["source_skipped"] == 0 else ExitCode.FAIL


def _backend_env(settings: Any, worker_env: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    """Backend, engine and weights as recorded in run.json: as reported by a worker that measured a
    clip, else (everything resumed or skipped) where the model store finds the weights. The decoupler and
    the drift verdict are those of the backend key (backend + weights variant) the clips were measured
    with."""
    from driftbench.measure.decouple import load_decoupler
    from driftbench.measure.drift import drift_verdict_stale, load_drift_verdict

    dec = load_decoupler(key or settings.backend, settings.decoupler).describe()
    verdict = load_drift_verdict(key or settings.backend)
    if verdict is not None:
        verdict["stale"] = drift_verdict_stale(verdict, dec)
        if verdict["stale"]:
            log.warning(
                "%s: the drift verdict was calibrated with another decoupler fit -- fix: run `driftbench "
                "validate --calibrate`",
                verdict.get("file"),
            )
    out: dict[str, Any] = {"decoupler": dec, "drift_verdict": verdict, "device": settings.device}
    if worker_env:
        out.update(worker_env)
    else:
        from driftbench.weights import store

        out["backend"] = {"name": settings.backend}
        out["model_store"] = store.describe()
    return out
