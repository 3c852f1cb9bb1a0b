"""Plug-ins without a fork: what an installed package adds through Python entry points.

- ``driftbench.sources``: ``name = "pkg.module:factory"``, a clip source for ``model.name: name``
  (``factory(cfg, ctx) -> ClipSource``, see :mod:`driftbench.sources.base`).
- ``driftbench.mitigations``: ``name = "pkg.module:Class"``, a post-processing mitigation for
  ``mitigation.name: name`` (a :class:`driftbench.mitigations.base.FrameProcessor` subclass).
- ``driftbench.faces``: ``name = "pkg.module:Class"``, a face backend for ``face.backend: name``
  (see :mod:`driftbench.faces`).

Every family is a :class:`driftbench.registry.Registry`: driftbench's own names are lazy ``"module:attr"``
entries; this lookup is its fallback for any other name.

Their config options (``model/*.yaml``, ``mitigation/*.yaml``, a generator API described for the generic
HTTP adapter) come from a config folder: ``driftbench run -cd DIR`` / ``hydra.searchpath``, or, for an
installed package, Hydra's own SearchPathPlugin (``hydra_plugins/`` in the package). Entry points are read
only when a name is not one of driftbench's own, so plain runs pay nothing for them.
See examples/plugin/ for a package that does all three.
"""

from __future__ import annotations

from typing import Any


def entry_points(group: str) -> dict[str, Any]:
    """name -> EntryPoint of every installed distribution's ``group``."""
    from importlib.metadata import entry_points as eps

    return {ep.name: ep for ep in eps(group=group)}


def load_entry_point(group: str, name: str) -> Any | None:
    """The object an installed package registered as ``name`` in ``group``, or None when none did.
    A plug-in that fails to import is a usage error naming the package and the fix."""
    ep = entry_points(group).get(name)
    if ep is None:
        return None
    try:
        return ep.load()
    except Exception as exc:
        from driftbench.errors import UsageError

        dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
        raise UsageError(f"plug-in {name!r} ({group} = {ep.value!r}, package {dist}) failed to load: "
                         f"{type(exc).__name__}: {exc} -- fix: reinstall or update that package") from None
