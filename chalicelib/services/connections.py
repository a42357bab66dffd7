"""Connecting Intercom workspaces and Referral Factory: the operator's CLI, and the OAuth callback
(services/oauth.py) through `store_workspace`.

Secrets go to the secret store (SSM SecureString, see adapters/secrets.py; its names: ports/secrets.py); the table records only
that a workspace is connected, its API base, which secrets are set and the apps it is connected
through (domain/apps.py: each app's webhooks verify with its client secret). What a reconnect is not
given is kept; the token is the most recent connection's. A token is checked with Intercom's `GET /me` before anything is stored, and must
belong to the workspace it is given for. The answers say what was set or kept, never a value."""
from __future__ import annotations

from typing import Callable, Optional, Protocol, TypeVar

from ..config import Config
from ..domain import apps
from ..domain.apps import MARKS, PRIVATE, PUBLIC
from ..domain.oauth import Workspace, new_key, safe_url, workspace_of
from ..domain.history import clock_time
from ..errors import Deferred, Permanent, WorkError
from ..ports import Connection, IntercomAuth, ReferralFactoryAuth, SecretStore, Store
from ..ports.secrets import (EDGE, OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_STATE_KEY, RF_TOKEN,
                             RF_WEBHOOK_SECRET, WORKER, intercom_client_secret, intercom_token, valid_workspace)

T = TypeVar("T")


class Connecting(Protocol):
    config: Config

    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def store(self) -> Store: ...
    @property
    def secrets(self) -> SecretStore: ...
    def intercom_auth(self) -> IntercomAuth: ...
    def rf_auth(self, token: str) -> ReferralFactoryAuth: ...


# What a refusal says of the value it refuses: an operator pastes a token in the wrong place, and the error
# would print it.
NOT_REPEATED = "not repeated here: it may be a token given in its place"


class ConnectError(Exception):
    """The operator's request cannot be done as given (one line, says what to do)."""


def spaces_refused(named: str, what: str, value: Optional[str]) -> Optional[str]:
    """Why a token or secret of only spaces, or with spaces around it (a copy-paste's newline, a file's line
    end), is refused: stored as it is, it would never match anything. `named` is where it came from, as the
    operator gave it (an option, a variable, "the ... typed"), `what` what it is; the value is never said.
    None when it is fine, or empty (not given)."""
    if value and not value.strip():
        return (f"{named} is empty (or only spaces), which nothing could ever match: give the {what} itself; "
                "nothing was stored")
    if value and value != value.strip():
        return f"{named} begins or ends with spaces or a newline (a copy-paste?): give it without them; nothing was stored"
    return None


def refuse_blank(**given: Optional[str]) -> None:
    """spaces_refused of each option given (an empty one is not given: a variable exported empty, as
    --client-id's default reads INTERCOM_CLIENT_ID)."""
    for name, value in given.items():
        refusal = spaces_refused("--" + name.replace("_", "-"), name.replace("_", " "), value)
        if refusal:
            raise ConnectError(refusal)


def try_again(exc: Deferred, now: float) -> str:
    """When to try again after a vendor's 429 (`exc`, its wait too long for the caller): "after 14:32 UTC"."""
    return f"after {clock_time(now + exc.retry_after, now)}" if exc.retry_after else "in a minute"


def confirmed(rt: Connecting, service: str, ask: Callable[[], T], refused: Callable[[Permanent], Optional[str]]) -> T:
    """What `ask` (a token check) answers; ConnectError (nothing stored) when `service` refuses the
    token (`refused` says how, for the answers it knows), would not confirm it, limits calls (a 429 whose wait
    is longer than a call may wait: when to try again), or cannot be reached."""
    try:
        return ask()
    except Deferred as exc:
        raise ConnectError(f"{service} is limiting calls for now ({exc.reason}): nothing was stored; try again "
                           f"{try_again(exc, rt.clock())}") from None
    except Permanent as exc:
        raise ConnectError(f"{refused(exc) or f'{service} would not confirm the token ({exc.reason})'}; "
                           "nothing was stored") from None
    except WorkError as exc:
        raise ConnectError(f"could not reach {service} to check the token ({exc.reason}); nothing was stored, "
                           "try again") from None


def check_token(rt: Connecting, token: str, api_base: Optional[str]) -> Workspace:
    """Who the token belongs to, by `GET /me`; ConnectError (nothing stored) when Intercom refuses it."""
    where = api_base or rt.config.intercom_base_url

    def refused(exc: Permanent) -> Optional[str]:
        return (f"Intercom refused this token (401 at {where}): check the token, or the workspace's region "
                "(--api-base https://api.eu.intercom.io)") if exc.status == 401 else None
    try:
        return workspace_of(confirmed(rt, "Intercom", lambda: rt.intercom_auth().whoami(token, api_base), refused))
    except ValueError as exc:
        raise ConnectError(f"{exc}; nothing was stored") from None


def check_workspace_id(workspace: str, api_base: Optional[str]) -> None:
    """What a connect refuses whatever its secrets: checked before they are asked for."""
    if not valid_workspace(workspace):
        raise ConnectError("the workspace given is not an Intercom app_id (letters, digits, _ and - only, at most 64; "
                           f"{NOT_REPEATED})")
    if api_base and not safe_url(api_base):  # it gets the token
        raise ConnectError("--api-base must be an https:// URL, e.g. https://api.eu.intercom.io (the value given is "
                           f"{NOT_REPEATED})")


def store_workspace(rt: Connecting, workspace: str, token: Optional[str], client_secret: Optional[str],
                    api_base: Optional[str], *, app: str = PRIVATE, current: Optional[Connection] = None,
                    public: Optional[str] = None) -> frozenset[str]:
    """Store what is given for the workspace, connected through `app`: the private app (its client secret
    is stored for the workspace) or the public one by OAuth (its client secret, stored once for every
    workspace, is referenced, never copied). The token is the app's, and replaces any other. `current`:
    the connection as read before. A client secret stored for the workspace that is the public app's (the
    OAuth callback copied it there before it referenced it) counts as the public app's: no longer named
    as a private app's (unless a private one replaces it), so no app is listed twice. `public`: the public
    app's client secret when the caller has it (else it is read when needed). Answers what the record
    now says is set: `current`'s and what was written (a read right after the write may not see it yet)."""
    edge = rt.secrets.scoped(EDGE)
    copied = (current is not None and MARKS[PRIVATE] in current.secrets and MARKS[PUBLIC] not in current.secrets
              and apps.same(edge.get(intercom_client_secret(workspace)), public or edge.get(OAUTH_CLIENT_SECRET)))
    # Secrets first: the table never says a secret is set before it is.
    if token:
        rt.secrets.scoped(WORKER).put(intercom_token(workspace), token)
    if client_secret:
        edge.put(intercom_client_secret(workspace), client_secret)
    given = {name for name, value in (("token", token), (MARKS[PRIVATE], client_secret),
                                      (MARKS[PUBLIC], app == PUBLIC or copied)) if value}
    rt.store.connections.put_workspace(workspace, secrets=given, api_base=api_base, token_app=app if token else None)
    dropped = {MARKS[PRIVATE]} if copied and not client_secret else set()
    if dropped:
        rt.store.connections.unmark(workspace, dropped)
    return frozenset((current.secrets if current is not None else set()) | given) - dropped


def connect_workspace(rt: Connecting, workspace: str, token: Optional[str] = None, client_secret: Optional[str] = None,
                      api_base: Optional[str] = None) -> dict:
    check_workspace_id(workspace, api_base)
    refuse_blank(token=token, client_secret=client_secret)
    current = rt.store.connections.workspace(workspace)
    had = set(current.secrets if current is not None else ())
    if not token and "token" not in had:
        if current is not None and current.status == "disconnected":
            raise ConnectError(f"workspace {workspace} is disconnected: reconnect it by OAuth, or with `bridge "
                               f"workspace connect {workspace}`, which asks for the token in a terminal (elsewhere, set "
                               "INTERCOM_TOKEN)")
        raise ConnectError(f"workspace {workspace} has no access token yet: `bridge workspace connect {workspace}` asks "
                           "for it in a terminal (elsewhere, set INTERCOM_TOKEN)")
    if not token and not client_secret and not api_base:      # a new API base alone is a change
        raise ConnectError(f"give workspace {workspace}'s token and/or client secret: `bridge workspace connect "
                           f"{workspace}` asks for them in a terminal (elsewhere, set INTERCOM_TOKEN and/or "
                           "INTERCOM_CLIENT_SECRET)")
    public = rt.secrets.scoped(EDGE).get(OAUTH_CLIENT_SECRET) if client_secret else None
    if apps.same(client_secret, public):
        raise ConnectError(f"this client secret is the public app's (the one `bridge workspace oauth-app` stored), not "
                           f"workspace {workspace}'s private app's: give the private app's own (Developer Hub > "
                           "Basic information), or none for a workspace connected by OAuth; nothing was stored")
    # An app's client secret is its own: another workspace's, stored here too, would let that workspace's admins
    # (who see it in their Developer Hub) sign this one's webhooks.
    holding = _private_holder(rt, client_secret, f"nothing was stored: run `bridge workspace connect {workspace}` "
                              "again", besides=workspace) if client_secret else None
    if holding:
        raise ConnectError(f"this client secret is workspace {holding}'s private app's (`bridge workspace connect "
                           f"{holding}` stored it), not workspace {workspace}'s: give {workspace}'s own private app's "
                           "(Developer Hub > Basic information); nothing was stored")
    if client_secret:
        refuse_rf_secret(rt, client_secret, f"workspace {workspace}'s private app's", "(Developer Hub > Basic "
                         "information)")
    name = None
    if token:   # checked where it will be used: the given base, else the one already configured
        found = check_token(rt, token, api_base or (current.api_base if current is not None else None))
        if found.app_id != workspace:
            raise ConnectError(f"this token belongs to workspace {found.app_id} ({found.name}), not {workspace}: "
                               "nothing was stored")
        name = found.name
        if not api_base and not (current and current.api_base):
            api_base = found.api_base(rt.config.intercom_base_url)
    now = store_workspace(rt, workspace, token, client_secret, api_base, current=current, public=public)
    return {"workspace": workspace, "name": name,
            "token": "set" if token else "kept",
            "client_secret": "set" if client_secret else ("kept" if MARKS[PRIVATE] in now else "missing"),
            "api_base": api_base or (current.api_base if current is not None else None) or "default",
            "apps": apps.apps(now), "token_app": PRIVATE if token else current.token_app if current else None}


def remove_app(rt: Connecting, workspace: str, app: str) -> dict:
    """The workspace is no longer connected through `app` (retired in Intercom): its webhooks are refused
    (the edge's cached record within a minute), and the private app's client secret is deleted (the public
    app's serves other workspaces). Refused as domain/apps.removal_refused says; nothing else changes."""
    conn = rt.store.connections.workspace(workspace) if valid_workspace(workspace) else None
    if conn is None:
        raise ConnectError(f"workspace {workspace} is not connected here (no app to remove)")
    refusal = apps.removal_refused(workspace, conn.secrets, conn.token_app, app)
    if refusal:
        raise ConnectError(f"{refusal}; nothing was changed")
    # First (the edge no longer tries it), and only on the record as read: a connect or disconnect made
    # at the same moment may have changed whose token the worker uses, or the apps.
    if not rt.store.connections.unmark(workspace, {MARKS[app]}, read=conn):
        raise ConnectError(f"workspace {workspace}'s connection changed while the {apps.NAMES[app]} was being "
                           "removed (a connect or disconnect at the same moment): nothing was changed; run "
                           f"`bridge workspace remove-app {workspace} {app}` again")
    if app == PRIVATE:
        rt.secrets.scoped(EDGE).delete(intercom_client_secret(workspace))
    return {"workspace": workspace, "removed": app, "apps": apps.apps(conn.secrets - {MARKS[app]}),
            "token_app": conn.token_app}


def disconnect_workspace(rt: Connecting, workspace: str) -> dict:
    """The workspace's token is deleted and the workspace marked disconnected. Settings, links and
    history stay; its client secret stays too, so that Intercom's notifications are still verified
    and kept: the worker sends all work for the workspace to the dead-letter queue with the reason
    "workspace disconnected", to replay once it is connected again."""
    if not valid_workspace(workspace) or not rt.store.connections.disconnect_workspace(workspace):
        raise ConnectError(f"workspace {workspace} is not connected here (nothing to disconnect)")
    rt.secrets.scoped(WORKER).delete(intercom_token(workspace))
    now = rt.store.connections.workspace(workspace)     # (its apps' marks are kept: how to reconnect it)
    return {"workspace": workspace, "status": "disconnected", "apps": apps.apps(now.secrets if now else ())}


def list_workspaces(rt: Connecting) -> list[dict]:
    """Every workspace the bridge knows (connected, disconnected, or only named by a campaign's
    settings: "not connected"), with which secrets are set (never a value), the apps it is connected
    through (each app's webhooks verify) and the one its token is of, and its campaigns: those whose
    settings are stored for it now. The store's index keeps every campaign ever applied (`forget` and
    `explain` visit their links and ledger): one deleted, or moved to another workspace, is not listed."""
    listed = []
    named = {ws: rt.store.settings.campaigns(ws) for ws in sorted(rt.store.connections.workspaces())}
    stored = rt.store.settings.documents(set().union(*named.values()))     # one batched read for all
    for workspace, names in named.items():
        conn = rt.store.connections.workspace(workspace) or Connection(workspace, "not connected")
        campaigns = [c for c in names if c in stored and stored[c].get("workspace") == workspace]
        listed.append({"workspace": workspace, "status": conn.status, "secrets_set": sorted(conn.secrets),
                       "apps": apps.apps(conn.secrets), "token_app": conn.token_app,
                       "api_base": conn.api_base, "campaigns": sorted(campaigns, key=lambda c: (len(c), c))})
    return listed


#: What `bridge rf connect` and `bridge workspace oauth-app` say given nothing to store outside a terminal (where
#: nothing is asked for): the CLI refuses that command line before any stack is looked for (exit 2).
RF_NOTHING_GIVEN = ("give Referral Factory's token and/or webhook secret: `bridge rf connect` asks for them in a "
                    "terminal (elsewhere, set RF_TOKEN and/or RF_WEBHOOK_SECRET)")
OAUTH_NOTHING_GIVEN = ("give the public Intercom app's client id (--client-id or INTERCOM_CLIENT_ID) and/or client "
                       "secret (INTERCOM_OAUTH_CLIENT_SECRET), or --rotate-state-key for a new state key alone: "
                       "outside a terminal nothing is asked for; nothing was changed")


def oauth_app(rt: Connecting, client_id: Optional[str]) -> dict[str, Optional[str]]:
    """What the public app has stored (its client id, client secret and state key; None: not set), read once
    for configure_oauth; refused when it would have no client id."""
    edge = rt.secrets.scoped(EDGE)
    stored = {name: edge.get(name) for name in (OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_STATE_KEY)}
    if not client_id and stored[OAUTH_CLIENT_ID] is None:
        raise ConnectError("give --client-id (or INTERCOM_CLIENT_ID): the public app's client id")
    return stored


def configure_oauth(rt: Connecting, client_id: Optional[str], client_secret: Optional[str],
                    stored: Optional[dict[str, Optional[str]]] = None, *, rotate_state_key: bool = False) -> dict:
    """The public app's client id and secret, for the OAuth routes; the key that signs `state` is
    made once, and again when `rotate_state_key` (every state signed before no longer reads: its callback
    gets the page asking for a new link). What is not given is kept. `stored`: what oauth_app already read
    for this client id (a prompt asked whether a secret is stored): not read again."""
    refuse_blank(client_id=client_id, client_secret=client_secret)
    if not client_id and not client_secret and not rotate_state_key:
        # (only outside a terminal: there, the CLI asks for the secret, and says when nothing was typed)
        raise ConnectError(OAUTH_NOTHING_GIVEN)
    edge = rt.secrets.scoped(EDGE)
    stored = stored or oauth_app(rt, client_id)
    public, state_key = stored[OAUTH_CLIENT_SECRET], stored[OAUTH_STATE_KEY]
    if not client_secret and public is None:
        raise ConnectError("give the public app's client secret: `bridge workspace oauth-app` asks for it in a "
                           "terminal (elsewhere, set INTERCOM_OAUTH_CLIENT_SECRET)")
    # Refused before anything is written (a copy's secret is the stored one, not this one, so the check
    # never sees a copy); the same again: what held it were copies.
    if client_secret and not apps.same(client_secret, public):
        refuse_private_secret(rt, client_secret)
        refuse_rf_secret(rt, client_secret, "the public app's", "(Developer Hub > the public app > Basic information)")
    relabelled = relabel_copies(rt, public) if public is not None else []
    if client_id:
        edge.put(OAUTH_CLIENT_ID, client_id)
    if client_secret:
        edge.put(OAUTH_CLIENT_SECRET, client_secret)
    if state_key is None or rotate_state_key:
        edge.put(OAUTH_STATE_KEY, new_key())
    return {"client_id": "set" if client_id else "kept", "client_secret": "set" if client_secret else "kept",
            "state_key": "made" if state_key is None else "rotated" if rotate_state_key else "kept",
            "relabelled": relabelled}


def refuse_private_secret(rt: Connecting, secret: str) -> None:
    """ConnectError when `secret` is a workspace's private app's client secret: the bridge tells the apps
    apart by their secrets (a workspace's equal to the public app's is taken for an old copy of it: its
    private app dropped at its next OAuth connect, its secret deleted at the next `oauth-app`)."""
    holding = _private_holder(rt, secret, "the public app's settings are unchanged: run `bridge workspace oauth-app` "
                                          "again")
    if holding:
        raise ConnectError(f"this client secret is workspace {holding}'s private app's (`bridge workspace connect` "
                           "stored it), not the public app's: give the public app's own (Developer Hub > the public "
                           "app > Basic information); nothing was stored")


def refuse_rf_secret(rt: Connecting, secret: str, meant: str, where: str) -> None:
    """ConnectError when an Intercom app's client secret (`meant`: whose it is meant to be, found `where`) is RF's
    webhook secret: whoever sees RF's webhook settings could sign the Intercom app's webhooks, and the app's
    admins RF's joins (CLI only: the webhook path never reads another service's secret)."""
    if apps.same(rt.secrets.scoped(EDGE).get(RF_WEBHOOK_SECRET), secret):
        raise ConnectError(f"this client secret is Referral Factory's webhook secret (the one `bridge rf connect` "
                           f"stored), not {meant}: whoever sees RF's webhook settings could sign Intercom's webhooks "
                           f"with it; give {meant} own {where}, and if it is that, first give RF a webhook secret "
                           "of its own (`bridge rf connect`); nothing was stored")


def _intercom_holder(rt: Connecting, secret: str) -> Optional[str]:
    """Whose Intercom app's client secret `secret` is (the public app's, or a workspace's private app's), else None;
    ConnectError when a read fails."""
    if apps.same(rt.secrets.scoped(EDGE).get(OAUTH_CLIENT_SECRET), secret):
        return "the public Intercom app's (`bridge workspace oauth-app` stored it)"
    holding = _private_holder(rt, secret, "Referral Factory's settings are unchanged: run `bridge rf connect` again")
    return f"workspace {holding}'s private Intercom app's (`bridge workspace connect {holding}` stored it)" \
        if holding else None


def _private_holder(rt: Connecting, secret: str, unchanged: str, besides: Optional[str] = None) -> Optional[str]:
    """The workspace (other than `besides`) whose private app's client secret `secret` is, else None.
    ConnectError when a read fails (`unchanged`: what stands, and what to run again)."""
    edge, workspace = rt.secrets.scoped(EDGE), None
    try:
        for workspace in sorted(rt.store.connections.workspaces() - {besides}):
            conn = rt.store.connections.workspace(workspace)
            if conn is not None and MARKS[PRIVATE] in conn.secrets and \
                    apps.same(edge.get(intercom_client_secret(workspace)), secret):
                return workspace
    except Exception as exc:
        raise ConnectError(f"could not check that no workspace's private app has this client secret "
                           f"({_first_line(exc)}{f', at workspace {workspace}' if workspace else ''}): "
                           f"{unchanged}") from exc
    return None


def _first_line(exc: Exception) -> str:
    return getattr(exc, "reason", None) or (str(exc).splitlines() or [type(exc).__name__])[0]


def relabel_copies(rt: Connecting, public: Optional[str]) -> list[str]:
    """The workspaces connected by OAuth before the public app's client secret was referenced (the callback
    copied it as theirs: a "private app" whose secret is the public app's, `public`), now marked as connected
    through the public app, their copy deleted: their status and token are left as they are. Done before a
    new public secret is stored: after, nothing would tell a copy from a private app's secret, and the old
    secret would verify the workspace's webhooks for good. ConnectError (one line: what was done; nothing
    of the public app is stored, run it again) when a read or write fails. A copy is told by its value, not
    by the private mark: a run stopped after unmarking a workspace, or a connect that unmarked it
    (store_workspace), leaves the copy stored, and the next run deletes it."""
    edge, done, workspace = rt.secrets.scoped(EDGE), [], None
    try:
        for workspace in sorted(rt.store.connections.workspaces()):
            conn = rt.store.connections.workspace(workspace)
            name = intercom_client_secret(workspace)
            if conn is None or not {MARKS[PRIVATE], MARKS[PUBLIC]} & conn.secrets or not apps.same(edge.get(name), public):
                continue
            rt.store.connections.mark(workspace, {MARKS[PUBLIC]})     # first: the edge tries the public app's
            rt.store.connections.unmark(workspace, {MARKS[PRIVATE]})
            edge.delete(name)
            done.append(workspace)
    except Exception as exc:
        raise ConnectError(f"could not look for the workspaces holding a copy of the public app's client secret "
                           f"(connected by OAuth before it was referenced) to mark them as connected through it "
                           f"({_first_line(exc)}{f', at workspace {workspace}' if workspace else ''}); marked so far: "
                           f"{', '.join(done) or 'none'}; the public app's settings are unchanged: run `bridge "
                           "workspace oauth-app` again") from exc
    return done


def check_rf_token(rt: Connecting, token: str) -> None:
    """RF's campaigns, asked with this token (one call, outside the shared limiter, as Intercom's
    `/me`); ConnectError (nothing stored) when RF refuses the token or cannot be reached."""
    where = rt.config.rf_base_url

    def refused(exc: Permanent) -> Optional[str]:
        said = f"{exc.status}: {exc.message}" if exc.message else str(exc.status)
        if exc.status == 401:
            return f"Referral Factory refused this token (it answered {said} at {where}): check the token"
        if exc.status == 403:           # RF's answer to an IP it blocks after repeated excess, too
            return (f"Referral Factory answered {said} at {where}: it blocks this machine's address after too "
                    "many calls (wait, then try again), or the token may not read campaigns")
        return None
    confirmed(rt, "Referral Factory", rt.rf_auth(token).check_token, refused)


def store_rf(rt: Connecting, token: Optional[str], webhook_secret: Optional[str]) -> set[str]:
    """Store what is given of Referral Factory's connection, secrets first (the table never says a secret is set
    before it is); answers what was written. connect_rf's writes, after its checks."""
    if token:
        rt.secrets.scoped(WORKER).put(RF_TOKEN, token)
    if webhook_secret:
        rt.secrets.scoped(EDGE).put(RF_WEBHOOK_SECRET, webhook_secret)
    given = {name for name, value in (("token", token), ("webhook-secret", webhook_secret)) if value}
    rt.store.connections.put_rf(secrets=given)
    return given


def connect_rf(rt: Connecting, token: Optional[str] = None, webhook_secret: Optional[str] = None, *,
               check: bool = False) -> dict:
    """`check`: a given token is asked of RF before it is stored (the operator's `bridge rf connect`)."""
    refuse_blank(token=token, webhook_secret=webhook_secret)
    current = rt.store.connections.rf()
    had = set(current.secrets if current is not None else ())
    if not token and not webhook_secret:
        raise ConnectError(RF_NOTHING_GIVEN)
    whose = _intercom_holder(rt, webhook_secret) if webhook_secret else None
    if whose:
        raise ConnectError(f"this webhook secret is {whose} client secret: whoever sees either (RF's webhook "
                           "settings, the app's Developer Hub) could sign the other's webhooks; choose one for RF "
                           "alone (any long random string, e.g. `openssl rand -hex 32`); nothing was stored")
    if token and check:
        check_rf_token(rt, token)
    now = had | store_rf(rt, token, webhook_secret)
    return {"token": "set" if token else ("kept" if "token" in now else "missing"),
            "webhook_secret": "set" if webhook_secret else ("kept" if "webhook-secret" in now else "missing")}
