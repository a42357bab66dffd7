"""Intercom REST client (API version 2.16). Only what the bridge needs."""
from __future__ import annotations

import re
import time
from typing import Any, Callable, Iterator, Optional, Sequence

from ..domain.mapping import MARKER_ATTRIBUTE
from ..errors import ApiError, Deferred, NoAnswer, Permanent, TokenRefused, Transient, refused_reason
from ..ports.apis import Conflict, Merged, NotFound
from .http import JsonApi, asked_wait, without

__all__ = ["IntercomClient", "Conflict", "Merged", "NotFound"]

VERSION = "2.16"
_CONFLICT_ID = re.compile(r"id=([A-Za-z0-9_-]+)")
_CANONICAL = re.compile(r"</contacts/([^>]+)>\s*;\s*rel=\"?canonical\"?")
IN_VALUES = 15        # values in one IN filter
GROUP_FILTERS = 15    # filters in one AND/OR group
PER_PAGE = 150        # contacts in one page of search results (the API's maximum)
MAX_PAGES = 20        # pages read of one search (3,000 contacts)
TAG_USERS = 50        # contacts tagged in one POST /tags
# Every contact search's order: by a field no update changes. Intercom's cursor is stateless and its default
# order (descending, by a field the API does not name) may move a contact written while a walk pages on
# (the sync's own write-backs, anyone's edits) across the cursor: read twice, or never.
OLDEST_FIRST = {"field": "created_at", "order": "ascending"}


class IntercomClient(JsonApi):
    service = "Intercom"
    # POSTs that may be sent twice (adapters/http.py): a search reads; a tag is created or found.
    IDEMPOTENT = (("POST", "/contacts/search"), ("POST", "/tags"), ("POST", "/contacts/[^/]+/tags"))

    def __init__(self, base_url: str, token: str, workspace: Optional[str] = None, token_app: Optional[str] = None,
                 **kw):
        """`workspace`: whose token it is, named in a refusal of it; `token_app`: the app it is of, if known."""
        super().__init__(base_url, {"Intercom-Version": VERSION}, token=token, **kw)
        self.workspace, self.token_app = workspace, token_app

    def message(self, body: Any) -> str:
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            return "; ".join(str(e.get("message") or e.get("code")) for e in errors)
        return super().message(body)

    def code(self, body: Any) -> str:
        errors = body.get("errors") if isinstance(body, dict) else None
        return str(errors[0].get("code", "")) if errors else ""

    def _call(self, method: str, path: str, gone: Optional[str] = None, **kw) -> Any:
        """`gone`: what a 404 or 410 says is gone (NotFound of it); otherwise they are failures like any other."""
        try:
            return self.call(method, path, **kw)
        except ApiError as exc:
            if gone is not None and exc.status in (404, 410):
                raise NotFound(gone) from None
            raise self._classify(exc) from None

    def _classify(self, exc: ApiError) -> Exception:
        if exc.retryable:
            return self.retry_later(exc)
        if exc.status == 401:
            # The token was read again before this: a reconnected one was already tried. No workspace: a token
            # checked before it is stored (`workspace connect`, `make run`): its caller says what to do, and no
            # work failed with it (a worker's client always knows its workspace: TokenRefused, below).
            if not self.workspace:
                return Permanent(f"{exc.reason} — the token is invalid or revoked", status=401, message=exc.message,
                                 body=exc.body)
            return TokenRefused(refused_reason(exc.reason, self.workspace), self.workspace, self.token_app, exc.reason,
                                status=401, message=exc.message, body=exc.body)
        return Permanent(exc.reason, status=exc.status, message=exc.message, body=exc.body)

    # --- contacts -------------------------------------------------------------------------
    def search_by_email(self, email: str) -> list[dict]:
        return self.search([email])

    def search(self, emails: Sequence[str] = (), markers: Sequence[str] = ()) -> list[dict]:
        filters = [{"field": field, "operator": "IN", "value": chunk}
                   for field, values in (("email", sorted({e.lower() for e in emails})),
                                         (MARKER_ATTRIBUTE, sorted(set(markers))))
                   for chunk in _chunks(values, IN_VALUES)]
        found: dict[str, dict] = {}
        for group in _chunks(filters, GROUP_FILTERS):
            query = group[0] if len(group) == 1 else {"operator": "OR", "value": group}
            for contact in self._pages("/contacts/search", query):
                found.setdefault(str(contact.get("id")), contact)
        return list(found.values())

    def _pages(self, path: str, query: dict) -> Iterator[dict]:
        pagination: dict[str, Any] = {"per_page": PER_PAGE}
        for _ in range(MAX_PAGES):
            answer = self._call("POST", path, json_body={"query": query, "sort": OLDEST_FIRST,
                                                         "pagination": pagination}) or {}
            yield from answer.get("data", [])
            after = ((answer.get("pages") or {}).get("next") or {}).get("starting_after")
            if not after:
                return
            pagination = {"per_page": PER_PAGE, "starting_after": after}

    def search_contacts(self, query: dict, starting_after: Optional[str] = None,
                        per_page: int = 150) -> tuple[list[dict], Optional[str]]:
        contacts, following, _ = self.search_page(query, starting_after, per_page)
        return contacts, following

    def search_page(self, query: dict, starting_after: Optional[str] = None,
                    per_page: int = 150) -> tuple[list[dict], Optional[str], Optional[int]]:
        paging: dict[str, Any] = {"per_page": per_page}
        if starting_after:
            paging["starting_after"] = starting_after
        answer = self._call("POST", "/contacts/search", json_body={"query": query, "sort": OLDEST_FIRST,
                                                                   "pagination": paging}) or {}
        following = (answer.get("pages") or {}).get("next") or {}
        total = answer.get("total_count")
        return (answer.get("data", []), following.get("starting_after") or None,
                total if isinstance(total, int) else None)

    def create_contact(self, body: dict) -> dict:
        try:
            return self.call("POST", "/contacts", json_body=body)
        except ApiError as exc:
            if exc.status == 409:
                match = _CONFLICT_ID.search(exc.message)
                raise Conflict(match.group(1) if match else None, exc.message,
                               archived="archived contact" in exc.message.lower()) from None
            raise self._classify(exc) from None

    def update_contact(self, contact_id: str, body: dict) -> dict:
        return self._call("PUT", f"/contacts/{contact_id}", json_body=body)

    def get_contact(self, contact_id: str) -> dict:
        try:
            return self.call("GET", f"/contacts/{contact_id}")
        except ApiError as exc:
            if exc.status == 410 or exc.code == "contact_merged":
                match = _CANONICAL.search(exc.headers.get("Link", "") or exc.headers.get("link", ""))
                raise Merged(match.group(1) if match else None) from None
            if exc.status == 404:
                raise NotFound(contact_id) from None
            raise self._classify(exc) from None

    def merge_contacts(self, lead_id: str, into_id: str) -> dict:
        return self._call("POST", "/contacts/merge", json_body={"from": lead_id, "into": into_id})

    def data_attributes(self) -> dict[str, dict]:
        """full_name -> attribute, for contacts."""
        # archived ones too: a mapped attribute archived in Intercom is then said archived, not missing ("create it")
        answer = self._call("GET", "/data_attributes", params={"model": "contact", "include_archived": "true"}) or {}
        return {a.get("full_name") or a.get("name"): a for a in answer.get("data", [])}

    def me(self) -> dict:
        """GET /me: the admin the token belongs to; `app.id_code` is its workspace."""
        return self._call("GET", "/me") or {}

    def create_data_attribute(self, name: str, data_type: str, description: str) -> dict:
        return self._call("POST", "/data_attributes", json_body={
            "name": name, "model": "contact", "data_type": data_type, "description": description})

    def tag_contacts(self, contact_ids: Sequence[str], tag_name: str) -> None:
        """`POST /tags` with the list of users: the tag is found (or created) by its name and applied
        to every contact in one call (no tag id to learn first)."""
        for chunk in _chunks(list(dict.fromkeys(contact_ids)), TAG_USERS):
            # One of them gone (merged, deleted, archived): none is tagged. Intercom's OpenAPI names no answer for
            # it; its GET of a merged contact answers 410, so a 410 here is taken as the 404 is.
            self._call("POST", "/tags", gone=",".join(chunk),
                       json_body={"name": tag_name, "users": [{"id": i} for i in chunk]})

    def segments(self) -> list[dict]:
        """Every segment (Intercom answers all at once today; a `pages.next` is followed if it comes)."""
        out: list[dict] = []
        params: Optional[dict] = {}
        seen: set[str] = set()
        while params is not None:
            answer = self._call("GET", "/segments", params=params or None) or {}
            out += [s for s in answer.get("segments") or [] if isinstance(s, dict)]
            following = (answer.get("pages") or {}).get("next") if isinstance(answer.get("pages"), dict) else None
            cursor = following.get("starting_after") if isinstance(following, dict) else None
            params = {"starting_after": cursor} if cursor and cursor not in seen else None
            seen.add(cursor or "")
        return out


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class IntercomAuthClient:
    """Token questions (ports.apis.IntercomAuth). One call each, outside the shared limiter: a connect
    is one person's click, and the workspace is not known before `/me` answers."""

    def __init__(self, base_url: str, timeout: float = 10.0, clock: Callable[[], float] = time.time, **http: Any):
        """`http`: what else a client of the API is given besides its token (sleeper, max_wait: JsonApi)."""
        self.base_url, self.timeout, self.clock, self.http = base_url.rstrip("/"), timeout, clock, http

    def exchange(self, code: str, client_id: str, client_secret: str, within: Optional[float] = None) -> str:
        # Never retried: a code is single-use, and an answer lost after Intercom used it cannot be asked again.
        body = self._once("POST", f"{self.base_url}/auth/eagle/token", within, headers={"Accept": "application/json"},
                          data={"code": code, "client_id": client_id, "client_secret": client_secret},
                          secrets=(client_secret,))
        token = (body.get("access_token") or body.get("token")) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise Permanent("Intercom's token answer held no access token")
        return token

    def whoami(self, token: str, api_base: Optional[str] = None, within: Optional[float] = None) -> dict:
        base = (api_base or self.base_url).rstrip("/")
        if within is None:      # retried as any GET
            me = IntercomClient(base, token, timeout=self.timeout, clock=self.clock, **self.http)._call("GET", "/me")
        else:                   # one try, in the time the caller has
            me = self._once("GET", f"{base}/me", within, headers={
                "Accept": "application/json", "Intercom-Version": VERSION, "Authorization": f"Bearer {token}"},
                secrets=(token,))
        return me if isinstance(me, dict) else {}

    def _once(self, method: str, url: str, within: Optional[float], secrets: Sequence[str] = (), **kw: Any) -> Any:
        """One request, never retried: its JSON answer. Connecting and reading each get the client's timeout,
        and together at most `within` seconds when it is given (a quarter of it to connect, which takes
        milliseconds when Intercom is up). A refusal that quotes one of the `secrets` it was sent says ***."""
        import requests

        if within is not None and within <= 0:
            raise NoAnswer("no time was left to ask Intercom")
        connect = self.timeout if within is None else min(self.timeout, within / 4)
        read = self.timeout if within is None else min(self.timeout, within - connect)
        try:
            resp = requests.request(method, url, timeout=(connect, read), allow_redirects=False, **kw)
        except requests.ConnectTimeout:
            raise NoAnswer(f"no connection to Intercom within {connect:.3g} s") from None
        except requests.Timeout:
            raise NoAnswer(f"no answer from Intercom within {read:.3g} s") from None
        except requests.RequestException as exc:
            raise Transient(f"Intercom unreachable ({type(exc).__name__})") from None
        body = _json_or_none(resp)
        if resp.status_code >= 400:
            errors = body.get("errors") if isinstance(body, dict) else None
            message = "; ".join(str(e.get("message") or e.get("code")) for e in errors if isinstance(e, dict)) \
                if isinstance(errors, list) else ""
            reason = f"Intercom answered {resp.status_code}: {message or resp.reason}"
            for secret in secrets:
                reason = without(reason, secret)
            if resp.status_code == 429:      # not applied: it asks to wait (never waited here: one try)
                raise Deferred(reason, retry_after=asked_wait(resp.headers, 429, self.clock()), status=429)
            raise (Transient if resp.status_code >= 500 else Permanent)(reason, status=resp.status_code)
        return body


def _json_or_none(resp) -> Any:
    try:
        return resp.json() if resp.content else None
    except ValueError:
        return None
