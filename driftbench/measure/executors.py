"""Map :func:`driftbench.measure.clip.measure_clip` over clips: in-process, in a local process pool, or on
Ray. Clips are independent work items; results come back as they finish (``on_result`` persists
each at once, so an interrupted run loses at most the clips in flight).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from driftbench.measure.clip import ClipResult, MeasureSettings, close_analyzer, measure_clip
from driftbench.registry import Registry
from driftbench.sources.base import Clip


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def auto_workers(n_clips: int) -> int:
    """Processes for a local pool: each process already keeps ~2 cores busy (decode + models), so one
    process per 2 cores, at most one per clip."""
    return max(1, min(n_clips, _cores() // 2))


def _init_worker(threads: int, parent: int | None = None) -> None:
    if parent is not None:
        _exit_with_parent(parent)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except Exception:
        pass


def _exit_with_parent(parent: int) -> None:
    """Leave when the parent is gone. A SIGKILLed parent cannot shut its pool down, and its workers
    would wait on the task queue forever, each holding its face models in memory."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="driftbench-parent-watch", daemon=True).start()


def in_process(name: str, n_clips: int, workers: int = 0) -> bool:
    """Whether ``execute`` measures ``n_clips`` clips in this process (executor=local with one worker or
    one clip), not in worker processes or on Ray."""
    return name == "local" and ((workers or auto_workers(n_clips)) <= 1 or n_clips <= 1)


def run_local(clips: list[Clip], settings: MeasureSettings, workers: int,
              on_result: Callable[[ClipResult], None]) -> None:
    if workers <= 1 or len(clips) <= 1:
        try:
            for clip in clips:
                on_result(measure_clip(clip, settings))
        finally:
            close_analyzer()
        return
    import concurrent.futures as cf
    import multiprocessing as mp

    cores = _cores()
    threads = max(1, cores // workers)
    ctx = mp.get_context("spawn")  # fork after threads/ONNX sessions is unsafe
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                  initargs=(threads, os.getpid()))
    try:
        futs = {pool.submit(measure_clip, c, settings): c for c in clips}
        for fut in cf.as_completed(futs):
            on_result(fut.result())
    except BaseException:
        # Interrupted (Ctrl-C) or failed: stop now. Leaving the ``with`` block would wait for every
        # queued clip to be measured and then throw the results away. Results already passed to
        # ``on_result`` are saved; the clips in flight are measured again on resume.
        procs = list((getattr(pool, "_processes", None) or {}).values())  # no public API before 3.14
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.terminate()
        raise
    pool.shutdown(wait=True)


def run_ray(clips: list[Clip], settings: MeasureSettings, address: str | None,
            on_result: Callable[[ClipResult], None]) -> None:
    if (
        not clips
    ):  # every clip already measured (a resumed run): no cluster started, nothing written to ~/.ray
        return
    try:
        import ray
    except ImportError:
        from driftbench.errors import UsageError

        raise UsageError("executor=ray needs Ray -- fix: pip install 'driftbench[ray]'") from None
    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        started = True
    try:
        remote = ray.remote(measure_clip)
        pending = {remote.remote(c, settings): c for c in clips}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                pending.pop(ref)
                on_result(ray.get(ref))
    finally:
        if started:
            ray.shutdown()


def local_executor(clips: list[Clip], settings: MeasureSettings, *, workers: int, address: str | None,
                   on_result: Callable[[ClipResult], None]) -> None:
    """``executor=local``: in-process, or a local process pool of ``workers`` (0: automatic)."""
    run_local(clips, settings, workers or auto_workers(len(clips)), on_result)


def ray_executor(clips: list[Clip], settings: MeasureSettings, *, workers: int, address: str | None,
                 on_result: Callable[[ClipResult], None]) -> None:
    """``executor=ray``: one Ray task per clip on the cluster at ``address`` (a local one when None)."""
    run_ray(clips, settings, address, on_result)


#: executors by ``executor.name``: ``executor(clips, settings, *, workers, address, on_result)``
EXECUTORS: Registry[Callable[..., None]] = Registry(
    "executor", {"local": "driftbench.measure.executors:local_executor",
                 "ray": "driftbench.measure.executors:ray_executor"},
    fix="executor=local or executor=ray")


def execute(name: str, clips: Iterable[Clip], settings: MeasureSettings, *, workers: int = 0,
            address: str | None = None, on_result: Callable[[ClipResult], None]) -> None:
    EXECUTORS.get(name)(list(clips), settings, workers=workers, address=address, on_result=on_result)
