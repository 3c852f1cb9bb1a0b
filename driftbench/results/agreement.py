"""Recognizer agreement: the same clips measured with several face backends (``agreement.backends``).

Tables in, tables out (no video, no face models). A run with extra backends writes two tables beside
clips.csv:

- ``agreement_clips.csv``: one row per (clip, backend): the drift each recognizer measures (raw and, where
  the backend has a fitted decoupler, decoupled; at the clip's end and at every horizon it reaches), its
  calibrated identity-loss threshold and its verdicts (``lost``, ``drifting``), and for the extra backends
  whether each verdict agrees with the primary backend's.
- ``agreement.csv``: per extra backend and metric, against the primary backend: the rank agreement across
  clips (Spearman with a seeded paired bootstrap CI over clips, :func:`driftbench.results.stats.
  bootstrap_spearman`) for the drift metrics, and for each verdict the clips measured by both, how many
  agree and which disagree.

The primary backend (``face=``) alone drives clips.csv, the leaderboard and the gate; the others are read
only here. A backend without a fitted decoupler (dlib: ``decoupler`` ``none``) measures the decoupled score
as the raw one: its ``drift_dec_*`` cells stay empty, and the decoupled comparison uses its raw score
(``score_other`` says which).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from driftbench.results.stats import DEFAULT_RESAMPLES, DEFAULT_SEED, bootstrap_spearman

#: the per-clip verdicts compared between backends
VERDICTS = ("lost", "drifting")
#: per-clip columns copied from each backend's clip summary (drift_* columns are added by pattern)
BASE_COLUMNS = ("opening_raw", "opening_dec", "threshold", "lost", "time_to_loss_s", "drift_level",
                "drift_threshold", "drifting", "time_to_drift_s")
_DRIFT = re.compile(r"^drift_(raw|dec)_at_(end|[0-9.]+s)$")
CLIP_KEY_COLUMNS = ("clip_id", "backend", "primary", "decoupler")
TABLE_COLUMNS = ("backend", "vs", "metric", "kind", "score_other", "n", "spearman", "spearman_lo",
                 "spearman_hi", "n_agree", "n_disagree", "agreement", "disagree_clips", "note")


def _horizon_key(col: str) -> tuple[int, float]:
    m = _DRIFT.match(col)
    if m is None:
        return (2, 0.0)
    lab = m.group(2)
    return (1, 0.0) if lab == "end" else (0, float(lab.removesuffix("s")))


def drift_columns(columns: Any) -> list[str]:
    """The ``drift_{raw,dec}_at_{T}`` columns among ``columns``: raw before dec, horizons in order, end
    last."""
    cols = [str(c) for c in columns if _DRIFT.match(str(c))]
    return sorted(cols, key=lambda c: (not c.startswith("drift_raw_"), _horizon_key(c)))


def clip_table(summaries: Mapping[str, pd.DataFrame], primary: str,
               decouplers: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per (clip, backend) from each backend's per-clip summaries (``clip_id`` + clips.csv
    columns). ``decouplers``: backend -> the name of its decoupler; ``none`` empties its ``drift_dec_*``
    and ``opening_dec`` cells (its decoupled score is its raw score). Extra backends' rows get
    ``<verdict>_agrees`` (1 / 0; empty where either side has no verdict) against the primary's."""
    if primary not in summaries:
        raise ValueError(f"primary backend {primary!r} has no summaries")
    decouplers = dict(decouplers or {})
    frames = []
    for name, df in summaries.items():
        df = df.copy()
        if "clip_id" not in df:
            raise ValueError(f"summaries of {name!r} have no clip_id column")
        df["clip_id"] = df["clip_id"].astype(str)
        cols = ["clip_id", *(c for c in BASE_COLUMNS if c in df), *drift_columns(df.columns)]
        out = df[cols].copy()
        for c in cols[1:]:  # numbers (a column all empty from JSON would otherwise be object-typed)
            out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
        dec = str(decouplers.get(name, "fitted"))
        out.insert(1, "backend", name)
        out.insert(2, "primary", int(name == primary))
        out.insert(3, "decoupler", dec)
        frames.append(out)
    table = pd.concat(frames, ignore_index=True)
    # a backend without a fitted decoupler has no decoupled score of its own (sim_dec == sim_raw)
    no_dec = table["decoupler"] == "none"
    table.loc[no_dec, [c for c in table.columns if c.startswith("drift_dec_") or c == "opening_dec"]] = np.nan
    lead = list(CLIP_KEY_COLUMNS)
    rest = [c for c in BASE_COLUMNS if c in table]
    table = table[lead + rest + drift_columns(table.columns)]
    prim = table[table["backend"] == primary].set_index("clip_id")
    for v in VERDICTS:
        if v not in table:
            continue
        ref = pd.to_numeric(table["clip_id"].map(prim[v]), errors="coerce")
        mine = pd.to_numeric(table[v], errors="coerce")
        both = ref.notna() & mine.notna() & (table["backend"] != primary)
        table[f"{v}_agrees"] = np.where(both, (ref == mine).astype(float), np.nan)
    return table.sort_values(["clip_id", "primary", "backend"], ascending=[True, False, True],
                             kind="mergesort").reset_index(drop=True)


def agreement_table(clips: pd.DataFrame, primary: str, *, seed: int = DEFAULT_SEED,
                    n_resamples: int = DEFAULT_RESAMPLES, min_pairs: int = 5) -> pd.DataFrame:
    """Per extra backend: Spearman (bootstrap CI over clips) of every drift column against the primary's,
    and for every verdict the share of clips on which both agree, with the disagreeing clip ids.

    A drift column is compared where at least ``min_pairs`` clips have it from both backends (a rank
    correlation of fewer says nothing, and its bootstrap degenerates). The
    decoupled comparison takes the other backend's raw score when it has no decoupler (``score_other``)."""
    rows: list[dict[str, Any]] = []
    prim = clips[clips["backend"] == primary].set_index("clip_id")
    for name in sorted(set(clips["backend"]) - {primary}):
        other = clips[clips["backend"] == name].set_index("clip_id")
        ids = prim.index.intersection(other.index)
        no_dec = bool((other["decoupler"] == "none").all()) if len(other) else False
        for col in drift_columns(clips.columns):
            kind_score = "raw" if col.startswith("drift_raw_") else "dec"
            other_col = col.replace("drift_dec_", "drift_raw_") if kind_score == "dec" and no_dec else col
            x = pd.to_numeric(prim.loc[ids, col], errors="coerce")
            y = pd.to_numeric(other.loc[ids, other_col], errors="coerce")
            n = int((x.notna() & y.notna()).sum())
            if n < min_pairs:
                continue
            est = bootstrap_spearman(x.to_numpy(), y.to_numpy(), seed=seed, n_resamples=n_resamples)
            note = f"{name} has no fitted decoupler: its raw score" if other_col != col else ""
            rows.append({"backend": name, "vs": primary, "metric": col, "kind": "rank",
                         "score_other": "raw" if other_col != col else kind_score, "n": n,
                         "spearman": est.value, "spearman_lo": est.lo, "spearman_hi": est.hi,
                         "note": note or (est.method if not np.isfinite(est.hi) else "")})
        for v in VERDICTS:
            if v not in clips:
                continue
            x = pd.to_numeric(prim.loc[ids, v], errors="coerce")
            y = pd.to_numeric(other.loc[ids, v], errors="coerce")
            both = x.notna() & y.notna()
            n = int(both.sum())
            differ = sorted(str(i) for i in ids[(both & (x != y)).to_numpy()])
            missing = [who for who, s in ((primary, x), (name, y)) if s.notna().sum() == 0]
            rows.append({"backend": name, "vs": primary, "metric": v, "kind": "verdict", "score_other": "",
                         "n": n, "n_agree": n - len(differ), "n_disagree": len(differ),
                         "agreement": (n - len(differ)) / n if n else np.nan,
                         "disagree_clips": ";".join(differ),
                         "note": (f"no {v} verdict from {' and '.join(missing)} (no calibrated verdict for "
                                  "that backend)") if missing else ""})
    out = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    for c in ("n", "n_agree", "n_disagree"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype("Int64")
    return out
