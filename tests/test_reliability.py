"""Bad input never costs the other clips: each broken, extreme or misconfigured input from a real
clip in ../shared goes through a real ``driftbench run`` and must come out either measured or listed
in skipped.csv (and the report) with a one-line message that names the file and the fix.

One run measures the whole catalogue (tens of inputs, ~4 s clips at 1 frame/s), so the suite stays
short; each case is then checked on its own row.
"""

from __future__ import annotations

import html
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import FACES, VIDEO, needs_shared
from tests.data import media
from tests.data.runs import read_csv, run_inprocess

pytestmark = [needs_shared, pytest.mark.usefixtures("cache_dir")]

SRC = VIDEO / "real/pcavs_input_00010.mp4"  # 4.24 s, 224 px, H.264 + AAC, moov at the end
GOOD_A = VIDEO / "real/pcavs_pose_620900105.mp4"
GOOD_B = VIDEO / "real/pcavs_pose_517600055.mp4"
TWO_PEOPLE = FACES / "photos/group_two_people.jpg"
PHOTO = FACES / "photos/obama_1.jpg"


@dataclass(frozen=True)
class Case:
    """One manifest row and what must become of it."""

    clip_id: str
    clip: str  # as written in the manifest
    reference: str = "first_frame"
    expect: str = "ok"  # ok | truncated (measured, with a warning) | <skip reason>
    names: str = ""  # the path the message must name (default: the clip)


def _build(ds: Path) -> list[Case]:
    """Broken and extreme copies of real media in ``ds`` and the manifest rows that use them."""
    ds.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def add(cid: str, clip: str, expect: str, reference: str = "first_frame", names: str = "") -> None:
        cases.append(Case(cid, clip, reference, expect, names))

    shutil.copy(GOOD_A, ds / "good_a.mp4")
    add("good_a", "good_a.mp4", "ok")
    # clip ids that differ only after a dot must keep separate results (parts/ key)
    add("take.1", "good_a.mp4", "ok")
    shutil.copy(GOOD_B, ds / "good_b.mp4")
    add("take.2", "good_b.mp4", "ok")
    # manifest paths may point anywhere the user chooses (DESIGN.md): outside the folder, absolute
    outside = ds.parent / "outside"
    outside.mkdir(exist_ok=True)
    shutil.copy(GOOD_B, outside / "clip.mp4")
    add("outside_relative", "../outside/clip.mp4", "ok")
    add("absolute", str(GOOD_A), "ok")

    add("missing", "missing.mp4", "missing")
    (ds / "zero_byte.mp4").write_bytes(b"")
    add("zero_byte", "zero_byte.mp4", "empty")
    media.text_named_mp4(ds / "text.mp4")
    add("text_named_mp4", "text.mp4", "unreadable")
    media.remux(SRC, ds / "audio_only.mp4", streams="audio")
    add("audio_only", "audio_only.mp4", "no_video_stream")
    media.unknown_codec(SRC, ds / "codec.mp4")
    add("unsupported_codec", "codec.mp4", "unsupported_codec")
    media.zero_length_clip(ds / "zero_length.mp4")
    add("zero_length", "zero_length.mp4", "empty")
    (ds / "folder.mp4").mkdir()
    add("directory", "folder.mp4", "bad_input")
    os.mkfifo(ds / "fifo.mp4")  # a reader would block forever: must be refused, not opened
    add("named_pipe", "fifo.mp4", "bad_input")
    if os.geteuid() != 0:  # root reads anything; the case is meaningful for users only
        shutil.copy(GOOD_A, ds / "noperm.mp4")
        (ds / "noperm.mp4").chmod(0)
        add("no_permission", "noperm.mp4", "unreadable")
    # truncations: the original has its index (moov) at the end, so any cut loses it; a faststart
    # copy keeps the index, so a cut loses only the tail and the rest is measured
    for pct in (1, 10, 50, 90):
        media.truncate(SRC, ds / f"cut{pct}.mp4", pct / 100)
        add(f"truncated_{pct}pct", f"cut{pct}.mp4", "unreadable")
    media.remux(SRC, ds / "faststart.mp4", faststart=True)
    media.truncate(ds / "faststart.mp4", ds / "fs_cut1.mp4", 0.01)
    add("faststart_truncated_1pct", "fs_cut1.mp4", "unreadable")
    for pct in (50, 90):
        media.truncate(ds / "faststart.mp4", ds / f"fs_cut{pct}.mp4", pct / 100)
        add(f"faststart_truncated_{pct}pct", f"fs_cut{pct}.mp4", "truncated")
    add("faststart_intact", "faststart.mp4", "ok")
    # extreme resolution (8K is measured in its own process, see test_8k_clip_*) and no face at all
    media.reencode(SRC, ds / "tiny16.mp4", size=(16, 16), fps=5)
    add("tiny_16x16", "tiny16.mp4", "lost_no_face")
    media.reencode(SRC, ds / "blurred.mp4", fps=5, transform=media.blur_all)
    add("character_never_appears", "blurred.mp4", "lost_no_face")

    # references
    shutil.copy(TWO_PEOPLE, ds / "two_people.jpg")
    add("ref_two_faces", "good_a.mp4", "reference_several_faces", "two_people.jpg", "two_people.jpg")
    import cv2

    photo = cv2.imread(str(PHOTO))
    cv2.imwrite(str(ds / "no_face.jpg"), media.blur_all(photo))
    add("ref_no_face", "good_a.mp4", "reference_no_face", "no_face.jpg", "no_face.jpg")
    add("ref_is_video", "good_a.mp4", "bad_reference", "good_b.mp4", "good_b.mp4")
    add("ref_missing", "good_a.mp4", "missing", "nobody.jpg", "nobody.jpg")
    media.text_named_mp4(ds / "text.jpg")
    add("ref_unreadable", "good_a.mp4", "bad_reference", "text.jpg", "text.jpg")
    os.mkfifo(ds / "pipe.jpg")
    add("ref_named_pipe", "good_a.mp4", "bad_reference", "pipe.jpg", "pipe.jpg")
    (ds / "folder.jpg").mkdir()
    add("ref_directory", "good_a.mp4", "bad_reference", "folder.jpg", "folder.jpg")
    shutil.copy(PHOTO, ds / "photo.jpg")
    add("ref_photo_ok", "good_b.mp4", "ok", "photo.jpg")
    return cases


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory):
    """(cases, bad manifest rows, run directory, exit code) of one run over every case."""
    base = tmp_path_factory.mktemp("reliability")
    ds = base / "dataset"
    cases = _build(ds)
    rows = [{"clip_id": c.clip_id, "clip": c.clip, "reference": c.reference} for c in cases]
    # rows the manifest reader itself must reject, one line each, without stopping the run
    bad_rows = [{"clip_id": "no_clip_cell", "clip": "", "reference": ""},
                {"clip_id": "bad_seed", "clip": "good_a.mp4", "reference": "", "seed": "abc"}]
    pd.DataFrame(rows + bad_rows).to_csv(ds / "manifest.csv", index=False)
    run_dir = base / "run"
    # min_samples=2: the half-truncated clip keeps 2 samples at 1 frame/s, and truncation is the case here
    # (clips too short to score have their own cases in test_reliability_round2.py)
    code = run_inprocess("model=folder", f"model.path={ds / 'manifest.csv'}", f"output.dir={run_dir}",
                         "executor.workers=1", "metrics.min_samples=2")
    return cases, bad_rows, run_dir, code


def _path_in_message(case: Case, ds: Path) -> str:
    target = case.names or case.clip
    return target if os.path.isabs(target) else str(ds / target)


def test_run_exits_1_and_loses_nothing(catalogue) -> None:
    cases, bad_rows, run_dir, code = catalogue
    assert code == 1, "some clips failed: exit code 1 with results for the rest"
    clips = read_csv(run_dir / "clips.csv")
    skipped = read_csv(run_dir / "skipped.csv")
    measured = set(clips["clip_id"])
    skipped_ids = set(skipped.loc[skipped["stage"] == "measure", "clip_id"])
    assert measured.isdisjoint(skipped_ids)
    assert measured | skipped_ids == {c.clip_id for c in cases}, "every clip is measured or skipped"
    source_rows = skipped[skipped["stage"] == "source"]
    assert len(source_rows) == len(bad_rows)
    assert set(source_rows["reason"]) == {"bad_manifest_row"}
    assert (skipped["reason"] != "error").all(), "no bad input may end as an unexpected error"
    print(f"\n{len(cases) + len(bad_rows)} inputs: {len(measured)} measured, {len(skipped)} skipped")


def test_each_case_has_its_outcome(catalogue) -> None:
    cases, _, run_dir, _ = catalogue
    clips = read_csv(run_dir / "clips.csv").set_index("clip_id")
    skipped = read_csv(run_dir / "skipped.csv")
    skipped = skipped[skipped["stage"] == "measure"].set_index("clip_id")
    ds = run_dir.parent / "dataset"
    wrong = []
    for c in cases:
        if c.expect == "lost_no_face":
            # losing the face is never a gain: measured, kept in n and survival, lost at its first sample
            if c.clip_id not in clips.index:
                wrong.append(
                    f"{c.clip_id}: expected measured as lost (no face), got "
                    f"{skipped.loc[c.clip_id, 'message']}"
                )
                continue
            row = clips.loc[c.clip_id]
            if not (
                int(row["lost"]) == 1
                and row["loss_cause"] == "no_face"
                and float(row["face_rate"]) == 0.0
                and float(row["survival_time_s"]) == 0.0
                and "-- fix: " in row["warnings"]
            ):
                wrong.append(f"{c.clip_id}: expected lost with cause no_face, got {row.to_dict()}")
            continue
        if c.expect in ("ok", "truncated"):
            if c.clip_id not in clips.index:
                wrong.append(f"{c.clip_id}: expected measured, got {skipped.loc[c.clip_id, 'message']}")
                continue
            warns = clips.loc[c.clip_id, "warnings"]
            if (c.expect == "truncated") != ("video truncated" in warns):
                wrong.append(f"{c.clip_id}: expected {c.expect}, warnings {warns!r}")
            continue
        if c.clip_id not in skipped.index:
            wrong.append(f"{c.clip_id}: expected skipped ({c.expect}), but it was measured")
            continue
        reason, message = skipped.loc[c.clip_id, "reason"], skipped.loc[c.clip_id, "message"]
        if reason != c.expect:
            wrong.append(f"{c.clip_id}: reason {reason!r} != {c.expect!r} ({message})")
        if "\n" in message or "-- fix: " not in message or _path_in_message(c, ds) not in message:
            wrong.append(f"{c.clip_id}: message is not one line naming the file and the fix: {message!r}")
    assert not wrong, "\n".join(wrong)


def test_bad_manifest_rows_name_the_row_and_fix(catalogue) -> None:
    _, _, run_dir, _ = catalogue
    skipped = read_csv(run_dir / "skipped.csv")
    rows = skipped[skipped["stage"] == "source"]
    manifest = str(run_dir.parent / "dataset" / "manifest.csv")
    for msg in rows["message"]:
        assert msg.startswith(manifest + ":") and "-- fix: " in msg and "\n" not in msg


def test_report_lists_every_skipped_input(catalogue) -> None:
    _, _, run_dir, _ = catalogue
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    section = page[page.index('<section id="skipped">'):]
    section = section[: section.index("</section>")]
    skipped = read_csv(run_dir / "skipped.csv")
    for item, reason in zip(skipped["item"], skipped["reason"], strict=True):
        assert html.escape(item, quote=False) in section and reason in section


def test_truncated_clip_is_censored_where_decoding_stopped(catalogue) -> None:
    _, _, run_dir, _ = catalogue
    clips = read_csv(run_dir / "clips.csv").set_index("clip_id")
    intact = float(clips.loc["faststart_intact", "duration_s"])
    half = float(clips.loc["faststart_truncated_50pct", "duration_s"])
    assert intact == pytest.approx(4.24, abs=0.05)
    # half the bytes: about half the seconds, and survival is censored there, not at 4.24 s
    assert 1.0 < half < 3.0
    assert float(clips.loc["faststart_truncated_50pct", "survival_time_s"]) <= half
    assert int(clips.loc["faststart_truncated_50pct", "n_samples"]) < int(
        clips.loc["faststart_intact", "n_samples"]
    )


def test_truncated_clip_is_not_cached_as_complete(catalogue, tmp_path) -> None:
    """A rerun must decode a truncated clip again (the file may be complete by then)."""
    from driftbench.measure.clip import MeasureSettings, measure_clip
    from driftbench.measure.signals import Sampling
    from driftbench.sources.base import Clip

    _, _, run_dir, _ = catalogue
    clip = Clip("t", str(run_dir.parent / "dataset" / "fs_cut50.mp4"), "t")
    from driftbench.measure.clip import MetricSettings

    settings = MeasureSettings(sampling=Sampling(1.0), cache_dir=str(tmp_path), device="cpu",
                               metrics=MetricSettings(min_samples=2))
    first = measure_clip(clip, settings)
    second = measure_clip(clip, settings)
    assert first.status == second.status == "ok"
    assert not first.cache_hit and not second.cache_hit
    assert not list(tmp_path.rglob("*.parquet"))


def test_dotted_clip_ids_keep_separate_results(catalogue) -> None:
    _, _, run_dir, _ = catalogue
    clips = read_csv(run_dir / "clips.csv").set_index("clip_id")
    assert clips.loc["take.1", "signals_key"] == clips.loc["good_a", "signals_key"]
    assert clips.loc["take.1", "signals_key"] != clips.loc["take.2", "signals_key"]
    assert clips.loc["take.1", "opening_raw"] != clips.loc["take.2", "opening_raw"]
    # one part JSON per clip, none shared
    n_clips = len(clips) + len(read_csv(run_dir / "skipped.csv").query("stage == 'measure'"))
    assert len(list((run_dir / "parts").glob("*.json"))) == n_clips


def test_paths_outside_the_manifest_folder_are_measured(catalogue) -> None:
    _, _, run_dir, _ = catalogue
    clips = read_csv(run_dir / "clips.csv").set_index("clip_id")
    assert Path(clips.loc["outside_relative", "path"]).resolve() == (run_dir.parent / "outside" / "clip.mp4")
    assert float(clips.loc["outside_relative", "face_rate"]) == 1.0
    assert clips.loc["absolute", "signals_key"] == clips.loc["good_a", "signals_key"]


# -- extreme resolution --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip_8k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real clip upscaled to 7680x4320, 2 frames/s for 2 s (a few frames: 8K encodes slowly)."""
    return media.reencode(SRC, tmp_path_factory.mktemp("k8") / "clip_8k.mp4", size=(7680, 4320), fps=2,
                          max_seconds=2.0)


_PEAK_WRAPPER = """
import atexit, sys
def _hwm():
    with open('/proc/self/status') as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith('VmHWM:'))
    with open(sys.argv[1], 'w') as out:
        out.write(str(kb))
atexit.register(_hwm)
from driftbench.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _peak_rss_mb(*overrides: str, cache: Path) -> tuple[int, float, str]:
    """Run driftbench in a child process; (exit code, the child's peak RSS in MB (VmHWM), its output).
    VmHWM belongs to the child's own address space (a fork's ru_maxrss would inherit the parent's)."""
    import subprocess
    import sys

    from tests.data.runs import FAST, ROOT, subprocess_env

    hwm = cache.parent / f"{cache.name}.hwm"
    p = subprocess.run([sys.executable, "-c", _PEAK_WRAPPER, str(hwm), "run", *FAST, *overrides], cwd=ROOT,
                       env=subprocess_env(cache), capture_output=True, text=True, timeout=600, check=False)
    return p.returncode, int(hwm.read_text()) / 1024, p.stdout + p.stderr


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="peak memory is read from /proc (Linux)")
def test_8k_clip_is_measured_on_a_capped_copy_with_bounded_memory(clip_8k, tmp_path) -> None:
    """8K frames reach the detector on a copy capped near 640 px and the face is found in every
    sample, with the same identity as the 224 px original; peak memory is reported and bounded."""
    clip_224 = tmp_path / "clip_224.mp4"
    media.reencode(SRC, clip_224, fps=2, max_seconds=2.0)
    results = {}
    for name, clip in (("224", clip_224), ("8k", clip_8k)):
        out = tmp_path / f"run_{name}"
        code, peak, log = _peak_rss_mb("model=folder", f"model.path={clip}", f"output.dir={out}",
                                       "executor.workers=1", cache=tmp_path / f"cache_{name}")
        assert code == 0, log[-2000:]
        results[name] = (read_csv(out / "clips.csv").iloc[0], peak)
    row8k, peak8k = results["8k"]
    row224, peak224 = results["224"]
    print(f"\npeak RSS: 224 px {peak224:.0f} MB, 7680x4320 {peak8k:.0f} MB")
    assert (int(row8k["width"]), int(row8k["height"])) == (7680, 4320)
    assert float(row8k["face_rate"]) == 1.0
    # the same face measured through a 34x upscale and a 640 px cap: same level within 0.05
    print(f"opening similarity: 224 px {row224['opening_raw']}, 8K {row8k['opening_raw']}")
    assert float(row8k["opening_raw"]) == pytest.approx(float(row224["opening_raw"]), abs=0.05)
    # one 8K BGR frame is 100 MB; the decoder's look-ahead and frame threads hold a handful of them
    assert peak8k - peak224 < 2500, f"8K costs {peak8k - peak224:.0f} MB more than 224 px"


def test_reference_that_is_a_group_photo_names_the_count(catalogue) -> None:
    _, _, run_dir, _ = catalogue
    skipped = read_csv(run_dir / "skipped.csv").set_index("clip_id")
    assert "2 faces" in skipped.loc["ref_two_faces", "message"]


# -- exit codes ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def usage_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("usage")
    shutil.copy(GOOD_A, d / "good.mp4")
    shutil.copy(GOOD_B, d / "good2.mp4")
    (d / "no_clip_column.csv").write_text("video_file,character\ngood.mp4,a\n", encoding="utf-8")
    (d / "no_rows.csv").write_text("clip,character\n", encoding="utf-8")
    (d / "duplicates.csv").write_text("clip\ngood.mp4\ngood.mp4\n", encoding="utf-8")
    (d / "binary.csv").write_bytes(b"\xff\xfe\x00clip\x00\x80\x81")
    (d / "a_file").write_text("not a folder", encoding="utf-8")
    (d / "one_bad.csv").write_text("clip\ngood.mp4\nmissing.mp4\n", encoding="utf-8")
    return {"dir": d, "good": d / "good.mp4"}


# overrides ({d}: the folder of inputs) and whether the check must come before Hydra makes the run
# directory ("config": Hydra composes nothing wrong) or may come inside the task ("input": a bad
# model.path or manifest, found before any clip is measured)
USAGE_CASES = {
    "unknown_key": (["model=folder", "model.path={d}/good.mp4", "model.nope=1"], "config"),
    "wrong_type": (["model=folder", "model.path={d}/good.mp4", "sampling.fps=fast"], "config"),
    "missing_model_path": (["model=folder"], "config"),
    "unknown_group_option": (["model=folder", "model.path={d}/good.mp4", "face=nope"], "config"),
    "unwritable_output_dir": (
        ["model=folder", "model.path={d}/good.mp4", "output.dir={d}/a_file/run"],
        "config",
    ),
    "unknown_option": (["--bogus"], "config"),
    "model_path_missing_on_disk": (["model=folder", "model.path={d}/nowhere"], "input"),
    "manifest_without_clip_column": (["model=folder", "model.path={d}/no_clip_column.csv"], "input"),
    "manifest_without_rows": (["model=folder", "model.path={d}/no_rows.csv"], "input"),
    "manifest_duplicate_ids": (["model=folder", "model.path={d}/duplicates.csv"], "input"),
    "manifest_not_text": (["model=folder", "model.path={d}/binary.csv"], "input"),
}


@pytest.mark.parametrize("name", sorted(USAGE_CASES))
def test_bad_usage_exits_2_before_any_work(name, usage_inputs, tmp_path, capsys) -> None:
    overrides, stage = USAGE_CASES[name]
    d = usage_inputs["dir"]
    out = tmp_path / "run"
    args = [o.format(d=d) for o in overrides]
    if not any(a.startswith("output.dir=") for a in args):
        args.append(f"output.dir={out}")
    code = run_inprocess(*args)
    assert code == 2
    err = capsys.readouterr().err
    errors = {
        ln.removeprefix("driftbench run: ") for ln in err.splitlines() if ln.startswith("driftbench run:")
    }
    for log in sorted(out.glob("*.log")) if out.is_dir() else []:  # the same line may be in several logs
        errors |= {
            ln.split("ERROR", 1)[1].lstrip("] -")
            for ln in log.read_text(encoding="utf-8").splitlines()
            if "ERROR" in ln
        }
    assert len(errors) == 1 and "fix:" in next(iter(errors)), (err, errors)
    if stage == "config":
        assert not out.exists(), "a configuration error must stop before the run directory is made"
    assert not (out / "parts").exists(), "no clip may be measured"
    if (out / "status.json").is_file():
        assert read_status(out) == 2


def read_status(run_dir: Path) -> int:
    import json

    return int(json.loads((run_dir / "status.json").read_text(encoding="utf-8"))["exit_code"])


@pytest.mark.parametrize("second,worst", [("good2.mp4", 0), ("one_bad.csv", 1), ("no_clip_column.csv", 2)])
def test_multirun_returns_the_worst_of_its_jobs(second, worst, usage_inputs, tmp_path) -> None:
    d = usage_inputs["dir"]
    code = run_inprocess("-m", "model=folder", f"model.path={d}/good.mp4,{d}/{second}",
                         f"output.root={tmp_path}")
    assert code == worst
    statuses = sorted(read_status(p.parent) for p in tmp_path.rglob("status.json"))
    if worst == 2:
        # bad configuration is checked for every job of the sweep before any work: nothing runs
        assert statuses == []
    else:
        assert statuses == sorted([0, worst]), "one status per job, each in its own folder of the sweep"


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "multirun"])
def test_output_folder_with_special_characters(multirun, usage_inputs, tmp_path) -> None:
    """A run directory the user quoted (spaces, parentheses, quotes, '=', ',') reaches Hydra intact."""
    d = usage_inputs["dir"]
    where = tmp_path / "my runs (v2)" / "it's a=b, c"
    quoted = "'" + str(where).replace("'", "\\'") + "'"
    if multirun:
        code = run_inprocess(
            "-m", "model=folder", f"model.path={d}/good.mp4,{d}/good2.mp4", f"output.root={quoted}"
        )
        done = sorted(where.glob("sweep-*/*/clips.csv"))
        assert code == 0 and len(done) == 2
    else:
        code = run_inprocess("model=folder", f"model.path={d}/good.mp4", f"output.dir={quoted}")
        assert code == 0 and (where / "clips.csv").is_file() and (where / "report.html").is_file()
