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
