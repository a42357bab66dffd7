"""Waiting is not a try: a record that must wait (errors.Deferred) goes back to the queue as a copy
with a delay and the tries it has used, and never reaches the dead-letter queue for waiting alone."""
import json

import pytest

from chalicelib.errors import Deferred, Transient
from chalicelib.messages import CheckMessage
from chalicelib.services.worker import Handler, Record, RetryBatch, handle_batch
from tests.fakes import FakeWork


def record(n: int, user: str, receives: int = 1, tries: int | None = None, waits: int | None = None) -> dict:
    attributes = {name: {"stringValue": str(value), "dataType": "Number"}
                  for name, value in (("bridge-tries", tries), ("bridge-waits", waits)) if value is not None}
    return {"messageId": f"m{n}", "receiptHandle": f"rh{n}", "messageAttributes": attributes,
            "attributes": {"ApproximateReceiveCount": str(receives)},
            "body": json.dumps(CheckMessage(campaign_id="42", rf_user_id=user, workspace="ws").wire())}


def handlers(outcomes: dict):
    def handle(message, deps, context):
        outcome = outcomes.get(message.rf_user_id)
        if outcome is not None:
            raise outcome
    return {CheckMessage: Handler(lambda messages, deps: None, handle)}


def test_a_waiting_record_is_sent_back_with_its_tries_and_its_neighbours_settle_as_usual():
    work = FakeWork()                                         # BRIDGE_MAX_ATTEMPTS=3
    outcomes = {"2": Deferred("shared budget spent", retry_after=40), "3": Transient("RF answered 503")}
    with pytest.raises(RetryBatch, match="1 of 3 records will be retried: m3: RF answered 503"):
        handle_batch([record(1, "1"), record(2, "2", receives=2, tries=1), record(3, "3")], work,
                     handlers=handlers(outcomes))
    [later] = work.queue.deferred
    # received twice (a crash, then this wait): one more try used, this receive given back
    assert (later.tries, later.waits) == (2, 1) and 40 <= later.delay <= 42
    assert json.loads(later.body)["rf_user_id"] == "2"
    assert work.queue.deleted == ["rh1", "rh2"]               # the original is gone with the done one


def test_waits_only_return_normally_and_the_event_source_deletes_the_originals():
    work = FakeWork()
    summary = handle_batch([record(1, "1"), record(2, "2")], work,
                           handlers=handlers({"2": Deferred("another worker holds it", retry_after=5)}))
    assert summary == {"done": 1, "retry": 0, "dead": 0, "waiting": 1}
    assert work.queue.deleted == [] and len(work.queue.deferred) == 1


def test_a_record_that_waited_many_times_still_has_all_its_tries():
    work = FakeWork()
    fails = handlers({"1": Transient("RF answered 503")})
    with pytest.raises(RetryBatch):
        handle_batch([record(1, "1", receives=1, tries=1, waits=60)], work, handlers=fails)   # try 2 of 3
    assert work.queue.dead == []
    handle_batch([record(1, "1", receives=2, tries=1, waits=60)], work, handlers=fails)       # try 3 of 3
    [dead] = work.queue.dead
    assert dead["reason"] == "gave up after 3 tries: RF answered 503" and dead["attempts"] == 3


def test_a_wait_never_dead_letters_however_often_it_comes_back():
    work = FakeWork()
    for waits in range(50):
        handle_batch([record(1, "1", receives=1, tries=0, waits=waits)], work,
                     handlers=handlers({"1": Deferred("Referral Factory blocked us", retry_after=900)}))
    assert work.queue.dead == [] and [d.waits for d in work.queue.deferred] == list(range(1, 51))
    assert {d.tries for d in work.queue.deferred} == {0}


class Sending:
    """An SQS client that keeps each SendMessageBatch's arguments (and answers that all were sent)."""

    def __init__(self):
        self.sent: list = []

    def send_message_batch(self, **kw):
        self.sent.append(kw)
        return {}


def test_the_copy_keeps_the_body_and_sqs_caps_its_delay():
    from chalicelib.adapters.queue import MAX_DELAY_SECONDS, Queue
    from chalicelib.ports import Later

    client = Sending()
    queue = Queue("https://sqs/q", client=client)
    queue.defer([Later('{"kind":"intercom.check"}', 7200.0, 2, 5), Later("{}", 0.4, 0, 1)])
    [batch] = client.sent
    assert [e["DelaySeconds"] for e in batch["Entries"]] == [MAX_DELAY_SECONDS, 1]
    assert batch["Entries"][0]["MessageBody"] == '{"kind":"intercom.check"}'
    assert batch["Entries"][0]["MessageAttributes"]["bridge-tries"] == {"DataType": "Number", "StringValue": "2"}
    assert Record.from_lambda({"messageAttributes": {"bridge-tries": {"stringValue": "x"}}}).tries_before == 0


def test_a_copy_waiting_for_a_refused_token_says_so_and_is_read_back_so():
    """Its budget is counted from its own first wait, not from an outage's before it (worker._outage_wait)."""
    from chalicelib.adapters.queue import Queue
    from chalicelib.ports import Later

    client = Sending()
    Queue("https://sqs/q", client=client).defer([Later("{}", 60.0, 0, 1, 1000.0, "token"), Later("{}", 60.0, 0, 1, 9.0)])
    token, outage = [e["MessageAttributes"] for e in client.sent[0]["Entries"]]
    assert token["bridge-waits-for"] == {"DataType": "String", "StringValue": "token"} and "bridge-waits-for" not in outage
    attributes = {k: {"stringValue": v["StringValue"], "dataType": v["DataType"]} for k, v in token.items()}
    read = Record.from_lambda({"messageAttributes": attributes})
    assert (read.outage_since, read.waits_for) == (1000.0, "token")


class HalfRefusing:
    """SQS's client: its first SendMessageBatch fails entries 3 (SQS's own fault) and 7 (the sender's); the entries
    of SQS's own fault are failed again `again` more times (each call then carrying them alone)."""

    def __init__(self, again: int = 0):
        self.calls: list = []
        self.again = again

    def send_message_batch(self, **kw):
        self.calls.append([e["MessageBody"] for e in kw["Entries"]])
        if len(self.calls) == 1:
            return {"Failed": [{"Id": "3", "SenderFault": False, "Code": "InternalError"},
                               {"Id": "7", "SenderFault": True, "Code": "InvalidMessageContents", "Message": "bad"}]}
        if len(self.calls) > 3 and len(self.calls) - 3 <= self.again:
            return {"Failed": [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError"} for e in kw["Entries"]]}
        return {}


def test_a_batch_send_sqs_half_refuses_sends_every_batch_again_for_sqss_own_faults_and_names_each_refused_message():
    """SQS answers a SendMessageBatch with some entries Failed: the later batches are still sent; an entry SQS failed
    on its own side (SenderFault false) is sent again, alone, and went; the error carries each refused message with
    its reason (none dropped unsaid), not the bodies. A sender's fault is not sent again (SQS would refuse it
    again)."""
    from chalicelib.adapters.queue import Queue, encode
    from chalicelib.ports import NotSent
    client = HalfRefusing()
    messages = [{"kind": "referral.count", "n": n} for n in range(25)]
    with pytest.raises(NotSent) as refused:
        Queue("https://sqs/q", client=client).send_many(messages)
    assert [len(c) for c in client.calls] == [10, 10, 5, 1] and client.calls[-1] == [encode(messages[3])]
    assert refused.value.refused == [(messages[7], "InvalidMessageContents: bad")]
    assert str(refused.value) == "SQS refused 1 of 25 message(s): InvalidMessageContents: bad"


def test_an_entry_sqs_fails_on_its_own_side_three_times_in_a_row_is_said_refused_in_the_messages_order():
    from chalicelib.adapters.queue import RESENDS, Queue
    from chalicelib.ports import NotSent
    client = HalfRefusing(again=RESENDS)
    messages = [{"kind": "referral.count", "n": n} for n in range(25)]
    with pytest.raises(NotSent) as refused:
        Queue("https://sqs/q", client=client).send_many(messages)
    assert [len(c) for c in client.calls] == [10, 10, 5, 1, 1] and RESENDS == 2      # sent 1 + RESENDS times
    assert refused.value.refused == [(messages[3], "InternalError"), (messages[7], "InvalidMessageContents: bad")]
    assert str(refused.value) == "SQS refused 2 of 25 message(s): InternalError; InvalidMessageContents: bad"


def test_a_wait_whose_copy_sqs_refuses_comes_back_alone_and_the_copies_sent_are_not_sent_again():
    """SQS fails one entry of the copies' batch send (an InternalError): that record's original comes back
    by itself; the others' copies went, so their originals are deleted (not handed back to wait again,
    which would send a second copy of each), and the done record is deleted as usual."""
    from chalicelib.ports import NotSent
    work = FakeWork()
    defer = work.queue.defer

    def refuses_one(later):
        defer(later)
        refused = [(m.body, "InternalError") for m in later if json.loads(m.body)["rf_user_id"] == "3"]
        work.queue.deferred = [m for m in work.queue.deferred if json.loads(m.body)["rf_user_id"] != "3"]
        raise NotSent(refused, len(later))
    work.queue.defer = refuses_one
    waits = {user: Deferred("shared budget spent", retry_after=40) for user in ("2", "3", "4")}
    with pytest.raises(RetryBatch, match="1 of 4 records will be retried: m3: could not send its copy back to the "
                                         "queue to wait: InternalError"):
        handle_batch([record(n, str(n)) for n in range(1, 5)], work, handlers=handlers(waits))
    assert sorted(json.loads(m.body)["rf_user_id"] for m in work.queue.deferred) == ["2", "4"]
    assert work.queue.deleted == ["rh1", "rh2", "rh4"]
