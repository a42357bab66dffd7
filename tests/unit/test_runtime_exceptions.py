"""What leaves a function when it raises: the Lambda runtime prints the exception's message and traceback
itself (Chalice logs a route's), outside the logger's masking. Each function is invoked here as the runtime
invokes it (app.py's Chalice objects, with an event and a context); what it would print names nobody, and
the details are in the function's own log, masked."""
from __future__ import annotations

import io
import json
import traceback

import pytest

import app
from chalicelib import handlers
from chalicelib.observability import logger
from chalicelib.services import ingest, worker
from chalicelib.services import reconcile as reconciliation
from chalicelib.services.worker import RetryBatch
from tests.fakes import FakeWork
from tests.unit.test_worker_batch import Recorder, check, record

ANN = "ann@example.com"


class Context:
    aws_request_id = "req-1"
    function_name = "worker"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 10**9


def printed(exc: BaseException) -> str:
    """What the runtime would print: the message and the traceback, with any exception chained to it."""
    return "".join(traceback.format_exception(exc))


@pytest.fixture
def log():
    """The functions' log (their logger's handler), as text."""
    written = io.StringIO()
    before = logger.registered_handler.setStream(written)
    try:
        yield written.getvalue
    finally:
        logger.registered_handler.setStream(before)


def sqs_event(*records: dict) -> dict:
    return {"Records": [{**r, "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:eu-west-1:1:work"}
                        for r in records]}


@pytest.fixture
def work(monkeypatch) -> FakeWork:
    work = FakeWork()
    monkeypatch.setattr(handlers, "default_runtime", lambda: work)
    return work


def test_a_batch_whose_own_step_fails_comes_back_whole_and_what_leaves_names_nobody(work, monkeypatch, log):
    """A record must wait; sending its copy back fails with a client error that quotes the record's body
    (the person's email). Before: that exception left the worker, and the Lambda runtime printed it, email
    and all."""
    from chalicelib.errors import Deferred
    kind = Recorder(fails={"9": Deferred("another worker holds it")})
    monkeypatch.setattr(worker, "HANDLERS", kind.handlers())

    def refused(later):
        raise ValueError(f"Invalid type for parameter MessageBody, value: {later[0].body} {ANN}")
    monkeypatch.setattr(work.queue, "defer", refused)
    with pytest.raises(Exception) as raised:
        app.worker(sqs_event(record(1, check("7")), record(2, check("9"))), Context())
    assert ANN not in printed(raised.value) and "ValueError" in str(raised.value)
    assert work.queue.deleted == []                                   # the whole batch comes back, as before
    assert ANN not in log() and "a***@example.com" in log()         # the details: in the log, masked


def test_a_record_the_dead_letter_queue_refuses_comes_back_alone_and_what_leaves_names_nobody(work, monkeypatch,
                                                                                             log):
    """A record no model can read goes to the dead-letter queue; that send fails with a client error that
    quotes the record's body (the person's email): the record comes back alone, and neither what leaves
    nor the log names the person."""
    kind = Recorder()
    monkeypatch.setattr(worker, "HANDLERS", kind.handlers())

    def refused(body, *args):
        raise ValueError(f"Invalid type for parameter MessageBody, value: {body}")
    monkeypatch.setattr(work.queue, "dead_letter", refused)
    poison = {"kind": "intercom.check", "campaign_id": "42", "rf_user_id": "9", "email": ANN}
    with pytest.raises(RetryBatch) as raised:
        app.worker(sqs_event(record(1, check("7")), record(2, poison)), Context())
    assert ANN not in printed(raised.value) and "m2: could not send it to the dead-letter queue" in str(raised.value)
    assert work.queue.deleted == ["rh1"] and work.queue.dead == []
    assert ANN not in log() and "a***@example.com" in log()


def test_records_that_fail_come_back_alone_and_the_batchs_exception_names_nobody(work, monkeypatch, log):
    """The worker raises on purpose for the records it could not handle (Chalice's SQS source ignores
    batchItemFailures): it deleted the others, and its RetryBatch leaves as it is, masked."""
    kind = Recorder(fails={"9": RuntimeError(f"Intercom answered 422: {ANN} is taken")})
    monkeypatch.setattr(worker, "HANDLERS", kind.handlers())
    with pytest.raises(RetryBatch) as raised:
        app.worker(sqs_event(record(1, check("7")), record(2, check("9"))), Context())
    assert str(raised.value) == "1 of 2 records will be retried: m2: RuntimeError: Intercom answered 422: " \
                                "a***@example.com is taken"
    assert ANN not in printed(raised.value) and work.queue.deleted == ["rh1"]


def test_a_scheduled_run_that_fails_leaves_an_exception_that_names_nobody(work, monkeypatch, log):
    def fails(rt):
        raise RuntimeError(f"Intercom answered 500 for {ANN}")
    monkeypatch.setattr(reconciliation, "reconcile", fails)
    event = {"version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events", "account": "1",
             "time": "2026-01-01T00:00:00Z", "region": "eu-west-1", "resources": [], "detail": {}}
    with pytest.raises(Exception) as raised:
        app.reconcile(event, Context())
    assert ANN not in printed(raised.value) and "RuntimeError" in str(raised.value)
    assert ANN not in log() and "Intercom answered 500 for a***@example.com" in log()


def test_a_route_that_fails_answers_chalices_500_and_what_it_logs_names_nobody(monkeypatch, log):
    """Chalice catches a route's exception, answers 500 and logs it (app.py makes its logger the functions'
    logger, whatever the stage's service name: tests/deploy/test_deployed_logs.py) with the exception that
    left the handler."""
    def fails(headers, raw, rt):
        raise KeyError(f"no settings for {ANN}")
    monkeypatch.setattr(ingest, "receive_rf_join", fails)
    monkeypatch.setattr(handlers, "default_runtime", lambda: None)
    event = {"resource": "/webhooks/referral-factory", "path": "/webhooks/referral-factory", "httpMethod": "POST",
             "headers": {"Content-Type": "application/json"}, "multiValueHeaders": {},
             "queryStringParameters": None, "multiValueQueryStringParameters": None, "pathParameters": None,
             "stageVariables": None, "body": json.dumps({"email": ANN}), "isBase64Encoded": False,
             "requestContext": {"resourcePath": "/webhooks/referral-factory", "httpMethod": "POST",
                                "requestId": "r1", "path": "/api/webhooks/referral-factory"}}
    answer = app.app(event, Context())
    assert answer["statusCode"] == 500
    caught = [json.loads(line) for line in log().splitlines() if "Caught exception" in line]
    assert caught and "rf_webhook failed with KeyError" in caught[0]["exception"]
    assert ANN not in log() and "no settings for a***@example.com" in log()
