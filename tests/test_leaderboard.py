"""Leaderboard on real runs: pairing against mitigation=none, drift reduction with CIs, the expressivity
gate that must flag freeze/paste and pass a faithful copy, ``driftbench compare`` and the sweep hook."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from driftbench.cli import compare as cli_compare
from driftbench.results import leaderboard as lbm
from tests.conftest import ROOT, needs_shared
from tests.realruns import copy_run, dropout_run, run_pipeline, synthetic_pairs, write_manifest

H = (10.0, 20.0)  # the adversarial run is measured over 20 s


@pytest.fixture(scope="module")
def adv_board(adversarial: Path) -> lbm.Leaderboard:
    return lbm.build(lbm.load_runs([adversarial]), lbm.LeaderboardSettings(horizons=H))


def _row(board: lbm.Leaderboard, mitigation: str) -> pd.Series:
    return board.rows.set_index("mitigation").loc[mitigation]


def test_freeze_and_paste_win_on_identity_but_are_flagged_and_not_ranked(adv_board: lbm.Leaderboard) -> None:
    freeze, paste, copy = (_row(adv_board, m) for m in ("freeze", "paste", "reencode"))
    # real generated drift (infinitetalk_dub_9 falls ~0.3 within 10 s): a frozen face "removes" all of it
    assert freeze["drift_reduction_10s_mean"] > 0.2 and paste["drift_reduction_10s_mean"] > 0.2
    for row in (freeze, paste):
        assert row["excluded"] and pd.isna(row["rank"])
        assert "expressivity retained" in row["flags"] and "reference-copy score" in row["flags"]
        assert row["expressivity_retained_mean"] < 0.7
    assert freeze["expressivity_retained_mean"] < 0.1
    # a faithful copy of the baseline keeps its expressivity, does not change drift, and is ranked
    assert not copy["flags"] and not copy["excluded"] and copy["rank"] == 1
    assert copy["expressivity_retained_mean"] == pytest.approx(1.0, abs=0.1)
    assert abs(copy["drift_reduction_10s_mean"]) < 0.03
    assert copy["n_pairs"] == 1 and copy["drift_reduction_10s_n"] == 1
    base = _row(adv_board, "none")
    assert base["baseline"] and pd.isna(base["rank"]) and not base["flags"]


def test_flagged_rows_can_be_ranked_on_request_and_the_floor_is_configurable(adversarial: Path) -> None:
    runs = lbm.load_runs([adversarial])
    board = lbm.build(runs, lbm.LeaderboardSettings(horizons=H, include_flagged=True))
    ranks = board.rows.set_index("mitigation")["rank"]
    # a frozen or pasted face would top an unguarded board (with the opening after the first-frame reference's
    # frames, the pasted reference drifts -0.011 and edges out the frozen face's 0)
    assert {ranks["freeze"], ranks["paste"]} == {1, 2} and ranks["reencode"] == 3
    assert board.rows.set_index("mitigation").loc["freeze", "flags"]  # still shown flagged
    loose = lbm.build(runs, lbm.LeaderboardSettings(horizons=H, floor=0.0, copy_limit=1.0))
    assert not loose.rows.set_index("mitigation").loc["freeze", "excluded"]


@needs_shared
def test_real_pairs_give_the_known_direction(anitalker: Path) -> None:
    board = lbm.build(lbm.load_runs([anitalker]))
    rows = board.rows.set_index("mitigation")
    # VALIDITY.md (raw similarity): MFCC beats HuBERT on Mona Lisa, super-resolution costs similarity
    assert rows.loc["mfcc", "sim_gain_raw_30s_mean"] > 0.02
    assert rows.loc["sr", "sim_gain_raw_30s_mean"] < -0.02
    # decoupled: never the opposite direction (it may tie: both are lifted toward the same-person level)
    assert rows.loc["mfcc", "sim_gain_30s_mean"] > -0.01
    assert rows.loc["sr", "sim_gain_30s_mean"] < 0.01
    assert rows.loc["mfcc", "n_pairs"] == 1 and rows.loc["sr", "n_pairs"] == 1
    base = rows.loc["none"]
    assert base["n_clips"] == 3 and base["n_lost"] == 1  # the negative (another person) is lost at once
    assert base["survival_at_30s"] == pytest.approx(2 / 3)
    # 31-52 s clips: 60 s is never reached, so its columns say "not measurable" (empty); the end is there
    assert board.horizons == (30.0, 60.0) and board.rank_by == "drift_reduction_30s_mean"
    assert rows["drift_reduction_60s_mean"].isna().all() and rows["survival_at_60s"].isna().all()
    assert rows.loc["mfcc", "drift_reduction_end_n"] == 1
    # every retained figure rests on its pairs; both variants keep the baseline's liveliness roughly
    for m in ("mfcc", "sr"):
        assert 0.5 < rows.loc[m, "expressivity_retained_mean"] < 1.3


def test_runs_with_the_same_clip_ids_are_paired_across_run_directories(
    anitalker: Path, tmp_path: Path
) -> None:
    other = copy_run(anitalker, tmp_path / "relabelled")
    clips = pd.read_csv(other / "clips.csv")
    clips["mitigation"] = clips["mitigation"].replace({"none": "reanchor-like"})
    clips = clips[clips["mitigation"] == "reanchor-like"]
    clips.to_csv(other / "clips.csv", index=False)
    runs = lbm.load_runs([anitalker, other])
    assert any("several runs" in w for w in runs.warnings)
    assert {"relabelled:monalisa", "anitalker:monalisa", "monalisa-mfcc"} <= set(runs.clips["clip_id"])
    board = lbm.build(runs)
    row = board.rows.set_index("mitigation").loc["reanchor-like"]
    assert row["n_pairs"] == 3
    assert row["drift_reduction_30s_mean"] == pytest.approx(0.0, abs=1e-9)  # identical tables
    assert row["expressivity_retained_mean"] == pytest.approx(1.0)


def test_compare_cli_writes_csv_json_and_html(adversarial: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    res = subprocess.run([sys.executable, "-m", "driftbench", "compare", str(adversarial), "--out", str(out),
                          "--horizons", "10,20"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == str(out)
    csv_rows = pd.read_csv(out / "leaderboard.csv")
    js = json.loads((out / "leaderboard.json").read_text())
    assert len(csv_rows) == len(js["rows"]) == 4
    for r_csv, r_js in zip(csv_rows.to_dict(orient="records"), js["rows"], strict=True):
        for k in ("drift_reduction_10s_mean", "expressivity_retained_mean", "ref_copy_mean"):
            a, b = r_csv[k], r_js[k]
            assert (pd.isna(a) and b is None) or a == pytest.approx(b)
    assert js["settings"]["horizons"] == [10.0, 20.0] and js["settings"]["floor"] == 0.7
    assert (out / "report.html").is_file() and (out / "report.json").is_file()


@pytest.mark.parametrize("args", [["/nonexistent-run"], ["RUN", "--horizons", "x"], ["RUN", "--floor", "7"],
                                  ["RUN", "--rank-by", "nope"], []])
def test_compare_cli_bad_usage_exits_2(args: list[str], adversarial: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(adversarial) if a == "RUN" else a for a in args] + ["--out", str(tmp_path / "o"), "--no-html"]
    if not args:
        argv = []
    assert cli_compare.main(argv) == 2
    err = capsys.readouterr().err
    assert args == [] or "fix:" in err


def test_sweep_fills_the_sweep_directory_leaderboard(tmp_path: Path) -> None:
    """`driftbench run -m` over two manifests: the sweep dir gets leaderboard.csv and report.html (two clips
    of one person on the embedded synthetic clips; the pipeline and the sweep hook are what is tested)."""
    (a_clip, a_ref), _other = synthetic_pairs().values()
    key = {"character": "hallo-7", "prompt_id": "audio-1", "seed": "0", "model": "talking-head"}
    a = write_manifest(
        tmp_path / "a.csv", [{"clip": str(a_clip), "mitigation": "none", "reference": str(a_ref), **key}]
    )
    b = write_manifest(
        tmp_path / "b.csv", [{"clip": str(a_clip), "mitigation": "joyhallo", "reference": str(a_ref), **key}]
    )
    res = run_pipeline(Path(f"{a},{b}"), tmp_path, f"output.root={tmp_path / 'runs'}", "sampling.end=6",
                       "report.html=false", multirun=True)
    assert res.returncode == 0, res.stderr[-3000:]
    sweep = Path(res.stdout.strip().splitlines()[-1])
    from driftbench.report import sweep_run_dirs

    assert sweep.parent == tmp_path / "runs" and len(sweep_run_dirs(sweep)) == 2
    board = pd.read_csv(sweep / "leaderboard.csv")
    row = board.set_index("mitigation").loc["joyhallo"]
    assert row["n_pairs"] == 1 and row["model"] == "talking-head"
    assert (sweep / "report.html").is_file()
    assert "joyhallo" in (sweep / "report.html").read_text(encoding="utf-8")


def test_a_mitigation_that_loses_the_face_is_flagged(tmp_path_factory: pytest.TempPathFactory) -> None:
    board = lbm.build(lbm.load_runs([dropout_run(tmp_path_factory)]))
    row = board.rows.set_index("mitigation").loc["dropout"]
    assert row["face_rate_delta_mean"] < -0.3
    assert "loses the face more often" in row["flags"] and row["excluded"] and pd.isna(row["rank"])


# -- issue 15: horizons every pair reaches, ranks that respect CIs, Holm, rows sorted by rank (no media) ----
def _fake_clips(
    drifts: dict[str, list[float]],
    horizons: tuple[str, ...] = ("30s", "60s"),
    duration: float = 62.0,
) -> pd.DataFrame:
    """clips.csv rows: one per (mitigation, pair); drift at every horizon and at the end = the given value."""
    import numpy as np

    rows = []
    for mit, values in drifts.items():
        for i, d in enumerate(values):
            row = {
                "clip_id": f"{mit}/c{i}",
                "model": "m",
                "mitigation": mit,
                "character": f"c{i}",
                "prompt_id": "p",
                "seed": 0,
                "duration_s": duration,
                "face_rate": 1.0,
                "lost": 0,
                "survival_time_s": duration,
                "opening_dec": 0.9,
            }
            for h in (*horizons, "end"):
                row[f"drift_dec_at_{h}"] = d
                row[f"sim_dec_at_{h}"] = 0.9 - d
                row[f"sim_raw_at_{h}"] = 0.9 - d
            rows.append(row)
    return pd.DataFrame(rows).assign(
        run="r", stage=lambda df: np.where(df["mitigation"] == "none", "none", "post")
    )


def _runset(clips: pd.DataFrame, horizons: list[float] | None = None) -> lbm.RunSet:
    runs = {
        "r": {"config": {"metrics": {"horizons": horizons or [5, 30, 60, 120]}, "sampling": {"fps": 2.0}}}
    }
    return lbm.RunSet(
        [Path("r")], runs, clips, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
    )


def test_ranked_by_30s_with_ties_significance_holm_and_rows_sorted_by_rank() -> None:
    base = [0.30, 0.32, 0.28, 0.35, 0.31, 0.29, 0.33, 0.30]
    clips = _fake_clips(
        {
            "none": base,
            "weak": [
                b - g
                for b, g in zip(base, [0.01, -0.02, 0.015, -0.01, 0.02, -0.015, 0.005, 0.0], strict=True)
            ],
            "good": [
                b - g for b, g in zip(base, [0.20, 0.22, 0.19, 0.21, 0.20, 0.23, 0.18, 0.21], strict=True)
            ],
            "good2": [
                b - g for b, g in zip(base, [0.21, 0.20, 0.20, 0.22, 0.19, 0.21, 0.20, 0.22], strict=True)
            ],
        }
    )
    board = lbm.build(_runset(clips))
    rows = board.rows
    assert board.rank_by == "drift_reduction_30s_mean" and not any("ranked by" in n for n in board.notes)
    assert {"drift_reduction_60s_mean", "drift_reduction_end_mean"} <= set(rows.columns)
    # sorted by rank: the two good rows (CIs overlap: one shared rank), then weak, then the baseline
    assert list(rows["mitigation"]) == ["good2", "good", "weak", "none"]
    r = rows.set_index("mitigation")
    assert r.loc["good", "rank"] == r.loc["good2", "rank"] == 1 and r.loc["weak", "rank"] == 3
    assert "m/good" in r.loc["good2", "tied_with"] and r.loc["good", "significant"]
    assert not r.loc["weak", "significant"]  # its CI includes 0
    raw, adj = r.loc[["weak", "good", "good2"], "drift_reduction_30s_p"], r.loc[["weak", "good", "good2"],
                                                                                 "drift_reduction_30s_p_holm"]
    assert (adj >= raw - 1e-12).all() and adj.max() <= 1.0
    assert r.loc["good", "drift_reduction_30s_p_holm"] == pytest.approx(min(1.0, 3 * r.loc["good",
                                                                                      "drift_reduction_30s_p"]))


def test_falls_back_to_the_longest_horizon_all_pairs_reach_and_says_so() -> None:
    clips = _fake_clips(
        {"none": [0.3, 0.31, 0.29, 0.3], "a": [0.1, 0.12, 0.09, 0.11]}, horizons=("5s", "10s"), duration=12.0
    )
    board = lbm.build(_runset(clips, [5, 10, 30, 60]))
    assert board.rank_by == "drift_reduction_10s_mean"
    assert board.notes[0].startswith("ranked by drift reduction at 10s, the longest horizon all pairs reach")
    assert board.rows.set_index("mitigation").loc["a", "rank"] == 1
    assert board.rows.set_index("mitigation")["drift_reduction_30s_mean"].isna().all()  # not measurable


def test_compare_horizons_no_clip_reached_exits_2_naming_them(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "short"
    run.mkdir()
    clips = _fake_clips({"none": [0.3, 0.31], "a": [0.1, 0.12]}, horizons=("5s",), duration=12.0)
    clips.drop(columns=["run", "stage"]).to_csv(run / "clips.csv", index=False)
    (run / "run.json").write_text(json.dumps({"config": {"metrics": {"horizons": [5, 30]}}}))
    assert cli_compare.main([str(run), "--horizons", "10,30", "--no-html", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "10s was not measured" in err[0]
        and "no clip reached 30s" in err[0]
        and "fix:" in err[0]
    )
    assert cli_compare.main([str(run), "--horizons", "5", "--no-html", "--out", str(tmp_path / "o")]) == 0
    written = pd.read_csv(tmp_path / "o" / "leaderboard.csv")
    assert list(written["mitigation"]) == ["a", "none"]  # CSV rows in rank order
