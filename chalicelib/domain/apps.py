"""The Intercom apps a workspace is connected through. Intercom signs an app's webhook notifications
(X-Hub-Signature) with that app's client secret, and an app's subscription lives until the app is
removed in Intercom: a workspace connected with its own private app (`bridge workspace connect`), then
by OAuth through the bridge's public app (or the other way round), gets notifications signed by either.
Each app connected leaves its mark in the connection record's `secrets` (which are set, never a value):

  private   "client-secret"   the private app's client secret, stored for the workspace
  oauth     "oauth"           the public app's: the one `bridge workspace oauth-app` stored for every
                              workspace (referenced, never copied: reconnecting adds nothing)

The worker uses one access token: the most recent connection's (`token_app` records whose it is).
Pure: the marks, the stored values and the record are given."""
from __future__ import annotations

import hmac
from typing import Iterable, Optional

PRIVATE, PUBLIC = "private", "oauth"
MARKS = {PRIVATE: "client-secret", PUBLIC: "oauth"}        # app -> its mark; in the order the edge tries them
NAMES = {PRIVATE: "private app", PUBLIC: "public app (OAuth)"}


def apps(secrets: Iterable[str]) -> list[str]:
    """The apps a connection record's marks say the workspace is connected through."""
    marked = set(secrets)
    return [app for app, mark in MARKS.items() if mark in marked]


def same(stored: Optional[str], other: Optional[str]) -> bool:
    """Two secrets are one (compared in constant time); an absent one is no secret's."""
    return bool(stored and other) and hmac.compare_digest(str(stored).encode(), str(other).encode())


def how_to_connect(app: str, workspace: str) -> str:
    return (f"`bridge workspace connect {workspace}`" if app == PRIVATE else
            f"a link from `bridge workspace oauth-link --workspace {workspace}`")


def reconnects(workspace: str, connected: list[str]) -> str:
    """How to reconnect a workspace through the apps it was connected through (`connected`; none known: the
    private app's way): the public app's needs no token from the operator, only the admin's authorization."""
    ways = {PRIVATE: f"`bridge workspace connect {workspace}` (it asks for the token)",
            PUBLIC: f"a new link from `bridge workspace oauth-link --workspace {workspace}` (the workspace's admin "
                    "authorizes the app again)"}
    return " or ".join(ways[app] for app in connected or [PRIVATE])


def unauthorized_fix(workspace: str, secrets: Iterable[str]) -> str:
    """What to do when the workspace's Intercom webhooks verify with none of its apps' client secrets, for the
    apps its connection record names. Never "give `workspace connect` the client secret" to a workspace
    connected by OAuth alone: the public app's secret stored as the workspace's own would be taken for a
    private app's, and keep verifying after the public app's is rotated."""
    private = (f"`bridge workspace connect {workspace}` (Enter keeps the token; then it asks for the app's client "
               "secret: Developer Hub > Basic information)")
    public = ("check the public app's client secret (Developer Hub > Basic information) is the one `bridge workspace "
              f"oauth-app` stored (it asks for it), or reconnect the workspace by OAuth ({how_to_connect(PUBLIC, workspace)})")
    known = apps(secrets)
    if known == [PUBLIC]:
        return f"{public}; never give the public app's secret to `bridge workspace connect`"
    if known == [PRIVATE, PUBLIC]:
        return f"for its private app's webhooks, {private}; for the public app's, {public}"
    return f"{private}; `bridge workspace list` names its apps"


def removal_refused(workspace: str, secrets: Iterable[str], token_app: Optional[str], app: str) -> Optional[str]:
    """Why `app` cannot be removed from the workspace's connection (one line, says what to do), or None.
    Refused: an app it is not connected through; its only app (every webhook would be refused: a
    disconnect is the way to stop its work); the app whose access token the worker uses, or whose token
    it is is not recorded (connected before the bridge kept it): connecting through the other first
    replaces the token."""
    if app not in MARKS:
        return f"no app {app!r}: name {' or '.join(MARKS)}"
    known = apps(secrets)
    if app not in known:
        through = " and ".join(NAMES[a] for a in known) or "no app"
        return f"workspace {workspace} is not connected through its {NAMES[app]} (it is through {through})"
    other = next((a for a in known if a != app), None)
    if other is None:
        return (f"the {NAMES[app]} is the only app workspace {workspace} is connected through: without it every "
                f"Intercom webhook of the workspace is refused (401); to stop its work, `bridge workspace "
                f"disconnect {workspace}`")
    if "token" in set(secrets) and token_app != other:
        whose = f"the {NAMES[app]}'s" if token_app == app else "not recorded as the other app's"
        return (f"the access token the worker uses for workspace {workspace} is {whose}: connect it through the "
                f"{NAMES[other]} first ({how_to_connect(other, workspace)}), which replaces the token, then "
                "remove this app")
    return None
