"""HTTP for generator APIs (httpx): JSON requests with a small retry policy, and verified downloads.

Policy: 429 and 5xx answers and dropped connections are retried with exponential backoff (the
``Retry-After`` header wins when present), at most ``max_retries`` times. A request that may already
have been accepted (a POST whose answer timed out) is not retried: that could pay twice. 401/403 end
the run's submissions (:class:`AuthFailed`); other 4xx answers fail the one step with the provider's
message. Credentials travel in request headers only; no message built here ever includes a header.
Downloads never carry the API's credentials (result URLs are usually on another host), are checked
against Content-Length and demuxed with PyAV before they are renamed into place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from driftbench.generators.base import AuthFailed, GenerationError
from driftbench.generators.media import MediaError, check_video
from driftbench.io import atomic_path

log = logging.getLogger("driftbench")

#: inspects a JSON answer (HTTP status, body) and returns an error to raise at once, or None
Classifier = Callable[[int, Any], GenerationError | None]


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after:
            try:
                return max(0.0, min(self.max_backoff_s, float(retry_after)))
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        return min(self.max_backoff_s, self.backoff_s * (2.0 ** attempt))


class _Truncated(Exception):
    pass


def _where(url: str) -> str:
    """The URL without its query string (signed URLs carry tokens in the query)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:200]
    if isinstance(body, dict):
        for key in ("message", "error", "detail", "failure", "msg"):
            if body.get(key):
                return str(body[key])[:200]
    return str(body)[:200]


class ApiClient:
    def __init__(self, *, policy: RetryPolicy, timeout_s: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, classify: Classifier | None = None,
                 credentials: str = "") -> None:
        self.policy = policy
        #: the environment variables holding the credential (named in an auth failure's fix)
        self.credentials = credentials
        self.sleep = sleep
        self.classify = classify
        # httpx logs every URL at INFO; result URLs are often signed (a token in the query string), so
        # only our own messages, which drop the query, say what was fetched
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
        self._http = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 15.0)),
                                  follow_redirects=True)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request_json(self, method: str, url: str, *, headers: Mapping[str, str], body: Any = None,
                     may_repeat: bool = True) -> Any:
        """One JSON request under the retry policy. ``may_repeat=False`` (a paid submission): an answer
        lost to a read timeout is not retried, since the provider may have accepted it."""
        where = f"{method} {_where(url)}"
        last = ""
        for attempt in range(self.policy.max_retries + 1):
            try:
                resp = self._http.request(method, url, headers=dict(headers), json=body)
            except (
                httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.RemoteProtocolError
            ) as exc:
                last = f"{type(exc).__name__}"
                self._wait(attempt, None, where, last)
                continue
            except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError) as exc:
                if not may_repeat:
                    raise GenerationError(
                        "submit_uncertain",
                        f"{where}: no answer to a generation request ({type(exc).__name__}); "
                        "the provider may have accepted it",
                        "check the provider's console for the task; rerun to submit it again",
                    ) from None
                last = f"{type(exc).__name__}"
                self._wait(attempt, None, where, last)
                continue
            try:
                data = resp.json()
            except ValueError:
                data = None
            if self.classify is not None:
                err = self.classify(resp.status_code, data)
                if err is not None:
                    raise err
            if resp.status_code in self.policy.retry_statuses:
                last = f"HTTP {resp.status_code} {_message(resp)}"
                self._wait(attempt, resp.headers.get("retry-after"), where, last)
                continue
            if resp.status_code in (401, 403):
                raise AuthFailed("auth_failed", f"{where}: HTTP {resp.status_code} {_message(resp)}",
                                 f"check {self.credentials or 'the API credentials'} in the environment "
                                 "(and the account's access)")
            if resp.status_code >= 400:
                raise GenerationError(
                    "api_error",
                    f"{where}: HTTP {resp.status_code} {_message(resp)}",
                    "check the request parameters (model.*) against the provider's documentation",
                )
            if data is None:
                raise GenerationError("bad_response", f"{where}: answer is not JSON",
                                      "check model.base_url points at the provider's API")
            return data
        raise GenerationError("api_unavailable", f"{where}: {last} after {self.policy.max_retries} retries",
                              "rerun later (everything done so far is cached), or raise model.max_retries")

    def _wait(self, attempt: int, retry_after: str | None, where: str, why: str) -> None:
        if attempt >= self.policy.max_retries:
            return
        delay = self.policy.delay(attempt, retry_after)
        log.info(
            "%s: %s; retrying in %.1f s (%d/%d)", where, why, delay, attempt + 1, self.policy.max_retries
        )
        self.sleep(delay)

    def download(
        self, url: str, dest: Path, *, timeout_s: float = 600.0, headers: dict[str, str] | None = None
    ) -> int:
        """Fetch ``url`` into ``dest`` atomically; returns the byte count. A truncated or undecodable
        file is fetched again (downloads cost nothing); ``dest`` only ever holds a complete video."""
        where = f"GET {_where(url)}"
        last = ""
        for attempt in range(self.policy.max_retries + 1):
            try:
                with self._http.stream("GET", url, timeout=timeout_s, headers=headers or None) as resp:
                    if resp.status_code in self.policy.retry_statuses:
                        last = f"HTTP {resp.status_code}"
                        self._wait(attempt, resp.headers.get("retry-after"), where, last)
                        continue
                    if resp.status_code >= 400:
                        raise GenerationError("download_failed", f"{where}: HTTP {resp.status_code}",
                                              "rerun: the task is polled again for a fresh URL")
                    expected = int(resp.headers.get("content-length") or 0)
                    with atomic_path(dest) as tmp:
                        got = 0
                        with open(tmp, "wb") as fh:
                            for chunk in resp.iter_bytes(1 << 16):
                                fh.write(chunk)
                                got += len(chunk)
                        if expected and got != expected:
                            raise _Truncated(f"{got} of {expected} bytes")
                        check_video(tmp)
                    return got
            except (httpx.TransportError, _Truncated, MediaError) as exc:
                last = f"{type(exc).__name__}: {exc}"[:200]
                self._wait(attempt, None, where, last)
        raise GenerationError("download_failed", f"{where}: {last} after {self.policy.max_retries} retries",
                              "rerun the same command: finished tasks are downloaded again, not regenerated")
