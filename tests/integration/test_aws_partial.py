"""What AWS answers when it half succeeds. DynamoDB's batch calls leave keys or items unprocessed (throttled
partitions) with an HTTP 200, and say so only in the answer: the store asks again for those, after a wait that
grows, as AWS asks of its callers, not at once in a loop that hammers the throttled partition. SQS's short poll asks
some of its servers only, and may answer none while a few messages are there: the scans of the dead letters do not
take that for the end. On moto server, whose answers are cut to what AWS gives back then."""
from __future__ import annotations

import json
import uuid

import pytest

from chalicelib.adapters.dynamo import models
from chalicelib.domain.history import Entry
from chalicelib.domain.link import JoinResult, LinkStatus, PersonRef
from tests.fakes import FakeClock
from tests.support.moto_server import dynamo_store, moto_endpoint  # noqa: F401 (a fixture)

THROTTLED_FOR = 0.5       # seconds of the store's waits during which the table leaves keys unprocessed
HAMMERED = 12             # calls while throttled: far more than a backoff makes in THROTTLED_FOR


@pytest.fixture
def store(moto_endpoint, monkeypatch):  # noqa: F811
    with dynamo_store(moto_endpoint, monkeypatch, FakeClock(), "p") as dynamo:
        yield dynamo


class Throttled:
    """The table's client, throttled until the store has waited THROTTLED_FOR seconds in all: meanwhile a
    BatchGetItem or a BatchWriteItem does its first `served` keys or items only and answers the others unprocessed,
    as DynamoDB does (HTTP 200)."""

    UNPROCESSED = {"BatchGetItem": ("Keys", "UnprocessedKeys"), "BatchWriteItem": (None, "UnprocessedItems")}

    def __init__(self, monkeypatch, until: float = THROTTLED_FOR, served: int = 1, hammered: int = HAMMERED):
        self.client, self.waited, self.calls, self.until = models._client(), 0.0, 0, until
        self.served, self.hammered = served, hammered
        self.real = self.client._make_api_call
        monkeypatch.setattr(self.client, "_make_api_call", self.call)
        monkeypatch.setattr(models, "pause", self.pause, raising=False)

    def pause(self, seconds: float) -> None:
        self.waited += seconds

    def call(self, operation: str, kwargs: dict) -> dict:
        if operation not in self.UNPROCESSED or self.waited >= self.until:
            return self.real(operation, kwargs)
        self.calls += 1
        if self.calls > self.hammered:
            pytest.fail(f"{self.calls} {operation} calls while the table was throttled, after "
                        f"{self.waited:.2f} s of waits: asked again at once, not after a growing wait")
        listed, unprocessed = self.UNPROCESSED[operation]
        (table, asked), = kwargs["RequestItems"].items()
        entries = asked[listed] if listed else asked
        done, rest = entries[:self.served], entries[self.served:]
        if not done:                                              # (none processed: DynamoDB is not asked)
            return {"Responses": {table: []}, unprocessed: {table: {**asked, listed: rest} if listed else rest}}
        first = {**asked, listed: done} if listed else done
        answer = self.real(operation, {**kwargs, "RequestItems": {table: first}})
        return {**answer, unprocessed: {table: {**asked, listed: rest} if listed else rest} if rest else {}}


def linked(store, refs) -> None:
    for ref in refs:
        claim = store.links.claim(ref, "ws1")
        store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="lead", email=f"p{ref.rf_user_id}@example.com",
                                             contact_id=f"c{ref.rf_user_id}"), [Entry("join", "linked")])


def test_links_read_while_the_table_throttles_are_all_read_after_growing_waits(store, monkeypatch):
    refs = [PersonRef("42", str(n)) for n in range(30)]
    linked(store, refs)
    throttled = Throttled(monkeypatch)
    links = store.links.get_many(refs)
    assert sorted(links) == sorted(refs)                        # none dropped: a dropped one is a join taken as new
    assert throttled.waited >= THROTTLED_FOR and throttled.calls <= HAMMERED


def test_a_persons_history_erased_while_the_table_throttles_is_all_erased_after_growing_waits(store, monkeypatch):
    ref = PersonRef("42", "7")
    for n in range(30):
        store.history.transact(ref, [Entry("contact", "noted", f"event {n}")])
    throttled = Throttled(monkeypatch)
    assert store.history.erase(ref) == 30                     # `bridge forget`: nothing of the person left behind
    assert store.history.entries(ref) == []
    assert throttled.waited >= THROTTLED_FOR and throttled.calls <= HAMMERED


def test_a_table_that_stays_throttled_ends_the_read_with_a_reason_it_can_be_retried_for(store, monkeypatch):
    refs = [PersonRef("42", str(n)) for n in range(30)]
    throttled = Throttled(monkeypatch, until=float("inf"), served=0)
    with pytest.raises(models.Unprocessed, match="DynamoDB left 30 of 30 keys to read unprocessed after 10 calls, 10 "
                                                 r"of them processing none \(the table is throttled\): try again"):
        store.links.get_many(refs)
    assert throttled.calls == models.UNPROCESSED_TRIES and throttled.waited < 15


def test_a_big_read_on_a_table_throttled_slowly_goes_on_while_each_call_reads_some(store, monkeypatch):
    """A batch of 100 links, of which the table reads 3 a call: far more calls than the read gives up after when
    none is read, and every link is read."""
    refs = [PersonRef("42", str(n)) for n in range(100)]
    linked(store, refs)
    throttled = Throttled(monkeypatch, until=float("inf"), served=3, hammered=34)
    assert sorted(store.links.get_many(refs)) == sorted(refs)
    assert throttled.calls == 34 > models.UNPROCESSED_TRIES


class ShortPolls:
    """SQS's client, as SQS answers a short poll (WaitTimeSeconds 0): it asks a subset of SQS's servers, and "if the
    number of messages in the queue is extremely small, you might not receive any" (AWS's documentation of short
    polling). Here none of the queue's few letters is on the servers a short poll asks; a long poll asks them all."""

    def __init__(self, client):
        self.client = client

    def __getattr__(self, name: str):
        return getattr(self.client, name)

    def receive_message(self, **kwargs) -> dict:
        return self.client.receive_message(**kwargs) if kwargs.get("WaitTimeSeconds") else {}


def test_a_few_dead_letters_are_all_listed_though_a_short_poll_answers_none(moto_endpoint):  # noqa: F811
    from infra.local.aws import client

    from chalicelib.adapters.queue import Queue
    from chalicelib.services.dead_letters import look
    from tests.unit.test_dead_letters_scan import Rt

    sqs = client("sqs", moto_endpoint)
    urls = [sqs.create_queue(QueueName=f"p-{uuid.uuid4().hex[:10]}-{part}")["QueueUrl"] for part in ("work", "dead")]
    queue = Queue(*urls, client=ShortPolls(sqs))
    for n in range(3):
        queue.dead_letter(json.dumps({"kind": "rf.join", "campaign_id": "42", "rf_user_id": str(n)}),
                          "gave up after 5 tries: Referral Factory answered 500", 5, "2026-11-27T15:00:00Z")
    listing = look(Rt(queue, FakeClock()))
    # (`bridge dlq list`, and the scans of replay, discard, doctor and forget: none said "hidden by another command")
    assert sorted(d.rf_user_id for d in listing.letters) == ["0", "1", "2"] and listing.not_seen == 0
