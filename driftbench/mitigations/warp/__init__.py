"""Dense landmark-driven face warps and blending, shared by the synthetic drift generator and the
post-processing mitigations.

Why a thin-plate spline: MediaPipe gives 478 landmarks per face, dense enough that a smooth
interpolant through a subset of them (contours of the face, eyes, brows, lips, nose, plus a few
cheek/forehead points) moves every pixel of one face onto another face's geometry, expression and
pose, with no triangle seams. The spline maps *output* pixels to *source* pixels (backward
mapping), is solved for a batch of frames at once with ``torch.linalg.solve``, evaluated on a
coarse grid (every ``stride`` pixels; the field is smooth) and upsampled, and the image is resampled
with ``torch.nn.functional.grid_sample``: the same code runs on CUDA when ``device`` allows it and on
the CPU otherwise. torch is imported only inside the functions that need it.

Blending (per frame, small face boxes, so OpenCV on the CPU): a feathered mask from the face hull,
optionally with the frame's own eyes and inner mouth cut out (expression survives), Reinhard colour
matching in Lab inside the face, and a feathered alpha blend or OpenCV ``seamlessClone``.

:class:`FaceMesh` finds the 478 landmarks of the main face of any image (YuNet box, then
:class:`driftbench.faces.landmarker.Landmarker` on the crop) and :class:`Mp4Writer` writes H.264 MP4
with PyAV.

Modules: :mod:`.landmarks` (mesh geometry, FaceMesh), :mod:`.tps` (thin-plate spline and affine warps),
:mod:`.masks` (masks, colour matching, blending), :mod:`.mp4` (MP4 output). The names below are re-exported
for the synthetic source and the mitigations.
"""

from driftbench.mitigations.warp.landmarks import (
    BROWS,
    FACE_OVAL,
    INTERIOR,
    LEFT_BROW,
    LEFT_EYE,
    LEFT_LID_PAIRS,
    LIPS_INNER,
    LIPS_OUTER,
    NOSE,
    RIGHT_BROW,
    RIGHT_EYE,
    RIGHT_LID_PAIRS,
    WARP_VERSION,
    FaceMesh,
    MeshFace,
    apply_affine,
    control_indices,
    five_points,
    mesh_weights,
    similarity_to,
)
from driftbench.mitigations.warp.masks import (
    blend_into,
    color_match,
    detail_weight,
    face_box,
    face_size,
    oval_mask,
    region_mask,
)
from driftbench.mitigations.warp.mp4 import (
    Mp4Writer,
    Timeline,
    sampled_indices,
    stream_timeline,
)
from driftbench.mitigations.warp.tps import (
    Layer,
    WarpBatch,
    affine_warp,
    border_anchors,
    torch_device,
    tps_eval,
    tps_fit,
    tps_warp,
    tps_warp_layers,
)

__all__ = [
    "BROWS",
    "FACE_OVAL",
    "INTERIOR",
    "LEFT_BROW",
    "LEFT_EYE",
    "LEFT_LID_PAIRS",
    "LIPS_INNER",
    "LIPS_OUTER",
    "NOSE",
    "RIGHT_BROW",
    "RIGHT_EYE",
    "RIGHT_LID_PAIRS",
    "WARP_VERSION",
    "FaceMesh",
    "Layer",
    "MeshFace",
    "Mp4Writer",
    "Timeline",
    "WarpBatch",
    "affine_warp",
    "apply_affine",
    "blend_into",
    "border_anchors",
    "color_match",
    "control_indices",
    "detail_weight",
    "face_box",
    "face_size",
    "five_points",
    "mesh_weights",
    "oval_mask",
    "region_mask",
    "sampled_indices",
    "similarity_to",
    "stream_timeline",
    "torch_device",
    "tps_eval",
    "tps_fit",
    "tps_warp",
    "tps_warp_layers",
]
