"""Long takes from short-segment generators: chain requests until the target durations are reached.

A chain opens with image-to-video from the character's start image, then adds segments:

- ``extend`` (each model's native continuation; the drift baseline, mitigation ``none``): the
  provider's own extension of the previous video (Kling video-extend), or, for APIs without one, a new
  image-to-video request from the previous segment's last frame;
- ``reanchor`` (mitigation ``reanchor``, generation-time form): each new segment is conditioned on the
  previous segment's last frame *and* the character's original reference image (Kling: start frame +
  end frame ``image_tail``; Runway: first + last keyframe).

Every request goes through :class:`~driftbench.generators.cache.StepCache`: a finished step is never
requested again, a submitted one is polled rather than resubmitted, a failed one is submitted again on
the next run. Steps are keyed by their parameters and their parent's key, so a 30 s clip is the
prefix of the 60 s chain with the same inputs and costs nothing more, and the ``extend`` and
``reanchor`` chains share their opening request. Every requested target duration becomes one clip:
the step video that reaches it (when the provider returns the whole video so far), or the segments
joined so far. """

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftbench.generators.base import BudgetExceeded, GenerationError, ImageRef, StepInput
from driftbench.generators.cache import StepCache, request_key
from driftbench.generators.client import ApiClient
from driftbench.generators.http import HttpProvider, wait_for
from driftbench.generators.media import check_video, concat, encode_jpeg, last_frame
from driftbench.io import atomic_path, write_bytes

log = logging.getLogger("driftbench")

#: a chain reaches a target when its video is at most this much shorter (frame rounding)
TOLERANCE_S = 0.5


@dataclass(frozen=True)
class ChainJob:
    """One (character, prompt, seed, strategy) chain and the target durations taken from it."""

    character: str
    prompt_id: str
    seed: int
    strategy: str  # extend | reanchor
    targets: tuple[float, ...]
    start_image: ImageRef
    reference: ImageRef
    prompts: tuple[str, ...]  # opening prompt, then continuation prompts (cycled)
    negative_prompt: str = ""

    @property
    def label(self) -> str:
        return f"{self.character}/{self.prompt_id}/seed{self.seed}/{self.strategy}"

    def prompt_for(self, index: int) -> str:
        if index == 0 or len(self.prompts) == 1:
            return self.prompts[0]
        return self.prompts[1 + (index - 1) % (len(self.prompts) - 1)]


@dataclass(frozen=True)
class ChainOutput:
    target_s: float
    path: Path
    duration_s: float
    steps: tuple[dict[str, Any], ...]  # key, kind, task_id, video_id, duration of every step used
    cost: float | None  # price of the steps used (whoever paid for them)


@dataclass
class Plan:
    requests: int = 0  # requests not yet in the cache
    cached: int = 0
    cost: float = 0.0
    unknown_price: int = 0


@dataclass
class SpendMeter:
    """Money actually committed by this run's submissions, against a ceiling."""

    limit: float | None = None
    spent: float = 0.0
    submitted: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def charge(self, amount: float | None, what: str) -> None:
        with self._lock:
            if self.limit is not None and amount is not None and self.spent + amount > self.limit + 1e-9:
                raise BudgetExceeded(
                    "budget_exceeded",
                    f"{what}: would take spending to {self.spent + amount:.2f} (ceiling {self.limit:.2f})",
                    "raise model.max_cost (or confirm a larger estimate) and rerun",
                )
            self.spent += amount or 0.0
            self.submitted += 1


@dataclass(frozen=True)
class ChainSettings:
    segment_s: float = 5.0
    extend_s: float = 5.0
    poll_interval_s: float = 5.0
    poll_max_interval_s: float = 30.0
    timeout_s: float = 1800.0
    download_timeout_s: float = 600.0


class ChainRunner:
    def __init__(self, provider: HttpProvider, cache: StepCache, client: ApiClient, settings: ChainSettings,
                 meter: SpendMeter, *, sleep: Callable[[float], None] | None = None) -> None:
        self.provider = provider
        self.cache = cache
        self.client = client
        self.settings = settings
        self.meter = meter
        self.sleep = sleep or client.sleep

    # -- keys and planning (no network) -----------------------------------------------------------------
    def _kind(self, job: ChainJob, index: int) -> str:
        return "first" if index == 0 else ("reanchor" if job.strategy == "reanchor" else "extend")

    def max_steps(self, job: ChainJob) -> int:
        """A cap on requests per chain: twice the nominal count, so a provider that returns short
        segments cannot make a chain run (and spend) without end."""
        s = self.settings
        nominal = 1 + max(0, math.ceil((max(job.targets) - s.segment_s - TOLERANCE_S) / max(s.extend_s, 0.5)))
        return 2 * nominal + 1

    def step_input(self, job: ChainJob, index: int, parent_key: str | None,
                   parent: dict[str, Any] | None) -> StepInput:
        kind = self._kind(job, index)
        image = job.start_image
        if kind != "first" and self.provider.needs_last_frame(kind):
            assert parent_key is not None
            image = ImageRef(self.cache.frame_path(parent_key), f"lastframe:{parent_key}")
        duration = self.settings.segment_s
        return StepInput(
            kind=kind,
            index=index,
            prompt=job.prompt_for(index),
            negative_prompt=job.negative_prompt,
            seed=job.seed,
            duration_s=duration,
            image=image,
            reference=job.reference if kind == "reanchor" else None,
            parent_key=parent_key,
            parent=parent,
        )

    def key(self, step: StepInput) -> str:
        return request_key(self.provider.key_payload(step))

    def plan(self, job: ChainJob) -> Plan:
        """How many requests the job still needs (nominal segment lengths where nothing is cached)."""
        plan = Plan()
        total, parent_key = 0.0, None
        for index in range(self.max_steps(job)):
            step = self.step_input(job, index, parent_key, None)
            key = self.key(step)
            rec = self.cache.done(key)
            if rec is not None:
                plan.cached += 1
                total = self._advance(total, rec, index)
            else:
                plan.requests += 1
                price = self.provider.price(step.kind, step.duration_s)
                if price is None:
                    plan.unknown_price += 1
                else:
                    plan.cost += price
                total += self.settings.segment_s if index == 0 else self.settings.extend_s
            if total >= max(job.targets) - TOLERANCE_S:
                break
            parent_key = key
        return plan

    @staticmethod
    def _advance(total: float, rec: dict[str, Any], index: int) -> float:
        dur = float(rec.get("video_duration_s") or 0.0)
        if index == 0 or rec.get("result_mode") == "full":
            return dur
        return total + dur - float(rec.get("dropped_s") or 0.0)

    # -- running ---------------------------------------------------------------------------------------
    def run(self, job: ChainJob) -> list[ChainOutput]:
        outputs: list[ChainOutput] = []
        remaining = sorted(set(job.targets))
        steps: list[tuple[str, dict[str, Any]]] = []
        total, parent_key, parent = 0.0, None, None
        for index in range(self.max_steps(job)):
            step = self.step_input(job, index, parent_key, parent)
            key = self.key(step)
            rec = self.execute(job, step, key, total)
            before = total
            total = self._advance(total, rec, index)
            steps.append((key, rec))
            if index and total <= before + 0.1:
                raise GenerationError(
                    "no_progress",
                    f"{self.provider.name} {job.label}: step {index} added no video "
                    f"({before:.1f} s -> {total:.1f} s)",
                    "check the provider's continuation settings (model.api.result / continuation)",
                )
            while remaining and total >= remaining[0] - TOLERANCE_S:
                outputs.append(self.materialize(job, steps, remaining.pop(0), total))
            if not remaining:
                return outputs
            parent_key, parent = key, rec
        raise GenerationError(
            "chain_too_long",
            f"{self.provider.name} {job.label}: {len(steps)} requests reached only "
            f"{total:.1f} s of {max(job.targets):.0f} s",
            "lower model.durations or check model.extend_s against what the provider returns",
        )

    def execute(self, job: ChainJob, step: StepInput, key: str, total_before: float) -> dict[str, Any]:
        """One step through the cache: downloaded -> reuse; submitted -> poll; else submit (paid)."""
        with self.cache.lock(key):
            rec = self.cache.done(key)
            if rec is not None:
                self._ensure_last_frame(key, job, step)
                return rec
            rec = self.cache.load(key)
            where = f"{self.provider.name} {job.label} step {step.index} ({step.kind})"
            if rec is None or rec.get("status") == "failed" or not rec.get("task_id"):
                attempts = int((rec or {}).get("attempts") or 0) + 1
                self.meter.charge(self.provider.price(step.kind, step.duration_s), where)
                task_id, _ = self.provider.submit(self.client, step, external_id=f"db{key[:24]}a{attempts}")
                rec = {"key": key, "status": "submitted", "task_id": task_id, "attempts": attempts,
                       "kind": step.kind, "index": step.index, "provider": self.provider.name,
                       "request": self.provider.key_payload(step)}
                self.cache.save(rec)
                log.info("%s: submitted task %s", where, task_id)
            else:
                log.info("%s: resuming task %s (%s)", where, rec["task_id"], rec.get("status"))
            submit_url = self.provider.url(str(self.provider.request_template(step.kind)["url"]),
                                           self.provider.variables(step, for_key=True))
            # a finished task is polled again too: result URLs are signed and may have expired
            state = wait_for(
                self.client,
                self.provider,
                str(rec["task_id"]),
                submit_url,
                interval_s=self.settings.poll_interval_s,
                max_interval_s=self.settings.poll_max_interval_s,
                timeout_s=self.settings.timeout_s,
                sleep=self.sleep,
            )
            if state.status == "failed":
                rec.update(status="failed", message=state.message)
                self.cache.save(rec)
                raise GenerationError(
                    "generation_failed",
                    f"{where}: task {rec['task_id']} failed: {state.message}",
                    "rerun to submit it again, or change this prompt / reference in the dataset",
                )
            rec.update(status="succeed", video_url=state.video_url, video_id=state.video_id,
                       reported_duration_s=state.duration_s)
            self.cache.save(rec)
            video = self.cache.video_path(key)
            self.client.download(str(state.video_url), video, timeout_s=self.settings.download_timeout_s,
                                 headers=self.provider.download_headers())
            chk = check_video(video)
            mode = self._result_mode(step, chk.duration_s, total_before)
            dropped = 0.0
            if mode == "segment" and step.index and self.provider.needs_last_frame(step.kind) and chk.fps > 0:
                dropped = 1.0 / chk.fps
            rec.update(
                status="downloaded",
                video_duration_s=chk.duration_s,
                n_frames=chk.n_frames,
                fps=chk.fps,
                width=chk.width,
                height=chk.height,
                result_mode=mode,
                dropped_s=dropped,
                video_sha256=_sha256(video),
            )
            self.cache.save(rec)
            log.info("%s: downloaded %.1f s (%s)", where, chk.duration_s, mode)
            self._ensure_last_frame(key, job, step)
            return rec

    def _result_mode(self, step: StepInput, duration: float, total_before: float) -> str:
        if step.index == 0:
            return "segment"
        mode = self.provider.result_mode
        if step.kind != "extend" or self.provider.continuation != "native":
            return "segment"  # a new image-to-video request returns only its own segment
        if mode == "auto":
            # the whole video so far is longer than what came before; a lone extension is not
            return "full" if duration >= total_before + TOLERANCE_S else "segment"
        return mode

    def _ensure_last_frame(self, key: str, job: ChainJob, step: StepInput) -> None:
        """Write the step's last frame when the next step starts from it."""
        nxt = self._kind(job, step.index + 1)
        if not self.provider.needs_last_frame(nxt):
            return
        path = self.cache.frame_path(key)
        if not path.is_file():
            write_bytes(path, encode_jpeg(last_frame(self.cache.video_path(key))))

    def materialize(self, job: ChainJob, steps: list[tuple[str, dict[str, Any]]], target: float,
                    total: float) -> ChainOutput:
        """The clip for one target: the last step holding the whole video so far, plus any segments
        after it, joined (cached by the step keys)."""
        base = 0
        for i, (_, rec) in enumerate(steps):
            if rec.get("result_mode") == "full":
                base = i
        parts = [self.cache.video_path(k) for k, _ in steps[base:]]
        drops = [False] + [float(rec.get("dropped_s") or 0.0) > 0 for _, rec in steps[base + 1:]]
        if len(parts) == 1:
            path = parts[0]
        else:
            token = hashlib.sha256(
                "|".join([k for k, _ in steps[base:]] + [str(d) for d in drops]).encode()
            ).hexdigest()
            path = self.cache.clip_path(token[:32])
            if not path.is_file():
                with atomic_path(path) as tmp:
                    concat(parts, tmp, drop_first=drops)
        prices = [self.provider.price(str(rec.get("kind")), self.settings.segment_s) for _, rec in steps]
        cost = None if any(p is None for p in prices) else float(sum(p or 0.0 for p in prices))
        record = tuple(
            {
                "key": k,
                "kind": rec.get("kind"),
                "task_id": rec.get("task_id"),
                "video_id": rec.get("video_id"),
                "duration_s": rec.get("video_duration_s"),
                "result_mode": rec.get("result_mode"),
            }
            for k, rec in steps
        )
        return ChainOutput(target_s=target, path=path, duration_s=total, steps=record, cost=cost)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()
