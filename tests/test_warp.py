"""Dense landmark-driven warps (driftbench.mitigations.warp): spline exactness on known transforms, the blend
helpers, MP4 output, and identity transfer between two real people's photos from ../shared."""

from __future__ import annotations

import numpy as np
import pytest

from driftbench.mitigations import warp
from tests.conftest import FACES, needs_shared


def _checker(h: int = 128, w: int = 128) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 255, (h // 8, w // 8, 3)).astype(np.float32)
    import cv2

    return cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR)


def test_contours_match_mediapipe_connection_sets():
    from mediapipe.tasks.python.vision import FaceLandmarksConnections as C

    def idx(conns):
        return {c.start for c in conns} | {c.end for c in conns}

    assert set(warp.FACE_OVAL) == idx(C.FACE_LANDMARKS_FACE_OVAL)
    assert set(warp.LIPS_OUTER) | set(warp.LIPS_INNER) == idx(C.FACE_LANDMARKS_LIPS)
    assert set(warp.RIGHT_EYE) == idx(C.FACE_LANDMARKS_RIGHT_EYE)
    assert set(warp.LEFT_EYE) == idx(C.FACE_LANDMARKS_LEFT_EYE)
    assert set(warp.RIGHT_BROW) == idx(C.FACE_LANDMARKS_RIGHT_EYEBROW)
    assert set(warp.LEFT_BROW) == idx(C.FACE_LANDMARKS_LEFT_EYEBROW)
    # the lid pairs are upper and lower points of the same eye
    for pairs, eye in ((warp.RIGHT_LID_PAIRS, warp.RIGHT_EYE), (warp.LEFT_LID_PAIRS, warp.LEFT_EYE)):
        assert all(a in eye and b in eye for a, b in pairs)


def test_identity_warp_returns_the_image():
    img = _checker()
    rng = np.random.default_rng(1)
    pts = rng.uniform(10, 118, (40, 2))
    out = warp.tps_warp(img, pts, pts[None], np.array([[0, 0, 128, 128]]), device="cpu")
    assert out.images.shape == (1, 128, 128, 3)
    inner = (slice(1, -1), slice(1, -1))
    assert np.abs(out.images[0][inner] - img[inner]).max() < 0.5
    assert out.valid[0][inner].all()
    # no foreshortening anywhere: one source pixel per output pixel
    assert np.allclose(out.area[0], 1.0, atol=1e-3)


def test_affine_point_sets_reproduce_the_affine_warp():
    """A thin-plate spline through points related by an affine is that affine: compare with OpenCV."""
    import cv2

    img = _checker(160, 160)
    a = np.array([[1.1, 0.15, -6.0], [-0.1, 0.95, 9.0]])  # source -> output
    rng = np.random.default_rng(2)
    src = rng.uniform(20, 140, (60, 2))
    dst = src @ a[:, :2].T + a[:, 2]
    out = warp.tps_warp(img, src, dst[None], np.array([[0, 0, 160, 160]]), device="cpu", regularization=0.0)
    ref = cv2.warpAffine(img, a, (160, 160), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    both = out.valid[0] & (cv2.warpAffine(np.ones((160, 160), np.float32), a, (160, 160)) > 0.999)
    assert both.mean() > 0.6
    assert np.abs(out.images[0][both] - ref[both]).mean() < 1.0
    # source area per output pixel is 1 / det(A)
    assert np.median(out.area[0]) == pytest.approx(1.0 / np.linalg.det(a[:, :2]), rel=0.01)


def test_layers_share_geometry_and_post_affine_moves_the_output():
    img = _checker()
    pts = np.random.default_rng(3).uniform(20, 108, (30, 2))
    shift = np.array([[[1.0, 0.0, 5.0], [0.0, 1.0, 0.0]]])
    a, b = warp.tps_warp_layers([warp.Layer(img, pts), warp.Layer(img[:, ::-1].copy(), pts)], pts[None],
                                np.array([[0, 0, 128, 128]]), device="cpu", post_affine=shift)
    # output column x comes from source column x - 5
    assert np.abs(a.images[0][5:-5, 10:-5] - img[5:-5, 5:-10]).max() < 0.5
    assert not np.allclose(a.images, b.images)


def test_color_match_transfers_lab_statistics():
    import cv2

    rng = np.random.default_rng(4)
    src = rng.uniform(40, 120, (64, 64, 3)).astype(np.float32)
    ref = rng.uniform(120, 220, (64, 64, 3)).astype(np.float32)
    mask = np.ones((64, 64), np.float32)
    out = warp.color_match(src, ref, mask)
    lab = [cv2.cvtColor(x.astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab).reshape(-1, 3) for x in (out, ref)]
    assert np.abs(lab[0].mean(0) - lab[1].mean(0)).max() < 1.5


def test_detail_weight_drops_where_the_source_was_foreshortened():
    area = np.ones((40, 40), np.float32)
    area[:, :10] = 0.1  # seen 10x smaller: no texture to spread there
    area[:, 10:15] = -0.5  # a fold
    w = warp.detail_weight(area, np.ones_like(area))
    assert w[:, :15].max() == 0.0 and w[:, 20:].min() == 1.0


def test_mp4_writer_roundtrip(tmp_path):
    from driftbench.measure import video

    out = tmp_path / "clip.mp4"
    with warp.Mp4Writer(out, 12.5, 97, 64) as w:  # odd width is cropped to even
        for i in range(25):
            w.write(np.full((64, 97, 3), i * 8, np.uint8))
    info = video.probe(out)
    assert (info.width, info.height, info.codec) == (96, 64, "h264")
    assert info.fps == pytest.approx(12.5) and info.n_frames == 25
    assert not list(tmp_path.glob(".*.part"))


def test_mp4_writer_leaves_nothing_on_error(tmp_path):
    out = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError), warp.Mp4Writer(out, 25, 64, 64) as w:
        w.write(np.zeros((64, 64, 3), np.uint8))
        raise RuntimeError("boom")
    assert not out.exists() and not list(tmp_path.iterdir())


@needs_shared
def test_dense_warp_transfers_identity_between_real_people():
    """Alex's face warped onto Biden's landmarks and blended into Biden's photo: identity moves with
    the texture (SFace: no longer Biden, much nearer Alex; the face shape stays Biden's, so not all
    the way), while Biden's geometry (landmarks) is kept."""
    from driftbench.faces.base import create_backend
    from driftbench.measure.video import read_image
    from driftbench.mitigations.realign import REALIGN_DEFAULTS, transfer_faces

    sface = create_backend("sface", device="cpu", engine="opencv")

    def emb(img):
        return sface.embed([sface.align(img, sface.detect(img)[0])])[0]

    alex, biden = read_image(FACES / "photos/alex_1.jpg"), read_image(FACES / "photos/biden_1.jpg")
    with warp.FaceMesh() as mesh:
        fa, fb = mesh.detect(alex), mesh.detect(biden)
        assert fa is not None and fb is not None and fa.landmarks.shape == (478, 2)
        params = {**REALIGN_DEFAULTS, "keep": []}
        (out,) = transfer_faces(alex, fa.landmarks, [biden], [fb.landmarks], params, "cpu")
        (seamless,) = transfer_faces(
            alex, fa.landmarks, [biden], [fb.landmarks], {**params, "blend": "seamless"}, "cpu"
        )
        fo = mesh.detect(out)
    e_alex, e_biden, e_out = emb(alex), emb(biden), emb(out)
    print(f"\nwarp transfer: sim(out, alex) {e_out @ e_alex:.3f}  sim(out, biden) {e_out @ e_biden:.3f}  "
          f"sim(alex, biden) {e_alex @ e_biden:.3f}")
    # 0.51 is the worst same-person pair of the calibration photos (VALIDITY.md)
    assert e_out @ e_biden < 0.5
    assert e_out @ e_alex > e_alex @ e_biden + 0.2
    # OpenCV's Poisson blend moves the identity the same way
    e_seam = emb(seamless)
    print(f"seamless blend: sim(out, alex) {e_seam @ e_alex:.3f}  sim(out, biden) {e_seam @ e_biden:.3f}")
    assert not np.array_equal(seamless, out)
    assert e_seam @ e_biden < 0.5 and e_seam @ e_alex > e_alex @ e_biden + 0.2
    # the geometry is Biden's: landmarks move by a small share of the face size
    assert fo is not None
    err = np.linalg.norm(fo.landmarks - fb.landmarks, axis=1).mean() / warp.face_size(fb.landmarks)
    assert err < 0.05


def _batch(b: int = 16, size: int = 256):
    rng = np.random.default_rng(5)
    idx = warp.control_indices()
    src = rng.uniform(40, size - 40, (len(idx), 2))
    dst = src[None] + rng.normal(0, 3, (b, len(idx), 2))
    return _checker(size, size), src, dst, np.tile([0, 0, size, size], (b, 1))


@pytest.mark.gpu
def test_cuda_and_cpu_warps_agree():
    """The same warps on the GPU and the CPU agree to float32 precision. The spline is evaluated in
    float32 (its (B, M, N) kernel is the bulk of the work); on a high-contrast test pattern that
    moves edges by ~0.01 px: an H200 gave max 0.87 / mean 0.0095 grey levels (of 255) against the CPU,
    while a float64 evaluation on the CPU differs from the float32 one by up to 2.2 / mean 0.05."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    img, src, dst, boxes = _batch(4)
    cpu = warp.tps_warp(img, src, dst, boxes, device="cpu")
    gpu = warp.tps_warp(img, src, dst, boxes, device="cuda")
    both = cpu.valid & gpu.valid
    diff = np.abs(cpu.images - gpu.images)[both]
    assert diff.max() < 2.5 and diff.mean() < 0.05
    assert (cpu.valid != gpu.valid).mean() < 1e-3  # only pixels exactly on the source's border differ
    affine = np.array([[1.05, 0.08, -6.0], [-0.06, 0.97, 4.0]])
    a_cpu, v_cpu = warp.affine_warp(img, affine, (img.shape[1], img.shape[0]), device="cpu")
    a_gpu, v_gpu = warp.affine_warp(img, affine, (img.shape[1], img.shape[0]), device="cuda")
    assert np.abs(a_cpu - a_gpu)[v_cpu & v_gpu].max() < 0.05
    assert (v_cpu != v_gpu).mean() < 1e-3


@pytest.mark.benchmark
def test_benchmark_tps_warp_batch_of_16(benchmark):
    """Dense warp of 16 frames of 256 px through the 158 control points (CPU, one torch thread)."""
    img, src, dst, boxes = _batch(16)
    out = benchmark(lambda: warp.tps_warp(img, src, dst, boxes, device="cpu"))
    assert out.images.shape == (16, 256, 256, 3)
