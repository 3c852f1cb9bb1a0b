"""Follow the character's face through a clip (a pure function of the face-level table).

With one face per sample the choice is trivial. With several, each candidate is scored by its
identity similarity to the reference and to the track's previous face, plus box overlap with the
previous face, so the character is followed even while its identity drifts and a bystander does not
take over. Samples without a usable face stay in the table with ``face_found = False``.
"""

from __future__ import annotations

import numpy as np

from driftbench.measure.preload import pandas as pd

#: weight of box overlap (IoU with the previous chosen face) in the candidate score
IOU_WEIGHT = 0.5


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    ix = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    iy = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return float(inter / union) if union > 0 else 0.0


def choose_faces(faces: pd.DataFrame, reference: np.ndarray | None) -> pd.DataFrame:
    """One row per sample: the character's face (or a no-face row), in sample order.

    ``reference`` is the L2-normalised reference embedding; with None (first-frame reference not
    known yet) the largest face of the first sample starts the track.
    """
    if faces["n_faces"].max() <= 1:
        # one face or none per sample (the common case): nothing to choose between
        first = faces.groupby("sample_index", sort=True).head(1)
        out = first.copy()
        out["face_found"] = (out["face_index"] >= 0) & out["emb"].notna()
        return out.reset_index(drop=True)
    chosen: list[int] = []
    prev_emb: np.ndarray | None = None
    prev_box: np.ndarray | None = None
    for _, grp in faces.groupby("sample_index", sort=True):
        cands = grp[(grp["face_index"] >= 0) & grp["emb"].notna()]
        if cands.empty:
            chosen.append(int(grp.index[0]))
            continue
        if len(cands) == 1:
            best = int(cands.index[0])
        else:
            scores = []
            for idx, row in cands.iterrows():
                e = np.asarray(row["emb"], dtype=np.float32)
                s = 0.0
                if reference is not None:
                    s += float(e @ reference)
                if prev_emb is not None:
                    s += float(e @ prev_emb)
                if prev_box is not None:
                    s += IOU_WEIGHT * _iou(np.asarray(row["box"]), prev_box)
                if reference is None and prev_emb is None:
                    s = float(row["face_size"])  # start: the largest face
                scores.append((s, -int(row["face_index"]), int(idx)))
            best = max(scores)[2]
        row = faces.loc[best]
        prev_emb = np.asarray(row["emb"], dtype=np.float32)
        prev_box = np.asarray(row["box"], dtype=np.float64)
        chosen.append(best)
    out = faces.loc[chosen].copy()
    out["face_found"] = (out["face_index"] >= 0) & out["emb"].notna()
    return out.reset_index(drop=True)
