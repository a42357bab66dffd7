"""The local moto server's transport (infra/local/moto_http.py): kept-alive connections, and a request whose client
closed its connection before the end of its body (a worker killed between urllib3's send of the headers and of the
body) never reaches moto cut short. The handler runs on the server's end of a loopback connection, in the test's thread."""
from __future__ import annotations

import json
import socket
import time
from types import SimpleNamespace

import pytest

from infra.local.keepalive import _Handler
from infra.local.moto_http import KeepAliveMotoServer

BODY = json.dumps({"TransactItems": [{"Put": {"TableName": "t", "Item": {"pk": {"S": "a"}}}}]}).encode()
HEAD = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.0\r\n"
        b"X-Amz-Target: DynamoDB_20120810.TransactWriteItems\r\n")


def recording(given: list[bytes]):
    """A WSGI application that keeps each body it is given and answers `{}` (a HEAD: the size a GET would have)."""
    def app(environ, start_response):
        given.append(environ["wsgi.input"].read())
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "1000")]
                       if environ["REQUEST_METHOD"] == "HEAD" else [("Content-Type", "application/json")])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [b"{}"]
    return app


def served(*requests: bytes, app=None) -> tuple[list[bytes], bytes]:
    """Send `requests` on one connection, then close its sending side; the bodies the application (`recording`
    unless given) was given and what the client got back."""
    given: list[bytes] = []
    app = app or recording(given)

    with socket.create_server(("127.0.0.1", 0)) as listening:
        theirs = socket.create_connection(listening.getsockname())
        ours, _ = listening.accept()
    with ours, theirs:
        theirs.sendall(b"".join(requests))
        theirs.shutdown(socket.SHUT_WR)            # the client is gone (killed): its kernel closed the socket
        _Handler(ours, ("127.0.0.1", 1), SimpleNamespace(app=app, server_address=("127.0.0.1", 4566), stopped=False,
                                                              name="moto", clock=time.time))
        ours.shutdown(socket.SHUT_WR)
        answers = b"".join(iter(lambda: theirs.recv(65536), b""))
    return given, answers


def whole(body: bytes = BODY) -> bytes:
    return HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body


def chunked(body: bytes, *, last: bool = True) -> bytes:
    return HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n" + b"0\r\n\r\n" * last


def test_requests_on_one_kept_connection_are_each_answered():
    given, answers = served(whole(), whole(b"{}"))
    assert given == [BODY, b"{}"] and answers.count(b"HTTP/1.1 200") == 2 and b"Connection: close" not in answers


@pytest.mark.parametrize("cut", [0, 20, len(BODY) - 1])
def test_a_body_cut_short_by_its_client_closing_never_reaches_moto(cut):
    given, answers = served(whole()[:len(whole()) - len(BODY) + cut])
    assert given == [] and answers == b""


def test_a_chunked_body_whose_client_closed_before_its_last_chunk_never_reaches_moto():
    assert served(chunked(BODY, last=False))[0] == []
    assert served(chunked(BODY))[0] == [BODY]


def test_a_head_answer_keeps_the_size_a_get_would_have():
    given, answers = served(b"HEAD /bucket/key HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert b"Content-Length: 1000\r\n" in answers and answers.endswith(b"\r\n\r\n")


def test_an_application_that_fails_answers_500_and_the_connection_serves_the_next_request():
    calls: list[bytes] = []

    def failing_once(environ, start_response):
        if not calls:
            calls.append(b"failed")
            raise KeyError("a bug")
        return recording(calls)(environ, start_response)
    _, answers = served(whole(), whole(), app=failing_once)
    assert answers.startswith(b"HTTP/1.1 500") and b"moto failed" in answers and answers.count(b"HTTP/1.1 200") == 1
    assert calls == [b"failed", BODY]


def test_an_application_that_cuts_its_connection_gets_no_answer_sent_and_nothing_more_read():
    """A simulator losing an answer after applying the request (infra/local/sims/base.py, "drop"): the request behind
    it on the connection never reaches the application."""
    calls: list[str] = []

    def cutting(environ, start_response):
        calls.append(environ["PATH_INFO"])
        raise ConnectionAbortedError("answer dropped")
    _, answers = served(whole(), whole(), app=cutting)
    assert answers == b"" and calls == ["/"]


@pytest.fixture
def server():
    running = KeepAliveMotoServer()
    given: list[bytes] = []
    running._server.app = recording(given)
    running.start()
    yield running, given
    running.stop()


def test_the_interim_100_continue_leaves_before_the_body_is_sent(server):
    """botocore sends an S3 upload's body only after it (or after waiting a second): the interim answer is flushed."""
    running, given = server
    with socket.create_connection(running.get_host_and_port(), timeout=5) as client:
        client.sendall(HEAD + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(BODY))
        assert client.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n")      # (a timeout: it was held back)
        client.sendall(BODY)
        assert client.recv(65536).startswith(b"HTTP/1.1 200") and given == [BODY]


def test_a_stopped_server_answers_no_more_on_the_connections_kept_open(server):
    """A test that stops moto to stand for AWS being unreachable must see it so on botocore's kept connections too."""
    running, given = server
    with socket.create_connection(running.get_host_and_port(), timeout=5) as client:
        client.sendall(whole())
        assert client.recv(65536).startswith(b"HTTP/1.1 200")
        running.stop()
        client.sendall(whole())
        assert client.recv(65536) == b"" and given == [BODY]


def test_the_listen_queue_is_werkzeugs_so_many_clients_connecting_at_once_wait_for_no_retransmission(server):
    """A listen queue of 5 (socketserver's default) made the sixth of 30 workers connecting at once wait ~1 s for
    its SYN to be sent again; werkzeug's queue is 128."""
    running, _ = server
    assert running._server.request_queue_size >= 128


@pytest.mark.parametrize("kind", ["moto and the simulators", "the API"])
def test_a_client_gone_before_its_answer_is_written_prints_no_traceback_and_a_failure_of_ours_still_does(
        capsys, kind):
    """An operator's Ctrl-C of `make run` (README: "with no traceback") printed socketserver's "Exception occurred
    during processing of request" and a BrokenPipeError's traceback: a connection's client was gone as its answer
    was flushed. As werkzeug's server did, a client gone is nothing to report; any other error still is."""
    from infra.local.http import _ApiServer
    from infra.local.keepalive import _Server

    server = (_Server if kind == "moto and the simulators" else _ApiServer)(("127.0.0.1", 0), _Handler)
    try:
        for gone in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "Connection reset by peer")):
            try:
                raise gone
            except OSError:
                server.handle_error(None, ("127.0.0.1", 39812))
        assert capsys.readouterr().err == ""
        try:
            raise ValueError("a failure of ours")
        except ValueError:
            server.handle_error(None, ("127.0.0.1", 39812))
        assert "ValueError: a failure of ours" in capsys.readouterr().err
    finally:
        server.server_close()
