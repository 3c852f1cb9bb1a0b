"""Face verification on labelled real photos: the evidence behind every identity threshold.

Data sets (from ../shared/data/faces, never copied into the project):
- ``deepface/``: 61 photos of 13 people in its pairs CSV; the identities are the connected components
  of the "Yes" pairs, which labels all 1830 pairs (140 same / 1690 different) and resolves a
  false-accept rate of 0.1 %.
- ``photos/``: 17 single-face photos of 8 people with ``labels.csv`` (group photos excluded).

Metric cards: ``auc`` (ROC AUC, higher is better), ``eer`` (equal-error rate, lower is better) and its
threshold, ``threshold_at_far`` (the similarity above which different people fall only at the given
false-accept rate), ``tar_at_far`` (same-person pairs accepted at that threshold), ``d_prime``
(separation of the two score distributions in pooled standard deviations), ``margin`` (worst
same-person score minus worst different-person score; positive = perfectly separable).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class LabelledPhotos:
    paths: list[Path]
    labels: list[str]
    source: str


def deepface_photos(root: Path) -> LabelledPhotos:
    """Images of deepface's pairs CSV, labelled by connected components of its "Yes" pairs."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = pd.read_csv(root / "face-recognition-pivot.csv")
    pairs["a"] = pairs["file_x"].map(lambda s: Path(s).name)
    pairs["b"] = pairs["file_y"].map(lambda s: Path(s).name)
    names = sorted(set(pairs["a"]) | set(pairs["b"]))
    idx = {n: i for i, n in enumerate(names)}
    yes = pairs[pairs["decision"].str.lower() == "yes"]
    graph = coo_matrix((np.ones(len(yes)), (yes["a"].map(idx), yes["b"].map(idx))), shape=(len(names),) * 2)
    _, comp = connected_components(graph, directed=False)
    no = pairs[pairs["decision"].str.lower() == "no"]
    clash = [(a, b) for a, b in zip(no["a"], no["b"], strict=True) if comp[idx[a]] == comp[idx[b]]]
    if clash:
        raise ValueError(f"{root}: 'No' pairs inside one identity component: {clash[:3]}")
    return LabelledPhotos([root / n for n in names], [f"id{comp[idx[n]]:02d}" for n in names],
                          "deepface unit-test photos (pairs CSV, connected components)")


def labelled_photos(root: Path) -> LabelledPhotos:
    lab = pd.read_csv(root / "labels.csv")
    lab = lab[lab["person"] != "group"]
    return LabelledPhotos(
        [root / f for f in lab["file"]], list(lab["person"]), "labelled photos (labels.csv)"
    )


def all_pairs(labels: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (i, j) of every unordered pair and whether it is the same person."""
    ij = np.array(list(combinations(range(len(labels)), 2)), dtype=int)
    same = np.array([labels[i] == labels[j] for i, j in ij], dtype=bool)
    return ij[:, 0], ij[:, 1], same


def verification_metrics(scores: np.ndarray, same: np.ndarray, fars: tuple[float, ...] = (0.001, 0.01)
                         ) -> dict[str, Any]:
    """ROC figures of similarity ``scores`` (higher = more alike) for pairs labelled ``same``."""
    from sklearn.metrics import roc_auc_score, roc_curve

    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    fpr, tpr, thr = roc_curve(same.astype(int), scores)
    fnr = 1.0 - tpr
    k = int(np.nanargmin(np.abs(fnr - fpr)))
    pos, neg = scores[same], scores[~same]
    pooled = np.sqrt((pos.var(ddof=1) + neg.var(ddof=1)) / 2.0)
    out: dict[str, Any] = {
        "n_same": int(same.sum()), "n_diff": int((~same).sum()),
        "auc": float(roc_auc_score(same.astype(int), scores)),
        "eer": float((fpr[k] + fnr[k]) / 2.0),
        "eer_threshold": float(thr[k]),
        "d_prime": float((pos.mean() - neg.mean()) / pooled) if pooled > 0 else float("inf"),
        "same_min": float(pos.min()), "same_mean": float(pos.mean()),
        "diff_max": float(neg.max()), "diff_mean": float(neg.mean()),
        "margin": float(pos.min() - neg.max()),
    }
    neg_sorted = np.sort(neg)[::-1]
    for far in fars:
        # the threshold: different-person pairs at or above it make at most `far` of all of them
        n_allowed = int(np.floor(far * len(neg)))
        thr_far = float(neg_sorted[n_allowed]) + 1e-6 if n_allowed < len(neg) else float(neg.min())
        out[f"threshold_at_far_{far:g}"] = thr_far
        out[f"tar_at_far_{far:g}"] = float((pos >= thr_far).mean())
        out[f"far_at_far_{far:g}"] = float((neg >= thr_far).mean())
    return out


def photo_faces(analyzer: Any, photos: LabelledPhotos,
                faces_of: Callable[[Path], pd.DataFrame] | None = None) -> pd.DataFrame:
    """One row per photo: its largest face's signals (or face_found False). ``faces_of(path)`` gives a
    photo's face-level table (default: analyse it now; `validate` passes the signal cache's lookup)."""
    from driftbench.measure.video import read_image

    if faces_of is None:
        def faces_of(path: Path) -> pd.DataFrame:
            return analyzer.analyze_image(read_image(path))

    rows = []
    for path, label in zip(photos.paths, photos.labels, strict=True):
        faces = faces_of(path)
        faces = faces[faces["face_index"] >= 0]
        if faces.empty:
            rows.append({"file": path.name, "label": label, "face_found": False})
            continue
        best = faces.sort_values("face_size", ascending=False).iloc[0].to_dict()
        rows.append({**best, "file": path.name, "label": label, "face_found": True})
    return pd.DataFrame(rows)


def pair_table(faces: pd.DataFrame) -> pd.DataFrame:
    """Every pair of photos with a face: raw cosine and pose/expression/age differences."""
    ok = faces[faces["face_found"]].reset_index(drop=True)
    emb = np.stack([np.asarray(e, np.float32) for e in ok["emb"]])
    i, j, same = all_pairs(list(ok["label"]))
    sim = np.einsum("nd,nd->n", emb[i], emb[j])
    out = pd.DataFrame({"a": ok["file"].to_numpy()[i], "b": ok["file"].to_numpy()[j], "same": same,
                        "sim_raw": sim})
    # the embeddings, as in a frame table (frame = b, reference = a), for embedding-space decouplers
    out["emb"] = pd.Series(list(emb[j]), dtype=object)
    out["ref_emb"] = pd.Series(list(emb[i]), dtype=object)
    for col in ("yaw", "pitch", "roll"):
        v = pd.to_numeric(ok[col], errors="coerce").to_numpy()
        out[f"d_{col}"] = np.abs(v[i] - v[j])
    bs = [
        np.asarray(b, np.float32) if b is not None else None for b in ok.get("blendshapes", [None] * len(ok))
    ]
    d_expr = [float(np.linalg.norm(bs[a] - bs[b])) if bs[a] is not None and bs[b] is not None else np.nan
              for a, b in zip(i, j, strict=True)]
    out["d_expr"] = d_expr
    age = pd.to_numeric(ok["age"], errors="coerce").to_numpy()
    out["d_age"] = age[j] - age[i]
    return out
