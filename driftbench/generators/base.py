"""Plain values shared by the generator adapters: what one generation step asks for, and the errors a
step can end with. Adapters know nothing of Hydra or the CLI (DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: step kinds of a chain: the opening image-to-video, a native or last-frame continuation, and a
#: continuation re-anchored on the character's reference image
STEP_KINDS = ("first", "extend", "reanchor")


class GenerationError(Exception):
    """One step (so one chain) failed; the source records a Skipped entry and the run goes on."""

    def __init__(self, reason: str, problem: str, fix: str) -> None:
        self.reason = reason
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} -- fix: {fix}")


class AuthFailed(GenerationError):
    """The provider refused our credentials: every further request would fail too, so the source stops
    submitting and measures what it already has."""


class BudgetExceeded(GenerationError):
    """A chain needed more requests than the confirmed spend allows."""


@dataclass(frozen=True)
class ImageRef:
    """An image sent to a provider. ``token`` stands for it in cache keys (its content hash, or the
    step it was taken from), so a key never depends on how the bytes were encoded."""

    path: Path
    token: str


@dataclass(frozen=True)
class StepInput:
    """Everything one request of a chain depends on."""

    kind: str  # one of STEP_KINDS
    index: int  # position in the chain (0 = the opening)
    prompt: str
    negative_prompt: str
    seed: int
    duration_s: float  # requested segment length
    image: ImageRef | None  # start image: the character's start image, or the parent's last frame
    reference: ImageRef | None  # the character's reference image (re-anchoring)
    parent_key: str | None  # cache key of the previous step
    parent: dict[str, Any] | None  # the previous step's record (task id, video id/url)
