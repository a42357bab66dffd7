"""The local stack's parts, on real moto (server mode) and real HTTP.  No sleeps:
the visibility timeout "elapses" through QueuePoller.expire_inflight()."""
from __future__ import annotations

import hashlib
import http.client
import json
import logging
import socket
import threading
import urllib.request

import pytest
from chalice import Chalice, Response

from infra.local.aws import Resources, deploy, destroy, unique_prefix
from infra.local.esm import QueuePoller
from infra.local.http import serve_app
from infra.local.scheduler import Scheduler, chalice_job, scheduled_event

WAIT = 10  # seconds; an upper bound for threading waits, never a sleep


# --------------------------------------------------------------------- helpers


def send(res: Resources, *bodies: str, **kwargs) -> list[str]:
    sqs = res.client("sqs")
    return [sqs.send_message(QueueUrl=res.queue_url, MessageBody=b, **kwargs)["MessageId"] for b in bodies]


def counts(res: Resources, url: str | None = None) -> tuple[int, int]:
    attrs = res.client("sqs").get_queue_attributes(
        QueueUrl=url or res.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


class Recorder:
    """A handler that records its calls and then returns/raises as told."""

    def __init__(self, result=None, error: Exception | None = None) -> None:
        self.result, self.error = result, error
        self.calls: list[tuple[dict, object]] = []

    def __call__(self, event, context):
        self.calls.append((event, context))
        if self.error is not None:
            raise self.error
        return self.result

    @property
    def bodies(self) -> list[str]:
        return [r["body"] for event, _ in self.calls for r in event["Records"]]


def poller(res: Resources, handler, batch_size: int = 10) -> QueuePoller:
    return QueuePoller(res.client("sqs"), res.queue_url, res.queue_arn, handler, batch_size=batch_size)


# ----------------------------------------------------------------- the stack


def test_deploy_creates_the_template_resources(stack: Resources):
    assert stack.table == f"{stack.prefix}-table"
    assert stack.queue_arn.endswith(f":{stack.prefix}-work")
    assert stack.dlq_arn.endswith(f":{stack.prefix}-dlq")

    table = stack.client("dynamodb").describe_table(TableName=stack.table)["Table"]
    assert {k["AttributeName"] for k in table["KeySchema"]} == {"pk", "sk"}
    assert {g["IndexName"] for g in table["GlobalSecondaryIndexes"]} == {"pending", "overdue"}

    attrs = stack.client("sqs").get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "720"  # template default
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == stack.dlq_arn
    assert int(redrive["maxReceiveCount"]) == 10

    env = stack.env()
    assert env["AWS_ENDPOINT_URL"] == stack.endpoint_url
    assert env["BRIDGE_TABLE"] == stack.table
    assert env["BRIDGE_QUEUE_URL"] == stack.queue_url
    assert env["BRIDGE_DLQ_URL"] == stack.dlq_url
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "testing"


def test_parameters_are_passed(moto_endpoint: str):
    res = deploy(moto_endpoint, unique_prefix("lt"), visibility_timeout=42, max_receive_count=3)
    try:
        attrs = res.client("sqs").get_queue_attributes(QueueUrl=res.queue_url, AttributeNames=["All"])["Attributes"]
        assert attrs["VisibilityTimeout"] == "42"
        assert int(json.loads(attrs["RedrivePolicy"])["maxReceiveCount"]) == 3
    finally:
        destroy(res)


def test_amazonaws_queue_urls_reach_moto_through_env_endpoint(stack: Resources, monkeypatch):
    # Queue URLs from moto's CloudFormation name the real AWS host; a client
    # built only from the environment (as the app builds its clients) must still
    # talk to moto.
    assert stack.queue_url.startswith("https://sqs.us-east-1.amazonaws.com/")
    for key, value in stack.env().items():
        monkeypatch.setenv(key, value)
    import boto3

    sqs = boto3.session.Session().client("sqs")
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody="via-env")
    got = stack.client("sqs").receive_message(QueueUrl=stack.queue_url)["Messages"]
    assert [m["Body"] for m in got] == ["via-env"]
    ddb = boto3.session.Session().client("dynamodb")
    ddb.put_item(TableName=stack.table, Item={"pk": {"S": "a"}, "sk": {"S": "b"}})
    assert stack.client("dynamodb").get_item(TableName=stack.table, Key={"pk": {"S": "a"}, "sk": {"S": "b"}})["Item"]


def test_a_fresh_stack_per_test_is_cheap(moto_endpoint: str, monkeypatch):
    """Counted, not timed (timings are the bench's): one stack created and read once, no waiting."""
    import botocore.client

    calls: list[str] = []
    call = botocore.client.BaseClient._make_api_call

    def counted(client, operation, params):
        calls.append(f"{client.meta.service_model.service_name}:{operation}")
        return call(client, operation, params)
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", counted)
    monkeypatch.setattr("infra.local.aws.time.sleep", lambda s: calls.append(f"slept {s}"))
    res = deploy(moto_endpoint, unique_prefix("lt"))
    assert calls == ["cloudformation:CreateStack", "cloudformation:DescribeStacks"]
    destroy(res)


def test_destroy_removes_everything(moto_endpoint: str):
    res = deploy(moto_endpoint, unique_prefix("lt"))
    destroy(res)
    assert res.table not in res.client("dynamodb").list_tables()["TableNames"]
    urls = res.client("sqs").list_queues(QueueNamePrefix=res.prefix).get("QueueUrls", [])
    assert urls == []


# ----------------------------------------------------------------------- ESM


def test_event_has_the_lambda_sqs_shape(stack: Resources):
    send(
        stack,
        "hello",
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "lead"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    )
    handler = Recorder()
    outcome = poller(stack, handler).poll_once()
    assert outcome.received == 1 and outcome.ok

    event, context = handler.calls[0]
    (record,) = event["Records"]
    assert list(record) == [
        "messageId", "receiptHandle", "body", "attributes", "messageAttributes",
        "md5OfBody", "eventSource", "eventSourceARN", "awsRegion",
    ]
    assert record["messageId"] == outcome.message_ids[0]
    assert record["body"] == "hello"
    assert record["md5OfBody"] == hashlib.md5(b"hello").hexdigest()
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == stack.queue_arn
    assert record["awsRegion"] == "us-east-1"
    assert list(record["attributes"]) == [
        "ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp",
    ]
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert all(isinstance(v, str) for v in record["attributes"].values())
    assert record["messageAttributes"] == {
        "kind": {"stringValue": "lead", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
        "blob": {"binaryValue": "AAE=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
    }

    assert context.function_name == "worker"
    assert context.memory_limit_in_mb == "128"  # a string, as in the real runtime
    assert context.aws_request_id
    assert 0 < context.get_remaining_time_in_millis() <= 60_000


def test_chalice_sqs_handler_accepts_the_event(stack: Resources):
    app = Chalice(app_name="esm-test")
    seen = []

    @app.on_sqs_message(queue="unused", batch_size=10)
    def worker(event):
        for record in event:
            seen.append((record.body, record.receipt_handle))

    send(stack, "a", "b")
    outcomes = poller(stack, worker).drain()
    assert sorted(b for b, _ in seen) == ["a", "b"]
    assert all(o.ok for o in outcomes)
    assert counts(stack) == (0, 0)


def test_success_deletes_the_batch(stack: Resources):
    ids = send(stack, "1", "2", "3")
    handler = Recorder()
    p = poller(stack, handler)
    outcome = p.poll_once()
    assert outcome.received == 3 and outcome.error is None
    assert sorted(outcome.message_ids) == sorted(ids)
    assert sorted(outcome.deleted) == sorted(ids)
    assert len(handler.calls) == 1  # one invocation for the batch
    assert p.inflight == {}
    assert p.expire_inflight() == 0
    assert counts(stack) == (0, 0)
    assert p.poll_once().received == 0


def test_failure_keeps_the_batch_until_the_visibility_timeout(stack: Resources):
    (mid,) = send(stack, "boom")
    p = poller(stack, Recorder(error=RuntimeError("downstream 500")))
    outcome = p.poll_once()
    assert outcome.received == 1
    assert isinstance(outcome.error, RuntimeError)
    assert outcome.deleted == []
    assert set(p.inflight) == {mid}
    assert counts(stack) == (0, 1)  # in flight, invisible
    assert p.poll_once().received == 0  # not back before the timeout

    assert p.expire_inflight() == 1  # "the visibility timeout elapsed"
    assert counts(stack) == (1, 0)

    ok = Recorder()
    p.handler = ok
    outcome = p.poll_once()
    assert outcome.ok and outcome.message_ids == [mid]
    (record,) = ok.calls[0][0]["Records"]
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    assert record["body"] == "boom"
    assert counts(stack) == (0, 0)


def test_an_expected_exception_is_one_log_line_and_an_unexpected_one_keeps_its_traceback(stack: Resources, caplog):
    """`make run`'s terminal: the worker's RetryBatch (some records come back) is its normal answer."""
    from chalicelib.services.worker import RetryBatch
    send(stack, "a")
    retry = RetryBatch("1 of 1 records will be retried: m1: Intercom answered 503")
    p = QueuePoller(stack.client("sqs"), stack.queue_url, stack.queue_arn, Recorder(error=retry),
                    expected=(RetryBatch,))
    with caplog.at_level(logging.WARNING, logger="infra.local.esm"):
        assert p.poll_once().error is retry
        [line] = caplog.records
        assert line.getMessage() == f"worker: {retry}" and line.exc_info is None
        assert p.expire_inflight() == 1
        caplog.clear()
        p.handler = Recorder(error=RuntimeError("a bug"))
        assert isinstance(p.poll_once().error, RuntimeError)
        [line] = caplog.records
        assert "failed on 1 message(s)" in line.getMessage() and line.exc_info is not None
    assert counts(stack) == (0, 1)                                     # neither deleted the batch


def test_batch_item_failures_are_ignored_like_chalice(stack: Resources):
    ids = send(stack, "x", "y")
    p = poller(stack, None)
    p.handler = Recorder(result={"batchItemFailures": [{"itemIdentifier": ids[0]}]})
    outcome = p.poll_once()
    assert outcome.received == 2 and outcome.ok
    assert sorted(outcome.deleted) == sorted(ids)  # all deleted, failure report ignored
    assert p.expire_inflight() == 0
    assert counts(stack) == (0, 0)


def test_redrive_to_dlq_after_max_receive_count(moto_endpoint: str):
    res = deploy(moto_endpoint, unique_prefix("lt"), max_receive_count=2)
    try:
        (mid,) = send(res, "poison")
        handler = Recorder(error=ValueError("bad message"))
        p = poller(res, handler)
        for _ in range(2):
            assert p.poll_once().received == 1
            assert p.expire_inflight() == 1
        # Third receive: count (2) >= maxReceiveCount, SQS moves it instead.
        assert p.poll_once().received == 0
        assert len(handler.calls) == 2
        assert counts(res) == (0, 0)
        assert counts(res, res.dlq_url) == (1, 0)
        dead = res.client("sqs").receive_message(QueueUrl=res.dlq_url, AttributeNames=["All"])["Messages"]
        assert [(m["MessageId"], m["Body"]) for m in dead] == [(mid, "poison")]
    finally:
        destroy(res)


def test_drain_with_retry_failures_ends_in_the_dlq(moto_endpoint: str):
    res = deploy(moto_endpoint, unique_prefix("lt"), max_receive_count=3)
    try:
        send(res, "ok-1", "bad", "ok-2")

        def handler(event, context):
            if any(r["body"] == "bad" for r in event["Records"]):
                raise RuntimeError("bad")

        p = poller(res, handler, batch_size=1)
        outcomes = p.drain(retry_failures=True)
        assert sum(o.ok for o in outcomes) == 2
        assert sum(o.error is not None for o in outcomes) == 3  # maxReceiveCount tries
        assert counts(res) == (0, 0)
        assert counts(res, res.dlq_url) == (1, 0)
    finally:
        destroy(res)


def test_drain_batches_by_batch_size(stack: Resources):
    send(stack, *[str(i) for i in range(23)])
    handler = Recorder()
    outcomes = poller(stack, handler, batch_size=10).drain()
    assert sum(o.received for o in outcomes) == 23
    assert all(o.received <= 10 for o in outcomes)
    assert sorted(handler.bodies, key=int) == [str(i) for i in range(23)]
    assert counts(stack) == (0, 0)


def test_batch_size_is_limited_to_ten(stack: Resources):
    with pytest.raises(ValueError):
        poller(stack, Recorder(), batch_size=11)


def test_run_forever_processes_messages_in_the_background(stack: Resources):
    done = threading.Event()
    bodies = []

    def handler(event, context):
        bodies.extend(r["body"] for r in event["Records"])
        if "last" in bodies:
            done.set()

    thread = poller(stack, handler).start(idle_wait=0.1)
    try:
        send(stack, "first", "last")
        assert done.wait(WAIT)
    finally:
        thread.stop()
    assert not thread.is_alive()
    assert sorted(bodies) == ["first", "last"]


# ---------------------------------------------------------------------- HTTP


def make_app() -> Chalice:
    app = Chalice(app_name="http-test")

    @app.route("/hello/{name}", methods=["GET", "HEAD"])
    def hello(name):
        return {"hello": name, "q": (app.current_request.query_params or {}).get("q")}

    @app.route("/echo", methods=["POST"], content_types=["application/json", "text/plain"])
    def echo():
        req = app.current_request
        return Response(
            body=req.raw_body.decode("utf-8"),
            status_code=202,
            headers={"Content-Type": "text/plain", "X-Sig": req.headers.get("x-sig", "")},
        )

    @app.route("/boom")
    def boom():
        raise RuntimeError("view failure")

    return app


@pytest.fixture
def served():
    app = make_app()
    server = serve_app(app)
    yield server
    server.stop()


def test_serve_app_get(served):
    with urllib.request.urlopen(f"{served.url}/hello/world?q=1", timeout=WAIT) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        assert json.loads(resp.read()) == {"hello": "world", "q": "1"}


def test_serve_app_post_raw_body_and_head_on_one_connection(served):
    conn = http.client.HTTPConnection(served.host, served.port, timeout=WAIT)
    try:
        raw = b'{"b": 1,  "a": [2]}\n'  # odd spacing: must arrive byte for byte
        conn.request("POST", "/echo", body=raw, headers={"Content-Type": "application/json", "X-Sig": "s1"})
        resp = conn.getresponse()
        assert resp.status == 202
        assert resp.read() == raw
        assert resp.getheader("X-Sig") == "s1"
        assert resp.getheader("Content-Type") == "text/plain"

        conn.request("HEAD", "/hello/head")
        resp = conn.getresponse()
        assert resp.status == 200
        assert int(resp.getheader("Content-Length")) > 0
        assert resp.read() == b""

        # the connection is still usable after HEAD (no stray body bytes)
        conn.request("GET", "/hello/again")
        resp = conn.getresponse()
        assert json.loads(resp.read())["hello"] == "again"
    finally:
        conn.close()


def test_serve_app_sends_each_response_in_one_segment_with_nagle_off(served, monkeypatch):
    """chalice local sends the headers, then the body: with Nagle on, a keep-alive client waits for
    its own delayed ACK (~40 ms) before the body leaves. Here each response, headers and body
    together, is one send on a TCP_NODELAY socket (seen at the server's sockets, no timing)."""
    sent: list[tuple[bytes, int]] = []

    def spy(original):
        def send(sock, data, *args):
            if sock.getsockname()[1] == served.port:     # the server's end of a connection
                sent.append((bytes(data), sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
            return original(sock, data, *args)
        return send

    monkeypatch.setattr(socket.socket, "send", spy(socket.socket.send))
    monkeypatch.setattr(socket.socket, "sendall", spy(socket.socket.sendall))
    conn = http.client.HTTPConnection(served.host, served.port, timeout=WAIT)
    try:
        for body in (b'{"n": 1}', b'{"n": 2}'):          # two requests on one kept-alive connection
            conn.request("POST", "/echo", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 202 and resp.read() == body
    finally:
        conn.close()
    assert [(data.split(b"\r\n", 1)[0], data.endswith(body), nodelay != 0)
            for (data, nodelay), body in zip(sent, (b'{"n": 1}', b'{"n": 2}'))] == \
        [(b"HTTP/1.1 202 Accepted", True, True)] * 2
    assert len(sent) == 2


def test_serve_app_chunked_post(served):
    conn = http.client.HTTPConnection(served.host, served.port, timeout=WAIT)
    try:
        conn.request("POST", "/echo", body=iter([b"ab", b"cd"]), headers={"Content-Type": "text/plain"},
                     encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 202 and resp.read() == b"abcd"
    finally:
        conn.close()


def test_serve_app_errors_like_api_gateway(served):
    def status(method: str, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(served.host, served.port, timeout=WAIT)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    code, body = status("GET", "/nope")
    assert code == 403 and b"Missing Authentication Token" in body
    assert status("DELETE", "/hello/x")[0] == 405
    assert status("GET", "/boom")[0] == 500


def test_serve_app_crash_outside_views_is_a_502():
    class Crashing(Chalice):
        def __call__(self, event, context):
            raise RuntimeError("lambda crashed before the view")

    app = Crashing(app_name="crash")

    @app.route("/")
    def index():
        return {}

    with serve_app(app) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=WAIT)
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            assert resp.status == 502
            assert json.loads(resp.read()) == {"message": "Internal server error"}
        finally:
            conn.close()


def test_serve_app_is_threaded_with_per_thread_current_request():
    app = Chalice(app_name="threads")
    barrier = threading.Barrier(2, timeout=WAIT)

    @app.route("/wait/{n}")
    def wait(n):
        barrier.wait()  # both requests are inside the app at once
        return {"n": n, "path": app.current_request.uri_params["n"]}

    results = {}

    def call(n: str):
        with urllib.request.urlopen(f"{server.url}/wait/{n}", timeout=WAIT) as resp:
            results[n] = json.loads(resp.read())

    with serve_app(app) as server:
        threads = [threading.Thread(target=call, args=(n,)) for n in ("1", "2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
    assert results == {"1": {"n": "1", "path": "1"}, "2": {"n": "2", "path": "2"}}
    assert type(app) is Chalice  # the thread-local subclass is undone on stop


# ----------------------------------------------------------------- scheduler


def test_scheduler_runs_jobs_and_survives_exceptions():
    ran = threading.Event()
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first run fails")
        ran.set()

    sched = Scheduler([("flaky", 0.01, flaky)]).start()
    try:
        assert ran.wait(WAIT)
    finally:
        sched.stop()
    assert sched.stats("flaky")["failures"] == 1
    assert sched.stats("flaky")["runs"] >= 2


def test_scheduler_run_now_and_chalice_job():
    app = Chalice(app_name="sched")
    events = []

    @app.schedule("rate(5 minutes)")
    def reconcile(event):
        events.append(event.to_dict())
        return "done"

    sched = Scheduler([("reconcile", 3600, chalice_job(reconcile, "reconcile"))])
    with sched:
        assert sched.run_now("reconcile") == "done"
    (event,) = events
    assert event["detail-type"] == "Scheduled Event"
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/reconcile"]
    with pytest.raises(KeyError):
        sched.run_now("missing")
    with pytest.raises(ValueError):
        Scheduler([("a", 1, print), ("a", 2, print)])
    assert scheduled_event("r")["source"] == "aws.events"
