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


SOURCES: dict[str, Callable[[Any, SourceContext], ClipSource]] = {}


def register(name: str) -> Callable[[Callable[[Any, SourceContext], ClipSource]], Callable[[Any, SourceContext], ClipSource]]:
    def deco(factory: Callable[[Any, SourceContext], ClipSource]) -> Callable[[Any, SourceContext], ClipSource]:
        SOURCES[name] = factory
        return factory

    return deco


#: source module for each model name that is not a module of its own
_MODULES = {"folder": "folder", "synthetic": "synthetic"}


#: optional cheap checks run before any work (bad path, unreadable manifest -> UsageError, exit 2)
PREFLIGHTS: dict[str, Callable[[Any], None]] = {}


#: entry-point group through which an installed package adds clip sources (see examples/plugin)
ENTRY_POINTS = "driftbench.sources"


def _load(name: str) -> None:
    import importlib

    module = _MODULES.get(name)
    if name not in SOURCES:
        for mod in filter(None, [module, name, "generators"]):
            try:
                importlib.import_module(f"driftbench.sources.{mod}")
            except ModuleNotFoundError as exc:
                if exc.name != f"driftbench.sources.{mod}":
                    raise
            if name in SOURCES:
                break
    if name not in SOURCES:
        from driftbench.plugins import load_entry_point

        factory = load_entry_point(ENTRY_POINTS, name)
        if factory is not None:
            SOURCES.setdefault(name, factory)


def _source_name(cfg: Any) -> str:
    """The registered source for a model config; a generic adapter's config (e.g. name: runway,
    provider: http) uses its provider's source."""
    name = str(cfg.name)
    _load(name)
    provider = cfg.get("provider") if hasattr(cfg, "get") else getattr(cfg, "provider", None)
    if name not in SOURCES and provider is not None:
        _load(str(provider))
        if provider in SOURCES:
            name = str(provider)
    if name not in SOURCES:
        from driftbench.errors import UsageError

        raise UsageError(f"unknown model (clip source) {name!r} -- fix: one of the conf/model options, see "
                         "`driftbench run --help`")
    return name


def preflight(cfg: Any) -> None:
    """Cheap validation of a model config before any work (raises UsageError)."""
    check = PREFLIGHTS.get(_source_name(cfg))
    if check is not None:
        check(cfg)


def create_source(cfg: Any, ctx: SourceContext) -> ClipSource:
    return SOURCES[_source_name(cfg)](cfg, ctx)
