"""Leaderboard: one row per (model, mitigation), each mitigation paired against ``mitigation=none`` of the
same model on the same (character, prompt, seed). Reads run tables only (no video, no models).

Why paired: clips differ far more from each other than a mitigation changes one clip, so a difference
of group means would mostly measure which clips each group happened to hold. Pairing on the same
inputs leaves the mitigation's own effect; every figure carries the number of pairs it rests on.

Metric cards (per row; CI = seeded bootstrap over pairs or clips, 95%; p = Wilcoxon signed-rank):
- ``drift_reduction_{T}s``: baseline drift minus mitigation drift at T s (decoupled similarity, opening
  minus sim@T), mean over pairs. Positive = the mitigation drifts less. Units: cosine similarity.
- ``survival_gain_s``: mean paired gain in identity-survival time (each pair restricted to its shorter
  clip), seconds; positive = identity kept longer. ``survival_at_{T}s``: Kaplan-Meier S(T) of the row.
- ``face_rate_delta``: change of the share of samples with the character's face (a method that loses
  the face more often than its baseline is flagged, never rewarded).
- ``expressivity_retained``: the mitigation's expressivity index relative to its paired baseline clip
  (:mod:`driftbench.results.expressivity`; 1.0 = as lively as the baseline); ``expressivity_vs_real``:
  relative to real identity-constant footage; ``ref_copy``: closeness to the reference (1 = a copy).
- Flags (a flagged row is shown with its reason and left out of the ranking unless asked):
  expressivity retained below the floor (default 0.70), reference-copy score above the limit set by
  real footage, face rate lower than the baseline's by more than ``face_rate_tolerance``.
- ``drift_reduction_end``: the same at the end of each clip (its last window), a horizon every clip
  reaches.
- ``rank``: order of the unflagged, paired rows by ``rank_by`` (default drift reduction at 30 s; when
  not every pair reaches 30 s, the longest horizon all pairs reach, else the end of each clip, and a
  note says so), larger first. Rows whose CIs overlap share a rank (``tied_with``); ``significant``
  says whether the row's CI excludes 0 and its Holm-adjusted p is below 0.05 (a CI that includes 0 is
  never significant). Rows are sorted by rank in every output.
- ``<metric>_p_holm``: the Wilcoxon p-value adjusted across the rows of the leaderboard (Holm,
  statsmodels), beside the raw ``<metric>_p``.

``driftbench compare RUN_DIR [RUN_DIR ...] [--out DIR]`` writes ``leaderboard.csv``, ``leaderboard.json``
and ``report.html`` (with ``report.json``) into DIR and prints DIR last.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from driftbench.results import expressivity as expr
from driftbench.results import stats

DEFAULT_HORIZONS = (30.0, 60.0)
DEFAULT_FACE_RATE_TOLERANCE = 0.05


class RunLoadError(ValueError):
    """A directory that is not a readable run directory (one line: the path, the problem, the fix)."""


@dataclass
class RunSet:
    """The tables of one or more run directories, merged. Clip ids are made unique across runs
    (``<run>:<clip_id>``) only where two runs hold the same id; ``source_clip_id`` keeps the original."""

    run_dirs: list[Path]
    runs: dict[str, dict[str, Any]]
    clips: pd.DataFrame
    curves: pd.DataFrame
    frames: pd.DataFrame
    thumbs: pd.DataFrame
    skipped: pd.DataFrame
    warnings: list[str] = field(default_factory=list)

    @property
    def threshold(self) -> float | None:
        vals = {float(v) for r in self.runs.values()
                if (v := (r.get("threshold") or {}).get("value")) is not None}
        return vals.pop() if len(vals) == 1 else None


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    from driftbench.io import read_csv

    try:
        return read_csv(path, keep_default_na=True)  # text cells neutralised against CSV injection restored
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _run_label(d: Path, taken: set[str]) -> str:
    label = d.name or str(d)
    k = 2
    base = label
    while label in taken:
        label, k = f"{base}~{k}", k + 1
    taken.add(label)
    return label


def load_runs(run_dirs: Sequence[Path | str], *, with_frames: bool = True) -> RunSet:
    """Read and merge run directories (clips.csv required; the other tables when present)."""
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise RunLoadError(
            "no run directory given -- fix: pass the directories that `driftbench run` printed"
        )
    clips, curves, frames, thumbs, skipped = [], [], [], [], []
    runs: dict[str, dict[str, Any]] = {}
    labels: set[str] = set()
    warns: list[str] = []
    for d in dirs:
        if not (d / "clips.csv").is_file():
            raise RunLoadError(f"{d}: not a run directory (no clips.csv) -- fix: pass the directory that "
                               "`driftbench run` printed")
        label = _run_label(d, labels)
        try:
            meta = (
                json.loads((d / "run.json").read_text(encoding="utf-8")) if (d / "run.json").is_file() else {}
            )
        except json.JSONDecodeError as exc:
            raise RunLoadError(
                f"{d / 'run.json'}: unreadable ({exc.msg}) -- fix: rerun the same `driftbench run` "
                "command to rewrite it"
            ) from None
        runs[label] = meta
        c = _read_csv(d / "clips.csv")
        stage = str((meta.get("mitigation") or {}).get("stage", ""))
        mit_name = str((meta.get("mitigation") or {}).get("name", ""))
        if not c.empty:
            c["run"] = label
            c["stage"] = [
                stage if str(m) == mit_name else ("none" if str(m) == stats.BASELINE else "manifest")
                for m in c["mitigation"].astype(str)
            ]
            clips.append(c)
        cv = _read_csv(d / "curves.csv")
        if not cv.empty:
            curves.append(cv.assign(run=label))
        if with_frames and (d / "frames.parquet").is_file():
            frames.append(pd.read_parquet(d / "frames.parquet").assign(run=label))
        if with_frames and (d / "thumbs.parquet").is_file():
            thumbs.append(pd.read_parquet(d / "thumbs.parquet").assign(run=label))
        sk = _read_csv(d / "skipped.csv")
        if not sk.empty:
            skipped.append(sk.assign(run=label))
    all_clips = pd.concat(clips, ignore_index=True) if clips else pd.DataFrame(
        columns=["clip_id", "model", "mitigation", "character", "prompt_id", "seed", "run"])
    dup = (
        set(all_clips.loc[all_clips["clip_id"].duplicated(keep=False), "clip_id"]) if len(dirs) > 1 else set()
    )
    if dup:
        warns.append(f"{len(dup)} clip id(s) appear in several runs; they are shown as <run>:<clip_id>")

    def remap(df: pd.DataFrame) -> pd.DataFrame:
        if df.empty or "clip_id" not in df:
            return df
        df = df.copy()
        df["source_clip_id"] = df["clip_id"]
        mask = df["clip_id"].isin(dup)
        df.loc[mask, "clip_id"] = df.loc[mask, "run"].astype(str) + ":" + df.loc[mask, "clip_id"].astype(str)
        return df

    def cat(parts: list[pd.DataFrame]) -> pd.DataFrame:
        return remap(pd.concat(parts, ignore_index=True)) if parts else pd.DataFrame()

    return RunSet(dirs, runs, remap(all_clips), cat(curves), cat(frames), cat(thumbs),
                  pd.concat(skipped, ignore_index=True) if skipped else pd.DataFrame(), warns)


# -- the leaderboard ----------------------------------------------------------------------------------------
@dataclass
class LeaderboardSettings:
    #: seconds for drift reduction and survival (``end`` is always beside them); None: 30 s and 60 s
    horizons: tuple[float, ...] | None = None
    floor: float = expr.DEFAULT_FLOOR
    copy_limit: float | None = None  # None: from the real-footage reference artefact
    face_rate_tolerance: float = DEFAULT_FACE_RATE_TOLERANCE
    include_flagged: bool = False
    rank_by: str | None = None
    seed: int = stats.DEFAULT_SEED
    reference_path: Path | None = None


@dataclass
class Leaderboard:
    rows: pd.DataFrame
    pairs: dict[str, pd.DataFrame]  # "model/mitigation" -> per-pair table
    clip_expressivity: pd.DataFrame
    bin_expressivity: pd.DataFrame
    survival: dict[str, stats.Survival]
    settings: LeaderboardSettings
    reference: dict[str, Any]
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": [
                {k: stats.finite_or_none(v) for k, v in r.items()}
                for r in self.rows.to_dict(orient="records")
            ],
            "settings": {
                "horizons": list(self.horizons),
                "floor": self.settings.floor,
                "copy_limit": self.copy_limit,
                "face_rate_tolerance": self.settings.face_rate_tolerance,
                "include_flagged": self.settings.include_flagged,
                "rank_by": self.rank_by,
                "seed": self.settings.seed,
                "confidence": stats.CONFIDENCE,
                "bootstrap": f"BCa, {stats.DEFAULT_RESAMPLES} resamples, seeded",
                "paired_test": "Wilcoxon signed-rank (two-sided)",
                "p_adjustment": "Holm across the leaderboard's rows (<metric>_p_holm; raw p in <metric>_p)",
                "rank_rule": "1 + rows whose CI lies entirely above; overlapping CIs share a rank",
                "pair_key": list(stats.PAIR_KEY),
            },
            "expressivity_reference": {
                "version": self.reference.get("version"),
                "medians": expr.reference_medians(self.reference) if self.reference else {},
                "ref_copy_limit": self.copy_limit,
            },
            "pairs": {
                k: v[
                    [c for c in ("character", "prompt_id", "seed", "clip_id_t", "clip_id_b") if c in v]
                ].to_dict(orient="records")
                for k, v in sorted(self.pairs.items())
            },
            "notes": self.notes,
        }

    @property
    def horizons(self) -> tuple[float, ...]:
        return self.settings.horizons or DEFAULT_HORIZONS

    @property
    def copy_limit(self) -> float:
        if self.settings.copy_limit is not None:
            return float(self.settings.copy_limit)
        return expr.copy_limit(self.reference) if self.reference else float("nan")

    @property
    def rank_by(self) -> str:
        return self.settings.rank_by or f"drift_reduction_{_h(RANK_HORIZON)}_mean"


def _h(h: float) -> str:
    return f"{h:g}s"


#: the horizon every clip reaches (its last window; drift.END), shown beside the timed ones
END = "end"
#: the horizon a leaderboard ranks by unless told otherwise
RANK_HORIZON = 30.0
#: family-wise level of the ``significant`` mark (Holm-adjusted p across the rows)
ALPHA = 0.05


def _labels(horizons: Sequence[float]) -> list[str]:
    """Column labels of the timed horizons and ``end``."""
    return [_h(h) for h in horizons] + [END]


def measured_horizons(clips: pd.DataFrame) -> list[float]:
    """Timed horizons with a ``drift_dec_at_{T}s`` column holding a value for some clip, ascending."""
    import re

    out = []
    for c in clips.columns:
        m = re.fullmatch(r"drift_dec_at_([0-9.]+)s", str(c))
        if m and pd.to_numeric(clips[c], errors="coerce").notna().any():
            out.append(float(m.group(1)))
    return sorted(out)


def _all_pairs_reach(table: pd.DataFrame, pairs: dict[str, pd.DataFrame], label: str) -> bool:
    """Every pair of every paired, unflagged mitigation row has drift at ``label`` on both sides."""
    cand = table[~table["baseline"] & ~table["excluded"] & (table["n_pairs"] > 0)]
    if cand.empty:
        return False
    for name in cand["model"].astype(str) + "/" + cand["mitigation"].astype(str):
        p = pairs.get(name)
        cols = [f"drift_dec_at_{label}_t", f"drift_dec_at_{label}_b"]
        if p is None or not all(c in p for c in cols):
            return False
        if not all(pd.to_numeric(p[c], errors="coerce").notna().all() for c in cols):
            return False
    return True


def _rank_label(table: pd.DataFrame, pairs: dict[str, pd.DataFrame], measured: Sequence[float]
                ) -> tuple[str, str | None]:
    """(label, note): 30 s when every pair reaches it, else the longest timed horizon all pairs reach,
    else ``end`` (which every clip reaches); the note says so when it is not 30 s."""
    if _all_pairs_reach(table, pairs, _h(RANK_HORIZON)):
        return _h(RANK_HORIZON), None
    for h in sorted(measured, reverse=True):
        if h < RANK_HORIZON and _all_pairs_reach(table, pairs, _h(h)):
            return _h(h), (
                f"ranked by drift reduction at {_h(h)}, the longest horizon all pairs reach: not every "
                f"pair reaches {_h(RANK_HORIZON)}"
            )
    return END, (
        f"ranked by drift reduction at the end of each clip (its last window): not every pair reaches "
        f"{_h(RANK_HORIZON)} or a shorter measured horizon"
    )


def _paired_columns(horizons: Sequence[float]) -> list[str]:
    """Columns only mitigation rows fill (NaN on baseline rows, so every CSV has the same schema)."""
    cols = []
    labels = _labels(horizons)
    prefixes = ([f"drift_reduction_{h}" for h in labels] + [f"sim_gain_{h}" for h in labels]
                + [f"sim_gain_raw_{h}" for h in labels]
                + ["survival_gain_s", "face_rate_delta", "ref_copy_delta"])
    for p in prefixes:
        cols += [f"{p}_mean", f"{p}_lo", f"{p}_hi", f"{p}_n", f"{p}_p", f"{p}_p_holm"]
    cols += [f"survival_at_{_h(h)}_gain" for h in horizons] + ["logrank_p"]
    cols += [f"expressivity_retained_{k}" for k in ("mean", "lo", "hi", "n")]
    return cols


def holm(p_values: pd.Series) -> pd.Series:
    """Holm-adjusted p-values (statsmodels ``multipletests``, family-wise error) over the finite values;
    NaN stays NaN."""
    p = pd.to_numeric(p_values, errors="coerce")
    out = pd.Series(np.nan, index=p.index, dtype=np.float64)
    ok = p.notna()
    if ok.any():  # imported only here: statsmodels imports scipy.stats, which a one-clip report never needs
        from statsmodels.stats.multitest import multipletests

        out[ok] = multipletests(p[ok].to_numpy(dtype=np.float64), method="holm")[1]
    return out


def rank_rows(table: pd.DataFrame, rank_by: str) -> pd.DataFrame:
    """Rank the unflagged, paired mitigation rows by ``rank_by`` (larger first). With a CI beside it
    (``<prefix>_lo``/``_hi``), a row's rank is 1 + the number of rows whose CI lies entirely above its
    own: rows whose CIs overlap share a rank (``tied_with`` names them) instead of being ordered as if
    they differed, and ``significant`` says whether the row's CI excludes 0 and (for a paired metric) its
    Holm-adjusted p is below ``ALPHA``: a CI that includes 0 is never significant."""
    table = table.copy()
    table["rank"] = pd.array([pd.NA] * len(table), dtype="Int64")
    table["significant"] = pd.array([pd.NA] * len(table), dtype="boolean")
    table["tied_with"] = ""
    if rank_by not in table:
        return table
    prefix = rank_by.removesuffix("_mean")
    val = pd.to_numeric(table[rank_by], errors="coerce")
    cand = table[~table["baseline"] & ~table["excluded"] & (table["n_pairs"] > 0) & val.notna()]
    if cand.empty:
        return table
    lo = pd.to_numeric(cand.get(f"{prefix}_lo", pd.Series(np.nan, index=cand.index)), errors="coerce")
    hi = pd.to_numeric(cand.get(f"{prefix}_hi", pd.Series(np.nan, index=cand.index)), errors="coerce")
    v = val[cand.index]
    lo, hi = lo.fillna(v), hi.fillna(v)  # no CI (one pair): the point stands for it
    names = cand["model"].astype(str) + "/" + cand["mitigation"].astype(str)
    for i in cand.index:
        above = (lo > hi[i]) & (cand.index != i)
        table.loc[i, "rank"] = 1 + int(above.sum())
        if f"{prefix}_lo" in table:
            # the CI must exclude 0, and where the metric has a paired test its Holm-adjusted p must agree
            p_holm = pd.to_numeric(
                pd.Series([table.loc[i].get(f"{prefix}_p_holm", np.nan)]), errors="coerce"
            )[0]
            table.loc[i, "significant"] = bool(
                (lo[i] > 0 or hi[i] < 0) and (np.isnan(p_holm) or p_holm < ALPHA)
            )
        tied = [names[j] for j in cand.index if j != i and not (lo[j] > hi[i] or lo[i] > hi[j])]
        table.loc[i, "tied_with"] = ", ".join(tied)
    return table


def _est(prefix: str, e: stats.Estimate) -> dict[str, Any]:
    return {f"{prefix}_mean": e.value, f"{prefix}_lo": e.lo, f"{prefix}_hi": e.hi, f"{prefix}_n": e.n}


def _paired(prefix: str, pc: stats.PairedComparison) -> dict[str, Any]:
    return {**_est(prefix, pc.delta), f"{prefix}_p": pc.p_value}


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(df[name], errors="coerce") if name in df else pd.Series(np.nan, index=df.index)


def unreached_horizons(runset: RunSet, horizons: Sequence[float]) -> list[str]:
    """One phrase per requested horizon that no clip of the runs reached (or that was not measured)."""
    configured = {float(h) for r in runset.runs.values()
                  for h in ((r.get("config") or {}).get("metrics") or {}).get("horizons", [])}
    reached = set(measured_horizons(runset.clips))
    longest = pd.to_numeric(runset.clips.get("duration_s", pd.Series(dtype=float)), errors="coerce").max()
    out = []
    for h in horizons:
        if float(h) in reached:
            continue
        if configured and float(h) not in configured:
            out.append(f"{_h(h)} was not measured (metrics.horizons {sorted(configured)})")
        else:
            out.append(f"no clip reached {_h(h)}" + (f" (the longest lasts {longest:.1f} s)"
                                                      if np.isfinite(longest) else ""))
    return out


def build(runset: RunSet, settings: LeaderboardSettings | None = None) -> Leaderboard:
    """The leaderboard of a set of runs (see the module docstring for every figure): drift reduction at
    the horizons (default 30 s and 60 s) and at the end of each clip, ranked by 30 s unless told
    otherwise; when not every pair reaches 30 s, by the longest horizon all pairs reach (a note says
    so), else by the end of each clip."""
    from dataclasses import replace

    s = settings or LeaderboardSettings()
    horizons = tuple(s.horizons or DEFAULT_HORIZONS)
    expressivity = _expressivity(runset)  # once: the second pass below reads the same frames
    lb = _build(runset, replace(s, horizons=horizons), expressivity)
    if s.rank_by is None and not lb.rows.empty:
        label, note = _rank_label(lb.rows, lb.pairs, measured_horizons(runset.clips))
        rank_by = f"drift_reduction_{label}_mean"
        if label in _labels(horizons) and (label == _h(RANK_HORIZON) or bool(lb.rows["baseline"].all())):
            # the first pass ranked by this very column at these horizons, or had no row to rank (baselines
            # only, as in a single run: their drift-reduction columns are all empty): the same table
            lb = replace(lb, settings=replace(lb.settings, rank_by=rank_by))
        else:
            if label != END and label not in _labels(horizons):
                horizons = tuple(sorted({*horizons, float(label.removesuffix("s"))}))
            lb = _build(runset, replace(s, horizons=horizons, rank_by=rank_by), expressivity)
        if note:
            lb.notes.insert(0, note)
    return lb


def _expressivity(runset: RunSet) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(per clip, per bin) expressivity of the run set's frames; None without frames."""
    if runset.frames.empty:
        return None
    return expr.clip_expressivity(runset.frames, runset.thumbs if not runset.thumbs.empty else None)


def _build(runset: RunSet, settings: LeaderboardSettings,
           expressivity: tuple[pd.DataFrame, pd.DataFrame] | None) -> Leaderboard:
    horizons = tuple(settings.horizons or DEFAULT_HORIZONS)
    labels = _labels(horizons)
    clips = runset.clips.copy()
    notes = list(runset.warnings)
    try:
        reference = expr.load_reference(settings.reference_path)
    except (OSError, ValueError, KeyError) as exc:
        reference = {}
        notes.append(
            f"expressivity reference unavailable ({exc}); vs-real figures and the copy limit are empty"
        )
    if expressivity is not None:
        clip_expr, bin_expr = expressivity[0].copy(), expressivity[1].copy()  # columns are added below
    else:
        clip_expr = pd.DataFrame(columns=["clip_id", *expr.COMPONENTS, "ref_copy"])
        bin_expr = pd.DataFrame()
        notes.append("no frames.parquet: expressivity not computed")
    if reference:
        fps = {
            float((r.get("config") or {}).get("sampling", {}).get("fps", np.nan))
            for r in runset.runs.values()
        }
        ref_fps = set(map(float, reference.get("sampling_fps", [])))
        if ref_fps and fps - ref_fps:
            notes.append(f"runs sampled at {sorted(fps)} frames/s but the expressivity reference at "
                         f"{sorted(ref_fps)}: vs-real figures compare different rates")
        clip_expr["expressivity_vs_real"] = expr.index_against(clip_expr, expr.reference_medians(reference))
        if not bin_expr.empty:
            bin_expr["expressivity_vs_real"] = expr.index_against(
                bin_expr, expr.reference_bin_medians(reference)
            )
    else:
        clip_expr["expressivity_vs_real"] = np.nan
    bin_retained: list[pd.DataFrame] = []
    clips = clips.merge(clip_expr, on="clip_id", how="left") if not clips.empty else clips
    copy_lim = (
        settings.copy_limit
        if settings.copy_limit is not None
        else (expr.copy_limit(reference) if reference else np.nan)
    )
    rows: list[dict[str, Any]] = []
    pairs_out: dict[str, pd.DataFrame] = {}
    survival: dict[str, stats.Survival] = {}
    groups = clips.groupby(list(stats.GROUP_KEY), sort=True) if not clips.empty else []
    for (model, mit), group_clips in groups:
        name = f"{model}/{mit}"
        is_base = str(mit) == stats.BASELINE
        surv = stats.survival_from_clips(group_clips)
        survival[name] = surv
        stage = ",".join(sorted(set(group_clips["stage"].astype(str)))) if "stage" in group_clips else ""
        row: dict[str, Any] = {
            "model": model,
            "mitigation": mit,
            "stage": stage,
            "baseline": is_base,
            "n_clips": len(group_clips),
            "runs": ",".join(sorted(set(group_clips["run"].astype(str)))),
        }
        row.update(
            _est("face_rate", stats.bootstrap_mean(_col(group_clips, "face_rate"), seed=settings.seed))
        )
        for lab in labels:
            row.update(
                _est(
                    f"sim_dec_at_{lab}",
                    stats.bootstrap_mean(_col(group_clips, f"sim_dec_at_{lab}"), seed=settings.seed),
                )
            )
            row.update(
                _est(
                    f"drift_dec_at_{lab}",
                    stats.bootstrap_mean(_col(group_clips, f"drift_dec_at_{lab}"), seed=settings.seed),
                )
            )
        # face loss is never a gain: what was not measured, and clips without the face, stand beside every row
        skipped = runset.skipped
        row["n_skipped"] = int(skipped["run"].astype(str).isin(set(group_clips["run"].astype(str))).sum()) \
            if not skipped.empty and "run" in skipped else 0
        row["n_no_face"] = int((pd.to_numeric(_col(group_clips, "face_rate"), errors="coerce") == 0).sum())
        row["n_lost_no_face"] = (
            int((group_clips["loss_cause"].astype(str) == "no_face").sum())
            if "loss_cause" in group_clips
            else 0
        )
        row["n_drifting"] = int((pd.to_numeric(_col(group_clips, "drifting"), errors="coerce") == 1).sum())
        for h in horizons:
            surv_h = surv.at(h)
            row.update({f"survival_at_{_h(h)}": surv_h.value, f"survival_at_{_h(h)}_lo": surv_h.lo,
                        f"survival_at_{_h(h)}_hi": surv_h.hi, f"survival_at_{_h(h)}_n": surv_h.n})
        row.update(
            {
                "n_lost": surv.n_lost,
                "median_survival_s": surv.median,
                "median_survival_lo": surv.median_lo,
                "median_survival_hi": surv.median_hi,
            }
        )
        row.update(
            _est(
                "expressivity_vs_real",
                stats.bootstrap_mean(_col(group_clips, "expressivity_vs_real"), seed=settings.seed),
            )
        )
        row.update(_est("ref_copy", stats.bootstrap_mean(_col(group_clips, "ref_copy"), seed=settings.seed)))
        flags: list[str] = []
        n_pairs = 0
        if not is_base:
            base = clips[(clips["model"] == model) & (clips["mitigation"].astype(str) == stats.BASELINE)]
            pairing = stats.pair_with_baseline(group_clips, base)
            pairs = pairing.pairs
            n_pairs = len(pairs)
            pairs_out[name] = pairs
            if pairing.ambiguous:
                notes.append(
                    f"{name}: {len(pairing.ambiguous)} pair key(s) held by several clips were left out: "
                    f"{', '.join(pairing.ambiguous[:3])}"
                )
            if pairing.unmatched:
                notes.append(
                    f"{name}: {len(pairing.unmatched)} clip(s) without a mitigation=none clip of the same "
                    "(character, prompt_id, seed)"
                )
            for lab in labels:
                # drift reduction = baseline drift - mitigation drift
                drift_cmp = stats.paired_compare(
                    _col(pairs, f"drift_dec_at_{lab}_b"),
                    _col(pairs, f"drift_dec_at_{lab}_t"),
                    seed=settings.seed,
                )
                row.update(_paired(f"drift_reduction_{lab}", drift_cmp))
                row.update(
                    _paired(
                        f"sim_gain_{lab}",
                        stats.paired_compare(
                            _col(pairs, f"sim_dec_at_{lab}_t"),
                            _col(pairs, f"sim_dec_at_{lab}_b"),
                            seed=settings.seed,
                        ),
                    )
                )
                # raw beside decoupled: decoupling lifts expression/pose-explained drops toward a cap, so
                # two stable clips at a high level can differ raw and tie decoupled
                row.update(
                    _paired(
                        f"sim_gain_raw_{lab}",
                        stats.paired_compare(
                            _col(pairs, f"sim_raw_at_{lab}_t"),
                            _col(pairs, f"sim_raw_at_{lab}_b"),
                            seed=settings.seed,
                        ),
                    )
                )
            surv_time_t, surv_time_b = (
                stats.restricted_survival_pairs(pairs) if n_pairs else (np.array([]), np.array([]))
            )
            row.update(
                _paired("survival_gain_s", stats.paired_compare(surv_time_t, surv_time_b, seed=settings.seed))
            )
            base_surv = stats.survival_from_clips(base)
            for h in horizons:
                row[f"survival_at_{_h(h)}_gain"] = row[f"survival_at_{_h(h)}"] - base_surv.at(h).value
            row["logrank_p"] = stats.logrank_p(
                _col(group_clips, "survival_time_s").to_numpy(),
                _col(group_clips, "lost").fillna(0).to_numpy(),
                _col(base, "survival_time_s").to_numpy(),
                _col(base, "lost").fillna(0).to_numpy(),
            )
            face_rate_cmp = stats.paired_compare(
                _col(pairs, "face_rate_t"), _col(pairs, "face_rate_b"), seed=settings.seed
            )
            row.update(_paired("face_rate_delta", face_rate_cmp))
            if n_pairs:
                retained = expr.index_against(
                    pairs.rename(columns={f"{c}_t": c for c in expr.INDEX_COMPONENTS})[
                        list(expr.INDEX_COMPONENTS)
                    ],
                    pairs.rename(columns={f"{c}_b": c for c in expr.INDEX_COMPONENTS})[
                        list(expr.INDEX_COMPONENTS)
                    ],
                )
                pairs["expressivity_retained"] = retained
                if not bin_expr.empty:
                    for ct, cb in zip(pairs["clip_id_t"], pairs["clip_id_b"], strict=True):
                        bin_retained.append(
                            expr.retained_per_bin(
                                bin_expr[bin_expr["clip_id"] == ct], bin_expr[bin_expr["clip_id"] == cb]
                            )
                        )
            else:
                retained = np.array([])
            row.update(_est("expressivity_retained", stats.bootstrap_mean(retained, seed=settings.seed)))
            row.update(
                _paired(
                    "ref_copy_delta",
                    stats.paired_compare(
                        _col(pairs, "ref_copy_t"), _col(pairs, "ref_copy_b"), seed=settings.seed
                    ),
                )
            )
            if n_pairs == 0:
                flags.append("no paired mitigation=none clip (same character, prompt_id, seed)")
            expr_retained = row["expressivity_retained_mean"]
            if np.isfinite(expr_retained) and expr_retained < settings.floor:
                flags.append(
                    f"expressivity retained {expr_retained:.0%} of the baseline < floor {settings.floor:.0%}"
                )
            if (
                np.isfinite(face_rate_cmp.delta.value)
                and face_rate_cmp.delta.value < -settings.face_rate_tolerance
            ):
                flags.append(
                    "loses the face more often than its baseline (face rate "
                    f"{face_rate_cmp.delta.value:+.1%})"
                )
        ref_copy_mean = row["ref_copy_mean"]
        if np.isfinite(ref_copy_mean) and np.isfinite(copy_lim) and ref_copy_mean > copy_lim:
            flags.append(
                f"reference-copy score {ref_copy_mean:.2f} > {copy_lim:.2f} (the most real footage shows): "
                "the face copies the reference"
            )
        row["n_pairs"] = n_pairs
        row["flags"] = "; ".join(flags)
        row["excluded"] = bool(flags) and not settings.include_flagged and not is_base
        rows.append(row)
    if not bin_expr.empty:
        bin_expr = bin_expr.merge(pd.concat(bin_retained, ignore_index=True) if bin_retained else
                      pd.DataFrame(columns=["clip_id", "t_start", "expressivity_retained"]),
                      on=["clip_id", "t_start"], how="left")
    table = pd.DataFrame(rows)
    if not table.empty:
        for col in _paired_columns(horizons):
            if col not in table:
                table[col] = np.nan
        # p-values adjusted across the leaderboard's rows (Holm), the raw p beside
        for col in [c for c in _paired_columns(horizons) if c.endswith("_p")]:
            table[f"{col}_holm"] = holm(table[col])
        rank_by = settings.rank_by or f"drift_reduction_{_h(RANK_HORIZON)}_mean"
        table = rank_rows(table, rank_by)
        lead = [
            "rank",
            "model",
            "mitigation",
            "stage",
            "baseline",
            "n_clips",
            "n_pairs",
            "significant",
            "tied_with",
            "flags",
            "excluded",
        ]
        table = table[lead + [c for c in table.columns if c not in lead]]
        # sorted by rank (ties by the estimate), then the unranked rows: baselines and flagged ones
        order = table.assign(_r=table["rank"].astype("Float64").fillna(np.inf),
                             _v=-pd.to_numeric(table[rank_by], errors="coerce").fillna(-np.inf)
                             if rank_by in table else 0.0)
        table = order.sort_values(["_r", "_v", "model", "baseline", "mitigation"],
                                  ascending=[True, True, True, False, True], kind="mergesort") \
            .drop(columns=["_r", "_v"]).reset_index(drop=True)
    from dataclasses import replace

    return Leaderboard(
        table,
        pairs_out,
        clip_expr,
        bin_expr,
        survival,
        replace(settings, rank_by=settings.rank_by),
        reference,
        notes,
    )


def write(lb: Leaderboard, out_dir: Path) -> tuple[Path, Path]:
    """``leaderboard.csv`` and ``leaderboard.json`` (same numbers, rounded to the stated precision)."""
    from driftbench.io import write_csv, write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "leaderboard.csv", out_dir / "leaderboard.json"
    write_csv(csv_path, lb.rows)
    write_json(json_path, lb.to_json())
    return csv_path, json_path


def default_out(run_dirs: Sequence[Path]) -> Path:
    tag = hashlib.sha256("\0".join(sorted(str(Path(d).resolve()) for d in run_dirs)).encode()).hexdigest()[
        :10
    ]
    return Path("reports") / f"compare-{tag}"
