"""Kling (Kuaishou) official API adapter: image-to-video, video-extend chaining, re-anchored segments.

Contract (Kling AI API documentation, "General Information", "Image to Video", "Video Extension";
mirrored in public repositories such as inference-sh/grid api/klingai/docs/{00-general,
04-video-image2video,07-video-extension}.md):

- Base URL ``https://api-singapore.klingai.com`` (configurable: ``model.base_url``).
- Auth: a JWT (RFC 7519, HS256) signed with the secret key, payload ``iss`` = access key, ``exp`` =
  now + 1800 s, ``nbf`` = now - 5 s, sent as ``Authorization: Bearer <token>``; a fresh token is
  made before the old one expires. Keys come only from ``KLING_ACCESS_KEY`` / ``KLING_SECRET_KEY``.
- ``POST /v1/videos/image2video`` {model_name, mode std|pro, duration "5"|"10", image (URL or raw
  base64 without a ``data:`` prefix; jpg/png, <= 10 MB, >= 300 px), image_tail (end frame), prompt
  (<= 2500 chars), negative_prompt, cfg_scale, external_task_id} -> {code, message, request_id,
  data: {task_id, task_status}}.
- ``POST /v1/videos/video-extend`` {video_id, prompt}: extends a Kling video by 4-5 s (model and mode
  are those of the source video; the total may not exceed 3 minutes).
- ``GET /v1/videos/image2video/{task_id}``, ``GET /v1/videos/video-extend/{task_id}`` ->
  data.task_status submitted | processing | succeed | failed, data.task_status_msg,
  data.task_result.videos[0].{id, url, duration}. Videos are deleted after 30 days: download at once.
- Errors: the body's ``code`` (0 = success). 401 codes 1000-1004: authentication; 429 codes
  1100-1102: account (arrears, resource pack used up) and 1302/1303: rate / concurrency limit (retry
  with exponential backoff, >= 1 s); 400 code 1301: content-safety refusal; 5xx 5000-5002: retry later.
- Pricing (units of $0.14; failed tasks are not charged): see ``UNITS`` below.

Chaining: ``extend`` (native continuation, the drift baseline) sends each further segment to
video-extend with the previous result's video id; its results are the whole video so far, which
``result: auto`` confirms from the measured durations. ``reanchor`` sends each further segment to
image2video with ``image`` = the previous segment's last frame (continuity) and ``image_tail`` = the
character's reference image, so every segment is pulled back to the reference; start/end frames
need a model/mode that supports them (kling-v1 std/pro 5 s, kling-v1-5 pro, kling-v1-6 pro).
"""

from __future__ import annotations

import os
import time
from typing import Any

from driftbench.errors import UsageError
from driftbench.generators.base import AuthFailed, GenerationError
from driftbench.generators.client import Classifier
from driftbench.generators.http import AUTH_TYPES, Auth, HttpProvider, ProviderSettings, deep_merge

BASE_URL = "https://api-singapore.klingai.com"

KLING_API: dict[str, Any] = {
    "auth": {"type": "kling_jwt", "access_key_env": "KLING_ACCESS_KEY", "secret_key_env": "KLING_SECRET_KEY"},
    "image_format": "base64",
    "image_min_side": 300,
    "image_max_bytes": 10_000_000,
    "continuation": "native",
    "result": "auto",
    "submit": {
        "first": {"method": "POST", "url": "/v1/videos/image2video", "body": {
            "model_name": "{model_name}", "mode": "{mode}", "duration": "{duration_str}", "image": "{image}",
            "prompt": "{prompt}", "negative_prompt": "{negative_prompt?}", "cfg_scale": "{cfg_scale?}",
            "external_task_id": "{external_id?}"}},
        "extend": {"method": "POST", "url": "/v1/videos/video-extend", "body": {
            "video_id": "{parent_video_id}", "prompt": "{prompt}"}},
        "reanchor": {"method": "POST", "url": "/v1/videos/image2video", "body": {
            "model_name": "{model_name}", "mode": "{mode}", "duration": "{duration_str}", "image": "{image}",
            "image_tail": "{reference}", "prompt": "{prompt}", "negative_prompt": "{negative_prompt?}",
            "cfg_scale": "{cfg_scale?}", "external_task_id": "{external_id?}"}},
    },
    "task_id": "data.task_id",
    "poll": {"method": "GET", "url": "{submit_url}/{task_id}"},
    "status": "data.task_status",
    "done": ["succeed"],
    "failed": ["failed"],
    "message": "data.task_status_msg",
    "video_url": "data.task_result.videos.0.url",
    "video_id": "data.task_result.videos.0.id",
    "duration": "data.task_result.videos.0.duration",
}

#: price in units (1 unit = $0.14) of a 5 s request, by (model, mode, endpoint); 10 s image2video
#: costs twice. From Kling's price list (V1.x per-clip billing, video extension rows).
UNIT_USD = 0.14
UNITS: dict[tuple[str, str, str], float] = {
    ("kling-v1", "std", "image2video"): 1.0, ("kling-v1", "pro", "image2video"): 3.5,
    ("kling-v1-5", "std", "image2video"): 2.0, ("kling-v1-5", "pro", "image2video"): 3.5,
    ("kling-v1-6", "std", "image2video"): 2.0, ("kling-v1-6", "pro", "image2video"): 3.5,
    ("kling-v1", "std", "video-extend"): 1.0, ("kling-v1", "pro", "video-extend"): 3.5,
    ("kling-v1-5", "std", "video-extend"): 2.0, ("kling-v1-5", "pro", "video-extend"): 3.5,
    ("kling-v1-6", "std", "video-extend"): 2.0, ("kling-v1-6", "pro", "video-extend"): 3.5,
}

#: answer codes that no retry can fix: the account itself (arrears, no resource pack, no access)
ACCOUNT_CODES = {1100, 1101, 1102, 1103}
AUTH_CODES = {1000, 1001, 1002, 1003, 1004}


class KlingJwtAuth(Auth):
    """HS256 JWT from the access key and secret key, renewed a minute before it expires."""

    ttl_s = 1800

    def __init__(self, spec: dict[str, Any]) -> None:
        self.env_names = (str(spec.get("access_key_env", "KLING_ACCESS_KEY")),
                          str(spec.get("secret_key_env", "KLING_SECRET_KEY")))
        self._token: str | None = None
        self._expires = 0.0
        from driftbench.errors import register_secret_env

        register_secret_env(*self.env_names)  # their values are scrubbed from every message and file

    def token(self, now: float | None = None) -> str:
        import jwt

        now = time.time() if now is None else now
        if self._token is None or now > self._expires - 60:
            access, secret = (os.environ.get(n, "") for n in self.env_names)
            if not access or not secret:
                raise AuthFailed(
                    "auth_missing",
                    f"{' / '.join(self.env_names)} not set",
                    f"export {self.env_names[0]}=... and {self.env_names[1]}=... (Kling developer console)",
                )
            payload = {"iss": access, "exp": int(now) + self.ttl_s, "nbf": int(now) - 5}
            self._token = jwt.encode(
                payload, secret, algorithm="HS256", headers={"alg": "HS256", "typ": "JWT"}
            )
            from driftbench.errors import register_secret_value

            register_secret_value(self._token)
            self._expires = now + self.ttl_s
        return self._token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}


AUTH_TYPES["kling_jwt"] = KlingJwtAuth


class KlingProvider(HttpProvider):
    def __init__(self, settings: ProviderSettings) -> None:
        if not settings.base_url:
            settings = ProviderSettings(**{**settings.__dict__, "base_url": BASE_URL})
        if not settings.model_name:
            raise UsageError(
                "model=kling: model.model_name is empty -- fix: e.g. model.model_name=kling-v1-6"
            )
        if round(settings.segment_s) not in (5, 10):
            raise UsageError(
                f"model=kling: model.segment_s={settings.segment_s} -- fix: Kling generates 5 or 10 s "
                "per request (model.segment_s=5)"
            )
        super().__init__(settings, deep_merge(KLING_API, settings.api))

    def classify(self) -> Classifier | None:
        def check(status: int, data: Any) -> GenerationError | None:
            if not isinstance(data, dict) or "code" not in data:
                return None
            try:
                code = int(data["code"])
            except (TypeError, ValueError):
                return None
            msg = str(data.get("message") or "")[:200]
            if code in ACCOUNT_CODES:
                return AuthFailed("account", f"kling: {msg} (code {code})",
                                  "check the Kling account: balance, resource pack and API access")
            if code in AUTH_CODES:
                return AuthFailed(
                    "auth_failed",
                    f"kling: {msg} (code {code})",
                    "check KLING_ACCESS_KEY / KLING_SECRET_KEY and the machine's clock (JWT nbf/exp)",
                )
            if code in (1300, 1301):
                return GenerationError(
                    "content_policy",
                    f"kling: refused by content policy: {msg} (code {code})",
                    "change the prompt or the reference image of this entry",
                )
            if status < 400 and code != 0:
                return GenerationError("api_error", f"kling: {msg} (code {code})",
                                       "check the request parameters (model.model_name, model.mode)")
            return None

        return check

    def price(self, kind: str, duration_s: float) -> float | None:
        if kind in self.settings.prices:
            return float(self.settings.prices[kind])
        endpoint = "video-extend" if kind == "extend" and self.continuation == "native" else "image2video"
        units = UNITS.get((str(self.settings.model_name), self.settings.mode, endpoint))
        if units is None:
            return None
        if endpoint == "image2video" and round(duration_s) == 10:
            units *= 2
        return units * UNIT_USD


