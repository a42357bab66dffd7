"""The one way we talk HTTP to Intercom and Referral Factory: a requests session whose
urllib3 `Retry` retries 429 / 5xx / connection errors with exponential backoff and jitter,
honours `Retry-After` and `X-RateLimit-Reset`, and takes a slot from the shared rate
limiter before every attempt (retries included). Clock and sleep are injected."""
from __future__ import annotations

import json
import random
import time
from typing import Any, Callable, Optional

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..errors import ApiError, Transient

RETRY_STATUSES = (429, 500, 502, 503, 504)


class _BridgeRetry(Retry):
    """Per-client subclass attributes (set by `retry_policy`): clock, sleeper, max_wait,
    before_attempt. `Retry.new()` keeps the subclass, so they survive every increment."""

    clock: Callable[[], float] = time.time
    sleeper: Callable[[float], None] = time.sleep
    before_attempt: Callable[[], None] = staticmethod(lambda: None)
    max_wait: Callable[[], float] = staticmethod(lambda: 20.0)

    def get_retry_after(self, response) -> Optional[float]:
        delay = super().get_retry_after(response)
        reset = response.headers.get("X-RateLimit-Reset")
        if delay is None and reset:
            try:
                delay = max(0.0, float(reset) - self.clock())
            except ValueError:
                delay = None
        return delay

    def sleep(self, response=None) -> None:
        told = self.get_retry_after(response) if response is not None else None
        delay = self.get_backoff_time() if told is None else told + random.uniform(0, 0.5)
        if delay > self.max_wait():
            # Too long to wait inside a Lambda: the message goes back to the queue for that long.
            raise Transient(f"rate limited: asked to wait {delay:.0f}s", retry_after=delay)
        if delay > 0:
            self.sleeper(delay)
        self.before_attempt()


def retry_policy(clock, sleeper, before_attempt, max_wait: float | Callable[[], float], total: int = 3) -> Retry:
    wait_cap = max_wait if callable(max_wait) else (lambda: max_wait)
    cls = type("Retry", (_BridgeRetry,), {
        "clock": staticmethod(clock), "sleeper": staticmethod(sleeper),
        "before_attempt": staticmethod(before_attempt), "max_wait": staticmethod(wait_cap),
    })
    return cls(total=total, connect=total, read=total, status=total, other=0, redirect=0,
               backoff_factor=0.5, backoff_jitter=0.5, backoff_max=30,
               status_forcelist=RETRY_STATUSES, allowed_methods=None,
               respect_retry_after_header=True, raise_on_status=False, raise_on_redirect=False)


class JsonApi:
    """Base of the Intercom and RF clients. `reauth(stale_token)` answers a newer token, or None:
    on a 401 it is asked once, and the call is made once more with the new token (a 401 means the
    request was refused, so repeating it is safe)."""

    service = "API"

    def __init__(self, base_url: str, headers: dict, *, token: str = "",
                 reauth: Optional[Callable[[str], Optional[str]]] = None, timeout: float = 10.0,
                 limiter: Any = None, clock=time.time, sleeper=time.sleep,
                 max_wait: float | Callable[[], float] = 20.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._acquire = limiter.acquire if limiter is not None else (lambda: None)
        self._reauth = reauth
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json", **headers})
        self._use(token)
        self._retry = retry_policy(clock, sleeper, self._acquire, max_wait)
        adapter = HTTPAdapter(max_retries=self._retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def _use(self, token: str) -> None:
        self._token = token
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, *, json_body: Any = None,
                params: Optional[dict] = None) -> requests.Response:
        def send() -> requests.Response:
            self._acquire()
            try:
                return self.session.request(method, self.base_url + path, json=json_body, params=params,
                                            timeout=self.timeout, allow_redirects=False)
            except requests.RequestException as exc:
                raise Transient(f"{self.service} unreachable after retries ({type(exc).__name__})") from None
        resp = send()
        if resp.status_code == 401 and self._reauth is not None:
            fresh = self._reauth(self._token)      # rotated or reconnected since we read it?
            if fresh:
                self._use(fresh)
                resp = send()
        if resp.status_code >= 400:
            raise self.error(resp)
        return resp

    def call(self, method: str, path: str, **kw) -> Any:
        resp = self.request(method, path, **kw)
        return _json(resp)

    def error(self, resp: requests.Response) -> ApiError:
        body = _json(resp) or {}
        retry_after = None
        if resp.status_code == 429:
            retry_after = self._retry.get_retry_after(resp.raw) if resp.raw is not None else None
        return ApiError(self.service, resp.status_code, self.message(body) or resp.reason or "error",
                        code=self.code(body), retry_after=retry_after, headers=dict(resp.headers))

    def message(self, body: Any) -> str:
        return str(body.get("message", "")) if isinstance(body, dict) else ""

    def code(self, body: Any) -> str:
        return ""


def _json(resp: requests.Response) -> Any:
    if not resp.content:
        return None
    try:
        return resp.json()
    except (ValueError, json.JSONDecodeError):
        return None
