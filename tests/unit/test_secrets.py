"""The secret store's names and the cache that decides when to read again (in-memory twin, fake clock)."""
from __future__ import annotations

import pytest

from chalicelib.adapters.secrets import RECHECK_SECONDS, SecretCache, SsmSecrets
from chalicelib.config import Config
from chalicelib.ports.secrets import intercom_client_secret, intercom_token
from chalicelib.runtime import Runtime
from tests.fakes import FakeClock, FakeQueue, MemorySecrets


@pytest.mark.parametrize("store", [MemorySecrets("/stage"), SsmSecrets("/stage", client=object())])
@pytest.mark.parametrize("name", ["../worker/rf/token", "rf/../../worker/rf/token", "/stage/worker/rf/token",
                                  "", "rf//token", "rf/./token", "rf/tok en", None])
def test_the_edges_reader_cannot_name_anything_outside_edge(store, name):
    edge = store.scoped("edge")
    with pytest.raises(ValueError):
        edge.full_name(name)


def test_names_follow_the_decided_layout():
    root = MemorySecrets("/rf-intercom-bridge-prod/")
    assert root.scoped("edge").full_name(intercom_client_secret("vne310wv")) == \
        "/rf-intercom-bridge-prod/edge/intercom/vne310wv/client-secret"
    assert root.scoped("worker").full_name(intercom_token("vne310wv")) == \
        "/rf-intercom-bridge-prod/worker/intercom/vne310wv/token"


def cache(values=None, ttl=60):
    clock = FakeClock()
    store = MemorySecrets("/p", values or {})
    return SecretCache(store.get, clock, ttl), store, clock


def test_a_warm_secret_is_not_read_again():
    secrets, store, _ = cache({"/p/s": "v"})
    assert [secrets.get("s") for _ in range(5)] == ["v"] * 5
    assert store.reads == ["/p/s"]


def test_a_cached_absence_is_checked_once_more_so_a_just_connected_secret_works_at_once():
    secrets, store, _ = cache()
    assert secrets.get("s") is None                  # not connected yet (and now cached)
    store.put("s", "new")                            # the operator connects (another process)
    assert secrets.get("s") == "new"                 # same instant: no window
    assert len(store.reads) == 2


def test_a_rotated_secret_is_accepted_at_once_and_the_old_one_then_refused():
    secrets, store, _ = cache({"/p/s": "old"})
    assert secrets.get("s", lambda v: v == "old") == "old"
    store.put("s", "new")
    assert secrets.get("s", lambda v: v == "new") == "new"
    assert secrets.get("s", lambda v: v == "old") == "new"        # refused: the store was just asked
    assert len(store.reads) == 2


def test_a_burst_of_wrong_values_reads_the_store_at_most_once_per_few_seconds():
    secrets, store, clock = cache({"/p/s": "right"})
    secrets.get("s")
    for _ in range(50):
        assert secrets.get("s", lambda v: v == "forged") == "right"
    assert len(store.reads) == 2                                   # the warm-up, then one re-check
    clock.now += RECHECK_SECONDS - 0.1
    for _ in range(50):
        secrets.get("s", lambda v: v == "forged")
    assert len(store.reads) == 2
    clock.now += 0.1
    for _ in range(50):
        secrets.get("s", lambda v: v == "forged")
    assert len(store.reads) == 3


def test_a_value_older_than_its_ttl_is_read_again():
    secrets, store, clock = cache({"/p/s": "v"}, ttl=60)
    secrets.get("s")
    clock.now += 60
    secrets.get("s")
    assert len(store.reads) == 2


def test_refresh_answers_only_a_changed_value():
    secrets, store, _ = cache({"/p/s": "v1"})
    assert secrets.get("s") == "v1"
    assert secrets.refresh("s", stale="v1") is None
    store.put("s", "v2")
    assert secrets.refresh("s", stale="v1") == "v2"
    assert secrets.get("s") == "v2"


def runtime(values=None) -> tuple[Runtime, MemorySecrets]:
    from chalicelib.adapters.memory import MemoryStore

    clock, table = FakeClock(), MemoryStore()
    table.connections.put_workspace("ws1", ["token", "client-secret"])
    store = MemorySecrets("/p", values or {})
    return Runtime(Config.from_env({"BRIDGE_SECRETS_PATH": "/p"}), clock=clock, queue=FakeQueue(),
                   secrets=store, store=table), store


def test_the_runtimes_edge_lookups_read_only_under_edge():
    rt, store = runtime({"/p/edge/rf/webhook-secret": "w", "/p/edge/intercom/ws1/client-secret": "c",
                         "/p/worker/rf/token": "t", "/p/worker/intercom/ws1/token": "i"})
    assert rt.rf_webhook_secret() == "w"
    assert rt.intercom_client_secret("ws1") == "c"
    for forged in ("../worker/intercom/ws1", "ws1/../../worker", "ws1/token", "", "x" * 65):
        assert rt.intercom_client_secret(forged) is None
    assert store.reads and all(name.startswith("/p/edge/") for name in store.reads)


def test_a_cold_intercom_client_reads_its_connection_and_budget_beside_its_token():
    """A cold container's first Intercom call waits for one read's time, not three in a row: the
    connection (then the budget's shared state) are read while the token is (SSM's client is made
    meanwhile). Each read here waits until the other has started: read one after another, the
    connection's read would wait for the token's in vain."""
    import threading

    from chalicelib.adapters.memory import MemoryStore

    token_asked = threading.Event()
    clock, store = FakeClock(), MemoryStore()
    store.connections.put_workspace("ws1", ["token"])
    states = []
    state = store.rates.state
    store.rates.state = lambda budget: states.append(budget) or state(budget)   # type: ignore[method-assign]
    workspace = store.connections.workspace

    def connection(name):
        assert token_asked.wait(timeout=5), "the connection was read before the token was asked"
        return workspace(name)
    store.connections.workspace = connection                                      # type: ignore[method-assign]

    class Secrets(MemorySecrets):
        def get(self, name):
            token_asked.set()
            return super().get(name)
    secrets = Secrets("/p", {"/p/worker/intercom/ws1/token": "tok"})
    rt = Runtime(Config.from_env({"BRIDGE_SECRETS_PATH": "/p"}), clock=clock, queue=FakeQueue(), store=store,
                 secrets=secrets)
    client = rt.intercom("ws1")
    assert client._token == "tok" and states == ["intercom#ws1"]
    rt.limiter("intercom#ws1", rt.config.intercom_calls_per_10s, 10).acquire()   # the state is not read again
    assert states == ["intercom#ws1"]


def test_a_token_read_ahead_for_a_workspace_not_connected_is_not_kept():
    """The token is read beside the connection, before it is known to be needed: for a workspace no
    longer connected, what that read holds (the old token, still in the store a moment) is not kept,
    so a workspace connected again with a new token uses the new one at once (not the old, then a 401)."""
    from chalicelib.adapters.memory import MemoryStore
    from chalicelib.errors import Disconnected

    store, secrets = MemoryStore(), MemorySecrets("/p", {"/p/worker/intercom/ws1/token": "old"})
    store.connections.put_workspace("ws1", ["token"])
    rt = Runtime(Config.from_env({"BRIDGE_SECRETS_PATH": "/p"}), clock=FakeClock(), queue=FakeQueue(), store=store,
                 secrets=secrets)
    assert rt.intercom("ws1")._token == "old"
    store.connections.disconnect_workspace("ws1")            # `bridge workspace disconnect` (token not yet gone)
    rt._cache.pop(("intercom", "ws1"))                       # the container's client expires
    with pytest.raises(Disconnected):
        rt.intercom("ws1")
    secrets.values["/p/worker/intercom/ws1/token"] = "new"   # `bridge workspace connect`, this instant
    store.connections.put_workspace("ws1", ["token"])
    assert rt.intercom("ws1")._token == "new"


@pytest.mark.parametrize("marks, named, not_named", [
    (["token", "oauth"], "`bridge workspace oauth-link --workspace ws1`", "`bridge workspace connect ws1`"),
    (["token", "client-secret"], "`bridge workspace connect ws1`", "oauth-link")])
def test_a_disconnected_workspaces_letters_name_the_reconnect_of_the_apps_it_was_connected_through(
        marks, named, not_named):
    """Connected by OAuth alone, a workspace has no token the operator could type: its letters said
    `bridge workspace connect ... or OAuth` whatever the app; they name what `workspace disconnect` said."""
    from chalicelib.adapters.memory import MemoryStore
    from chalicelib.errors import Disconnected

    store = MemoryStore()
    store.connections.put_workspace("ws1", marks)
    store.connections.disconnect_workspace("ws1")
    rt = Runtime(Config.from_env({"BRIDGE_SECRETS_PATH": "/p"}), clock=FakeClock(), queue=FakeQueue(), store=store,
                 secrets=MemorySecrets("/p", {}))
    with pytest.raises(Disconnected) as parked:
        rt.intercom("ws1")
    assert named in parked.value.reason and not_named not in parked.value.reason, parked.value.reason
    assert parked.value.reason.endswith('`bridge dlq replay --reason "Intercom workspace ws1 was disconnected"`')


def test_a_workspace_connected_while_a_cold_container_reads_it_is_not_refused():
    """`connect` stores the token, then marks the workspace active. Read at once, the token's read may
    come just before the token was stored and the connection's just after it was marked active: the
    token is read once more before the workspace is called not connected."""
    import threading

    from chalicelib.adapters.memory import MemoryStore

    token_read = threading.Event()
    store = MemoryStore()
    workspace = store.connections.workspace

    class Secrets(MemorySecrets):
        def get(self, name):
            value = super().get(name)
            token_read.set()
            return value
    secrets = Secrets("/p")

    def connection(name):
        assert token_read.wait(timeout=5)
        secrets.values["/p/worker/intercom/ws1/token"] = "tok"        # `bridge workspace connect`: the token,
        store.connections.put_workspace("ws1", ["token"])               # then the workspace active
        return workspace(name)
    store.connections.workspace = connection                          # type: ignore[method-assign]
    rt = Runtime(Config.from_env({"BRIDGE_SECRETS_PATH": "/p"}), clock=FakeClock(), queue=FakeQueue(), store=store,
                 secrets=secrets)
    assert rt.intercom("ws1")._token == "tok"


def test_a_warm_rf_client_refused_its_token_reads_the_store_once_and_uses_a_reconnected_one():
    """`bridge rf connect` while the worker holds the old token (kept 5 minutes): RF's 401 makes the worker
    read the token again before failing the record, and use the new one at once. A token RF refuses and
    nobody replaced fails the record after that one read (the operator's fix is `bridge rf connect`)."""
    from chalicelib.adapters.memory import MemoryStore
    from chalicelib.errors import Permanent
    from infra.local.sims.referral_factory import RFSim

    clock, secrets = FakeClock(), MemorySecrets("/p", {"/p/worker/rf/token": "old"})
    with RFSim(token="old", clock=clock) as rf:
        rf.add_campaign(42, "Friends of Acme")
        rt = Runtime(Config.from_env({"BRIDGE_SECRETS_PATH": "/p", "RF_BASE_URL": rf.base_url}), clock=clock,
                     sleeper=clock.sleep, queue=FakeQueue(), store=MemoryStore(clock), secrets=secrets)
        assert rt.rf().get_campaign("42")["id"] == 42                     # warm: the token is kept
        rf.use_token("new")                                              # RF revoked "old"; the operator
        secrets.scoped("worker").put("rf/token", "new")                  # connects the new one
        assert rt.rf().get_campaign("42")["id"] == 42
        assert secrets.reads == ["/p/worker/rf/token"] * 2
        assert rf.count("GET", "/campaigns") == 3                         # the refused call, sent again once
        rf.use_token("newer")                                            # revoked, not reconnected
        with pytest.raises(Permanent, match="answered 401: .* — Referral Factory refuses the RF token the bridge has"):
            rt.rf().get_campaign("42")
        assert secrets.reads == ["/p/worker/rf/token"] * 3
