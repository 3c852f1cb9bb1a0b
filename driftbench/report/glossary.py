"""The report's glossary: one row per metric card (:mod:`driftbench.results.cards`) -- what each figure
measures, its units, which direction is better, how its confidence interval is made, and the default gate
tolerance (from :data:`driftbench.results.gate.TRACKED` where the gate tracks it)."""

from __future__ import annotations

from typing import Any

from driftbench.results.cards import CARDS

#: the glossary's rows, one per metric card (driftbench/results/cards.py)
_CARDS: list[dict[str, str]] = [
    {
        "metric": c.name,
        "what": c.meaning,
        "units": c.unit,
        "direction": c.direction,
        "ci": c.ci,
        "horizon": c.horizon,
    }
    for c in CARDS
]


def cards() -> list[dict[str, Any]]:
    """The glossary, with each metric's default gate tolerance where the gate tracks it."""
    from driftbench.results.gate import TRACKED

    out = []
    for c in _CARDS:
        tol = [f"{name}: {t.tolerance:g}" for name, t in sorted(TRACKED.items()) if t.card == c["metric"]]
        out.append({**c, "gate": "; ".join(tol) if tol else "not gated"})
    return out
