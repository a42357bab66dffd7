"""An AWS call of the worker that is taken and never answered: with botocore's and the bridge's long settings
(DynamoDB 15 s + 30 s x 4 attempts, SQS 60 s + 60 s x 3) it outlasted the Lambda's 120 s, which killed the
worker: nothing logged, no try counted, the whole batch back after the visibility timeout, and after enough
of those SQS's redrive moved it to the dead-letter queue ("moved by SQS ...: the worker crashed or timed out").
The worker's clients keep to adapters/aws.WORKER and to the invocation's time: the hung call fails its own
record's try, with its reason, and the batch's other records are done. On real parts (moto, the simulators,
botocore's clients), through a server that passes AWS's calls on but never answers the ones a test picks; the
bounds made small, so the tests take a few seconds."""
from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import pytest

from chalicelib import config, handlers, runtime
from chalicelib.adapters import aws
from chalicelib.adapters.dynamo import bind, models
from chalicelib.adapters.memory import MemoryStore
from chalicelib.config import Config
from chalicelib.messages import CheckMessage
from chalicelib.observability import Failed
from chalicelib.runtime import ANSWER_MS, Runtime
from chalicelib.services import worker
from tests.fakes import FakeClock, FakeQueue, MemorySecrets
from tests.support.answering_server import passing, silent
from tests.support.log_lines import written_lines
from tests.unit.scenario import check, records

from .conftest import join_body, new_lead, qualifying_settings
from .test_aws_hangs import SMALL, Lambda, point_at
from .test_exactly_once import puts
from .test_qualification import qualified_ids


def hanging(write: str, about: dict, picked: list, saying: bytes = b""):
    """Of DynamoDB's `write`s about lead `about` (and `saying` that), the first call's (all its attempts) are never
    answered."""
    key = f'"PERSON#{about["id"]}"'.encode()

    def hangs(target: str, body: bytes) -> bool:
        if target.endswith(write) and key in body and saying in body and len(picked) < SMALL.attempts:
            picked.append(target.split(".")[-1])
            return True
        return False
    return hangs


def worker_at(endpoint: str, rt, monkeypatch) -> None:
    """The worker's container, its AWS at `endpoint`: its init arms the worker's bounds (made small) and makes
    its clients, as a Lambda container's does."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setattr(aws, "WORKER", SMALL)
    monkeypatch.setattr(aws, "_bounds", None)                 # what the init arms, undone after
    monkeypatch.setattr(models, "_clients", {})
    for made in (rt.queue, rt.secrets):          # (not the in-memory twins)
        if hasattr(made, "_client"):
            monkeypatch.setattr(made, "_client", None)
    bind(rt.config.table)
    rt.warm("worker")


def in_time(work, seconds: float):
    """`work()`'s answer (or exception), failing the test if it takes over `seconds` (a Lambda killed)."""
    answers: list = []

    def run() -> None:
        try:
            answers.append(work())
        except Exception as exc:
            answers.append(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if not answers:
        pytest.fail(f"the worker was still waiting for AWS after {seconds} s: a Lambda would be killed by its "
                    "timeout, nothing logged and the whole batch back")
    return answers[0]


def signed_up(bridge, intercom, rf, *emails: str) -> list[dict]:
    """Leads who joined (their contacts made), whose contacts then reach the target: Intercom's notifications
    are queued, one record each."""
    bridge.apply(qualifying_settings())
    leads = [new_lead(rf, email=email) for email in emails]
    for lead in leads:
        bridge.post_join(join_body(lead))
    bridge.drain()
    for email in emails:
        [contact] = intercom.contacts_by_email(email)
        intercom.update_contact(contact["id"], signed_up="Yes")
        bridge.notify("contact.lead.updated", contact["id"])
    return leads


def test_a_hung_dynamodb_write_fails_its_record_as_one_try_in_time_and_the_batch_goes_on(
        bridge, intercom, rf, moto_endpoint, monkeypatch):
    ann, bob, cat = signed_up(bridge, intercom, rf, "ann@example.com", "bob@example.com", "cat@example.com")
    picked: list[str] = []
    with passing(moto_endpoint, hanging("UpdateItem", bob, picked)) as endpoint:   # (its claim to qualify)
        worker_at(endpoint, bridge.rt, monkeypatch)
        with written_lines() as logged:
            [outcome] = in_time(bridge.drain, SMALL.seconds + 5)
        assert picked == ["UpdateItem"] * SMALL.attempts                # the call was made, and hung
        assert outcome.received == 3 and isinstance(outcome.error, worker.RetryBatch)
        said = str(outcome.error)
        assert said.startswith("1 of 3 records will be retried: ") and "Read timeout" in said
        assert sorted(qualified_ids(rf)) == sorted([ann["id"], cat["id"]])   # the others' done
        [retry] = [line for line in map(json.loads, logged()) if line["message"] == "record will be retried"]
        assert "Read timeout on endpoint URL" in retry["reason"] and retry["attempt"] == 1

        bridge.poller.expire_inflight()               # its visibility timeout: try 2, AWS answering again
        bridge.poller.drain(retry_failures=True)
        assert sorted(qualified_ids(rf)) == sorted([ann["id"], bob["id"], cat["id"]]) and len(puts(rf)) == 3
        assert bridge.dead_letters() == [] and bridge.queued() == 0


def test_a_qualification_whose_write_hangs_after_rf_applied_it_asks_rf_before_sending_it_again(
        bridge, intercom, rf, clock, moto_endpoint, monkeypatch):
    """Money: RF qualified the user, then the write that records it hangs. The link stays claimed as qualifying
    (its try failed, counted): whoever takes it over once the claim's lease ends asks RF first, and RF's yes
    finishes it. One PUT, ever."""
    [ann] = signed_up(bridge, intercom, rf, "ann@example.com")
    picked: list[str] = []
    with passing(moto_endpoint, hanging("TransactWriteItems", ann, picked, b'{"S": "qualified"}')) as endpoint:
        worker_at(endpoint, bridge.rt, monkeypatch)
        [outcome] = in_time(bridge.drain, SMALL.seconds + 5)
        assert picked and "Read timeout" in str(outcome.error) and len(puts(rf)) == 1
        assert bridge.history(42, ann["id"])["link"]["qualification"] == "qualifying"
        bridge.poller.expire_inflight()
        bridge.poller.drain(retry_failures=True)      # its retry: the claim still holds, nothing is sent
        clock.now += 3600                             # the claim's lease ends: reconciliation finds it overdue
        bridge.reconcile()
        bridge.drain()
        person = bridge.history(42, ann["id"])
    assert person["link"]["qualification"] == "qualified" and len(puts(rf)) == 1
    assert "asked before calling it again" in person["history"][-1]["reason"]


def test_no_record_of_the_batch_makes_an_aws_call_into_the_time_kept_to_settle_it(monkeypatch):
    """The records run in the worker's threads: there too, no attempt is made that could end in the time the worker
    keeps to delete the handled records and raise for the rest (services/config.SETTLE_MS). Each record's try fails
    at once, saying why, and the batch is settled."""
    with silent() as (endpoint, taken):
        point_at(endpoint, monkeypatch)
        rt = Runtime(Config.from_env({"BRIDGE_RECORD_BUDGET_MS": "0"}), clock=FakeClock(), store=MemoryStore(),
                     queue=FakeQueue(), secrets=MemorySecrets())
        worker_at(endpoint, rt, monkeypatch)
        sqs = aws.client("sqs")

        def send(message, deps, context):
            sqs.send_message(QueueUrl=f"{endpoint}/1/q", MessageBody="{}")
        kinds = {CheckMessage: worker.Handler(lambda messages, deps: None, send)}
        left = Lambda((config.SETTLE_MS + SMALL.attempt * 500) / 1000)   # half an attempt for them
        raised = in_time(lambda: worker.handle_batch(records(check("7"), check("8")), rt,
                                                     left.get_remaining_time_in_millis, kinds), 5)
    assert isinstance(raised, worker.RetryBatch) and taken == []
    assert str(raised).count("OutOfTime: no AWS call made with") == 2 and "left of the function's time" in str(raised)
    assert rt.queue.deleted == [] and rt.queue.dead == []          # both come back, as tries


@pytest.mark.parametrize("left, said, attempted", [
    (10.0, "Read timeout", True),
    # With less left than an attempt may take, past the time kept to log why, none is made.
    (ANSWER_MS / 1000 + SMALL.attempt / 2, "left of the function's time", False),
])
def test_a_reconciliation_whose_aws_call_hangs_fails_saying_so_before_its_timeout(monkeypatch, left, said, attempted):
    """Reconciliation (its own Lambda, scheduled) keeps to the worker's bounds and to its time: the run fails, logged
    with why, and the next scheduled run does its work; never a Lambda killed with nothing logged."""
    with silent() as (endpoint, taken):
        point_at(endpoint, monkeypatch)
        rt = Runtime(Config.from_env({"BRIDGE_TABLE": "hung-table"}), clock=FakeClock(), queue=FakeQueue(),
                     secrets=MemorySecrets())
        monkeypatch.setattr(runtime, "_default", rt)
        worker_at(endpoint, rt, monkeypatch)
        with written_lines() as logged:
            raised = in_time(lambda: handlers.reconcile(SimpleNamespace(context=Lambda(left))), left)
    assert isinstance(raised, Failed) and bool(taken) is attempted
    [why] = [line for line in map(json.loads, logged()) if line["message"] == "reconcile failed"]
    assert said in why["exception"]


def test_the_worker_keeps_time_after_its_records_for_the_calls_that_settle_the_batch():
    """The time kept after the records (SETTLE_MS) holds, past what is kept to log and raise, a whole attempt's time
    for the first call that settles the batch (sending back the waiting records, deleting the handled ones), and a
    second more for the others (SQS answers them in milliseconds): else they would not be made at all."""
    assert config.SETTLE_MS - config.RAISE_MS >= aws.WORKER.attempt * 1000 + 1000
