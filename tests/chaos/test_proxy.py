"""The fault proxy: what each fault does to a client and to the simulator behind it. Stalls wait on
a gate the test opens (no sleeping); the client's own timeout is the only real wait (0.2 s)."""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from infra.local.chaos.processes import Workers, kill_sender, pid_of_connection
from infra.local.chaos.proxy import KINDS, PASS, FaultProxy, Rule
from infra.local.sims.referral_factory import RFSim

QUALIFY = "/users/qualification"


class Gate:
    """A stall that lasts until the test opens it."""

    def __init__(self):
        self.opened = threading.Event()
        self.waiting = threading.Semaphore(0)

    def __call__(self, seconds):
        self.waiting.release()
        self.opened.wait(10)


@pytest.fixture
def rf():
    sim = RFSim().start()
    sim.add_campaign(7, "Spring")
    user = sim.add_user(7, "ann@example.com", "Ann", referrer_id=sim.add_user(7, "rita@example.com", "Rita")["id"])
    sim.user = user
    yield sim
    sim.stop()


@pytest.fixture
def gate():
    g = Gate()
    yield g
    g.opened.set()


@pytest.fixture
def proxy(rf, gate):
    p = FaultProxy(rf.base_url, flavour="rf", retry_after=3, sleeper=gate).start()
    yield p
    gate.opened.set()
    p.stop()


def put(proxy, rf, timeout=5.0):
    return requests.put(proxy.url + QUALIFY, json={"id": rf.user["id"], "qualified": True},
                        headers={"Authorization": "Bearer rf-token"}, timeout=timeout)


def script(proxy, *faults, **kw):
    return proxy.script(Rule("t", lambda req: req.path.endswith(QUALIFY), list(faults), **kw))


def test_without_faults_the_simulator_answers_through_the_proxy(proxy, rf):
    r = put(proxy, rf)
    assert r.status_code == 200 and r.json()["data"]["qualified_at"]
    assert proxy.url.endswith("/api/v2") and rf.count("PUT", QUALIFY) == 1
    assert sum(proxy.counts.values()) == 0 and proxy.forwarded == 1


def test_429_with_retry_after_never_reaches_the_simulator(proxy, rf):
    script(proxy, "rate_limited")
    r = put(proxy, rf)
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    assert r.json() == {"code": 429, "message": "Too Many Attempts."}
    assert rf.count() == 0 and rf.qualified == {}


def test_5xx_never_reaches_the_simulator(proxy, rf):
    script(proxy, "server_error")
    assert put(proxy, rf).status_code in (500, 502, 503)
    assert rf.count() == 0


def test_a_stall_before_the_simulator_times_the_client_out_and_never_forwards(proxy, rf, gate):
    script(proxy, "stall_before")
    with pytest.raises(requests.ReadTimeout):
        put(proxy, rf, timeout=0.2)
    gate.opened.set()
    assert proxy.wait_idle()
    assert rf.count() == 0 and proxy.forwarded == 0


def test_applied_then_dropped_the_client_sees_the_connection_close(proxy, rf):
    script(proxy, "applied_drop")
    with pytest.raises(requests.ConnectionError):
        put(proxy, rf)
    assert rf.count("PUT", QUALIFY) == 1 and rf.qualified   # applied all the same


def test_applied_then_stalled_the_client_times_out(proxy, rf, gate):
    script(proxy, "applied_stall")
    with pytest.raises(requests.ReadTimeout):
        put(proxy, rf, timeout=0.2)
    assert gate.waiting.acquire(timeout=5)                   # the stall began after forwarding
    assert rf.count("PUT", QUALIFY) == 1 and rf.qualified


def test_applied_then_500(proxy, rf):
    script(proxy, "applied_500")
    r = put(proxy, rf)
    assert r.status_code == 500 and rf.qualified


def test_scripted_faults_are_used_in_order_then_requests_pass(proxy, rf):
    rule = script(proxy, "applied_500", PASS, "rate_limited")
    assert [put(proxy, rf).status_code for _ in range(4)] == [500, 200, 429, 200]
    assert rule.used == 3 and proxy.scripted["applied_500"] == 1 and proxy.counts["rate_limited"] == 1
    assert [e["kind"] for e in proxy.events] == ["applied_500", "rate_limited"]


def test_a_hook_is_entered_before_forwarding_and_left_after_the_simulator_applied(proxy, rf):
    seen = []

    @contextlib.contextmanager
    def hook(req):
        seen.append(("entered", rf.count("PUT", QUALIFY)))
        yield
        seen.append(("left", rf.count("PUT", QUALIFY)))
    script(proxy, PASS, hook=hook)
    put(proxy, rf)
    assert seen == [("entered", 0), ("left", 1)]


def test_random_faults_follow_the_seed(rf):
    def kinds(seed):
        p = FaultProxy(rf.base_url, rates={"rate_limited": 0.3, "server_error": 0.3}, seed=seed, flavour="rf")
        p.start()
        try:
            return [put(p, rf).status_code for _ in range(30)]
        finally:
            p.stop()
    first, again, other = kinds(5), kinds(5), kinds(6)
    assert first == again and first != other
    assert {s for s in first} - {200, 429, 500, 502, 503} == set() and 200 in first and 429 in first


def test_rates_are_checked():
    with pytest.raises(ValueError):
        FaultProxy("http://127.0.0.1:1", rates={"nope": 0.1})
    with pytest.raises(ValueError):
        FaultProxy("http://127.0.0.1:1", rates={k: 0.2 for k in KINDS})


def test_the_process_that_sent_a_request_is_found_by_its_port(proxy, rf):
    found = []

    @contextlib.contextmanager
    def hook(req):
        found.append(pid_of_connection(req.client_port, proxy.port, [1, os.getpid()]))
        yield
    script(proxy, PASS, hook=hook)
    put(proxy, rf)
    assert found == [os.getpid()]


# A worker that sends one request with a short timeout, reports that it gave up (as a failed batch), and
# lives on until it is killed.
GIVES_UP = """
import os, signal, requests
status = os.fdopen(int(os.environ["CHAOS_STATUS_FD"]), "w", buffering=1)
status.write("R\\nB 1\\n")
try:
    requests.put(os.environ["PROXY_URL"], json={}, timeout=0.2)
    status.write("E 1 1\\n")
except requests.RequestException:
    status.write("E 0 1\\n")
signal.pause()
"""


@pytest.fixture
def slow_simulator(gate):
    """A simulator that answers once the test opens the gate."""
    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            gate.opened.wait(10)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    gate.opened.set()
    server.shutdown()
    server.server_close()


def test_a_worker_killed_after_the_answer_is_the_one_that_sent_it_even_if_it_gave_up_waiting(
        slow_simulator, gate, tmp_path):
    """A loaded machine (the chaos run in CI): the simulator answers after the worker's timeout, and a
    random kill comes meanwhile. The scripted kill still takes the worker that sent the request."""
    proxy = FaultProxy(slow_simulator).start()
    workers = Workers(1, {**os.environ, "PROXY_URL": proxy.url + QUALIFY}, tmp_path,
                      command=(sys.executable, "-c", GIVES_UP))
    log: list = []
    script(proxy, PASS, hook=kill_sender(workers, proxy, "crash_after_create", log, after=True))
    try:
        workers.start().wait_ready()
        [sender] = workers.pids
        deadline = time.monotonic() + 30      # (under make test's load it took over 10 s)
        while workers.failed_batches == 0 and time.monotonic() < deadline:   # it gave up: its connection closed
            time.sleep(0.02)
        assert workers.failed_batches == 1
        assert workers.kill(why="random") is None      # its kill is pending: no random kill takes it
        gate.opened.set()
        assert proxy.wait_idle()
    finally:
        workers.stop()
        proxy.stop()
    assert [(k["pid"], k["why"]) for k in workers.kills] == [(sender, "crash_after_create")]
    assert log == [{"probe": "crash_after_create", "pid": sender, "killed": True}]
