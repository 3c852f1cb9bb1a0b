"""The validity suite's outputs: validate.csv/json/md, and the table block of docs/VALIDITY-RESULTS.md
generated from docs/validate.json."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from driftbench.validity.material import SECTIONS, Row

log = logging.getLogger("driftbench")

def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return (
            ""
            if not np.isfinite(v)
            else f"{float(v):.3f}"
            if abs(float(v)) >= 1e-3 or v == 0
            else f"{float(v):.2e}"
        )
    return str(v)


def to_markdown(rows: Sequence[Row]) -> str:
    out = []
    for sec in SECTIONS:
        sub = [r for r in rows if r.section == sec]
        if not sub:
            continue
        out += [
            f"### {sec}",
            "",
            "| metric | raw | decoupled | target | status | note |",
            "|---|---|---|---|---|---|",
        ]
        for r in sub:
            cells = [r.metric, _fmt(r.raw), _fmt(r.dec), r.target, r.status, r.note]
            out.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
        out.append("")
    return "\n".join(out)


def write_outputs(rows: Sequence[Row], out_dir: Path, meta: dict[str, Any]) -> None:
    from driftbench.io import write_csv, write_json, write_text

    table = pd.DataFrame([{**asdict(r), "raw": _fmt(r.raw), "dec": _fmt(r.dec)} for r in rows])
    write_csv(out_dir / "validate.csv", table)
    write_json(out_dir / "validate.json", {**meta, "rows": [asdict(r) for r in rows]})
    summary = summarize(rows)
    write_text(out_dir / "validate.md", f"# driftbench validate\n\n{summary}\n\n{to_markdown(rows)}")


DOCS_BEGIN = ("<!-- validate-table:begin (generated from docs/validate.json by "
              "driftbench.validity.output.render_docs) -->")
DOCS_END = "<!-- validate-table:end -->"


def docs_block(json_path: Path) -> str:
    """The tables of a validate.json, as ``docs/VALIDITY-RESULTS.md`` quotes them."""
    import json

    data = json.loads(json_path.read_text(encoding="utf-8"))
    rows = [Row(**r) for r in data["rows"]]
    head = (f"`{data.get('command_line', 'driftbench validate')}` at {data.get('git_commit')}, backend "
            f"`{data.get('backend')}`, decoupler {data.get('decoupler', {}).get('name')} "
            f"{data.get('decoupler', {}).get('fit_id', '')}: {summarize(rows)}")
    return f"{DOCS_BEGIN}\n{head}\n\n{to_markdown(rows)}\n{DOCS_END}"


def render_docs(
    doc_path: Path = Path("docs/VALIDITY-RESULTS.md"), json_path: Path = Path("docs/validate.json")
) -> None:
    """Rewrite the generated block of ``doc_path`` from ``json_path`` (tests/test_validate.py checks they
    agree)."""
    text = doc_path.read_text(encoding="utf-8")
    block = docs_block(json_path)
    if DOCS_BEGIN in text and DOCS_END in text:
        text = text[:text.index(DOCS_BEGIN)] + block + text[text.index(DOCS_END) + len(DOCS_END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc_path.write_text(text, encoding="utf-8")


def summarize(rows: Sequence[Row]) -> str:
    n = {s: sum(1 for r in rows if r.status == s) for s in ("pass", "fail", "info", "unavailable")}
    failed = [f"{r.section}: {r.metric}" for r in rows if r.status == "fail"]
    return (
        f"{n['pass']} passed, {n['fail']} failed, {n['unavailable']} unavailable, {n['info']} informational"
        + (". Failed: " + "; ".join(failed) if failed else "")
    )
