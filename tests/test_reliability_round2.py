"""Reliability, round two (issue 16): concurrent writers, damaged parts, settings checked before any
work, secrets scrubbed, warnings that reach the terminal, SIGTERM, too-short clips, symlinks, CSV
formula injection, refused runs that leave nothing behind, and the messages of full disks, YAML
manifests, unquoted paths and damaged run directories.

Each test names the hostile case it covers (``KINDS`` counts them). Tests without media run on any
machine; the ones that measure use real clips from ../shared through a real ``driftbench run``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import FACES, VIDEO, needs_shared
from tests.data import media
from tests.data.runs import ROOT, command, read_csv, run_inprocess, subprocess_env

GOOD_A = VIDEO / "real/pcavs_pose_620900105.mp4"  # ~4 s, one face
GOOD_B = VIDEO / "real/pcavs_pose_517600055.mp4"
PHOTO = FACES / "photos/obama_1.jpg"


def _errors(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("driftbench")]


# -- settings checked at composition: exit 2, nothing created ------------------------------------------------
BAD_SETTINGS = {
    "fps_zero": ["sampling.fps=0"],
    "fps_negative": ["sampling.fps=-2"],
    "fps_nan": ["sampling.fps=nan"],
    "fps_inf": ["sampling.fps=inf"],
    "start_negative": ["sampling.start=-1"],
    "end_before_start": ["sampling.start=3", "sampling.end=1"],
    "device_bogus": ["device=bogus"],
    "device_gpu": ["device=gpu"],
    "bin_zero": ["metrics.bin_s=0"],
    "bin_negative": ["metrics.bin_s=-1"],
    "horizons_empty": ["metrics.horizons=[]"],
    "far_zero": ["metrics.far=0"],
    "min_samples_zero": ["metrics.min_samples=0"],
    "pattern_empty": ["model.pattern="],
    "pattern_absolute": ["model.pattern=/etc/*.mp4"],
    "reference_bogus": ["reference=bogus"],
    "loss_score_bogus": ["metrics.loss_score=bogus"],
    "max_faces_zero": ["signals.max_faces=0"],
    "stage_bogus": ["mitigation.stage=sometimes"],
    "workers_negative": ["executor.workers=-1"],
}


@pytest.fixture(scope="module")
def one_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one file named like a clip (composition checks never open it)."""
    d = tmp_path_factory.mktemp("one")
    (d / "a.mp4").write_bytes(b"not read before the checks")
    return d


@pytest.mark.parametrize("name", sorted(BAD_SETTINGS))
def test_bad_setting_exits_2_before_any_work(name, one_clip_dir, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    overrides = BAD_SETTINGS[name]
    code = run_inprocess("model=folder", f"model.path={one_clip_dir}", f"output.dir={out}", *overrides)
    err = capsys.readouterr()
    assert code == 2, err.err
    lines = _errors(err.err)
    assert len(lines) == 1 and "-- fix:" in lines[0], lines
    key = overrides[-1].split("=")[0]
    assert key in lines[0], f"the message names the setting: {lines[0]}"
    assert not out.exists() and str(out) not in err.out, "nothing is created or printed"


@pytest.mark.parametrize(
    "name,value,expect",
    [
        ("comma", "a,b", "Ambiguous"),
        ("equals", "a=b", "="),
        ("bracket", "a[1]", "["),
        ("interpolation", "${x}", "x"),
    ],
)
def test_path_with_hydra_syntax_gets_quote_hint(name, value, expect, tmp_path, capsys) -> None:
    code = run_inprocess("model=folder", f"model.path={tmp_path}/{value}", f"output.dir={tmp_path / 'run'}")
    err = capsys.readouterr().err
    assert code == 2
    (line,) = _errors(err)
    assert "quote the value: model.path='" in line, line
    if "${" in value:
        assert "\\${" in line, "a quoted ${ still interpolates: the hint escapes it"


def test_yaml_manifest_error_names_yaml(tmp_path, capsys) -> None:
    bad = tmp_path / "clips.yaml"
    bad.write_text("- {clip: a.mp4\n  - x: [\n", encoding="utf-8")
    code = run_inprocess("model=folder", f"model.path={bad}", f"output.dir={tmp_path / 'run'}")
    (line,) = _errors(capsys.readouterr().err)
    assert code == 2 and "YAML" in line and "line" in line and "CSV" not in line, line


# -- refused runs leave no run directory -----------------------------------------------------------------
def test_empty_folder_and_duplicate_ids_create_nothing(tmp_path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    dup = tmp_path / "dup.csv"
    dup.write_text("clip\na.mp4\na.mp4\n", encoding="utf-8")
    for path in (empty, dup):
        out = tmp_path / f"run-{path.name}"
        code = run_inprocess("model=folder", f"model.path={path}", f"output.dir={out}")
        captured = capsys.readouterr()
        assert code == 2 and len(_errors(captured.err)) == 1, captured.err
        assert not out.exists() and captured.out.strip() == "", "no run directory is made or printed"


@needs_shared
def test_generator_without_keys_creates_nothing(tmp_path, monkeypatch, capsys) -> None:
    """model=kling without KLING_* keys is refused after composing (the estimate needs the dataset)."""
    for name in ("KLING_ACCESS_KEY", "KLING_SECRET_KEY", "DRIFTBENCH_CONFIRM_SPEND"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "run"
    code = run_inprocess(
        "model=kling",
        "model.durations=[5]",
        "model.limit=1",
        f"model.cache_dir={tmp_path / 'gen'}",
        f"output.dir={out}",
        "--yes",
    )
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert "KLING_ACCESS_KEY" in captured.err
    assert not out.exists() and str(out) not in captured.out


# -- the run directory's lock ----------------------------------------------------------------------------
_HOLD = """
import sys, time
from pathlib import Path
from driftbench.runner import run_lock
with run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_second_writer_exits_2_naming_the_holder(one_clip_dir, tmp_path, capsys) -> None:
    import socket

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], cwd=ROOT, env=subprocess_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code = run_inprocess("model=folder", f"model.path={one_clip_dir}", f"output.dir={out}")
        (line,) = _errors(capsys.readouterr().err)
        assert code == 2
        assert f"pid {holder.pid}" in line and socket.gethostname() in line and "started" in line, line
        assert not (out / "status.json").exists() and not (out / ".hydra").exists(), (
            "the holder's files are its own"
        )
    finally:
        holder.kill()
        holder.wait()
    # a killed holder releases the lock: the stale lock file does not block the next run
    from driftbench.runner import run_lock

    with run_lock(out):
        pass


@needs_shared
@pytest.mark.usefixtures("cache_dir")
def test_sweep_job_directory_is_locked_too(clips, tmp_path, capsys) -> None:
    root = tmp_path / "runs"
    args = (
        "-m",
        "model=folder",
        f"model.path={clips / 'good_a.mp4'},{clips / 'good_b.mp4'}",
        f"output.root={root}",
        "executor.workers=1",
    )
    assert run_inprocess(*args) == 0
    jobs = sorted(p.parent for p in root.glob("sweep-*/*/status.json"))
    assert len(jobs) == 2
    capsys.readouterr()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(jobs[0])], cwd=ROOT, env=subprocess_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code = run_inprocess(*args)
        err = capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and f"pid {holder.pid}" in err and str(jobs[0]) in err, err[-2000:]
    statuses = [json.loads((j / "status.json").read_text())["exit_code"] for j in jobs]
    assert statuses == [0, 0], "the held job's status is its holder's; the other job resumed"


# -- secrets ---------------------------------------------------------------------------------------------
def test_scrub_removes_every_credential(monkeypatch) -> None:
    from driftbench.errors import UsageError, register_secret_env, scrub

    secrets = {"KLING_ACCESS_KEY": "AKtestaccess123456", "KLING_SECRET_KEY": "SKtestsecret987654",
               "RUNWAYML_API_SECRET": "key_runwaysecret42", "GEMINI_API_KEY": "AIzaGeminiKey0001",
               "GOOGLE_API_KEY": "AIzaGoogleKey0002", "MY_PROVIDER_CRED": "customsecret77"}
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    register_secret_env("MY_PROVIDER_CRED")  # what a provider YAML's auth.env does
    text = " ".join(f"{k}={v}" for k, v in secrets.items())
    text += (
        ' {"echo": "Authorization: Bearer sk-live-abcdef123456"} jwt eyJhbGciOiJI.eyJpc3MiOiJB.c2lnbmF0dXJl'
    )
    clean = scrub(text)
    assert not any(v in clean for v in secrets.values()), clean
    assert "sk-live-abcdef123456" not in clean and "eyJhbGciOiJI" not in clean
    assert "KLING_ACCESS_KEY=" in clean, "only the values go"
    assert secrets["GEMINI_API_KEY"] not in str(UsageError(f"bad key {secrets['GEMINI_API_KEY']}"))
    monkeypatch.setenv("KLING_FLAG", "1")  # short values are not secrets: a report keeps its digits
    assert scrub("n_samples 1") == "n_samples 1"


def test_written_files_and_log_records_are_scrubbed(tmp_path, monkeypatch, caplog) -> None:
    import logging

    from driftbench.io import write_csv, write_json, write_text

    monkeypatch.setenv("RUNWAYML_API_SECRET", "key_runwaysecret42")
    write_csv(
        tmp_path / "t.csv", pd.DataFrame({"message": ["HTTP 400 you sent key_runwaysecret42"], "n": [1]})
    )
    write_json(tmp_path / "t.json", {"argv": ["Bearer key_runwaysecret42"]})
    write_text(tmp_path / "t.html", "<p>key_runwaysecret42</p>")
    monkeypatch.setattr(logging.getLogger("driftbench"), "disabled", False)  # an in-process sweep disables it
    with caplog.at_level(logging.WARNING, logger="driftbench"):
        logging.getLogger("driftbench").warning("echo %s", "key_runwaysecret42")
    for p in tmp_path.iterdir():
        assert b"key_runwaysecret42" not in p.read_bytes(), p
    assert "key_runwaysecret42" not in caplog.text and "[redacted]" in caplog.text
    # a signed result URL a generator's cache keeps (no key in it) is written unchanged, still usable
    url = "https://cdn.example/v.mp4?_jwt=eyJhbGciOiJIUzI1.eyJleHAiOjE3MzM.c2lnbmF0dXJl&token=abcdef0123456789"
    write_json(tmp_path / "record.json", {"video_url": url})
    assert json.loads((tmp_path / "record.json").read_text())["video_url"] == url


# -- CSV formula injection ---------------------------------------------------------------------------------
def test_csv_text_cells_are_neutralised_and_read_back(tmp_path) -> None:
    from driftbench.io import read_csv as read_table
    from driftbench.io import write_csv

    df = pd.DataFrame(
        {
            "clip_id": ['=HYPERLINK("http://x")', "+cmd", "-2+3", "@SUM(A1)", "'=quoted", "plain", "-0.5"],
            "seed": [-1, 2, 3, 4, 5, 6, 7],
            "score": [-0.25, 0.5, 1.0, -1.0, 0.0, 0.1, 0.2],
        }
    )
    write_csv(tmp_path / "c.csv", df)
    raw = pd.read_csv(tmp_path / "c.csv", dtype=str, keep_default_na=False)
    risky = raw["clip_id"][raw["clip_id"].str.match(r"^[=+\-@]")]
    assert set(risky) == {"-0.5"}, "only a number may start with a formula character"
    assert raw["seed"].iloc[0] == "-1" and raw["score"].iloc[0] == "-0.25", "numbers stay numbers"
    back = read_table(tmp_path / "c.csv")
    assert list(back["clip_id"]) == list(df["clip_id"]) and list(back["seed"]) == list(df["seed"])


# -- warnings reach the terminal ----------------------------------------------------------------------------
def test_native_quiet_window_keeps_other_threads_stderr(capfd) -> None:
    """MediaPipe's loader hides its native start-up lines on a worker thread; a warning written by
    another thread in that window still reaches fd 2 (it used to go to /dev/null)."""
    import logging
    import threading

    from driftbench.faces.landmarker import quiet_native_stderr

    inside, release = threading.Event(), threading.Event()

    def loader() -> None:
        with quiet_native_stderr():
            os.write(2, b"W0000 00:00:1733000000.000000 1 inference_feedback_manager.cc:114] native noise\n")
            inside.set()
            release.wait(10)

    handler = logging.StreamHandler(sys.stderr)
    logger = logging.getLogger("driftbench.test-stderr")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)  # whatever an earlier in-process sweep left as the root level
    logger.disabled = False
    try:
        th = threading.Thread(target=loader)
        th.start()
        assert inside.wait(10)
        logger.warning("a warning from the main thread")
        os.write(2, b"a native line from the main thread\n")
        release.set()
        th.join(10)
    finally:
        logger.removeHandler(handler)
    err = capfd.readouterr().err
    assert "a warning from the main thread" in err and "a native line from the main thread" in err
    assert "native noise" not in err


# -- run directories that `driftbench report` cannot read ---------------------------------------------------
def _fake_run(d: Path) -> Path:
    d.mkdir(parents=True)
    pd.DataFrame({"clip_id": ["a"], "model": ["m"], "mitigation": ["none"]}).to_csv(
        d / "clips.csv", index=False
    )
    (d / "run.json").write_text("{}", encoding="utf-8")
    return d


@pytest.mark.parametrize("damage", ["run_json_corrupt", "run_json_not_object", "frames_truncated"])
def test_report_on_damaged_run_is_one_line_exit_2(damage, tmp_path, capsys) -> None:
    from driftbench.cli import main

    d = _fake_run(tmp_path / "run")
    if damage == "run_json_corrupt":
        (d / "run.json").write_text('{"config": {', encoding="utf-8")
    elif damage == "run_json_not_object":
        (d / "run.json").write_text("[1, 2]", encoding="utf-8")
    else:
        pd.DataFrame({"clip_id": ["a"] * 50, "t": range(50)}).to_parquet(d / "frames.parquet")
        data = (d / "frames.parquet").read_bytes()
        (d / "frames.parquet").write_bytes(data[: len(data) // 2])
    code = main(["report", str(d)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = _errors(err)
    name = "frames.parquet" if damage == "frames_truncated" else "run.json"
    assert name in line and "-- fix:" in line, line


# == runs on real media ====================================================================================
def _manifest(d: Path, rows: list[dict[str, object]]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(d / "manifest.csv", index=False)
    return d / "manifest.csv"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real clips and hostile copies of them."""
    if not VIDEO.is_dir():
        pytest.skip("../shared is needed")
    d = tmp_path_factory.mktemp("clips")
    shutil.copy(GOOD_A, d / "good_a.mp4")
    shutil.copy(GOOD_B, d / "good_b.mp4")
    media.reencode(GOOD_A, d / "short.mp4", max_seconds=0.2)  # a 0.2 s clip: one sample at 1 frame/s
    import cv2

    cv2.imwrite(str(d / "still.png"), cv2.imread(str(PHOTO)))
    shutil.copy(d / "still.png", d / "still_png.mp4")  # a PNG renamed .mp4
    cv2.imwrite(str(d / "no_face.jpg"), media.blur_all(cv2.imread(str(PHOTO))))
    return d


@needs_shared
@pytest.mark.usefixtures("cache_dir")
def test_too_short_and_start_past_end_are_reported_not_scored(clips, tmp_path) -> None:
    m = _manifest(tmp_path / "ds", [
        {"clip_id": "short_0.2s", "clip": str(clips / "short.mp4")},
        {"clip_id": "png_renamed_mp4", "clip": str(clips / "still_png.mp4")},
        {"clip_id": "good", "clip": str(clips / "good_a.mp4")},
    ])
    out = tmp_path / "run"
    code = run_inprocess("model=folder", f"model.path={m}", f"output.dir={out}", "executor.workers=1")
    assert code == 1
    measured = read_csv(out / "clips.csv")
    skipped = read_csv(out / "skipped.csv").set_index("clip_id")
    assert list(measured["clip_id"]) == ["good"], "a clip scored from one sample never enters the aggregates"
    for cid in ("short_0.2s", "png_renamed_mp4"):
        assert skipped.loc[cid, "reason"] == "too_short", skipped.loc[cid, "message"]
        assert (
            "metrics.min_samples" in skipped.loc[cid, "message"] and "-- fix:" in skipped.loc[cid, "message"]
        )
    # sampling.start past the clip's end: its own reason and message (not "zero-length clip?")
    out2 = tmp_path / "run_start"
    code = run_inprocess("model=folder", f"model.path={clips / 'good_a.mp4'}", f"output.dir={out2}",
                         "sampling.start=100", "executor.workers=1")
    row = read_csv(out2 / "skipped.csv").iloc[0]
    assert code == 1 and row["reason"] == "start_past_end", row.to_dict()
    assert "sampling.start=100" in row["message"] and "zero-length" not in row["message"]


@needs_shared
@pytest.mark.usefixtures("cache_dir")
def test_dangling_and_looping_symlinks_are_listed(clips, tmp_path) -> None:
    d = tmp_path / "folder"
    d.mkdir()
    os.symlink(clips / "good_a.mp4", d / "good.mp4")
    os.symlink(tmp_path / "gone.mp4", d / "dangling.mp4")
    os.symlink(d / "loop.mp4", d / "loop.mp4")
    out = tmp_path / "run"
    code = run_inprocess("model=folder", f"model.path={d}", f"output.dir={out}", "executor.workers=1")
    assert code == 1
    skipped = read_csv(out / "skipped.csv")
    rows = skipped[skipped["reason"] == "broken_symlink"]
    assert sorted(Path(p).name for p in rows["item"]) == ["dangling.mp4", "loop.mp4"]
    assert rows["message"].str.contains("-- fix:").all()
    assert list(read_csv(out / "clips.csv")["clip_id"]) == ["good.mp4"]


@needs_shared
@pytest.mark.usefixtures("cache_dir")
def test_formula_cells_are_neutralised_in_run_and_report_tables(clips, tmp_path) -> None:
    m = _manifest(
        tmp_path / "ds",
        [
            {
                "clip_id": '=HYPERLINK("http://evil","x")',
                "clip": str(clips / "good_a.mp4"),
                "character": "+cmd|' /C calc'!A0",
                "prompt": "@SUM(1+1)",
                "note": "-2+3",
                "seed": -3,
            }
        ],
    )
    out = tmp_path / "run"
    assert run_inprocess("model=folder", f"model.path={m}", f"output.dir={out}", "executor.workers=1") == 0
    for table in ("clips.csv", "report_clips.csv"):
        raw = read_csv(out / table)
        for col in raw.columns:
            for cell in raw[col]:
                if cell[:1] in ("=", "+", "-", "@"):
                    float(cell)  # only numbers may start so
        assert raw.loc[0, "clip_id"].startswith("'=HYPERLINK"), table
    assert read_csv(out / "clips.csv").loc[0, "seed"] == "-3"
    # the report still joins the per-clip table with frames.parquet (the apostrophe is read back off)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "HYPERLINK" in page


@needs_shared
@pytest.mark.usefixtures("cache_dir")
def test_parts_of_another_configuration_are_never_assembled(clips, tmp_path) -> None:
    """A part written by another configuration (a second run into the same directory) is not mixed
    into this run's tables; the rerun measures that clip again with its own settings."""
    from driftbench.runner import PartStore, assemble
    from driftbench.sources.base import Clip

    m = _manifest(tmp_path / "ds", [{"clip_id": "a", "clip": str(clips / "good_a.mp4")},
                                    {"clip_id": "b", "clip": str(clips / "good_b.mp4")}])
    out, other = tmp_path / "run", tmp_path / "other"
    args = ("model=folder", f"model.path={m}", "executor.workers=1")
    assert run_inprocess(*args, f"output.dir={out}") == 0
    n_a = int(read_csv(out / "clips.csv").set_index("clip_id").loc["a", "n_samples"])
    assert run_inprocess(*args, f"output.dir={other}", "sampling.fps=2") == 0
    for f in (other / "parts").glob("a-*"):  # what a concurrent fps=2 writer would have left
        shutil.copy(f, out / "parts" / f.name)
    meta = json.loads((out / "run.json").read_text())
    store = PartStore(out, meta["config_hash"])
    recs = [json.loads(p.read_text())["clip"] for p in sorted((out / "parts").glob("*.json"))]
    cl = [Clip(**{**r, "references": tuple(r["references"])}) for r in recs]
    assemble(out, cl, store, [])
    assert list(read_csv(out / "clips.csv")["clip_id"]) == ["b"], "the fps=2 part is not this run's"
    assert run_inprocess(*args, f"output.dir={out}") == 0
    again = read_csv(out / "clips.csv").set_index("clip_id")
    assert (
        int(again.loc["a", "n_samples"]) == n_a
        and json.loads((out / "run.json").read_text())["resumed_clips"] == 1
    )


@needs_shared
@pytest.mark.usefixtures("cache_dir")
@pytest.mark.parametrize("where", ["footer", "body"])
def test_damaged_part_is_measured_again(where, clips, tmp_path, monkeypatch, caplog) -> None:
    """A truncated part (footer gone) is found before measuring; one damaged deeper is found when the
    tables are assembled. Either way the clip is measured again, with a warning, and the run exits 0."""
    import logging

    from driftbench.runner import PartStore

    out = tmp_path / "run"
    args = ("model=folder", f"model.path={clips / 'good_a.mp4'}", f"output.dir={out}", "executor.workers=1")
    assert run_inprocess(*args) == 0
    before = read_csv(out / "clips.csv")
    (curve,) = (out / "parts").glob("*.curve.parquet")
    data = curve.read_bytes()
    if where == "footer":
        curve.write_bytes(data[: len(data) // 2])
    else:  # footer intact, a column chunk overwritten
        curve.write_bytes(data[:4] + b"\0" * (len(data) - 200) + data[-196:])
        monkeypatch.setattr(PartStore, "damage", lambda self, clip: None)
    with caplog.at_level(logging.WARNING, logger="driftbench"):
        assert run_inprocess(*args) == 0
    assert "measuring the clip again" in caplog.text
    pd.testing.assert_frame_equal(read_csv(out / "clips.csv"), before)


@needs_shared
@pytest.mark.usefixtures("cache_dir")
def test_full_disk_says_so(clips, tmp_path, monkeypatch, capsys) -> None:
    import errno

    import driftbench.runner as runner

    def full(*a: object, **k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "clips.csv"))

    monkeypatch.setattr(runner, "write_csv", full)
    code = run_inprocess(
        "model=folder",
        f"model.path={clips / 'good_a.mp4'}",
        f"output.dir={tmp_path / 'run'}",
        "executor.workers=1",
    )
    (line,) = _errors(capsys.readouterr().err)
    assert code == 1
    assert "no space left" in line and "free space" in line, line
    assert "driftbench.log" not in line and "report it" not in line, line


# -- secrets echoed by a provider ----------------------------------------------------------------------------
@needs_shared
@pytest.mark.usefixtures("cache_dir")
def test_provider_echoing_the_authorization_header_leaks_nothing(tmp_path, monkeypatch, capfd) -> None:
    from tests.test_generators_fakes import FOOTAGE, RUNWAY_KEY, FakeRunway, Footage

    class Echo(FakeRunway):
        """Refuses every submission with an error body that echoes the request's headers."""

        def handle(self, h, method, body):  # type: ignore[no-untyped-def]
            if method == "POST":
                auth = h.headers.get("Authorization") or ""
                self.log.tokens.add(auth.removeprefix("Bearer "))
                h._send(400, {"error": f"invalid request; you sent Authorization: {auth} "
                                       f"and key={auth.removeprefix('Bearer ')}"})
                return
            super().handle(h, method, body)

    import cv2

    ds = tmp_path / "ds"
    ds.mkdir()
    import av

    with av.open(str(FOOTAGE)) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="bgr24")
    cv2.imwrite(str(ds / "presenter.png"), frame)
    (ds / "dataset.yaml").write_text(
        "name: echo_suite\ndurations: [4]\ncharacters:\n  presenter: {references: [presenter.png]}\n"
        "prompts:\n  - {id: talk, stress: [long_take], text: 'The presenter talks.'}\n", encoding="utf-8")
    monkeypatch.setenv("RUNWAYML_API_SECRET", RUNWAY_KEY)
    out = tmp_path / "run"
    with Echo(Footage()) as fake:
        code = run_inprocess(
            "model=runway",
            f"model.base_url={fake.url}",
            f"model.dataset={ds}",
            "model.durations=[4]",
            "model.extend_s=2",
            "model.backoff_s=0.01",
            "model.max_retries=0",
            f"model.cache_dir={tmp_path / 'gen'}",
            f"output.dir={out}",
            "--yes",
        )
        assert RUNWAY_KEY in fake.log.tokens, "the key was sent, and echoed back"
    said = capfd.readouterr()
    monkeypatch.delenv("DRIFTBENCH_CONFIRM_SPEND", raising=False)
    assert code == 1, said.err[-2000:]
    skipped = read_csv(out / "skipped.csv")
    assert skipped["message"].str.contains("you sent Authorization: Bearer [redacted]", regex=False).all()
    written = [p for p in out.rglob("*") if p.is_file()]
    assert {"skipped.csv", "report.html", "report.json", "driftbench.log", "run.json"} <= {
        p.name for p in written
    }
    for p in written:
        assert RUNWAY_KEY.encode() not in p.read_bytes(), p
    assert RUNWAY_KEY not in said.out + said.err


# -- SIGTERM ------------------------------------------------------------------------------------------------
@needs_shared
def test_sigterm_is_resumable_with_its_own_exit_code(clips, tmp_path) -> None:
    ds = tmp_path / "ds"
    rows = [
        {"clip_id": f"c{i}", "clip": str(clips / ("good_a.mp4" if i % 2 else "good_b.mp4"))} for i in range(6)
    ]
    m = _manifest(ds, rows)
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = command(
        "model=folder", f"model.path={m}", f"output.dir={out}", "executor.workers=1", "cache.enabled=false"
    )
    proc = subprocess.Popen(args, cwd=ROOT, env=subprocess_env(cache), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list((out / "parts").glob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before a part was written"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    assert "terminated (SIGTERM)" in stderr and "rerun the same command to resume" in stderr
    assert json.loads((out / "status.json").read_text())["exit_code"] == 143
    n_parts = len(list((out / "parts").glob("*.json")))
    assert 1 <= n_parts < 6
    again = subprocess.run(
        args, cwd=ROOT, env=subprocess_env(cache), capture_output=True, text=True, timeout=600, check=False
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((out / "run.json").read_text())["resumed_clips"] == n_parts
    assert len(read_csv(out / "clips.csv")) == 6


# -- warnings reach the terminal, run after run -----------------------------------------------------------
@needs_shared
def test_every_skipped_warning_is_printed_over_repeated_runs(clips, tmp_path) -> None:
    """Clips that fail while decoding (no frame at all) fail at once, while MediaPipe's graph is still
    being built on the loader thread: their warnings are printed in every run (the issue saw 1, 1, 0
    and 2 of 2 over four runs)."""
    ds = tmp_path / "ds"
    ds.mkdir()
    for i in range(2):
        media.zero_length_clip(ds / f"empty{i}.mp4")
    m = _manifest(ds, [{"clip_id": f"empty{i}", "clip": str(ds / f"empty{i}.mp4")} for i in range(2)]
                  + [{"clip_id": "good", "clip": str(clips / "good_b.mp4")}])
    seen = []
    for i in range(3):
        out = tmp_path / f"run{i}"
        p = subprocess.run(
            command("model=folder", f"model.path={m}", f"output.dir={out}", "executor.workers=1"),
            cwd=ROOT,
            env=subprocess_env(tmp_path / f"cache{i}"),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert p.returncode == 1, p.stderr[-2000:]
        messages = list(read_csv(out / "skipped.csv")["message"])
        assert len(messages) == 2
        seen.append(sum(msg in p.stderr for msg in messages))
    assert seen == [2, 2, 2], f"warnings printed per run: {seen}"


@needs_shared
def test_sweep_jobs_print_and_log_their_warnings(clips, tmp_path) -> None:
    """Hydra's sweep logging config disabled every existing logger: a sweep job printed no warning and
    its driftbench.log stayed empty."""
    ds = tmp_path / "ds"
    ds.mkdir()
    media.zero_length_clip(ds / "empty.mp4")
    p = subprocess.run(
        command(
            "-m",
            "model=folder",
            f"model.path={ds / 'empty.mp4'},{clips / 'good_a.mp4'}",
            f"output.root={tmp_path / 'out'}",
            "executor.workers=1",
        ),
        cwd=ROOT,
        env=subprocess_env(tmp_path / "cache"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert p.returncode == 1, p.stderr[-2000:]
    (job,) = [s.parent for s in (tmp_path / "out").glob("sweep-*/*/skipped.csv") if len(read_csv(s))]
    (message,) = read_csv(job / "skipped.csv")["message"]
    assert message in p.stderr, p.stderr[-2000:]
    assert message in (job / "driftbench.log").read_text(encoding="utf-8")


#: the hostile kinds this file covers, one name each (the older tests/test_reliability.py covers 33)
KINDS = (
    *(f"setting:{k}" for k in BAD_SETTINGS),  # 20
    "override_comma",
    "override_equals",
    "override_bracket",
    "override_interpolation",
    "yaml_manifest_syntax",
    "empty_folder",
    "duplicate_ids",
    "generator_without_keys",
    "second_writer",
    "stale_lock_after_kill",
    "second_sweep_into_locked_job",
    "secret_env_values",
    "secret_in_written_files",
    "provider_echoes_authorization",
    "csv_formula_cells",
    "csv_formula_in_run_and_report",
    "stderr_during_native_quiet",
    "warnings_over_repeated_runs",
    "warnings_in_sweep_jobs",
    "report_run_json_corrupt",
    "report_run_json_not_object",
    "report_frames_truncated",
    "clip_0.2s",
    "png_renamed_mp4",
    "start_past_end",
    "dangling_symlink",
    "looping_symlink",
    "part_of_other_config",
    "part_truncated_footer",
    "part_damaged_body",
    "disk_full",
    "sigterm",
)
