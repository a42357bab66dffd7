import json

import pytest

from chalicelib.services.ingest import receive_intercom, receive_rf_join, signature
from chalicelib.services.worker import Record, Result, RetryBatch, settle
from tests.fakes import FakeRuntime


def rf(body, secret="s3cret", **rt):
    runtime = FakeRuntime(**rt)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return receive_rf_join({"X-Bridge-Secret": secret} if secret else {}, raw, runtime), runtime


def test_rf_join_is_enqueued_once_with_the_normalised_person():
    reply, runtime = rf({"id": 7, "campaign_id": 42, "email": "a@b.co", "referrer_id": 3})
    assert reply.status == 202
    [message] = runtime.queue.sent
    assert message["kind"] == "rf.join" and message["rf_user_id"] == "7" and message["person"]["type"] == "lead"


@pytest.mark.parametrize("body,secret,status,error", [
    ({"id": 1, "campaign_id": 42}, "wrong", 401, "unauthorized"),
    ({"id": 1, "campaign_id": 42}, None, 401, "unauthorized"),
    (b"{", "s3cret", 400, "malformed_json"),
    ({"campaign_id": 42}, "s3cret", 400, "missing_user_id"),
    ({"id": 1}, "s3cret", 400, "missing_campaign_id"),
    ({"id": 1, "campaign_id": 9}, "s3cret", 404, "unknown_campaign"),
])
def test_rf_bad_input(body, secret, status, error):
    reply, runtime = rf(body, secret)
    assert (reply.status, reply.body["error"]) == (status, error) and runtime.queue.sent == []


def test_rf_without_a_configured_secret_refuses_everything():
    reply, runtime = rf({"id": 1, "campaign_id": 42}, secret="", rf_secret="")
    assert reply.status == 503 and runtime.queue.sent == []


def intercom(payload, secret="cs", **kw):
    runtime = FakeRuntime(intercom_secrets={"ws1": "cs"}, **kw)
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return receive_intercom({"X-Hub-Signature": signature(secret, raw)}, raw, runtime), runtime


def event(topic="contact.lead.updated", app_id="ws1", item=None):
    return {"type": "notification_event", "app_id": app_id, "id": "notif_1", "topic": topic, "created_at": 1,
            "data": {"type": "notification_event_data", "item": item or {"type": "contact", "id": "c1"}}}


def test_intercom_contact_topic_is_enqueued_once():
    reply, runtime = intercom(event())
    assert reply.status == 200
    assert runtime.queue.sent == [{"kind": "intercom.contact", "workspace": "ws1", "topic": "contact.lead.updated",
                                   "notification_id": "notif_1", "created_at": 1,
                                   "item": {"type": "contact", "id": "c1"}}]


def test_intercom_tag_topics_carry_the_contact():
    reply, runtime = intercom(event("contact.user.tag.created", item={
        "type": "contact_tag", "tag": {"id": "1"}, "contact": {"type": "contact", "id": "c9"}}))
    assert reply.status == 200 and runtime.queue.sent[0]["item"]["id"] == "c9"


def test_intercom_signature_from_another_workspace_secret_is_refused():
    reply, runtime = intercom(event(), secret="other-workspace-secret")
    assert reply.status == 401 and runtime.queue.sent == []


def test_intercom_oversize_body_is_413():
    reply, runtime = intercom(event(), BRIDGE_MAX_BODY_BYTES="100")
    assert reply.status == 413 and runtime.queue.sent == []


def rec(n, count=1):
    return Record(f"id{n}", "{}", f"rh{n}", count)


def test_settle_returns_normally_when_nothing_must_be_retried():
    runtime = FakeRuntime()
    assert settle([Result(rec(1), "done"), Result(rec(2), "dead", "x")], runtime) == {"done": 1, "retry": 0, "dead": 1}
    assert runtime.queue.deleted == []        # the event source deletes the whole batch


def test_settle_deletes_handled_records_itself_and_raises_so_only_failures_come_back():
    runtime = FakeRuntime()
    results = [Result(rec(1), "done"), Result(rec(2), "retry", "RF 500"), Result(rec(3), "dead", "422"),
               Result(rec(4), "retry", "429", retry_after=30)]
    with pytest.raises(RetryBatch, match="2 of 4 records will be retried"):
        settle(results, runtime)
    assert runtime.queue.deleted == ["rh1", "rh3"] and runtime.queue.delayed == {"rh4": 30}
