"""The webhook edge's lookups of who is calling: a connected workspace is known before its secret is read,
and a store that fails is an outage the caller is asked to retry (503, Retry-After), never a 5xx the
body caused or a 401 a genuine sender would take for a wrong signature; no name, id or ticket the edge reads
passes with a trailing newline. In-memory twins, fake clock."""
from __future__ import annotations

import json
from typing import Optional

import pytest

from chalicelib.adapters.memory import MemoryStore
from chalicelib.config import Config
from chalicelib.domain import oauth
from chalicelib.ports.secrets import valid_workspace
from chalicelib.runtime import Runtime
from chalicelib.services.connections import ConnectError, check_workspace_id
from chalicelib.services.ingest import RF_SECRET_HEADER, receive_intercom, receive_rf_join, signature
from tests.fakes import FakeClock, FakeQueue, MemorySecrets

WORKSPACE = "vne310wv"
SECRET_NAME = f"/p/edge/intercom/{WORKSPACE}/client-secret"


class FailingSecrets(MemorySecrets):
    """SSM throttling (or unreachable): every read raises, as boto3 does once its retries are spent."""

    failing = False      # for every scoped view (they are made with type(self))

    def get(self, name: str) -> Optional[str]:
        if FailingSecrets.failing:
            raise RuntimeError("ThrottlingException: Rate exceeded")
        return super().get(name)


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.workspace_reads: list[str] = []
        read = self.connections.workspace

        def counted(workspace: str):
            self.workspace_reads.append(workspace)
            return read(workspace)
        self.connections.workspace = counted  # type: ignore[method-assign]


def _runtime(store=None, secrets=None) -> Runtime:
    store = store or CountingStore()
    store.connections.put_workspace(WORKSPACE, ["token", "client-secret"])
    secrets = secrets or MemorySecrets("/p", {SECRET_NAME: "right", "/p/edge/rf/webhook-secret": "hook"})
    return Runtime(Config.from_env({"BRIDGE_SECRETS_PATH": "/p"}), clock=FakeClock(), queue=FakeQueue(),
                   store=store, secrets=secrets)


def _notify(rt: Runtime, app_id: str = WORKSPACE, secret: str = "right", n: int = 1):
    raw = json.dumps({"type": "notification_event", "app_id": app_id, "topic": "contact.lead.updated",
                      "id": f"notif_{n}", "created_at": 1700000000,
                      "data": {"item": {"type": "contact", "id": "6ab1", "role": "lead"}}}).encode()
    return receive_intercom({"X-Hub-Signature": signature(secret, raw), "Content-Type": "application/json"}, raw, rt)


def test_a_connected_workspaces_notifications_are_accepted_and_its_connection_is_read_once_per_container():
    store = CountingStore()
    secrets = MemorySecrets("/p", {SECRET_NAME: "right"})
    rt = _runtime(store, secrets)
    assert [_notify(rt, n=n).status for n in range(5)] == [200] * 5
    assert store.workspace_reads == [WORKSPACE] and secrets.reads == [SECRET_NAME]


def test_a_made_up_workspace_costs_a_table_read_and_no_secret_read_and_gets_the_same_401_as_a_wrong_signature():
    store, secrets = CountingStore(), MemorySecrets("/p", {SECRET_NAME: "right"})
    rt = _runtime(store, secrets)
    made_up, wrong = _notify(rt, app_id="made-up"), _notify(rt, secret="guess")
    assert made_up.status == wrong.status == 401 and made_up.body == wrong.body
    assert secrets.reads == [SECRET_NAME]                       # the connected one's, for the wrong signature
    assert store.workspace_reads == ["made-up", WORKSPACE]


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
    secrets = MemorySecrets("/p", {SECRET_NAME: "right"})
    rt = _runtime(MemoryStore(), secrets)
    for n in range(200):
        assert _notify(rt, app_id=f"made-up-{n}", secret="guess", n=n).status == 401
    assert len(secrets.reads) <= 5, f"{len(secrets.reads)} secret store reads for 200 unauthenticated requests"


def test_a_workspace_connected_a_moment_ago_is_accepted_at_once():
    store = CountingStore()
    rt = _runtime(store, MemorySecrets("/p", {SECRET_NAME: "right", "/p/edge/intercom/new-ws/client-secret": "new"}))
    assert _notify(rt, app_id="new-ws", secret="new").status == 401      # not connected yet
    store.connections.put_workspace("new-ws", ["token", "client-secret"])
    assert _notify(rt, app_id="new-ws", secret="new").status == 200


def test_a_secret_store_that_fails_gets_503_with_retry_after_on_both_webhooks_not_a_5xx_or_a_401():
    FailingSecrets.failing = True
    try:
        rt = _runtime(secrets=FailingSecrets("/p", {SECRET_NAME: "right", "/p/edge/rf/webhook-secret": "hook"}))
        notified = _notify(rt)
        joined = receive_rf_join({RF_SECRET_HEADER: "hook", "Content-Type": "application/json"},
                                 json.dumps({"id": 1001, "campaign_id": 42, "email": "ann@example.com"}).encode(), rt)
    finally:
        FailingSecrets.failing = False
    for reply in (notified, joined):
        assert reply.status == 503 and reply.body["error"] == "unavailable" and reply.headers == {"Retry-After": "60"}
        assert "try again" in reply.body["message"]
    assert _notify(rt).status == 200                            # the store is back: nothing was kept of the outage


def _down(*args, **kwargs):
    raise RuntimeError("ProvisionedThroughputExceededException")


def _join(rt: Runtime):
    return receive_rf_join({RF_SECRET_HEADER: "hook", "Content-Type": "application/json"},
                           json.dumps({"id": 1001, "campaign_id": 42, "email": "ann@example.com"}).encode(), rt)


def test_a_table_that_fails_while_a_workspace_or_a_joins_campaign_is_looked_up_gets_503_not_a_500():
    store = CountingStore()
    rt = _runtime(store)
    store.connections.workspace = _down  # type: ignore[method-assign]
    store.settings.get = _down  # type: ignore[method-assign]
    reply = _notify(rt)
    assert reply.status == 503 and reply.headers["Retry-After"] == "60"
    reply = _join(rt)
    assert (reply.status, reply.body["error"], reply.headers) == (503, "unavailable", {"Retry-After": "60"})
    assert reply.body["message"] == "the bridge could not read the campaign's settings to check this request: " \
                                    "try again in 60 s"


def test_a_queue_that_fails_gets_503_with_retry_after_on_both_webhooks_and_nothing_is_queued():
    rt = _runtime()
    rt.store.settings.put("42", {"campaign_id": "42"}, WORKSPACE)
    queue = rt.queue
    assert isinstance(queue, FakeQueue)
    queue.send = _down  # type: ignore[method-assign]
    for reply in (_notify(rt), _join(rt)):
        assert (reply.status, reply.body["error"], reply.headers) == (503, "unavailable", {"Retry-After": "60"})
        assert reply.body["message"] == "the bridge could not queue this event: try again in 60 s"
    assert queue.sent == []


def test_a_forged_notification_refused_during_an_outage_names_no_contact_in_the_workspaces_log():
    """The container knows the workspace's secret; a body signed with another makes it read the secret
    again, and the store fails: the 503 comes before any signature verified, so the contact the body
    names is not filed under the workspace. A signed one whose queueing fails keeps its contact."""
    rt = _runtime(secrets=FailingSecrets("/p", {SECRET_NAME: "right"}))
    assert _notify(rt).status == 200
    FailingSecrets.failing = True
    try:
        assert _notify(rt, secret="forged", n=2).status == 503
    finally:
        FailingSecrets.failing = False
    [sample] = rt.store.edge.refusals(f"workspace:{WORKSPACE}").samples
    assert (sample.reason, sample.contact_id) == ("unavailable", None)
    rt.queue.send = _down  # type: ignore[method-assign]
    assert _notify(rt, n=3).status == 503
    assert sorted(str(s.contact_id) for s in rt.store.edge.refusals(f"workspace:{WORKSPACE}").samples) == \
        ["6ab1", "None"]


def test_a_trailing_newline_passes_no_format_check():
    """Python's `$` also matches before a final newline: "vne310wv\n" must not pass for an app_id, a
    secret's name, a start link's ticket or an OAuth state, nor "42\n" for a campaign a join names (it
    would be another campaign, and "1001\n" another person, than the ones without)."""
    assert valid_workspace("vne310wv") and not valid_workspace("vne310wv\n")
    with pytest.raises(ConnectError, match="not an Intercom app_id"):
        check_workspace_id("vne310wv\n", None)
    with pytest.raises(ValueError, match="not a secret name"):
        MemorySecrets("/p").full_name("rf/token\n")
    ticket = oauth.new_ticket()
    assert oauth.ticket_shape(ticket) and not oauth.ticket_shape(ticket + "\n")
    clock = FakeClock()
    bound = oauth.binding(oauth.new_browser_secret())
    assert oauth.read_state("key", oauth.make_state("key", bound, clock()), clock()).binding == bound
    with pytest.raises(oauth.StateError):
        oauth.read_state("key", oauth.make_state("key", bound + "\n", clock()), clock())

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


def test_a_join_with_a_wrong_secret_while_the_table_throttles_gets_its_401_as_on_dynamodb():
    """The refusal names the person by digests, which DynamoDB's edge log computes without a call (its table's name
    keys them): on the table's in-memory twin, throttled, the digest raised DynamoDB's throttle, and the edge with it
    (a 5xx for a body whose refusal DynamoDB answers 401)."""
    clock = FakeClock()
    store = MemoryStore(clock)
    rt = _runtime(store)
    store.throttle(clock() + 60)
    reply = receive_rf_join({RF_SECRET_HEADER: "wrong", "Content-Type": "application/json"},
                            json.dumps({"id": 1001, "campaign_id": 42, "email": "ann@example.com"}).encode(), rt)
    assert reply.status == 401 and reply.body["error"] == "unauthorized"
