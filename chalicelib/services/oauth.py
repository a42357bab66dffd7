"""Use case: connect an Intercom workspace through the public app's OAuth (GET routes the admin's
browser follows). The start sends the browser to Intercom's authorize page with a signed, expiring
`state` (and a cookie holding its nonce); the callback checks the state (signature, expiry, same
browser, single use by a conditional write), exchanges the code, asks `GET /me` which workspace the
token belongs to, stores the token and answers a small page naming the workspace and what to do
next. Any refusal is a page that says why; nothing is stored before every check has passed (but
the state: once its signature, expiry and browser are right, it is spent, whatever follows)."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Protocol

from ..domain import oauth
from ..domain.oauth import StateError
from ..errors import REPLAY_PARKED, Permanent, WorkError
from ..observability import logger
from ..ports.secrets import valid_workspace
from .connections import ConnectError, Connecting, check_token, store_workspace


class OAuthEdge(Connecting, Protocol):
    """What the OAuth routes are given (the composition root's Runtime)."""

    @property
    def clock(self) -> Callable[[], float]: ...
    def oauth_app(self) -> Optional[tuple[str, str, str]]: ...


@dataclass(frozen=True)
class Page:
    status: int
    html: str
    headers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Place:
    """Where the bridge's API is reached from the browser: `base` + `/oauth/intercom/...`."""

    base: str
    secure: bool

    @property
    def callback(self) -> str:
        return f"{self.base}/oauth/intercom/callback"

    @property
    def start(self) -> str:
        return f"{self.base}/oauth/intercom/start"


NOT_SET_UP = ("OAuth is not set up on this bridge yet: the operator runs "
              "<code>bridge workspace oauth-app --client-id ...</code> (it asks for the client secret) with the "
              "public app's credentials (Intercom Developer Hub → your app → Basic information)")


def start(rt: OAuthEdge, place: Place) -> Page:
    app = rt.oauth_app()
    if app is None:
        return _page(503, "Not set up", NOT_SET_UP, raw=True)
    client_id, _, key = app
    nonce = oauth.new_nonce()
    state = oauth.make_state(key, nonce, rt.clock())
    cookie = (f"{oauth.COOKIE}={nonce}; Max-Age={oauth.STATE_SECONDS}; Path=/; HttpOnly; SameSite=Lax"
              + ("; Secure" if place.secure else ""))
    location = oauth.authorize_url(rt.config.intercom_oauth_url, client_id, state, place.callback)
    return Page(302, _html("Connecting to Intercom", f'<p>Continue to <a href="{html.escape(location)}">Intercom</a>.</p>'),
                {"Location": location, "Set-Cookie": cookie, "Cache-Control": "no-store"})


def callback(rt: OAuthEdge, query: Mapping[str, str], cookie_header: Optional[str], place: Place) -> Page:
    app = rt.oauth_app()
    if app is None:
        return _page(503, "Not set up", NOT_SET_UP, raw=True)
    client_id, client_secret, key = app
    error, detail = query.get("error") or "", query.get("error_description") or ""
    if error:
        return _refused(place, f"Intercom did not authorize the app ({error[:80]}{': ' + detail[:200] if detail else ''})")
    try:
        state = oauth.read_state(key, query.get("state"), rt.clock())
    except StateError as exc:
        return _refused(place, exc.reason)
    # The browser first (a state seen elsewhere cannot even be spent), then single use.
    if oauth.cookie_nonce(cookie_header) != state.nonce:
        return _refused(place, "this sign-in was started in another browser (or cookies are blocked): "
                               "start again in this browser")
    if not rt.store.connections.use_oauth_state(state.nonce, state.expires_at):
        return _refused(place, "this sign-in link was already used: start again")
    code = query.get("code")
    if not code:
        return _refused(place, "Intercom sent no code")
    try:
        token = rt.intercom_auth().exchange(code, client_id, client_secret)
    except Permanent as exc:
        return _refused(place, f"Intercom refused the code ({exc.reason})")
    except WorkError as exc:
        return _refused(place, f"Intercom could not be reached ({exc.reason})", status=502)
    try:
        found = check_token(rt, token, None)
    except ConnectError as exc:
        return _refused(place, str(exc), status=502)
    if not valid_workspace(found.app_id):
        return _refused(place, f"Intercom named a workspace id this bridge cannot keep ({found.app_id[:80]!r})", 502)
    current = rt.store.connections.workspace(found.app_id)
    api_base = None if current and current.api_base else found.api_base(rt.config.intercom_base_url)
    # The public app's client secret signs this workspace's webhooks.
    store_workspace(rt, found.app_id, token, client_secret, api_base)
    logger.info("workspace connected by OAuth", extra={"workspace": found.app_id})
    return _connected(place, found, reconnected=current is not None)


def _connected(place: Place, found: oauth.Workspace, reconnected: bool) -> Page:
    ws, name = html.escape(found.app_id), html.escape(found.name)
    hooks = html.escape(place.base + "/webhooks/intercom")
    body = f"""<p class="ok">Connected: Intercom workspace <strong id="workspace-name">{name}</strong>
(app_id <code id="workspace-id">{ws}</code>){' — reconnected, its settings and links are as they were' if reconnected else ''}.</p>
<h2>Next steps</h2>
<ol>
<li>In your app's <em>Webhooks</em> settings, use <code>{hooks}</code> and subscribe to
<code>contact.lead.updated</code>, <code>contact.user.updated</code>, <code>contact.lead.signed_up</code>,
<code>contact.merged</code>, <code>contact.deleted</code>, <code>contact.archived</code>.</li>
<li>Write the campaign's settings with <code>workspace: "{ws}"</code> and apply them:
<code>bridge settings apply campaign.yaml</code>.</li>
<li>If work waited while the workspace was disconnected: <code>{html.escape(REPLAY_PARKED)}</code>.</li>
</ol>"""
    # The cookie is left to expire: its nonce is spent, and a replay in this browser is told so.
    return Page(200, _html(f"Connected: {found.name}", body))


def _refused(place: Place, reason: str, status: int = 400) -> Page:
    body = (f'<p class="error" id="reason">{html.escape(reason)}.</p><p>Nothing was connected or stored. '
            f'<a href="{html.escape(place.start)}">Start again</a>.</p>')
    logger.warning("OAuth callback refused", extra={"reason": reason})
    return Page(status, _html("Not connected", body))


def _page(status: int, title: str, text: str, raw: bool = False) -> Page:
    return Page(status, _html(title, f'<p id="reason">{text if raw else html.escape(text)}</p>'))


def _html(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="referrer" content="no-referrer"><link rel="icon" href="data:,"><title>{html.escape(title)} — RF ↔ Intercom bridge</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em}}
.ok{{color:#05661f}}.error{{color:#a11}}code{{background:#f3f3f3;padding:0 .2em}}</style></head>
<body><h1>{html.escape(title)}</h1>
{body}
</body></html>
"""
