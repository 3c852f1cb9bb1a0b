"""Adversarial checks of the benchmark itself: two "mitigations" that win on identity by cheating.

A drift benchmark that ranks these first is measuring the wrong thing, so they exist to be caught
(the expressivity flags of the leaderboard must fire on them):

- ``freeze``: every frame replaced by the first reference-aligned frame: a still image has perfect
  identity and no expression, pose or motion at all.
- ``paste``: the reference face, aligned by a 5-point similarity only (no dense warp), blended onto
  every frame: identity is the reference's, and so are its expression and pose.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from driftbench.mitigations.base import FrameBatch, FrameProcessor, RunInfo
from driftbench.mitigations.realign import REALIGN_DEFAULTS, pick_reference, transfer_faces


class Freeze(FrameProcessor):
    """Every frame becomes the first frame with a face, re-aligned to the reference."""

    name = "freeze"
    defaults = REALIGN_DEFAULTS

    def process(self, batch: FrameBatch, info: RunInfo) -> list[np.ndarray]:
        frozen: np.ndarray | None = getattr(self, "_frozen", None)
        out = []
        for img, face in zip(batch.images, batch.faces, strict=True):
            if frozen is None and face is not None:
                ref = pick_reference(self.ref, float(face.yaw), float(self.params["mirror_margin"]))
                (frozen,) = transfer_faces(
                    ref.image, ref.landmarks, [img], [face.landmarks], self.params, self.device
                )
                self._frozen = frozen
            if frozen is not None:
                info.processed += 1
            out.append(img if frozen is None else frozen)
        return out


PASTE_DEFAULTS: dict[str, Any] = {
    "blend": "feather",
    "strength": 1.0,
    "color_match": True,
    "feather": 0.04,
    "shrink": 0.03,
    "max_fps": 0.0,
    "render": "sampled",
}


class Paste(FrameProcessor):
    """The reference face pasted on every frame with a 5-point similarity alignment (over the union
    of its face oval and the frame's, so none of the frame's face shows through)."""

    name = "paste"
    defaults = PASTE_DEFAULTS

    def process(self, batch: FrameBatch, info: RunInfo) -> list[np.ndarray]:
        from driftbench.mitigations.warp import (
            affine_warp,
            apply_affine,
            blend_into,
            color_match,
            face_box,
            face_size,
            region_mask,
            similarity_to,
        )

        out = []
        for img, face in zip(batch.images, batch.faces, strict=True):
            if face is None:
                out.append(img)
                continue
            a = similarity_to(self.ref.lm5, face.lm5)
            lm = apply_affine(self.ref.landmarks, a)  # the reference's face where it lands in the frame
            box = face_box(lm, img.shape, margin=0.12)
            x0, y0, w, h = (int(v) for v in box)
            shifted = a.copy()
            shifted[:, 2] -= (x0, y0)
            warped, valid = affine_warp(self.ref.image, shifted, (w, h), device=self.device)
            fs = face_size(lm)
            region = img[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
            hh, ww = region.shape[:2]
            # the pasted face covers its own oval and the frame's, so no part of the frame's face shows
            feather, shrink = float(self.params["feather"]) * fs, float(self.params["shrink"]) * fs
            mask = np.maximum(region_mask(lm, box, feather=feather, shrink=shrink),
                              region_mask(face.landmarks, box, feather=feather, shrink=shrink))
            mask = mask[:hh, :ww] * valid[:hh, :ww]
            warped = warped[:hh, :ww]
            if self.params["color_match"]:
                warped = color_match(warped, region, mask)
            out.append(blend_into(img, warped, mask * float(self.params["strength"]), box,
                                  mode=str(self.params["blend"])))
            info.processed += 1
        return out
