import json

import pytest

from chalicelib.adapters.queue import MAX_BODY_BYTES
from chalicelib.services.ingest import receive_intercom, receive_rf_join, signature
from chalicelib.webhooks import FORM
from chalicelib.services.worker import Record, Result, RetryBatch, settle
from tests.fakes import FakeEdge, FakeWork


def rf(body, secret="s3cret", **rt):
    runtime = FakeEdge(**rt)
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
    runtime = FakeEdge(intercom_secrets={"ws1": "cs"}, **kw)
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
    runtime = FakeWork()
    assert settle([Result(rec(1), "done"), Result(rec(2), "dead", "x")], runtime) == {"done": 1, "retry": 0, "dead": 1}
    assert runtime.queue.deleted == []        # the event source deletes the whole batch


def test_settle_deletes_handled_records_itself_and_raises_so_only_failures_come_back():
    runtime = FakeWork()
    results = [Result(rec(1), "done"), Result(rec(2), "retry", "RF 500"), Result(rec(3), "dead", "422"),
               Result(rec(4), "retry", "429", retry_after=30)]
    with pytest.raises(RetryBatch, match="2 of 4 records will be retried"):
        settle(results, runtime)
    assert runtime.queue.deleted == ["rh1", "rh3"] and runtime.queue.delayed == {"rh4": 30}


def test_a_form_encoded_rf_join_is_read_into_the_same_fields_as_json():
    runtime = FakeEdge()
    raw = b"id=7&campaign_id=42&email=ann%40example.com&referrer_id=3&meta[company]=Acme"
    reply = receive_rf_join({"X-Bridge-Secret": "s3cret", "Content-Type": "application/x-www-form-urlencoded"},
                            raw, runtime)
    assert reply.status == 202
    [message] = runtime.queue.sent
    assert message["person"] == {"id": "7", "campaign_id": "42", "email": "ann@example.com", "referrer_id": "3",
                                 "type": "lead", "meta.company": "Acme"}


@pytest.mark.parametrize("receive,content_type", [
    (receive_rf_join, "multipart/form-data; boundary=x"), (receive_rf_join, "application/xml"),
    (receive_intercom, "application/x-www-form-urlencoded"), (receive_intercom, "text/html"),
])
def test_an_unsupported_media_type_is_our_own_415(receive, content_type):
    runtime = FakeEdge(intercom_secrets={"ws1": "cs"})
    reply = receive({"Content-Type": content_type, "X-Bridge-Secret": "s3cret"}, b"id=1", runtime)
    assert reply.status == 415 and reply.body["error"] == "unsupported_media_type"
    assert reply.body["message"].startswith(f"Content-Type {content_type.split(';')[0]} is not accepted: send ")


@pytest.mark.parametrize("raw,status,error,person", [     # each was a 500 (ValueError out of the form's reading)
    (b"0=7&1=42", 400, "missing_user_id", None),                     # numbered names at the top: still an object
    (b"id=7&campaign_id=42&meta[%C2%B2]=x", 202, None, {"meta.\u00b2": "x"}),   # a superscript 2 is no index
])
def test_a_signed_form_whose_names_are_numbers_is_read_as_named_not_a_500(raw, status, error, person):
    runtime = FakeEdge()
    reply = receive_rf_join({"X-Bridge-Secret": "s3cret", "Content-Type": FORM}, raw, runtime)
    assert (reply.status, reply.body.get("error")) == (status, error)
    if person:
        [message] = runtime.queue.sent
        assert {k: v for k, v in message["person"].items() if k.startswith("meta.")} == person


@pytest.mark.parametrize("receive", [receive_rf_join, receive_intercom])
@pytest.mark.parametrize("charset", ["nope", "base64", "a\x00b", "\ud800"])     # (the last two were a 500)
def test_a_charset_that_names_no_text_encoding_is_a_415(receive, charset):
    runtime = FakeEdge(intercom_secrets={"ws1": "cs"})
    reply = receive({"Content-Type": f"application/json; charset={charset}", "X-Bridge-Secret": "s3cret"},
                    b'{"id": 1, "campaign_id": 42}', runtime)
    assert (reply.status, reply.body["error"]) == (415, "unsupported_media_type") and runtime.queue.sent == []
    assert reply.body["message"] == f"charset {charset!r} is not known: send UTF-8"


@pytest.mark.parametrize("receive", [receive_rf_join, receive_intercom])
@pytest.mark.parametrize("content_type", [";;;", "; charset=utf-8", "json", "application/"])
def test_a_content_type_without_a_media_type_is_a_415_not_read_as_json(receive, content_type):
    runtime = FakeEdge(intercom_secrets={"ws1": "cs"})
    reply = receive({"Content-Type": content_type, "X-Bridge-Secret": "s3cret"}, b'{"id": 1, "campaign_id": 42}',
                    runtime)
    assert (reply.status, reply.body["error"]) == (415, "unsupported_media_type") and runtime.queue.sent == []
    assert reply.body["message"].startswith(f"Content-Type {content_type!r} (no type/subtype) is not accepted: send ")


def test_an_unsigned_body_nested_past_pythons_recursion_limit_is_a_400_before_the_signature_check():
    runtime = FakeEdge(intercom_secrets={"ws1": "cs"})
    reply = receive_intercom({}, b"[" * 100_000, runtime)
    assert (reply.status, reply.body["error"]) == (400, "malformed_json")


@pytest.mark.parametrize("app_id", [["ws1"], {"id": "ws1"}, 5, "ws1/../ws2", None])
def test_an_app_id_of_another_shape_is_the_same_401_as_an_unknown_one(app_id):
    body = {**event(), "app_id": app_id}
    reply, runtime = intercom(body)
    assert (reply.status, reply.body["error"]) == (401, "unauthorized") and runtime.queue.sent == []


@pytest.mark.parametrize("change,error", [
    ({"topic": ["contact.lead.updated"]}, "invalid_notification"),
    ({"data": [{"item": {"id": "c1"}}]}, "invalid_notification"),
    ({"data": {"item": {"type": "contact"}}}, "no_contact"),
    ({"data": {"item": {"id": "c1", "email": {"a": 1}}}}, "invalid_notification"),
])
def test_a_signed_notification_of_the_wrong_shape_is_a_400(change, error):
    reply, runtime = intercom({**event(), **change})
    assert (reply.status, reply.body["error"]) == (400, error) and runtime.queue.sent == []


def test_a_notification_too_large_for_the_queue_is_queued_naming_its_contact_only():
    item = {"type": "contact", "id": "c1", "email": "a@b.co", "role": "lead", "updated_at": 5,
            "custom_attributes": {"note": "é" * 100_000}}                # 200 KB of UTF-8
    reply, runtime = intercom(json.dumps(event(item=item), ensure_ascii=False).encode())
    assert reply.status == 200 and runtime.queue.sent[0]["item"] == item  # fits: queued as UTF-8, not \u-escaped
    item["custom_attributes"]["more"] = "\ufffe\uffff" * 10_000     # 6 bytes each, escaped for SQS: 12
    raw = json.dumps(event(item=item), ensure_ascii=False).encode()
    assert len(raw) < 262_144
    reply, runtime = intercom(raw)
    assert reply.status == 200
    [message] = runtime.queue.sent
    assert message.pop("too_large") > MAX_BODY_BYTES                # (its size, for the worker's history entry)
    assert message == {"kind": "intercom.contact", "workspace": "ws1", "topic": "contact.lead.updated",
                       "notification_id": "notif_1", "created_at": 1,
                       "item": {"id": "c1", "email": "a@b.co", "updated_at": 5}}


def test_a_join_too_large_for_the_queue_is_queued_without_as_many_of_its_largest_fields_as_it_takes():
    reply, runtime = rf({"id": 7, "campaign_id": 42, "email": "a@b.co", "referrer_id": 3, "first_name": "Ann",
                         "meta": {"notes": "x" * 200_000, "more": "y" * 60_000, "small": "z"}})
    [message] = runtime.queue.sent
    assert reply.status == 202 and message["too_large"] > MAX_BODY_BYTES and message["left_out"] == 1
    assert message["person"] == {"id": "7", "campaign_id": "42", "email": "a@b.co", "referrer_id": "3",
                                 "type": "lead", "first_name": "Ann", "meta.more": "y" * 60_000, "meta.small": "z"}


@pytest.mark.parametrize("charset,raw", [       # each read in its charset (not UTF-8: %ff) holds a lone surrogate
    ("unicode_escape", b"id=7&campaign_id=42&email=a%5Cud800@x.co&first_name=%ff"),
    ("raw_unicode_escape", b"id=7&campaign_id=42&email=a@x.co&first_name=%5Cud800%ff"),
])
@pytest.mark.parametrize("secret,status,error", [("s3cret", 400, "malformed_form"), ("wrong", 401, "unauthorized")])
def test_a_form_whose_charset_makes_text_utf8_cannot_hold_is_a_4xx_not_a_traceback_or_503(charset, raw, secret,
                                                                                            status, error):
    """A lone surrogate cannot be hashed, logged or queued: the form is not text, as one not in its charset."""
    runtime = FakeEdge()
    reply = receive_rf_join({"X-Bridge-Secret": secret, "Content-Type": f"{FORM}; charset={charset}"}, raw, runtime)
    assert (reply.status, reply.body["error"]) == (status, error) and runtime.queue.sent == []
    if status == 400:
        assert reply.body["message"] == f"the form is not UTF-8 nor {charset.replace('_', '-')} (also after %-decoding)"
