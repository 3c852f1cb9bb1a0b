"""The floor: a minimal reference pipeline, as lean as the task allows, measured beside the product.

Sequential PyAV decode in a thread (only sampled frames converted), YuNet on a copy capped at 640 px,
5-point alignment, SFace (fp32-folded) batched 16 in OpenCV DNN, MediaPipe FaceLandmarker on a
detector crop in its own thread. No tables, no tracking, no caching, no report: what any
measurement of identity + expression + pose at 2 frames/s must at least cost. Run as a script it
does the whole job for one clip, imports and model loading included:

    python -m tests.benchmarks.floor CLIP [--no-mediapipe]
"""

from __future__ import annotations

import queue
import sys
import threading


def floor_pipeline(path: str, fps: float = 2.0, mediapipe: bool = True) -> dict[str, float]:
    import os

    os.environ.setdefault("GLOG_minloglevel", "2")
    import av
    import cv2
    import numpy as np

    from driftbench.faces.base import align_chip
    from driftbench.faces.onnx_fix import load_fixed
    from driftbench.weights import store

    det = cv2.FaceDetectorYN.create(str(store.resolve("yunet").path), "", (320, 320), 0.6, 0.3, 50)
    net = cv2.dnn.readNetFromONNX(np.frombuffer(load_fixed(store.resolve("sface").path), np.uint8))
    q: queue.Queue = queue.Queue(maxsize=8)

    def decode() -> None:
        with av.open(path) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            nxt, t0 = 0.0, None
            for fr in c.decode(s):
                t0 = fr.time if t0 is None else t0
                t = fr.time - t0
                if t + 1e-6 >= nxt:
                    q.put(fr.to_ndarray(format="bgr24"))
                    nxt = (int(t * fps + 1e-6) + 1) / fps
        q.put(None)

    threading.Thread(target=decode, daemon=True).start()
    mp_q: queue.Queue = queue.Queue()
    mp_out: list = []

    def landmarks() -> None:
        import mediapipe as mp
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        lm = vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(store.resolve("face_landmarker").path)),
            output_face_blendshapes=True, output_facial_transformation_matrixes=True))
        while (crop := mp_q.get()) is not None:
            mp_out.append(lm.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=crop)))
        lm.close()

    mp_thread = threading.Thread(target=landmarks, daemon=True)
    if mediapipe:
        mp_thread.start()
    chips, embs, size = [], [], None
    n = 0
    while (img := q.get()) is not None:
        n += 1
        h, w = img.shape[:2]
        s = min(1.0, 640 / max(h, w))
        small = img if s == 1.0 else cv2.resize(img, (round(w * s), round(h * s)))
        if size != small.shape[:2]:
            det.setInputSize((small.shape[1], small.shape[0]))
            size = small.shape[:2]
        _, faces = det.detect(small)
        if faces is None:
            continue
        f = faces[0]
        chips.append(align_chip(img, f[4:14].reshape(5, 2) / s))
        if mediapipe:
            x, y, bw, bh = f[:4] / s
            side = max(bw, bh) * 1.8
            m = np.array([[256 / side, 0, -(x + bw / 2 - side / 2) * 256 / side],
                          [0, 256 / side, -(y + bh / 2 - side / 2) * 256 / side]])
            mp_q.put(cv2.cvtColor(cv2.warpAffine(img, m, (256, 256)), cv2.COLOR_BGR2RGB))
        if len(chips) == 16:
            net.setInput(cv2.dnn.blobFromImages(chips, 1.0, (112, 112), (0, 0, 0), swapRB=True))
            embs.append(net.forward())
            chips = []
    if chips:
        net.setInput(cv2.dnn.blobFromImages(chips, 1.0, (112, 112), (0, 0, 0), swapRB=True))
        embs.append(net.forward())
    if mediapipe:
        mp_q.put(None)
        mp_thread.join()
    return {"samples": n, "faces": int(sum(len(e) for e in embs)), "landmarks": len(mp_out)}


if __name__ == "__main__":
    out = floor_pipeline(sys.argv[1], mediapipe="--no-mediapipe" not in sys.argv)
    print(out)
