"""Engine choice and YuNet's decoding: logic that needs no media or weights (the parity of the engines on
real faces is in tests/test_faces.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def test_yunet_decode_follows_opencv_layout_and_nms():
    """yunet_decode without media: a cell's box and landmarks from its offsets, exp-sizes and stride; the
    score is sqrt(cls * obj) of the clamped heads; below-threshold cells are dropped and of two
    overlapping boxes NMS keeps the higher-scoring one."""
    from driftbench.faces.sface import YUNET_STRIDES, yunet_decode

    pad_w, pad_h = 64, 32
    out = {}
    for s in YUNET_STRIDES:
        n = (pad_w // s) * (pad_h // s)
        out[f"cls_{s}"] = np.zeros((1, n, 1), np.float32)
        out[f"obj_{s}"] = np.zeros((1, n, 1), np.float32)
        out[f"bbox_{s}"] = np.zeros((1, n, 4), np.float32)
        out[f"kps_{s}"] = np.zeros((1, n, 10), np.float32)
    # stride 8, row 1, column 2 (cols = 8): index 10; centre offsets (0.5, 0.25), size exp(1) * 8
    out["cls_8"][0, 10, 0], out["obj_8"][0, 10, 0] = 1.2, 0.81  # cls clamps to 1: score 0.9
    out["bbox_8"][0, 10] = [0.5, 0.25, 1.0, 0.0]
    out["kps_8"][0, 10] = np.arange(10) / 10.0
    # the same face found again at stride 16 (row 0, column 1), weaker: suppressed by NMS
    out["cls_16"][0, 1, 0], out["obj_16"][0, 1, 0] = 0.7, 0.7
    out["bbox_16"][0, 1] = [0.25, 0.6, np.log(22 / 16), np.log(8 / 16)]
    # a weak cell, under the threshold
    out["cls_32"][0, 0, 0], out["obj_32"][0, 0, 0] = 0.5, 0.5
    faces = yunet_decode(out, pad_w, pad_h, 0.6, 0.3, 50)
    assert faces.shape == (1, 15) and faces.dtype == np.float32
    w = np.exp(np.float32(1.0)) * 8
    assert np.allclose(faces[0, :4], [(2 + 0.5) * 8 - w / 2, (1 + 0.25) * 8 - 4, w, 8], atol=1e-5)
    assert np.allclose(faces[0, 4:14:2], (np.arange(0, 10, 2) / 10 + 2) * 8, atol=1e-5)
    assert np.allclose(faces[0, 5:14:2], (np.arange(1, 10, 2) / 10 + 1) * 8, atol=1e-5)
    assert np.isclose(faces[0, 14], 0.9)
    both = yunet_decode(out, pad_w, pad_h, 0.6, 0.99, 50)  # NMS that suppresses nothing: both, best first
    assert len(both) == 2 and both[0, 14] > both[1, 14] and np.isclose(both[1, 14], 0.7)
    assert yunet_decode(out, pad_w, pad_h, 0.95, 0.3, 50).shape == (0, 15)


def test_auto_engine_picks_torch_only_where_torch_alone_has_cuda(monkeypatch):
    """engine: auto -- OpenCV on CPU; on CUDA OpenCV's CUDA backend, else onnxruntime's CUDA provider, else
    torch when only torch has CUDA (the lent machine) and onnx2fx is installed, else onnxruntime (its CPU
    provider)."""
    from driftbench.faces import engines

    def machine(cv_cuda, ort_cuda, torch_cuda):
        monkeypatch.setattr(engines, "opencv_cuda_available", lambda: cv_cuda)
        monkeypatch.setattr(engines, "ort_providers_available",
                            lambda: ("CUDAExecutionProvider",) * ort_cuda + ("CPUExecutionProvider",))
        monkeypatch.setattr(engines, "torch_cuda_available", lambda: torch_cuda)

    machine(True, True, True)
    assert engines.auto_engine("cpu") == "opencv"
    assert engines.auto_engine("cuda") == "opencv"
    assert engines.auto_engine("cuda", opencv_cuda=False) == "onnxruntime"
    machine(False, True, True)
    assert engines.auto_engine("cuda") == "onnxruntime"
    machine(False, False, True)
    assert engines.auto_engine("cuda") == "torch"
    assert engines.auto_engine("cpu") == "opencv"
    machine(False, False, False)
    assert engines.auto_engine("cuda") == "onnxruntime"
    # torch has CUDA but its converter is not installed: onnxruntime measures (on its CPU provider) instead
    # of every clip failing at its first frame
    machine(False, False, True)
    monkeypatch.setattr(engines, "torch_engine_missing", lambda: "onnx2fx")
    assert engines.auto_engine("cuda") == "onnxruntime"


def test_signal_engines_are_known_before_the_age_network_loads():
    """run.json's signal_engines comes from the device, not from a loaded network: a run whose first clip
    was a signal-cache hit (nothing loaded) still records where age runs; none without an age network."""
    from driftbench.measure.signals import FaceAnalyzer

    with_age = FaceAnalyzer(backend=None, age_path=Path("age-v1.onnx"), device="cpu")  # type: ignore[arg-type]
    assert with_age._age is None and with_age.signal_engines == {"age": "opencv"}
    assert FaceAnalyzer(backend=None, device="cpu").signal_engines == {}  # type: ignore[arg-type]
