"""Generation datasets, the generic HTTP adapter (conf/model/runway.yaml against a local fake of Runway's
documented API), chaining media helpers on real footage, and the end-to-end command
``python -m driftbench run model=kling model.base_url=http://127.0.0.1:PORT ...`` that generates, measures
real faces, fails one chain, and resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from driftbench.errors import UsageError
from driftbench.generators.http import TemplateError, deep_merge, get_path, render
from driftbench.generators.media import MediaError, check_video, concat, last_frame
from tests.conftest import ROOT, needs_shared
from tests.test_generators_fakes import ACCESS_KEY, RUNWAY_KEY, SECRET_KEY, FakeKling, FakeRunway, Footage
from tests.test_kling import dataset_dir, footage, kling_source  # noqa: F401  (fixtures)


# -- templates ----------------------------------------------------------------------------------------
def test_templates_keep_types_drop_empty_optionals_and_name_missing_variables() -> None:
    body = {"model": "{model_name}", "duration": "{duration}", "seed": "{seed}", "text": "a {prompt} b",
            "neg": "{negative_prompt?}", "frames": [{"uri": "{image}", "position": "first"}, "{reference?}"],
            "fixed": 0.5}
    out = render(body, {"model_name": "m1", "duration": 5, "seed": 0, "prompt": "cat", "negative_prompt": "",
                        "image": "data:x", "reference": None})
    assert out == {"model": "m1", "duration": 5, "seed": 0, "text": "a cat b",
                   "frames": [{"uri": "data:x", "position": "first"}], "fixed": 0.5}
    with pytest.raises(TemplateError):
        render({"a": "{nope}"}, {})
    data = {"data": {"task_result": {"videos": [{"url": "u", "id": 7}]}}, "output": ["o1"]}
    assert get_path(data, "data.task_result.videos.0.url") == "u"
    assert get_path(data, "output.0") == "o1" and get_path(data, "output.3") is None
    assert get_path(data, "data.missing.x") is None and get_path(data, None) is None
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


def test_generator_configs_compose() -> None:
    from omegaconf import OmegaConf

    from driftbench.config import compose

    for name in ("kling", "runway"):
        cfg = compose([f"model={name}", "model.yes=true", "model.durations=[30,60,120]"])
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        assert cfg.model.name == name and list(cfg.model.durations) == [30, 60, 120]


def test_bad_provider_descriptions_fail_before_any_request(tmp_path: Path) -> None:
    from driftbench.generators.http import HttpProvider, ProviderSettings, build_provider

    with pytest.raises(UsageError, match=r"submit\.first is missing"):
        HttpProvider(ProviderSettings(name="x", provider="http", base_url="http://127.0.0.1:9", api={}))
    api = {"submit": {"first": {"url": "/v1/go"}}, "task_id": "id", "poll": {"url": "/t/{task_id}"},
           "status": "s", "done": ["ok"], "video_url": "u"}
    with pytest.raises(UsageError, match=r"model\.base_url is not set"):
        HttpProvider(ProviderSettings(name="x", provider="http", api=api))
    with pytest.raises(UsageError, match=r"auth\.type='magic' is unknown"):
        HttpProvider(
            ProviderSettings(
                name="x", provider="http", base_url="http://h", api={**api, "auth": {"type": "magic"}}
            )
        )
    with pytest.raises(UsageError, match=r"model\.provider='nosuch' is unknown"):
        build_provider(ProviderSettings(name="x", provider="nosuch"))
    with pytest.raises(UsageError, match="segment_s"):
        build_provider(ProviderSettings(name="kling", provider="kling", model_name="kling-v1-6", segment_s=7))


# -- datasets -----------------------------------------------------------------------------------------
def _dataset(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "ds"
    d.mkdir(exist_ok=True)
    (d / "dataset.yaml").write_text(text)
    return d


def test_dataset_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    from driftbench.generators.dataset import load_dataset

    with pytest.raises(UsageError, match=r"no such dataset .*identity_stress"):
        load_dataset("no_such_suite", derived_dir=tmp_path)
    cases = {
        "characters: {a: {references: ['store:photo_nobody']}}\nprompts: [{id: p, text: t}]": "unknown "
                                                                                              "store key",
        "characters: {a: {references: [missing.png]}}\nprompts: [{id: p, text: t}]": "not found",
        "characters: {a: {references: [{image: 'store:photo_astronaut', crop: [500, 0, 100, 100]}]}}\n"
        "prompts: [{id: p, text: t}]": "outside the 512x512",
        "characters: {a: ['store:photo_astronaut']}\n"
        "prompts: [{id: p, text: t}, {id: p, text: u}]": "duplicate id",
        "characters: {a: ['store:photo_astronaut']}\n"
        "prompts: [{id: p, text: t, characters: [b]}]": "unknown characters",
        "characters: {a: ['store:photo_astronaut']}\nprompts: [{id: p}]": "needs an id and a text",
        "characters: {}\nprompts: [{id: p, text: t}]": "characters: missing or empty",
    }
    for text, problem in cases.items():
        d = _dataset(tmp_path, text)
        with pytest.raises(UsageError) as exc:
            load_dataset(str(d), derived_dir=tmp_path / "derived")
        assert (
            str(d / "dataset.yaml") in str(exc.value)
            and problem in str(exc.value)
            and "-- fix:" in str(exc.value)
        )


@needs_shared
def test_identity_stress_suite(analyzer: Any, tmp_path: Path) -> None:
    from driftbench.generators.dataset import load_dataset
    from driftbench.measure.video import read_image

    ds = load_dataset("identity_stress", derived_dir=tmp_path)
    assert ds.durations == (30.0, 60.0, 120.0)
    assert set(ds.characters) == {"astronaut", "hanks", "t1_group"}
    stresses = {s for p in ds.prompts for s in p.stress}
    assert {"long_take", "head_turn", "lighting", "occlusion", "ageing", "several_people"} <= stresses
    assert all(p.continuations for p in ds.prompts)  # every long take has continuation prompts
    for char in ds.characters.values():
        for ref in char.references:  # every reference shows exactly one face
            assert len(analyzer.analyze_image(read_image(ref))) == 1, ref
    group = ds.characters["t1_group"]
    assert group.start_image != group.references[0]
    assert (
        len(analyzer.analyze_image(read_image(group.start_image))) >= 3
    )  # generation starts among several people


# -- media --------------------------------------------------------------------------------------------
def test_concat_joins_real_segments_and_drops_the_repeated_frame(footage: Footage, tmp_path: Path) -> None:  # noqa: F811
    a, last_a = footage.cut(0.0, 2.0)
    b, last_b = footage.cut(2.0, 3.0)
    pa, pb = tmp_path / "a.mp4", tmp_path / "b.mp4"
    pa.write_bytes(a)
    pb.write_bytes(b)
    ca, cb = check_video(pa), check_video(pb)
    assert (ca.n_frames, cb.n_frames) == (50, 25) and ca.duration_s == pytest.approx(2.0, abs=0.05)
    out = tmp_path / "joined.mp4"
    concat([pa, pb], out, drop_first=[False, True])
    joined = check_video(out)
    assert joined.n_frames == 74 and joined.fps == pytest.approx(25.0)
    assert joined.duration_s == pytest.approx(74 / 25, abs=0.05)
    assert float(np.abs(last_frame(out).astype(int) - last_b.astype(int)).mean()) < 4.0
    assert float(np.abs(last_frame(pa).astype(int) - last_a.astype(int)).mean()) < 4.0
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(a[: len(a) // 3])
    with pytest.raises(MediaError):
        check_video(broken)


# -- the generic HTTP adapter: conf/model/runway.yaml ---------------------------------------------------
def runway_source(
    url: str, cache: Path, dataset: Path, *extra: str, mitigation: tuple[str, str] = ("none", "none")
) -> Any:
    return kling_source(
        url, cache, dataset, *extra, "model.extend_s=2", mitigation=mitigation, model="runway"
    )


def test_runway_yaml_drives_the_generic_adapter(footage: Footage, dataset_dir: Path, tmp_path: Path,  # noqa: F811
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNWAYML_API_SECRET", RUNWAY_KEY)
    with FakeRunway(footage) as fake:
        src = runway_source(fake.url, tmp_path, dataset_dir, "model.prompts=[talk]")
        clips = src.clips()
        assert (
            src.skipped == [] and fake.log.rejected == []
        )  # auth, version header, data URIs, types accepted
        # no native extension: each continuation is a new request from the previous segment's last frame
        assert fake.positions == [["first"], ["first"], ["first"]]
        assert fake.log.continuations == 2
        assert [s["model"] for s in fake.log.submits] == ["gen3a_turbo"] * 3
        assert {(s["ratio"], s["duration"], s["seed"]) for s in fake.log.submits} == {("1280:768", 5, 0)}
        six = next(c for c in clips if c.prompt_id == "talk@6s")
        assert six.model == "runway" and six.mitigation == "none"
        assert check_video(six.path).duration_s == pytest.approx(6.0 - 2 / 25, abs=0.1)
        assert six.meta["cost_estimate"] == pytest.approx(0.75)
        # re-anchored: the reference becomes each continuation's last keyframe; the opening is shared
        re = runway_source(
            fake.url, tmp_path, dataset_dir, "model.prompts=[talk]", mitigation=("reanchor", "auto")
        ).clips()
        assert fake.positions[3:] == [["first", "last"], ["first", "last"]]
        assert {c.pair_key for c in re} == {c.pair_key for c in clips} and {c.mitigation for c in re} == {
            "reanchor"
        }
        assert RUNWAY_KEY in fake.log.tokens
        for p in tmp_path.rglob("*"):
            assert not (p.is_file() and RUNWAY_KEY.encode() in p.read_bytes()), p


# -- end to end ---------------------------------------------------------------------------------------
def _run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftbench", "run", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_run_model_kling_generates_measures_and_resumes(footage: Footage, dataset_dir: Path,  # noqa: F811
                                                        tmp_path: Path) -> None:
    env = {**os.environ, "KLING_ACCESS_KEY": ACCESS_KEY, "KLING_SECRET_KEY": SECRET_KEY,
           "DRIFTBENCH_CACHE": str(tmp_path / "signals")}
    env.pop("DRIFTBENCH_CONFIRM_SPEND", None)
    run_dir, gen_dir = tmp_path / "run", tmp_path / "gen"
    with FakeKling(footage) as fake:
        args = [
            "model=kling",
            f"model.base_url={fake.url}",
            f"model.dataset={dataset_dir}",
            "model.durations=[4,6]",
            "model.extend_s=2",
            "model.poll_interval_s=0.01",
            "model.poll_max_interval_s=0.02",
            "model.backoff_s=0.01",
            f"model.cache_dir={gen_dir}",
            "sampling.fps=1",
            "executor.workers=1",
            f"output.dir={run_dir}",
        ]
        refused = _run_cli(args, env)  # no --yes: the estimate, exit 2, nothing sent
        said = refused.stdout + refused.stderr  # Hydra's log handler writes to stdout
        assert refused.returncode == 2, said[-2000:]
        assert "estimated 1.96 USD" in said and "--yes" in said and fake.log.submits == []

        fake.faults.fail_prompt = "turns the head"
        first = _run_cli([*args, "--yes"], env)
        assert first.returncode == 1, (first.stdout + first.stderr)[
            -3000:
        ]  # one chain failed, the rest measured
        assert first.stdout.strip().splitlines()[-1] == str(run_dir)
        clips = pd.read_csv(run_dir / "clips.csv")
        assert list(clips.prompt_id) == ["talk@4s", "talk@6s"]
        assert set(clips.model) == {"kling"} and set(clips.mitigation) == {"none"}
        assert list(clips.n_samples) == [4, 6] and set(clips.face_rate) == {1.0}
        # the character's reference is the footage's first frame: the same person throughout
        assert (clips.mean_raw > 0.8).all() and (clips.threshold < clips.mean_raw).all()
        skipped = pd.read_csv(run_dir / "skipped.csv")
        assert set(skipped.reason) == {"generation_failed"} and len(skipped) == 2
        assert skipped.message.str.contains("risk control").all()
        n_submits = len(fake.log.submits)

        fake.faults.fail_prompt = ""
        second = _run_cli([*args, "--yes"], env)
        assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
        clips2 = pd.read_csv(run_dir / "clips.csv")
        assert list(clips2.prompt_id) == ["talk@4s", "talk@6s", "turn@4s", "turn@6s"]
        run = json.loads((run_dir / "run.json").read_text())
        assert run["resumed_clips"] == 2 and run["mitigation"] == {"name": "none", "stage": "none"}
        new = fake.log.submits[n_submits:]
        # only the failed chain was paid for: its opening and two extensions
        assert len(new) == 3 and new[0]["prompt"].startswith("The presenter turns")
        assert not any(s["prompt"].startswith("The presenter talks") for s in new)
        assert pd.read_csv(run_dir / "skipped.csv").empty

        secrets = [ACCESS_KEY, SECRET_KEY, *fake.log.tokens]
    written = [p for d in (run_dir, gen_dir) for p in d.rglob("*") if p.is_file()]
    assert any(p.name == "run.json" for p in written) and any(p.suffix == ".mp4" for p in written)
    for p in written:
        data = p.read_bytes()
        assert not any(s.encode() in data for s in secrets), p
