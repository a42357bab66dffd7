"""Security review: the webhook edge against unauthenticated callers (in-memory twins, fake clock)."""
from __future__ import annotations

import json

from chalicelib.adapters.memory import MemoryStore
from chalicelib.config import Config
from chalicelib.runtime import Runtime
from chalicelib.services.ingest import receive_intercom, signature
from tests.fakes import FakeClock, FakeQueue, MemorySecrets


def test_unsigned_notifications_naming_made_up_workspaces_do_not_each_cost_a_secret_store_read():
    """Amplification: the Intercom route reads the client secret of whatever `app_id` the body names
    before any signature is checked (the body must say whose secret signs it). A cached absence is kept
    per name, so an unauthenticated caller who sends each request with a new made-up app_id makes one
    SSM GetParameter per request. SSM's GetParameter throughput is one budget for the whole account and
    region (40/s by default): a flood throttles the bridge's own secret reads, and a throttled read is
    an exception on the edge (a 5xx), so Intercom's real, signed notifications are refused meanwhile.
    Expected: a workspace the bridge has never had connected is refused (401) without asking the
    secret store each time — e.g. the names of connected workspaces are checked first (the table's
    WORKSPACES index, cached), or every client secret is read at once by path and cached."""
    clock = FakeClock()
    store, secrets = MemoryStore(), MemorySecrets("/p", {"/p/edge/intercom/vne310wv/client-secret": "right"})
    store.connections.put_workspace("vne310wv", ["token", "client-secret"])
    rt = Runtime(Config.from_env({"BRIDGE_SECRETS_PATH": "/p"}), clock=clock, queue=FakeQueue(), store=store,
                 secrets=secrets)
    for n in range(200):
        raw = json.dumps({"type": "notification_event", "app_id": f"made-up-{n}", "topic": "contact.lead.updated",
                          "id": f"notif_{n}", "data": {"item": {"type": "contact", "id": "1"}}}).encode()
        reply = receive_intercom({"X-Hub-Signature": signature("guess", raw), "Content-Type": "application/json"},
                                 raw, rt)
        assert reply.status == 401
    assert len(secrets.reads) <= 5, f"{len(secrets.reads)} secret store reads for 200 unauthenticated requests"


def test_a_trailing_newline_passes_no_format_check():
    """Python's `$` also matches before a final newline: "vne310wv\n" must not pass for an app_id, a
    secret's name, a start link's ticket or an OAuth state, nor "42\n" for a campaign a join names (it
    would be another campaign, and "1001\n" another person, than the ones without)."""
    import pytest

    from chalicelib.domain import oauth
    from chalicelib.ports.secrets import valid_workspace
    from chalicelib.services.connections import ConnectError, check_workspace_id
    from chalicelib.services.ingest import RF_SECRET_HEADER, receive_rf_join

    assert valid_workspace("vne310wv") and not valid_workspace("vne310wv\n")
    with pytest.raises(ConnectError, match="not an Intercom app_id"):
        check_workspace_id("vne310wv\n", None)
    with pytest.raises(ValueError, match="not a secret name"):
        MemorySecrets("/p").full_name("rf/token\n")
    ticket = oauth.new_ticket()
    assert oauth.ticket_shape(ticket) and not oauth.ticket_shape(ticket + "\n")
    clock = FakeClock()
    nonce = oauth.new_nonce()
    assert oauth.read_state("key", oauth.make_state("key", nonce, clock()), clock()).nonce == nonce
    with pytest.raises(oauth.StateError):
        oauth.read_state("key", oauth.make_state("key", nonce + "\n", clock()), clock())

    store = MemoryStore()
    store.settings.put("42", {"campaign_id": "42"}, "vne310wv")
    rt = Runtime(Config.from_env({"BRIDGE_SECRETS_PATH": "/p"}), clock=clock, queue=FakeQueue(), store=store,
                 secrets=MemorySecrets("/p", {"/p/edge/rf/webhook-secret": "hook"}))
    for body in ({"id": 1001, "campaign_id": "42\n", "email": "ann@example.com"},
                 {"id": "1001\n", "campaign_id": 42, "email": "ann@example.com"}):
        reply = receive_rf_join({RF_SECRET_HEADER: "hook", "Content-Type": "application/json"},
                                json.dumps(body).encode(), rt)
        assert reply.status == 400, reply
    assert rt.queue.sent == []
