"""Expressivity from run tables: a frozen or pasted face keeps (almost) none of its baseline's motion
and copies the reference; a faithful re-encode keeps it all. Every table comes from the real pipeline
on real clips (or clips derived from them with PyAV the way those mitigations make them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftbench.results import expressivity as expr
from tests.conftest import ROOT, VIDEO, needs_shared
from tests.realruns import _cached_run, session_dir


@pytest.fixture(scope="module")
def per_clip(adversarial: Path) -> pd.DataFrame:
    clips, _ = expr.clip_expressivity(pd.read_parquet(adversarial / "frames.parquet"),
                                      pd.read_parquet(adversarial / "thumbs.parquet"))
    return clips.set_index("clip_id")


def test_index_against_is_a_capped_mean_of_ratios() -> None:
    ref = {c: 2.0 for c in expr.INDEX_COMPONENTS}
    assert expr.index_against(ref, ref)[0] == pytest.approx(1.0)
    half = {c: 1.0 for c in expr.INDEX_COMPONENTS}
    assert expr.index_against(half, ref)[0] == pytest.approx(0.5)
    wild = {**half, "crop_change": 100.0}  # jitter in one component cannot hide stillness in the others
    n = len(expr.INDEX_COMPONENTS)
    assert expr.index_against(wild, ref)[0] == pytest.approx((0.5 * (n - 1) + expr.RATIO_CAP) / n)
    zero_ref = {**ref, "pose_range": 0.0}  # a component the reference lacks is left out, not divided by 0
    assert expr.index_against(half, zero_ref)[0] == pytest.approx(0.5)


@pytest.mark.parametrize("bin_s", [1.0, 2.5, 30.0])
def test_bin_summaries_slice_rows_and_equal_those_of_each_bins_table(bin_s: float) -> None:
    """The per-bin figures come from row slices of the clip's arrays (issue 20: no DataFrame per bin);
    they must be exactly the figures of each bin's own sub-table, gaps (no face) and NaNs included."""
    rng = np.random.default_rng(3)
    n = 50
    found = rng.random(n) > 0.2
    st = pd.DataFrame({"t": np.arange(n) / 2.0, "face_found": found,
                       **{c: np.where(found & (rng.random(n) > 0.1), rng.random(n), np.nan)
                          for c in ("expr_speed", "pose_speed", "lm_motion", "lm_motion_local", "crop_change",
                                    "ref_copy")},
                       **{f"_bs{k}": np.where(found, rng.random(n), np.nan) for k in range(52)},
                       **{c: np.where(found, rng.normal(0, 20, n), np.nan)
                          for c in ("_yaw", "_pitch", "_roll")}})
    arrays = expr._arrays(st)
    b = np.floor(st["t"].to_numpy() / bin_s + 1e-9).astype(int)
    for k, block in st.groupby(b, sort=True):
        np.testing.assert_equal(expr._summarise(arrays, np.flatnonzero(b == k)),
                                expr._summarise(expr._arrays(block)))  # NaN equals NaN, else exact
    whole = expr._summarise(arrays)
    assert whole["n_faces"] == int(found.sum()) and np.isfinite(whole["expr_spread"])


def test_reference_artefact_is_versioned_and_records_its_data_and_code() -> None:
    ref = expr.load_reference()
    assert ref["version"] == expr.REFERENCE_VERSION
    assert ref["sampling_fps"] == [2.0] and ref["backend"] == ["sface"]
    assert ref["data"]["n_clips"] == 53 and "d6.mp4" in ref["data"]["files"]
    assert "edtalk_pose_source2.mp4" in ref["data"]["files"]
    # the committed artefact was built before the module moved to results/ (issue 18): either name is its code
    assert ref["code"]["module"] in ("driftbench.expressivity", "driftbench.results.expressivity")
    assert "reference" in ref["code"]["command"]
    for c in expr.COMPONENTS:
        comp = ref["components"][c]
        assert 0 < comp["p5"] <= comp["median"] <= comp["p95"]
    rc = ref["ref_copy"]
    assert rc["max"] < rc["limit"] < 1.0
    # real footage is, by construction, about as expressive as itself
    assert 0.85 <= ref["index_vs_real"]["median"] <= 1.15


@needs_shared
def test_reference_figures_reproduce_from_the_real_pipeline(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Golden check: three real control clips measured now give the figures stored in the artefact."""
    names = ["d0.mp4", "d18.mp4", "d20.mp4"]
    rows = [{"clip": str(VIDEO / "liveportrait" / "driving" / n), "clip_id": n, "reference": "first_frame"}
            for n in names]
    run = _cached_run(session_dir(tmp_path_factory), "driving3", rows, "reference=first_frame")
    built = expr.build_reference([run])
    stored = {c["file"]: c for c in expr.load_reference()["clips"]}
    for c in built["clips"]:
        for k in (*expr.COMPONENTS, "ref_copy"):
            assert c[k] == pytest.approx(stored[c["file"]][k], rel=1e-3, abs=1e-4), (c["file"], k)


@needs_shared
def test_frozen_and_pasted_faces_lose_their_motion_and_copy_the_reference(per_clip: pd.DataFrame) -> None:
    base, freeze, paste, reencode = (
        per_clip.loc[f"dub9-{k}"] for k in ("none", "freeze", "paste", "reencode")
    )
    limit = expr.copy_limit(expr.load_reference())
    # the drifting real clip moves like real footage and does not copy its reference
    assert base["expr_speed"] > 0.5 and base["pose_range"] > 10 and base["ref_copy"] < 0.3
    for still in (freeze, paste):
        assert still["expr_speed"] < 0.3 * base["expr_speed"]
        assert still["lm_motion_local"] < 0.2 * base["lm_motion_local"]
        assert still["pose_range"] < 0.1 * base["pose_range"]
        assert still["ref_copy"] > limit
    assert freeze["crop_change"] < 0.05 * base["crop_change"]  # nothing moves at all
    # a faithful re-encode keeps every component
    for c in expr.INDEX_COMPONENTS:
        assert reencode[c] == pytest.approx(base[c], rel=0.2), c
    assert reencode["ref_copy"] < limit
    retained = expr.index_against(per_clip.loc[["dub9-freeze", "dub9-paste", "dub9-reencode"]].reset_index(),
                                  pd.DataFrame([base] * 3).reset_index(drop=True))
    assert retained[0] < 0.1 and retained[1] < 0.4 and 0.9 <= retained[2] <= 1.1


def test_per_bin_table_covers_the_clip(adversarial: Path) -> None:
    frames = pd.read_parquet(adversarial / "frames.parquet")
    _, bins = expr.clip_expressivity(frames[frames["clip_id"] == "dub9-none"])
    assert 20 <= len(bins) <= 21  # samples at 0, 0.5, ..., 20 s (sampling.end is inclusive)
    assert bins["t_start"].tolist() == [float(i) for i in range(len(bins))]
    assert (bins["n_faces"] >= 1).all() and bins["expr_speed"].notna().sum() >= 19
    assert np.isnan(bins["crop_change"]).all()  # no thumbs given: no pixel figures
    assert bins["ref_copy"].notna().all()  # the copy score then rests on pose and expression alone


def test_table_cli(adversarial: Path, tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "driftbench", "dev", "expressivity-table", str(adversarial)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].startswith("clip_id,expr_spread")
    bad = subprocess.run(
        [sys.executable, "-m", "driftbench", "dev", "expressivity-table", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "fix:" in bad.stderr
    assert json.loads(json.dumps(expr.load_reference()))["version"] == 1
