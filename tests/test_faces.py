from __future__ import annotations

import numpy as np
import pytest

from driftbench.faces.base import create_backend
from driftbench.measure.video import read_image
from tests.conftest import FACES, needs_shared

pytestmark = needs_shared


@pytest.fixture(scope="module")
def sface():
    return create_backend("sface", device="cpu", engine="opencv")


def test_detects_one_face_and_embeds_unit_vector(sface):
    img = read_image(FACES / "photos/alex_1.jpg")
    faces = sface.detect(img)
    assert len(faces) == 1
    f = faces[0]
    assert f.landmarks.shape == (5, 2)
    # landmarks are mapped back to full resolution: inside the box on the full-size photo
    x, _y, w, _h = f.box
    assert (f.landmarks[:, 0] > x).all() and (f.landmarks[:, 0] < x + w).all()
    e = sface.embed([sface.align(img, f)])
    assert e.shape == (1, 128) and np.isclose(np.linalg.norm(e), 1.0, atol=1e-5)


def test_same_person_scores_above_different_person(sface):
    def emb(name):
        img = read_image(FACES / "photos" / name)
        return sface.embed([sface.align(img, sface.detect(img)[0])])[0]

    a1, a2, b1 = emb("alex_1.jpg"), emb("alex_2.jpg"), emb("biden_1.jpg")
    assert a1 @ a2 > 0.5 > 0.3 > a1 @ b1


def test_opencv_and_onnxruntime_engines_agree(sface):
    ort_backend = create_backend("sface", device="cpu", engine="onnxruntime")
    img = read_image(FACES / "deepface/img1.jpg")
    chip = sface.align(img, sface.detect(img)[0])
    a = sface.embed([chip, chip[:, ::-1].copy()])
    b = ort_backend.embed([chip, chip[:, ::-1].copy()])
    assert np.abs(a - b).max() < 1e-4


def test_repaired_sface_matches_original_int8_graph():
    """Folding the block-quantized weights to fp32 changes no output (vs the int8 graph with only the
    dangling inputs removed, run by onnxruntime)."""
    import onnx
    import onnxruntime as ort

    from driftbench.faces.onnx_fix import drop_dangling_inputs, load_fixed
    from driftbench.weights import store

    path = store.resolve("sface").path
    original = drop_dangling_inputs(onnx.load(str(path)))
    s0 = ort.InferenceSession(original.SerializeToString(), providers=["CPUExecutionProvider"])
    s1 = ort.InferenceSession(load_fixed(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 112, 112)).astype(np.float32)
    y0 = s0.run(None, {s0.get_inputs()[0].name: x})[0]
    y1 = s1.run(None, {s1.get_inputs()[0].name: x})[0]
    assert np.abs(y0 - y1).max() < 1e-4


def test_multimegapixel_photo_detected_via_capped_copy(sface):
    import cv2

    img = read_image(FACES / "photos/alex_1.jpg")
    big = cv2.resize(img, None, fx=3.0, fy=3.0)  # ~2600 x 3600 px
    faces = sface.detect(big)
    assert len(faces) == 1 and faces[0].box[2] > 300


def test_age_engines_agree_on_real_faces(analyzer):
    """OpenCV DNN (default on CPU) and onnxruntime give the same age probabilities on real face chips."""
    from driftbench.faces.age import AgeEstimator, age_chip
    from driftbench.faces.landmarker import Landmarker
    from driftbench.weights import store

    path = store.resolve("age").path
    chips = []
    with Landmarker(store.resolve("face_landmarker").path) as lm:
        for name in ("alex_1.jpg", "biden_1.jpg", "kit_1.jpg", "obama_1.jpg"):
            img = read_image(FACES / "photos" / name)
            face = analyzer.backend.detect(img)[0]
            res = lm.analyze(img, face.box)
            chips.append(age_chip(img, res.landmarks))
    cv, ort = AgeEstimator(path, engine="opencv"), AgeEstimator(path, engine="onnxruntime")
    assert np.abs(cv.probabilities(chips) - ort.probabilities(chips)).max() < 1e-4
    ages = cv.predict(chips)
    assert ((ages > 10) & (ages < 80)).all()
    # issue 20's GPU path: the graph converted by onnx2fx (engine 'torch') gives the same probabilities
    pytest.importorskip("onnx2fx")
    tv = AgeEstimator(path, engine="torch", device="cpu")
    assert tv.engine == "torch"
    assert np.abs(cv.probabilities(chips) - tv.probabilities(chips)).max() < 1e-4
    assert np.abs(tv.predict(chips) - ages).max() < 0.01  # years


def test_similarity_alignment_is_the_least_squares_umeyama_solution():
    """Our closed-form similarity estimate equals scikit-image's Umeyama (what insightface uses) to
    float precision (the former OpenCV Levenberg-Marquardt estimate only came within ~0.05 px), for
    5 points and for the 2 eye points the dlib backend aligns with."""
    from skimage.transform import SimilarityTransform

    from driftbench.faces.base import ARCFACE_TEMPLATE_112, similarity_matrix

    rng = np.random.default_rng(0)
    for _ in range(100):
        ang, sc = rng.uniform(-0.6, 0.6), rng.uniform(0.3, 5.0)
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]) * sc
        src = ARCFACE_TEMPLATE_112 @ rot.T + rng.uniform(0, 800, 2) + rng.normal(0, 4, (5, 2))
        ref = SimilarityTransform.from_estimate(src, ARCFACE_TEMPLATE_112).params[:2]
        got = similarity_matrix(src, ARCFACE_TEMPLATE_112)
        # the same chip: every landmark lands where Umeyama places it
        pts = np.c_[src, np.ones(5)]
        assert np.abs(pts @ got.T - pts @ ref.T).max() < 1e-6
        two = SimilarityTransform.from_estimate(src[:2], ARCFACE_TEMPLATE_112[:2]).params[:2]
        assert np.allclose(similarity_matrix(src[:2], ARCFACE_TEMPLATE_112[:2]), two, atol=1e-6)
    with pytest.raises(ValueError):
        similarity_matrix(np.ones((5, 2)), ARCFACE_TEMPLATE_112)
    # strided views (a column slice of a wider landmark table) are accepted
    wide = np.hstack([ARCFACE_TEMPLATE_112 * 2 + 7, np.zeros((5, 1))])
    got = similarity_matrix(wide[:, :2], ARCFACE_TEMPLATE_112)
    assert np.allclose(got, [[0.5, 0, -3.5], [0, 0.5, -3.5]], atol=1e-6)
    many = rng.uniform(0, 100, (478, 3))[:, :2]
    assert similarity_matrix(many, many * 1.5).shape == (2, 3)


def test_head_pose_angles_match_scipy_rotation():
    """Euler angles read with OpenCV's RQ decomposition equal scipy's extrinsic x-y-z reading, for
    scaled rotations over the whole range a head can take (and beyond)."""
    from scipy.spatial.transform import Rotation

    from driftbench.faces.landmarker import euler_from_transform

    rng = np.random.default_rng(1)
    for _ in range(500):
        angles = rng.uniform([-170, -85, -170], [170, 85, 170])
        m = np.eye(4)
        m[:3, :3] = Rotation.from_euler("xyz", angles, degrees=True).as_matrix() * rng.uniform(0.5, 40)
        yaw, pitch, roll = euler_from_transform(m)
        assert np.allclose([pitch, yaw, roll], angles, atol=1e-6)


_MEDIAPIPE_PROBE = """
import importlib, json, sys
if sys.argv[1] == "plain":
    import mediapipe
from driftbench.faces.landmarker import Landmarker
from driftbench.weights import store
Landmarker(store.resolve("face_landmarker").path).close()
lean = sorted(m for m in ("matplotlib", "sounddevice") if m in sys.modules)
import mediapipe as mp
from mediapipe.tasks.python import vision
from mediapipe.tasks.python.vision import FaceLandmarksConnections
fl = importlib.import_module("mediapipe.tasks.python.vision.face_landmarker")
names = {n: sorted(k for k in vars(sys.modules[n]) if not k.startswith("__"))
         for n in ("mediapipe", "mediapipe.tasks", "mediapipe.tasks.python", "mediapipe.tasks.python.vision")}
print(json.dumps({"lean_imported": lean, "names": names, "same_class": vision.FaceLandmarker is
fl.FaceLandmarker,
                  "tasks": mp.tasks.__name__, "version": mp.__version__}))
"""


@needs_shared
def test_landmarker_skips_mediapipes_eager_imports_and_leaves_the_package_whole():
    """The landmarker imports MediaPipe's FaceLandmarker without the package __init__s that pull in
    matplotlib and sounddevice; a later `import mediapipe` in the same process gets exactly the package
    a plain import makes."""
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT, SHARED_MODELS

    def probe(mode: str) -> dict:
        env = {**__import__("os").environ, "DRIFTBENCH_MODELS": str(SHARED_MODELS)}
        out = subprocess.run([sys.executable, "-c", _MEDIAPIPE_PROBE, mode], cwd=ROOT, env=env, check=True,
                             capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    lean, plain = probe("lean"), probe("plain")
    assert lean["lean_imported"] == [] and "matplotlib" in plain["lean_imported"]
    assert (
        lean["names"] == plain["names"] and "FaceLandmarker" in lean["names"]["mediapipe.tasks.python.vision"]
    )
    assert lean["same_class"] and lean["tasks"] == plain["tasks"] and lean["version"] == plain["version"]


@needs_shared
def test_a_graph_that_fails_to_load_in_the_background_is_reported_even_without_faces(tmp_path):
    """SFace loads on a background thread; its error must reach the caller at the first embedding, and
    at the end of a clip in which no face was ever seen."""
    from driftbench.faces.sface import SFaceEmbedder
    from driftbench.measure.signals import FaceAnalyzer

    broken = tmp_path / "sface_broken.onnx"
    broken.write_bytes(b"not an onnx graph" * 100)
    with pytest.raises(Exception, match=r"onnx\.ModelProto"):
        SFaceEmbedder(broken).embed([np.zeros((112, 112, 3), np.uint8)])
    with FaceAnalyzer.create("sface", expression=False, age=False, device="cpu") as analyzer:
        analyzer.backend.embedder = SFaceEmbedder(broken)
        with pytest.raises(Exception, match=r"onnx\.ModelProto"):
            analyzer.analyze_image(np.zeros((240, 320, 3), np.uint8))


def test_sface_torch_engine_matches_opencv_on_real_faces():
    """Issue 20's GPU path: SFace converted by onnx2fx (engine 'torch', what a machine with only torch's
    CUDA runs) gives the OpenCV engine's embeddings on real faces, here on CPU (onnx2fx is a dev
    dependency, so CI runs this); tests/benchmarks/gpu_check.py measures the same parity, plus YuNet's
    and the age graph's, and throughput, on a lent GPU."""
    pytest.importorskip("onnx2fx")
    import cv2

    from driftbench.faces.sface import SFaceEmbedder
    from driftbench.weights import store

    backend = create_backend("sface", device="cpu")
    chips = []
    for p in sorted((FACES / "photos").glob("*"))[:8]:
        img = cv2.imread(str(p))
        if img is not None and (faces := backend.detect(img)):
            chips.append(backend.align(img, faces[0]))
    assert len(chips) >= 5
    ref = backend.embed(chips)
    torch_embedder = SFaceEmbedder(store.resolve("sface").path, engine="torch", device="cpu")
    got = torch_embedder.embed(chips)
    assert torch_embedder.engine == "torch" and got.shape == ref.shape
    assert np.allclose((ref * got).sum(1), 1.0, atol=1e-4)


def test_yunet_torch_engine_detects_what_opencv_detects_on_real_images():
    """Detection through torch (engine 'torch': YuNet's graph converted by onnx2fx, decoded by
    yunet_decode) finds the faces OpenCV's FaceDetectorYN finds, at the same places, on the labelled
    photos, frames of real clips, a three-person strip and grey / BGRA copies; for the fp32 YuNet of
    ../shared and, where this machine has it, the int8bq one a fresh install resolves."""
    pytest.importorskip("onnx2fx")
    import cv2

    from driftbench.faces.sface import YuNetDetector
    from driftbench.weights import store
    from tests.conftest import VIDEO

    images = [read_image(p) for p in sorted((FACES / "photos").glob("*.jpg"))]
    for clip in sorted((VIDEO / "real").glob("*.mp4"))[:8]:
        cap = cv2.VideoCapture(str(clip))
        ok, frame = cap.read()
        cap.release()
        if ok:
            images.append(frame)
    images.append(np.hstack([cv2.resize(images[i], (400, 400)) for i in (0, 5, 9)]))
    # grey and BGRA inputs become BGR before either engine sees them
    images += [cv2.cvtColor(images[1], cv2.COLOR_BGR2GRAY), cv2.cvtColor(images[2], cv2.COLOR_BGR2BGRA)]
    paths = [store.resolve("yunet").path]
    paths += sorted(store.weights_dir().glob("yunet/*int8bq*.onnx"))
    for path in paths:
        ref, got = YuNetDetector(path), YuNetDetector(path, engine="torch")
        n = 0
        for img in images:
            a, b = ref.detect(img), got.detect(img)
            assert len(a) == len(b), path
            for fa, fb in zip(a, b, strict=True):
                assert np.abs(fa.box - fb.box).max() < 0.01
                assert np.abs(fa.landmarks - fb.landmarks).max() < 0.01
                assert abs(fa.score - fb.score) < 1e-4
            n += len(a)
        assert n >= len(images) + 2  # every image has its face; the strip has three


def test_sface_torch_engine_measures_a_real_clip_like_opencv(tmp_path):
    """The whole run with face.options.engine=torch (detection and embedding through torch, on CPU here)
    gives the default engine's per-sample similarities on a real clip, and records its engines in run.json."""
    pytest.importorskip("onnx2fx")
    import json

    from tests.conftest import VIDEO
    from tests.data.runs import run_inprocess

    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").symlink_to(VIDEO / "real/edtalk_pose_source2.mp4")
    sims = {}
    for engine in ("opencv", "torch"):
        out = tmp_path / engine
        rc = run_inprocess("model=folder", f"model.path={tmp_path / 'clips'}", f"output.dir={out}",
                           f"face.options.engine={engine}", "device=cpu", "cache.enabled=false",
                           "report.html=false", "sampling.end=12")
        assert rc == 0
        run = json.loads((out / "run.json").read_text())
        recorded = json.dumps(run)
        assert f"sface:{engine}" in recorded and ("yunet:torch" in recorded) == (engine == "torch")
        assert run["signal_engines"] == {"age": "opencv"}  # on CPU the age network stays in OpenCV
        sims[engine] = __import__("pandas").read_parquet(out / "frames.parquet")["sim_raw"].to_numpy()
    assert len(sims["torch"]) == len(sims["opencv"]) >= 10
    assert np.abs(sims["torch"] - sims["opencv"]).max() < 1e-4


def test_torch_engine_without_onnx2fx_is_a_usage_error(tmp_path):
    """face.options.engine=torch where onnx2fx is missing (hidden from this subprocess, so the test runs
    whether or not it is installed): exit 2 and a one-line fix, before any clip is measured."""
    import subprocess
    import sys

    from tests.conftest import ROOT, VIDEO

    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").symlink_to(VIDEO / "real/edtalk_pose_source2.mp4")
    hide = ("import sys; sys.modules['onnx2fx'] = None; "
            "from driftbench.cli.main import console_main; console_main()")
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            hide,
            "run",
            "model=folder",
            f"model.path={tmp_path / 'clips'}",
            f"output.dir={tmp_path / 'run'}",
            "face.options.engine=torch",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 2, p.stderr[-2000:]
    assert "face.options.engine=torch" in p.stderr and "onnx2fx is not installed" in p.stderr
    assert "torch-gpu" in p.stderr
    assert not (tmp_path / "run" / "parts").exists()


def test_device_auto_without_an_nvidia_driver_is_cpu_without_importing_an_engine(tmp_path):
    """device=auto on a Linux machine without an NVIDIA driver: cpu, decided from the driver's files alone
    (onnxruntime is not imported for it: ~25 ms of start-up, and onnxruntime-gpu lists its CUDA provider on
    machines without a GPU too). With the files present the engines decide."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from driftbench.faces import engines\n"
        "engines.NVIDIA_DRIVER_PATHS = (sys.argv[1],)\n"
        "print(engines.resolve_device('auto'), engines.resolve_device('cpu'), 'onnxruntime' in sys.modules)\n"
    )
    absent = subprocess.run([sys.executable, "-c", code, str(tmp_path / "none")], capture_output=True,
                            text=True, check=True)
    if not sys.platform.startswith("linux"):
        pytest.skip("the driver check is Linux-only")
    assert absent.stdout.split() == ["cpu", "cpu", "False"]
    present = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                             check=True)
    resolved, _, imported = present.stdout.split()
    assert imported == "True" and resolved in ("cpu", "cuda")  # the engines were asked


def test_onnxruntime_version_is_read_without_importing_it():
    """run.json records onnxruntime's version from its distribution's metadata: the same string as the
    module's own, and no import (a run on the OpenCV engines never imports onnxruntime)."""
    import subprocess
    import sys

    code = ("import sys\nfrom driftbench.faces import engines\n"
            "print(engines.ort_version(), 'onnxruntime' in sys.modules)\n")
    version, imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout.split()
    import onnxruntime

    assert (version, imported) == (onnxruntime.__version__, "False")
