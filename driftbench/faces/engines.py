"""Inference engines: pick the fastest one that gives the same outputs, GPU when present.

CPU is the default and the test path. ``device="auto"`` uses CUDA when onnxruntime's CUDA provider
(or OpenCV's CUDA DNN backend) is available; ``device="cpu"`` forces the CPU.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def ort_providers_available() -> tuple[str, ...]:
    import onnxruntime as ort

    return tuple(ort.get_available_providers())


@functools.lru_cache(maxsize=1)
def opencv_cuda_available() -> bool:
    try:
        import cv2

        return cv2.cuda.getCudaEnabledDeviceCount() > 0
    except Exception:
        return False


def cuda_available() -> bool:
    return "CUDAExecutionProvider" in ort_providers_available() or opencv_cuda_available()


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA engine is usable, else ``cpu``."""
    device = (device or "auto").lower()
    if device not in {"auto", "cpu", "cuda"}:
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    return device


def ort_session(model: bytes | str, device: str = "cpu", threads: int | None = None):
    """An onnxruntime session on the requested device (CUDA provider first when device == cuda)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    providers = ["CPUExecutionProvider"]
    if device == "cuda" and "CUDAExecutionProvider" in ort_providers_available():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(model, sess_options=opts, providers=providers)

