"""Shared machinery for the local HTTP simulators (Intercom, Referral Factory).

A :class:`SimServer` runs a real HTTP server on 127.0.0.1 (random free port) in a background thread,
on HTTP/1.1 connections kept open as the vendors keep them (infra/local/keepalive.py: the worker's
requests sessions reuse their connections; an answer lost by ``"drop"`` cuts its connection). Subclasses declare ``ROUTES`` (method, path regex, handler method name) and
a few hooks; this module provides the request log, fault injection, the fixed-window rate
limiter (driven by the injectable ``clock``) and the optional ``validator`` of
requests and ``answer_validator`` of the answers (each finding goes to ``contract_violations``).

Faults (for the client's retry and "look before re-sending" paths):

* before the request reaches the simulator, which never applies it: ``fail_next`` (an error
  answer), ``delay_next`` (a stall before handling);
* after the simulator applied it, so the client cannot know: ``lose_answer_next`` drops the
  connection without an answer (``"drop"``), stalls past the client's timeout before answering
  (``"stall"``), or answers 500 instead of the real answer (``"500"``). The log entry keeps the
  real status and says ``"lost": how``.

Faults can also be set over HTTP while the simulator runs (``make fault``, infra/local/fault.py):
``/_sim/...`` on the simulator's host, outside its API (never logged, rate-limited or faulted):

* ``GET /_sim/faults``: the faults pending; ``DELETE /_sim/faults``: ``clear_faults``;
* ``POST /_sim/faults`` ``{"status": 503 | 429 | 401 | ..., "retry_after": s}`` (``fail_next``) or
  ``{"lose": "drop" | "500"}`` (``lose_answer_next``), with ``"times": n`` (default 1) or ``"seconds": s``
  (every call for that long, on the simulator's clock), optional ``"method"`` (default any) and ``"path"``
  (a regex searched in the API path; default any);
* ``POST /_sim/token`` ``{"token": new}`` (default: a new random one): the simulator accepts only that
  token from now on (``use_token``); answers ``{"token": new, "refused": [the tokens it accepted]}``;
  ``GET /_sim/token``: ``{"tokens": [the tokens it accepts]}`` (``make demo`` plays with them);
* ``GET /_sim/log`` (read only), optional ``?method=PUT&path=<regex>&user=<id>&last=<n>``: the API calls
  received, ``{"received": how many matched, "calls": [the last n (default 50, at most 1000) of them, oldest
  first: {"time", "method", "path", "status", "lost" (if its answer was lost), "user" (whom the call is
  about, when the simulator can tell: ``user_of``)}]}``, e.g. how many qualifications of a user RF was sent.

Rate limits: fixed windows of ``window_seconds``, starting at ``window_offset`` (plus multiples);
``spend_elsewhere(n)`` counts ``n`` calls of another client of the same account at the start of
every window. ``busiest(seconds)`` is the most requests the simulator received in any span of
that length, wherever it starts.

Handlers are called with the lock held and return ``(status, body)`` or
``(status, body, headers)``; ``body`` is JSON-encoded unless it is ``bytes``/``str``/``None``.

Request log entries (``sim.requests``) are dicts::

    {"method", "path" (relative to the sim's url prefix; "!<path>" when outside it),
     "query" (dict of str, first value),
     "headers" (dict), "json" (parsed body or None), "body" (raw bytes), "time" (clock()),
     "status" (answered status), "lost" (how the answer was lost, by `lose_answer_next`)}
"""
from __future__ import annotations

import copy
import json
import math
import re
import secrets
import socket
import threading
import time
from urllib.parse import parse_qsl

from werkzeug.wrappers import Request, Response

from ..keepalive import KeepAliveServer


LOG_LAST = 1000             # GET /_sim/log shows at most this many calls


def clone(value):
    """A deep copy of JSON-like data (what the simulators keep and hand out), four times faster than
    copy.deepcopy on a contact; anything else is deep-copied."""
    kind = type(value)
    if kind is dict:
        return {k: clone(v) for k, v in value.items()}
    if kind is list:
        return [clone(v) for v in value]
    if kind in _ATOMS:
        return value
    return copy.deepcopy(value)


_ATOMS = (str, int, float, bool, type(None))


def busiest(times: list[float], span: float) -> int:
    """The most of `times` inside any span of `span` seconds, wherever it starts."""
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while times[first] <= at - span:
            first += 1
        most = max(most, last - first + 1)
    return most


class SimServer:
    url_prefix = ""          # e.g. "/api/v2": served routes live under it
    window_seconds = 60      # rate-limit window length (seconds of the injected clock)
    default_rate_limit = None
    ROUTES: list = []        # [(method, path_regex, handler_name)]; first match wins
    public_paths: tuple = ()  # path regexes that need no Authorization
    token_prefix = "token"   # POST /_sim/token without a token: a new one, "<prefix>-<random>"

    def __init__(self, clock=time.time, validator=None, answer_validator=None):
        self.clock = clock
        self.validator, self.answer_validator = validator, answer_validator
        self.lock = threading.RLock()
        self.requests: list[dict] = []
        self.contract_violations: list[dict] = []
        self.rate_limit = self.default_rate_limit
        self.window_offset = 0.0     # the rate windows start at offset + k * window_seconds
        self.elsewhere = 0           # calls another client of the account makes at every window's start
        self.base_url = None
        self._faults: list[dict] = []
        self._window = (None, 0)   # (window start, requests counted in it)
        self._server = None
        self._routes = [(m, re.compile(p + r"\Z"), getattr(self, h)) for m, p, h in self.ROUTES]

    # ---- lifecycle -------------------------------------------------------------------
    def start(self, port=0, host="127.0.0.1"):
        """Serve in a background thread (port 0 = a free port); sets ``base_url``."""
        # The answers' Date is the simulator's clock, as a vendor's is its own (a test may give it another clock).
        self._server = KeepAliveServer(self._wsgi, host, port, name=type(self).__name__,
                                       clock=lambda: self.clock(), poll_interval=0.01)
        self._server.start()
        self.base_url = f"http://{host}:{self._server.get_host_and_port()[1]}{self.url_prefix}"
        return self

    def stop(self):
        """Stop serving: the connections kept open are closed too (nothing answers at the address any more)."""
        if self._server:
            self._server.stop()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- test helpers ----------------------------------------------------------------
    def count(self, method=None, path_prefix=""):
        """Number of logged requests with this method (None = any) whose path starts so."""
        with self.lock:
            return sum(1 for r in self.requests
                       if (method is None or r["method"] == method.upper())
                       and r["path"].startswith(path_prefix))

    def fail_next(self, method, path_regex, status, body=None, headers=None, times=1, seconds=None):
        """Answer the next `times` matching requests (re.search on the path) with `status`; with
        `seconds`, every matching request for that long (of the simulator's clock) instead."""
        return self._add_fault("fail", method, path_regex, times, status=status, body=body,
                               headers=headers or {}, until=self._until(seconds))

    def delay_next(self, method, path_regex, seconds, times=1):
        """Sleep `seconds` (real time) before answering the next `times` matching requests."""
        return self._add_fault("delay", method, path_regex, times, seconds=seconds)

    def lose_answer_next(self, method, path_regex, how="drop", times=1, seconds=1.0, for_seconds=None):
        """Apply the next `times` matching requests, then lose the answer: "drop" closes the
        connection without one, "stall" holds it `seconds` (real time) before answering, "500"
        answers 500 instead. With `for_seconds`: every matching request for that long instead."""
        if how not in ("drop", "stall", "500"):
            raise ValueError(f"how must be drop, stall or 500, not {how!r}")
        return self._add_fault("lose", method, path_regex, times, how=how, seconds=seconds,
                               until=self._until(for_seconds))

    def spend_elsewhere(self, calls):
        """Another client of the same account spends `calls` of every rate window, at its start."""
        with self.lock:
            self.elsewhere = calls
            self._window = (None, 0)

    def busiest(self, seconds=None):
        """The most requests received in any span of `seconds` (default: the rate window)."""
        span = self.window_seconds if seconds is None else seconds
        with self.lock:
            times = [r["time"] for r in self.requests]
        return busiest(times, span)

    def clear_faults(self):
        """Drop every injected fault (the outage is over); how many were still pending."""
        with self.lock:
            pending = sum(map(self._pending, self._faults))
            self._faults.clear()
            return pending

    def faults(self):
        """The faults still pending, described (see `_describe`)."""
        with self.lock:
            return [self._describe(f) for f in self._faults if self._pending(f)]

    def _describe(self, f):
        """A fault: kind, method, path, calls left (None: timed) or seconds left (None: counted), and the
        status (with its Retry-After) or how the answer is lost."""
        return {"kind": f["kind"], "method": f["method"], "path": f["regex"].pattern,
                "times": None if f["until"] is not None else f["times"],
                "seconds_left": None if f["until"] is None else round(f["until"] - self.clock(), 3),
                **{k: f[k] for k in ("status", "how") if k in f},
                **({"retry_after": f["headers"]["Retry-After"]} if "Retry-After" in f.get("headers", {}) else {})}

    def use_token(self, token):
        """Accept only `token` from now on (a revoked token, rotated); the tokens accepted until now."""
        raise NotImplementedError

    def tokens_accepted(self):
        raise NotImplementedError

    def _until(self, seconds):
        return None if seconds is None else self.clock() + seconds

    def _pending(self, f):
        return f["times"] > 0 and (f.get("until") is None or self.clock() < f["until"])

    def _add_fault(self, kind, method, path_regex, times, until=None, **kw):
        fault = dict(kind=kind, method=method.upper(), regex=re.compile(path_regex),
                     times=math.inf if until is not None else times, until=until, **kw)
        with self.lock:
            self._faults.append(fault)
        return fault

    def _take_fault(self, kind, rec):
        with self.lock:
            self._faults = [f for f in self._faults if self._pending(f)]     # spent or expired: gone
            for f in self._faults:
                if (f["kind"] == kind and f["method"] in (rec["method"], "*")
                        and f["regex"].search(rec["path"])):
                    f["times"] -= 1
                    return f
        return None

    # ---- control over HTTP (/_sim/...) -----------------------------------------------
    def _control(self, method, path, body, query=None):
        """(status, body) of a /_sim/ request: see the module docstring."""
        if path == "/_sim/log" and method == "GET":
            try:
                return 200, self._log(**(query or {}))
            except (TypeError, ValueError, re.error) as exc:
                return 400, {"error": str(exc)}
        if path == "/_sim/faults" and method == "GET":
            return 200, {"faults": self.faults()}
        if path == "/_sim/faults" and method == "DELETE":
            return 200, {"cleared": self.clear_faults()}
        if path == "/_sim/faults" and method == "POST":
            try:
                return 201, self._fault_from(body if isinstance(body, dict) else {})
            except (TypeError, ValueError, re.error) as exc:
                return 400, {"error": str(exc)}
        if path == "/_sim/token" and method == "GET":
            return 200, {"tokens": sorted(self.tokens_accepted())}
        if path == "/_sim/token" and method == "POST":
            token = (body or {}).get("token") if isinstance(body, dict) else None
            if token is not None and not (isinstance(token, str) and token.strip()):
                return 400, {"error": "token must be a non-empty string"}
            token = token or f"{self.token_prefix}-{secrets.token_hex(4)}"
            return 200, {"token": token, "refused": sorted(self.use_token(token))}
        return 404, {"error": f"no {method} {path}: GET|POST|DELETE /_sim/faults, GET|POST /_sim/token, GET /_sim/log"}

    def _log(self, method="*", path="", last="50", user=None):
        """The calls received (`method`, a `path` regex searched in the API path, about `user`), the `last` of them."""
        if not last.isdigit() or not 1 <= int(last) <= LOG_LAST:
            raise ValueError(f"last must be a whole number of calls, 1 to {LOG_LAST}")
        rx = re.compile(path)
        with self.lock:
            found = [{**{k: r[k] for k in ("time", "method", "path", "status", "lost") if k in r},
                      **({"user": whom} if whom is not None else {})}
                     for r in self.requests if method.upper() in ("*", r["method"]) and rx.search(r["path"])
                     for whom in [self.user_of(r)] if user is None or whom == user]
        return {"received": len(found), "calls": found[-int(last):]}

    def _fault_from(self, spec):
        unknown = set(spec) - {"status", "lose", "times", "seconds", "method", "path", "retry_after"}
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
        times, seconds = spec.get("times", 1), spec.get("seconds")
        if not isinstance(times, int) or isinstance(times, bool) or times < 1:
            raise ValueError("times must be a whole number of calls, at least 1")
        if seconds is not None and (not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds <= 0):
            raise ValueError("seconds must be a positive number")
        method, path = str(spec.get("method", "*")), str(spec.get("path", ""))
        status, lose = spec.get("status"), spec.get("lose")
        if (status is None) == (lose is None):
            raise ValueError('give either "status" (400-599) or "lose" ("drop" or "500")')
        if lose is not None:
            if lose not in ("drop", "500"):
                raise ValueError('lose must be "drop" or "500"')
            fault = self.lose_answer_next(method, path, how=lose, times=times, for_seconds=seconds)
        else:
            if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
                raise ValueError("status must be an HTTP error status, 400-599")
            after = spec.get("retry_after")
            if after is not None and not (isinstance(after, int) and not isinstance(after, bool) and after >= 0):
                raise ValueError("retry_after must be a whole number of seconds")
            fault = self.fail_next(method, path, status, headers={} if after is None else {"Retry-After": after},
                                   times=times, seconds=seconds)
        with self.lock:
            return self._describe(fault)

    # ---- hooks for subclasses --------------------------------------------------------
    def error_body(self, status, message, code=None):
        raise NotImplementedError

    def rate_limited(self, now, window_end):
        """The answer when over the rate limit."""
        raise NotImplementedError

    def common_headers(self, now, window_end, used):
        """Headers added to every answer."""
        return {}

    def gate(self, rec):
        """A response that overrides everything else (e.g. IP blocked), or None."""
        return None

    def on_excess(self, window_start):
        """Called for every request refused by the rate limiter."""

    def authorized(self, rec):
        return True

    def user_of(self, rec):
        """Whom a logged call is about (a user id of the API), or None: `GET /_sim/log?user=` selects by it."""
        return None

    def unauthorized(self):
        return 401, self.error_body(401, "Unauthorized")

    # ---- request handling ------------------------------------------------------------
    @staticmethod
    def bearer(rec):
        auth = rec["headers"].get("Authorization", "")
        return auth[7:].strip() if auth[:7].lower() == "bearer " else None

    @staticmethod
    def form(rec):
        return dict(parse_qsl(rec["body"].decode("utf-8", "replace"), keep_blank_values=True))

    def _wsgi(self, environ, start_response):
        req = Request(environ)
        raw = req.get_data()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        if req.path.startswith("/_sim/"):
            status, answer = self._control(req.method, req.path, parsed, dict(req.args.items()))
            return Response(json.dumps(answer), status=status,
                            content_type="application/json")(environ, start_response)
        path = req.path
        if self.url_prefix and path.startswith(self.url_prefix + "/"):
            path = path[len(self.url_prefix):]
        elif self.url_prefix:
            path = "!" + path  # outside the prefix: never routed
        rec = dict(method=req.method, path=path, query={k: v for k, v in req.args.items()},
                   headers=dict(req.headers), json=parsed, body=raw, time=self.clock(), status=None)
        with self.lock:
            self.requests.append(rec)
        if self.validator is not None:
            errors = self.validator(rec["method"], req.path, dict(rec["query"]),
                                    dict(rec["headers"]), raw)
            if errors:
                with self.lock:
                    self.contract_violations.append(
                        dict(method=rec["method"], path=req.path, errors=list(errors)))
        delay = self._take_fault("delay", rec)
        if delay:
            time.sleep(delay["seconds"])
        status, body, headers = self._answer(rec)
        rec["status"] = status
        lose = self._take_fault("lose", rec) if status < 400 else None
        if lose:
            rec["lost"] = lose["how"]
            if lose["how"] == "drop":        # applied; the client gets no answer at all, its connection is cut
                environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
                raise ConnectionAbortedError("answer dropped (injected)")
            if lose["how"] == "stall":       # applied; the answer comes after the client gave up
                time.sleep(lose["seconds"])
            else:
                status, body, headers = 500, self.error_body(500, "Injected failure after applying"), {}
        if isinstance(body, (dict, list)):
            body, ctype = json.dumps(body).encode(), "application/json"
        else:
            ctype = "application/json" if body else "text/plain"
        resp = Response(body or b"", status=status, content_type=ctype)
        for k, v in headers.items():
            resp.headers[k] = str(v)
        if self.answer_validator is not None:
            errors = self.answer_validator(rec["method"], req.path, status, dict(resp.headers), body or b"")
            if errors:
                with self.lock:
                    self.contract_violations.append(dict(method=rec["method"], path=req.path, status=status,
                                                         errors=list(errors)))
        return resp(environ, start_response)

    def _answer(self, rec):
        with self.lock:
            now = self.clock()
            start = math.floor((now - self.window_offset) / self.window_seconds) * self.window_seconds \
                + self.window_offset
            if self._window[0] != start:
                self._window = (start, self.elsewhere)
            used = self._window[1] + 1
            self._window = (start, used)
            end = start + self.window_seconds
            over = self.rate_limit is not None and used > self.rate_limit
            if over:
                self.on_excess(start)
            result = self.gate(rec)
            fault = self._take_fault("fail", rec) if result is None else None
            if fault:
                body = fault["body"]
                result = (fault["status"],
                          self.error_body(fault["status"], "Injected failure") if body is None else body,
                          fault["headers"])
            if result is None and over:
                result = self.rate_limited(now, end)
            if result is None:
                result = self._route(rec)
            status, body, *rest = result
            headers = {**self.common_headers(now, end, used), **(rest[0] if rest else {})}
            return status, body, headers

    def _route(self, rec):
        public = any(re.match(p + r"\Z", rec["path"]) for p in self.public_paths)
        if not public and not self.authorized(rec):
            return self.unauthorized()
        for method, rx, handler in self._routes:
            m = rx.match(rec["path"])
            if m and method == rec["method"]:
                if rec["body"] and rec["json"] is None and \
                        "json" in rec["headers"].get("Content-Type", ""):
                    return 400, self.error_body(400, "Invalid JSON body", "parameter_invalid")
                return handler(rec, **m.groupdict())
        return 404, self.error_body(404, "Resource Not Found", "not_found")
