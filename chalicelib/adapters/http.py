"""The one way we talk HTTP to Intercom and Referral Factory: requests sessions whose urllib3 `Retry`
retries with exponential backoff and jitter, honours `Retry-After` (and after a 429 `X-RateLimit-Reset`), and
takes a slot from the shared rate limiter before every attempt (retries included).

What is retried depends on whether the request may be sent twice:
- an idempotent request (GET, PUT of a value, a search) is retried on 429, 5xx, timeouts and
  connection errors;
- one that is not (Referral Factory's qualification, a create) is retried only when the failure
  proves it was not applied: a 429, or no connection at all. A read timeout, a connection dropped
  after sending, or a 5xx raise `Uncertain`: the caller looks before it sends again.

A 429 pauses every caller of the budget (the limiter records it); the vendor's block status opens
its circuit. Any answer but a 5xx is told to `on_answer`, with the API's base (the vendor's outage there, if it
had one, is over: the worker's outage waits read it; an outage's failure names its base, `where`). No attempt, a
retry neither, starts that could outlast the request's time with the work's own AWS write after it
(adapters/aws.time_left): the work waits instead (`Deferred`). Clock and sleep are injected."""
from __future__ import annotations

import json
import math
import random
import re
import time
from typing import Any, Callable, Mapping, Optional, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, InvalidHeader, MaxRetryError
from urllib3.util.retry import Retry

from ..errors import ApiError, Deferred, Permanent, Transient, Uncertain, WorkError, outage_for
from . import aws
from .aws_clock import http_date

RETRY_STATUSES = (429, 500, 502, 503, 504)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})   # idempotent by HTTP's definition


class Gate(Protocol):
    """The shared rate limiter as the HTTP client uses it (adapters/ratelimit.SharedLimiter)."""

    def acquire(self) -> None: ...
    def ahead(self, calls: int) -> None: ...
    def throttled(self, wait: Optional[float]) -> None: ...
    def answered(self, status: int, reason: str) -> None: ...


class _Open:
    """No shared budget (a client made alone: a token check): a 429's wait is still waited, by this client, up to
    `max_wait`; a longer one is `Deferred`, as the limiter's."""

    def __init__(self, sleeper: Callable[[float], None], max_wait: Callable[[], float], vendor: str):
        self.sleeper, self.max_wait, self.vendor, self._wait = sleeper, max_wait, vendor, 0.0

    def acquire(self) -> None:
        wait, self._wait = self._wait, 0.0
        if wait > self.max_wait():
            raise Deferred(f"{self.vendor} answered 429 and asked to wait {wait:.0f}s", retry_after=wait, status=429)
        if wait > 0:
            self.sleeper(wait)

    def ahead(self, calls: int) -> None:
        pass

    def throttled(self, wait: Optional[float]) -> None:
        self._wait = wait if wait is not None else 1.0

    def answered(self, status: int, reason: str) -> None:
        pass


class _BridgeRetry(Retry):
    """Per-client subclass attributes (set by `retry_policy`): clock, sleeper, max_wait,
    before_attempt, on_throttled, vendor, retried_later. `Retry.new()` keeps the subclass, so they survive every
    increment."""

    clock: Callable[[], float] = time.time
    sleeper: Callable[[float], None] = time.sleep
    before_attempt: Callable[[], None] = staticmethod(lambda: None)
    on_throttled: Callable[[Optional[float]], None] = staticmethod(lambda wait: None)
    max_wait: Callable[[], float] = staticmethod(lambda: 20.0)
    vendor: Optional[str] = None
    retried_later: bool = True      # the caller's work is tried again later (the worker's queue), not given up

    def get_retry_after(self, response) -> Optional[float]:
        return asked_wait(response.headers, response.status, self.clock())

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if response is not None and response.status == 429:   # the last one too: every caller pauses
            self.on_throttled(self.get_retry_after(response))
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def sleep(self, response=None) -> None:
        if response is None or response.status != 429:
            told = self.get_retry_after(response) if response is not None else None
            delay = self.get_backoff_time() if told is None else told + random.uniform(0, 0.5)
            if delay > self.max_wait():
                # Too long to wait inside a Lambda: the message goes back to the queue for that long. After a
                # 5xx or no answer at all, that is the vendor's outage (waited out, as after the last retry).
                # A caller that answers once (doctor, an operator's command) retries nothing: its reason says
                # no next retry, only a wait the vendor asked for.
                status = response.status if response is not None else None
                answer = f"{self.vendor or 'the API'} " + (f"answered {status}" if status else "did not answer")
                wait = (f" and asked to wait {delay:.0f}s" if told is not None
                        else f" and next retry in {delay:.0f}s" if self.retried_later else "")
                raise Transient(answer + wait, retry_after=delay, status=status
                                ).unavailable(outage_for(self.vendor, status))
            if delay > 0:
                self.sleeper(delay)
        # A 429's pause is the shared limiter's: it waits it out, or defers the work.
        self.before_attempt()


_READER = Retry(0)      # urllib3's reading of `Retry-After`
MAX_CLOCK_GAP = 300.0   # an answer's Date further from our clock than this is not taken for the vendor's clock


def asked_wait(headers: Mapping[str, str], status: int, now: float) -> Optional[float]:
    """The seconds an answer asks to wait: `Retry-After`, or after a 429 only Intercom's `X-RateLimit-Reset` (the end of
    its rate window, which it sends with every answer: after a 5xx it is no wait the vendor asked for). A
    `Retry-After` neither seconds nor a date (`soon`, empty, a date past any calendar), or a reset not a number, is as
    none: the ordinary backoff, or the rate window, is waited.

    The reset is a whole second, floored: the window ends within that second, so the wait lasts until the second has
    passed. It, as a `Retry-After` date, is counted from the answer's `Date` (the vendor's clock: no difference between
    its clock and ours makes the retry early) when it has a sane one, else from our clock (`now`). Each is bounded as
    urllib3 bounds a `Retry-After` in seconds (6 h): a reset in milliseconds is no pause for centuries."""
    said, delay = headers.get("Retry-After"), None
    try:
        if said is not None:
            delay = _READER.parse_retry_after(said)
            if not said.strip().isdigit():                  # a date (urllib3 counts it from time.time())
                at = http_date(said)
                delay = None if at is None else max(0.0, at - _vendor_now(headers.get("Date"), now))
    except (InvalidHeader, OverflowError, TypeError, ValueError, IndexError):
        delay = None
    reset = headers.get("X-RateLimit-Reset") if status == 429 else None
    if delay is None and reset:
        try:
            ends = float(reset) + 1
        except ValueError:
            return None
        delay = max(0.0, ends - _vendor_now(headers.get("Date"), now)) if math.isfinite(ends) else None
    return None if delay is None else min(delay, _READER.retry_after_max)


def _vendor_now(date: Optional[str], now: float) -> float:
    """The vendor's clock by its answer's `Date` (whole seconds: a little behind it, so a wait counted from it is never
    short); `now` when there is none, or none that reads, or one further from our clock than MAX_CLOCK_GAP."""
    said = http_date(date)
    return said if said is not None and abs(said - now) <= MAX_CLOCK_GAP else now


def retry_policy(clock, sleeper, before_attempt, max_wait: float | Callable[[], float], total: int = 3,
                 on_throttled: Callable[[Optional[float]], None] = lambda wait: None,
                 idempotent: bool = True, vendor: Optional[str] = None, retried_later: bool = True) -> Retry:
    """`retried_later`: the caller's work is tried again later (the worker's queue): a wait too long to wait
    here says when (`next retry in`); False for a caller that answers once. Not idempotent: no retry after a read error (the request may have been applied), and of the
    answers only a 429 (which says it was not). urllib3 would also retry a 413 or 503 that carries
    `Retry-After`, whatever the method: not such a request, whose 503 may have been applied."""
    wait_cap = max_wait if callable(max_wait) else (lambda: max_wait)
    cls = type("Retry", (_BridgeRetry,), {
        "clock": staticmethod(clock), "sleeper": staticmethod(sleeper), "on_throttled": staticmethod(on_throttled),
        "before_attempt": staticmethod(before_attempt), "max_wait": staticmethod(wait_cap), "vendor": vendor,
        "retried_later": retried_later,
    })
    return cls(total=total, connect=total, read=total if idempotent else False, status=total, other=0, redirect=0,
               backoff_factor=0.5, backoff_jitter=0.5, backoff_max=30,
               status_forcelist=RETRY_STATUSES if idempotent else (429,), allowed_methods=None,
               respect_retry_after_header=idempotent, raise_on_status=False, raise_on_redirect=False)


def never_sent(exc: requests.RequestException) -> bool:
    """Did the request surely not reach the server (no connection could be made)?"""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, ConnectTimeoutError)      # urllib3's NewConnectionError is one too


class JsonApi:
    """Base of the Intercom and RF clients. `reauth(stale_token)` answers a newer token, or None:
    on a 401 it is asked once, and the call is made once more with the new token (a 401 means the
    request was refused, so repeating it is safe).

    `NOT_IDEMPOTENT` and `IDEMPOTENT` list (method, path pattern) exceptions to the method's rule
    (GET, HEAD, OPTIONS, PUT and DELETE may be sent twice; POST and PATCH may not). `retried_later`: see
    `retry_policy` (False: a failure says no next retry, nothing will make it)."""

    service = "API"
    NOT_IDEMPOTENT: tuple[tuple[str, str], ...] = ()
    IDEMPOTENT: tuple[tuple[str, str], ...] = ()

    def __init__(self, base_url: str, headers: dict, *, token: str = "",
                 reauth: Optional[Callable[[str], Optional[str]]] = None, timeout: float = 10.0,
                 limiter: Optional[Gate] = None, clock=time.time, sleeper=time.sleep,
                 max_wait: float | Callable[[], float] = 20.0,
                 on_answer: Callable[[str, str], None] = lambda service, base: None,
                 retried_later: bool = True):
        self.base_url = base_url.rstrip("/")
        self._on_answer = on_answer
        self.timeout = timeout
        wait_cap = max_wait if callable(max_wait) else (lambda: max_wait)
        self._gate: Gate = limiter if limiter is not None else _Open(sleeper, wait_cap, self.service)
        self._reauth = reauth
        self._sessions: dict[bool, requests.Session] = {}
        for idempotent in (True, False):
            session = requests.Session()
            session.headers.update({"Accept": "application/json", **headers})
            retry = retry_policy(clock, sleeper, self._attempting, wait_cap, on_throttled=self._gate.throttled,
                                 idempotent=idempotent, vendor=self.service, retried_later=retried_later)
            adapter = HTTPAdapter(max_retries=retry)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            # The environment's proxies and CA bundle, read once for this API's one address: with
            # trust_env, requests reads them (every variable of the environment, and ~/.netrc) at
            # every call, a tenth of the worker's CPU in a batch of joins.
            found = session.merge_environment_settings(self.base_url, {}, None, None, None)
            session.proxies, session.verify, session.trust_env = found["proxies"], found["verify"], False
            self._sessions[idempotent] = session
        self._retry = retry
        self._use(token)

    def _use(self, token: str) -> None:
        self._token = token
        if token:
            for session in self._sessions.values():
                session.headers["Authorization"] = f"Bearer {token}"

    def _attempting(self) -> None:
        """Before each attempt, a retry's too: a slot of the rate budget (maybe waited for), then the time for the
        attempt, its timeout, before the request's AWS calls after it must start (adapters/aws.time_left). Without
        it, nothing is sent: the work waits (a copy comes back soon), rather than its AWS calls being refused, or a
        reward's request cut off midway."""
        self._gate.acquire()
        left = aws.time_left()
        if left < self.timeout:
            raise Deferred(f"{self.service} not called: {max(left, 0):.1f} s left of the function's time, and a call "
                           f"may take {self.timeout:g} s with the work's own write after it", retry_after=5)

    def ahead(self, calls: int) -> None:
        """The rate budget's slots for the next `calls` calls taken now (SharedLimiter.ahead)."""
        self._gate.ahead(calls)

    def idempotent(self, method: str, path: str) -> bool:
        for rules, answer in ((self.NOT_IDEMPOTENT, False), (self.IDEMPOTENT, True)):
            if any(m == method and re.fullmatch(p, path) for m, p in rules):
                return answer
        return method in SAFE_METHODS

    def request(self, method: str, path: str, *, json_body: Any = None,
                params: Optional[dict] = None, idempotent: Optional[bool] = None) -> requests.Response:
        try:
            return self._request(method, path, json_body, params, idempotent)
        except WorkError as exc:
            if exc.outage == self.service and exc.where is None:     # (not the rate budget's table's throttle)
                exc.where = self.base_url
            raise

    def _request(self, method: str, path: str, json_body: Any, params: Optional[dict],
                 idempotent: Optional[bool]) -> requests.Response:
        method = method.upper()
        safe = self.idempotent(method, path) if idempotent is None else idempotent

        def send() -> requests.Response:
            self._attempting()
            try:
                return self._sessions[safe].request(method, self.base_url + path, json=json_body, params=params,
                                                    timeout=self.timeout, allow_redirects=False)
            except requests.RequestException as exc:
                if not safe and not never_sent(exc):
                    raise Uncertain(f"{self.service} {method} {path}: no answer ({type(exc).__name__}); it may "
                                    "have been applied, so it is not sent again without looking first"
                                    ).unavailable(self.service) from None
                raise Transient(f"{self.service} unreachable after retries ({type(exc).__name__})"
                                ).unavailable(self.service) from None
        sent = self._token     # (the client is shared by a batch's threads: another may take a new token meanwhile)
        resp = send()
        if resp.status_code == 401 and self._reauth is not None:
            fresh = self._reauth(sent)             # rotated or reconnected since we read it?
            if fresh:
                self._use(fresh)
                resp = send()
        if resp.status_code < 500:             # an answer, not an outage's
            self._on_answer(self.service, self.base_url)
        if 300 <= resp.status_code < 400:      # redirects are not followed: the API's address is wrong
            reason = (f"{self.service} answered {resp.status_code} to {method} {path} (moved to "
                      f"{resp.headers.get('Location', '?')}): check its base URL")
            self._gate.answered(resp.status_code, reason)
            if not safe:
                raise Uncertain(f"{reason}; it may have been applied, so it is not sent again without looking first")
            raise Permanent(reason)
        if resp.status_code >= 400:
            error = self.error(resp)
            self._gate.answered(resp.status_code, error.reason)     # may open the circuit (raises)
            if resp.status_code >= 500 and not safe:
                raise Uncertain(f"{error.reason} (to {method} {path}, which may have been applied: it is not "
                                "sent again without looking first)", retry_after=error.retry_after,
                                status=error.status).unavailable(error.outage)
            raise error
        self._gate.answered(resp.status_code, "")
        return resp

    def call(self, method: str, path: str, **kw) -> Any:
        resp = self.request(method, path, **kw)
        return _json(resp)

    def error(self, resp: requests.Response) -> ApiError:
        # (a refusal quoting the token it was sent says *** instead: its words are logged, and kept in the dead
        # letter and the history)
        body = without(_json(resp) or {}, self._token)
        retry_after = None
        if resp.status_code in RETRY_STATUSES:
            retry_after = self._retry.get_retry_after(resp.raw) if resp.raw is not None else None
        said = without(self.message(body) or resp.reason or "error", self._token)
        return ApiError(self.service, resp.status_code, said, code=self.code(body), retry_after=retry_after,
                        headers=dict(resp.headers), body=body)

    @staticmethod
    def retry_later(exc: ApiError) -> Transient:
        """A retryable answer: a 429 is a wait (it uses up no try), a 5xx the vendor's outage (waited out)."""
        return (Deferred if exc.status == 429 else Transient)(exc.reason, retry_after=exc.retry_after,
                                                              status=exc.status).unavailable(exc.outage, exc.where)

    def message(self, body: Any) -> str:
        return str(body.get("message", "")) if isinstance(body, dict) else ""

    def code(self, body: Any) -> str:
        return ""


def without(answer: Any, secret: str) -> Any:
    """A vendor's `answer` (its JSON, or text) with `secret` (the token it was sent) as *** wherever it quotes it.
    A secret shorter than a token can be (a test's) is left: its letters would be starred out of every word."""
    if len(secret.strip()) < 8:
        return answer
    if isinstance(answer, str):
        return answer.replace(secret, "***")
    if isinstance(answer, list):
        return [without(value, secret) for value in answer]
    if isinstance(answer, dict):
        return {key: without(value, secret) for key, value in answer.items()}
    return answer


def _json(resp: requests.Response) -> Any:
    if not resp.content:
        return None
    try:
        return resp.json()
    except (ValueError, json.JSONDecodeError):
        return None
