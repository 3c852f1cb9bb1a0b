"""Import modules in a background thread while the main thread does other work.

Rendering a run's report imports scipy.stats, matplotlib and Jinja2 (~1 s). That time can overlap
with work that releases the GIL: the networks measuring clips (imports themselves hold the GIL most
of the time, so overlapping one import with another, e.g. with Hydra composing the config, gains
nothing: measured). Python's per-module import locks make a module imported by two
threads at once safe for ordinary packages, but not for every package (scipy's lazily loaded
submodules can be seen half-initialised), so the rule here is stricter: whoever starts a preload
waits for it (:meth:`Preload.wait`) before its own thread may import any of those modules.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

#: what measuring a clip needs only once its frames are analysed: pandas (~0.6 s of GIL-bound import on a
#: 2-core machine) is first used to tabulate the analysed faces. The modules on the way to the first frame
#: take it from here (``from driftbench.measure.preload import pandas as pd``, a :func:`deferred` module), so
#: it is imported by the preload, overlapping the networks, instead of before the first frame. pandas loads
#: no submodule lazily (no module ``__getattr__``), so a measuring thread that reaches it first simply waits
#: on Python's per-module import lock: the exception to the rule above.
MEASURE_MODULES = ("pandas",)

#: what rendering the report imports (~1 s)
REPORT_MODULES = ("scipy.stats", "matplotlib.figure", "matplotlib.backends.backend_agg", "jinja2")


def report_modules(n_clips: int, charts: str = "browser") -> tuple[str, ...]:
    """What rendering the report of a run of ``n_clips`` clips imports: one clip's statistics need no
    scipy.stats (:mod:`driftbench.results.stats`), whose import alone costs ~0.5 s of CPU; charts drawn in
    the browser (``report.charts=browser``) need no matplotlib (~0.3 s of CPU to import)."""
    return tuple(m for m in REPORT_MODULES if not (m.startswith("scipy") and n_clips <= 1)
                 and not (m.startswith("matplotlib") and charts != "png"))


class _Deferred:
    """A module imported on first attribute access, through :func:`importlib.import_module` (thread-safe:
    importlib's per-module locks; ``importlib.util.LazyLoader`` is not thread-safe before Python 3.12)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<deferred module {self._name!r}>"


def deferred(name: str) -> Any:
    """``pd = deferred("pandas")``: the module's attributes, imported when first used (a module imported
    on the way to a clip's first frame uses it where a top-level import would delay that frame). Type
    checkers see the real import under ``TYPE_CHECKING``."""
    return _Deferred(name)


if TYPE_CHECKING:
    import pandas as pandas  # the real module, re-exported for type checkers
else:
    #: ``from driftbench.measure.preload import pandas as pd``: what the modules on the way to a clip's first
    #: frame use instead of ``import pandas`` (see :data:`MEASURE_MODULES`)
    pandas = deferred("pandas")


#: open while a gated preload waits for the clip measurement in this process to settle
_SETTLED = threading.Event()
_SETTLED.set()


def measuring_settled() -> None:
    """Said by the measurement once its own imports and model loading are done (cv2, av, MediaPipe and
    the networks loaded; or the clip's signals came from the cache): from then on its threads run native
    code that releases the GIL, and a gated :class:`Preload` starts. Before that, importing the report's
    modules (~1 s of GIL-bound Python) only delays the first frame: both imports wait on one GIL."""
    _SETTLED.set()


class Preload:
    """Imports ``modules`` in order on a daemon thread; a module that fails to import is skipped
    (the error surfaces where the module is really used). ``gated``: the thread starts importing once
    :func:`measuring_settled` is said in this process (or at :meth:`wait`): for clips measured in-process."""

    def __init__(self, modules: Iterable[str], *, gated: bool = False) -> None:
        self.modules = tuple(modules)
        if gated:
            _SETTLED.clear()
        self._thread = threading.Thread(target=self._load, name="driftbench-preload", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        _SETTLED.wait()
        for name in self.modules:
            try:
                importlib.import_module(name)
            except Exception:
                continue

    def wait(self) -> None:
        _SETTLED.set()
        self._thread.join()
