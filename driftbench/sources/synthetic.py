"""``model=synthetic``: clips with KNOWN identity drift, made from real faces.

A real identity-constant face is morphed, frame by frame, toward another real person: the target's
face is warped (dense thin-plate spline through MediaPipe's landmarks, :mod:`driftbench.mitigations.warp`)
onto the frame's face geometry, whose own shape moves toward the target's by the same amount, and
cross-dissolved inside a feathered, colour-matched face mask with weight ``alpha(t)``. Expression and
head motion stay those of the source, so a measured identity change is the injected one. Schedules
(``SCHEDULES``): ``linear`` (0 -> strength over the clip), ``step`` (strength from ``step_s``; by
default the k-th of n faces steps at (k + 1) / (n + 1) of the clip, so onsets are spread over it),
``late`` (0 until ``late_onset_s``, then linear to strength) and ``none`` (the no-drift control).

Sources of the face:
- ``source=embedded`` (the default, no ../shared needed): photos that installed PyPI packages ship,
  through the model store (scikit-image's astronaut; insightface's Tom Hanks and its group photo
  t1.jpg, whose frontal faces become separate identities). A still has no motion, so every clip gets
  smooth procedural head motion (yaw/pitch-like shifts of the inner face, roll, shift, zoom) and
  speech-like jaw motion, smiles, blinks and brow raises (landmarks moved over time, then warped);
  all schedules of one face share the same motion, so the ``none`` clip is the source clip.
- ``source=<folder or manifest of real clips>``: real footage (sampled at ``fps``, first
  ``duration_s``) whose face is morphed toward a target photo (``targets=`` a folder of photos, or
  ``embedded``), keeping the real expression and head motion.

Each clip records the true identity mix: a sidecar CSV (``t,alpha,face``) and summary facts in
``Clip.meta`` (``gt_schedule``, ``gt_strength``, ``gt_onset_s``, ``gt_alpha_at_{5,30,60}s``,
``gt_alpha_end``, ``gt_csv``). Clips are H.264 MP4 in ``<cache>/synthetic/``, keyed by the inputs'
sha256, every parameter, the sampling and the code version: a rerun regenerates nothing.

Only what is measured is rendered (``render=sampled``, the default): motion, schedule and frames are
functions of the full timeline at ``fps``, but only the frames the run's sampling measures (plus the
last, which keeps the header's duration) are rendered and written, each at its own timestamp
(variable frame rate), so measuring the clip at that sampling reads the same instants, each frame
identical before encoding to the full-rate clip's (at 25 fps and 2 samples/s, 121 of 1500 frames
of a 60 s clip). ``render=full`` writes every frame, to watch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from driftbench.errors import UsageError
from driftbench.sources.base import Clip, Skipped, SourceContext
from driftbench.sources.synthetic_inputs import (
    CODE_VERSION,
    SCHEDULES,
    PhotoSpec,
    Portrait,
    Schedule,
    embedded_specs,
    folder_specs,
    load_portrait,
    make_schedule,
    portrait_crop,
)
from driftbench.sources.synthetic_render import render_embedded, render_real

log = logging.getLogger("driftbench")

# -- the source -------------------------------------------------------------------------------------------
def _write_sidecar(path: Path, gt: dict[str, Any]) -> None:
    import pandas as pd

    from driftbench.io import write_csv

    write_csv(path, pd.DataFrame({"t": gt["t"], "alpha": gt["alpha"], "face": gt["face"]}))


class SyntheticSource:
    """Clips with injected, known identity drift (see the module docstring)."""

    name = "synthetic"

    def __init__(self, cfg: Any, ctx: SourceContext) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self._skipped: list[Skipped] = []
        self.device = str(ctx.options.get("device", "auto"))
        self.download = bool(ctx.options.get("fetch", True))
        self.dir = Path(ctx.cache_dir) / "synthetic"
        self._mesh: Any = None
        self._portraits: dict[str, Portrait | None] = {}
        self._mesh_weights: dict[str, str] | None = None
        #: the run's sampling (fps, start, end): with ``render=sampled`` only the frames it measures are
        #: rendered; without one (a source used outside a run) every frame is
        sampling = ctx.options.get("sampling")
        self.sampling = SimpleNamespace(**sampling) if isinstance(sampling, dict) else sampling
        if str(getattr(cfg, "render", "sampled")) == "full":
            self.sampling = None

    @property
    def skipped(self) -> list[Skipped]:
        return self._skipped

    # -- configuration checks (before any work) --
    def _check(self) -> None:
        cfg = self.cfg
        bad = [s for s in cfg.schedules if s not in SCHEDULES]
        if bad or not cfg.schedules:
            raise UsageError(
                f"model.schedules: unknown schedule(s) {bad} -- fix: choose from {sorted(SCHEDULES)}"
            )
        if not 0.0 <= float(cfg.strength) <= 1.0:
            raise UsageError(
                f"model.strength={cfg.strength} is outside [0, 1] -- fix: 0 = no drift, 1 = fully "
                "the other person"
            )
        if str(getattr(cfg, "render", "sampled")) not in ("sampled", "full"):
            raise UsageError(
                f"model.render={cfg.render!r} -- fix: sampled (only the frames the sampling measures) "
                "or full (every frame, to watch)"
            )
        n_cast = int(getattr(cfg, "cast", 1))
        if n_cast not in (1, 2) or (n_cast == 2 and str(cfg.source) != "embedded"):
            raise UsageError(f"model.cast={n_cast} -- fix: 1 (one character per clip) or 2 (two-character "
                             "clips, with model.source=embedded)")
        if float(cfg.duration_s) <= 0 or float(cfg.fps) <= 0 or int(cfg.size) < 64 or int(cfg.max_clips) < 1:
            raise UsageError(
                "model.duration_s, model.fps must be > 0, model.size >= 64 and model.max_clips >= 1 "
                "-- fix: e.g. model.duration_s=12 model.fps=25 model.size=256"
            )

    def _params(self) -> dict[str, Any]:
        c = self.cfg
        return {"code": CODE_VERSION, "strength": float(c.strength), "duration_s": float(c.duration_s),
                "fps": float(c.fps), "size": int(c.size), "max_side": int(c.max_side), "seed": int(c.seed),
                "motion": float(c.motion), "expression": float(c.expression), "step_s": c.step_s,
                "late_onset_s": c.late_onset_s, "render": _sampling_tag(self.sampling)}

    def _key(self, *parts: Any) -> str:
        """A rendered clip's cache key: the source's params, the warp code and the landmark models' weights
        (the landmarks, hence the frames, differ between YuNet fp32 and int8), and the clip's own parts."""
        from driftbench.mitigations.warp import WARP_VERSION, mesh_weights

        if self._mesh_weights is None:
            self._mesh_weights = mesh_weights(download=self.download)
        blob = json.dumps({"params": self._params(), "warp": WARP_VERSION, "mesh": self._mesh_weights,
                           "parts": parts}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def _mesh_(self) -> Any:
        if self._mesh is None:
            from driftbench.mitigations.warp import FaceMesh

            self._mesh = FaceMesh(download=self.download)
        return self._mesh

    def _portrait(self, spec: PhotoSpec) -> Portrait | None:
        if spec.name not in self._portraits:
            self._portraits[spec.name] = load_portrait(spec, self._mesh_())
        return self._portraits[spec.name]

    def _targets(self) -> list[PhotoSpec]:
        tg = str(self.cfg.targets)
        if tg == "embedded":
            return embedded_specs(self.download)
        p = Path(tg).expanduser()
        if not p.exists():
            raise UsageError(
                f"{p}: model.targets does not exist -- fix: a folder of face photos, or embedded"
            )
        return folder_specs(p)

    def clips(self) -> list[Clip]:
        self._check()
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            if int(getattr(self.cfg, "cast", 1)) > 1:
                return self._cast()
            if str(self.cfg.source) == "embedded":
                return self._embedded()
            return self._real()
        finally:
            if self._mesh is not None:
                self._mesh.close()
                self._mesh = None

    def _finish(self, key: str, render: Callable[[Path], dict[str, Any]], meta: dict[str, Any]
                ) -> tuple[Path, dict[str, Any]]:
        """Render the clip unless it is cached; returns the MP4 path and its record."""
        mp4 = self.dir / f"{key}.mp4"
        csv = self.dir / f"{key}.csv"
        info = self.dir / f"{key}.json"
        if mp4.is_file() and csv.is_file() and info.is_file():
            return mp4, json.loads(info.read_text(encoding="utf-8"))
        import time

        from driftbench.io import write_json

        t0 = time.perf_counter()
        gt = render(mp4)
        _write_sidecar(csv, gt)
        record = {
            **meta,
            "fps": gt["fps"],
            "frames": len(gt["t"]),
            "frames_rendered": gt.get("rendered", len(gt["t"])),
            "render": _sampling_tag(self.sampling),
            "render_s": round(time.perf_counter() - t0, 3),
        }
        write_json(info, record)
        log.info(
            "synthetic: wrote %s (%s) in %.1f s", mp4.name, meta.get("clip_id"), time.perf_counter() - t0
        )
        return mp4, record

    def _embedded(self) -> list[Clip]:
        import cv2

        from driftbench.io import write_bytes

        specs = embedded_specs(self.download)
        targets = self._targets()
        schedules = list(self.cfg.schedules)
        clips: list[Clip] = []
        n_bases = min(len([s for s in specs if s.name != "hanks"]),
                      -(-int(self.cfg.max_clips) // max(len(schedules), 1)))
        for bi, base_spec in enumerate(s for s in specs if s.name != "hanks"):
            if len(clips) >= int(self.cfg.max_clips):
                break
            tgt_spec = next((s for s in (targets[(bi + 1 + j) % len(targets)] for j in range(len(targets)))
                             if s.digest != base_spec.digest), None)
            if tgt_spec is None:
                raise UsageError("model.targets holds no identity other than the base -- fix: add photos of "
                                 "other people")
            ref_key = self._key("portrait", base_spec.digest)
            ref_png = self.dir / "portraits" / f"{base_spec.name}-{ref_key}.png"
            base = None
            for sched_name in schedules:
                if len(clips) >= int(self.cfg.max_clips):
                    break
                sched = make_schedule(sched_name, self.cfg, (bi, n_bases))
                clip_id = f"synthetic/{base_spec.name}/{tgt_spec.name}/{sched_name}"
                key = self._key("embedded", base_spec.digest, tgt_spec.digest, sched_name)
                meta: dict[str, Any] = {"source": "embedded", "base": base_spec.name, "target": tgt_spec.name,
                                        "clip_id": clip_id, **sched.facts()}

                def render(out: Path, _b: PhotoSpec = base_spec, _t: PhotoSpec = tgt_spec,
                           _s: Schedule = sched) -> dict[str, Any]:
                    nonlocal base
                    if base is None:
                        bp = self._portrait(_b)
                        if bp is None:
                            raise UsageError(f"{_b.path}: no usable face for embedded identity {_b.name!r}")
                        base = portrait_crop(bp, int(self.cfg.size))
                    tp = self._portrait(_t)
                    if tp is None:
                        raise UsageError(f"{_t.path}: no usable face for target identity {_t.name!r} -- fix: "
                                         "use frontal face photos in model.targets")
                    return render_embedded(base, tp, _s, self.cfg, out, device=self.device,
                                           seed=int(self.cfg.seed), sampling=self.sampling)

                mp4, record = self._finish(key, render, meta)
                if not ref_png.is_file():
                    bp = self._portrait(base_spec)
                    assert bp is not None
                    ok, png = cv2.imencode(".png", portrait_crop(bp, int(self.cfg.size)).image)
                    if not ok:
                        raise OSError(f"{ref_png}: PNG encoding failed")
                    write_bytes(ref_png, bytes(png))
                meta.update(
                    {
                        "gt_csv": str(mp4.with_suffix(".csv")),
                        "duration_s": float(self.cfg.duration_s),
                        "fps": float(record.get("fps", self.cfg.fps)),
                        "render": _sampling_tag(self.sampling),
                    }
                )
                meta.pop("clip_id")
                clips.append(Clip(clip_id=clip_id, path=str(mp4), character=base_spec.name,
                                  references=(str(ref_png),), prompt_id=f"{tgt_spec.name}-{sched_name}",
                                  seed=int(self.cfg.seed), model=str(self.cfg.label), meta=meta))
        return clips

    def _single(self, base_spec: PhotoSpec, tgt_spec: PhotoSpec, sched_name: str) -> tuple[Path, Path]:
        """One embedded face clip (cached) and its reference portrait: the parts of a cast clip."""
        import cv2

        from driftbench.io import write_bytes

        sched = make_schedule(sched_name, self.cfg)
        key = self._key("embedded", base_spec.digest, tgt_spec.digest, sched_name)
        bp = self._portrait(base_spec)
        if bp is None:
            raise UsageError(f"{base_spec.path}: no usable face for embedded identity {base_spec.name!r}")
        base = portrait_crop(bp, int(self.cfg.size))
        tp = self._portrait(tgt_spec)
        if tp is None:
            raise UsageError(f"{tgt_spec.path}: no usable face for identity {tgt_spec.name!r}")

        def render(out: Path) -> dict[str, Any]:
            return render_embedded(base, tp, sched, self.cfg, out, device=self.device,
                                   seed=int(self.cfg.seed), sampling=self.sampling)

        mp4, _ = self._finish(key, render, {"clip_id": f"{base_spec.name}/{tgt_spec.name}/{sched_name}"})
        ref_png = self.dir / "portraits" / f"{base_spec.name}-{self._key('portrait', base_spec.digest)}.png"
        if not ref_png.is_file():
            ok, png = cv2.imencode(".png", base.image)
            if not ok:
                raise OSError(f"{ref_png}: PNG encoding failed")
            write_bytes(ref_png, bytes(png))
        return mp4, ref_png

    def _cast(self) -> list[Clip]:
        """``cast=2``: pairs of embedded identities side by side (:mod:`driftbench.sources.composite`), each
        pair in three scenarios -- ``constant``; ``swap``: the two faces exchange places at ``step_s``
        (default half the duration); ``leak``: the left face morphed toward the right one (linear to
        ``strength``) -- measured as casts (one clip per character, ``<clip>#<character>``)."""
        from driftbench.measure.cast import Member
        from driftbench.sources.composite import compose

        specs = [s for s in embedded_specs(self.download) if s.name != "hanks"]
        dur = float(self.cfg.duration_s)
        fps = float(self.sampling.fps) if self.sampling is not None else float(self.cfg.fps)
        swap_s = float(self.cfg.step_s) if self.cfg.step_s is not None else 0.5 * dur
        clips: list[Clip] = []
        for a_spec, b_spec in zip(specs[0::2], specs[1::2], strict=False):
            a, a_ref = self._single(a_spec, b_spec, "none")
            b, b_ref = self._single(b_spec, a_spec, "none")
            cast = [Member(a_spec.name, images=(str(a_ref),)).to_json(),
                    Member(b_spec.name, images=(str(b_ref),)).to_json()]
            for scenario in ("constant", "swap", "leak"):
                if len(clips) + 2 > int(self.cfg.max_clips):
                    return clips
                key = self._key("cast", a_spec.digest, b_spec.digest, scenario, swap_s, fps)
                out = self.dir / f"{key}.mp4"
                left = self._single(a_spec, b_spec, "linear")[0] if scenario == "leak" else a
                if not out.is_file():
                    compose(left, b, out, fps=fps, duration_s=dur, size=int(self.cfg.size),
                            swap_at=swap_s if scenario == "swap" else None)
                meta: dict[str, Any] = {
                    "source": "embedded-cast", "cast": cast, "gt_scenario": scenario,
                    "gt_swap_s": swap_s if scenario == "swap" else None,
                    "gt_leak_character": a_spec.name if scenario == "leak" else None,
                    "gt_strength": float(self.cfg.strength) if scenario == "leak" else 0.0,
                    "duration_s": dur, "fps": fps, "render": _sampling_tag(self.sampling)}
                clip_id = f"synthetic/cast/{a_spec.name}+{b_spec.name}/{scenario}"
                clips.extend(Clip(clip_id=f"{clip_id}#{m['name']}", path=str(out), character=m["name"],
                                  references=tuple(m["images"]), prompt_id=f"cast-{scenario}",
                                  seed=int(self.cfg.seed), model=str(self.cfg.label), meta=meta)
                             for m in cast)
        return clips

    def _real(self) -> list[Clip]:
        from driftbench.errors import ClipError
        from driftbench.measure.cache import content_hash
        from driftbench.sources.folder import FolderSource

        src_path = Path(str(self.cfg.source)).expanduser()
        folder = FolderSource(
            SimpleNamespace(
                path=str(src_path), pattern=str(self.cfg.pattern), recursive=False, label=str(self.cfg.label)
            ),
            self.ctx,
        )
        sources = folder.clips()
        self._skipped.extend(folder.skipped)
        targets = self._targets()
        schedules = list(self.cfg.schedules)
        clips: list[Clip] = []
        n_bases = min(len(sources), -(-int(self.cfg.max_clips) // max(len(schedules), 1)))
        for ci, src in enumerate(sources):
            if len(clips) >= int(self.cfg.max_clips):
                break
            try:
                digest = content_hash(src.path)
            except OSError as exc:
                self._skipped.append(
                    Skipped(
                        src.path, "missing", f"{src.path}: unreadable ({exc.strerror}) -- fix: check the path"
                    )
                )
                continue
            tgt_spec = targets[ci % len(targets)]
            for sched_name in schedules:
                if len(clips) >= int(self.cfg.max_clips):
                    break
                sched = make_schedule(sched_name, self.cfg, (ci, n_bases))
                clip_id = f"synthetic/{_id_part(src.clip_id)}/{tgt_spec.name}/{sched_name}"
                key = self._key("real", digest, tgt_spec.digest, sched_name)
                meta: dict[str, Any] = {"source": "clip", "source_path": src.path, "base": src.character,
                                        "target": tgt_spec.name, "clip_id": clip_id, **sched.facts()}

                def render(out: Path, _src: Clip = src, _t: PhotoSpec = tgt_spec,
                           _s: Schedule = sched) -> dict[str, Any]:
                    tp = self._portrait(_t)
                    if tp is None:
                        raise UsageError(f"{_t.path}: no usable face for target identity {_t.name!r} -- fix: "
                                         "use frontal face photos in model.targets")
                    return render_real(
                        _src.path,
                        tp,
                        _s,
                        self.cfg,
                        out,
                        device=self.device,
                        mesh=self._mesh_(),
                        sampling=self.sampling,
                    )

                try:
                    mp4, record = self._finish(key, render, meta)
                except ClipError as exc:
                    self._skipped.append(Skipped(src.path, exc.reason, str(exc)))
                    break
                meta.update(
                    {
                        "gt_csv": str(mp4.with_suffix(".csv")),
                        "duration_s": float(self.cfg.duration_s),
                        "fps": float(record.get("fps", self.cfg.fps)),
                        "render": _sampling_tag(self.sampling),
                    }
                )
                meta.pop("clip_id")
                clips.append(
                    Clip(
                        clip_id=clip_id,
                        path=str(mp4),
                        character=src.character,
                        references=src.references,
                        prompt_id=f"{src.prompt_id}-{tgt_spec.name}-{sched_name}",
                        seed=int(self.cfg.seed),
                        model=str(self.cfg.label),
                        meta=meta,
                    )
                )
        return clips


def _sampling_tag(sampling: Any | None) -> str:
    """What a clip holds, for cache keys and meta: ``full`` or ``sampled@FPS[:start-end]``."""
    if sampling is None:
        return "full"
    end = "" if sampling.end is None else f"{float(sampling.end):g}"
    return f"sampled@{float(sampling.fps):g}:{float(sampling.start or 0.0):g}-{end}"


def _id_part(clip_id: str) -> str:
    """A source clip's id without its extension and with no dots (run files are named from clip ids,
    and a dot would read as a file suffix)."""
    from pathlib import PurePosixPath

    return str(PurePosixPath(clip_id).with_suffix("")).replace(".", "_")

