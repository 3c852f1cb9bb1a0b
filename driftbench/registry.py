"""One registry idiom for every plug-in family: face backends, clip sources, generator APIs, mitigations and
executors.

A :class:`Registry` maps a name (what a config says: ``face=sface``, ``model=folder``,
``mitigation=reanchor``,
``model.provider=kling``, ``executor=ray``) to a lazy ``"module:attr"`` entry, imported only when that name is
used (as lm-evaluation-harness's ``Registry`` does), so a plain run never imports a backend it does not use. A
name that is not one of driftbench's own is looked up in the family's entry-point group
(:mod:`driftbench.plugins`): an installed package adds a plug-in without a fork.

Adding one of driftbench's own: write the module, add one ``"name": "driftbench.pkg.module:attr"`` entry to
the family's registry (the recipe is in each package's docstring) and one config file under ``conf/<group>/``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """name -> object, from lazy ``"module:attr"`` entries, then from installed plug-ins (entry points)."""

    def __init__(self, kind: str, entries: dict[str, str], *, entry_points: str | None = None,
                 fix: str = "", unknown: str = "") -> None:
        self.kind = kind  #: what a name names, for messages ("face backend", "mitigation")
        self.entries = dict(entries)  #: driftbench's own: name -> "module:attr"
        self.entry_points = entry_points  #: the entry-point group of installed plug-ins, if any
        self.fix = fix  #: how to pick a valid name, for the unknown-name message
        #: the unknown-name message, when a family words it its own way ({name!r} and {fix} are filled in)
        self.unknown = unknown or "unknown {kind} {name!r} -- fix: {fix}"
        self._loaded: dict[str, T] = {}

    def register(self, name: str, target: str | T) -> None:
        """Add ``name``: a ``"module:attr"`` string (imported on first use) or the object itself."""
        if isinstance(target, str):
            self.entries[name] = target
            self._loaded.pop(name, None)
        else:
            self._loaded[name] = target

    def names(self) -> list[str]:
        """driftbench's own names and those registered at run time (installed plug-ins not listed)."""
        return sorted({*self.entries, *self._loaded})

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None

    def find(self, name: str) -> T | None:
        """The object registered as ``name`` (importing its module), else an installed plug-in's, else
        None."""
        if name in self._loaded:
            return self._loaded[name]
        target = self.entries.get(name)
        obj: Any
        if target is not None:
            module, _, attr = target.partition(":")
            obj = getattr(importlib.import_module(module), attr)
        elif self.entry_points is not None:
            from driftbench.plugins import load_entry_point

            obj = load_entry_point(self.entry_points, name)
            if obj is None:
                return None
        else:
            return None
        self._loaded[name] = obj
        return obj

    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name is a :class:`~driftbench.errors.UsageError`
        naming the known ones (exit 2)."""
        obj = self.find(name)
        if obj is None:
            from driftbench.errors import UsageError

            fix = self.fix or f"one of {', '.join(self.names())}"
            raise UsageError(self.unknown.format(kind=self.kind, name=name, fix=fix))
        return obj
