"""On moto's SQS (real HTTP): the dead-letter queue adapter hides received letters again, 10 a
ChangeMessageVisibilityBatch call, so a scan longer than its hide time reads every letter once. Time
moves without sleeping: moto's SQS clock is moved forward, in step with the scan's fake clock."""
from __future__ import annotations

import json
import uuid

import pytest

from chalicelib.adapters.queue import Queue
from chalicelib.ports import ReceivedLetter
from chalicelib.services.dead_letters import holding
from infra.local.aws import client
from tests.fakes import FakeClock


@pytest.fixture
def later(monkeypatch):
    """`later(seconds)`: moto's SQS is that many seconds older (hide times run out, no sleep)."""
    import moto.sqs.models as sqs_models
    real, shift = sqs_models.unix_time_millis, [0.0]
    monkeypatch.setattr(sqs_models, "unix_time_millis", lambda *a: real(*a) + shift[0] * 1000)

    def move(seconds: float) -> None:
        shift[0] += seconds
    return move


class Counting:
    """The SQS client, counting its calls by name."""

    def __init__(self, real):
        self.real, self.calls = real, []

    def __getattr__(self, name):
        method = getattr(self.real, name)

        def counted(*args, **kwargs):
            self.calls.append(name)
            return method(*args, **kwargs)
        return counted


@pytest.fixture
def queue(moto_endpoint) -> Queue:
    sqs = client("sqs", moto_endpoint)
    name = f"t-{uuid.uuid4().hex[:10]}"
    urls = [sqs.create_queue(QueueName=f"{name}-{part}")["QueueUrl"] for part in ("work", "dead")]
    # poll=0, as the local stack's BRIDGE_DLQ_POLL_SECONDS: moto is one server, its short poll sees every letter (a
    # long poll would only wait a real second at every scan's end)
    yield Queue(*urls, client=Counting(sqs), poll=0)
    for url in urls:
        sqs.delete_queue(QueueUrl=url)


class Sent:
    """An SQS client that keeps the messages it is asked to send."""

    def __init__(self):
        self.messages: list[dict] = []

    def send_message(self, **message):
        self.messages.append(message)


def dead_letters(queue: Queue, n: int) -> None:
    """n letters, each as Queue.dead_letter makes it (its own request), sent 10 a SendMessageBatch call: one call
    each (300 in the scan's test) is not what these tests are about."""
    made = Queue(queue.queue_url, queue.dlq_url, client=Sent())
    for i in range(n):
        made.dead_letter(json.dumps({"kind": "rf.join", "campaign_id": "42", "rf_user_id": str(i)}), "gave up", 3, "now")
    sqs = queue.client.real
    assert {m["QueueUrl"] for m in made.client.messages} == {queue.dlq_url}
    for start in range(0, n, 10):
        entries = [{"Id": str(j), **{k: v for k, v in m.items() if k != "QueueUrl"}}
                   for j, m in enumerate(made.client.messages[start:start + 10])]
        assert not sqs.send_message_batch(QueueUrl=queue.dlq_url, Entries=entries).get("Failed")


def receive_all(queue: Queue, visibility: int) -> list[ReceivedLetter]:
    got: list[ReceivedLetter] = []
    while batch := queue.receive_dead(10, visibility):
        got += batch
    return got


def test_hiding_received_letters_again_keeps_them_hidden_past_their_first_hide_time(queue, later):
    dead_letters(queue, 25)
    held = receive_all(queue, 60)
    assert len(held) == 25
    queue.client.calls.clear()
    assert queue.hide_dead_many([m.handle for m in held[:20]], 600) == set()
    assert queue.client.calls == ["change_message_visibility_batch"] * 2               # 10 a call
    later(120)                                                    # the first hide time is over
    back = receive_all(queue, 60)
    assert {m.message_id for m in back} == {m.message_id for m in held[20:]}      # only those not hidden again
    later(600)                                                    # the 600 s are over too: all back
    assert {m.message_id for m in receive_all(queue, 60)} == {m.message_id for m in held}


class Rt:
    def __init__(self, queue: Queue, clock: FakeClock):
        self.queue, self.clock = queue, clock


@pytest.mark.slow
def test_a_scan_longer_than_its_hide_time_reads_every_letter_once_and_leaves_them_visible(queue, later):
    """300 letters, 30 receives of 5 s each (150 s), each letter hidden for 60 s."""
    dead_letters(queue, 300)
    clock = FakeClock()
    receive = queue.receive_dead

    def slow(max_messages: int = 10, visibility: int = 60) -> list[ReceivedLetter]:
        clock.now += 5
        later(5)
        return receive(max_messages, visibility)
    queue.receive_dead = slow                                     # type: ignore[method-assign]
    with holding(Rt(queue, clock), 60) as (received, _, not_seen, cut, _):
        ids = [m.message_id for m in received]
    assert len(ids) == len(set(ids)) == 300 and not_seen == 0 and not cut
    assert queue.client.calls.count("change_message_visibility_batch") < 300   # 10 a call, hidden again and released
    queue.receive_dead = receive                                  # type: ignore[method-assign]
    assert len(receive_all(queue, 60)) == 300                     # visible again at once
