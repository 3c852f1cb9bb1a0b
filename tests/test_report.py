"""Reports from real run tables: self-contained (no request can leave the page), every user string
escaped, the same numbers in HTML, CSV and JSON, re-rendered and merged without touching video."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT
from tests.helpers import report_scripts
from tests.realruns import ADV_MODEL, HAVE_SHARED, PAIRS_MODEL, copy_run

HOSTILE = ['<script>alert(1)</script>', '"onerror=alert(2) x="', "<img src=x onerror=alert(3)>"]


@pytest.fixture(scope="module")
def adv_report(adversarial: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render([adversarial], tmp_path_factory.mktemp("adv-report"))


@pytest.fixture(scope="module")
def ani_report(anitalker: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render([anitalker], tmp_path_factory.mktemp("ani-report"))


class Page(HTMLParser):
    """Every tag with its attributes, and the text of script elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        self.tags.append((tag, d))
        if d.get("id"):
            self.ids.add(str(d["id"]))
        self._in_script = tag == "script"
        if tag == "script":
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def parse(path: Path) -> tuple[str, Page]:
    html = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(html)
    return html, page


def render(run_dirs: list[Path], out: Path) -> Path:
    res = subprocess.run(
        [sys.executable, "-m", "driftbench", "report", *map(str, run_dirs), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return Path(res.stdout.strip().splitlines()[-1])


def test_report_is_self_contained_with_every_section(adv_report: Path) -> None:
    html_path = adv_report
    html, page = parse(html_path)
    for section in ("leaderboard", "scatter", "curves", "survival", "clips", "filmstrips", "worst", "skipped",
                    "glossary", "config"):
        assert section in page.ids, section
    # nothing can be fetched: every image is inline, no link/stylesheet/iframe/object, one inline script
    imgs = [a for t, a in page.tags if t == "img"]
    assert len(imgs) > 20 and all(str(a["src"]).startswith("data:image/") for a in imgs)
    assert not [t for t, a in page.tags if t in ("link", "iframe", "object", "embed", "base", "form")]
    assert not [a for t, a in page.tags if t == "script" and a.get("src")]
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", html)
    # the CSP allows exactly the shipped scripts: the sorter, uPlot and the chart drawer (browser charts)
    runnable, (charts,) = report_scripts(html)
    assert len(runnable) == 3
    divs = [a for t, a in page.tags if t == "div" and a.get("data-chart") is not None]
    assert sorted(int(str(a["data-chart"])) for a in divs) == list(range(len(charts))) and len(charts) >= 4
    # the flagged rows are shown with their reasons
    assert "expressivity retained" in html and "reference-copy score" in html


def test_html_csv_and_json_hold_the_same_numbers(adv_report: Path, adversarial: Path) -> None:
    html_path = adv_report
    _, page = parse(html_path)
    board = pd.read_csv(html_path.parent / "leaderboard.csv")
    report = json.loads((html_path.parent / "report.json").read_text(encoding="utf-8"))
    cells = [a for t, a in page.tags if t == "td" and a.get("data-col")]
    rows = [a for t, a in page.tags if t == "tr" and a.get("data-mitigation") is not None]
    assert len(rows) == len(board) == len(report["leaderboard"]["rows"])
    n_cols = len(cells) // len(rows)
    checked = 0
    for i, row in enumerate(rows):
        csv_row = board[board["mitigation"] == row["data-mitigation"]].iloc[0]
        json_row = next(r for r in report["leaderboard"]["rows"] if r["mitigation"] == row["data-mitigation"])
        for cell in cells[i * n_cols:(i + 1) * n_cols]:
            col, v = str(cell["data-col"]), cell.get("data-v") or ""
            if col not in board:
                continue
            if v == "":
                assert pd.isna(csv_row[col]) and json_row[col] is None
            else:
                assert float(v) == pytest.approx(csv_row[col], abs=1e-6) == json_row[col]
                checked += 1
    assert checked >= 10
    clips_csv = pd.read_csv(html_path.parent / "report_clips.csv")
    assert len(clips_csv) == len(report["clips"]) == 4
    surv = report["survival"][f"{ADV_MODEL}/none"]
    lost = int(pd.read_csv(adversarial / "clips.csv").set_index("clip_id").loc["dub9-none", "lost"])
    assert surv["n"] == 1 and surv["n_lost"] == lost and (surv["median_s"] is None) == (lost == 0)
    if HAVE_SHARED:  # infinitetalk_dub_9 keeps its identity over these 20 s (the synthetic stand-in loses it)
        assert surv["n_lost"] == 0 and surv["median_s"] is None  # not reached -> null in JSON


def test_hostile_strings_are_escaped(anitalker: Path, tmp_path: Path) -> None:
    run = copy_run(anitalker, tmp_path / "hostile")
    evil_id = HOSTILE[0] + "clip"
    clips = pd.read_csv(run / "clips.csv")
    clips.loc[clips["clip_id"] == "monalisa", ["character", "prompt_id"]] = [HOSTILE[1], HOSTILE[2]]
    clips.loc[clips["clip_id"] == "monalisa-mfcc", ["character", "prompt_id", "mitigation"]] = [
        HOSTILE[1],
        HOSTILE[2],
        HOSTILE[1],
    ]
    clips.loc[clips["clip_id"] == "aiface2", "model"] = HOSTILE[2]
    for name in ("frames.parquet", "thumbs.parquet"):
        t = pd.read_parquet(run / name)
        t["clip_id"] = t["clip_id"].replace({"monalisa": evil_id})
        t.to_parquet(run / name)
    curves = pd.read_csv(run / "curves.csv")
    curves["clip_id"] = curves["clip_id"].replace({"monalisa": evil_id})
    curves.to_csv(run / "curves.csv", index=False)
    clips["clip_id"] = clips["clip_id"].replace({"monalisa": evil_id})
    clips.to_csv(run / "clips.csv", index=False)
    pd.DataFrame([{"clip_id": evil_id, "item": HOSTILE[2], "stage": "measure", "reason": HOSTILE[1],
                   "message": HOSTILE[0]}]).to_csv(run / "skipped.csv", index=False)
    html_path = render([run], tmp_path / "out")
    html, page = parse(html_path)
    runnable, (charts,) = report_scripts(html)  # no user text in a runnable script; the data escaped
    assert [t for t, _ in page.tags].count("script") == len(runnable) + 1
    assert evil_id in json.dumps(charts, ensure_ascii=False)  # carried as data, drawn as canvas text
    assert not any(k.startswith("on") for _, a in page.tags for k in a)
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;clip" in html  # shown, escaped
    assert "&#34;onerror=alert(2) x=&#34;" in html
    img_alts = [a.get("alt") for t, a in page.tags if t == "img"]
    assert any(str(alt).startswith("<script>alert(1)</script>clip") for alt in img_alts)  # intact as text


def test_report_never_touches_video_or_models(anitalker: Path, tmp_path: Path) -> None:
    """`driftbench report` with the video/face stack made unimportable still renders from the tables."""
    blocker = (
        "import sys, importlib.abc\n"
        "class B(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('av', 'torch', 'mediapipe', 'onnxruntime', 'onnx') or name in "
        "('driftbench.measure.video', 'driftbench.measure.signals', 'driftbench.measure.clip') or "
        "name.startswith('driftbench.faces'):\n"
        "            raise ImportError('blocked for the test: ' + name)\n"
        "sys.meta_path.insert(0, B())\n"
        "from driftbench.cli import main\n"
        f"sys.exit(main(['report', {str(anitalker)!r}, '--out', {str(tmp_path / 'r')!r}]))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", blocker], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "r" / "report.html").is_file()


def test_merged_report_of_two_runs(anitalker: Path, adversarial: Path, tmp_path: Path) -> None:
    html_path = render([anitalker, adversarial], tmp_path / "merged")
    html, _ = parse(html_path)
    report = json.loads((html_path.parent / "report.json").read_text(encoding="utf-8"))
    assert {r["label"] for r in report["runs"]} == {"anitalker", "adversarial"}
    assert "dub9-freeze" in html and "monalisa-mfcc" in html
    assert len(report["clips"]) == 9 and {c["run"] for c in report["clips"]} == {"anitalker", "adversarial"}
    groups = {(r["model"], r["mitigation"]) for r in report["leaderboard"]["rows"]}
    assert (PAIRS_MODEL, "mfcc") in groups and (ADV_MODEL, "freeze") in groups
    # without --out a merged report goes to its own folder, never into one run's directory
    res = subprocess.run(
        [sys.executable, "-m", "driftbench", "report", str(anitalker), str(adversarial)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    out = Path(res.stdout.strip().splitlines()[-1])
    assert res.returncode == 0 and out.parent.name.startswith("compare-")
    import shutil

    shutil.rmtree((ROOT / out).parent if not out.is_absolute() else out.parent)


def test_worst_frames_are_the_lowest_with_pose_and_expression(anitalker: Path, ani_report: Path) -> None:
    html_path = ani_report
    report = json.loads((html_path.parent / "report.json").read_text(encoding="utf-8"))
    worst = report["worst_frames"]
    frames = pd.read_parquet(anitalker / "frames.parquet")
    assert worst[0]["sim_dec"] == pytest.approx(frames["sim_dec"].min(), abs=1e-6)
    assert worst[0]["clip_id"] == "negative"  # another person's face is the worst match
    assert sum(w["clip_id"] == "negative" for w in worst) <= 2
    assert all({"yaw", "pitch", "roll", "d_expr", "blendshapes"} <= set(w) for w in worst)
    assert len(worst[0]["blendshapes"]) == 3
    sims = [w["sim_dec"] for w in worst]
    assert sims == sorted(sims)


def test_glossary_has_metric_cards(ani_report: Path) -> None:
    html_path = ani_report
    report = json.loads((html_path.parent / "report.json").read_text(encoding="utf-8"))
    cards = {c["metric"]: c for c in report["glossary"]}
    for m in (
        "sim_dec_at_{T}s",
        "drift_reduction_{T}s",
        "survival_at_{T}s",
        "expressivity_retained",
        "ref_copy",
    ):
        assert {"what", "units", "direction", "ci", "gate"} <= set(cards[m])
    assert "0.02" in cards["sim_dec_at_{T}s"]["gate"] and cards["drift_reduction_{T}s"]["gate"] == "not gated"


def test_report_cli_bad_usage(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "driftbench", "report", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "not a run directory" in res.stderr and "fix:" in res.stderr


def test_skipped_clips_are_shown_with_reason_and_fix(tmp_path: Path) -> None:
    """A real run where one clip cannot be read and one shows no face: the report lists the first with the
    reason and the fix; the second stays among the clips, lost (face loss is never a gain). The clip with a
    face: ../shared's hallo_7_1, or an embedded synthetic clip."""
    import numpy as np

    from tests.realruns import HAVE_SHARED, VIDEO, run_pipeline, synthetic_pairs, write_clip, write_manifest

    face = VIDEO / "generated" / "hallo_7_1.mp4" if HAVE_SHARED else next(iter(synthetic_pairs().values()))[0]
    blank = write_clip(tmp_path / "blank.mp4", [np.full((128, 128, 3), 30, np.uint8)] * 50, 25.0)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"")
    manifest = write_manifest(tmp_path / "m.csv", [
        {"clip": str(face), "reference": "first_frame"},
        {"clip": str(blank), "reference": "first_frame"}, {"clip": str(broken), "reference": "first_frame"}])
    res = run_pipeline(manifest, tmp_path / "run", "sampling.end=3")
    assert res.returncode == 1  # some clips failed, the rest written
    html_path = tmp_path / "run" / "report.html"  # rendered by `driftbench run` itself
    html, _ = parse(html_path)
    assert "empty" in html and "fix:" in html and "broken.mp4" in html
    report = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
    assert [s["reason"] for s in report["skipped"]] == ["empty"]
    assert len(report["clips"]) == 2
    import pandas as pd

    clips = pd.read_csv(tmp_path / "run" / "clips.csv")
    lost = clips[clips["path"].astype(str).str.endswith("blank.mp4")]
    assert len(lost) == 1 and int(lost["lost"].iloc[0]) == 1 and lost["loss_cause"].iloc[0] == "no_face"
    assert float(lost["survival_time_s"].iloc[0]) == 0.0 and float(lost["face_rate"].iloc[0]) == 0.0
    # and the leaderboard row shows both: one clip skipped, one without any face
    from driftbench.results import leaderboard as lbm

    board = lbm.build(lbm.load_runs([tmp_path / "run"]))
    assert int(board.rows["n_skipped"].sum()) == 1 and int(board.rows["n_no_face"].sum()) == 1
    assert int(board.rows["n_lost_no_face"].sum()) == 1 and int(board.rows["n_lost"].sum()) >= 1
    # the drift verdict's Kaplan-Meier curve stands beside identity survival
    assert report["drift_survival"] and "Kaplan-Meier drift-free survival" in html
    assert sum(v["n"] for v in report["drift_survival"].values()) == 2
    # a run where nothing could be measured still gets its report (and the gate says 1, not a crash)
    empty = run_pipeline(broken, tmp_path / "empty")
    assert empty.returncode == 1, empty.stderr[-2000:]
    html, _ = parse(tmp_path / "empty" / "report.html")
    assert "No clip was measured" in html and "empty" in html
    from driftbench.cli import gate as cli_gate

    assert (
        cli_gate.main([str(tmp_path / "empty"), "--baseline", str(ROOT / "metrics/baselines/generated.json")])
        == 1
    )


def test_terminal_summary_counts_and_names_the_worst_clip(tmp_path: Path) -> None:
    """Issue 15: after a run, measured / skipped / drifting (when the run has a verdict) / lost and the clip
    that drifted most by its end; without a ``drifting`` column that count is left out, not invented."""
    from driftbench.report.summary import run_summary

    clips = pd.DataFrame(
        {
            "clip_id": ["a", "b", "c"],
            "lost": [0, 1, 0],
            "drift_dec_at_end": [0.01, 0.42, 0.1],
            "opening_dec": [0.9, 0.92, 0.9],
            "sim_dec_at_end": [0.89, 0.5, 0.8],
        }
    )
    clips.to_csv(tmp_path / "clips.csv", index=False)
    pd.DataFrame({"clip_id": [""], "item": ["x.mp4"], "stage": ["source"], "reason": ["r"], "message": ["m"]}
                 ).to_csv(tmp_path / "skipped.csv", index=False)
    lines = run_summary(tmp_path)
    assert lines == ["measured 3 · skipped 1 · lost 1",
                     "worst clip: b, end drift +0.420 decoupled (opening 0.920 -> end 0.500)"]
    clips.assign(drifting=[0, 1, 1]).to_csv(tmp_path / "clips.csv", index=False)
    assert run_summary(tmp_path)[0] == "measured 3 · skipped 1 · drifting 2 · lost 1"


def test_single_run_opens_with_identity_per_clip_and_a_sweep_with_its_leaderboard(anitalker: Path,
                                                                                   tmp_path: Path) -> None:
    """Issue 15: a single run's report opens with identity over time (one labelled panel per clip, clips still
    observed per bin under the mean curve), a comparison's with its leaderboard; drift columns come first in
    the per-clip table."""
    from driftbench.report import render_run
    from tests.realruns import copy_run

    def order(html: str) -> tuple[int, int]:
        return html.index('<section id="curves">'), html.index('<section id="leaderboard">')

    mixed = (
        (anitalker / "report.html").read_text(encoding="utf-8")
        if (anitalker / "report.html").is_file()
        else None
    )
    single = copy_run(anitalker, tmp_path / "single")
    clips = pd.read_csv(single / "clips.csv")
    clips[clips["mitigation"] == "none"].to_csv(single / "clips.csv", index=False)
    html = render_run(single).read_text(encoding="utf-8")
    curves_at, board_at = order(html)
    assert curves_at < board_at
    assert "one panel per clip" in html and "clips still observed per bin" in html
    heads = re.findall(r"<th class=\"[^\"]*\">([^<]+)</th>", html.split('id="clips-table"', 1)[1])
    # the drift verdict badge stands beside the clip where the run has one (it does since issue 14)
    assert heads[:5] == ["clip", "verdict", "drift@30s", "drift@60s", "drift@end"]
    both = render_run(copy_run(anitalker, tmp_path / "both")).read_text(encoding="utf-8")
    curves_at, board_at = order(both)
    assert board_at < curves_at and "one panel per clip" not in both
    assert mixed is None or mixed.count('<section id="leaderboard">') == 1


def test_template_bytecode_cache_renders_the_same_page(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled report template kept under $XDG_CACHE_HOME renders what a fresh compile renders; a
    truncated entry and a cache directory that cannot be made fall back to compiling."""
    from driftbench.report.html import _env

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    ctx = {"title": "<t>", "runs": [], "leaderboard": [], "figures": [], "rows": [], "table_cols": [],
           "strips": [], "worst": [], "skipped": [], "glossary": [], "horizons": [], "notes": [],
           "settings": {}, "survival": {}}

    def page() -> str:
        return _env().get_template("report.html.j2").render(**ctx)

    fresh = page()
    assert "&lt;t&gt;" in fresh
    entries = list((tmp_path / "xdg" / "driftbench" / "templates").glob("*.cache"))
    assert len(entries) == 1
    assert page() == fresh  # loaded from the cache
    entries[0].write_bytes(entries[0].read_bytes()[:100])
    assert page() == fresh  # truncated entry: compiled again
    assert len(entries[0].read_bytes()) > 100  # and rewritten
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))  # a file where the directory would go
    assert page() == fresh


def test_png_charts_draw_the_same_charts_as_images(adversarial: Path, adv_report: Path,
                                                   tmp_path: Path) -> None:
    """`driftbench report --charts png`: every chart slot of the browser page is an inline PNG instead, the
    page runs the sorter only (the CSP admits that one script), and the tables are the same."""
    res = subprocess.run([sys.executable, "-m", "driftbench", "report", str(adversarial), "--out",
                          str(tmp_path), "--charts", "png"], cwd=ROOT, capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    html, page = parse(tmp_path / "report.html")
    browser_html, browser_page = parse(adv_report)
    n_charts = sum(1 for t, a in browser_page.tags if t == "div" and a.get("data-chart") is not None)
    assert not [a for t, a in page.tags if t == "div" and a.get("data-chart") is not None]
    imgs = [a for t, a in page.tags if t == "img"]
    browser_imgs = [a for t, a in browser_page.tags if t == "img"]
    assert len(imgs) == len(browser_imgs) + n_charts
    runnable, data = report_scripts(html)
    assert len(runnable) == 1 and data == []
    for name in ("report_clips.csv", "leaderboard.csv"):
        assert (tmp_path / name).read_bytes() == (adv_report.parent / name).read_bytes()
    assert browser_html.count("<section") == html.count("<section")
