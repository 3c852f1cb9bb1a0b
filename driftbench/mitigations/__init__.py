"""Mitigations: methods that should reduce drift. ``none`` is the baseline every leaderboard row is
paired against. Post-processing mitigations transform clips before measurement; generation-time
strategies are handed to the model (clip source)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from driftbench.sources.base import Clip, Skipped


def apply_post(clips: list[Clip], cfg: Any, settings: Any, cache_dir: Path) -> tuple[list[Clip], list[Skipped]]:
    """Apply a post-processing mitigation to every clip (cached); returns the new clips."""
    from driftbench.errors import UsageError

    raise UsageError(f"post-processing mitigation {cfg.name!r} is not available yet")
