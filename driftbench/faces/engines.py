"""Inference engines: pick the fastest one that gives the same outputs, GPU when present.

CPU is the default and the test path. ``device="auto"`` uses CUDA when an NVIDIA driver is present and
onnxruntime's CUDA provider or OpenCV's CUDA DNN backend is available; ``device="cpu"`` forces the CPU.
With ``device="cuda"`` where only torch has CUDA (the GPU machine lent to this project), the graphs run
through torch (:class:`TorchGraph`, engine ``torch``).
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


#: what an NVIDIA driver leaves on Linux (its procfs entry, its device nodes) and on WSL (the GPU's
#: paravirtual device)
NVIDIA_DRIVER_PATHS = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")


@functools.lru_cache(maxsize=1)
def nvidia_driver_present() -> bool:
    """Whether a CUDA device can exist here at all. On Linux an NVIDIA driver leaves its files (checked
    without importing any engine: onnxruntime's import alone costs ~25 ms of a run's start-up, and
    onnxruntime-gpu lists its CUDA provider even on a machine without a GPU); elsewhere nothing this
    cheap says so, and the engines' own checks decide."""
    import os
    import sys

    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(p) for p in NVIDIA_DRIVER_PATHS)


@functools.lru_cache(maxsize=1)
def ort_version() -> str | None:
    """The installed onnxruntime's version, read from its distribution's metadata (any of its CPU or GPU
    builds) without importing it: a run that never uses onnxruntime records it without the ~25-35 ms
    import. None when no onnxruntime distribution is installed."""
    import importlib.metadata as md

    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            continue
    return None


def cuda_available() -> bool:
    """What ``device=auto`` counts as a usable GPU: onnxruntime's CUDA provider or OpenCV's CUDA DNN. torch's
    CUDA alone does not (yet): the torch engine has CPU parity tests but has not run on a GPU here, so it
    is what ``device=cuda`` asks for, not what ``auto`` picks on every machine with a CUDA build of torch."""
    return nvidia_driver_present() and (
        "CUDAExecutionProvider" in ort_providers_available() or opencv_cuda_available())


def auto_engine(device: str, opencv_cuda: bool = True) -> str:
    """The engine ``engine: auto`` runs a graph with: OpenCV's DNN on CPU (about 2x onnxruntime there);
    on CUDA, OpenCV's CUDA backend when it has one (and ``opencv_cuda``), else onnxruntime's CUDA
    provider, else torch where only torch has CUDA and its converter (onnx2fx) is installed, else
    onnxruntime (its CPU provider: the run measures, slower, instead of failing every clip)."""
    if device != "cuda":
        return "opencv"
    if opencv_cuda and opencv_cuda_available():
        return "opencv"
    if ("CUDAExecutionProvider" not in ort_providers_available() and torch_cuda_available()
            and torch_engine_missing() is None):
        return "torch"
    return "onnxruntime"


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


@functools.lru_cache(maxsize=1)
def torch_cuda_available() -> bool:
    """torch is installed with a usable CUDA device (checked without importing torch when it is absent);
    asked once per process, like the other engines' checks (auto_engine runs for every measured clip)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


#: what engine ``torch`` converts ONNX graphs with (the ``torch-gpu`` extra): onnx2fx, which needs only
#: torch and onnx. onnx2torch needs torchvision, and PyPI's torchvision pins a CUDA build of torch.
TORCH_CONVERTER = "onnx2fx"


def torch_engine_missing() -> str | None:
    """What engine ``torch`` lacks here (``"torch"``, ``"onnx2fx"``), checked without importing them;
    None when both are installed."""
    import importlib.util

    for name in ("torch", TORCH_CONVERTER):
        if importlib.util.find_spec(name) is None:
            return name
    return None


class TorchGraph:
    """An ONNX graph run by PyTorch: converted by onnx2fx into a torch.fx GraphModule, so a machine with
    torch + CUDA but no onnxruntime-gpu and no CUDA build of OpenCV still runs it on the GPU. Call with one
    float32 NCHW array; returns a list of float32 arrays (the graph's outputs, in order)."""

    def __init__(self, model: bytes | str, device: str = "cpu") -> None:
        import io

        try:
            import onnx
            import torch
            from onnx2fx import Onnx2FxError, convert
        except ImportError as exc:
            raise RuntimeError(
                f"engine 'torch' needs torch and onnx2fx ({exc}); install them (pip install "
                "'driftbench[torch-gpu]') or use engine: opencv / onnxruntime"
            ) from exc
        proto = (
            onnx.load_model(io.BytesIO(model)) if isinstance(model, bytes | bytearray) else onnx.load(model)
        )
        self._torch = torch
        self.device = torch.device("cuda" if device == "cuda" and torch.cuda.is_available() else "cpu")
        try:
            module = convert(proto)
        except Onnx2FxError as exc:  # an operator onnx2fx has no handler for
            raise RuntimeError(f"engine 'torch': onnx2fx cannot convert this graph: {exc}") from exc
        self.module = module.eval().to(self.device)
        if self.device.type == "cuda":
            # full fp32 convolutions (cuDNN's default TF32 keeps a 10-bit mantissa): the fp32 graph whose
            # CPU parity the tests check. Process-wide, set once: a context manager around each call would
            # race between the threads that embed and estimate age
            torch.backends.cudnn.allow_tf32 = False
        #: the graph's output names, in the order :meth:`__call__` returns them
        self.output_names = [o.name for o in proto.graph.output]

    def __call__(self, x):
        import numpy as np

        torch = self._torch
        with torch.inference_mode():
            out = self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device))
        outs = out if isinstance(out, list | tuple) else [out]
        return [o.float().cpu().numpy() for o in outs]
