"""``mitigation.name: unsharp``: an unsharp mask over the whole frame (a "restore detail" post-process).
It changes no identity on purpose: on the leaderboard it should sit near the re-encoded control."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from driftbench.mitigations.base import FrameBatch, FrameProcessor, RunInfo


class Unsharp(FrameProcessor):
    name = "unsharp"
    defaults: ClassVar[dict[str, Any]] = {"sigma": 1.5, "amount": 0.6}

    def process(self, batch: FrameBatch, info: RunInfo) -> list[np.ndarray]:
        import cv2

        sigma, amount = float(self.params["sigma"]), float(self.params["amount"])
        out = []
        for frame in batch.images:
            blur = cv2.GaussianBlur(frame, (0, 0), sigma)
            out.append(cv2.addWeighted(frame, 1.0 + amount, blur, -amount, 0))
        info.processed += len(out)
        return out
