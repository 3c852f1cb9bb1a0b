"""``model=kling`` and other hosted generators (``model=runway``, any ``provider: http`` config): generate
the dataset's clips, then hand them to the run like any other source.

One command generates and measures; rerunning it resumes: finished requests come from the generation
cache (``model.cache_dir``, default next to the signal cache), submitted ones are polled, not paid
again. Before any request is sent the source counts what is not cached, prices it, and stops with the
estimate unless spending is confirmed (``--yes`` sets DRIFTBENCH_CONFIRM_SPEND=1; or ``model.yes=true``)
and within ``model.max_cost``. Credentials come from the environment only.

Mitigations: ``none`` (alias ``extend``) generates each model's native continuation; ``reanchor`` with
stage auto/generation re-anchors every segment on the reference image while generating (clips carry
``mitigation="reanchor"``); any other mitigation is applied afterwards to the native clips (stage
post), so those clips carry ``mitigation="none"`` here. Paired clips share (character, prompt_id, seed).
A failed chain becomes Skipped entries (reason and fix) and the run goes on.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from driftbench.errors import UsageError
from driftbench.sources.base import Clip, Skipped, SourceContext

log = logging.getLogger("driftbench")

CONFIRM_ENV = "DRIFTBENCH_CONFIRM_SPEND"


def _plain(value: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, DictConfig | ListConfig):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        pass
    return value


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    return default if value is None else _plain(value)


class GeneratorSource:
    #: mitigations this source applies while generating (see runner.mitigation_stage)
    generation_mitigations = ("reanchor",)

    def __init__(self, cfg: Any, ctx: SourceContext) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.name = str(cfg.name)
        self._skipped: list[Skipped] = []

    @property
    def skipped(self) -> list[Skipped]:
        return self._skipped

    # -- configuration ---------------------------------------------------------------------------------
    def strategy(self) -> tuple[str, str]:
        """(chain strategy, the clips' mitigation label) from the run's mitigation config."""
        mit = self.ctx.mitigation
        name = str(_get(mit, "name", "none")) if mit is not None else "none"
        stage = str(_get(mit, "stage", "none")) if mit is not None else "none"
        if name in ("none", "extend") or stage == "none":
            return "extend", "none"
        if name in self.generation_mitigations and stage in ("auto", "generation"):
            return name, name
        if stage == "generation":
            raise UsageError(
                f"mitigation {name!r} has no generation-time form for model {self.name!r} -- fix: use "
                "mitigation.stage=post (or auto)"
            )
        return "extend", "none"  # a post-processing mitigation works on the native clips

    def settings(self) -> Any:
        from driftbench.generators.http import ProviderSettings

        cfg = self.cfg
        return ProviderSettings(
            name=self.name, provider=str(_get(cfg, "provider", self.name)), base_url=_get(cfg, "base_url"),
            model_name=_get(cfg, "model_name"), mode=str(_get(cfg, "mode", "std")),
            segment_s=float(_get(cfg, "segment_s", 5.0)), api=dict(_get(cfg, "api", {}) or {}),
            prices={str(k): float(v) for k, v in (_get(cfg, "prices", {}) or {}).items()},
            options=dict(_get(cfg, "options", {}) or {}))

    def cache_root(self) -> Path:
        from driftbench.sources.base import safe_key

        base = _get(self.cfg, "cache_dir")
        root = Path(str(base)).expanduser() if base else self.ctx.cache_dir
        return root / "generators" / safe_key(self.name, 30).rsplit("-", 1)[0]

    def confirmed(self) -> bool:
        return bool(_get(self.cfg, "yes", False)) or os.environ.get(CONFIRM_ENV, "") in ("1", "true", "yes")

    # -- the clips -------------------------------------------------------------------------------------
    def clips(self) -> list[Clip]:
        from driftbench.generators.cache import StepCache
        from driftbench.generators.chain import ChainRunner, ChainSettings, SpendMeter
        from driftbench.generators.client import ApiClient, RetryPolicy
        from driftbench.generators.dataset import load_dataset
        from driftbench.generators.http import build_provider

        strategy, label = self.strategy()
        provider = build_provider(self.settings())
        if not provider.supports(strategy):
            raise UsageError(f"model={self.name}: no request template for {strategy!r} -- fix: add "
                             f"model.api.submit.{strategy} or choose another mitigation")
        cache = StepCache(self.cache_root())
        dataset = load_dataset(
            str(_get(self.cfg, "dataset", "identity_stress")), derived_dir=cache.root / "refs"
        )
        jobs = self.jobs(dataset, strategy, cache)
        segment_s = float(_get(self.cfg, "segment_s", 5.0))
        settings = ChainSettings(
            segment_s=segment_s, extend_s=float(_get(self.cfg, "extend_s", segment_s)),
            poll_interval_s=float(_get(self.cfg, "poll_interval_s", 5.0)),
            poll_max_interval_s=float(_get(self.cfg, "poll_max_interval_s", 30.0)),
            timeout_s=float(_get(self.cfg, "timeout_s", 1800.0)))
        policy = RetryPolicy(max_retries=int(_get(self.cfg, "max_retries", 5)),
                             backoff_s=float(_get(self.cfg, "backoff_s", 1.0)))
        with ApiClient(policy=policy, classify=provider.classify(),
                       credentials=" / ".join(getattr(provider.auth, "env_names", ()))) as client:
            meter = SpendMeter()
            runner = ChainRunner(provider, cache, client, settings, meter)
            meter.limit = self.spend_guard(runner, jobs, provider)
            results = self.run_jobs(runner, jobs)
        clips: list[Clip] = []
        for job, outcome in zip(jobs, results, strict=True):
            if isinstance(outcome, Skipped):
                self._skipped.extend(
                    Skipped(self.item(job, t), outcome.reason, outcome.message) for t in job.targets
                )
                continue
            clips.extend(self.clip(job, out, label, provider, dataset) for out in outcome)
        if meter.submitted:
            log.info("%s: %d requests submitted this run (%.2f %s committed)", self.name, meter.submitted,
                     meter.spent, _get(self.cfg, "currency", "USD"))
        return clips

    def jobs(self, dataset: Any, strategy: str, cache: Any) -> list[Any]:
        from driftbench.generators.base import ImageRef
        from driftbench.generators.chain import ChainJob
        from driftbench.weights.store import cached_sha256

        durations = [float(d) for d in (_get(self.cfg, "durations", []) or dataset.durations)]
        if not durations or any(d <= 0 for d in durations):
            raise UsageError(
                f"model.durations={durations} -- fix: positive seconds, e.g. model.durations=[30,60,120]"
            )
        seeds = [int(s) for s in (_get(self.cfg, "seeds", [0]) or [0])]
        want_chars = [str(c) for c in _get(self.cfg, "characters", []) or []]
        want_prompts = [str(p) for p in _get(self.cfg, "prompts", []) or []]
        for kind, wanted, known in (("characters", want_chars, list(dataset.characters)),
                                    ("prompts", want_prompts, [p.id for p in dataset.prompts])):
            unknown = sorted(set(wanted) - set(known))
            if unknown:
                raise UsageError(
                    f"model.{kind}: {unknown} not in dataset {dataset.name} -- fix: one of {known}"
                )
        jobs = []
        for char in dataset.characters.values():
            if want_chars and char.name not in want_chars:
                continue
            start = ImageRef(char.start_image, f"sha256:{cached_sha256(char.start_image)}")
            ref = ImageRef(char.references[0], f"sha256:{cached_sha256(char.references[0])}")
            for prompt in dataset.prompts:
                if (want_prompts and prompt.id not in want_prompts) or (prompt.characters and
                                                                        char.name not in prompt.characters):
                    continue
                for seed in seeds:
                    jobs.append(
                        ChainJob(
                            char.name,
                            prompt.id,
                            seed,
                            strategy,
                            tuple(sorted(set(durations))),
                            start,
                            ref,
                            prompt.prompts,
                            prompt.negative_prompt or dataset.negative_prompt,
                        )
                    )
        limit = _get(self.cfg, "limit")
        if limit is not None:
            jobs = jobs[: int(limit)]
        if not jobs:
            raise UsageError(f"dataset {dataset.name}: no (character, prompt) to generate -- fix: check "
                             "model.characters / model.prompts / model.limit")
        self._dataset_refs = {c.name: c.references for c in dataset.characters.values()}
        return jobs

    def spend_guard(self, runner: Any, jobs: list[Any], provider: Any) -> float | None:
        """Count and price what is not cached; refuse before any request unless confirmed and affordable.
        Returns the spending ceiling for this run."""
        plans = [runner.plan(job) for job in jobs]
        todo = sum(p.requests for p in plans)
        cached = sum(p.cached for p in plans)
        cost = sum(p.cost for p in plans)
        unknown = sum(p.unknown_price for p in plans)
        currency = str(_get(self.cfg, "currency", "USD"))
        estimate = (
            f"{todo} generation request(s) to submit for {len(jobs)} chain(s), {cached} already cached; "
            f"estimated {cost:.2f} {currency}"
            + (f" plus {unknown} request(s) of unknown price" if unknown else "")
        )
        if todo == 0:
            log.info("%s: everything is cached (%d requests); nothing to spend", self.name, cached)
            return 0.0
        missing = provider.auth.missing()
        if missing:
            raise UsageError(f"model={self.name}: {estimate}, but {' and '.join(missing)} "
                             f"{'is' if len(missing) == 1 else 'are'} not set -- fix: export "
                             f"{'=... '.join(missing)}=... (keys are read from the environment only)")
        max_cost = _get(self.cfg, "max_cost")
        if max_cost is not None and cost > float(max_cost):
            raise UsageError(
                f"model={self.name}: {estimate}, above model.max_cost={float(max_cost):.2f} -- fix: "
                "raise model.max_cost, or generate less (model.limit=N, model.durations=[...])"
            )
        if not self.confirmed():
            raise UsageError(
                f"model={self.name}: {estimate} -- fix: rerun with --yes (or model.yes=true) to spend "
                "it; model.limit=N or fewer model.durations to spend less"
            )
        log.info("%s: %s (spending confirmed)", self.name, estimate)
        if max_cost is not None:
            return float(max_cost)
        if unknown:
            return None
        largest = max(
            (runner.provider.price(k, runner.settings.segment_s) or 0.0)
            for k in ("first", "extend", "reanchor")
        )
        return cost * 1.25 + largest  # room for chains whose segments come out shorter than nominal

    def run_jobs(self, runner: Any, jobs: list[Any]) -> list[Any]:
        from driftbench.generators.base import AuthFailed, GenerationError

        stop: list[GenerationError] = []

        def one(job: Any) -> Any:
            if stop:
                err = stop[0]
                return Skipped(job.label, err.reason, f"{self.name} {job.label}: not generated: {err}")
            try:
                return runner.run(job)
            except AuthFailed as exc:
                stop.append(exc)
                log.error("%s; no further requests are sent", exc)
                return Skipped(job.label, exc.reason, f"{self.name} {job.label}: {exc}")
            except GenerationError as exc:
                prefix = f"{self.name} {job.label}"
                msg = str(exc) if str(exc).startswith(prefix) else f"{prefix}: {exc}"
                log.warning("%s", msg)
                return Skipped(job.label, exc.reason, msg)
            except UsageError:
                raise
            except Exception as exc:  # an unexpected error fails this chain, never the others
                log.exception("%s %s: unexpected error", self.name, job.label)
                return Skipped(
                    job.label,
                    "generation_error",
                    f"{self.name} {job.label}: {type(exc).__name__}: {exc} "
                    "-- fix: rerun; report the error if it persists",
                )

        workers = max(1, int(_get(self.cfg, "concurrency", 1)))
        if workers == 1:
            return [one(j) for j in jobs]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, jobs))

    # -- records ---------------------------------------------------------------------------------------
    def item(self, job: Any, target: float) -> str:
        return f"{self.name}:{job.character}/{self.prompt_id(job, target)}/seed{job.seed}"

    @staticmethod
    def prompt_id(job: Any, target: float) -> str:
        return f"{job.prompt_id}@{target:g}s"

    def clip(self, job: Any, out: Any, label: str, provider: Any, dataset: Any) -> Clip:
        pid = self.prompt_id(job, out.target_s)
        refs = tuple(str(p) for p in self._dataset_refs[job.character])
        meta = {
            "source": "generator",
            "provider": provider.settings.provider,
            "model_name": provider.settings.model_name,
            "mode": provider.settings.mode,
            "strategy": job.strategy,
            "dataset": dataset.name,
            "prompt": job.prompts[0],
            "prompt_base": job.prompt_id,
            "target_s": out.target_s,
            "duration_s": round(out.duration_s, 3),
            "n_requests": len(out.steps),
            "task_ids": [s["task_id"] for s in out.steps],
            "step_kinds": [s["kind"] for s in out.steps],
            "cost_estimate": None if out.cost is None else round(out.cost, 4),
            "start_image": str(job.start_image.path),
        }
        return Clip(clip_id=f"{self.name}/{job.character}/{pid}/seed{job.seed}/{label}", path=str(out.path),
                    character=job.character, references=refs, prompt_id=pid, seed=job.seed, model=self.name,
                    mitigation=label, meta=meta)

