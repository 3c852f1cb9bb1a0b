"""The report's chart specs (driftbench.report.charts) carry the tables' numbers unchanged, both renderers
draw every kind of spec, and `report.charts` / `--charts` choose between them. No media needed; the real-run
reports are checked in test_report and test_browser."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftbench.report import charts as ch
from driftbench.results import stats


def _curves() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for cid, n in (("a", 12), ("b", 8), ("c", 10)):
        for k in range(n):
            rows.append({"clip_id": cid, "t_mid": k + 0.5, "sim_dec": 0.9 - 0.02 * k + rng.normal(0, 0.01),
                         "sim_raw": 0.85 - 0.02 * k})
    df = pd.DataFrame(rows)
    df.loc[(df["clip_id"] == "b") & (df["t_mid"] == 3.5), "sim_dec"] = np.nan  # a bin without a face
    return df


def _survival() -> dict[str, pd.DataFrame]:
    sv = stats.kaplan_meier([3.0, 5.0, 9.0, 12.0], [1, 0, 1, 0])
    km = sv.to_frame()
    km.attrs["censored_t"] = [12.0, 5.0]
    return {"m/none": km}


def test_curves_chart_carries_every_clip_and_the_group_band_unchanged() -> None:
    curves = _curves()
    members = {"m/none": ["a", "b"], "m/fix": ["c"]}
    bands = {k: stats.group_curve_band(curves, v, "sim_dec", n_resamples=99) for k, v in members.items()}
    spec = ch.curves_chart(bands, curves, members, "sim_dec", 0.36, "t")
    main, count = spec["panels"]
    by_label = {s["label"]: s for s in main["series"]}
    for cid in ("a", "b", "c"):
        g = curves[curves["clip_id"] == cid]
        assert by_label[cid]["x"] == g["t_mid"].tolist()
        assert by_label[cid]["y"] == [None if math.isnan(v) else v for v in g["sim_dec"]]  # NaN: a gap
    mean = next(s for s in main["series"] if s["label"].startswith("m/none"))
    assert mean["y"] == ch.values(bands["m/none"]["mean"])
    assert mean["band"]["lo"] == ch.values(bands["m/none"]["lo"])
    assert mean["legend"] and not by_label["a"]["legend"]
    assert main["hlines"][0]["y"] == 0.36
    # the count of clips per bin: a post step over each bin, closed at the last bin's end
    n = next(s for s in count["series"] if s["label"] == "m/none")
    assert n["x"][0] == 0.0 and n["x"][-1] == 12.0 and n["y"][:-1] == bands["m/none"]["n"].tolist()
    json.dumps(spec, allow_nan=False)  # JSON-safe


def test_survival_chart_is_the_kaplan_meier_table_with_censoring_marks() -> None:
    km = _survival()
    spec = ch.survival_chart(km, "t")
    curve, marks = spec["series"]
    assert curve["step"] and curve["x"] == km["m/none"]["t"].tolist()
    assert curve["y"] == km["m/none"]["survival"].tolist()
    assert curve["band"]["hi"] == ch.values(km["m/none"]["hi"])
    assert marks["markers"] == "|" and sorted(marks["x"]) == [5.0, 12.0]
    s = dict(zip(km["m/none"]["t"], km["m/none"]["survival"], strict=True))
    assert marks["y"][marks["x"].index(5.0)] == s[3.0]  # on the curve, at the step before


def test_scatter_chart_whiskers_and_flags() -> None:
    rows = pd.DataFrame([
        {"baseline": True, "model": "m", "mitigation": "none", "flags": "", "d_mean": np.nan, "d_lo": np.nan,
         "d_hi": np.nan, "expressivity_retained_mean": 1.0, "expressivity_retained_lo": np.nan,
         "expressivity_retained_hi": np.nan},
        {"baseline": False, "model": "m", "mitigation": "fix", "flags": "", "d_mean": 0.1, "d_lo": 0.05,
         "d_hi": 0.15, "expressivity_retained_mean": 0.9, "expressivity_retained_lo": 0.8,
         "expressivity_retained_hi": 1.3},
        {"baseline": False, "model": "m", "mitigation": "<b>copy</b>", "flags": "copies", "d_mean": 0.2,
         "d_lo": np.nan, "d_hi": np.nan, "expressivity_retained_mean": 0.1,
         "expressivity_retained_lo": np.nan, "expressivity_retained_hi": np.nan},
    ])
    spec = ch.scatter_chart(rows, "d", 0.7, "t")
    fix, copy = spec["series"]
    assert fix["x"] == [0.1] and fix["err"]["xlo"] == [0.05] and fix["err"]["yhi"] == [1.3]
    assert not fix["hollow"]
    assert copy["hollow"] and copy["err"]["xlo"] == [None] and copy["text"] == ["m/<b>copy</b>"]
    assert spec["y"]["max"] == pytest.approx(1.35) and spec["hlines"][0]["y"] == 0.7


def _decode_png(uri: str) -> tuple[int, int]:
    from PIL import Image

    assert uri.startswith("data:image/png;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    return img.size


def test_the_png_renderer_draws_every_kind_of_spec() -> None:
    """report.charts=png: each spec kind becomes a PNG; user text with "$" (mathtext) draws literally."""
    from driftbench.report.figures import png

    curves = _curves()
    members = {"$x^$/none": ["a", "b", "c"]}
    bands = {k: stats.group_curve_band(curves, v, "sim_raw", n_resamples=99) for k, v in members.items()}
    specs = [ch.curves_chart(bands, curves, members, "sim_raw", 0.36, "t"),
             ch.multiples_chart(curves, ["a", "b", "c", "$bad^$", "b"], 0.36, "each clip"),
             ch.multiples_chart(curves, ["a"], None, "one clip"),
             ch.survival_chart(_survival(), "survival")]
    sizes = [_decode_png(png(s)) for s in specs]
    assert all(w > 500 and h > 150 for w, h in sizes), sizes
    assert sizes[1][1] > sizes[2][1]  # a second row of panels


def test_report_charts_is_a_typed_choice(tmp_path: Path) -> None:
    from driftbench.config import Charts as ChartsChoice
    from driftbench.config import compose
    from driftbench.report.html import Charts

    assert tuple(c.value for c in ChartsChoice) == Charts.MODES  # the report layer's names are the config's
    assert str(compose([]).report.charts) == "browser"
    assert str(compose(["report.charts=png"]).report.charts) == "png"
    with pytest.raises(Exception, match="svg"):
        compose(["report.charts=svg"])
    with pytest.raises(ValueError, match="browser"):
        Charts("svg")


def test_browser_page_embeds_the_specs_and_admits_only_shipped_scripts() -> None:
    from driftbench.report.html import Charts

    slots = Charts("browser")
    spec = ch.multiples_chart(_curves(), ["</script><script>alert(1)</script>"], 0.3, "t")
    assert slots.slot(spec) == {"chart": 0}
    page = slots.page()
    assert "<" not in str(page["chart_json"]) and json.loads(str(page["chart_json"])) == [spec]
    assert len(page["chart_scripts"]) == 2 and page["csp_script"].count("'sha256-") == 3
    empty = Charts("browser").page()  # no chart: no chart script, the sorter only
    assert empty["chart_json"] is None and empty["csp_script"].count("'sha256-") == 1


def test_a_sweep_report_draws_its_charts_as_its_jobs_asked(tmp_path: Path) -> None:
    """`driftbench run -m ... report.charts=png`: the sweep's own report follows its first job's setting."""
    from driftbench.report.html import run_charts

    for charts in ("png", "browser"):
        (tmp_path / "run.json").write_text(json.dumps({"config": {"report": {"charts": charts}}}))
        assert run_charts(tmp_path) == charts
    (tmp_path / "run.json").write_text(json.dumps({"config": {"report": {"html": True}}}))  # an older run
    assert run_charts(tmp_path) == "browser"
