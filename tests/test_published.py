"""Published identity metrics (driftbench/measure/published.py): each definition without media (frame
selection, threshold, faces missing or several), real clips of ../shared, and the equality of driftbench's
FaceSim and Human_Identity with ``face=insightface`` to a direct re-implementation of the authors' code
calling InsightFace's FaceAnalysis per frame, on a local pack (SCRFD-500M + the exported SFace)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftbench.measure import published as P
from tests.conftest import SHARED_MODELS, VIDEO, needs_shared

SCRFD = SHARED_MODELS / "scrfd" / "scrfd_500m_bnkps.onnx"
SFACE_INT8 = SHARED_MODELS / "sface" / "face_recognition_sface_2021dec_int8bq.onnx"
INSIGHTFACE = "pip install --no-deps 'insightface==2.1' && pip install 'driftbench[insightface]'"


def unit(angle_deg: float) -> np.ndarray:
    """A 2-d embedding at ``angle_deg`` from (1, 0): its cosine to (1, 0) is cos(angle)."""
    a = math.radians(angle_deg)
    return np.array([math.cos(a), math.sin(a)], dtype=np.float32)


def at_cos(c: float) -> np.ndarray:
    return unit(math.degrees(math.acos(c)))


def frames_table(rows: list[tuple[int, np.ndarray | None]], fps: float = 1.0) -> pd.DataFrame:
    """A per_frame table from (number of faces, largest face's embedding) per frame."""
    return pd.DataFrame({"sample_index": range(len(rows)), "t": [i / fps for i in range(len(rows))],
                         "frame_index": range(len(rows)), "n_faces": [n for n, _ in rows],
                         "emb": [e for _, e in rows]})


# -- definitions without media -----------------------------------------------------------------------------
def test_facesim_reads_32_linspace_frames_repeating_on_short_clips():
    idx = P.facesim_indices(69)
    assert len(idx) == 32 and idx[0] == 0 and idx[-1] == 68
    assert list(idx[:4]) == [0, 2, 4, 6]  # floor of linspace, as np.linspace(..., dtype=int)
    short = P.facesim_indices(10)
    assert len(short) == 32 and set(short) == set(range(10))  # repeats kept: each position counts
    assert len(P.facesim_indices(0)) == 0


def test_facesim_clips_negatives_to_zero_keeps_them_and_skips_frames_without_a_face():
    ref = unit(0)
    score, n = P.facesim(ref, [at_cos(0.9), at_cos(-0.5), None, at_cos(0.6)])
    assert n == 3 and score == pytest.approx((0.9 + 0.0 + 0.6) / 3, abs=1e-6)
    assert P.facesim(ref, [None, None]) == (0.0, 0)  # no frame with a face: 0.0, as the authors' code
    # embeddings need not be normalised (InsightFace's face.embedding is not)
    assert P.facesim(ref * 7, [at_cos(0.8) * 3])[0] == pytest.approx(0.8, abs=1e-6)


def test_human_identity_threshold_is_inclusive_at_0_4():
    ref = unit(0)
    rows = [(1, ref)] + [(1, at_cos(0.4))] * 10 + [(1, at_cos(0.3999))] * 10
    score, n = P.human_identity(frames_table(rows))
    assert n == 20 and score == pytest.approx(0.5)


def test_human_identity_frame_zero_must_hold_exactly_one_face():
    later = [(1, unit(0))] * 30
    assert math.isnan(P.human_identity(frames_table([(2, unit(0)), *later]))[0])
    assert math.isnan(P.human_identity(frames_table([(0, None), *later]))[0])
    assert P.human_identity(frames_table([(1, unit(0)), *later])) == (1.0, 30)


def test_human_identity_counts_a_frame_without_a_face_as_consistent_and_skips_several_faces():
    ref = unit(0)
    rows = [(1, ref)] + [(0, None)] * 10 + [(2, at_cos(0.1))] * 5 + [(1, at_cos(0.1))] * 10
    score, n = P.human_identity(frames_table(rows))
    # VBench's RetinaFace answers an empty box when it finds nothing, which the code counts as a match
    assert n == 20 and score == pytest.approx(10 / 20)


def test_human_identity_needs_20_counted_frames():
    rows = [(1, unit(0))] + [(1, unit(0))] * 19
    assert math.isnan(P.human_identity(frames_table(rows))[0])
    assert P.human_identity(frames_table(rows), min_frames=19) == (1.0, 19)
    assert P.sampled_min_frames(2.0, 25.0) == 2  # 20 frames of a 25 fps clip: 1.6 -> 2 samples at 2 fps
    assert P.sampled_min_frames(2.0, 15.0) == 3
    assert P.sampled_min_frames(30.0, 25.0) == 20
    assert P.sampled_min_frames(2.0, 0.0) == 20


def test_csim_means_the_frames_with_a_face_and_csim_5s_the_first_5_seconds():
    ref = unit(0)
    rows = [(1, at_cos(0.9))] * 5 + [(0, None)] * 2 + [(1, at_cos(0.3))] * 5
    tab = frames_table(rows, fps=1.0)
    c, n = P.csim(ref, tab)
    assert n == 10 and c == pytest.approx(0.6, abs=1e-6)
    assert P.csim(ref, tab, t_max=5.0)[0] == pytest.approx(0.9, abs=1e-6)
    assert math.isnan(P.csim(ref, frames_table([(0, None)]))[0])
    assert math.isnan(P.csim(None, tab)[0])


def test_per_frame_takes_the_largest_face_and_marks_frames_without_one():
    e_small, e_big = unit(10), unit(50)
    faces = pd.DataFrame({
        "sample_index": [0, 0, 1], "t": [0.0, 0.0, 0.5], "frame_index": [0, 0, 12], "face_index": [0, 1, -1],
        "face_size": [40.0, 90.0, np.nan], "emb": [e_small, e_big, None],
    })
    out = P.per_frame(faces)
    assert list(out["n_faces"]) == [2, 0]
    assert np.allclose(out["emb"].iloc[0], e_big) and out["emb"].iloc[1] is None
    assert list(out["frame_index"]) == [0, 12]


def _per_frame_by_groups(faces: pd.DataFrame) -> pd.DataFrame:
    """per_frame as it was written first (a pandas group per frame): the reference the faster one matches."""
    cols = ["sample_index", "t", "frame_index", "n_faces", "emb"]
    rows = []
    for si, g in faces.groupby("sample_index", sort=True):
        first = g.iloc[0]
        found = g[g["face_index"] >= 0]
        emb = None
        if not found.empty:
            big = found.loc[found["face_size"].astype(float).idxmax()]
            emb = None if big["emb"] is None else np.asarray(big["emb"], dtype=np.float32)
        rows.append({"sample_index": int(si), "t": float(first["t"]),
                     "frame_index": int(first["frame_index"]), "n_faces": len(found), "emb": emb})
    return pd.DataFrame(rows, columns=cols)


@pytest.mark.parametrize("seed", range(8))
def test_per_frame_matches_a_pandas_group_per_frame(seed):
    rng = np.random.default_rng(seed)
    rows = []
    for si in rng.permutation(30):  # samples in any order, 0-3 faces each, ties in size, unembedded faces
        n = int(rng.integers(0, 4))
        t, fi = float(si) / 2 + rng.random() * 1e-3, int(si) * 12 + int(rng.integers(0, 3))
        if n == 0:
            rows.append({"sample_index": si, "t": t, "frame_index": fi, "face_index": -1, "face_size": np.nan,
                         "emb": None})
        for k in range(n):
            rows.append({"sample_index": si, "t": t, "frame_index": fi, "face_index": k,
                         "face_size": float(rng.choice([40.0, 80.0, 80.0, 120.0])),
                         "emb": None if rng.random() < 0.2 else rng.normal(size=8).astype(np.float32)})
    faces = pd.DataFrame(rows).astype({"sample_index": "int32", "frame_index": "int32", "face_index": "int16",
                                       "face_size": "float32"})
    fast, ref = P.per_frame(faces), _per_frame_by_groups(faces)
    pd.testing.assert_frame_equal(fast.drop(columns="emb"), ref.drop(columns="emb"))
    for a, b in zip(fast["emb"], ref["emb"], strict=True):
        assert (a is None and b is None) or (a.dtype == b.dtype and np.array_equal(a, b))


def test_pad_frame_is_the_authors_grey_border():
    img = np.zeros((100, 60, 3), np.uint8)
    padded, (left, top) = P.pad_frame(img)
    assert (left, top) == (15, 25) and padded.shape == (150, 90, 3)
    assert (padded[:25] == 128).all() and (padded[25:125, 15:75] == 0).all()


# -- real clips of ../shared -----------------------------------------------------------------------------
@needs_shared
def test_frames_at_reads_exactly_the_indexed_frames_and_frame_count_is_the_decoded_count():
    import av

    from driftbench.measure import video

    path = VIDEO / "opens2v" / "singleface_3.mp4"
    with av.open(str(path)) as c:
        every = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert video.frame_count(path) == len(every) == 69
    idx = P.facesim_indices(len(every))
    got = list(video.frames_at(path, idx))
    assert [g.frame_index for g in got] == sorted(set(idx.tolist()))
    assert all(np.array_equal(g.image, every[g.frame_index]) for g in got)
    assert len(list(video.frames_at(path))) == 69


@needs_shared
def test_facesim_frames_reuse_the_sampled_analysis_exactly(analyzer):
    """FaceSim's frames that the run sampled reuse their faces; the result equals analysing all 32."""
    from driftbench.measure import video
    from driftbench.measure.signals import Sampling

    path = VIDEO / "opens2v" / "singleface_3.mp4"
    n = video.frame_count(path)
    sampled = analyzer.analyze_video(path, Sampling(2.0))
    shared = set(sampled["frame_index"]) & set(P.facesim_indices(n).tolist())
    assert len(shared) >= 3  # the reuse path is exercised
    alone = P.per_frame(P.facesim_frames(path, analyzer, n))
    reused = P.per_frame(P.facesim_frames(path, analyzer, n, sampled=sampled))
    assert list(alone["frame_index"]) == list(reused["frame_index"]) == sorted(set(P.facesim_indices(n)))
    assert list(alone["n_faces"]) == list(reused["n_faces"])
    for a, b in zip(alone["emb"], reused["emb"], strict=True):
        assert np.allclose(a, b, atol=1e-6)


@needs_shared
def test_published_columns_on_real_clips(tmp_path):
    """sface on a generated clip with its reference photo and on OpenS2V's singleface_3 (first frame):
    the columns are there, FaceSim reads 32 frames, Human_Identity follows VBench's frame-0 rule."""
    from driftbench.measure.clip import MeasureSettings, measure_clip
    from driftbench.sources.base import Clip

    s = MeasureSettings(device="cpu", expression=False, age=False, cache_dir=str(tmp_path), threshold=0.4,
                        published=P.PublishedSettings(exact=True))
    gen = VIDEO / "generated"
    res = measure_clip(Clip("hallo_1_0", str(gen / "hallo_1_0.mp4"), "hallo1",
                            references=(str(gen / "hallo_1_0.jpg"),)), s)
    assert res.status == "ok", res.message
    row = res.summary
    assert row["published_recognizer"].startswith("sface")
    assert row["published_frames"] == "facesim: 32 frames; human_identity: samples"
    assert row["facesim_faces"] == 32 and 0.5 < row["facesim"] <= 1.0
    assert 0.5 < row["csim"] <= 1.0 and 0.5 < row["csim_5s"] <= 1.0
    assert 0.9 <= row["human_identity"] <= 1.0 and row["human_identity_frames"] == row["n_samples"] - 1
    # FaceSim on the samples instead of its 32 frames (the default): labelled, and close on this steady clip
    s2 = MeasureSettings(device="cpu", expression=False, age=False, cache_dir=str(tmp_path), threshold=0.4)
    res2 = measure_clip(Clip("hallo_1_0", str(gen / "hallo_1_0.mp4"), "hallo1",
                             references=(str(gen / "hallo_1_0.jpg"),)), s2)
    assert res2.summary["published_frames"] == "facesim: samples; human_identity: samples"
    assert abs(res2.summary["facesim"] - row["facesim"]) < 0.02
    # singleface_3: YuNet sees a second, smaller face in frame 0, so VBench's rule leaves it unscored
    one = measure_clip(Clip("singleface_3", str(VIDEO / "opens2v" / "singleface_3.mp4"), "s3"),
                       MeasureSettings(device="cpu", expression=False, age=False, cache_dir=str(tmp_path),
                                       reference="first_frame", threshold=0.4,
                                       published=P.PublishedSettings(exact=True)))
    assert one.status == "ok"
    assert one.summary["facesim_faces"] == 32 and 0.8 < one.summary["facesim"] <= 1.0
    assert math.isnan(one.summary["human_identity"]) and one.summary["human_identity_frames"] == 0
    off = measure_clip(Clip("singleface_3", str(VIDEO / "opens2v" / "singleface_3.mp4"), "s3"),
                       MeasureSettings(device="cpu", expression=False, age=False, cache_dir=str(tmp_path),
                                       reference="first_frame", threshold=0.4,
                                       published=P.PublishedSettings(enabled=False)))
    assert "facesim" not in off.summary


# -- equality with the authors' procedure on a local InsightFace pack ---------------------------------------
def _need_insightface() -> None:
    if importlib.util.find_spec("insightface") is None:
        pytest.skip(f"insightface is not installed (optional backend face=insightface) -- {INSIGHTFACE}")


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    _need_insightface()
    from driftbench.faces.insightface_backend import build_pack

    return build_pack(tmp_path_factory.mktemp("published-pack") / "scrfd_sface", SCRFD, SFACE_INT8)


@pytest.fixture(scope="module")
def test_clip(tmp_path_factory) -> tuple[Path, Path]:
    """A 69-frame clip made from real frames: hallo_1_0's, some zoomed 2x on the face (SCRFD at 320 finds
    it only after the authors' 25% grey padding), grey frames (no face at all), frames with the face twice
    (two faces) and 5 frames of another person (negative_aiface3clip); and hallo_1_0's reference photo as
    PNG (no JPEG decoder difference between the two sides)."""
    import av
    import cv2

    if not (VIDEO / "generated" / "hallo_1_0.mp4").is_file():
        pytest.skip("../shared/data/video/generated/hallo_1_0.mp4 not found")
    d = tmp_path_factory.mktemp("published-clip")
    with av.open(str(VIDEO / "generated" / "hallo_1_0.mp4")) as c:
        src = [f.to_ndarray(format="bgr24") for _, f in zip(range(60), c.decode(video=0), strict=False)]
    with av.open(str(VIDEO / "generated" / "negative_aiface3clip_aiface4ref.mp4")) as c:
        other = [f.to_ndarray(format="bgr24") for _, f in zip(range(5), c.decode(video=0), strict=False)]
    h, w = src[0].shape[:2]
    zoom = np.float32([[2, 0, w / 2 - 2 * 268], [0, 2, h / 2 - 2 * 227]])  # 2x around the face centre

    def twice(f: np.ndarray) -> np.ndarray:
        canvas = np.full_like(f, 128)
        canvas[h // 4: h // 4 + h // 2] = np.hstack([cv2.resize(f, (w // 2, h // 2))] * 2)
        return canvas

    frames = (src[:30] + [cv2.warpAffine(f, zoom, (w, h)) for f in src[30:38]]
              + [np.full_like(src[0], 128)] * 4 + [twice(f) for f in src[38:41]]
              + [cv2.resize(f, (w, h)) for f in other] + src[41:60])
    path = d / "hallo_mixed.mp4"
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"crf": "16"}
        for f in frames:
            for pkt in st.encode(av.VideoFrame.from_ndarray(f, format="bgr24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    ref = d / "hallo_1_0.png"
    cv2.imwrite(str(ref), cv2.imread(str(VIDEO / "generated" / "hallo_1_0.jpg")))
    return path, ref


def _face_analysis(pack: Path):
    from insightface.app import FaceAnalysis

    app = FaceAnalysis(name=str(pack), root=str(pack.parent), allowed_modules=["detection", "recognition"],
                       providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1, det_size=(320, 320))  # OpenS2V's and ConsisID's det_size
    return app


def _decoded_rgb(path: Path) -> list[np.ndarray]:
    """Every frame, RGB, as decord's VideoReader gives them."""
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def opens2v_facesim(app, video_path: Path, image_path: Path, num_frames: int = 32) -> tuple[float, int, int]:
    """OpenS2V-Nexus eval/get_facesim.py's arc score, re-implemented (its process_image, pad retry, largest
    face, max(0, cos), mean; CurricularFace left out). Returns (score, frames with a face, frames whose
    face was found only after padding)."""
    padded_hits = 0
    import cv2
    from PIL import Image

    def get_face_keypoints(image_bgr):
        info = app.get(image_bgr)
        if len(info) > 0:
            return sorted(info, key=lambda x: (x["bbox"][2] - x["bbox"][0])
                          * (x["bbox"][3] - x["bbox"][1]))[-1]
        return None

    def process_image(np_rgb):
        image_bgr = cv2.cvtColor(np_rgb, cv2.COLOR_RGB2BGR)
        info = get_face_keypoints(image_bgr)
        if info is None:
            h, w = image_bgr.shape[:2]
            top, left = int(h * 0.25), int(w * 0.25)
            padded = cv2.copyMakeBorder(image_bgr, top, top, left, left, cv2.BORDER_CONSTANT,
                                        value=(128, 128, 128))
            info = get_face_keypoints(padded)
            if info is None:
                return None
            nonlocal padded_hits
            padded_hits += 1
        return info["embedding"]

    ref = process_image(np.array(Image.open(image_path).convert("RGB")))
    frames = _decoded_rgb(video_path)
    idx = np.linspace(0, len(frames) - 1, num_frames, dtype=int)
    arc_scores = []
    for i in idx:
        emb = process_image(frames[int(i)])
        if emb is None:
            continue
        cos = float(np.dot(ref, emb) / (np.linalg.norm(ref) * np.linalg.norm(emb)))
        arc_scores.append(max(0.0, cos))
    return (float(np.mean(arc_scores)) if arc_scores else 0.0), len(arc_scores), padded_hits


def vbench_human_identity(app, video_path: Path) -> tuple[float, int]:
    """VBench-2.0 vbench2/human_identity.py's IDTracker and loop, re-implemented with FaceAnalysis as
    detector and recogniser: its answers are put in RetinaFace ``predict_jsons`` form (one empty box when
    no face is found), so the code's branches run as in VBench."""
    import cv2

    def predict_jsons(frame_rgb):
        faces = app.get(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
        if not faces:
            return [{"bbox": [], "score": -1, "landmarks": []}]
        return [{"bbox": list(f.bbox), "embedding": f.embedding} for f in faces]

    tracker = None

    def update(frame, frame_count):
        nonlocal tracker
        faces = predict_jsons(frame)
        flag = True
        if len(faces) == 1:
            box = faces[0]["bbox"]
            if len(box) == 4:
                feat = faces[0]["embedding"]
                if frame_count < 1:
                    tracker = feat
                else:
                    sim = np.dot(feat, tracker) / (np.linalg.norm(feat) * np.linalg.norm(tracker))
                    if sim < 0.4:
                        flag = False
            elif frame_count == 0 and len(box) != 4:
                return True, False
        else:
            return True, False
        return flag, True

    consistent = frame_num = 0
    for coun, frame in enumerate(_decoded_rgb(video_path)):
        if coun < 1:
            flag, valid = update(frame, coun)
            if not flag or not valid:
                consistent = frame_num = 0
                break
        else:
            flag, valid = update(frame, coun)
            if not valid:
                continue
            if flag:
                consistent += 1
            frame_num += 1
    return (float("nan") if frame_num < 20 else consistent / frame_num), frame_num


@needs_shared
def test_facesim_and_human_identity_equal_the_authors_procedure_on_a_local_insightface_pack(
        pack, test_clip, tmp_path):
    from driftbench.measure.clip import MeasureSettings, close_analyzer, measure_clip
    from driftbench.sources.base import Clip

    video_path, ref_path = test_clip
    settings = MeasureSettings(backend="insightface", backend_options={"pack": str(pack), "det_size": 320},
                               expression=False, age=False, device="cpu", cache_dir=str(tmp_path),
                               threshold=0.4, published=P.PublishedSettings(exact=True, all_frames=True))
    try:
        res = measure_clip(Clip("mixed", str(video_path), "hallo1", references=(str(ref_path),)), settings)
    finally:
        close_analyzer()
    assert res.status == "ok", res.message
    got = res.summary
    app = _face_analysis(pack)
    fs, fs_n, fs_padded = opens2v_facesim(app, video_path, ref_path)
    hi, hi_n = vbench_human_identity(app, video_path)
    assert got["published_recognizer"] == "insightface:scrfd_sface"
    assert got["published_frames"] == "facesim: 32 frames; human_identity: all frames"
    assert got["facesim_faces"] == fs_n and got["facesim"] == pytest.approx(fs, abs=1e-6)
    assert got["human_identity_frames"] == hi_n and got["human_identity"] == pytest.approx(hi, abs=1e-12)
    # the clip exercises every branch: frames found only after padding, frames with no face at all
    # (left out of FaceSim, consistent in Human_Identity) and frames with two faces (skipped)
    print(f"\nFaceSim {fs:.6f} over {fs_n}/32 frames ({fs_padded} after padding), "
          f"driftbench {got['facesim']:.6f}; "
          f"Human_Identity {hi:.6f} over {hi_n} frames, driftbench {got['human_identity']:.6f}")
    assert fs_padded > 0 and 0 < fs_n < 32 and 0.0 < hi < 1.0 and hi_n < 68


# -- the report section ------------------------------------------------------------------------------------
def test_report_view_labels_each_figure_with_its_recogniser_and_finds_the_disagreements():
    from driftbench.report import published as R

    base = {"published_recognizer": "sface", "threshold": 0.36, "drift_dec_at_end": 0.35,
            "published_frames": "facesim: 32 frames; human_identity: samples"}
    clips = pd.DataFrame([
        # a late drift every average hides
        {**base, "clip_id": "late", "human_identity": 1.0, "facesim": 0.83, "csim": 0.83, "csim_5s": 0.90,
         "drifting": 1, "time_to_drift_s": 51.5, "lost": 0, "time_to_loss_s": np.nan},
        # steady clip that a published figure calls another person
        {**base, "clip_id": "low", "human_identity": 0.3, "facesim": 0.3, "csim": 0.5, "csim_5s": 0.5,
         "drifting": 0, "time_to_drift_s": np.nan, "lost": 0, "time_to_loss_s": np.nan},
        # both agree it went wrong
        {**base, "clip_id": "step", "human_identity": 0.34, "facesim": 0.54, "csim": 0.54, "csim_5s": 0.92,
         "drifting": 1, "time_to_drift_s": 22.5, "lost": 1, "time_to_loss_s": 23.5},
        # frame 0 with two faces: Human_Identity not measured, the rest agree with a steady clip
        {**base, "clip_id": "two", "human_identity": np.nan, "facesim": 0.9, "csim": 0.9, "csim_5s": 0.9,
         "drifting": 0, "time_to_drift_s": np.nan, "lost": 0, "time_to_loss_s": np.nan},
    ])
    v = R.view(clips)
    assert v is not None
    by = {r["clip_id"]: r for r in v["rows"]}
    assert [f["label"] for f in by["late"]["figures"]] == [
        "human_identity[sface]", "facesim[sface]", "csim[sface]", "csim_5s[sface]"]
    assert by["late"]["flag"] == "drifting from 52 s" and "no published figure shows it" in by["late"][
        "disagreement"]
    assert "human_identity[sface], facesim[sface]" in by["low"]["disagreement"]
    assert by["step"]["disagreement"] == ""
    assert by["step"]["flag"] == "drifting from 22 s, identity lost at 24 s"
    assert by["two"]["disagreement"] == "" and by["two"]["figures"][0]["same"] is None
    assert [r["clip_id"] for r in v["disagreements"]] == ["late", "low"]
    assert v["heads"][1] == "facesim[sface]" and not v["several"]
    two = R.view(pd.concat([clips, clips.assign(clip_id="x", published_recognizer="dlib")]))
    assert two is not None and two["several"] and two["heads"][1] == "facesim[recognizer]"
    assert {f["label"] for r in two["rows"] for f in r["figures"] if f["col"] == "facesim"} == {
        "facesim[sface]", "facesim[dlib]"}
    js = R.to_json(v)
    assert js[3]["human_identity[sface]"] is None and js[0]["csim_5s[sface]"] == 0.9
    assert R.view(clips.drop(columns=["facesim"])) is None


@needs_shared
def test_run_writes_the_published_columns_and_the_report_shows_them(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "singleface_3.mp4").symlink_to(VIDEO / "opens2v" / "singleface_3.mp4")
    cmd = [sys.executable, "-m", "driftbench", "run", "model=folder", f"model.path={clips}",
           "reference=first_frame", "fetch=false", "progress=false", f"output.dir={tmp_path / 'run'}",
           f"cache.dir={tmp_path / 'cache'}", "published.exact=true"]
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = pd.read_csv(tmp_path / "run" / "clips.csv").iloc[0]
    assert row["published_recognizer"].startswith("sface") and row["facesim_faces"] == 32
    assert 0.8 < row["facesim"] <= 1.0 and 0.8 < row["csim"] <= 1.0
    html = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "Published metrics beside driftbench" in html and "facesim[sface" in html
    rep = json.loads((tmp_path / "run" / "report.json").read_text(encoding="utf-8"))
    assert rep["published"][0]["clip_id"] == "singleface_3.mp4"
    assert rep["published"][0]["human_identity[" + row["published_recognizer"] + "]"] is None


@needs_shared
def test_a_truncated_clip_keeps_its_metrics_and_says_which_facesim_frames_were_unreadable(tmp_path):
    import av

    from driftbench.measure import video
    from driftbench.measure.clip import MeasureSettings, MetricSettings, measure_clip
    from driftbench.sources.base import Clip

    src = VIDEO / "generated" / "hallo_1_0.mp4"
    whole = tmp_path / "whole.mp4"
    with av.open(str(src)) as c, av.open(str(whole), "w", options={"movflags": "faststart"}) as out:
        st = out.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = 256, 256, "yuv420p"
        for _, f in zip(range(100), c.decode(video=0), strict=False):
            for pkt in st.encode(f.reformat(width=256, height=256, format="yuv420p")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    read = list(video.frames_at(cut, range(100)))  # no exception: the damaged tail ends the frames
    assert 0 < len(read) < 100
    cache = tmp_path / "cache"
    res = measure_clip(Clip("cut", str(cut), "h"), MeasureSettings(
        device="cpu", expression=False, age=False, cache_dir=str(cache), reference="first_frame",
        threshold=0.4, metrics=MetricSettings(min_samples=2),
        published=P.PublishedSettings(exact=True)))
    assert res.status == "ok", res.message
    assert "unreadable, left out" in res.summary["published_frames"]
    assert 0 < res.summary["facesim_faces"] < 32 and 0.8 < res.summary["facesim"] <= 1.0
    assert not list(cache.rglob("*.parquet"))  # neither its signals nor its FaceSim frames are cached
