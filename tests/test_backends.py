"""Optional face backends (dlib, insightface, deepface) on real photos and clips from ../shared.

Each backend is checked the same way: verification on the deepface unit-test photos (1830 labelled
pairs; the default SFace backend gives AUC 1.000, d' 7.13, margin +0.080 there), same-person above
different-person on the labelled photos, and an end-to-end ``python -m driftbench run`` on a short real
clip with no identity loss. Tests skip, naming the install command, only when the optional package is
not installed; the missing-package errors themselves are tested without it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from driftbench.errors import ModelNotFoundError, UsageError
from driftbench.faces.base import KNOWN_BACKENDS, create_backend, preflight
from driftbench.measure.video import read_image
from driftbench.validity import verification as V
from tests.conftest import FACES, ROOT, SHARED_MODELS, VIDEO, needs_shared

pytestmark = needs_shared

CLIP = VIDEO / "real" / "real3dportrait_may_5s.mp4"
SCRFD = SHARED_MODELS / "scrfd" / "scrfd_500m_bnkps.onnx"
SFACE_INT8 = SHARED_MODELS / "sface" / "face_recognition_sface_2021dec_int8bq.onnx"

INSTALL = {
    "dlib": "pip install 'driftbench[dlib]'",
    "insightface": "pip install --no-deps 'insightface==2.1' && pip install 'driftbench[insightface]'",
    "deepface": "pip install --no-deps 'deepface==0.0.103' && pip install 'driftbench[deepface]'",
}


def need(module: str, backend: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (optional backend face={backend}) -- {INSTALL[backend]}")


# -- shared measurement helpers ------------------------------------------------------------------------
def embed_photos(backend: Any, photos: V.LabelledPhotos) -> tuple[np.ndarray, list[str], list[str], float]:
    """Largest face of every photo -> (embeddings, labels, files without a face, ms per face)."""
    embs, labels, missing, seconds = [], [], [], 0.0
    for path, label in zip(photos.paths, photos.labels, strict=True):
        img = read_image(path)
        t0 = time.perf_counter()
        faces = backend.detect(img)
        if not faces:
            missing.append(path.name)
            continue
        face = max(faces, key=lambda f: f.size)
        emb = backend.embed([backend.align(img, face)])[0]
        seconds += time.perf_counter() - t0
        embs.append(emb)
        labels.append(label)
    return np.stack(embs), labels, missing, 1000.0 * seconds / max(len(embs), 1)


def verify(backend: Any, photos: V.LabelledPhotos) -> dict[str, Any]:
    emb, labels, missing, ms = embed_photos(backend, photos)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4), "embeddings must be L2-normalised"
    i, j, same = V.all_pairs(labels)
    m = V.verification_metrics(np.einsum("nd,nd->n", emb[i], emb[j]), same)
    m.update(missing=missing, ms_per_face=ms)
    print(f"\n{backend.info.threshold_key} on {photos.source}: AUC {m['auc']:.4f} EER {m['eer']:.4f} "
          f"d' {m['d_prime']:.2f} margin {m['margin']:+.3f} thr@FAR0.1% {m['threshold_at_far_0.001']:.4f} "
          f"TAR {m['tar_at_far_0.001']:.3f} no face {missing} detect+align+embed {ms:.0f} ms/face")
    return m


def deepface_set() -> V.LabelledPhotos:
    return V.deepface_photos(FACES / "deepface")


def photo_set() -> V.LabelledPhotos:
    return V.labelled_photos(FACES / "photos")


def calibrate_into(tmp: Path, backend: str, options: dict[str, Any]) -> tuple[Path, str, dict[str, Any]]:
    """Calibrate a backend (the real `driftbench calibrate` code path, without the pose/age signals) into
    a thresholds file of its own: (file, threshold key, entry)."""
    from driftbench.measure.decouple import load_decoupler
    from driftbench.measure.signals import FaceAnalyzer
    from driftbench.validity import calibration

    with FaceAnalyzer.create(
        backend, expression=False, age=False, device="cpu", backend_options=options
    ) as a:
        t0 = time.perf_counter()
        entry = calibration.calibrate(a, FACES / "deepface", load_decoupler(backend))
        seconds = time.perf_counter() - t0
        key = a.info.threshold_key
    m = entry["raw"]
    print(f"\n{key} calibrated on {entry['data']['source']}: AUC {m['auc']:.4f} EER {m['eer']:.4f} "
          f"d' {m['d_prime']:.2f} margin {m['margin']:+.3f} thr@FAR0.1% {m['threshold_at_far_0.001']:.4f} "
          f"TAR {m['tar_at_far_0.001']:.3f} no face {entry['data']['no_face']} "
          f"{1000 * seconds / entry['data']['n_photos']:.0f} ms/photo")
    path = calibration.write_thresholds({key: entry}, tmp / "thresholds.json")
    return path, key, entry


def run_clip(tmp: Path, face_args: list[str], env: dict[str, str] | None = None) -> pd.DataFrame:
    """`python -m driftbench run` on one short real clip (reference: its first second)."""
    clips = tmp / "clips"
    clips.mkdir(exist_ok=True)
    link = clips / CLIP.name
    if not link.exists():
        link.symlink_to(CLIP)
    cmd = [
        sys.executable,
        "-m",
        "driftbench",
        "run",
        "model=folder",
        f"model.path={clips}",
        "reference=first_frame",
        *face_args,
        "fetch=false",
        "progress=false",
        f"output.dir={tmp / 'run'}",
        f"cache.dir={tmp / 'cache'}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    clips_csv = pd.read_csv(tmp / "run" / "clips.csv")
    assert len(clips_csv) == 1
    return clips_csv


def assert_no_identity_loss(row: pd.Series) -> None:
    assert row["face_rate"] == 1.0
    assert row["lost"] == 0 and pd.isna(row["time_to_loss_s"])
    assert row["min_bin_raw"] > row["threshold"]


def time_one_face(benchmark: Any, backend: Any) -> None:
    img = read_image(FACES / "photos" / "alex_1.jpg")

    def once() -> np.ndarray:
        face = backend.detect(img)[0]
        return backend.embed([backend.align(img, face)])

    out = benchmark(once)
    assert out.shape[0] == 1


@pytest.mark.benchmark
def test_sface_ms_per_face_baseline(benchmark):
    """The default backend timed the same way, so the optional backends' figures have a same-run baseline."""
    time_one_face(benchmark, create_backend("sface", device="cpu"))


# -- the registry ----------------------------------------------------------------------------------------
def test_registry_knows_every_backend_and_rejects_unknown_names():
    assert KNOWN_BACKENDS == ("sface", "dlib", "insightface", "deepface")
    assert preflight("sface", {}) == "sface"
    with pytest.raises(UsageError, match="unknown face backend 'arcface'"):
        preflight("arcface", {})
    with pytest.raises(UsageError, match="unknown face backend 'arcface'"):
        create_backend("arcface")


@pytest.mark.parametrize("backend,module,options", [
    ("dlib", "dlib", {}),
    ("insightface", "insightface", {"pack": "buffalo_l"}),
    ("deepface", "deepface", {}),
])
def test_missing_optional_package_is_a_usage_error_with_the_fix(monkeypatch, backend, module, options):
    monkeypatch.setitem(sys.modules, module, None)  # `import <module>` now fails as if not installed
    with pytest.raises(UsageError) as exc:
        create_backend(backend, device="cpu", **options)
    assert str(exc.value) == f"face={backend} needs {module} -- fix: {INSTALL[backend]}"
    with pytest.raises(UsageError):
        preflight(backend, options)


def test_run_without_the_package_exits_2_before_any_work(tmp_path):
    """A stub `dlib` that fails to import stands in for a machine without the extra."""
    stub = tmp_path / "stub" / "dlib"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError(\"No module named 'dlib'\", name='dlib')\n")
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / CLIP.name).symlink_to(CLIP)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path / "stub")])}
    proc = subprocess.run([sys.executable, "-m", "driftbench", "run", "model=folder", f"model.path={clips}",
                           "face=dlib", "fetch=false", f"output.dir={tmp_path / 'run'}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "face=dlib needs dlib -- fix: pip install 'driftbench[dlib]'" in proc.stdout + proc.stderr
    assert not (tmp_path / "run" / "clips.csv").exists()


def test_opencv_contrib_survives_the_optional_installs():
    """insightface/deepface declare opencv-python / -headless; the recipe installs them without it, so
    cv2 is still opencv-contrib-python 5.1+ with FaceDetectorYN (and no second cv2 distribution)."""
    from importlib import metadata

    import cv2

    assert tuple(int(v) for v in cv2.__version__.split(".")[:2]) >= (5, 1)
    assert hasattr(cv2, "FaceDetectorYN") and hasattr(cv2, "ximgproc")  # ximgproc: a contrib module
    assert metadata.version("opencv-contrib-python").startswith(cv2.__version__[:3])
    for other in ("opencv-python", "opencv-python-headless", "opencv-contrib-python-headless"):
        with pytest.raises(metadata.PackageNotFoundError):
            metadata.version(other)


# -- dlib ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dlib_backend():
    need("dlib", "dlib")
    need("face_recognition_models", "dlib")
    return create_backend("dlib", device="cpu")


def test_dlib_landmarks_are_in_yunet_order(dlib_backend):
    img = read_image(FACES / "photos" / "alex_1.jpg")
    ours = dlib_backend.detect(img)
    yunet = create_backend("sface", device="cpu").detect(img)
    assert len(ours) == 1 and len(yunet) == 1
    lm, ref = ours[0].landmarks, yunet[0].landmarks
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # image-left eye / mouth corner first
    iod = np.linalg.norm(ref[1] - ref[0])
    # eyes agree with YuNet's within 15 % of the eye distance; the template mouth within 35 %
    assert (np.linalg.norm(lm[:2] - ref[:2], axis=1) < 0.15 * iod).all()
    assert (np.linalg.norm(lm[3:] - ref[3:], axis=1) < 0.35 * iod).all()
    chip = dlib_backend.align(img, ours[0])
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    # embed() is the L2-normalised descriptor (the verification below relies on it)
    raw = dlib_backend.descriptors([chip])
    assert np.allclose(dlib_backend.embed([chip]), raw / np.linalg.norm(raw), atol=1e-6)


@pytest.fixture(scope="module")
def dlib_deepface(dlib_backend):
    """dlib's raw descriptors of the deepface photos (one pass, shared by the tests below)."""
    photos = deepface_set()
    raw, t0 = [], time.perf_counter()
    for path in photos.paths:
        img = read_image(path)
        faces = dlib_backend.detect(img)
        assert faces, f"dlib found no face in {path.name}"
        face = max(faces, key=lambda f: f.size)
        raw.append(dlib_backend.descriptors([dlib_backend.align(img, face)])[0])
    ms = 1000.0 * (time.perf_counter() - t0) / len(raw)
    return np.stack(raw).astype(np.float64), photos.labels, ms


def test_dlib_verification_on_deepface_photos(dlib_backend, dlib_deepface):
    raw, labels, ms = dlib_deepface
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    i, j, same = V.all_pairs(labels)
    m = V.verification_metrics(np.einsum("nd,nd->n", unit[i], unit[j]), same)
    print(
        f"\ndlib on deepface photos: AUC {m['auc']:.4f} EER {m['eer']:.4f} d' {m['d_prime']:.2f} "
        f"margin {m['margin']:+.3f} thr@FAR0.1% {m['threshold_at_far_0.001']:.4f} TAR "
        f"{m['tar_at_far_0.001']:.3f} "
        f"{ms:.0f} ms/photo"
    )
    assert m["auc"] >= 0.999 and m["eer"] <= 0.01 and m["d_prime"] > 4.5
    assert m["tar_at_far_0.001"] >= 0.95
    # the compressed cosine range documented in ../shared/README.md: different people still score ~0.8
    assert m["diff_mean"] > 0.7
    # the committed calibration is this backend's own, from the same weights
    from driftbench.validity.calibration import threshold_for, thresholds

    entry = thresholds()["backends"]["dlib"]
    assert entry["weights"] == dlib_backend.info.weights
    thr, _ = threshold_for("dlib", score="raw")
    assert thr == pytest.approx(m["threshold_at_far_0.001"], abs=2e-3)


def test_dlib_euclidean_semantics_match_its_documented_threshold(dlib_deepface):
    """dlib's own rule (descriptor distance < 0.6 = same person) holds on the same photos, and the cosine
    we expose ranks pairs almost exactly as that distance does."""
    from scipy.stats import spearmanr

    from driftbench.faces.dlib import euclidean_distance

    d, labels, _ = dlib_deepface
    i, j, same = V.all_pairs(labels)
    dist = np.linalg.norm(d[i] - d[j], axis=1)
    assert (dist[same] < 0.6).mean() >= 0.99 and (dist[~same] < 0.6).mean() <= 0.01
    norms = np.linalg.norm(d, axis=1)
    unit = d / norms[:, None]
    cos = np.einsum("nd,nd->n", unit[i], unit[j])
    assert np.allclose(euclidean_distance(cos, norms[i], norms[j]), dist, atol=1e-5)
    assert spearmanr(cos, -dist).statistic > 0.9


def test_dlib_same_person_above_different_person_on_photos(dlib_backend):
    m = verify(dlib_backend, photo_set())
    assert m["missing"] == [] and m["auc"] == 1.0 and m["margin"] > 0


def test_dlib_end_to_end_run_on_a_real_clip(dlib_backend, tmp_path):
    row = run_clip(tmp_path, ["face=dlib"]).iloc[0]
    assert_no_identity_loss(row)
    from driftbench.validity.calibration import threshold_for

    assert row["threshold"] == pytest.approx(threshold_for("dlib")[0], abs=1e-6)


@pytest.mark.slow
def test_dlib_cnn_detector_finds_the_same_face(dlib_backend):
    """The MMOD CNN detector (seconds per frame on a CPU) gives a box whose chip embeds like HOG's."""
    cnn = create_backend("dlib", device="cpu", detector="cnn")
    assert "mmod_human_face_detector.dat" in cnn.info.weights
    img = read_image(FACES / "photos" / "alex_1.jpg")
    a, b = cnn.detect(img), dlib_backend.detect(img)
    assert len(a) == 1 and len(b) == 1
    ea, eb = cnn.embed([cnn.align(img, a[0])]), dlib_backend.embed([dlib_backend.align(img, b[0])])
    assert float(ea[0] @ eb[0]) > 0.99


@pytest.mark.benchmark
def test_dlib_ms_per_face(benchmark, dlib_backend):
    time_one_face(benchmark, dlib_backend)


# -- insightface -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def insight_pack(tmp_path_factory):
    """A local pack built from ../shared: SCRFD-500M (non-commercial research licence: test material only)
    + the SFace int8 file exported for InsightFace's ArcFace path."""
    need("insightface", "insightface")
    from driftbench.faces.insightface_backend import build_pack

    return build_pack(tmp_path_factory.mktemp("insightface") / "scrfd_sface", SCRFD, SFACE_INT8)


@pytest.fixture(scope="module")
def insight_backend(insight_pack):
    return create_backend("insightface", device="cpu", pack=str(insight_pack))


def test_insightface_reads_the_exported_sface_as_raw_pixels(insight_backend, insight_pack):
    assert insight_backend.input_norm == (0.0, 1.0)
    assert insight_backend.info.threshold_key == "insightface:scrfd_sface"
    assert set(insight_backend.info.weights) == {p.name for p in insight_pack.glob("*.onnx")}
    assert preflight("insightface", {"pack": str(insight_pack)}) == "insightface:scrfd_sface"


def test_half_folded_sface_reproduces_the_insightface_pitfall(monkeypatch, tmp_path, insight_backend):
    """The control for the test above: leave the int8 file's Reshape chains in place and InsightFace picks
    (x - 127.5) / 127.5, and different people score high. The export refuses such a graph."""
    import onnx
    import onnxruntime as ort
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    from driftbench.faces import onnx_fix
    from driftbench.faces.insightface_backend import reads_raw_pixels

    monkeypatch.setattr(onnx_fix, "_FOLDABLE", {"DequantizeLinear", "Constant"})
    half = onnx_fix.fold_constants(onnx_fix.drop_dangling_inputs(onnx.load(str(SFACE_INT8))))
    assert not reads_raw_pixels(half)
    path = tmp_path / "half.onnx"
    onnx.save(half, str(path))
    rec = ArcFaceONNX(str(path), ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]))
    assert (rec.input_mean, rec.input_std) == (127.5, 127.5)

    def chip(name: str) -> np.ndarray:
        img = read_image(FACES / "photos" / name)
        return insight_backend.align(img, insight_backend.detect(img)[0])

    chips = [chip("alex_1.jpg"), chip("biden_1.jpg")]
    bad = rec.get_feat(chips)
    bad /= np.linalg.norm(bad, axis=1, keepdims=True)
    good = insight_backend.embed(chips)
    assert float(bad[0] @ bad[1]) > 0.6 > 0.3 > float(good[0] @ good[1])
    from driftbench.faces.insightface_backend import export_recognizer

    monkeypatch.setattr(onnx_fix, "load_fixed", lambda *a, **k: half.SerializeToString())
    with pytest.raises(ValueError, match="hide the input normalisation"):
        export_recognizer(SFACE_INT8, tmp_path / "refused.onnx")


def test_insightface_missing_pack_is_one_line_with_the_fix(tmp_path):
    need("insightface", "insightface")
    with pytest.raises(ModelNotFoundError) as exc:
        create_backend("insightface", device="cpu", pack="buffalo_l", root=str(tmp_path), download=False)
    msg = str(exc.value)
    assert "\n" not in msg and "buffalo_l" in msg and str(tmp_path) in msg and "-- fix:" in msg


@pytest.fixture(scope="module")
def insight_calibration(insight_pack, tmp_path_factory):
    return calibrate_into(tmp_path_factory.mktemp("insight-thr"), "insightface", {"pack": str(insight_pack)})


def test_insightface_verification_on_deepface_photos(insight_calibration):
    """The calibration pass is the verification: every photo's largest face, all 1830 pairs."""
    _, key, entry = insight_calibration
    m = entry["raw"]
    assert key == "insightface:scrfd_sface" and entry["data"]["no_face"] == []
    assert m["auc"] >= 0.999 and m["eer"] <= 0.01 and m["d_prime"] > 6.0 and m["margin"] > 0
    assert m["diff_mean"] < 0.3  # the pitfall would put every pair near 0.99


def test_insightface_same_person_above_different_person_on_photos(insight_backend):
    m = verify(insight_backend, photo_set())
    # SCRFD misses hanks_1.png, a 112 px pre-aligned chip whose face fills the frame (YuNet finds it)
    assert len(m["missing"]) <= 1
    assert m["auc"] == 1.0 and m["margin"] > 0


def test_insightface_end_to_end_run_on_a_real_clip(insight_pack, insight_calibration, tmp_path):
    thr_file, _, entry = insight_calibration
    row = run_clip(tmp_path, ["face=insightface", f"face.options.pack={insight_pack}"],
                   env={"DRIFTBENCH_THRESHOLDS": str(thr_file)}).iloc[0]
    assert_no_identity_loss(row)
    assert row["threshold"] == pytest.approx(entry["dec"]["threshold_at_far_0.001"], abs=1e-6)


@pytest.mark.benchmark
def test_insightface_ms_per_face(benchmark, insight_backend):
    time_one_face(benchmark, insight_backend)


# -- deepface --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def deepface_home(tmp_path_factory):
    """A $DEEPFACE_HOME holding the only deepface weights obtainable offline: SFace (the ../shared int8 file,
    repaired and folded to fp32, under the name deepface reads) and, with the dlib extra, dlib's CC0
    ResNet."""
    need("deepface", "deepface")
    from driftbench.faces.onnx_fix import load_fixed

    home = tmp_path_factory.mktemp("deepface-home")
    weights = home / ".deepface" / "weights"
    weights.mkdir(parents=True)
    (weights / "face_recognition_sface_2021dec.onnx").write_bytes(load_fixed(SFACE_INT8, fold=True))
    if importlib.util.find_spec("face_recognition_models") is not None:
        from driftbench.faces.dlib import weight_path

        (weights / "dlib_face_recognition_resnet_model_v1.dat").symlink_to(weight_path("recognizer"))
    return home


@pytest.fixture(scope="module")
def deepface_sface(deepface_home):
    mp = pytest.MonkeyPatch()
    mp.setenv("DEEPFACE_HOME", str(deepface_home))
    yield create_backend("deepface", device="cpu", model_name="SFace")
    mp.undo()


def test_deepface_missing_weights_is_one_line_naming_file_place_and_fix(monkeypatch, tmp_path):
    need("deepface", "deepface")
    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path))
    target = tmp_path / ".deepface" / "weights" / "facenet512_weights.onnx"
    for call in (lambda: create_backend("deepface", device="cpu", model_name="Facenet512", download=False),
                 lambda: preflight("deepface", {"model_name": "Facenet512"}, download=False)):
        with pytest.raises(ModelNotFoundError) as exc:
            call()
        msg = str(exc.value)
        assert "\n" not in msg and msg.startswith(str(target)) and "facenet512_weights.onnx" in msg
        assert "-- fix:" in msg and "fetch=true" in msg
    assert not target.exists()  # nothing was downloaded or created


def test_deepface_missing_weights_fails_the_run_with_that_line(tmp_path):
    need("deepface", "deepface")
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / CLIP.name).symlink_to(CLIP)
    proc = subprocess.run([sys.executable, "-m", "driftbench", "run", "model=folder", f"model.path={clips}",
                           "face=deepface", "fetch=false", f"output.dir={tmp_path / 'run'}"], cwd=ROOT,
                          env={**os.environ, "DEEPFACE_HOME": str(tmp_path / "home")}, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 1
    assert "facenet512_weights.onnx, which is missing -- fix:" in proc.stdout + proc.stderr
    assert not (tmp_path / "run" / "clips.csv").exists()


def test_deepface_unknown_model_is_a_usage_error():
    need("deepface", "deepface")
    with pytest.raises(UsageError, match="not a deepface model"):
        preflight("deepface", {"model_name": "FaceNet9000"})


def test_deepface_weight_table_matches_deepface(monkeypatch, tmp_path):
    """ONNX_WEIGHTS (used to fail before any work) names the files deepface itself asks for."""
    need("deepface", "deepface")
    from deepface.commons import weight_utils
    from deepface.modules import modeling

    from driftbench.faces.deepface_backend import ONNX_WEIGHTS, _import_deepface

    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path))
    _import_deepface("onnx")
    from deepface.commons import backend_utils

    assert backend_utils.get_backend_engine() == "onnx"  # not torch, although torch is installed
    asked: list[str] = []

    class Asked(Exception):
        pass

    def record(file_name: str, source_url: Any, compress_type: str | None = None) -> str:
        asked.append(file_name)
        raise Asked

    monkeypatch.setattr(weight_utils, "download_weights_if_necessary", record)
    checked = []
    for model_name, file_name in ONNX_WEIGHTS.items():
        asked.clear()
        try:
            modeling.get_model_class("facial_recognition", model_name)()
        except Asked:
            pass
        except ImportError:  # Dlib / Buffalo_L need their own optional packages before any weight lookup
            continue
        assert asked[:1] == [file_name], model_name
        checked.append(model_name)
    assert {"Facenet512", "SFace", "ArcFace", "VGG-Face"} <= set(checked)


def test_deepface_sface_reproduces_our_sface_embeddings(deepface_sface):
    """deepface's real SFace path (its onnxruntime session and input handling) on the same aligned chip
    gives the embedding of our default backend: the offline proof that the deepface path is wired right."""
    sface = create_backend("sface", device="cpu", engine="onnxruntime")
    img = read_image(FACES / "deepface" / "img1.jpg")
    face = sface.detect(img)[0]
    chip = sface.align(img, face)
    assert deepface_sface.info.threshold_key == "deepface:SFace"
    assert np.array_equal(deepface_sface.align(img, face), chip)
    a, b = deepface_sface.embed([chip, chip[:, ::-1].copy()]), sface.embed([chip, chip[:, ::-1].copy()])
    assert np.abs(a - b).max() < 1e-4


@pytest.fixture(scope="module")
def deepface_calibration(deepface_home, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("DEEPFACE_HOME", str(deepface_home))
    yield calibrate_into(tmp_path_factory.mktemp("deepface-thr"), "deepface", {"model_name": "SFace"})
    mp.undo()


def test_deepface_verification_on_deepface_photos(deepface_calibration):
    _, key, entry = deepface_calibration
    m = entry["raw"]
    assert key == "deepface:SFace" and entry["data"]["no_face"] == []
    assert m["auc"] >= 0.999 and m["d_prime"] > 6.5 and m["margin"] > 0


def test_deepface_own_alignment_is_worse_for_sface(deepface_home, deepface_calibration, monkeypatch):
    """deepface's eye-level box crop (its own pipeline) is not how SFace was trained: measured, not
    assumed."""
    monkeypatch.setenv("DEEPFACE_HOME", str(deepface_home))
    theirs = verify(
        create_backend("deepface", device="cpu", model_name="SFace", align="deepface"), deepface_set()
    )
    assert theirs["d_prime"] < deepface_calibration[2]["raw"]["d_prime"]


def test_deepface_dlib_model_offline(deepface_home, monkeypatch):
    """deepface's Dlib model reads dlib's CC0 ResNet file: a second deepface model that runs offline."""
    need("dlib", "dlib")
    need("face_recognition_models", "dlib")
    monkeypatch.setenv("DEEPFACE_HOME", str(deepface_home))
    backend = create_backend("deepface", device="cpu", model_name="Dlib")
    assert backend.info.weights["dlib_face_recognition_resnet_model_v1.dat"].startswith("55533b28")
    m = verify(backend, deepface_set())
    assert m["missing"] == [] and m["auc"] > 0.98


def test_deepface_same_person_above_different_person_on_photos(deepface_sface):
    m = verify(deepface_sface, photo_set())
    assert m["missing"] == [] and m["auc"] == 1.0 and m["margin"] > 0


def test_deepface_end_to_end_run_on_a_real_clip(deepface_home, deepface_calibration, tmp_path):
    thr_file, _, entry = deepface_calibration
    row = run_clip(tmp_path, ["face=deepface", "face.options.model_name=SFace"],
                   env={"DRIFTBENCH_THRESHOLDS": str(thr_file), "DEEPFACE_HOME": str(deepface_home)}).iloc[0]
    assert_no_identity_loss(row)
    assert row["threshold"] == pytest.approx(entry["dec"]["threshold_at_far_0.001"], abs=1e-6)


@pytest.mark.benchmark
def test_deepface_ms_per_face(benchmark, deepface_sface):
    time_one_face(benchmark, deepface_sface)
