"""The uncapped decoupled score (gated-shift) and the figures that judge it
(driftbench.validity.decouple_eval):
logic on synthetic tables without media, and the held-out figures on ../shared's real footage and photos."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftbench.measure import decouple as D
from driftbench.validity import decouple_eval as E
from tests.conftest import needs_shared

PARAMS = D.GatedShiftParams(
    ("d_yaw", "d_pitch", "d_expr"), (0.0033, 0.0044, 0.062), (24.0, 15.0, 2.0), 0.46, 0.51
)


def _table(sim: np.ndarray, yaw: np.ndarray, pitch: np.ndarray | None = None, expr: np.ndarray | None = None
           ) -> pd.DataFrame:
    n = len(sim)
    z = np.zeros(n)
    return pd.DataFrame({"sim_raw": sim, "d_yaw": yaw, "d_pitch": z if pitch is None else pitch, "d_roll": z,
                         "d_expr": z if expr is None else expr, "d_age": z})


# -- the form ---------------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.floats(0.52, 0.99), st.floats(0.0, 0.3), st.floats(0, 24), st.floats(0, 2))
def test_identity_change_is_kept_one_for_one_above_the_gate(s, drop, yaw, expr):
    """No cap: a frame and the same frame with identity lowered by ``drop`` stay ``drop`` apart (the
    capped gated lift hid up to all of it where the cap bound)."""
    dec = D.GatedShiftDecoupler(PARAMS)
    if s - drop < PARAMS.gate_hi:
        return
    t = _table(np.array([s, s - drop]), np.array([yaw, yaw]), expr=np.array([expr, expr]))
    out = dec.apply(t)
    assert out[0] - out[1] == pytest.approx(drop, abs=1e-12)
    assert out[0] - s == pytest.approx(dec.explained(t)[0], abs=1e-12)


def test_stable_clips_do_not_saturate():
    """Two frames with the same differences keep their raw gap at any level (no score is pinned)."""
    dec = D.GatedShiftDecoupler(PARAMS)
    t = _table(np.array([0.90, 0.93, 0.96]), np.full(3, 10.0), expr=np.full(3, 1.0))
    assert np.diff(dec.apply(t)) == pytest.approx([0.03, 0.03])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-0.3, 1.0), min_size=2, max_size=30), st.floats(0, 60), st.floats(0, 3))
def test_monotone_in_raw_score_and_raw_below_the_gate(sims, yaw, expr):
    dec = D.GatedShiftDecoupler(PARAMS)
    s = np.sort(np.asarray(sims))
    out = dec.apply(_table(s, np.full(len(s), yaw), expr=np.full(len(s), expr)))
    assert np.all(np.diff(out) >= -1e-12)
    below = s <= PARAMS.gate_lo
    assert np.array_equal(out[below], s[below])


def test_differences_beyond_the_fit_support_add_nothing():
    dec = D.GatedShiftDecoupler(PARAMS)
    t = _table(np.array([0.8, 0.8]), np.array([24.0, 54.0]), expr=np.array([2.0, 5.0]))
    out = dec.apply(t)
    assert out[0] == out[1]


def test_artefact_round_trip(tmp_path):
    path = tmp_path / "x.json"
    dec = D.write_artefact(path, PARAMS, {"backend": "sface:yunet-int8bq"})
    assert isinstance(dec, D.GatedShiftDecoupler)
    rec = json.loads(path.read_text())
    assert rec["form"] == D.SHIFT_FORM and rec["fit_id"] == dec.fit_id()
    again = D.read_artefact(path)
    t = _table(np.array([0.7, 0.9]), np.array([5.0, 12.0]), expr=np.array([0.5, 1.0]))
    assert np.allclose(again.apply(t), dec.apply(t))


def test_weights_key_passes_a_key_through():
    assert D.weights_key("sface:yunet-int8bq") == "sface:yunet-int8bq"
    assert D.weights_key("no-such-backend") == "no-such-backend"


def test_fit_recovers_known_slopes_and_selects_on_people():
    rng = np.random.default_rng(0)
    rows = []
    for c in range(24):
        yaw = rng.uniform(0, 25, 60)
        expr = rng.uniform(0, 2, 60)
        sim = 0.9 - 0.004 * yaw - 0.05 * expr + rng.normal(0, 0.005, 60)
        rows.append(
            pd.DataFrame(
                {
                    "clip_id": f"c{c}",
                    "person": f"p{c // 2}",
                    "t": np.arange(60) / 2 + 1.0,
                    "face_found": True,
                    "sim_raw": sim,
                    "d_yaw": yaw,
                    "d_pitch": rng.uniform(0, 5, 60),
                    "d_roll": rng.uniform(0, 5, 60),
                    "d_expr": expr,
                }
            )
        )
    frames = pd.concat(rows, ignore_index=True)
    pairs = pd.DataFrame({"same": [True] * 5 + [False] * 50, "sim_raw": np.r_[np.linspace(0.5, 0.9, 5),
                                                                              np.linspace(-0.1, 0.3, 50)]})
    sel = D.fit(frames, pairs)
    w = dict(zip(sel.params.features, sel.params.weights, strict=True))
    k = D.SHIFT_SHRINK  # the shipped fit shrinks the least-squares weights by this factor
    assert w["d_yaw"] == pytest.approx(k * 0.004, rel=0.1) and w["d_expr"] == pytest.approx(k * 0.05, rel=0.1)
    assert len(sel.table) == len(D.SHIFT_FEATURE_SETS)
    v1 = D.fit(frames, pairs, options=D.SHIFT_V1_OPTIONS)
    w1 = dict(zip(v1.params.features, v1.params.weights, strict=True))
    assert w1["d_expr"] == pytest.approx(w["d_expr"] / k, rel=0.1) and "d_pitch" in w1


def _pairs(same: list[float], diff: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"same": [True] * len(same) + [False] * len(diff), "sim_raw": np.r_[same, diff]})


def test_gate_width_and_the_same_person_tail():
    """The gate's top is the lowest same-person score unless that is closer than the minimum width to the
    different-person top; ``normal`` lowers it to the same-person normal fit's tail when that is lower."""
    rng = np.random.default_rng(0)
    diff = list(rng.normal(0.1, 0.05, 200))
    pairs = _pairs([0.62, 0.7, 0.8, 0.9], diff)
    lo, hi = D.gate_from_pairs(pairs)
    assert lo > max(diff) and hi == pytest.approx(0.62)
    lo_w, hi_w = D.gate_from_pairs(_pairs([lo + 0.01, 0.8], diff), min_width=0.03)
    assert hi_w == pytest.approx(lo_w + 0.03)
    assert D.gate_from_pairs(_pairs([lo + 0.01, 0.8], diff))[1] == pytest.approx(lo + D.MIN_GATE_WIDTH)
    _, hi_n = D.gate_from_pairs(_pairs([0.62, 0.9, 0.95, 0.97], diff), "normal", min_width=0.01)
    assert lo + 0.01 - 1e-12 <= hi_n < 0.62
    with pytest.raises(ValueError):
        D.gate_from_pairs(pairs, "median")
    # a larger tail probability puts the gate's bottom lower (never below the highest score seen)
    assert max(diff) <= D.gate_from_pairs(pairs, tail=1e-2)[0] < lo


def test_support_quantile_per_feature_and_shrink():
    rng = np.random.default_rng(3)
    n = 400
    frames = pd.DataFrame({"clip_id": np.repeat(["a", "b"], n // 2), "person": np.repeat(["p", "q"], n // 2),
                           "t": np.tile(np.arange(n // 2) / 2 + 1.0, 2), "face_found": True,
                           "d_yaw": rng.uniform(0, 40, n), "d_roll": rng.uniform(0, 5, n),
                           "d_expr": rng.uniform(0, 2, n)})
    frames["sim_raw"] = 0.95 - 0.003 * frames["d_yaw"] - 0.05 * frames["d_expr"] + rng.normal(0, 0.001, n)
    pairs = _pairs([0.6, 0.9], list(rng.normal(0.1, 0.05, 100)))
    feats = ("d_yaw", "d_expr")
    o = D.ShiftOptions(support_quantile=0.99, feature_quantiles=(("d_yaw", 0.5),), shrink=0.5)
    p = D.fit_shift_params(frames, pairs, feats, o)
    assert p.support[0] == pytest.approx(np.quantile(frames["d_yaw"], 0.5))
    assert p.support[1] == pytest.approx(np.quantile(frames["d_expr"], 0.99))
    full = D.fit_shift_params(frames, pairs, feats, D.ShiftOptions(shrink=1.0))
    assert np.allclose(np.asarray(p.weights), 0.5 * np.asarray(full.weights))
    assert full.weights[0] == pytest.approx(0.003, rel=0.05)
    # the shipped fit (version 2) is version 1 with a narrower minimum gate width
    o = D.ShiftOptions()
    assert o.quantile("d_yaw") == o.quantile("d_expr") == D.SHIFT_SUPPORT_QUANTILE
    assert D.ShiftOptions() == replace(D.SHIFT_V1_OPTIONS, gate_width=D.SHIFT_GATE_WIDTH)
    assert D.SHIFT_GATE_WIDTH < D.MIN_GATE_WIDTH


def test_variant_names_parse_to_options_changed_from_version_1():
    o = E.parse_shift_variant("gated-shift[feats=yaw+roll+expr|yaw+expr,q_yaw=0.8,shrink=0.9,width=0.03]")
    assert o.feature_sets == (("d_yaw", "d_roll", "d_expr"), ("d_yaw", "d_expr"))
    assert o.quantile("d_yaw") == 0.8 and o.quantile("d_expr") == D.SHIFT_V1_OPTIONS.support_quantile
    assert (o.shrink, o.gate_width, o.gate_hi) == (0.9, 0.03, "min")
    assert E.parse_shift_variant("gated-shift[]") == D.SHIFT_V1_OPTIONS
    assert E.parse_shift_variant("gated-shift[gate=normal,tail=1e-3]").gate_tail == 1e-3
    for bad in ("gated-shift", "gated-shift[x=1]", "gated-shift[shrink]", "nap[shrink=1]"):
        with pytest.raises(ValueError):
            E.parse_shift_variant(bad)
    assert E.method_for("raw") is E.method_raw and callable(E.method_for("gated-shift[shrink=0.5]"))


# -- the figures ------------------------------------------------------------------------------------------
def test_order_kept_counts_only_gaps_above_the_tolerance():
    raw = np.array([0.80, 0.81, 0.90])
    n, flips, pairs = E.order_kept(raw, np.array([0.82, 0.81, 0.815]))
    assert n == 2 and flips == 1 and pairs == [(0, 2)]
    assert E.order_kept(raw, raw + 0.1)[1] == 0


def test_drift_end_uses_the_opening_after_the_reference_window():
    t = np.arange(0, 20, 0.5)
    sim = np.where(t < 1.0, 1.0, np.where(t < 17.5, 0.8, 0.6))
    f = pd.DataFrame({"t": t, "face_found": True, "s": sim})
    assert E.drift_end(f, "s") == pytest.approx(0.2)


def test_morph_figures_measure_detectability_against_within_clip_noise():
    rng = np.random.default_rng(1)
    rows = []
    for c in range(6):
        t = np.arange(1, 16, 0.5)
        noise = rng.normal(0, 0.02, len(t))
        for morph, shift in (("none", 0.0), ("step", 0.06)):
            rows.append(pd.DataFrame({"source_clip": f"c{c}", "person": f"p{c}", "morph": morph, "t": t,
                                      "sample_index": np.arange(len(t)), "face_found": True, "alpha": 0.3,
                                      "sim_raw": 0.8 + noise - shift}))
    m = pd.concat(rows, ignore_index=True)
    raw = m["sim_raw"].to_numpy()
    # a score with half the noise and the same drop is twice as detectable and keeps all the drift
    denoised = raw + (0.8 - raw - np.where(m["morph"] == "step", 0.06, 0.0)) / 2
    fig = E.morph_figures(m, raw, denoised, n_boot=99)
    assert fig["drift_ratio"] == pytest.approx(1.0)
    assert fig["dprime_ratio"] == pytest.approx(2.0, rel=1e-6)
    hidden = raw + np.where(m["morph"] == "step", 0.03, 0.0)
    assert E.morph_figures(m, raw, hidden, n_boot=99)["drift_ratio"] == pytest.approx(0.5)


def test_shuffled_schedule_is_seeded_level_set_after_onset():
    s = E.ShuffledSchedule(0.6, 1.0, seed=3)
    t = np.arange(0, 10, 0.5)
    a = s.alpha(t)
    assert np.all(a[t < 1.0] == 0)
    assert np.allclose(np.sort(a[t >= 1.0]), np.linspace(0, 0.6, int((t >= 1.0).sum())))
    assert np.array_equal(a, E.ShuffledSchedule(0.6, 1.0, seed=3).alpha(t))


def test_heldout_scoring_never_fits_on_the_scored_people():
    rng = np.random.default_rng(2)
    frames = pd.DataFrame(
        {
            "clip_id": np.repeat([f"c{i}" for i in range(10)], 5),
            "person": np.repeat([f"p{i}" for i in range(10)], 5),
            "t": np.tile(np.arange(5.0) + 1, 10),
            "face_found": True,
            "sim_raw": rng.uniform(0.6, 0.9, 50),
        }
    )
    from itertools import combinations

    labels = [lab for lab in "abcdef" for _ in range(3)]
    ij = list(combinations(range(len(labels)), 2))
    same = np.array([labels[i] == labels[j] for i, j in ij])
    pairs = pd.DataFrame(
        {
            "label_a": [labels[i] for i, _ in ij],
            "label_b": [labels[j] for _, j in ij],
            "same": same,
            "sim_raw": np.where(same, 0.7, 0.1) + rng.normal(0, 0.02, len(ij)),
        }
    )
    seen: list[tuple[set[str], set[str]]] = []

    class Probe:
        def __init__(self, fr: pd.DataFrame, pp: pd.DataFrame) -> None:
            self.people = set(fr["person"])
            self.ids = set(pp["label_a"]) | set(pp["label_b"])
            self.pairs = pp

        def apply(self, table: pd.DataFrame) -> np.ndarray:
            if table is self.pairs:  # the training pairs: their own threshold
                pass
            elif "person" in table:
                seen.append((self.people, set(table["person"])))
            else:
                seen.append((self.ids, set(table["label_a"]) | set(table["label_b"])))
            return table["sim_raw"].to_numpy(np.float64)

    E.score_heldout(Probe, "probe", frames, pairs, photo_k=3)
    assert seen and all(not (train & test) for train, test in seen if train is not None)


# -- real data --------------------------------------------------------------------------------------------
@needs_shared
@pytest.mark.parametrize("key", ["sface", "sface:yunet-int8bq"])
def test_shipped_artefacts_are_uncapped_and_record_heldout_figures(key):
    dec = D.load_decoupler(key)
    assert isinstance(dec, D.GatedShiftDecoupler), f"{D.artefact_path(key)} must hold the gated-shift form"
    rec = dec.record
    assert rec["backend"] == key and rec["backend_weights"]
    detector = next(f for f in rec["backend_weights"] if f.startswith("face_detection_yunet"))
    assert ("int8bq" in detector) == key.endswith("int8bq")
    ho = rec["heldout"]
    assert ho["r2_yaw_expr"]["dec"]["r2"] <= E.TARGET_R2 < ho["r2_yaw_expr"]["raw"]["r2"]
    raw, dec = ho["photos"]["raw"], ho["photos"]["dec"]
    assert dec["tar_heldout"] == 1.0 and dec["d_prime"] >= 7.1
    assert dec["d_prime"] > raw["d_prime"] and dec["margin"] > raw["margin"]
    # version 2 meets the margin target for both keys (version 1: +0.071 held out with the int8bq detector)
    assert dec["margin"] >= 0.08


@pytest.mark.slow
@needs_shared
def test_heldout_figures_on_real_footage_and_photos():
    """Minutes the first time (53 clips, 17 generated clips and 61 photos at 2 frames/s; cached after)."""
    from tests.conftest import SHARED

    mat = E.load_material(SHARED)
    fig = E.figures(mat, None, "gated-shift", n_boot=99)
    assert fig["r2"]["raw"]["r2"] > 0.25 and fig["r2"]["dec"]["r2"] <= E.TARGET_R2
    assert fig["within_clip_sd"]["dec"] < fig["within_clip_sd"]["raw"]
    ph = fig["photos"]["dec"]
    assert ph["d_prime"] >= 7.1 and ph["margin"] >= 0.08 and ph["tar_heldout"] == 1.0


@pytest.mark.slow
@needs_shared
def test_morph_figures_on_real_footage():
    """Real identity-constant clips morphed toward other people of their person-fold (the synthetic
    source's morph; rendered once into the cache, ~15 min the first time): decoupling makes an alpha 0.3
    identity change easier to see than raw does and keeps the drift; the same-person control does not
    drift like the other-person morph."""
    from tests.conftest import SHARED

    mat = E.load_material(SHARED, generated=False)
    morphs = E.morph_material(mat, SHARED, E.default_work_dir())
    fig = E.figures(mat, morphs, "gated-shift", n_boot=199)
    m = fig["morphs"]
    assert m["n_paired"] >= 50
    assert m["dprime_ratio"] >= E.TARGET_DPRIME_GAIN and m["dprime_ratio_ci95"][0] > 1.0
    assert E.DRIFT_RATIO_RANGE[0] <= m["drift_ratio"] <= E.DRIFT_RATIO_RANGE[1]
    for col in ("raw", "dec"):
        assert m[f"spearman_shuffle_{col}"]["median"] > m[f"spearman_shuffle-self_{col}"]["median"] + 0.3


def test_synthetic_clip_rows_use_the_clip_as_unit():
    rng = np.random.default_rng(4)
    frames, truth = [], {}
    for c in range(5):
        a = np.linspace(0, 0.8, 24)
        sim = 0.9 - 0.3 * a + rng.normal(0, 0.01, 24)
        frames.append(
            pd.DataFrame({"clip_id": f"c{c}", "face_found": True, "sim_raw": sim, "sim_dec": sim + 0.01})
        )
        truth[f"c{c}"] = a
    frames.append(pd.DataFrame({"clip_id": "still", "face_found": True, "sim_raw": np.full(24, 0.9),
                                "sim_dec": np.full(24, 0.9)}))
    truth["still"] = np.zeros(24)  # a constant schedule is left out, not counted as a zero correlation
    (row,) = E.synthetic_clip_rows(pd.concat(frames, ignore_index=True), truth, n_boot=99)
    assert row.status == "pass" and row.dec > 0.9 and "5 clips" in row.note
    clips = row.note.split("set by its ties in alpha): ")[1].split("; ")
    assert [c.split()[0] for c in clips] == [f"c{c}" for c in range(5)]  # the constant schedule left out
    assert all(c.endswith("(1.000)") and float(c.split()[1]) > 0.9 for c in clips)


def test_spearman_ceiling_is_what_a_perfect_measurement_reaches():
    """A schedule with ties caps Spearman below 1 for any measurement: the synthetic source's ``late``
    schedule (0 for 60 % of a 60 s clip at 2 fps, then linear) at 0.880, below the 0.9 target."""
    from scipy.stats import spearmanr

    t = np.arange(0, 60, 0.5)
    rng = np.random.default_rng(0)
    for alpha, expected in ((t / 60 * 0.9, 1.0), (np.clip((t - 36) / 24, 0, None) * 0.9, 0.880),
                            ((t >= 30) * 0.9, 0.866)):
        perfect = [spearmanr(alpha, -(-alpha + rng.normal(0, 1e-9, alpha.size))).statistic for _ in range(20)]
        assert E.spearman_ceiling(alpha) == pytest.approx(expected, abs=5e-4)
        assert E.spearman_ceiling(alpha) == pytest.approx(np.mean(perfect), abs=1e-9)


def test_embedding_space_candidates_reduce_to_cosine_without_compensation():
    rng = np.random.default_rng(5)
    e = rng.normal(size=(40, 8))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    frames = pd.DataFrame({"clip_id": np.repeat(["a", "b"], 20), "emb": list(e), "ref_emb": [e[0]] * 40})
    cos = e @ e[0]
    assert np.allclose(E.NapDecoupler(frames, 0).apply(frames), cos)
    # fully shrunk WCCN whitens by a multiple of the identity: cosine again
    assert np.allclose(E.WccnDecoupler(frames, 1.0).apply(frames), cos)
    # a table without embeddings (e.g. a clip with reference images) gets no score rather than a wrong one
    assert np.isnan(E.NapDecoupler(frames, 2).apply(pd.DataFrame({"sim_raw": [0.5]}))).all()
