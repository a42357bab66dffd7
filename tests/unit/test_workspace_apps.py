"""A workspace connected through two Intercom apps (its own private app, and the public app by OAuth, in
either order): each app's webhooks verify with that app's client secret, the worker uses the most
recent connection's token, and the operator sees and removes an app. The decision (domain/apps.py),
then the connect, the OAuth callback and the edge on the in-memory twins; the same over HTTP on moto
is tests/integration/test_workspace_apps.py."""
from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from chalicelib.config import Config
from chalicelib.domain import apps
from chalicelib.runtime import Runtime
from chalicelib.services import oauth as flow
from chalicelib.services.connections import (ConnectError, configure_oauth, connect_rf, connect_workspace, list_workspaces,
                                             remove_app)
from chalicelib.services.ingest import receive_intercom, signature
from tests.fakes import FakeQueue, MemorySecrets
from tests.support.meanwhile import after

from tests.unit.connecting import HERE, connected, rt, started  # noqa: F401  (rt: a fixture; the public app's secret: app-secret)

PUBLIC_SECRET, PRIVATE_SECRET = "app-secret", "private-secret"


# --- the decision --------------------------------------------------------------------------------

def test_the_apps_are_read_from_the_connections_marks():
    assert apps.apps({"token", "client-secret"}) == ["private"]
    assert apps.apps({"token", "oauth"}) == ["oauth"]
    assert apps.apps({"oauth", "client-secret"}) == ["private", "oauth"]
    assert apps.apps({"token"}) == []


@pytest.mark.parametrize("secrets, token_app, app, refused", [
    ({"token", "client-secret", "oauth"}, "oauth", "private", None),
    ({"token", "client-secret", "oauth"}, "private", "oauth", None),
    ({"client-secret", "oauth"}, None, "private", None),                 # disconnected: no token to keep
    ({"token", "client-secret"}, "private", "oauth", "not connected through its public app (OAuth) (it is through "
                                                     "private app)"),
    ({"token", "oauth"}, "oauth", "oauth", "the only app workspace ws1 is connected through: without it every "
                                           "Intercom webhook of the workspace is refused (401); to stop its work, "
                                           "`bridge workspace disconnect ws1`"),
    ({"token", "client-secret", "oauth"}, "private", "private", "the access token the worker uses for workspace ws1 "
                                                                "is the private app's: connect it through the public "
                                                                "app (OAuth) first (a link from `bridge workspace "
                                                                "oauth-link --workspace ws1`)"),
    ({"token", "client-secret", "oauth"}, None, "oauth", "is not recorded as the other app's: connect it through the "
                                                         "private app first (`bridge workspace connect ws1`)"),
    ({"token", "client-secret", "oauth"}, "oauth", "mine", "no app 'mine': name private or oauth"),
])
def test_an_app_is_removed_only_when_another_verifies_and_the_token_is_the_others(secrets, token_app, app, refused):
    said = apps.removal_refused("ws1", secrets, token_app, app)
    assert said == refused if refused is None else refused in said


def test_two_secrets_are_one_only_when_both_are_set_and_equal():
    assert apps.same("s", "s") and not apps.same("s", "t") and not apps.same(None, None) and not apps.same("", "")


@pytest.mark.parametrize("secrets, says, never", [
    ({"token", "oauth"}, ["`bridge workspace oauth-app`", "reconnect the workspace by OAuth (a link from `bridge "
                          "workspace oauth-link --workspace ws1`)", "never give the public app's secret to `bridge "
                          "workspace connect`"], "Enter keeps the token"),
    ({"token", "client-secret"}, ["`bridge workspace connect ws1` (Enter keeps the token; then it asks for the "
                                  "app's client secret"], "oauth"),
    ({"token", "client-secret", "oauth"}, ["for its private app's webhooks, `bridge workspace connect ws1`",
                                           "for the public app's, check the public app's client secret"], None),
])
def test_a_refused_signature_is_fixed_the_way_of_the_apps_the_workspace_is_connected_through(secrets, says, never):
    """A workspace connected by OAuth alone is not told to give `workspace connect` a client secret: the public
    app's, stored as its own, would outlive the public app's next rotation."""
    fix = apps.unauthorized_fix("ws1", secrets)
    assert all(part in fix for part in says) and (never is None or never not in fix), fix


# --- connected both ways, the edge -----------------------------------------------------------------

def edge(rt) -> Runtime:
    """The API function's runtime on the same table and secret store (its own caches)."""
    return Runtime(Config.from_env({}), clock=rt.clock, queue=FakeQueue(), store=rt.store, secrets=rt.secrets)


def notify(api: Runtime, secret: str, n: int = 1, workspace: str = "ws1") -> int:
    raw = json.dumps({"type": "notification_event", "app_id": workspace, "topic": "contact.lead.updated",
                      "id": f"notif_{n}", "created_at": 1700000000,
                      "data": {"item": {"type": "contact", "id": "6ab1", "role": "lead"}}}).encode()
    return receive_intercom({"X-Hub-Signature": signature(secret, raw), "Content-Type": "application/json"},
                            raw, api).status


def private(rt) -> dict:
    rt.auth.apps["tok-private"] = {"id_code": "ws1", "name": "Acme"}
    return connect_workspace(rt, "ws1", "tok-private", PRIVATE_SECRET)


@pytest.mark.parametrize("command, said", [
    (("workspace", "oauth-app", "--client-secret", PRIVATE_SECRET),
     "this client secret is workspace ws1's private app's (`bridge workspace connect` stored it), not the public "
     "app's: give the public app's own (Developer Hub > the public app > Basic information); nothing was stored"),
    (("workspace", "connect", "ws1", "--client-secret", PUBLIC_SECRET),
     "this client secret is the public app's (the one `bridge workspace oauth-app` stored), not workspace ws1's "
     "private app's: give the private app's own (Developer Hub > Basic information), or none for a workspace "
     "connected by OAuth; nothing was stored")])
def test_one_client_secret_given_for_both_apps_is_refused_in_one_line_and_both_apps_stay_apart(
        rt, capsys, monkeypatch, command, said):
    """The bridge tells a workspace's apps apart by their client secrets: a private app's equal to the public
    app's is taken for an old copy of it. Stored, the workspace's next OAuth connect would drop its private
    app (`workspace list`: `apps: oauth`; a connect then warns its client secret is missing, though its
    webhooks still verify with the public app's), and the next `oauth-app` would delete its secret."""
    from tests.support.cli import run_cli
    for name in ("INTERCOM_TOKEN", "INTERCOM_CLIENT_SECRET", "INTERCOM_OAUTH_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    private(rt)
    assert run_cli(rt, capsys, *command) == (1, "", f"bridge: {said}\n")
    stored = rt.secrets.scoped("edge")
    assert (stored.get("oauth/client-secret"), stored.get("intercom/ws1/client-secret")) == (PUBLIC_SECRET,
                                                                                              PRIVATE_SECRET)
    connected(rt)
    assert apps.apps(rt.store.connections.workspace("ws1").secrets) == ["private", "oauth"]
    assert [notify(edge(rt), s, n) for n, s in enumerate((PRIVATE_SECRET, PUBLIC_SECRET))] == [200, 200]


def test_another_workspaces_private_client_secret_is_refused_so_its_admins_cannot_sign_this_ones_webhooks(
        rt, capsys, monkeypatch):
    """Attack (or a script's INTERCOM_CLIENT_SECRET still exported from the connect before): workspace ws2 is
    connected with its own token (checked with `/me`) but ws1's private app's client secret, which no one can
    check with Intercom. Stored, every admin of ws1 (who sees their app's secret in the Developer Hub) signs
    notifications naming app_id ws2, and the edge takes them as ws2's: a lead of ws2's campaigns qualifies (a
    reward) on whatever a forged body says. Expected: refused in one line naming the workspace whose it is,
    nothing stored (ws2's real webhooks verify only once its own app's secret is given)."""
    from tests.support.cli import run_cli
    for name in ("INTERCOM_TOKEN", "INTERCOM_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    private(rt)
    rt.auth.apps["tok-ws2"] = {"id_code": "ws2", "name": "Other team"}
    monkeypatch.setenv("INTERCOM_TOKEN", "tok-ws2")
    monkeypatch.setenv("INTERCOM_CLIENT_SECRET", PRIVATE_SECRET)
    assert run_cli(rt, capsys, "workspace", "connect", "ws2") == (1, "", (
        "bridge: this client secret is workspace ws1's private app's (`bridge workspace connect ws1` stored it), not "
        "workspace ws2's: give ws2's own private app's (Developer Hub > Basic information); nothing was stored\n"))
    assert rt.store.connections.workspace("ws2") is None and rt.secrets.scoped("worker").get("intercom/ws2/token") \
        is None and rt.secrets.scoped("edge").get("intercom/ws2/client-secret") is None
    assert notify(edge(rt), PRIVATE_SECRET, workspace="ws2") == 401
    monkeypatch.setenv("INTERCOM_CLIENT_SECRET", "ws2-secret")      # its own: connected, and ws1's still verifies
    assert run_cli(rt, capsys, "workspace", "connect", "ws2", "--json")[0] == 0
    assert [notify(edge(rt), s, n, w) for n, (s, w) in enumerate(
        ((PRIVATE_SECRET, "ws2"), ("ws2-secret", "ws2"), (PRIVATE_SECRET, "ws1")))] == [401, 200, 200]
    monkeypatch.setenv("INTERCOM_TOKEN", "tok-ws2")                 # ws2's reconnect with its own secret again
    assert run_cli(rt, capsys, "workspace", "connect", "ws2", "--json")[0] == 0


RF_SECRET = "rf-webhook-secret"
NOT_RFS = ("client secret: whoever sees either (RF's webhook settings, the app's Developer Hub) could sign the other's "
           "webhooks; choose one for RF alone (any long random string, e.g. `openssl rand -hex 32`); nothing was stored")
RFS = ("this client secret is Referral Factory's webhook secret (the one `bridge rf connect` stored), not {meant}: "
       "whoever sees RF's webhook settings could sign Intercom's webhooks with it; give {meant} own {where}, and if "
       "it is that, first give RF a webhook secret of its own (`bridge rf connect`); nothing was stored")


@pytest.mark.parametrize("command, said", [
    (("rf", "connect", "--webhook-secret", PRIVATE_SECRET), "this webhook secret is workspace ws1's private Intercom "
     f"app's (`bridge workspace connect ws1` stored it) {NOT_RFS}"),
    (("rf", "connect", "--webhook-secret", PUBLIC_SECRET), "this webhook secret is the public Intercom app's (`bridge "
     f"workspace oauth-app` stored it) {NOT_RFS}"),
    (("workspace", "connect", "ws1", "--client-secret", RF_SECRET),
     RFS.format(meant="workspace ws1's private app's", where="(Developer Hub > Basic information)")),
    (("workspace", "oauth-app", "--client-secret", RF_SECRET),
     RFS.format(meant="the public app's", where="(Developer Hub > the public app > Basic information)"))])
def test_rfs_webhook_secret_and_an_intercom_apps_client_secret_are_never_one_so_neither_side_signs_the_other(
        rt, capsys, monkeypatch, command, said):
    """Attack: RF's webhook secret is seen by whoever manages RF's webhooks, an Intercom app's client secret by the
    workspace's admins (Developer Hub). One value stored for both (pasted in the wrong prompt, or a value reused),
    RF's side signs notifications naming the workspace and qualifies its leads (a reward), and the workspace's
    admins post joins to any campaign. Expected: whichever is given second is refused in one line saying whose
    secret it is (never the value), nothing stored: the other side still verifies with the secrets it had."""
    from tests.support.cli import run_cli
    for name in ("INTERCOM_TOKEN", "INTERCOM_CLIENT_SECRET", "INTERCOM_OAUTH_CLIENT_SECRET", "RF_TOKEN",
                 "RF_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    private(rt)
    connect_rf(rt, webhook_secret=RF_SECRET)
    stored = dict(rt.secrets.values)
    assert run_cli(rt, capsys, *command) == (1, "", f"bridge: {said}\n")
    assert rt.secrets.values == stored
    assert [notify(edge(rt), s, n) for n, s in enumerate((RF_SECRET, PRIVATE_SECRET))] == [401, 200]


def test_a_first_oauth_app_with_a_private_apps_client_secret_is_refused_and_stores_nothing(monkeypatch):
    from tests.fakes import FakeConnecting
    bare = FakeConnecting()
    private(bare)
    with pytest.raises(ConnectError, match=r"^this client secret is workspace ws1's private app's"):
        configure_oauth(bare, "app-id", PRIVATE_SECRET)
    throttle(monkeypatch, "get", "intercom/ws1/client-secret", "GetParameter")     # AWS refuses the check's read
    with pytest.raises(ConnectError) as refused:
        configure_oauth(bare, "app-id", "app-secret")
    assert str(refused.value) == (
        "could not check that no workspace's private app has this client secret (An error occurred "
        "(ThrottlingException) when calling the GetParameter operation: Rate exceeded, at workspace ws1): the public "
        "app's settings are unchanged: run `bridge workspace oauth-app` again")
    assert bare.oauth_app() is None and bare.secrets.scoped("edge").get("oauth/state-key") is None
    monkeypatch.undo()
    assert configure_oauth(bare, "app-id", "app-secret")["client_secret"] == "set"


@pytest.mark.parametrize("order", ["private, then oauth", "oauth, then private"])
def test_a_workspace_connected_both_ways_takes_each_apps_webhooks_and_the_latest_token(rt, order):
    api = edge(rt)
    first, then = (private, connected) if order.startswith("private") else (connected, private)
    first(rt)
    assert notify(api, PRIVATE_SECRET if first is private else PUBLIC_SECRET) == 200     # the edge is warm
    then(rt)
    for _ in range(2):                          # at once, and once what the edge cached has expired
        assert [notify(api, s, n) for n, s in enumerate((PRIVATE_SECRET, PUBLIC_SECRET, "a-guess"))] == [200, 200, 401]
        rt.clock.now += 61
    latest = "tok-private" if then is private else "tok-1"
    assert rt.secrets.scoped("worker").get("intercom/ws1/token") == latest
    [listed] = list_workspaces(rt)
    assert (listed["apps"], listed["token_app"]) == (["private", "oauth"], "private" if then is private else "oauth")
    assert PRIVATE_SECRET not in json.dumps(listed) and PUBLIC_SECRET not in json.dumps(listed)


def test_a_warm_edge_verifies_either_apps_webhooks_without_reading_a_secret_again(rt):
    private(rt)
    connected(rt)
    api = edge(rt)
    assert [notify(api, s, n) for n, s in enumerate((PRIVATE_SECRET, PUBLIC_SECRET))] == [200, 200]
    reads = len(rt.secrets.reads)
    assert [notify(api, s, n) for n, s in enumerate((PUBLIC_SECRET, PRIVATE_SECRET) * 5)] == [200] * 10
    assert len(rt.secrets.reads) == reads


def test_the_public_apps_webhooks_alone_never_read_the_private_apps_secret_once_warm(rt):
    """SecretCache.first promises that one app's webhooks cost no read of the other's secret. Otherwise a
    workspace connected both ways whose webhooks all come from the public app (its private app quiet, or retired
    in Intercom and not yet removed here) would have the private app's secret read again every minute in every
    API container, as the cached values expire: twice the GetParameter calls on the account's one SSM budget."""
    private(rt)
    connected(rt)
    api = edge(rt)
    assert notify(api, PUBLIC_SECRET, 0) == 200                       # a cold container reads what it must
    warm = len(rt.secrets.reads)
    for n in range(1, 601):                                           # a webhook a second for ten minutes
        rt.clock.now += 1
        assert notify(api, PUBLIC_SECRET, n) == 200
    assert "/bridge/edge/intercom/ws1/client-secret" not in rt.secrets.reads[warm:]


def test_reconnecting_by_oauth_adds_no_second_entry_and_copies_no_secret(rt):
    connected(rt)
    connected(rt, code="again=")
    conn = rt.store.connections.workspace("ws1")
    assert conn.secrets == {"token", "oauth"} and apps.apps(conn.secrets) == ["oauth"]
    assert not [name for name in rt.secrets.values if name.startswith("/bridge/edge/intercom/")]


@pytest.mark.parametrize("before", [None, "oauth"])
def test_a_connects_answer_is_what_it_stored_even_when_a_read_after_the_write_would_not_see_it(rt, monkeypatch, before):
    """DynamoDB's default read may not see a write just made: the answer is not taken from one."""
    if before:
        connected(rt)
    read = rt.store.connections.workspace
    first: dict = {}
    monkeypatch.setattr(rt.store.connections, "workspace", lambda ws: first.setdefault(ws, read(ws)))   # lags for good
    done = private(rt)
    assert (done["client_secret"], done["apps"], done["token_app"]) == (
        "set", ["private", "oauth"] if before else ["private"], "private")


def test_a_copy_of_the_public_apps_secret_stored_before_is_taken_for_the_public_app(rt):
    """Before, the callback copied the public app's secret into the workspace's own: the copy is the public
    app's (not listed as a private app), and a private app connected after it does not replace it."""
    rt.store.connections.put_workspace("ws1", {"token", "client-secret"})
    rt.secrets.scoped("edge").put("intercom/ws1/client-secret", PUBLIC_SECRET)
    private(rt)
    assert apps.apps(rt.store.connections.workspace("ws1").secrets) == ["private", "oauth"]
    assert [notify(edge(rt), s, n) for n, s in enumerate((PRIVATE_SECRET, PUBLIC_SECRET))] == [200, 200]

    rt.store.connections.unmark("ws1", {"oauth"})
    rt.secrets.scoped("edge").put("intercom/ws1/client-secret", PUBLIC_SECRET)
    connected(rt)                                        # reconnected by OAuth: one app, not two
    assert apps.apps(rt.store.connections.workspace("ws1").secrets) == ["oauth"]


def test_the_callback_tells_a_copy_by_the_public_apps_secret_it_already_has(rt):
    copies(rt, "ws1")
    query, cookie = started(rt)
    rt.auth.codes["code="] = "tok-1"
    before = len(rt.secrets.reads)
    assert flow.callback(rt, {"code": "code=", "state": query["state"]}, cookie, HERE).status == 200
    assert rt.secrets.reads[before:].count("/bridge/edge/oauth/client-secret") == 1       # the app's, read once
    assert apps.apps(rt.store.connections.workspace("ws1").secrets) == ["oauth"]


def test_a_rotated_public_app_secret_no_longer_verifies_a_workspace_reconnected_by_oauth(rt):
    """A workspace connected by OAuth by an older bridge holds a copy of the public app's secret as its own
    (that callback copied it). The operator rotates the public app's secret (say it leaked) and the admin
    reconnects by OAuth, which used to overwrite the copy. The callback now writes no client secret: were the
    copy, no longer equal to the public app's, kept as a "private app", the leaked secret would verify forged
    webhooks for the workspace for good, and `workspace list` would name a private app it never had."""
    rt.store.connections.put_workspace("ws1", {"token", "client-secret"})
    rt.secrets.scoped("edge").put("intercom/ws1/client-secret", PUBLIC_SECRET)     # the old callback's copy
    configure_oauth(rt, None, "rotated-secret")
    connected(rt)
    assert [notify(edge(rt), s, n) for n, s in enumerate(("rotated-secret", PUBLIC_SECRET))] == [200, 401]
    assert list_workspaces(rt)[0]["apps"] == ["oauth"]


def copies(rt, *workspaces: str) -> None:
    """Workspaces connected by OAuth before: the callback copied the public app's secret as their own."""
    for workspace in workspaces:
        rt.store.connections.put_workspace(workspace, {"token", "client-secret"})
        rt.secrets.scoped("edge").put(f"intercom/{workspace}/client-secret", PUBLIC_SECRET)


def test_storing_the_oauth_app_again_relabels_the_copies_without_reviving_a_workspace_or_touching_a_private_app(rt):
    copies(rt, "ws1", "ws2")
    rt.store.connections.disconnect_workspace("ws2")
    rt.auth.apps["tok-3"] = {"id_code": "ws3", "name": "Other"}
    connect_workspace(rt, "ws3", "tok-3", PRIVATE_SECRET)
    before = len(rt.secrets.reads)
    assert configure_oauth(rt, "app-id", None)["relabelled"] == ["ws1", "ws2"]     # the same app: nothing rotated
    assert rt.secrets.reads[before:].count("/bridge/edge/oauth/client-secret") == 1     # whether set, and its value
    listed = {w["workspace"]: (w["status"], w["apps"]) for w in list_workspaces(rt)}
    assert listed == {"ws1": ("active", ["oauth"]), "ws2": ("disconnected", ["oauth"]), "ws3": ("active", ["private"])}
    assert [name for name in rt.secrets.values if name.startswith("/bridge/edge/intercom/")] == [
        "/bridge/edge/intercom/ws3/client-secret"]
    assert notify(edge(rt), PUBLIC_SECRET) == 200


def test_a_refused_oauth_app_secret_has_relabelled_nothing_as_it_says(rt):
    """A private app's client secret given as the public app's is refused with "nothing was stored": the
    copies of the public app's secret are still as they were (relabelled by the next run that stores it)."""
    copies(rt, "ws2")
    private(rt)
    with pytest.raises(ConnectError, match=r"private app's .*; nothing was stored$"):
        configure_oauth(rt, None, PRIVATE_SECRET)
    assert {w["workspace"]: w["apps"] for w in list_workspaces(rt)} == {"ws1": ["private"], "ws2": ["private"]}
    assert rt.secrets.scoped("edge").get("intercom/ws2/client-secret") == PUBLIC_SECRET
    assert configure_oauth(rt, None, "rotated-secret")["relabelled"] == ["ws2"]


def throttle(monkeypatch, method: str, secret: str, operation: str, after: int = 0) -> None:
    """The secret store's `method` throttled (SSM's answer) for the one `secret`, but its first `after`
    calls, until monkeypatch.undo()."""
    real, passing = getattr(MemorySecrets, method), [after]

    def throttled(store, name):
        if name == secret:
            passing[0] -= 1
        if name == secret and passing[0] < 0:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, operation)
        return real(store, name)
    monkeypatch.setattr(MemorySecrets, method, throttled)


def test_a_failed_read_while_relabelling_stores_nothing_of_the_public_app_and_says_what_was_done(rt, monkeypatch):
    copies(rt, "ws1", "ws2")
    # the relabel's read (the check that no private app has the new secret reads it first)
    throttle(monkeypatch, "get", "intercom/ws2/client-secret", "GetParameter", after=1)
    with pytest.raises(ConnectError) as refused:
        configure_oauth(rt, None, "rotated-secret")
    assert "(An error occurred (ThrottlingException) when calling the GetParameter operation: Rate exceeded, at " \
           "workspace ws2); marked so far: ws1; the public app's settings are unchanged: run `bridge workspace " \
           "oauth-app` again" in str(refused.value)
    monkeypatch.undo()
    assert rt.secrets.scoped("edge").get("oauth/client-secret") == PUBLIC_SECRET
    assert configure_oauth(rt, None, "rotated-secret")["relabelled"] == ["ws2"]          # run again: the rest
    assert [notify(edge(rt), s, n) for n, s in enumerate(("rotated-secret", PUBLIC_SECRET))] == [200, 401]


def test_the_operator_removes_the_retired_private_app_and_its_webhooks_are_refused(rt):
    private(rt)
    connected(rt)
    api = edge(rt)
    done = remove_app(rt, "ws1", "private")
    assert done == {"workspace": "ws1", "removed": "private", "apps": ["oauth"], "token_app": "oauth"}
    assert rt.secrets.scoped("edge").get("intercom/ws1/client-secret") is None
    assert [notify(api, s, n) for n, s in enumerate((PRIVATE_SECRET, PUBLIC_SECRET))] == [401, 200]
    with pytest.raises(ConnectError, match="only app .* nothing was changed"):
        remove_app(rt, "ws1", "oauth")


def test_the_app_whose_token_the_worker_uses_is_not_removed(rt):
    connected(rt)
    private(rt)
    with pytest.raises(ConnectError, match="is the private app's: connect it through the public app"):
        remove_app(rt, "ws1", "private")
    assert rt.secrets.scoped("edge").get("intercom/ws1/client-secret") == PRIVATE_SECRET
    assert remove_app(rt, "ws1", "oauth")["apps"] == ["private"]
    assert [notify(edge(rt), s, n) for n, s in enumerate((PRIVATE_SECRET, PUBLIC_SECRET))] == [200, 401]


def test_a_connect_made_while_an_app_is_removed_wins_and_the_removal_says_run_it_again(rt):
    """The private app is removed (the worker uses the public app's token) while the operator connects the
    private app again, replacing the token: the removal read the record before that connect. Removing it
    then would leave the worker a token of an app whose webhooks are refused. Nothing is changed, and it
    says so; run again, it is refused for what the record says now."""
    private(rt)
    connected(rt)
    # The connect lands between the removal's read and its write.
    with after(rt.store.connections, "workspace", lambda: private(rt), once=True), \
            pytest.raises(ConnectError, match=r"^workspace ws1's connection changed while the private app was being "
                                              r"removed \(a connect or disconnect at the same moment\): nothing was "
                                              r"changed; run `bridge workspace remove-app ws1 private` again$"):
        remove_app(rt, "ws1", "private")
    conn = rt.store.connections.workspace("ws1")
    assert (apps.apps(conn.secrets), conn.token_app) == (["private", "oauth"], "private")
    assert rt.secrets.scoped("edge").get("intercom/ws1/client-secret") == PRIVATE_SECRET
    with pytest.raises(ConnectError, match="is the private app's"):
        remove_app(rt, "ws1", "private")


def test_a_relabel_stopped_before_deleting_a_copy_deletes_it_when_run_again(rt, monkeypatch):
    """oauth-app says 'run it again' when a write fails; a user would see: the copy of the old public secret
    whose delete failed stays in the secret store for good (the run again no longer looks at a workspace whose
    private mark is gone), though the answer promised the copies deleted."""
    copies(rt, "ws1")
    throttle(monkeypatch, "delete", "intercom/ws1/client-secret", "DeleteParameter")
    with pytest.raises(ConnectError):
        configure_oauth(rt, None, "rotated-secret")
    monkeypatch.undo()
    configure_oauth(rt, None, "rotated-secret")
    assert rt.secrets.scoped("edge").get("intercom/ws1/client-secret") is None


@pytest.mark.parametrize("private, told", [
    (False, "after a new link from `bridge workspace oauth-link --workspace ws1` (the workspace's admin authorizes "
            "the app again)"),
    (True, "after `bridge workspace connect ws1` (it asks for the token) or a new link from `bridge workspace "
           "oauth-link --workspace ws1` (the workspace's admin authorizes the app again)")])
def test_disconnecting_names_the_reconnect_of_each_app_the_workspace_is_connected_through(rt, capsys, private, told):
    """A workspace connected by OAuth alone was told to reconnect with `workspace connect`: the operator has no
    token to type (the admin authorizes the public app again)."""
    from tests.support.cli import run_cli
    connected(rt)
    if private:
        connect_workspace(rt, "ws1", "tok-1", PRIVATE_SECRET)
    code, out, _ = run_cli(rt, capsys, "workspace", "disconnect", "ws1")
    assert code == 0 and f"; {told}, run `bridge dlq replay --reason \"Intercom workspace ws1 was disconnected\"`" in out
    assert ("workspace connect" in out) is private
