"""Local stand-ins for hosted video generators, serving the documented request/response contracts on
127.0.0.1 with real video: each "generated" segment is cut (PyAV) from a real clip in
../shared/data/video/real. Tests in test_kling*.py / test_generators*.py drive driftbench's adapters
against them, failures included (429, 5xx, failed tasks, stalled tasks, truncated downloads).

Fake Kling follows Kling's API documentation (driftbench/generators/kling.py cites it): JWT HS256 auth
(iss = access key, exp, nbf), ``POST /v1/videos/image2video`` (raw base64 image, >= 300 px, no
``data:`` prefix), ``POST /v1/videos/video-extend`` (video_id; the result is the whole video so far),
``GET .../{task_id}`` with task_status submitted -> processing -> succeed | failed, the ``code``
envelope. Fake Runway follows Runway's (conf/model/runway.yaml cites it). Time is scaled down: a "5 s"
request yields ``seg_s`` seconds, an extension adds ``ext_s``.

A generated segment continues the footage where its start image came from: an image that matches the
last frame of a video already served continues after that video's end, any other image starts at 0.
Request loops are bounded by the clients (retries, timeouts); every server stops with its test.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import VIDEO

FOOTAGE = VIDEO / "real" / "edtalk_pose_source2.mp4"
ACCESS_KEY = "AKdbTestAccess7Q2fT9m4LxP0vB3nC8kR"
SECRET_KEY = "SKdbTestSecret9Xw4hJ2qZ6yN1uE5tG7aD"
RUNWAY_KEY = "key_dbTestRunway55"


def _thumb(img_bgr: np.ndarray) -> np.ndarray:
    import cv2

    gray = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2GRAY)
    return cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)


class Footage:
    """Cuts [a, b) seconds of a real clip into an H.264 MP4 (bytes) and remembers its last frame. Without
    ../shared the footage is an embedded synthetic clip (12 s at 25 fps: tests/realruns.synthetic_footage)."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            from tests.realruns import synthetic_footage

            path = FOOTAGE if FOOTAGE.is_file() else synthetic_footage()
        self.path = path
        self._lock = threading.Lock()

    def cut(self, a: float, b: float) -> tuple[bytes, np.ndarray]:
        import av

        with self._lock, av.open(str(self.path)) as src:
            stream = src.streams.video[0]
            rate = stream.average_rate
            src.seek(int(a / stream.time_base), stream=stream, backward=True, any_frame=False)
            buf = io.BytesIO()
            last = None
            with av.open(buf, "w", format="mp4") as dst:
                out = dst.add_stream("libx264", rate=rate)
                out.width, out.height, out.pix_fmt = stream.width, stream.height, "yuv420p"
                out.options = {"preset": "ultrafast", "crf": "18"}
                n = 0
                for frame in src.decode(stream):
                    t = float(frame.time or 0.0)
                    if t < a - 1e-3:
                        continue
                    if t >= b - 1e-3:
                        break
                    img = frame.to_ndarray(format="bgr24")
                    vf = av.VideoFrame.from_ndarray(img, format="bgr24")
                    vf.pts, vf.time_base = n, 1 / rate
                    n += 1
                    last = img
                    for pkt in out.encode(vf):
                        dst.mux(pkt)
                for pkt in out.encode():
                    dst.mux(pkt)
            assert last is not None, f"no frames in [{a}, {b})"
            return buf.getvalue(), last


@dataclass
class Video:
    id: str
    start: float
    end: float
    data: bytes
    last: np.ndarray  # thumbnail of the last frame


@dataclass
class Task:
    id: str
    kind: str  # image2video | video-extend | runway
    body: dict[str, Any]
    start: float
    end: float
    polls: int = 0
    fail: str = ""
    video: Video | None = None


@dataclass
class Faults:
    rate_limit_submits: int = 0  # answer the next N submissions with 429
    server_error_polls: int = 0  # answer the next N polls with 503
    fail_prompt: str = ""  # tasks whose prompt contains this fail
    stall: bool = False  # tasks never finish
    truncate_downloads: int = 0  # the next N downloads stop half way (full Content-Length announced)
    policy_prompt: str = ""  # submissions whose prompt contains this are refused (content policy)


@dataclass
class Log:
    submits: list[dict[str, Any]] = field(default_factory=list)  # accepted submissions (images hashed)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (HTTP status, path)
    polls: int = 0
    downloads: dict[str, int] = field(default_factory=dict)  # video id -> completed downloads
    tokens: set[str] = field(default_factory=set)  # credentials seen in Authorization headers
    media_auth_headers: int = 0  # downloads that carried an Authorization header (must stay 0)
    continuations: int = 0  # image2video requests whose image continued a served video


class FakeGenerator:
    """Shared machinery: HTTP server, tasks, videos, faults, request log."""

    polls_to_finish = 2

    def __init__(self, footage: Footage, *, seg_s: float = 2.0, ext_s: float = 2.0) -> None:
        self.footage = footage
        self.seg_s, self.ext_s = seg_s, ext_s
        self.faults = Faults()
        self.log = Log()
        self.tasks: dict[str, Task] = {}
        self.videos: dict[str, Video] = {}
        self._ids = itertools.count(1000)
        self._lock = threading.RLock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                fake.handle(self, "GET", None)

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    self._send(400, {"code": 1200, "message": "invalid JSON"})
                    return
                fake.handle(self, "POST", body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeGenerator:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    # -- helpers ---------------------------------------------------------------------------------------
    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    def decode_image(self, value: str, *, data_uri: bool) -> np.ndarray | None:
        import cv2

        if data_uri:
            m = re.fullmatch(r"data:image/(png|jpeg|jpg);base64,(.+)", value or "", flags=re.S)
            if not m:
                return None
            value = m.group(2)
        elif (value or "").startswith("data:"):
            return None  # Kling: raw base64 only
        try:
            raw = base64.b64decode(value, validate=True)
        except (ValueError, TypeError):
            return None
        return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)

    def continued_from(self, img: np.ndarray) -> Video | None:
        """The served video whose last frame this image is (a last-frame continuation), if any."""
        th = _thumb(img)
        best, err = None, 1e9
        for v in self.videos.values():
            e = float(np.abs(v.last - th).mean())
            if e < err:
                best, err = v, e
        return best if err < 6.0 else None

    def make_task(self, kind: str, body: dict[str, Any], start: float, end: float, prompt: str) -> Task:
        task = Task(self.new_id("task-"), kind, body, start, end)
        if self.faults.fail_prompt and self.faults.fail_prompt in prompt:
            task.fail = "Failure to pass the risk control system"
        self.tasks[task.id] = task
        self.log.submits.append(
            {
                "kind": kind,
                "prompt": prompt,
                "task_id": task.id,
                "start": start,
                "end": end,
                **{k: v for k, v in body.items() if k not in ("image", "image_tail", "promptImage")},
            }
        )
        return task

    def advance(self, task: Task) -> str:
        """submitted -> processing -> succeed | failed (after ``polls_to_finish`` polls)."""
        task.polls += 1
        if self.faults.stall or task.polls < self.polls_to_finish:
            return "processing" if task.polls > 1 else "submitted"
        if task.fail:
            return "failed"
        if task.video is None:
            data, last = self.footage.cut(task.start, task.end)
            vid = self.new_id("vid-")
            task.video = Video(vid, task.start, task.end, data, _thumb(last))
            self.videos[vid] = task.video
        return "succeed"

    def serve_media(self, h: Any, vid: str) -> None:
        if h.headers.get("Authorization"):
            self.log.media_auth_headers += 1
        video = self.videos.get(vid)
        if video is None:
            h._send(404, {"message": "no such video"})
            return
        data = video.data
        truncate = False
        with self._lock:
            if self.faults.truncate_downloads > 0:
                self.faults.truncate_downloads -= 1
                truncate = True
        h.send_response(200)
        h.send_header("Content-Type", "video/mp4")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if truncate:
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(data)
        self.log.downloads[vid] = self.log.downloads.get(vid, 0) + 1

    def handle(self, h: Any, method: str, body: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class FakeKling(FakeGenerator):
    MODELS = frozenset({"kling-v1", "kling-v1-5", "kling-v1-6"})

    def __init__(self, footage: Footage, *, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY,
                 extend_full: bool = True, **kw: Any) -> None:
        super().__init__(footage, **kw)
        self.access_key, self.secret_key = access_key, secret_key
        #: video-extend answers with the whole video so far (Kling), or, to test the other case, only
        #: the new seconds
        self.extend_full = extend_full

    def envelope(self, data: Any) -> dict[str, Any]:
        return {"code": 0, "message": "SUCCEED", "request_id": self.new_id("req-"), "data": data}

    def error(
        self, h: Any, status: int, code: int, message: str, path: str, headers: dict[str, str] | None = None
    ) -> None:
        self.log.rejected.append((status, path))
        h._send(status, {"code": code, "message": message, "request_id": self.new_id("req-")}, headers)

    def authorized(self, h: Any, path: str) -> bool:
        import jwt

        auth = h.headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            self.error(h, 401, 1001, "Authorization is empty", path)
            return False
        token = auth[len("Bearer "):]
        self.log.tokens.add(token)
        try:
            claims = jwt.decode(
                token, self.secret_key, algorithms=["HS256"], options={"require": ["exp", "nbf", "iss"]}
            )
        except jwt.ExpiredSignatureError:
            self.error(h, 401, 1004, "Authorization is expired", path)
            return False
        except jwt.ImmatureSignatureError:
            self.error(h, 401, 1003, "Authorization is not yet valid", path)
            return False
        except jwt.PyJWTError:
            self.error(h, 401, 1002, "Authorization is invalid", path)
            return False
        if claims.get("iss") != self.access_key:
            self.error(h, 401, 1002, "Authorization is invalid", path)
            return False
        return True

    def task_json(self, task: Task, status: str) -> dict[str, Any]:
        data: dict[str, Any] = {"task_id": task.id, "task_status": status, "task_status_msg": "",
                                "task_info": {}, "created_at": 1722769557708, "updated_at": 1722769557708}
        if status == "failed":
            data["task_status_msg"] = task.fail
        if status == "succeed" and task.video is not None:
            v = task.video
            data["task_result"] = {"videos": [{"id": v.id, "url": f"{self.url}/media/{v.id}.mp4",
                                               "duration": f"{v.end - v.start:.1f}"}]}
        return data

    def handle(self, h: Any, method: str, body: Any) -> None:
        path = h.path.split("?")[0]
        if method == "GET" and path.startswith("/media/"):
            self.serve_media(h, path[len("/media/"):].removesuffix(".mp4"))
            return
        if not self.authorized(h, path):
            return
        with self._lock:
            if method == "POST" and path in ("/v1/videos/image2video", "/v1/videos/video-extend"):
                if self.faults.rate_limit_submits > 0:
                    self.faults.rate_limit_submits -= 1
                    self.error(h, 429, 1302, "API request is too fast", path, {"Retry-After": "0"})
                    return
                self.submit(h, path, body)
                return
            m = re.fullmatch(r"/v1/videos/(image2video|video-extend)/([\w-]+)", path)
            if method == "GET" and m:
                self.log.polls += 1
                if self.faults.server_error_polls > 0:
                    self.faults.server_error_polls -= 1
                    self.error(h, 503, 5001, "Server is temporarily unavailable", path)
                    return
                task = self.tasks.get(m.group(2))
                if task is None or task.kind != m.group(1):
                    self.error(h, 404, 1203, "task not found", path)
                    return
                h._send(200, self.envelope(self.task_json(task, self.advance(task))))
                return
        self.error(h, 404, 1202, "invalid method", path)

    def submit(self, h: Any, path: str, body: dict[str, Any]) -> None:
        prompt = str(body.get("prompt") or "")
        if len(prompt) > 2500:
            self.error(h, 400, 1201, "prompt too long", path)
            return
        if self.faults.policy_prompt and self.faults.policy_prompt in prompt:
            self.error(h, 400, 1301, "Trigger the content security policy", path)
            return
        if path.endswith("video-extend"):
            parent = self.videos.get(str(body.get("video_id")))
            if parent is None:
                self.error(h, 400, 1201, "video_id is invalid", path)
                return
            start = parent.start if self.extend_full else parent.end
            task = self.make_task("video-extend", body, start, parent.end + self.ext_s, prompt)
        else:
            if body.get("model_name") not in self.MODELS or body.get("mode") not in ("std", "pro") or \
                    body.get("duration") not in ("5", "10"):
                self.error(h, 400, 1201, "model_name / mode / duration invalid", path)
                return
            img = self.decode_image(str(body.get("image") or ""), data_uri=False)
            if img is None or min(img.shape[:2]) < 300:
                self.error(h, 400, 1201, "image invalid: raw base64 jpg/png of at least 300 px", path)
                return
            if "image_tail" in body:
                tail = self.decode_image(str(body["image_tail"]), data_uri=False)
                if tail is None or min(tail.shape[:2]) < 300:
                    self.error(h, 400, 1201, "image_tail invalid", path)
                    return
            seg = self.seg_s * (2 if body["duration"] == "10" else 1)
            parent = self.continued_from(img)
            start = parent.end if parent is not None else 0.0
            if parent is not None:
                self.log.continuations += 1
            task = self.make_task("image2video", body, start, start + seg, prompt)
        h._send(200, self.envelope({"task_id": task.id, "task_status": "submitted",
                                    "created_at": 1722769557708, "updated_at": 1722769557708}))


class FakeRunway(FakeGenerator):
    polls_to_finish = 2

    def __init__(self, footage: Footage, *, key: str = RUNWAY_KEY, **kw: Any) -> None:
        super().__init__(footage, **kw)
        self.key = key
        self.positions: list[list[str]] = []  # keyframe positions of each submission

    def handle(self, h: Any, method: str, body: Any) -> None:
        path = h.path.split("?")[0]
        if method == "GET" and path.startswith("/media/"):
            self.serve_media(h, path[len("/media/"):].removesuffix(".mp4"))
            return
        auth = h.headers.get("Authorization") or ""
        self.log.tokens.add(auth.removeprefix("Bearer "))
        if auth != f"Bearer {self.key}":
            self.log.rejected.append((401, path))
            h._send(401, {"error": "Invalid API key"})
            return
        if h.headers.get("X-Runway-Version") != "2024-11-06":
            self.log.rejected.append((400, path))
            h._send(400, {"error": "X-Runway-Version header is required"})
            return
        with self._lock:
            if method == "POST" and path == "/v1/image_to_video":
                self.submit(h, path, body)
                return
            m = re.fullmatch(r"/v1/tasks/([\w-]+)", path)
            if method == "GET" and m and m.group(1) in self.tasks:
                self.log.polls += 1
                task = self.tasks[m.group(1)]
                status = {"submitted": "PENDING", "processing": "RUNNING", "succeed": "SUCCEEDED",
                          "failed": "FAILED"}[self.advance(task)]
                out: dict[str, Any] = {
                    "id": task.id,
                    "status": status,
                    "createdAt": "2024-06-27T19:49:32.334Z",
                }
                if status == "SUCCEEDED" and task.video is not None:
                    out["output"] = [f"{self.url}/media/{task.video.id}.mp4"]
                if status == "FAILED":
                    out.update(failure=task.fail, failureCode="SAFETY")
                h._send(200, out)
                return
        self.log.rejected.append((404, path))
        h._send(404, {"error": "not found"})

    def submit(self, h: Any, path: str, body: dict[str, Any]) -> None:
        images = body.get("promptImage")
        frames = [{"uri": images, "position": "first"}] if isinstance(images, str) else images
        ok = (
            isinstance(frames, list)
            and frames
            and all(isinstance(f, dict) and f.get("position") in ("first", "last") for f in frames)
        )
        decoded = [self.decode_image(str(f.get("uri")), data_uri=True) for f in frames] if ok else []
        if not ok or any(d is None for d in decoded) or body.get("duration") not in (5, 10) or \
                not isinstance(body.get("seed"), int) or not body.get("model") or not body.get("ratio"):
            self.log.rejected.append((400, path))
            h._send(400, {"error": "invalid request"})
            return
        self.positions.append([f["position"] for f in frames])
        first = decoded[[f["position"] for f in frames].index("first")]
        parent = self.continued_from(first)
        start = parent.end if parent is not None else 0.0
        if parent is not None:
            self.log.continuations += 1
        seg = self.seg_s * (2 if body["duration"] == 10 else 1)
        task = self.make_task("runway", body, start, start + seg, str(body.get("promptText") or ""))
        h._send(200, {"id": task.id})


# -- tests of the fakes themselves: they must hold the documented contract ------------------------------


@pytest.fixture(scope="module")
def footage() -> Footage:
    return Footage()


def _jwt(secret: str = SECRET_KEY, iss: str = ACCESS_KEY, **claims: Any) -> str:
    import jwt

    now = int(time.time())
    payload = {"iss": iss, "exp": now + 1800, "nbf": now - 5, **claims}
    return jwt.encode(payload, secret, algorithm="HS256", headers={"alg": "HS256", "typ": "JWT"})


def test_fake_kling_enforces_auth_and_image_rules(footage: Footage) -> None:
    import cv2
    import httpx

    img = np.full((320, 320, 3), 128, np.uint8)
    raw = base64.b64encode(cv2.imencode(".png", img)[1].tobytes()).decode()
    body = {"model_name": "kling-v1-6", "mode": "pro", "duration": "5", "image": raw, "prompt": "hi"}
    with FakeKling(footage) as fake:
        url = f"{fake.url}/v1/videos/image2video"
        assert httpx.post(url, json=body).json()["code"] == 1001
        assert (
            httpx.post(
                url,
                json=body,
                headers={"Authorization": f"Bearer {_jwt(secret='a-wrong-secret-of-thirty-two-bytes!')}"},
            ).json()["code"]
            == 1002
        )
        expired = _jwt(exp=int(time.time()) - 10)
        assert (
            httpx.post(url, json=body, headers={"Authorization": f"Bearer {expired}"}).json()["code"] == 1004
        )
        ok = {"Authorization": f"Bearer {_jwt()}"}
        prefixed = {**body, "image": "data:image/png;base64," + raw}
        assert httpx.post(url, json=prefixed, headers=ok).status_code == 400
        small = {
            **body,
            "image": base64.b64encode(cv2.imencode(".png", img[:200, :200])[1].tobytes()).decode(),
        }
        assert httpx.post(url, json=small, headers=ok).status_code == 400
        r = httpx.post(url, json=body, headers=ok).json()
        assert r["code"] == 0 and r["data"]["task_status"] == "submitted"
        tid = r["data"]["task_id"]
        states = [httpx.get(f"{url}/{tid}", headers=ok).json()["data"] for _ in range(2)]
        assert [s["task_status"] for s in states] == ["submitted", "succeed"]
        video = states[-1]["task_result"]["videos"][0]
        assert float(video["duration"]) == pytest.approx(fake.seg_s)
        media = httpx.get(video["url"])
        assert media.status_code == 200 and media.content[4:8] == b"ftyp"
