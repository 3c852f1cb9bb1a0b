"""A generic adapter for hosted image-to-video APIs, described entirely by configuration (``model.api``).

Most hosted generators (Runway, Luma, Hailuo, Vidu, Veo, Sora, ...) follow one pattern: submit a JSON
request, receive a task id, poll the task until a status says done or failed, download the video URL.
The ``api`` mapping describes that pattern for one provider::

  auth:          {type: bearer, env: RUNWAYML_API_SECRET}      # or {type: header, header: X-Key,
                                                               #     env: ..., format: "{key}"}, kling_jwt
  headers:       {X-Runway-Version: "2024-11-06"}               # extra request headers
  image_format:  data_uri | base64                              # how {image} / {reference} are sent
  image_min_side: 0                                             # upscale smaller images (pixels)
  continuation:  last_frame | native   # extend = a new request from the previous segment's last frame,
                                       # or the provider's own extension of a previous video id
  result:        segment | full | auto # what a continuation returns: the new segment, or the whole
                                       # video so far (auto: decided from the measured durations)
  submit:                              # one request template per step kind (first, extend, reanchor)
    first:    {method: POST, url: /v1/image_to_video, body: {model: "{model_name}", image: "{image}"}}
  task_id:   id                        # JSON paths (dots, list indices as numbers) into the answers
  poll:      {method: GET, url: "/v1/tasks/{task_id}"}   # {submit_url} = the kind's submit URL
  status:    status done:      [SUCCEEDED]
  failed:    [FAILED, CANCELLED]
  message:   failure                   # why a task failed
  error:     null                      # path(s) whose presence means failed, whatever the status says
                                       # (a long-running operation: done=true with an error, or filtered)
  download_auth: false                 # send the credential when downloading the video (Gemini files)
  video_url: output.0 video_id:  null                      # id a native continuation refers to
  duration:  null                      # the provider's reported duration (informative)
  ok:        {path: code, equals: 0}   # optional: an answer whose path differs is an error

Templates: a string that is exactly ``"{name}"`` is replaced by the value with its type (numbers stay
numbers); ``"{name?}"`` drops the key when the value is empty; other strings are formatted. Variables:
model_name, mode, prompt, negative_prompt, seed, duration (int seconds), duration_str, external_id,
image (start image: the character's, or the previous segment's last frame), reference (the character's
reference image), image_mime / reference_mime (their MIME types, for APIs that take base64 and a type apart),
parent_task_id, parent_video_id, parent_video_url, and every key of ``model.options``.
Relative URLs are joined to ``model.base_url``.

Credentials come only from the environment variable the ``auth`` entry names; they are put in request
headers and nowhere else. """

from __future__ import annotations

import copy
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from driftbench.errors import UsageError
from driftbench.generators.base import STEP_KINDS, GenerationError, StepInput
from driftbench.generators.client import ApiClient, Classifier
from driftbench.generators.media import prepare_image, to_base64, to_data_uri
from driftbench.registry import Registry


@dataclass(frozen=True)
class ProviderSettings:
    """The model config as plain values (adapters know nothing of Hydra)."""

    name: str
    provider: str
    base_url: str | None = None
    model_name: str | None = None
    mode: str = "std"
    segment_s: float = 5.0
    api: dict[str, Any] = field(default_factory=dict)
    prices: dict[str, float] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskState:
    status: str  # pending | done | failed
    raw_status: str = ""
    message: str = ""
    video_url: str | None = None
    video_id: str | None = None
    duration_s: float | None = None


# -- templates ----------------------------------------------------------------------------------------
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\?)?\}")
_DROP = object()


class TemplateError(KeyError):
    pass


def render(template: Any, variables: dict[str, Any]) -> Any:
    """Fill a JSON template (see the module docstring for the rules)."""
    if isinstance(template, dict):
        out = {}
        for k, v in template.items():
            r = render(v, variables)
            if r is not _DROP:
                out[k] = r
        return out
    if isinstance(template, list):
        return [r for r in (render(v, variables) for v in template) if r is not _DROP]
    if not isinstance(template, str):
        return template
    whole = _FIELD.fullmatch(template)
    if whole:
        name, optional = whole.group(1), bool(whole.group(2))
        if name not in variables:
            if optional:
                return _DROP
            raise TemplateError(name)
        value = variables[name]
        if optional and (value is None or value == ""):
            return _DROP
        return value

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in variables:
            if m.group(2):
                return ""
            raise TemplateError(name)
        value = variables[name]
        return "" if value is None else str(value)

    return _FIELD.sub(sub, template)


def get_path(data: Any, path: str | None) -> Any:
    """``data`` at a dotted path (``data.task_result.videos.0.url``); None where it does not exist."""
    if not path:
        return None
    cur = data
    for part in str(path).split("."):
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and part.lstrip("-").isdigit():
            i = int(part)
            cur = cur[i] if -len(cur) <= i < len(cur) else None
        else:
            return None
        if cur is None:
            return None
    return cur


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = (
            deep_merge(out[k], v)
            if isinstance(v, dict) and isinstance(out.get(k), dict)
            else copy.deepcopy(v)
        )
    return out


# -- auth ---------------------------------------------------------------------------------------------
class Auth:
    """Request headers carrying a credential read from the environment at call time."""

    env_names: tuple[str, ...] = ()

    def missing(self) -> list[str]:
        return [n for n in self.env_names if not os.environ.get(n)]

    def headers(self) -> dict[str, str]:
        return {}


class NoAuth(Auth):
    def __init__(self, spec: dict[str, Any]) -> None:
        pass


class HeaderAuth(Auth):
    def __init__(self, spec: dict[str, Any]) -> None:
        if not spec.get("env"):
            raise UsageError("model.api.auth.env: name the environment variable holding the API key "
                             "-- fix: e.g. model.api.auth.env=RUNWAYML_API_SECRET")
        self.env_names = (str(spec["env"]),)
        from driftbench.errors import register_secret_env

        register_secret_env(*self.env_names)  # its value is scrubbed from every message and file
        self.header = str(spec.get("header", "Authorization"))
        self.format = str(spec.get("format", "{key}"))

    def headers(self) -> dict[str, str]:
        return {self.header: self.format.replace("{key}", os.environ.get(self.env_names[0], ""))}


class BearerAuth(HeaderAuth):
    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__({"header": "Authorization", "format": "Bearer {key}", **spec})


AUTH_TYPES: dict[str, Callable[[dict[str, Any]], Auth]] = {
    "none": NoAuth,
    "header": HeaderAuth,
    "bearer": BearerAuth,
}


# -- the provider -------------------------------------------------------------------------------------
class HttpProvider:
    """Submit / poll / parse for one provider, from its ``api`` description."""

    def __init__(self, settings: ProviderSettings, spec: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.name = settings.name
        self.spec = spec if spec is not None else dict(settings.api)
        self._check_spec()
        auth_spec = dict(self.spec.get("auth") or {"type": "none"})
        auth_type = str(auth_spec.pop("type", "bearer"))
        if auth_type not in AUTH_TYPES:
            raise UsageError(
                f"model.api.auth.type={auth_type!r} is unknown -- fix: one of {', '.join(AUTH_TYPES)}"
            )
        self.auth = AUTH_TYPES[auth_type](auth_spec)
        self.continuation = str(self.spec.get("continuation", "last_frame"))
        self.result_mode = str(self.spec.get("result", "segment"))
        self.image_format = str(self.spec.get("image_format", "data_uri"))
        self._images: dict[str, str] = {}
        self._mimes: dict[str, str] = {}

    # config checks, before any request
    def _check_spec(self) -> None:
        where = f"model={self.name}"
        submit = self.spec.get("submit")
        if not isinstance(submit, dict) or "first" not in submit:
            raise UsageError(
                f"{where}: model.api.submit.first is missing -- fix: describe the image-to-video "
                "request (method, url, body) in conf/model/<provider>.yaml (see "
                "driftbench/generators/http.py)"
            )
        for kind, req in submit.items():
            if kind not in STEP_KINDS or not isinstance(req, dict) or "url" not in req:
                raise UsageError(f"{where}: model.api.submit.{kind} must be one of {STEP_KINDS} with a url "
                                 "-- fix: see driftbench/generators/http.py")
        for key in ("task_id", "poll", "status", "done", "video_url"):
            if not self.spec.get(key):
                raise UsageError(
                    f"{where}: model.api.{key} is missing -- fix: see driftbench/generators/http.py"
                )
        if self.spec.get("continuation", "last_frame") not in ("last_frame", "native"):
            raise UsageError(f"{where}: model.api.continuation must be last_frame or native")
        if self.spec.get("result", "segment") not in ("segment", "full", "auto"):
            raise UsageError(f"{where}: model.api.result must be segment, full or auto")
        base = self.settings.base_url
        relative = [r["url"] for r in submit.values() if not str(r["url"]).startswith(("http://", "https://"))]
        if relative and not base:
            raise UsageError(f"{where}: model.base_url is not set -- fix: model.base_url=https://... "
                             "(the provider's API root)")

    def supports(self, kind: str) -> bool:
        return kind in self.spec["submit"] or (kind == "extend" and self.continuation == "last_frame")

    def needs_last_frame(self, kind: str) -> bool:
        return kind == "reanchor" or (kind == "extend" and self.continuation == "last_frame")

    def classify(self) -> Classifier | None:
        ok = self.spec.get("ok")
        if not ok:
            return None
        path, expected = str(ok.get("path")), ok.get("equals")

        def check(status: int, data: Any) -> GenerationError | None:
            if status < 400 and isinstance(data, dict) and get_path(data, path) != expected:
                return GenerationError("api_error", f"{self.name}: {path}={get_path(data, path)!r} "
                                       f"{get_path(data, self.spec.get('message_path', 'message')) or ''}",
                                       "check the request parameters against the provider's documentation")
            return None

        return check

    def price(self, kind: str, duration_s: float) -> float | None:
        value = self.settings.prices.get(kind, self.settings.prices.get("first") if kind != "first" else None)
        return None if value is None else float(value)

    def request_template(self, kind: str) -> dict[str, Any]:
        submit = self.spec["submit"]
        # a last-frame continuation without its own template is the opening request from a new image
        return submit.get(kind) or submit["first"]

    def url(self, template: str, variables: dict[str, Any]) -> str:
        u = str(render(template, variables))
        if u.startswith(("http://", "https://")):
            return u
        return str(self.settings.base_url or "").rstrip("/") + "/" + u.lstrip("/")

    def _encode(self, path: Any) -> str:
        key = str(path)
        if key not in self._images:
            if len(self._images) >= 16:  # reference images repeat; last frames do not: keep memory bounded
                self._images.clear()
                self._mimes.clear()
            data, mime = prepare_image(path, min_side=int(self.spec.get("image_min_side", 0) or 0),
                                       max_bytes=int(self.spec.get("image_max_bytes", 0) or 0))
            self._images[key] = (
                to_data_uri(data, mime) if self.image_format == "data_uri" else to_base64(data)
            )
            self._mimes[key] = mime
        return self._images[key]

    def _mime(self, path: Any) -> str:
        self._encode(path)
        return self._mimes[str(path)]

    def variables(self, step: StepInput, *, for_key: bool, external_id: str = "") -> dict[str, Any]:
        s = self.settings
        v: dict[str, Any] = {k: val for k, val in s.options.items() if not isinstance(val, dict | list)}
        v.update({
            "model_name": s.model_name or "", "mode": s.mode, "prompt": step.prompt,
            "negative_prompt": step.negative_prompt, "seed": int(step.seed),
            "duration": round(step.duration_s), "duration_str": str(round(step.duration_s)),
            "external_id": "" if for_key else external_id,
        })
        parent = step.parent or {}
        if for_key:
            ptoken = f"<step:{step.parent_key}>" if step.parent_key else None
            v.update(image=f"<image:{step.image.token}>" if step.image else None,
                     reference=f"<image:{step.reference.token}>" if step.reference else None,
                     image_mime=None, reference_mime=None,  # follow from the images, which are in the key
                     parent_task_id=ptoken, parent_video_id=ptoken, parent_video_url=ptoken)
        else:
            v.update(image=self._encode(step.image.path) if step.image else None,
                     reference=self._encode(step.reference.path) if step.reference else None,
                     image_mime=self._mime(step.image.path) if step.image else None,
                     reference_mime=self._mime(step.reference.path) if step.reference else None,
                     parent_task_id=parent.get("task_id"), parent_video_id=parent.get("video_id"),
                     parent_video_url=parent.get("video_url"))
        return v

    def key_payload(self, step: StepInput) -> dict[str, Any]:
        """What identifies a request for the cache: endpoint and body with images as tokens."""
        req = self.request_template(step.kind)
        v = self.variables(step, for_key=True)
        try:
            body = render(req.get("body", {}), v)
            path = str(render(str(req["url"]), v))
        except TemplateError as exc:
            raise UsageError(
                f"model={self.name}: template variable {{{exc.args[0]}}} is not defined for step "
                f"{step.kind!r} -- fix: add it to model.options or correct model.api.submit.{step.kind}"
            ) from None
        return {
            "provider": self.settings.provider,
            "name": self.name,
            "kind": step.kind,
            "method": str(req.get("method", "POST")).upper(),
            "path": path,
            "body": body,
            "seed": step.seed,
            "parent": step.parent_key,
        }

    def download_headers(self) -> dict[str, str]:
        """Headers of the video download: none (a pre-signed URL), or the credential (``download_auth``)."""
        return self.auth.headers() if self.spec.get("download_auth") else {}

    def headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "application/json"}
        h.update({str(k): str(v) for k, v in (self.spec.get("headers") or {}).items()})
        h.update(self.auth.headers())
        return h

    def submit(self, client: ApiClient, step: StepInput, external_id: str) -> tuple[str, str]:
        """Send the step's request; returns (task id, the submit URL, for polling)."""
        req = self.request_template(step.kind)
        v = self.variables(step, for_key=False, external_id=external_id)
        url = self.url(str(req["url"]), v)
        body = render(req.get("body", {}), v)
        data = client.request_json(str(req.get("method", "POST")).upper(), url, headers=self.headers(),
                                   body=body, may_repeat=False)
        task_id = get_path(data, str(self.spec["task_id"]))
        if task_id in (None, ""):
            raise GenerationError(
                "bad_response",
                f"{self.name}: no task id at {self.spec['task_id']!r} in the answer",
                "check model.api.task_id against the provider's documentation",
            )
        return str(task_id), url

    def poll(self, client: ApiClient, task_id: str, submit_url: str) -> TaskState:
        poll = self.spec["poll"]
        v = {**{k: val for k, val in self.settings.options.items() if not isinstance(val, dict | list)},
             "task_id": task_id, "submit_url": submit_url.rstrip("/")}
        url = self.url(str(poll["url"]), v)
        body = render(poll.get("body"), v) if poll.get("body") is not None else None
        data = client.request_json(
            str(poll.get("method", "GET")).upper(), url, headers=self.headers(), body=body
        )
        raw = str(get_path(data, str(self.spec["status"])) or "")
        done = {str(s) for s in self.spec.get("done") or []}
        failed = {str(s) for s in self.spec.get("failed") or []}
        errors = self.spec.get("error") or []
        for path in [errors] if isinstance(errors, str) else errors:
            err = get_path(data, str(path))
            if err not in (None, "", [], {}):
                return TaskState("failed", raw or "error", str(err))
        if raw in failed:
            return TaskState("failed", raw, str(get_path(data, self.spec.get("message")) or raw))
        if raw not in done:
            return TaskState("pending", raw)
        url_value = get_path(data, str(self.spec["video_url"]))
        if not url_value:
            raise GenerationError(
                "bad_response",
                f"{self.name}: task {task_id} is {raw} but has no video URL at {self.spec['video_url']!r}",
                "check model.api.video_url",
            )
        vid = get_path(data, self.spec.get("video_id"))
        dur = get_path(data, self.spec.get("duration"))
        try:
            duration = float(dur) if dur not in (None, "") else None
        except (TypeError, ValueError):
            duration = None
        return TaskState("done", raw, video_url=str(url_value), video_id=None if vid is None else str(vid),
                         duration_s=duration)


def wait_for(client: ApiClient, provider: HttpProvider, task_id: str, submit_url: str, *, interval_s: float,
             max_interval_s: float, timeout_s: float, sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic) -> TaskState:
    """Poll until done or failed, with a growing interval (x1.5 up to ``max_interval_s``); raise a
    ``generation_timeout`` GenerationError after ``timeout_s`` (the task id stays cached: a rerun polls
    it again rather than submitting a new one)."""
    start = clock()
    delay = max(interval_s, 0.0)
    state = provider.poll(client, task_id, submit_url)
    while state.status == "pending":
        if clock() - start >= timeout_s:
            raise GenerationError(
                "generation_timeout",
                f"{provider.name}: task {task_id} still {state.raw_status or 'pending'} "
                f"after {timeout_s:.0f} s",
                "rerun the same command: the task is polled again, not resubmitted "
                "(or raise model.timeout_s)",
            )
        sleep(min(delay, max(0.0, timeout_s - (clock() - start))))
        delay = min(max_interval_s, max(delay * 1.5, 0.01))
        state = provider.poll(client, task_id, submit_url)
    return state


#: generator APIs by ``model.provider``: ``factory(ProviderSettings) -> HttpProvider``, imported on first use
PROVIDERS: Registry[Callable[[ProviderSettings], HttpProvider]] = Registry(
    "generator API (model.provider)",
    {"http": "driftbench.generators.http:HttpProvider",
     "kling": "driftbench.generators.kling:KlingProvider"},
    fix="one of http, kling (or provider: http with a model.api description)",
    unknown="model.provider={name!r} is unknown -- fix: {fix}")


def build_provider(settings: ProviderSettings) -> HttpProvider:
    return PROVIDERS.get(settings.provider)(settings)
