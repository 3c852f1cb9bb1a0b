"""Regression gate: ``driftbench gate RUN_DIR --baseline metrics/baselines/NAME.json``.

Exit 1 when a tracked metric of some (model, mitigation) is worse than the committed baseline beyond
its tolerance *and* beyond its confidence interval; 0 otherwise; 2 on bad usage. Prints a Markdown
summary (for a CI job summary) and writes JUnit XML (one test case per group and metric).
``--update`` rewrites the baseline from the run, deliberately (review the diff).

Why this rule: a gate that fails on noise gets switched off, and one that ignores a real regression
is worse than none. The baseline stores every clip's value, so when the run holds the same clips the
gate compares them *paired* (per clip: run minus baseline, sign-adjusted so that positive is better).
The same clip measured again with the same code and weights gives the same numbers, so there is no
sampling noise to wait out: any clip worse than ``-tolerance`` fails the check, and the message names
it (one clip that collapses in a group of five fails; the mean change and its CI are shown beside). Without
common clips it compares group means: fail when the mean is worse by more than ``tolerance`` plus the
half-widths of both CIs combined (sqrt of the sum of squares). A group in the baseline that is missing from
the run
fails (lost coverage), and so does a metric that a clip of the baseline had and the same clip no longer
has (e.g. it got shorter than 30 s); a metric the baseline could not measure (e.g. 60 s on short clips)
is skipped.

Tracked metrics (per model/mitigation; default tolerances, ``--tolerance NAME=VALUE`` overrides):
- ``sim_dec_at_30s``, ``sim_dec_at_60s``: mean decoupled similarity at 30/60 s (higher better; 0.02).
- ``drift_dec_at_30s``: mean drift at 30 s (lower better; 0.02).
- ``survival_at_30s``, ``survival_at_60s``: share of clips still the same person (per clip 1/0, clips
  that end earlier without a loss are unknown and left out; higher better; 0.05).
- ``face_rate``: share of samples with the character's face (higher better; 0.02).
- ``opening_dec``: mean opening level (higher better; 0.02).
- ``drift_{dec,raw}_at_end``: drift over each clip's last window, for clips of any length (lower
  better; 0.02); ``min_bin_{dec,raw}``: each clip's lowest 1 s bin (higher better; 0.03);
  ``slope_{dec,raw}_per_min``: Theil-Sen slope per minute (higher better; 0.03). Raw beside decoupled.

Refused with exit 2 and one line (never a vacuous pass): a baseline that is not one (malformed JSON,
wrong format, no groups, a group without model/mitigation), a corrupt run.json, a clips.csv without
``model``/``mitigation``, a tolerance that is not a finite number >= 0, a run that shares no group with
the baseline, and a comparison in which nothing could be checked.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from driftbench.results import cards, stats

BASELINE_FORMAT = 1


@dataclass(frozen=True)
class Tracked:
    direction: int  # +1: higher is better, -1: lower is better
    tolerance: float
    card: str  # the glossary card it belongs to
    what: str


#: every column the gate tracks, from the metric cards (:mod:`driftbench.results.cards`), in card order
TRACKED: dict[str, Tracked] = {col: Tracked(card.sign, g.tolerance, card.name, g.what)
                               for col, (card, g) in cards.gated().items()}


class GateUsageError(ValueError):
    pass


def clip_values(clips: pd.DataFrame) -> pd.DataFrame:
    """Per clip, every tracked metric (survival as a 1/0/NaN indicator)."""
    out = pd.DataFrame({"clip_id": clips["clip_id"].astype(str), "model": clips["model"].astype(str),
                        "mitigation": clips["mitigation"].astype(str)})
    for name in TRACKED:
        if name.startswith("survival_at_"):
            t = float(name.removeprefix("survival_at_").removesuffix("s"))
            out[name] = stats.still_same_person(clips, t).to_numpy()
        else:
            out[name] = pd.to_numeric(clips[name], errors="coerce").to_numpy() if name in clips else np.nan
    return out


def _group_summary(vals: pd.DataFrame, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in TRACKED:
        e = stats.bootstrap_mean(vals[name], seed=seed)
        out[name] = {"mean": e.value, "lo": e.lo, "hi": e.hi, "n": e.n}
    return out


def build_baseline(run_dir: Path, clips: pd.DataFrame, run: dict[str, Any], *, seed: int = stats.DEFAULT_SEED,
                   tolerances: dict[str, float] | None = None, command: str = "") -> dict[str, Any]:
    vals = clip_values(clips)
    groups = {}
    for (model, mit), g in vals.groupby(["model", "mitigation"], sort=True):
        groups[f"{model}/{mit}"] = {
            "model": model, "mitigation": mit, "n_clips": len(g), "summary": _group_summary(g, seed),
            "clips": {str(r["clip_id"]): {k: r[k] for k in TRACKED} for r in g.to_dict(orient="records")},
        }
    tol = {k: (tolerances or {}).get(k, t.tolerance) for k, t in TRACKED.items()}
    return {
        "format": BASELINE_FORMAT,
        "what": "driftbench regression-gate baseline: per (model, mitigation) group, every tracked metric "
                "per clip "
        "and its mean with a bootstrap 95% CI",
        "produced_by": {
            "command": command,
            "run_dir": run_dir.name,
            "config_hash": run.get("config_hash"),
            "git_commit": run.get("git_commit"),
            "driftbench": run.get("driftbench"),
            "backend": (run.get("backend") or {}).get("name"),
            "engine": (run.get("backend") or {}).get("engine"),
            "weights": (run.get("backend") or {}).get("weights"),
            "decoupler": run.get("decoupler"),
            "threshold": (run.get("threshold") or {}).get("value"),
            "sampling": (run.get("config") or {}).get("sampling"),
            "model_config": (run.get("config") or {}).get("model"),
        },
        "tolerances": tol,
        "seed": seed,
        "groups": groups,
    }


@dataclass
class Check:
    group: str
    metric: str
    status: str  # pass | fail | skip
    mode: str  # paired | unpaired | missing | -
    base: float
    current: float
    change: float  # sign-adjusted: positive = better
    lo: float
    hi: float
    n: int
    tolerance: float
    message: str


def _f(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return v


def _skipped(group: str, metric: str, base: float, tolerance: float, why: str) -> Check:
    """A check that compares nothing (``skip``), with the reason."""
    return Check(group, metric, "skip", "-", base, math.nan, math.nan, math.nan, math.nan, 0, tolerance, why)


def compare(baseline: dict[str, Any], clips: pd.DataFrame, *, tolerances: dict[str, float] | None = None,
            seed: int = stats.DEFAULT_SEED) -> list[Check]:
    """Check every tracked metric of every baseline group against the run's clips."""
    tol = {
        **{k: t.tolerance for k, t in TRACKED.items()},
        **(baseline.get("tolerances") or {}),
        **(tolerances or {}),
    }
    vals = clip_values(clips)
    checks: list[Check] = []
    for gname, gb in sorted((baseline.get("groups") or {}).items()):
        cur = vals[(vals["model"] == str(gb["model"])) & (vals["mitigation"] == str(gb["mitigation"]))]
        for metric, spec in TRACKED.items():
            tl = float(tol.get(metric, spec.tolerance))
            bsum = (gb.get("summary") or {}).get(metric) or {}
            bmean = _f(bsum.get("mean"))
            if cur.empty:
                checks.append(
                    Check(
                        gname,
                        metric,
                        "fail",
                        "missing",
                        bmean,
                        math.nan,
                        math.nan,
                        math.nan,
                        math.nan,
                        0,
                        tl,
                        "group missing from the run (lost coverage)",
                    )
                )
                continue
            if not np.isfinite(bmean):
                checks.append(_skipped(gname, metric, bmean, tl, "not measurable in the baseline"))
                continue
            base_clips = {str(k): _f(v.get(metric)) for k, v in (gb.get("clips") or {}).items()}
            cur_map = dict(zip(cur["clip_id"].astype(str), cur[metric].astype(float), strict=True))
            shared = [k for k in base_clips if k in cur_map and np.isfinite(base_clips[k])]
            gone = sorted(k for k in shared if not np.isfinite(cur_map[k]))
            if gone:
                checks.append(
                    Check(
                        gname,
                        metric,
                        "fail",
                        "paired",
                        bmean,
                        math.nan,
                        math.nan,
                        math.nan,
                        math.nan,
                        len(gone),
                        tl,
                        f"no longer measurable for {len(gone)} clip(s): {', '.join(gone[:3])}",
                    )
                )
                continue
            common = sorted(shared)
            cest = stats.bootstrap_mean(cur[metric], seed=seed)
            if common:
                # the same clip measured again is deterministic: any clip beyond tolerance is a regression
                d = spec.direction * (
                    np.array([cur_map[k] for k in common]) - np.array([base_clips[k] for k in common])
                )
                e = stats.bootstrap_mean(d, seed=seed)
                hi = e.hi if np.isfinite(e.hi) else e.value
                lo = e.lo if np.isfinite(e.lo) else e.value
                worse = sorted((float(v), k) for v, k in zip(d, common, strict=True) if v < -tl)
                fail = bool(worse)
                msg = f"paired over {len(common)} clip(s): mean change {e.value:+.4f} [{lo:+.4f}, {hi:+.4f}]"
                if fail:
                    msg += (
                        f"; {len(worse)} clip(s) worse than -{tl:g}: "
                        + ", ".join(f"{k} ({v:+.4f})" for v, k in worse[:3])
                        + (" ..." if len(worse) > 3 else "")
                    )
                checks.append(
                    Check(
                        gname,
                        metric,
                        "fail" if fail else "pass",
                        "paired",
                        bmean,
                        cest.value,
                        e.value,
                        lo,
                        hi,
                        len(common),
                        tl,
                        msg,
                    )
                )
            else:
                if not np.isfinite(cest.value):
                    checks.append(_skipped(gname, metric, bmean, tl,
                                           "none of the run's clips is measurable here and the baseline's "
                                           "clips that were are not in the run"))
                    continue
                change = spec.direction * (cest.value - bmean)
                hw = math.sqrt(np.nan_to_num(cest.half_width) ** 2
                               + np.nan_to_num((_f(bsum.get("hi")) - _f(bsum.get("lo"))) / 2) ** 2)
                fail = change < -(tl + hw)
                checks.append(
                    Check(
                        gname,
                        metric,
                        "fail" if fail else "pass",
                        "unpaired",
                        bmean,
                        cest.value,
                        change,
                        change - hw,
                        change + hw,
                        cest.n,
                        tl,
                        f"no common clips: change {change:+.4f}, allowed -{tl + hw:.4f} "
                        f"(tolerance {tl:g} + CI {hw:.4f})",
                    )
                )
    return checks


def markdown(checks: list[Check], run_dir: Path, baseline_path: Path, new_groups: list[str]) -> str:
    n_fail = sum(c.status == "fail" for c in checks)
    head = "FAILED" if n_fail else "passed"
    lines = [
        f"## driftbench gate: {head}",
        "",
        f"run `{run_dir}` vs baseline `{baseline_path}`: {sum(c.status == 'pass' for c in checks)} passed, "
        f"{n_fail} failed, {sum(c.status == 'skip' for c in checks)} skipped",
        "",
        "| group | metric | status | baseline | run | change (+ = better) | 95% CI | n | tolerance | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(x: float, sign: bool = False) -> str:
        return "–" if not np.isfinite(x) else (f"{x:+.4f}" if sign else f"{x:.4f}")

    for c in checks:
        mark = {"fail": "**FAIL**", "pass": "pass", "skip": "skip"}[c.status]
        grp = c.group.replace("|", "\\|")
        note = (c.message if c.status != "pass" else c.mode).replace("|", "\\|")
        lines.append(f"| {grp} | {c.metric} | {mark} | {f(c.base)} | {f(c.current)} | {f(c.change, True)} | "
                     f"[{f(c.lo, True)}, {f(c.hi, True)}] | {c.n} | {c.tolerance:g} | {note} |")
    if new_groups:
        lines += ["", f"Groups in the run but not in the baseline (not gated): {', '.join(new_groups)}. "
                  "Run with --update to track them."]
    return "\n".join(lines) + "\n"


def junit(checks: list[Check], path: Path) -> None:
    suite = ET.Element("testsuite", name="driftbench.results.gate", tests=str(len(checks)),
                       failures=str(sum(c.status == "fail" for c in checks)),
                       skipped=str(sum(c.status == "skip" for c in checks)))
    for c in checks:
        tc = ET.SubElement(suite, "testcase", classname=f"driftbench.results.gate.{c.group}", name=c.metric)
        if c.status == "fail":
            ET.SubElement(tc, "failure", message=c.message).text = c.message
        elif c.status == "skip":
            ET.SubElement(tc, "skipped", message=c.message)
        else:
            ET.SubElement(tc, "system-out").text = c.message
    root = ET.Element("testsuites")
    root.append(suite)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    from driftbench.io import atomic_path

    with atomic_path(path) as tmp:
        tree.write(tmp, encoding="utf-8", xml_declaration=True)


def _parse_tolerances(items: Sequence[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in TRACKED:
            raise GateUsageError(
                f"--tolerance {item!r}: expected NAME=VALUE with NAME one of {', '.join(TRACKED)}"
            )
        try:
            v = float(value)
        except ValueError:
            raise GateUsageError(
                f"--tolerance {item!r}: {value!r} is not a number -- fix: e.g. {name}=0.02"
            ) from None
        if not math.isfinite(v) or v < 0:
            raise GateUsageError(
                f"--tolerance {item!r}: a tolerance must be a finite number >= 0 (nan or inf would "
                f"pass any regression) -- fix: e.g. {name}=0.02"
            )
        out[name] = v
    return out


def check_baseline(baseline: Any) -> str | None:
    """What is wrong with a loaded baseline (one phrase), or None when it can be gated against."""
    if not isinstance(baseline, dict):
        return f"expected a JSON object, found {type(baseline).__name__}"
    if baseline.get("format") != BASELINE_FORMAT:
        return f"format {baseline.get('format')!r}, expected {BASELINE_FORMAT}"
    groups = baseline.get("groups")
    if not isinstance(groups, dict):
        return "no 'groups' object"
    if not groups:
        return "it holds no group, so nothing would be checked"
    for name, g in groups.items():
        if (
            not isinstance(g, dict)
            or not isinstance(g.get("model"), str)
            or not isinstance(g.get("mitigation"), str)
        ):
            return f"group {name!r} has no model/mitigation"
        if not isinstance(g.get("summary", {}), dict) or not isinstance(g.get("clips", {}), dict):
            return f"group {name!r}: 'summary' and 'clips' must be objects"
        if any(not isinstance(v, dict) for v in (g.get("clips") or {}).values()) or \
                any(not isinstance(v, dict) for v in (g.get("summary") or {}).values()):
            return f"group {name!r}: every clip and summary entry must be an object"
    tol = baseline.get("tolerances", {})
    if not isinstance(tol, dict):
        return "'tolerances' must be an object"
    for k, v in tol.items():
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
            return f"tolerance {k}={v!r} is not a finite number >= 0"
    return None
