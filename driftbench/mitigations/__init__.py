"""mitigations: methods that should reduce drift, the second stage (between the clip sources and measurement).
They turn a source's clips into new clips (same clip_id, ``mitigation=<name>``); the face warps they share
with the synthetic source live in :mod:`.warp`. May import sources.base (the Clip record), faces,
measure.video and measure.cache, weights and io/errors/plugins; never results, report, runner or cli.

Adding a post-processing mitigation: a module here with a :class:`.base.FrameProcessor` subclass; one entry
``"name": "driftbench.mitigations.module:Class"`` in :data:`MITIGATIONS`; and
``conf/mitigation/<name>.yaml``. An
installed package registers one under the ``driftbench.mitigations`` entry-point group.

Mitigations: methods that should reduce drift. ``none`` is the baseline every leaderboard row is
paired against. Post-processing mitigations transform clips before measurement; generation-time
strategies are handed to the model (clip source, which lists them in ``generation_mitigations``).

Post-processing forms, registered by name in :data:`MITIGATIONS` (all share the loop of
:mod:`driftbench.mitigations.base`):

- ``reanchor`` (:mod:`.realign`): every frame's face re-aligned to the reference identity, expression
  and pose from the frame; anchored to the reference, independent of time.
- ``chain`` (:mod:`.realign`): the same, anchored to the previous output frame (errors accumulate).
- ``colormatch`` (:mod:`.colormatch`): every frame's (or chunk's) colour and tone moved to the
  reference's in Lab (Reinhard or histogram matching), geometry untouched: the fix practitioners apply
  to long talking-head takes; it shows whether a drift was partly colour.
- ``freeze`` and ``paste`` (:mod:`.adversarial`): adversarial checks that win on identity by
  destroying expression; the benchmark must flag them.

Post-processing runs at the sampling rate by default (``params.render: sampled``): only the frames
the run's sampling measures are processed, batched, and written at their own timestamps, so the
tables equal a full-rate run's up to H.264 re-encoding noise for the per-frame methods (``reanchor``,
``paste``); ``chain`` and ``freeze`` depend on earlier frames and see only sampled ones (``chain``
re-anchors on the previous *sampled* output: fewer, larger steps than at 25 fps, so less accumulated
resampling). ``params.render: full`` processes every frame, for a video to watch.

``apply_post`` returns, for every clip it could process, a clip with the same clip_id, character,
prompt_id and seed as its source (so the leaderboard pairs it with the ``none`` run) and
``mitigation=<name>``; a clip it cannot process becomes a :class:`Skipped` with the reason and the fix.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

from driftbench.mitigations.base import FrameProcessor, process_clip
from driftbench.registry import Registry
from driftbench.sources.base import Clip, Skipped

log = logging.getLogger("driftbench")

#: entry-point group through which an installed package adds post-processing mitigations (examples/plugin)
ENTRY_POINTS = "driftbench.mitigations"

#: post-processing mitigations by name (``mitigation.name``): FrameProcessor classes, imported on first use
MITIGATIONS: Registry[type[FrameProcessor]] = Registry(
    "post-processing mitigation",
    {"reanchor": "driftbench.mitigations.realign:Reanchor",
     "chain": "driftbench.mitigations.realign:Chain",
     "freeze": "driftbench.mitigations.adversarial:Freeze",
     "paste": "driftbench.mitigations.adversarial:Paste",
     "colormatch": "driftbench.mitigations.colormatch:ColorMatch"},
    entry_points=ENTRY_POINTS,
    fix="choose from chain, colormatch, freeze, paste, reanchor "
        "(or a generation-time one the model supports)",
    unknown="post-processing mitigation {name!r} does not exist -- fix: {fix}")


def create(name: str, params: dict[str, Any], device: str = "auto") -> FrameProcessor:
    """A configured processor; UsageError for an unknown name or param."""
    return MITIGATIONS.get(name)(params, device)


def apply_post(
    clips: list[Clip], cfg: Any, settings: Any, cache_dir: Path
) -> tuple[list[Clip], list[Skipped]]:
    """Apply a post-processing mitigation to every clip (cached); returns the new clips and what was
    skipped. ``cfg``: the mitigation config (name, stage, params); ``settings``: MeasureSettings
    (device, reference mode, whether weights may be fetched)."""
    from driftbench.errors import ClipError

    params = _plain(getattr(cfg, "params", {}) or {})
    proc = create(str(cfg.name), params, device=str(getattr(settings, "device", "auto")))
    mesh: list[Any] = []

    def mesh_factory() -> Any:
        if not mesh:
            from driftbench.mitigations.warp import FaceMesh

            mesh.append(FaceMesh(download=bool(getattr(settings, "download", False))))
        return mesh[0]

    from driftbench.mitigations.warp import mesh_weights

    weights = mesh_weights(download=bool(getattr(settings, "download", False)))
    out: list[Clip] = []
    skipped: list[Skipped] = []
    bar = None
    if getattr(settings, "progress", False) and clips:
        from tqdm import tqdm

        bar = tqdm(total=len(clips), desc=f"mitigation {proc.name}", unit="clip")
    try:
        for clip in clips:
            try:
                out.append(
                    process_clip(
                        clip,
                        proc,
                        reference_mode=str(getattr(settings, "reference", "auto")),
                        mesh_factory=mesh_factory,
                        cache_dir=Path(cache_dir),
                        sampling=getattr(settings, "sampling", None),
                        mesh_weights=weights,
                    )
                )
            except ClipError as exc:
                skipped.append(Skipped(clip.path, exc.reason, str(exc), stage="mitigation"))
            except Exception as exc:  # one broken clip must never cost the others
                log.debug("mitigation %s failed on %s:\n%s", proc.name, clip.clip_id, traceback.format_exc())
                skipped.append(
                    Skipped(
                        clip.path,
                        "mitigation_error",
                        f"{clip.path}: mitigation {proc.name!r} failed ({type(exc).__name__}: {exc}) "
                        "-- fix: report this with the clip attached; the other clips were processed",
                        stage="mitigation",
                    )
                )
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if mesh:
            mesh[0].close()
    return out, skipped


def _plain(obj: Any) -> dict[str, Any]:
    """OmegaConf node or mapping -> plain dict (lists stay lists)."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(obj, DictConfig):
            res = OmegaConf.to_container(obj, resolve=True)
            return {str(k): v for k, v in res.items()} if isinstance(res, dict) else {}
    except ImportError:
        pass
    return dict(obj)
