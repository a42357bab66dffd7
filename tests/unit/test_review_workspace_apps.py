"""Review of "a workspace connected with its own private app and by OAuth takes webhooks signed by either
app": cases the change's own tests leave out, each one a behaviour an operator or an attacker would see."""
from __future__ import annotations

from chalicelib.services.connections import configure_oauth, list_workspaces

from .test_connect import connected, rt  # noqa: F401  (rt: a fixture; the public app's secret is app-secret)
from .test_workspace_apps import PUBLIC_SECRET, edge, notify, private


def test_a_rotated_public_app_secret_no_longer_verifies_a_workspace_reconnected_by_oauth(rt):
    """A workspace connected by OAuth before this change holds a copy of the public app's secret as its own
    (the callback copied it). The operator rotates the public app's secret (say it leaked) and the admin
    reconnects by OAuth, which used to overwrite the copy. Now the callback writes no client secret and the
    copy no longer equals the public app's, so it stays marked as a "private app": the leaked secret verifies
    forged webhooks for the workspace for good, and `workspace list` names a private app it never had."""
    rt.store.connections.put_workspace("ws1", {"token", "client-secret"})
    rt.secrets.scoped("edge").put("intercom/ws1/client-secret", PUBLIC_SECRET)     # the old callback's copy
    configure_oauth(rt, None, "rotated-secret")
    connected(rt)
    assert [notify(edge(rt), s, n) for n, s in enumerate(("rotated-secret", PUBLIC_SECRET))] == [200, 401]
    assert list_workspaces(rt)[0]["apps"] == ["oauth"]


def test_the_public_apps_webhooks_alone_never_read_the_private_apps_secret_once_warm(rt):
    """SecretCache.first promises that one app's webhooks cost no read of the other's secret. A workspace
    connected both ways whose webhooks all come from the public app (its private app quiet, or retired in
    Intercom and not yet removed here) has the private app's secret read again every minute in every API
    container, as the cached values expire: twice the GetParameter calls on the account's one SSM budget."""
    private(rt)
    connected(rt)
    api = edge(rt)
    assert notify(api, PUBLIC_SECRET, 0) == 200                       # a cold container reads what it must
    warm = len(rt.secrets.reads)
    for n in range(1, 601):                                           # a webhook a second for ten minutes
        rt.clock.now += 1
        assert notify(api, PUBLIC_SECRET, n) == 200
    assert "/bridge/edge/intercom/ws1/client-secret" not in rt.secrets.reads[warm:]
