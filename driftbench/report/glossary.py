"""Metric cards for the report's glossary: what each figure measures, its units, which direction is
better, how its confidence interval is made, and the default gate tolerance (from
:data:`driftbench.gate.TRACKED` where the gate tracks it). The module docstrings of drift, stats,
leaderboard and expressivity hold the same cards next to the code that computes them."""

from __future__ import annotations

from typing import Any

BOOT = "seeded BCa bootstrap over clips, 95%"
BOOT_PAIRS = "seeded BCa bootstrap over pairs, 95%; p: Wilcoxon signed-rank"

_CARDS: list[dict[str, str]] = [
    {"metric": "sim_dec_at_{T}s", "what": "decoupled identity similarity to the reference: median over "
     "[T-2 s, T) (raw similarity adjusted for the expression/pose/age difference to the reference)",
     "units": "cosine similarity", "direction": "higher is better", "ci": BOOT},
    {"metric": "sim_raw_at_{T}s", "what": "raw cosine similarity of the identity embeddings, median over [T-2 s, T)",
     "units": "cosine similarity", "direction": "higher is better", "ci": BOOT},
    {"metric": "opening_{raw,dec}", "what": "median similarity over 2 s after the frames a first-frame reference is "
     "built from ([1, 3 s); [0, 2 s) with reference images): the clip's level, not drift",
     "units": "cosine similarity", "direction": "higher is better", "ci": BOOT},
    {"metric": "drift_dec_at_{T}s", "what": "opening minus sim@T: how far the face moved away from where it started",
     "units": "cosine similarity", "direction": "lower is better", "ci": BOOT},
    {"metric": "drift_{raw,dec}_at_end", "what": "opening minus the median similarity over the clip's last 2 s: the "
     "horizon every clip reaches, whatever its length", "units": "cosine similarity", "direction": "lower is better",
     "ci": BOOT},
    {"metric": "min_bin_{raw,dec}", "what": "the clip's lowest 1 s bin median (its worst second)",
     "units": "cosine similarity", "direction": "higher is better", "ci": BOOT},
    {"metric": "slope_{raw,dec}_per_min", "what": "Theil-Sen slope of the 1 s bin medians", "units": "cosine / min",
     "direction": "closer to 0 (negative = drift)", "ci": BOOT},
    {"metric": "time_to_loss_s", "what": "onset of the first run of >= 2 s in which the smoothed decoupled similarity "
     "stays below the backend's calibrated threshold (FAR 0.1%) or the face is missing (loss_cause identity / "
     "no_face; a clip without any face is lost at 0); empty = never lost (right-censored)",
     "units": "seconds", "direction": "later (or never) is better", "ci": "Kaplan-Meier (scipy.stats.ecdf)"},
    {"metric": "time_to_drift_s", "what": "onset of drift below the loss bar: the first 5 s run in which the opening "
     "minus the trailing 5 s median exceeds what identity-constant real footage shows (<= 1% of held-out real "
     "clips); drifting = 0/1; empty = censored", "units": "seconds", "direction": "later (or never) is better",
     "ci": "Kaplan-Meier (scipy.stats.ecdf)"},
    {"metric": "longest_no_face_s", "what": "longest run of samples without the character's face",
     "units": "seconds", "direction": "lower is better", "ci": BOOT},
    {"metric": "survival_at_{T}s", "what": "Kaplan-Meier share of clips still the same person at T s; clips that "
     "end without a loss are censored at their duration; empty (not measurable) when no clip was observed to T, "
     "even one lost earlier",
     "units": "share 0-1", "direction": "higher is better", "ci": "exponential Greenwood (log-log), 95%"},
    {"metric": "median_survival_s", "what": "time at which the Kaplan-Meier curve falls to 0.5; 'not reached' when "
     "most clips keep their identity", "units": "seconds", "direction": "higher is better",
     "ci": "where the band bounds cross 0.5, 95%"},
    {"metric": "face_rate", "what": "share of samples in which the character's face was found; stands beside every "
     "identity figure", "units": "share 0-1", "direction": "higher is better", "ci": BOOT},
    {"metric": "drift_reduction_{T}s", "what": "baseline drift minus mitigation drift at T s on the same (character, "
     "prompt, seed)", "units": "cosine similarity", "direction": "higher is better", "ci": BOOT_PAIRS},
    {"metric": "survival_gain_s", "what": "paired gain in identity-survival time, each pair restricted to its "
     "shorter clip", "units": "seconds", "direction": "higher is better", "ci": BOOT_PAIRS},
    {"metric": "face_rate_delta", "what": "mitigation face rate minus its baseline's; a drop beyond 5 points flags "
     "the row", "units": "share", "direction": "higher is better", "ci": BOOT_PAIRS},
    {"metric": "expressivity_retained", "what": "mean over expression spread/speed, head-pose range/speed, landmark "
     "motion and face-crop change of min(mitigation / paired baseline, 1.5); below the floor (default 0.70) the row "
     "is flagged", "units": "x baseline", "direction": "higher is better (1 = as lively)", "ci": BOOT_PAIRS},
    {"metric": "expressivity_vs_real", "what": "the same index against real identity-constant footage measured with "
     "the same backend (driftbench/data/expressivity_reference.json)", "units": "x real footage",
     "direction": "higher is better", "ci": BOOT},
    {"metric": "ref_copy", "what": "closeness of each frame's face to the reference in pose, expression and pixels "
     "(geometric mean of exp(-pose/5 deg), exp(-expression/0.25), crop correlation); clip median; above the limit "
     "set by real footage the row is flagged", "units": "0-1 (1 = copy)", "direction": "lower is better",
     "ci": BOOT},
]


def cards() -> list[dict[str, Any]]:
    """The glossary, with each metric's default gate tolerance where the gate tracks it."""
    from driftbench.gate import TRACKED

    out = []
    for c in _CARDS:
        tol = [f"{name}: {t.tolerance:g}" for name, t in sorted(TRACKED.items()) if t.card == c["metric"]]
        out.append({**c, "gate": "; ".join(tol) if tol else "not gated"})
    return out
