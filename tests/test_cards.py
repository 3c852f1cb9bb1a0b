"""The metric cards are the one description of each metric: the gate, the glossary, the report table and
metrics/README.md read them, and metrics/README.md is regenerated from them (no media needed)."""

from __future__ import annotations

import csv

from driftbench.report.glossary import cards as glossary_cards
from driftbench.report.html import TABLE_COLUMNS
from driftbench.results import cards
from driftbench.results.gate import TRACKED
from tests.conftest import ROOT


def test_metrics_readme_is_generated_from_the_cards():
    path = ROOT / "metrics" / "README.md"
    assert path.read_text(encoding="utf-8") == cards.readme(), (
        "metrics/README.md is stale -- fix: driftbench dev metrics-readme")


def test_gate_glossary_and_report_read_the_cards():
    assert set(TRACKED) == set(cards.gated())
    for col, (card, g) in cards.gated().items():
        assert (TRACKED[col].tolerance, TRACKED[col].card, TRACKED[col].direction) == (g.tolerance, card.name,
                                                                                      card.sign)
    assert [c["metric"] for c in glossary_cards()] == [c.name for c in cards.CARDS]
    heads = cards.headers()
    for col, head in TABLE_COLUMNS:
        if col in heads:
            assert head == heads[col]
    assert {c for c, _ in TABLE_COLUMNS} >= set(heads), "a card shows a column the report table lacks"


def test_every_card_is_complete_and_its_columns_are_measured():
    header = next(csv.reader((ROOT / "tests" / "golden" / "default_clips.csv").open(encoding="utf-8")))
    names = [c.name for c in cards.CARDS]
    assert len(names) == len(set(names))
    for c in cards.CARDS:
        assert all((c.meaning, c.unit, c.direction, c.ci, c.horizon)), c.name
        assert c.sign in (-1, 0, 1)
        for col in [g.column for g in c.gated if not g.column.startswith("survival_at_")] + \
                [col for col, _ in c.columns if col not in ("expressivity_vs_real", "ref_copy")]:
            assert col in header, f"{c.name}: {col} is not a clips.csv column"
