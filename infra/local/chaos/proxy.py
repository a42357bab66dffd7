"""A fault-injecting HTTP proxy in front of one simulator (Intercom or Referral Factory).

Every request is forwarded to the simulator unless a fault says otherwise. Faults come from a
seeded RNG with a rate per kind, or from scripted rules (which win, and which can also run a
hook around forwarding, e.g. to SIGKILL the worker that sent the request). The kinds:

  not applied (the simulator never sees the request; retrying is safe):
    rate_limited    429 with ``Retry-After``
    server_error    500, 502 or 503
    stall_before    hold the request past the client's timeout, then close without an answer
  applied (the simulator did it; the client cannot know):
    applied_drop    forward, then close the connection without an answer
    applied_stall   forward, then hold the answer past the client's timeout
    applied_500     forward, then answer 500 instead of the simulator's answer

``counts`` holds how many of each were injected (random and scripted), ``events`` one dict per
faulted request. The proxy serves the simulator's URL prefix (e.g. ``/api/v2``) unchanged.
"""
from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections import Counter
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional
from urllib.parse import parse_qsl, urlsplit

NOT_APPLIED = ("rate_limited", "server_error", "stall_before")
APPLIED = ("applied_drop", "applied_stall", "applied_500")
KINDS = NOT_APPLIED + APPLIED
PASS = "pass"          # a scripted entry that lets one matching request through untouched
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te", "trailer",
        "upgrade", "server", "date"}


@dataclass
class ProxyRequest:
    method: str
    path: str                      # without the query
    query: dict
    headers: dict
    body: bytes
    client_port: int
    json: object = None
    target: str = ""               # the request line's target, as sent (path and query)


@dataclass
class Rule:
    """Scripted faults: each request matching `match` takes the next entry of `faults` (a kind or
    PASS) until none is left. `hook(request)`, a context manager, is entered for each as soon as it
    is read (its sender's connection is surely open then) and left once the simulator answered (for
    the applied kinds: once it applied the request), or once the request was refused without it."""

    name: str
    match: Callable[[ProxyRequest], bool]
    faults: list
    hook: Optional[Callable[[ProxyRequest], AbstractContextManager]] = None
    used: int = 0


def error_body(flavour: str, status: int) -> dict:
    """The service's own error shape, so the client reads our faults as it reads real ones."""
    if flavour == "intercom":
        code = {429: "rate_limit_exceeded", 500: "server_error", 502: "server_error",
                503: "service_unavailable"}.get(status, "error")
        return {"type": "error.list", "request_id": "fault-proxy", "errors": [
            {"code": code, "message": f"Injected fault ({status})"}]}
    return {"code": status, "message": "Too Many Attempts." if status == 429 else "Injected fault."}


@dataclass
class FaultProxy:
    target_url: str                          # the simulator's base URL (with its prefix)
    rates: dict = field(default_factory=dict)  # kind -> probability per request
    seed: int = 0
    stall: float = 2.0                       # seconds: set past the client's timeout
    retry_after: int = 1
    flavour: str = "intercom"                # error bodies: "intercom" | "rf"
    exempt: Optional[Callable[[ProxyRequest], bool]] = None   # never given a random fault
    sleeper: Callable[[float], None] = time.sleep              # how a stall waits (tests hold it)

    def __post_init__(self):
        unknown = set(self.rates) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {KINDS}")
        if sum(self.rates.values()) > 1:
            raise ValueError("fault rates add up to more than 1")
        parts = urlsplit(self.target_url)
        self._host, self._port, self._prefix = parts.hostname, parts.port, parts.path.rstrip("/")
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self.rules: list[Rule] = []
        self.counts: Counter = Counter()           # kind -> injected (random + scripted)
        self.scripted: Counter = Counter()         # kind -> of which scripted
        self.events: list[dict] = []
        self.forwarded = 0
        self.requests = 0
        self._server: Optional[ThreadingHTTPServer] = None
        self.url: Optional[str] = None
        self._busy = 0
        self._idle = threading.Condition(self._lock)

    # ---- lifecycle --------------------------------------------------------------------
    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(_Handler):
            pass
        Handler.proxy = proxy
        server = _Server(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.request_queue_size = 128
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                         name=f"fault-proxy-{self.flavour}").start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}{self._prefix}"
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no request is being handled (a stalled one included)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def _enter(self) -> None:
        with self._lock:
            self._busy += 1

    def _leave(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    # ---- faults ----------------------------------------------------------------------
    def script(self, rule: Rule) -> Rule:
        unknown = set(rule.faults) - set(KINDS) - {PASS}
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        with self._lock:
            self.rules.append(rule)
        return rule

    def decide(self, req: ProxyRequest) -> tuple[Optional[str], Optional[Rule], Optional[int]]:
        """(fault kind or None, the scripted rule that chose it, the 5xx status for server_error)."""
        with self._lock:
            self.requests += 1
            for rule in self.rules:
                if rule.used < len(rule.faults) and rule.match(req):
                    kind = rule.faults[rule.used]
                    rule.used += 1
                    kind = None if kind == PASS else kind
                    status = self._rng.choice((500, 502, 503)) if kind == "server_error" else None
                    if kind:
                        self.counts[kind] += 1
                        self.scripted[kind] += 1
                    return kind, rule, status
            if self.exempt is not None and self.exempt(req):
                return None, None, None
            draw, acc = self._rng.random(), 0.0
            for kind in KINDS:
                acc += self.rates.get(kind, 0.0)
                if draw < acc:
                    self.counts[kind] += 1
                    status = self._rng.choice((500, 502, 503)) if kind == "server_error" else None
                    return kind, None, status
            return None, None, None

    def note(self, req: ProxyRequest, kind: str, rule: Optional[Rule], status: Optional[int]) -> None:
        with self._lock:
            self.events.append({"t": time.time(), "kind": kind, "method": req.method, "path": req.path,
                                "json": req.json, "rule": rule.name if rule else None, "status": status})

    # ---- forwarding ------------------------------------------------------------------
    def forward(self, req: ProxyRequest) -> tuple[int, list, bytes]:
        conn = http.client.HTTPConnection(self._host, self._port, timeout=60)
        try:
            headers = {k: v for k, v in req.headers.items() if k.lower() not in _HOP and k.lower() != "host"}
            conn.request(req.method, req.target, body=req.body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            with self._lock:
                self.forwarded += 1
            return resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP], data
        finally:
            conn.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client closing a kept-alive connection
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: FaultProxy

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def _handle(self) -> None:
        self.proxy._enter()
        try:
            self._proxy()
        finally:
            self.proxy._leave()

    def _proxy(self) -> None:
        proxy = self.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        req = ProxyRequest(self.command, split.path, dict(parse_qsl(split.query, keep_blank_values=True)),
                           dict(self.headers.items()), body, self.client_address[1], parsed, self.path)
        kind, rule, status = proxy.decide(req)
        if kind:
            proxy.note(req, kind, rule, status)
        with rule.hook(req) if rule is not None and rule.hook is not None else nullcontext():
            if kind == "rate_limited":
                return self._answer(429, [("Retry-After", str(proxy.retry_after))],
                                    json.dumps(error_body(proxy.flavour, 429)).encode(), "application/json")
            if kind == "server_error":
                return self._answer(status, [], json.dumps(error_body(proxy.flavour, status)).encode(),
                                    "application/json")
            if kind == "stall_before":
                proxy.sleeper(proxy.stall)
                self.close_connection = True
                return None
            try:
                code, headers, data = proxy.forward(req)
            except OSError:
                return self._answer(502, [], b'{"message": "fault proxy: simulator unreachable"}',
                                    "application/json")
        if kind == "applied_drop":
            self.close_connection = True
            return None
        if kind == "applied_stall":
            proxy.sleeper(proxy.stall)
        if kind == "applied_500":
            return self._answer(500, [], json.dumps(error_body(proxy.flavour, 500)).encode(), "application/json")
        return self._answer(code, headers, data, None)

    def _answer(self, status: int, headers: list, data: bytes, ctype: Optional[str]) -> None:
        try:
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            if ctype:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            self.wfile.flush()
        except OSError:   # the client gave up (a stall past its timeout): nothing to answer
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle
