"""Use case: connect an Intercom workspace through the public app's OAuth (the routes the admin's
browser follows). The operator mints a one-time start link (`mint_link`: `bridge workspace oauth-link`):
a ticket kept in the table for TICKET_SECONDS, which may name the one workspace expected. Opening the
link (GET, `start`) answers a page with a "Continue to Intercom" button and spends nothing, so that a
mail scanner, a chat preview or a prefetch that opens it leaves it to the admin; the button POSTs the
ticket back (`begin`), which spends it (without one, unused and unexpired, either answers a page
saying how to get one, and never sends the browser to Intercom), then sends the browser to
Intercom's authorize page with a signed, expiring `state` carrying the ticket's workspace (and a
cookie holding a random secret, of which the state carries only the hash); the callback checks the state (signature, expiry, same browser, single
use by a conditional write), exchanges the code, asks `GET /me` which workspace the token belongs
to, refuses one that is not the ticket's, stores the token and answers a small page naming the
workspace and what to do next. Any refusal is a page that says why; nothing is stored before every
check has passed (but the state: once its signature, expiry and browser are right, it is spent,
whatever follows)."""
from __future__ import annotations

import base64
import hashlib
import html
from datetime import datetime, timezone
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Protocol
from urllib.parse import urlencode

from ..domain import oauth
from ..domain.apps import MARKS, PRIVATE, PUBLIC
from ..domain.history import iso
from ..domain.oauth import StateError
from ..domain.settings import CREATED_TOPICS, EMAIL_TOPICS, TOPICS, TopicNeed, needed_topics, valid_or_none
from ..errors import Deferred, NoAnswer, Permanent, WorkError, replay_parked
from ..observability import logger
from ..ports.secrets import valid_workspace
from ..ports.store import Connection, OAuthTicket
from .connections import NOT_REPEATED, ConnectError, Connecting, check_workspace_id, store_workspace, try_again


class OAuthEdge(Connecting, Protocol):
    """What the OAuth routes are given (the composition root's Runtime)."""

    def oauth_app(self) -> Optional[tuple[str, str, str]]: ...


@dataclass(frozen=True)
class Page:
    """`headers` beside the ones every page has (the handlers' `_html`): a page with a form or a script says its own
    Content-Security-Policy (else `policy()`'s, which allows neither)."""

    status: int
    html: str
    headers: dict = field(default_factory=dict)


# Every page's style, and the start page's one script (its button disabled once pressed: a second POST, a double
# click, would get the page of a spent link in place of Intercom's): each allowed by its hash, nothing inline else.
STYLE = """body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em}
.ok{color:#05661f}.error{color:#a11}code{background:#f3f3f3;padding:0 .2em}"""
SUBMIT_ONCE = ("document.getElementById('continue').form.addEventListener('submit', function () "
               "{ this.querySelector('button').disabled = true; });")


def source_hash(text: str) -> str:
    """CSP's source of an inline <style> or <script> whose text is `text`."""
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"


def policy(form: bool = False, script: bool = False) -> str:
    """A page's Content-Security-Policy: nothing but its style (and the icon, `data:`: no request for one), no script
    but SUBMIT_ONCE where `script`, never framed, no <base>; no form but where `form` (the start page's button).
    That page's policy names no `form-action`: Chrome checks a form's redirects against it too, and the button's
    answer sends the browser to Intercom's authorize page, which may send it on through hosts the bridge cannot know
    (a regional sign-in, an admin's SAML sign-in): a list would refuse those admins' connect."""
    return "; ".join(("default-src 'none'", f"style-src {source_hash(STYLE)}", "img-src data:",
                      *((f"script-src {source_hash(SUBMIT_ONCE)}",) if script else ()),
                      *(() if form else ("form-action 'none'",)),
                      "frame-ancestors 'none'", "base-uri 'none'"))


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


OAUTH_LINK = "bridge workspace oauth-link"
NO_TICKET = ("Connecting a workspace needs a one-time link from the bridge's operator, and this one is not valid: "
             "it has no ticket, it was already used, it expired (links last {minutes} minutes) or it was never "
             "issued. The operator creates a new one with <code>{command}</code> (<code>--workspace APP_ID</code> "
             "to allow only that workspace).")
# What the callback keeps of the Lambda's time after Intercom's calls: to store the token, record what it did
# and answer its page (an AWS call starts with at least an attempt's time left, 2.5 s, plus the answer's 1 s).
FINISH_MS = 5000
NOT_SET_UP = ("OAuth is not set up on this bridge yet: the operator runs "
              "<code>bridge workspace oauth-app --client-id ...</code> (it asks for the client secret) with the "
              "public app's credentials (Intercom Developer Hub → your app → Basic information)")


def check_api_url(api_url: str) -> None:
    """ConnectError unless the API's URL is one an admin's sign-in may go to (domain/oauth.safe_url)."""
    if not oauth.safe_url(api_url):
        raise ConnectError("the API's URL (--api-url, BRIDGE_API_URL) must be an https:// URL, e.g. "
                           "https://abc123.execute-api.eu-west-1.amazonaws.com/api (the value given is "
                           f"{NOT_REPEATED})")


def redirect_url(api_url: str) -> str:
    """The callback URL to register as the public app's redirect URL (`bridge workspace oauth-app`)."""
    return Place(api_url.rstrip("/"), False).callback


def mint_link(rt: OAuthEdge, api_url: str, workspace: Optional[str] = None) -> dict:
    """A one-time start link (the operator's): its ticket is kept TICKET_SECONDS and spent when the
    admin first continues from the page it opens; with `workspace`, the callback connects that workspace only.
    ConnectError (nothing kept) before the OAuth app is stored, or for a malformed app_id or URL."""
    if rt.oauth_app() is None:
        raise ConnectError("OAuth is not set up on this stage yet: run `bridge workspace oauth-app --client-id ...` "
                           "first (it asks for the public app's client secret)")
    if workspace is not None:
        check_workspace_id(workspace, None)
    check_api_url(api_url)
    ticket = OAuthTicket(oauth.new_ticket(), workspace, int(rt.clock()) + oauth.TICKET_SECONDS)
    rt.store.connections.add_oauth_ticket(ticket)
    return {"url": f"{Place(api_url.rstrip('/'), False).start}?{urlencode({'ticket': ticket.ticket})}",
            "workspace": workspace, "expires_at": iso(ticket.expires_at), "single_use": True}


def start(rt: OAuthEdge, place: Place, ticket: Optional[str] = None) -> Page:
    """The link opened (GET): a page whose button POSTs the ticket to `begin`. Never spends it."""
    app = _app(rt)
    if isinstance(app, Page):
        return app
    kept = _ticket(rt.store.connections.oauth_ticket, ticket, rt.clock())
    if kept is None:
        return _no_ticket(ticket)
    only = f" This link connects workspace <code>{html.escape(kept.workspace)}</code> only." if kept.workspace else ""
    body = (f"<p>Sign in to Intercom as an admin of the workspace to connect, and allow the app.{only}</p>"
            f'<form method="post" action="{html.escape(place.start)}">'
            f'<input type="hidden" name="ticket" value="{html.escape(kept.ticket)}">'
            '<button type="submit" id="continue">Continue to Intercom</button></form>'
            f"<script>{SUBMIT_ONCE}</script>"
            "<p>The link works once: continuing uses it.</p>")
    # The form posts here, whose answer sends the browser on to Intercom's authorize page (policy: no form-action).
    return Page(200, _html("Connect an Intercom workspace", body),
                {"Content-Security-Policy": policy(form=True, script=True)})


def begin(rt: OAuthEdge, place: Place, ticket: Optional[str] = None) -> Page:
    """The start page's button (POST): spends the ticket and sends the browser to Intercom."""
    app = _app(rt)
    if isinstance(app, Page):
        return app
    client_id, _, key = app
    spent = _ticket(rt.store.connections.spend_oauth_ticket, ticket, rt.clock())
    if spent is None:
        return _no_ticket(ticket)
    browser = oauth.new_browser_secret()
    bound = oauth.binding(browser)
    state = oauth.make_state(key, bound, rt.clock(), workspace=spent.workspace)
    cookie = (f"{oauth.cookie_name(bound)}={browser}; Max-Age={oauth.STATE_SECONDS}; Path=/; HttpOnly; SameSite=Lax"
              + ("; Secure" if place.secure else ""))
    location = oauth.authorize_url(rt.config.intercom_oauth_url, client_id, state, place.callback)
    # 303: the browser GETs Intercom's page (a POST's 302 may be followed by a POST).
    return Page(303, _html("Connecting to Intercom", f'<p>Continue to <a href="{html.escape(location)}">Intercom</a>.</p>'),
                {"Location": location, "Set-Cookie": cookie, "Cache-Control": "no-store"})


def _app(rt: OAuthEdge) -> tuple[str, str, str] | Page:
    """The public app's (client id, client secret, state key), else the page of a bridge that connects no
    workspace: its configuration would send the admin's sign-in or the token in clear (Config.insecure), or
    the app is not stored yet."""
    insecure = rt.config.insecure("intercom_oauth_url", "intercom_base_url")
    if insecure:
        logger.error("OAuth refused: the configuration is unsafe", extra={"reason": insecure})
        return _page(503, "Not set up", "This bridge's configuration is unsafe, so it connects no workspace: "
                                        f"{insecure}. The bridge's operator fixes it, and deploys again.")
    app = rt.oauth_app()
    return _page(503, "Not set up", NOT_SET_UP, raw=True) if app is None else app


def _ticket(look: Callable[[str, float], Optional[OAuthTicket]], ticket: Optional[str],
            now: float) -> Optional[OAuthTicket]:
    """`look` (the store's read or spend) of a ticket of the right shape; None for any other."""
    return look(ticket, now) if ticket and oauth.ticket_shape(ticket) else None


def unavailable() -> Page:
    """Any OAuth page when the bridge's own storage (the table, the secret store) failed or did not answer in time,
    before anything was connected: to reload in a minute (a link or state it spent meanwhile is said so then)."""
    body = ('<p class="error" id="reason">The bridge could not reach its own storage just now (AWS refused or did '
            'not answer in time). Nothing was connected.</p><p>Reload this page in a minute. If it then says the link '
            f'is not valid or was already used, ask the bridge\'s operator for a new link (<code>{OAUTH_LINK}</code>).</p>')
    return Page(503, _html("Try again in a minute", body), {"Retry-After": "60"})


def _no_ticket(ticket: Optional[str]) -> Page:
    logger.warning("OAuth start refused", extra={"reason": "no valid ticket", "ticket_given": bool(ticket)})
    return _page(403, "Link not valid", NO_TICKET.format(minutes=oauth.TICKET_SECONDS // 60, command=OAUTH_LINK),
                 raw=True)


def callback(rt: OAuthEdge, query: Mapping[str, str], cookie_header: Optional[str], place: Place,
             remaining_ms: Callable[[], int] = lambda: 10**9) -> Page:
    """`remaining_ms`: the Lambda's time left. Intercom gets what is left of it but FINISH_MS: a function
    stopped by its timeout gets the admin API Gateway's 502, its state spent, and no line says why."""
    app = _app(rt)
    if isinstance(app, Page):
        return app
    client_id, client_secret, key = app
    error, detail = query.get("error") or "", query.get("error_description") or ""
    # Intercom's refusal (the admin denied: maybe after going back from a connect that went through) is said as
    # such, and whether the link connected nothing is told as a reload's would be: its state read, never spent.
    # Its words only once the state and the browser are known good (oauth.denial).
    denied = oauth.denial(error, detail, verified=False)
    try:
        state = oauth.read_state(key, query.get("state"), rt.clock())
    except StateError as exc:
        return _refused(place, denied or exc.reason, known=not exc.issued)
    # The browser first (a state seen elsewhere cannot even be spent, nor tell what its link did), then single use.
    if not oauth.same_browser(cookie_header, state):
        return _refused(place, denied or "this sign-in was started in another browser (or cookies are blocked): "
                                         "start again in this browser", known=False)
    if error:
        before = rt.store.connections.oauth_state_outcome(state.binding)
        return _refused(place, oauth.denial(error, detail, verified=True),
                        known=before is None or (before.workspace is None and not before.stopped))
    if not rt.store.connections.use_oauth_state(state.binding, state.expires_at):
        return _used(place, rt.store.connections.oauth_state_outcome(state.binding))
    try:
        page, outcome = _connect(rt, client_id, client_secret, state, query, place,
                                 lambda: (remaining_ms() - FINISH_MS) / 1000)
    except Exception:  # maybe after the token was stored: the page, and the state's record, say so
        logger.exception("the OAuth callback stopped midway")
        page, outcome = _stopped(place, 500), oauth.Outcome(int(rt.clock()), stopped=True)
    try:
        rt.store.connections.end_oauth_state(state.binding, state.expires_at, outcome)
    except Exception:  # the page stands; seen again, it says it cannot tell what the link did
        logger.warning("could not record what the OAuth callback did", exc_info=True)
    return page


def _connect(rt: OAuthEdge, client_id: str, client_secret: str, state: oauth.State, query: Mapping[str, str],
             place: Place, left: Callable[[], float]) -> tuple[Page, oauth.Outcome]:
    """The callback, its state spent: its page, and what it did (recorded on the state). `left`: the seconds
    Intercom's calls may still take."""
    nothing = oauth.Outcome(int(rt.clock()))
    code = query.get("code")
    if not code:
        return _refused(place, "Intercom sent no code"), nothing
    try:
        token = rt.intercom_auth().exchange(code, client_id, client_secret, within=left())
    except Deferred as exc:       # its 429: the code was not used, but the state was
        return _refused(place, f"Intercom is limiting calls for now ({exc.reason}): try again "
                               f"{try_again(exc, rt.clock())}", status=503), nothing
    except Permanent as exc:
        return _refused(place, f"Intercom refused the code ({exc.reason})"), nothing
    except NoAnswer as exc:
        return _refused(place, f"Intercom did not answer in time ({exc.reason})", status=504), nothing
    except WorkError as exc:
        said = "failed to give a token for the code" if exc.status else "could not be reached"    # a 5xx: it answered
        return _refused(place, f"Intercom {said} ({exc.reason})", status=502), nothing
    # Without `/me`'s answer the token belongs to no workspace the bridge knows, nor has passed the link's check:
    # it is dropped (never stored, shown or logged). The code is spent; a new link gets a token again.
    try:
        found = oauth.workspace_of(rt.intercom_auth().whoami(token, within=left()))
    except Deferred as exc:
        return _refused(place, f"Intercom gave this bridge access, but is limiting calls for now, so it did not say "
                               f"which workspace it is for ({exc.reason}): that access was not kept; try again "
                               f"{try_again(exc, rt.clock())}", status=503), nothing
    except (WorkError, ValueError) as exc:
        late = isinstance(exc, NoAnswer)
        said = "did not say in time" if late else "would not say"
        return _refused(place, f"Intercom gave this bridge access, but {said} which workspace it is for ({exc}): "
                               "that access was not kept", status=504 if late else 502), nothing
    if not valid_workspace(found.app_id):
        return _refused(place, f"Intercom named a workspace id this bridge cannot keep ({found.app_id[:80]!r})",
                        502), nothing
    if state.workspace and found.app_id != state.workspace:
        return _refused(place, f"you authorized workspace {found.app_id} ({found.name[:80]}), but this link is for "
                               f"workspace {state.workspace} only: sign in to Intercom as an admin of "
                               f"{state.workspace}, with a new link", status=403), nothing
    current = rt.store.connections.workspace(found.app_id)
    api_base = None if current and current.api_base else found.api_base(rt.config.intercom_base_url)
    # The public app's client secret signs this workspace's webhooks now too (a private app's still does, where the workspace has one).
    marks = store_workspace(rt, found.app_id, token, None, api_base, app=PUBLIC, current=current,
                            public=client_secret)
    logger.info("workspace connected by OAuth", extra={"workspace": found.app_id})
    try:
        campaigns = _campaigns(rt, found.app_id)
    except Exception:  # the workspace is connected: the page says so, with the next steps that fit any workspace
        logger.warning("could not read the connected workspace's campaigns", extra={"workspace": found.app_id},
                       exc_info=True)
        campaigns = {}
    return _connected(place, found, current, campaigns, marks), oauth.Outcome(int(rt.clock()), found.app_id, found.name[:200])


def _used(place: Place, outcome: Optional[oauth.Outcome]) -> Page:
    """The callback again, its state spent (a reload, a restored tab: the browser that started, within the
    state's life): what the link did, as its first page said, and nothing done again."""
    if outcome is None:
        return _refused(place, "this sign-in link was already used, by a sign-in that has not finished (or stopped "
                               "midway): reload this page in a moment", known=False)
    if outcome.stopped:
        return _stopped(place, 400, again=True)
    if outcome.workspace is None:
        return _refused(place, "this sign-in link was already used, and nothing came of it: start again")
    when = datetime.fromtimestamp(outcome.at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    name = outcome.name or outcome.workspace
    body = (f'<p class="ok" id="reason">This sign-in link was already used: it connected Intercom workspace '
            f'<strong id="workspace-name">{html.escape(name)}</strong> (app_id <code id="workspace-id">'
            f'{html.escape(outcome.workspace)}</code>) at {when}.</p><p>Nothing more was done. The bridge\'s '
            f'operator sees the workspace with <code>bridge workspace list</code>; to connect another, ask them '
            f'for a new link (<code>{OAUTH_LINK}</code>).</p>')
    logger.info("OAuth callback seen again: its link connected the workspace", extra={"workspace": outcome.workspace})
    return Page(200, _html(f"Connected: {name}", body))


def _campaigns(rt: OAuthEdge, workspace: str) -> dict[str, dict[TopicNeed, tuple[str, ...]]]:
    """The campaigns whose stored settings name the workspace, each with the topics it needs besides TOPICS, by why
    (domain/settings.py, needed_topics). One read per campaign ever applied for it (the edge may GetItem, not
    BatchGetItem); settings that no longer parse count, needing none."""
    found = {}
    for campaign_id in sorted(rt.store.settings.campaigns(workspace), key=lambda c: (len(c), c)):
        stored = rt.store.settings.get(campaign_id)
        if stored is None or stored.workspace != workspace:
            continue                        # deleted, or moved to another workspace
        found[campaign_id] = needed_topics(valid_or_none(stored.document))
    return found


def _codes(topics: tuple[str, ...]) -> str:
    """"<code>a</code>, <code>b</code> and <code>c</code>" (HTML)."""
    shown = [f"<code>{html.escape(t)}</code>" for t in topics]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def _for(what: str, campaigns: list[str], topics: str) -> str:
    """", and, for <what> of campaign(s) <ids>, <topics>" (nothing for no campaign)."""
    return (f", and, for {what} of campaign{'s' if len(campaigns) > 1 else ''} {html.escape(', '.join(campaigns))}, "
            f"{topics}") if campaigns else ""


def _what_it_did(workspace: str, before: Optional[Connection], marks: frozenset[str]) -> str:
    """What the OAuth connect did to a workspace known before (`before`; `marks`: its connection's marks now), as
    the connected page's headline goes on (HTML). Beside a private app it stays connected through, the token the
    worker uses is now this connect's (the most recent connection's: domain/apps.py): said where it was not before."""
    if before is None:
        return ""
    if MARKS[PRIVATE] not in marks or (MARKS[PUBLIC] in before.secrets and before.token_app == PUBLIC):
        return " — reconnected, its settings and links are as they were"
    again = before.status == "disconnected" or MARKS[PUBLIC] in before.secrets
    removal = html.escape(f"bridge workspace remove-app {workspace} {PRIVATE}")
    return (f" — {'reconnected' if again else 'connected'} by OAuth beside its private app, its settings and links as "
            "they were: the bridge calls Intercom with the token this authorization gave from now on, not its private "
            "app's; webhooks signed by either app are accepted (once the private app is removed in Intercom: "
            f"<code>{removal}</code>)")


def _connected(place: Place, found: oauth.Workspace, before: Optional[Connection], campaigns: dict[str, dict[TopicNeed, tuple[str, ...]]],
               marks: frozenset[str]) -> Page:
    """The next steps that fit: the webhook topics (with those ongoing contact sync or a rule's `match: email`
    needs, when a campaign of the workspace has it); settings to write, or the campaigns that already name the
    workspace; the dead letters a disconnect parked (only after one), or those of its campaigns' work that came
    before it was ever connected."""
    ws, name = html.escape(found.app_id), html.escape(found.name)
    hooks = html.escape(place.base + "/webhooks/intercom")
    named = ", ".join(campaigns)
    created = _for("the ongoing contact sync", [c for c, needs in campaigns.items() if "ongoing" in needs],
                   _codes(CREATED_TOPICS)) + \
        _for("the rule's <code>match: email</code>", [c for c, needs in campaigns.items() if "email" in needs],
             _codes(EMAIL_TOPICS))
    settings = "Check that your app's <em>Webhooks</em> settings use" if before else \
        "In your app's <em>Webhooks</em> settings, use"
    steps = [f"""{settings} <code>{hooks}</code> and subscribe to
{", ".join(f"<code>{html.escape(t)}</code>" for t in TOPICS)}{created}."""]
    if campaigns:
        steps.append(f"""Campaign{'s' if len(campaigns) > 1 else ''} {html.escape(named)} already \
name{'' if len(campaigns) > 1 else 's'} this workspace: {'their' if len(campaigns) > 1 else 'its'} settings \
stand, nothing to apply. For another campaign, write its settings with <code>workspace: "{ws}"</code> and apply \
them: <code>bridge settings apply campaign.yaml</code>.""")
    else:
        steps.append(f"""Write the campaign's settings with <code>workspace: "{ws}"</code> and apply them:
<code>bridge settings apply campaign.yaml</code>.""")
    if before is not None and before.status == "disconnected":
        steps.append(f"""Work that came while the workspace was disconnected waits in the dead-letter queue, if \
any (<code>bridge dlq list</code> shows it): bring it back with <code>{html.escape(replay_parked(ws))}</code>.""")
    elif before is None and campaigns:
        unconnected = html.escape(f'bridge dlq replay --reason "workspace {found.app_id} is not connected"')
        steps.append(f"""Work of campaign{'s' if len(campaigns) > 1 else ''} {html.escape(named)} that came before the workspace was connected waits in the \
dead-letter queue, if any (<code>bridge dlq list</code> shows it): bring it back with <code>{unconnected}</code>.""")
    items = "\n".join(f"<li>{step}</li>" for step in steps)
    body = f"""<p class="ok">Connected: Intercom workspace <strong id="workspace-name">{name}</strong>
(app_id <code id="workspace-id">{ws}</code>){_what_it_did(found.app_id, before, marks)}.</p>
<h2>Next steps</h2>
<ol>
{items}
</ol>"""
    # The cookie is left to expire: its state is spent, and a replay in this browser is told so.
    return Page(200, _html(f"Connected: {found.name}", body))


def _stopped(place: Place, status: int, again: bool = False) -> Page:
    """The callback failed after its checks (the token may be stored, the table not, or both): what is
    known, and where the operator looks."""
    reason = (("This sign-in link was already used, and its" if again else "This sign-in link's")
              + " connect stopped midway: it may have connected the workspace, or part of it.")
    body = (f'<p class="error" id="reason">{reason}</p><p>The bridge\'s operator sees what is connected with '
            f'<code>bridge workspace list</code>; to connect the workspace, ask them for a new link '
            f'(<code>{OAUTH_LINK}</code>).</p>')
    return Page(status, _html("Stopped midway", body))


def _refused(place: Place, reason: str, status: int = 400, known: bool = True) -> Page:
    """A page saying why, and that nothing was connected or stored: `known` False where the link may have
    connected a workspace before (its state expired, or seen in another browser, or used by a callback
    that has not said what it did), which this page cannot tell."""
    stored = ("Nothing was connected or stored." if known else
              "This page connected and stored nothing; if this link connected a workspace before, that stands "
              "(the bridge's operator sees it with <code>bridge workspace list</code>).")
    body = (f'<p class="error" id="reason">{html.escape(reason)}.</p><p>{stored} '
            f'To start again, ask the bridge\'s operator for a new link (<code>{OAUTH_LINK}</code>).</p>')
    logger.warning("OAuth callback refused", extra={"reason": reason})
    return Page(status, _html("Not connected", body))


def _page(status: int, title: str, text: str, raw: bool = False) -> Page:
    return Page(status, _html(title, f'<p id="reason">{text if raw else html.escape(text)}</p>'))


def _html(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="referrer" content="no-referrer"><link rel="icon" href="data:,"><title>{html.escape(title)} — RF ↔ Intercom bridge</title>
<style>{STYLE}</style></head>
<body><h1>{html.escape(title)}</h1>
{body}
</body></html>
"""
