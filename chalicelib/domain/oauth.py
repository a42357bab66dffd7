"""Intercom OAuth, the pure part: the `state` that ties a callback to a start, and what Intercom's
`GET /me` says about the workspace a token belongs to. No I/O: keys, clocks and answers are given.

The start itself is opened only with a ticket the operator minted (`bridge workspace oauth-link`): a
random 128-bit id, kept in the table until it is spent (once) or expires, that may name the one
workspace the operator expects.

The state is `<binding>.<expires>.<workspace>.<signature>`: the binding, the unix second it expires,
the workspace the ticket named (empty: any), and HMAC-SHA256 of them under a key kept in the secret
store. It is checked in constant time. It is bound to the browser that started: the start sets a
cookie holding a random secret, and the binding is the secret's SHA-256, so whoever sees the state
(it is in the callback URL: history, a proxy's log) cannot make the cookie. It is single-use because
the callback consumes its binding with a conditional write (the store's job). The spent state then
records what its callback did (`Outcome`): that page seen again (a reload, a restored tab) in the
browser that started says what the link did, where a refusal would say nothing was."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlencode, urlsplit

STATE_SECONDS = 600                        # from the start to the callback: the admin reads, then clicks
TICKET_SECONDS = 1800                      # from `bridge workspace oauth-link` to the start: the link is sent, opened
COOKIE = "bridge_oauth"
_RANDOM = re.compile(r"^[A-Za-z0-9_-]{16,64}\Z")   # a browser secret, a binding
_TICKET = re.compile(r"^[A-Za-z0-9_-]{22}\Z")         # new_ticket's shape: 16 random bytes, base64url
_WORKSPACE = re.compile(r"^[A-Za-z0-9_-]{0,64}\Z")      # an app_id (ports/secrets.valid_workspace), or none
_SIGNATURE = re.compile(r"^[A-Za-z0-9_-]{43}\Z")        # _sign's: HMAC-SHA256, base64url without padding
REGIONS = {"EU": "https://api.eu.intercom.io", "AU": "https://api.au.intercom.io"}
DEFAULT_API = "https://api.intercom.io"


class StateError(Exception):
    """Why a callback's state is refused: `reason` is shown to the admin (no secret in it). `issued`: the
    state is one this bridge signed (it expired), so its link may have been used before."""

    def __init__(self, reason: str, issued: bool = False):
        super().__init__(reason)
        self.reason, self.issued = reason, issued


def new_browser_secret() -> str:
    """What the start puts in the admin's browser cookie, and nowhere else: 256 random bits."""
    return secrets.token_urlsafe(32)


def binding(browser_secret: str) -> str:
    """What the state carries of the browser's secret (its SHA-256), and the state's id, spent once."""
    return base64.urlsafe_b64encode(hashlib.sha256(browser_secret.encode()).digest()).decode().rstrip("=")


def new_ticket() -> str:
    """A start ticket's id: 128 random bits."""
    return secrets.token_urlsafe(16)


def ticket_shape(ticket: str) -> bool:
    """Whether a start link's ticket has new_ticket's shape (anything else is not looked up)."""
    return bool(_TICKET.match(ticket))


def new_key() -> str:
    return secrets.token_urlsafe(32)


def _sign(key: str, payload: str) -> str:
    digest = hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def make_state(key: str, bound: str, now: float, seconds: int = STATE_SECONDS, workspace: Optional[str] = None) -> str:
    payload = f"{bound}.{int(now) + seconds}.{workspace or ''}"
    return f"{payload}.{_sign(key, payload)}"


@dataclass(frozen=True)
class State:
    binding: str                          # binding(the secret in the starting browser's cookie)
    expires_at: int
    workspace: Optional[str] = None       # the one workspace the operator's link allows (None: any)


def read_state(key: str, state: Optional[str], now: float) -> State:
    """The state's binding and expiry, or StateError: missing, not ours (forged or altered, or signed with a key
    since rotated: `bridge workspace oauth-app --rotate-state-key`), expired."""
    if not state:
        raise StateError("the link has no state: start again from a new start link")
    parts = state.split(".")
    if (len(parts) != 4 or not _RANDOM.match(parts[0]) or not parts[1].isdigit() or not _WORKSPACE.match(parts[2])
            or not _SIGNATURE.match(parts[3]) or len(state) > 300):
        raise StateError("the state is not one this bridge issued (forged or altered): start again")
    payload, signature = ".".join(parts[:3]), parts[3]
    if not hmac.compare_digest(_sign(key, payload).encode(), signature.encode()):
        raise StateError("the state is not one this bridge issued (forged or altered), or its signing key was "
                         "replaced since: start again")
    expires_at = int(parts[1])
    if now >= expires_at:
        raise StateError(f"the sign-in took longer than {STATE_SECONDS // 60} minutes and expired: start again",
                         issued=True)
    return State(parts[0], expires_at, parts[2] or None)


@dataclass(frozen=True)
class Outcome:
    """What the callback that spent a state did, recorded on the spent state: connected `workspace` (named
    `name`) at `at` (unix seconds), or nothing at all (`workspace` None: it refused, having stored nothing),
    or, `stopped`, it failed midway (what it stored, if anything, is not known)."""

    at: int
    workspace: Optional[str] = None
    name: Optional[str] = None
    stopped: bool = False


#: The error codes OAuth defines for an authorize page's refusal (RFC 6749, 4.1.2.1): all a page names of a
#: callback URL whose state is not known good (anyone can make one, with words of their own in it).
ERRORS = frozenset({"access_denied", "invalid_request", "unauthorized_client", "unsupported_response_type",
                    "invalid_scope", "server_error", "temporarily_unavailable"})


def denial(error: str, detail: str, verified: bool) -> str:
    """What a page says of Intercom's refusal in a callback's `error` and `error_description` ('' for none).
    Its words (`detail`, a code OAuth does not define) are said only when `verified`, the state this bridge's
    and the browser the one that started: else they may be anyone's, shown on the bridge's page as Intercom's."""
    if not error:
        return ""
    said = error[:80] + (f": {detail[:200]}" if detail else "") if verified else error if error in ERRORS else ""
    return f"Intercom did not authorize the app{f' ({said})' if said else ''}"


LOCAL_HOSTS = ("localhost", "127.0.0.1")


def safe_url(url: str) -> bool:
    """An https:// URL with a host, or plain http:// to this machine only (local runs): what a token or a
    sign-in may be sent to. The host itself is compared (`http://localhost.evil.example` is not local)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:                     # e.g. an unclosed [IPv6 bracket
        return False
    return bool(host) and (parts.scheme == "https" or (parts.scheme == "http" and host in LOCAL_HOSTS))


def authorize_url(base: str, client_id: str, state: str, redirect_uri: str) -> str:
    return f"{base}?{urlencode({'client_id': client_id, 'state': state, 'redirect_uri': redirect_uri})}"


def cookie_name(bound: str) -> str:
    """The name of the cookie that holds the secret of the state bound to it: one per start, so that a
    second link continued in the same browser (another tab) does not replace the first one's secret."""
    return f"{COOKIE}_{bound[:16]}"


def cookie_secret(cookie_header: Optional[str], name: str) -> Optional[str]:
    """The secret our start put in the browser's cookie `name`, if any."""
    for part in (cookie_header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and _RANDOM.match(value):
            return value
    return None


def same_browser(cookie_header: Optional[str], state: State) -> bool:
    """Whether the request comes from the browser that started (its cookie's secret is the state's
    binding's), compared in constant time."""
    secret = cookie_secret(cookie_header, cookie_name(state.binding))
    return secret is not None and hmac.compare_digest(binding(secret).encode(), state.binding.encode())


@dataclass(frozen=True)
class Workspace:
    """Who a token belongs to, from `GET /me`."""

    app_id: str
    name: str
    region: Optional[str]

    def api_base(self, default: str) -> Optional[str]:
        """The regional API base when the token was checked on Intercom's default (US) one and the
        workspace lives elsewhere; else None (keep what is configured)."""
        if default.rstrip("/") != DEFAULT_API:
            return None
        return REGIONS.get((self.region or "").upper())


def workspace_of(me: Any) -> Workspace:
    """Read `GET /me`'s answer (an admin with its app). ValueError when it names no workspace."""
    app = me.get("app") if isinstance(me, dict) else None
    app_id = app.get("id_code") if isinstance(app, dict) else None
    if not isinstance(app_id, str) or not app_id:
        raise ValueError("Intercom's /me named no workspace (app.id_code)")
    assert isinstance(app, dict)
    name = app.get("name")
    region = app.get("region")
    return Workspace(app_id, name if isinstance(name, str) and name else app_id,
                     region if isinstance(region, str) else None)
