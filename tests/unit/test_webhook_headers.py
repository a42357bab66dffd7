"""The webhook routes through Chalice's test client (app.py's routes, handlers.py, the intake), on the in-memory
twins: bodies of any shape and headers missing, empty or holding what no secret or signature can are a 4xx that
says why, never a 5xx, and never the 503 that says the bridge's own store failed (a sender retries that; the
operator's log would blame SSM)."""
from __future__ import annotations

import json

import pytest
from chalice.test import Client

from chalicelib.adapters.memory import MemoryStore
from chalicelib.config import Config
from chalicelib.runtime import Runtime, reset_default_runtime
from chalicelib.services.ingest import signature
from tests.fakes import FakeClock, FakeQueue, MemorySecrets

WORKSPACE = "vne310wv"
JOIN = b'{"id": 7, "campaign_id": 42, "email": "ann@example.com"}'
NOTIFICATION = json.dumps({"app_id": WORKSPACE, "topic": "contact.lead.updated", "id": "notif_1",
                           "data": {"item": {"type": "contact", "id": "6ab1"}}}).encode()


@pytest.fixture
def client():
    import app

    store = MemoryStore()
    store.connections.put_workspace(WORKSPACE, ["token", "client-secret"])
    secrets = MemorySecrets("/p", {f"/p/edge/intercom/{WORKSPACE}/client-secret": "right",
                                   "/p/edge/rf/webhook-secret": "hook"})
    queue = FakeQueue()
    reset_default_runtime(Runtime(Config.from_env({"BRIDGE_SECRETS_PATH": "/p"}), clock=FakeClock(), queue=queue,
                                  store=store, secrets=secrets))
    try:
        with Client(app.app) as test_client:
            test_client.queue = queue          # type: ignore[attr-defined]
            yield test_client
    finally:
        reset_default_runtime(None)


def _answer(response) -> tuple[int, str]:
    return response.status_code, json.loads(response.body)["error"]


@pytest.mark.parametrize("value", ["", "wrong", "h\u00e9ook", "hook\udc80", "\udcff" * 40, "\x00"])
def test_a_secret_header_no_secret_can_be_is_a_401_not_a_503(client, value):
    """A lone surrogate (what a header's bytes that are not UTF-8 become, read with `surrogateescape`) cannot be
    encoded to compare: it was a 503 `unavailable` blaming the secret store, with its traceback logged."""
    headers = {"Content-Type": "application/json", **({"X-Bridge-Secret": value} if value else {})}
    assert _answer(client.http.post("/webhooks/referral-factory", body=JOIN, headers=headers)) == (401, "unauthorized")
    assert client.queue.sent == []


@pytest.mark.parametrize("value", ["", "sha1=", "sha1=\u00e9", "sha1=\udc80", "\udc80" * 45])
def test_a_signature_header_no_signature_can_be_is_a_401_not_a_503(client, value):
    headers = {"Content-Type": "application/json", **({"X-Hub-Signature": value} if value else {})}
    assert _answer(client.http.post("/webhooks/intercom", body=NOTIFICATION, headers=headers)) == (401, "unauthorized")
    assert client.queue.sent == []


@pytest.mark.parametrize("route,body,headers,expected", [
    ("intercom", b"[[[1]]]", {}, (400, "malformed_json")),                       # nested, not an object
    ("intercom", b'"text"', {}, (400, "malformed_json")),
    ("intercom", b"\xff\xfe{}", {}, (400, "malformed_json")),                    # not UTF-8
    ("intercom", b'{"a": "' + b"x" * 300_000 + b'"}', {}, (413, "too_large")),
    ("intercom", b'{"app_id": ["vne310wv"]}', {}, (401, "unauthorized")),
    ("intercom", NOTIFICATION, {"Content-Type": "application/json; charset=\udc80"}, (415, "unsupported_media_type")),
    ("intercom", NOTIFICATION, {"Content-Encoding": "gzip\udc80"}, (415, "unsupported_media_type")),
    ("referral-factory", b"[1, [2]]", {"X-Bridge-Secret": "hook"}, (400, "malformed_json")),
    ("referral-factory", b'{"data": [1, {"user": null}]}', {"X-Bridge-Secret": "hook"}, (400, "invalid_field")),
    ("referral-factory", b'{"id": "\xff"}', {"X-Bridge-Secret": "hook"}, (400, "malformed_json")),
    ("referral-factory", b"id=%ff&campaign_id=42", {"X-Bridge-Secret": "hook",
                                                    "Content-Type": "application/x-www-form-urlencoded"},
     (400, "malformed_form")),
    ("referral-factory", b"{}" + b" " * 300_000, {"X-Bridge-Secret": "hook"}, (413, "too_large")),
    ("referral-factory", JOIN, {"X-Bridge-Secret": "hook", "Content-Type": ""}, (404, "unknown_campaign")),
])
def test_bodies_and_headers_of_any_shape_get_a_4xx_that_names_the_problem(client, route, body, headers, expected):
    assert _answer(client.http.post(f"/webhooks/{route}", body=body, headers=headers)) == expected
    assert client.queue.sent == []


def test_the_right_secret_and_signature_are_still_taken(client):
    """(The headers above are refused for what they are: these, sent right, are queued.)"""
    assert client.http.post("/webhooks/intercom", body=NOTIFICATION, headers={
        "Content-Type": "application/json", "X-Hub-Signature": signature("right", NOTIFICATION)}).status_code == 200
    assert len(client.queue.sent) == 1
