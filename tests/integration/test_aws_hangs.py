"""An AWS service that takes the API function's connection and never answers: the function would run into
its timeout, and API Gateway answer its own 502, with nothing logged and nothing the sender can read. The
API's AWS clients keep to their bounds (adapters/aws.API), and make no attempt that could outlast the
Lambda's time: the sender gets the bridge's 503 with Retry-After, in time, and the log says why. The
webhook goes through the real handler and botocore's real clients, on a socket that never answers (the
bounds made small, so the test takes well under a second)."""
from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import pytest

from chalicelib import handlers, runtime
from chalicelib.adapters import aws
from chalicelib.adapters.memory import MemoryStore
from chalicelib.config import Config
from chalicelib.runtime import ANSWER_MS, Runtime
from tests.fakes import FakeClock, FakeQueue, MemorySecrets
from tests.support.answering_server import silent
from tests.support.log_lines import written_lines

HOOK = "rf-hook-secret"
SMALL = aws.Bounds(connect=0.2, read=0.3, attempts=2)


class Lambda:
    """A Lambda context whose time runs out `seconds` from now, on the wall's clock (as sockets time out)."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.end - time.monotonic()) * 1000)


def point_at(endpoint: str, monkeypatch) -> None:
    """Every AWS client made from now on talks to `endpoint`."""
    for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "x",
                        "AWS_SECRET_ACCESS_KEY": "x"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def answer_within(seconds: float, hung: str, monkeypatch):
    """The RF join webhook's answer and how long it took, with `hung` (sqs, ssm or dynamodb) never answering
    and the Lambda's time left `seconds`; a failure (API Gateway's 502) when none came in that time."""
    with silent() as (endpoint, taken):
        point_at(endpoint, monkeypatch)
        store = MemoryStore()
        store.settings.put("42", {}, "ws1")
        rt = Runtime(Config.from_env({"BRIDGE_QUEUE_URL": f"{endpoint}/1/work", "BRIDGE_SECRETS_PATH": "/p",
                                      "BRIDGE_TABLE": "hung-table"}), clock=FakeClock(),
                     store=None if hung == "dynamodb" else store, queue=None if hung == "sqs" else FakeQueue(),
                     secrets=None if hung == "ssm" else MemorySecrets("/p", {"/p/edge/rf/webhook-secret": HOOK}))
        monkeypatch.setattr(aws, "_bounds", None, raising=False)    # what the API's container arms, undone after
        monkeypatch.setattr(runtime, "_default", rt)
        rt.warm("api")                # as the API function's init does
        request = SimpleNamespace(
            method="POST", path="/webhooks/referral-factory", context={"requestId": "r-1"},
            headers={"Content-Type": "application/json", "X-Bridge-Secret": HOOK}, lambda_context=Lambda(seconds),
            raw_body=json.dumps({"id": "7", "campaign_id": "42", "email": "ann@example.com"}).encode())
        answers: list = []
        started = time.monotonic()
        with written_lines() as logged:
            thread = threading.Thread(target=lambda: answers.append(handlers.rf_webhook(request)), daemon=True)
            thread.start()
            thread.join(seconds)
        took = time.monotonic() - started
        if not answers:
            pytest.fail(f"no answer in the Lambda's {seconds} s: API Gateway answers its own 502, and no line says why")
        return answers[0], took, [json.loads(line) for line in logged()], len(taken)


@pytest.mark.parametrize("hung, said", [
    ("sqs", "could not queue a webhook's event"),
    ("ssm", "could not read the webhook secret to check a webhook"),
    ("dynamodb", "could not read the campaign's settings to check a webhook"),
])
def test_a_hung_aws_service_gets_the_sender_our_503_within_the_functions_time(monkeypatch, hung, said):
    monkeypatch.setattr(aws, "API", SMALL)
    reply, took, lines, taken = answer_within(2.0, hung, monkeypatch)
    assert reply.status_code == 503 and reply.headers["Retry-After"] == "60"
    assert reply.body["error"] == "unavailable" and "try again in 60 s" in reply.body["message"]
    assert took < 2.0 - ANSWER_MS / 2000          # its AWS calls ended in time for the answer
    assert taken >= 1                             # the call was made, and timed out
    [why] = [line for line in lines if line["message"] == said]
    assert "timeout" in why["exception"].lower()
    assert [line["status"] for line in lines if line["message"] == "webhook rejected"] == [503]


def test_no_aws_call_is_started_that_could_outlast_the_functions_time(monkeypatch):
    """With less left than an attempt may take (the API's own bounds), none is made: the answer comes at once."""
    left = ANSWER_MS / 1000 + aws.API.attempt / 2
    reply, took, lines, taken = answer_within(left, "sqs", monkeypatch)
    assert reply.status_code == 503 and reply.headers["Retry-After"] == "60" and taken == 0
    assert took < 0.5, took
    [why] = [line for line in lines if line["message"] == "could not queue a webhook's event"]
    assert "left of the function's time" in why["exception"]


@pytest.mark.parametrize("left, attempts", [(10.0, 2), (2.0, 1)])
def test_a_call_is_tried_again_only_when_the_wait_and_the_attempt_fit_in_the_time_left(monkeypatch, left, attempts):
    """A dropped or stale connection is tried again while there is time; never into the time kept to answer."""
    monkeypatch.setattr(aws, "_bounds", SMALL)
    with silent() as (endpoint, taken):
        point_at(endpoint, monkeypatch)
        sqs = aws.client("sqs")
        with aws.within(lambda: left), pytest.raises(Exception, match="Read timeout"):
            sqs.send_message(QueueUrl=f"{endpoint}/1/q", MessageBody="{}")
        assert len(taken) == attempts


def test_one_aws_call_and_the_answer_fit_in_the_time_the_oauth_callback_keeps_after_intercom():
    """The callback gives Intercom all but FINISH_MS: after that, an AWS call (to store the token) must still
    find an attempt's time left, and the answer's."""
    from chalicelib.services.oauth import FINISH_MS
    assert FINISH_MS - ANSWER_MS >= aws.API.attempt * 1000
