"""The clip record and the registry of clip sources (``model=`` in the config).

A source turns its config into a list of :class:`Clip` plus a list of :class:`Skipped` entries
(manifest rows or files it could not use, with the reason and the fix). Sources know nothing of
Hydra: they receive plain config objects.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from driftbench.registry import Registry

FIRST_FRAME = "first_frame"


@dataclass(frozen=True)
class Clip:
    """A video of a character from one generator run."""

    clip_id: str
    path: str
    character: str
    #: reference images of the character; empty = the clip's own opening (first_frame)
    references: tuple[str, ...] = ()
    prompt_id: str = ""
    seed: int = 0
    model: str = ""
    mitigation: str = "none"
    #: extra, JSON-able facts about the clip (manifest columns, ground truth, generation record)
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def pair_key(self) -> tuple[str, str, int]:
        """Clips with the same key are paired across models and mitigations."""
        return (self.character, self.prompt_id, self.seed)

    @property
    def reference_mode(self) -> str:
        return "images" if self.references else FIRST_FRAME

    def file_key(self) -> str:
        """A file-name-safe, unique key for files written about this clip (never escapes a folder)."""
        return safe_key(self.clip_id)


@dataclass(frozen=True)
class Skipped:
    """Something a source or a stage could not use, with the reason and the fix."""

    item: str
    reason: str
    message: str
    stage: str = "source"


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_key(text: str, max_len: int = 60) -> str:
    """``text`` reduced to [A-Za-z0-9._-] plus a short hash so distinct texts stay distinct."""
    slug = _SAFE.sub("_", text).strip("._-")[:max_len] or "clip"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{slug}-{digest}"


class ClipSource(Protocol):
    def clips(self) -> list[Clip]: ...

    @property
    def skipped(self) -> list[Skipped]: ...


@dataclass
class SourceContext:
    """What a source may use besides its own config."""

    work_dir: Path  # a folder inside the run directory the source may write to
    cache_dir: Path  # persistent cache (generated clips, synthetic clips)
    mitigation: Any = None  # the mitigation config (generation-time strategies)
    seed: int = 0
    progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)


#: entry-point group through which an installed package adds clip sources (see examples/plugin)
ENTRY_POINTS = "driftbench.sources"

#: every clip source driftbench ships (``model.name``): ``factory(cfg, ctx) -> ClipSource``, imported on first
#: use. A factory may carry ``preflight(cfg)``: cheap checks before any work (bad path, unreadable manifest ->
#: UsageError, exit 2). A generic adapter's config (``provider: http``) falls back to its provider's source.
SOURCES: Registry[Callable[[Any, SourceContext], ClipSource]] = Registry(
    "model (clip source)",
    {"folder": "driftbench.sources.folder:FolderSource",
     "synthetic": "driftbench.sources.synthetic:SyntheticSource",
     "kling": "driftbench.sources.generators:GeneratorSource",
     "http": "driftbench.sources.generators:GeneratorSource"},
    entry_points=ENTRY_POINTS,
    fix="one of the conf/model options, see `driftbench run --help`")


def _source_name(cfg: Any) -> str:
    """The registered source for a model config; a generic adapter's config (e.g. name: runway,
    provider: http) uses its provider's source."""
    name = str(cfg.name)
    provider = cfg.get("provider") if hasattr(cfg, "get") else getattr(cfg, "provider", None)
    if name not in SOURCES and provider is not None and str(provider) in SOURCES:
        return str(provider)
    SOURCES.get(name)  # unknown -> UsageError naming the fix
    return name


def preflight(cfg: Any) -> None:
    """Cheap validation of a model config before any work (raises UsageError)."""
    check = getattr(SOURCES.get(_source_name(cfg)), "preflight", None)
    if check is not None:
        check(cfg)


def create_source(cfg: Any, ctx: SourceContext) -> ClipSource:
    return SOURCES.get(_source_name(cfg))(cfg, ctx)
