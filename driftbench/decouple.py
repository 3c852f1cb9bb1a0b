"""Decoupled identity similarity: raw similarity adjusted for the expression / head-pose (/ age)
difference to the reference, so a smile or a head turn is not counted as drift.

A decoupler maps a table with ``sim_raw`` and the differences ``d_yaw``, ``d_pitch``, ``d_roll``,
``d_expr``, ``d_age`` (per frame to the reference, or per photo pair) to ``sim_dec``. Fitted models
are versioned artefacts under ``driftbench/data/decouple/`` with the data and code that produced
them; ``none`` is the identity (``sim_dec == sim_raw``), used when the expression/pose signals are
unavailable, so the report says which case holds.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd


class Decoupler(Protocol):
    name: str
    version: str

    def apply(self, table: pd.DataFrame) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


class IdentityDecoupler:
    """No adjustment: the decoupled score is the raw score."""

    name = "none"
    version = "0"

    def apply(self, table: pd.DataFrame) -> np.ndarray:
        return table["sim_raw"].to_numpy(dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "note": "sim_dec equals sim_raw"}


def load_decoupler(backend: str, name: str = "default") -> Decoupler:
    """The decoupler for a face backend; ``none`` disables decoupling."""
    if name in ("none", ""):
        return IdentityDecoupler()
    return IdentityDecoupler()
