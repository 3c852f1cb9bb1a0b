"""On-disk cache of generation requests and their results, so a rerun never pays twice.

Every request of a chain has a key: the sha256 of its parameters (provider, endpoint, the request
body with each image replaced by a token for its content or for the step it came from, the seed and
the previous step's key). Under ``<cache_dir>/generators/<provider>/``:

  steps/ab/<key>.json   the record: status (submitted -> succeed -> downloaded, or failed), task id,
                        the provider's video id/URL/duration, the measured duration, attempts
  steps/ab/<key>.mp4    the downloaded video (complete: written atomically after verification)
  steps/ab/<key>.last.jpg  its last frame, when a continuation needs it
  clips/<token>.mp4     videos joined from several steps
  refs/<sha>.png        derived reference images (crops)
  locks/<key>.lock      held while a step is submitted, polled or downloaded, so two processes
                        (a sweep running two mitigations at once) never submit the same request

The task id is written as soon as the provider accepts a request: an interrupted run polls that task
on the next run instead of submitting it again. Records never hold credentials or request headers:
request bodies are stored with their images replaced by tokens.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from driftbench.io import dumps_json, write_text


def request_key(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class StepCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, key: str) -> Path:
        return self.root / "steps" / key[:2]

    def record_path(self, key: str) -> Path:
        return self._dir(key) / f"{key}.json"

    def video_path(self, key: str) -> Path:
        return self._dir(key) / f"{key}.mp4"

    def frame_path(self, key: str) -> Path:
        return self._dir(key) / f"{key}.last.jpg"

    def clip_path(self, token: str) -> Path:
        return self.root / "clips" / f"{token}.mp4"

    def ref_path(self, token: str, suffix: str = ".png") -> Path:
        return self.root / "refs" / f"{token}{suffix}"

    def load(self, key: str) -> dict[str, Any] | None:
        p = self.record_path(key)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) and data.get("key") == key else None

    def save(self, record: dict[str, Any]) -> None:
        write_text(self.record_path(record["key"]), dumps_json(record))

    def done(self, key: str) -> dict[str, Any] | None:
        """The record when the step's video is downloaded and present, else None."""
        rec = self.load(key)
        if rec and rec.get("status") == "downloaded" and self.video_path(key).is_file():
            return rec
        return None

    @contextmanager
    def lock(self, key: str, timeout_s: float = -1) -> Iterator[None]:
        from filelock import FileLock

        path = self.root / "locks" / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path), timeout=timeout_s):
            yield
