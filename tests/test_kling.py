"""model=kling against a local fake of Kling's documented API (tests/test_generators_fakes.py), video cut
from ../shared footage (without it: an embedded synthetic clip): chaining, caching (a rerun never pays
twice), the spend guard, failures (429, 5xx, failed and stalled tasks, truncated downloads, refused
credentials, content policy) and resuming without losing what was downloaded."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driftbench.errors import UsageError
from driftbench.generators.media import check_video
from driftbench.sources.base import SourceContext
from tests.test_generators_fakes import ACCESS_KEY, SECRET_KEY, FakeKling, Footage


@pytest.fixture(scope="module")
def footage() -> Footage:
    return Footage()


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory, footage: Footage) -> Path:
    """A dataset whose character is the person of the footage (reference: its first frame)."""
    import av
    import cv2

    d = tmp_path_factory.mktemp("ds")
    with av.open(str(footage.path)) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="bgr24")
    cv2.imwrite(str(d / "presenter.png"), frame)
    (d / "dataset.yaml").write_text(
        "name: fake_suite\n"
        "durations: [4, 6]\n"
        "characters:\n  presenter: {references: [presenter.png]}\n"
        "prompts:\n"
        "  - {id: talk, stress: [long_take], text: 'The presenter talks to the camera.',"
        " continue: ['The same presenter keeps talking.', 'Still the same presenter, talking.']}\n"
        "  - {id: turn, stress: [head_turn], text: 'The presenter turns the head left and back.'}\n")
    return d


@pytest.fixture()
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLING_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("KLING_SECRET_KEY", SECRET_KEY)
    monkeypatch.delenv("DRIFTBENCH_CONFIRM_SPEND", raising=False)


def kling_source(
    url: str,
    cache: Path,
    dataset: Path,
    *extra: str,
    mitigation: tuple[str, str] = ("none", "none"),
    model: str = "kling",
) -> Any:
    from driftbench.config import compose
    from driftbench.sources.base import create_source

    cfg = compose(
        [
            f"model={model}",
            f"model.base_url={url}",
            f"model.dataset={dataset}",
            "model.durations=[4,6]",
            "model.extend_s=2",
            "model.poll_interval_s=0.01",
            "model.poll_max_interval_s=0.02",
            "model.backoff_s=0.01",
            f"model.cache_dir={cache}",
            "model.yes=true",
            f"mitigation.name={mitigation[0]}",
            f"mitigation.stage={mitigation[1]}",
            *extra,
        ]
    )
    ctx = SourceContext(work_dir=cache / "work", cache_dir=cache / "unused", mitigation=cfg.mitigation)
    return create_source(cfg.model, ctx)


def test_jwt_is_hs256_with_access_key_issuer_and_renewed(keys: None) -> None:
    import jwt

    from driftbench.generators.kling import KlingJwtAuth

    auth = KlingJwtAuth({})
    now = time.time()
    token = auth.token(now)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(
        token, SECRET_KEY, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False}
    )
    assert claims["iss"] == ACCESS_KEY
    assert claims["exp"] - claims["nbf"] == 1805 and claims["nbf"] <= now
    assert auth.token(now + 100) == token  # reused while valid
    assert auth.token(now + 1790) != token  # renewed before it expires
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "another-secret-of-at-least-32-bytes!", algorithms=["HS256"])


def test_extend_chain_yields_each_target_and_rerun_pays_nothing(
    footage: Footage, dataset_dir: Path, tmp_path: Path, keys: None
) -> None:
    with FakeKling(footage) as fake:
        src = kling_source(fake.url, tmp_path, dataset_dir, "model.prompts=[talk]")
        clips = src.clips()
        assert src.skipped == []
        by_target = {c.prompt_id: c for c in clips}
        assert set(by_target) == {"talk@4s", "talk@6s"}
        kinds = [(s["kind"], s.get("video_id") is not None) for s in fake.log.submits]
        assert [k for k, _ in kinds] == ["image2video", "video-extend", "video-extend"]
        # the opening prompt, then the continuation prompts in order
        assert [s["prompt"] for s in fake.log.submits] == ["The presenter talks to the camera.",
                                                           "The same presenter keeps talking.",
                                                           "Still the same presenter, talking."]
        assert fake.log.submits[0]["model_name"] == "kling-v1-6" and fake.log.submits[0]["mode"] == "pro"
        # video-extend answers hold the whole video so far: each clip is a single step's download
        for pid, want in (("talk@4s", 4.0), ("talk@6s", 6.0)):
            c = by_target[pid]
            assert (
                c.model == "kling" and c.mitigation == "none" and c.character == "presenter" and c.seed == 0
            )
            assert check_video(c.path).duration_s == pytest.approx(want, abs=0.1)
            assert c.meta["n_requests"] == {"talk@4s": 2, "talk@6s": 3}[pid]
        assert fake.log.media_auth_headers == 0  # credentials never go to the download host
        submits, downloads = len(fake.log.submits), dict(fake.log.downloads)

        again = kling_source(fake.url, tmp_path, dataset_dir, "model.prompts=[talk]").clips()
        assert [c.path for c in again] == [c.path for c in clips]
        assert (
            len(fake.log.submits) == submits and fake.log.downloads == downloads
        )  # nothing paid or fetched twice

        longer = kling_source(
            fake.url, tmp_path, dataset_dir, "model.prompts=[talk]", "model.durations=[8]"
        ).clips()
        assert len(fake.log.submits) == submits + 1  # the 8 s chain reuses the 6 s one and adds one extension
        assert check_video(longer[0].path).duration_s == pytest.approx(8.0, abs=0.1)


def test_extensions_that_return_only_new_seconds_are_joined(
    footage: Footage, dataset_dir: Path, tmp_path: Path, keys: None
) -> None:
    with FakeKling(footage, extend_full=False) as fake:
        clips = kling_source(fake.url, tmp_path, dataset_dir, "model.prompts=[talk]").clips()
        six = next(c for c in clips if c.prompt_id == "talk@6s")
        # result: auto sees 2 s answers after a 4 s video, so it joins the three 2 s pieces (no frame dropped:
        # a native extension does not repeat the previous frame)
        assert check_video(six.path).n_frames == 150
        assert "/clips/" in six.path and len(fake.log.submits) == 3


def test_reanchor_conditions_each_segment_on_last_frame_and_reference(footage: Footage, dataset_dir: Path,
                                                                      tmp_path: Path, keys: None) -> None:
    from driftbench.runner import mitigation_stage

    with FakeKling(footage) as fake:
        base = kling_source(fake.url, tmp_path, dataset_dir, "model.prompts=[talk]").clips()
        n_base = len(fake.log.submits)
        src = kling_source(
            fake.url, tmp_path, dataset_dir, "model.prompts=[talk]", mitigation=("reanchor", "auto")
        )
        clips = src.clips()
        assert mitigation_stage(src.ctx.mitigation, src) == "generation"
        new = fake.log.submits[n_base:]
        # the opening request is shared with the extend chain (cached); every further segment is an
        # image2video whose start image is the previous segment's last frame and whose end frame is the
        # reference image (the 256 px frames were upscaled to Kling's 300 px minimum)
        assert [s["kind"] for s in new] == ["image2video", "image2video"]
        assert fake.log.continuations == 2
        tails = [t for t in fake.tasks.values() if "image_tail" in t.body]
        assert len(tails) == 2
        assert {c.pair_key for c in clips} == {c.pair_key for c in base}  # pairs with the extend clips
        assert {c.mitigation for c in clips} == {"reanchor"}
        six = next(c for c in clips if c.prompt_id == "talk@6s")
        # three 2 s segments joined, each continuation's repeated opening frame dropped
        assert check_video(six.path).duration_s == pytest.approx(6.0 - 2 / 25, abs=0.1)
        assert six.meta["step_kinds"] == ["first", "reanchor", "reanchor"]


def test_rate_limits_and_server_errors_are_retried(footage: Footage, dataset_dir: Path, tmp_path: Path,
                                                   keys: None) -> None:
    with FakeKling(footage) as fake:
        fake.faults.rate_limit_submits = 2
        fake.faults.server_error_polls = 2
        clips = kling_source(
            fake.url, tmp_path, dataset_dir, "model.prompts=[turn]", "model.durations=[2]"
        ).clips()
        assert len(clips) == 1
        assert fake.log.rejected.count((429, "/v1/videos/image2video")) == 2
        assert sum(1 for st, _ in fake.log.rejected if st == 503) == 2
        assert len(fake.log.submits) == 1  # retried until accepted, accepted once


def test_exhausted_retries_fail_the_chain_with_a_fix(footage: Footage, dataset_dir: Path, tmp_path: Path,
                                                     keys: None) -> None:
    with FakeKling(footage) as fake:
        fake.faults.rate_limit_submits = 100
        src = kling_source(fake.url, tmp_path, dataset_dir, "model.prompts=[turn]", "model.durations=[2]",
                           "model.max_retries=2")
        assert src.clips() == []
        assert len(fake.log.rejected) == 3  # 1 + 2 retries, then the chain is given up
        (skip,) = src.skipped
        assert skip.reason == "api_unavailable" and "HTTP 429" in skip.message and "-- fix:" in skip.message


def test_failed_task_is_skipped_then_resubmitted_on_rerun(footage: Footage, dataset_dir: Path, tmp_path: Path,
                                                          keys: None) -> None:
    with FakeKling(footage) as fake:
        fake.faults.fail_prompt = "keeps talking"  # the first extension fails
        src = kling_source(fake.url, tmp_path, dataset_dir)
        clips = src.clips()
        assert {c.prompt_id for c in clips} == {"turn@4s", "turn@6s"}  # the other prompt goes on
        reasons = {s.item: s.reason for s in src.skipped}
        assert reasons == {"kling:presenter/talk@4s/seed0": "generation_failed",
                           "kling:presenter/talk@6s/seed0": "generation_failed"}
        assert all("risk control" in s.message and "-- fix:" in s.message for s in src.skipped)
        first_talk = next(s for s in fake.log.submits if s["prompt"].startswith("The presenter talks"))
        n = len(fake.log.submits)
        fake.faults.fail_prompt = ""
        src2 = kling_source(fake.url, tmp_path, dataset_dir)
        clips2 = src2.clips()
        assert src2.skipped == [] and len(clips2) == 4
        new = fake.log.submits[n:]
        # only the failed extension and the one after it are requested; the opening is not paid again
        assert [s["prompt"] for s in new] == [
            "The same presenter keeps talking.",
            "Still the same presenter, talking.",
        ]
        assert first_talk["task_id"] not in {s["task_id"] for s in new}


def test_stalled_task_times_out_and_rerun_polls_the_same_task(
    footage: Footage, dataset_dir: Path, tmp_path: Path, keys: None
) -> None:
    from driftbench.generators.cache import StepCache

    with FakeKling(footage) as fake:
        fake.faults.stall = True
        src = kling_source(fake.url, tmp_path, dataset_dir, "model.prompts=[turn]", "model.durations=[2]",
                           "model.timeout_s=0.3")
        assert src.clips() == []
        (skip,) = src.skipped
        assert skip.reason == "generation_timeout" and "not resubmitted" in skip.message
        records = [json.loads(p.read_text()) for p in (tmp_path / "generators").rglob("steps/*/*.json")]
        assert [(r["status"], r["task_id"]) for r in records] == [
            ("submitted", fake.log.submits[0]["task_id"])
        ]
        fake.faults.stall = False
        clips = kling_source(
            fake.url, tmp_path, dataset_dir, "model.prompts=[turn]", "model.durations=[2]"
        ).clips()
        assert len(clips) == 1 and len(fake.log.submits) == 1  # the same task finished; nothing resubmitted
        assert StepCache(Path(clips[0].path).parents[2]).done(Path(clips[0].path).stem) is not None


def test_truncated_download_is_fetched_again(
    footage: Footage, dataset_dir: Path, tmp_path: Path, keys: None
) -> None:
    with FakeKling(footage) as fake:
        fake.faults.truncate_downloads = 1
        (clip,) = kling_source(
            fake.url, tmp_path, dataset_dir, "model.prompts=[turn]", "model.durations=[2]"
        ).clips()
        (video,) = fake.videos.values()
        assert Path(clip.path).read_bytes() == video.data  # complete, byte for byte
        assert fake.log.downloads == {video.id: 1} and len(fake.log.submits) == 1


def test_downloads_survive_a_failed_step_and_the_run_resumes(
    footage: Footage, dataset_dir: Path, tmp_path: Path, keys: None
) -> None:
    with FakeKling(footage) as fake:
        src = kling_source(fake.url, tmp_path, dataset_dir, "model.prompts=[talk]", "model.durations=[2]")
        (opening,) = src.clips()
        kept = Path(opening.path).read_bytes()
        fake.faults.truncate_downloads = 100  # every download of the next step breaks off
        src = kling_source(fake.url, tmp_path, dataset_dir, "model.prompts=[talk]", "model.max_retries=1")
        assert src.clips() == []
        assert {s.reason for s in src.skipped} == {"download_failed"}
        assert Path(opening.path).read_bytes() == kept  # the opening segment is still there, unchanged
        assert not list((tmp_path / "generators").rglob("*.part"))  # no partial file left behind
        n = len(fake.log.submits)
        fake.faults.truncate_downloads = 0
        clips = kling_source(fake.url, tmp_path, dataset_dir, "model.prompts=[talk]").clips()
        assert {c.prompt_id for c in clips} == {"talk@4s", "talk@6s"}
        # the extension whose download broke was finished on the server: polled and fetched, not paid again
        assert len(fake.log.submits) == n + 1
        assert Path(opening.path).read_bytes() == kept


def test_spend_guard_refuses_before_any_request(
    footage: Footage, dataset_dir: Path, tmp_path: Path, keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeKling(footage) as fake:
        src = kling_source(fake.url, tmp_path, dataset_dir, "model.yes=false")
        with pytest.raises(UsageError) as exc:
            src.clips()
        msg = str(exc.value)
        # nominal lengths (5 s opening, +2 s per extension: model.extend_s) for the 6 s target: 2 prompts x
        # 2 requests at kling-v1-6 pro, 3.5 units of $0.14 each
        assert "4 generation request(s)" in msg and "estimated 1.96 USD" in msg and "--yes" in msg
        with pytest.raises(UsageError, match=r"above model.max_cost=1.00"):
            kling_source(fake.url, tmp_path, dataset_dir, "model.max_cost=1").clips()
        monkeypatch.delenv("KLING_SECRET_KEY")
        with pytest.raises(UsageError, match="KLING_SECRET_KEY is not set"):
            kling_source(fake.url, tmp_path, dataset_dir).clips()
        monkeypatch.setenv("KLING_SECRET_KEY", SECRET_KEY)
        monkeypatch.setenv("DRIFTBENCH_CONFIRM_SPEND", "1")  # what `driftbench run --yes` sets
        assert fake.log.submits == [] and fake.log.polls == 0
        assert len(kling_source(fake.url, tmp_path, dataset_dir, "model.yes=false").clips()) == 4


def test_spending_never_exceeds_max_cost(
    footage: Footage, dataset_dir: Path, tmp_path: Path, keys: None
) -> None:
    with FakeKling(footage) as fake:
        # estimated 1 request (a nominal 5 s opening reaches 4 s) = 0.49 USD, within 0.5; the fake's
        # opening is only 2 s long, and the extension it then needs would pass the ceiling
        src = kling_source(fake.url, tmp_path, dataset_dir, "model.prompts=[talk]", "model.durations=[4]",
                           "model.max_cost=0.5")
        assert src.clips() == []
        (skip,) = src.skipped
        assert skip.reason == "budget_exceeded" and "model.max_cost" in skip.message
        assert len(fake.log.submits) == 1


def test_refused_credentials_stop_all_submissions(footage: Footage, dataset_dir: Path, tmp_path: Path,
                                                  keys: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLING_SECRET_KEY", "a-wrong-secret-of-thirty-two-bytes!")
    with FakeKling(footage) as fake:
        src = kling_source(fake.url, tmp_path, dataset_dir)
        assert src.clips() == []
        assert len(fake.log.rejected) == 1  # one refusal, then no further request
        assert {s.reason for s in src.skipped} == {"auth_failed"} and len(src.skipped) == 4
        assert all("KLING_ACCESS_KEY" in s.message for s in src.skipped)


def test_content_policy_refusal_fails_only_that_chain(footage: Footage, dataset_dir: Path, tmp_path: Path,
                                                      keys: None) -> None:
    with FakeKling(footage) as fake:
        fake.faults.policy_prompt = "turns the head"
        src = kling_source(fake.url, tmp_path, dataset_dir, "model.durations=[2]")
        (clip,) = src.clips()
        assert clip.prompt_id == "talk@2s"
        (skip,) = src.skipped
        assert skip.reason == "content_policy" and "code 1301" in skip.message


def test_generation_only_mitigation_without_support_is_refused_before_spending(
    footage: Footage, dataset_dir: Path, tmp_path: Path, keys: None
) -> None:
    with FakeKling(footage) as fake:
        src = kling_source(fake.url, tmp_path, dataset_dir, mitigation=("chain", "generation"))
        with pytest.raises(UsageError, match="no generation-time form"):
            src.clips()
        # a post-processing mitigation gets the native clips, labelled as the baseline
        post = kling_source(
            fake.url, tmp_path, dataset_dir, "model.durations=[2]", mitigation=("chain", "post")
        )
        assert {c.mitigation for c in post.clips()} == {"none"}


def test_keys_are_never_written(footage: Footage, dataset_dir: Path, tmp_path: Path, keys: None) -> None:
    with FakeKling(footage) as fake:
        kling_source(
            fake.url, tmp_path, dataset_dir, "model.durations=[4]", mitigation=("reanchor", "auto")
        ).clips()
        secrets = [ACCESS_KEY, SECRET_KEY, *fake.log.tokens]
        assert len(fake.log.tokens) >= 1
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert any(p.suffix == ".json" for p in files) and any(p.suffix == ".mp4" for p in files)
        for p in files:
            data = p.read_bytes()
            assert not any(s.encode() in data for s in secrets), p


def test_images_below_kling_minimum_are_upscaled(tmp_path: Path) -> None:
    import cv2

    from driftbench.generators.media import prepare_image

    small = tmp_path / "face.png"
    cv2.imwrite(str(small), np.full((112, 112, 3), 90, np.uint8))
    data, mime = prepare_image(small, min_side=300)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert mime == "image/jpeg" and img.shape[:2] == (300, 300)
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.full((400, 320, 3), 90, np.uint8))
    assert prepare_image(big, min_side=300) == (big.read_bytes(), "image/png")  # sent as it is
