"""singleface_3 with a first-frame reference: driftbench's published columns with sface and with
face=insightface on a local pack (SCRFD-500M + exported SFace, det_size 320 as OpenS2V).

    python -c "from driftbench.faces.insightface_backend import build_pack as b; b('/tmp/pack/scrfd_sface',
        '../shared/models/scrfd/scrfd_500m_bnkps.onnx',
        '../shared/models/sface/face_recognition_sface_2021dec_int8bq.onnx')"
    python docs/published/singleface_3.py ../shared/data/video/opens2v/singleface_3.mp4 /tmp/pack/scrfd_sface
"""
import sys
from driftbench.measure.clip import MeasureSettings, measure_clip, close_analyzer
from driftbench.measure.published import PublishedSettings
from driftbench.sources.base import Clip
clip = Clip("singleface_3", sys.argv[1], "s3")
for backend, opts in (("sface", {}), ("insightface", {"pack": sys.argv[2], "det_size": 320})):
    s = MeasureSettings(backend=backend, backend_options=opts, device="cpu", reference="first_frame",
                        threshold=0.4, cache_enabled=False, published=PublishedSettings(all_frames=True))
    r = measure_clip(clip, s); close_analyzer()
    print(backend, {k: r.summary.get(k) for k in ("published_recognizer", "facesim", "facesim_faces", "csim",
                    "human_identity", "human_identity_frames", "max_faces_seen")}, r.message)
