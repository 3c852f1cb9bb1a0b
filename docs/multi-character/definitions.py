"""Leakage definitions tried on cast_eval's composites (docs/MULTI-CHARACTER.md, "Definitions tried").

    [DRIFTBENCH_MODELS=../shared/models] DRIFTBENCH_CAST_WORK=DIR \
        python docs/multi-character/definitions.py OUT.json

Measures the constant and morph composites of every cast_eval pair (reusing cast_eval's composites and signal
cache in DRIFTBENCH_CAST_WORK), keeps per sample the embeddings of both characters and their references, and
recomputes leakage_max, the held-out verdict and Spearman(alpha, trailing median) per clip for each form, with
cast_eval's own rules (swap samples left out, LEAK_WINDOW_S trailing median, threshold = highest constant
leakage_max of the pairs sharing no person + LEAK_MARGIN)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from driftbench.measure import cast, drift
from driftbench.measure.clip import MeasureSettings, get_analyzer, measure_clip
from driftbench.sources.base import Clip
from driftbench.sources.composite import pair_material
from driftbench.validity import cast_eval as ce
from driftbench.validity.calibration import threshold_for

FORMS = {
    "C0 cos(fA,rB) - cos(rA,rB) (before)": lambda b, a, dec, k, t: b - k,
    "C1 cos(fA,rB) - cos(fA,rA) + 1 - cos(rA,rB)": lambda b, a, dec, k, t: b - a + 1 - k,
    "C2 C1 / (1 - cos(rA,rB))": lambda b, a, dec, k, t: (b - a + 1 - k) / (1 - k),
    "C3 C1 with the decoupled own term sim_dec": lambda b, a, dec, k, t: b - dec + 1 - k,
    "C5 cos(fA,rB) - cos(fA,rA) minus its median over the reference second": lambda b, a, dec, k, t:
        (b - a) - np.nanmedian((b - a)[t < 1.0 - 1e-9]),
    "C5d C5 with the decoupled own term": lambda b, a, dec, k, t:
        (b - dec) - np.nanmedian((b - dec)[t < 1.0 - 1e-9]),
    "C5n C5 / (1 - cos(rA,rB))": lambda b, a, dec, k, t: ((b - a) - np.nanmedian((b - a)[t < 1.0 - 1e-9]))
        / (1 - k),
    "C7u cos(fA,rB) - cos(rA,rB) cos(fA,rA) (adopted)": lambda b, a, dec, k, t: b - k * a,
    "C7 C7u / sqrt(1 - cos(rA,rB)^2)": lambda b, a, dec, k, t: (b - k * a) / np.sqrt(1 - k * k),
}


def capture(work: Path) -> tuple[str, list[dict]]:
    got: dict = {}
    orig = cast.cast_summary

    def spy(faces, assignment, refs, names, c, **kw):  # type: ignore[no-untyped-def]
        dim = refs.shape[1]
        got.update(t=assignment["t"].to_numpy(np.float64), c=c, kw=kw, refs=np.array(refs),
                   embs=[cast._embs(faces, assignment[f"face_{i}"].to_numpy(), dim)
                         for i in range(len(names))])
        return orig(faces, assignment, refs, names, c, **kw)

    cast.cast_summary = spy
    try:
        settings = MeasureSettings(cache_dir=str(work / "cache"), download=True)
        key = get_analyzer(settings).info.threshold_key or settings.backend
        settings = replace(settings, threshold=threshold_for(key)[0])
        real = Path(__file__).resolve().parents[3] / "shared" / "data" / "video" / "real"
        persons = ce._person(real / "manifest.csv")
        members = [cast.Member("L", region=(0.0, 0.0, 0.5, 1.0)).to_json(),
                   cast.Member("R", region=(0.5, 0.0, 1.0, 1.0)).to_json()]
        recs = []
        for left, right in ce.pairs(real / "manifest.csv"):
            mat = pair_material(str(real / left), str(real / right), work / "composites", fps=ce.FPS,
                                duration_s=ce.DURATION_S, size=ce.SIZE)
            rec: dict = {"pair": f"{Path(left).stem}+{Path(right).stem}",
                         "people": {persons[left], persons[right]}}
            for kind in ("constant", "morph"):
                for ch in ("L", "R"):
                    clip = Clip(f"{kind}#{ch}", mat[kind]["path"], ch, meta={"cast": members})
                    r = measure_clip(clip, settings)
                    cap = dict(got, sim_dec=r.frames["sim_dec"].to_numpy())
                    if kind == "morph":
                        cap["alpha"] = np.interp(cap["t"], mat[kind]["t"], mat[kind]["alpha"])
                    rec[f"{kind}_{ch}"] = cap
            recs.append(rec)
    finally:
        cast.cast_summary = orig
    return key, recs


def figures(cap: dict, form, window_s: float) -> tuple[np.ndarray, float]:
    t, c = cap["t"], cap["c"]
    fa, fb = cap["embs"][c], cap["embs"][1 - c]
    ra, rb = cap["refs"][c], cap["refs"][1 - c]
    s = form(fa @ rb, fa @ ra, cap["sim_dec"], float(ra @ rb), t)
    s = np.where(drift.smooth(t, cast.swap_series(fa, fb, ra, rb), cap["kw"]["smooth_s"]) > 0, np.nan, s)
    keep = cast.LEAK_WINDOW_S
    cast.LEAK_WINDOW_S = window_s
    try:
        trail, lmax, _ = cast.leakage_figures(t, s, cap["kw"]["window_s"])
    finally:
        cast.LEAK_WINDOW_S = keep
    return trail, lmax


def evaluate(recs: list[dict], form, window_s: float) -> dict:
    const = [max(figures(r[f"constant_{ch}"], form, window_s)[1] for ch in "LR") for r in recs]
    morph = [max(figures(r[f"morph_{ch}"], form, window_s)[1] for ch in "LR") for r in recs]
    rho = []
    for r in recs:
        cap = r["morph_L"]
        trail, _ = figures(cap, form, window_s)
        ok = np.isfinite(trail)
        rho.append(float(spearmanr(cap["alpha"][ok], trail[ok]).statistic))
    cf = mf = 0
    for i, r in enumerate(recs):
        thr = ce.leak_threshold([v for j, v in enumerate(const)
                                 if j != i and not r["people"] & recs[j]["people"]])
        cf += const[i] > thr
        mf += morph[i] > thr
    return {"spearman_ge_0_9": sum(x >= 0.9 for x in rho), "spearman_min": round(min(rho), 3),
            "constant_flags_heldout": int(cf), "morph_flags_heldout": int(mf),
            "threshold_all": round(ce.leak_threshold(const), 4),
            "spearman": {r["pair"]: round(x, 3) for r, x in zip(recs, rho, strict=True)}}


def main(out: str) -> None:
    work = Path(os.environ.get("DRIFTBENCH_CAST_WORK", Path(tempfile.gettempdir()) / "driftbench-cast-eval"))
    key, recs = capture(work)
    rows = [{"form": name, "window_s": w, **evaluate(recs, f, w)}
            for name, f in FORMS.items() for w in (cast.LEAK_WINDOW_S,)]
    rows += [{"form": name, "window_s": w, **evaluate(recs, FORMS[name], w)}
             for name in (next(iter(FORMS)), list(FORMS)[7]) for w in (1.0, 3.0)]
    Path(out).write_text(json.dumps({"key": key, "rows": rows}, indent=1) + "\n")
    for r in rows:
        print(key, r["window_s"], r["form"],
              {k: v for k, v in r.items() if k not in ("form", "spearman", "window_s")})


if __name__ == "__main__":
    main(sys.argv[1])
