"""Cache of face-level signal tables, keyed by (content hash, sampling, models).

A second run, a new mitigation table, a report or a leaderboard never recomputes a face: the key
is the sha256 of the clip's bytes, the sampling, and the analyzer's signature (backend name, every
weight file's sha256, schema version). Entries are Parquet files written atomically (temp file +
rename), so an interrupted run never leaves a partial entry that a later run would read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from driftbench.io import atomic_path
from driftbench.measure.preload import pandas as pd
from driftbench.weights.store import cached_sha256


def signals_dir() -> Path:
    """The per-frame signal cache ($DRIFTBENCH_CACHE, else ~/.cache/driftbench/signals; not the weights
    store)."""
    env = os.environ.get("DRIFTBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "driftbench" / "signals"


def signal_key(content_sha256: str, sampling_token: str, signature: dict[str, Any]) -> str:
    blob = json.dumps({"content": content_sha256, "sampling": sampling_token, "models": signature},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class SignalCache:
    def __init__(self, root: Path | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root else signals_dir()
        self.enabled = enabled

    def path_for(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.parquet"

    def get(self, key: str) -> pd.DataFrame | None:
        if not self.enabled:
            return None
        p = self.path_for(key)
        if not p.is_file():
            return None
        try:
            df = pd.read_parquet(p)
        except Exception:
            # an unreadable entry is recomputed, never trusted
            return None
        return df

    def put(self, key: str, df: pd.DataFrame) -> None:
        if not self.enabled:
            return
        p = self.path_for(key)
        try:
            with atomic_path(p) as tmp:
                df.to_parquet(tmp, index=False, engine="pyarrow")
        except OSError:
            pass  # a read-only or full cache never fails a run


def content_hash(path: str | Path) -> str:
    return cached_sha256(Path(path))
