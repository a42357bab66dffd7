"""Intercom REST client (API version 2.16). Only what the bridge needs."""
from __future__ import annotations

import re
from typing import Any

from ..errors import ApiError, Permanent, Transient
from ..ports.apis import Conflict, Merged, NotFound
from .http import JsonApi

__all__ = ["IntercomClient", "Conflict", "Merged", "NotFound"]

VERSION = "2.16"
_CONFLICT_ID = re.compile(r"id=([A-Za-z0-9_-]+)")
_CANONICAL = re.compile(r"</contacts/([^>]+)>\s*;\s*rel=\"?canonical\"?")


class IntercomClient(JsonApi):
    service = "Intercom"

    def __init__(self, base_url: str, token: str, **kw):
        super().__init__(base_url, {"Intercom-Version": VERSION}, token=token, **kw)

    def message(self, body: Any) -> str:
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            return "; ".join(str(e.get("message") or e.get("code")) for e in errors)
        return super().message(body)

    def code(self, body: Any) -> str:
        errors = body.get("errors") if isinstance(body, dict) else None
        return str(errors[0].get("code", "")) if errors else ""

    def _call(self, method: str, path: str, **kw) -> Any:
        try:
            return self.call(method, path, **kw)
        except ApiError as exc:
            raise self._classify(exc) from None

    def _classify(self, exc: ApiError) -> Exception:
        if exc.retryable:
            return Transient(exc.reason, retry_after=exc.retry_after)
        if exc.status == 401:
            # The token was read again before this: a reconnected one was already tried.
            return Permanent(f"{exc.reason} — the workspace token is invalid or revoked: reconnect the "
                             "workspace, then replay the dead-letter queue")
        return Permanent(exc.reason)

    # --- contacts -------------------------------------------------------------------------
    def search_by_email(self, email: str) -> list[dict]:
        body = {"query": {"field": "email", "operator": "=", "value": email}, "pagination": {"per_page": 50}}
        return (self._call("POST", "/contacts/search", json_body=body) or {}).get("data", [])

    def create_contact(self, body: dict) -> dict:
        try:
            return self.call("POST", "/contacts", json_body=body)
        except ApiError as exc:
            if exc.status == 409:
                match = _CONFLICT_ID.search(exc.message)
                raise Conflict(match.group(1) if match else None, exc.message) from None
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

    def data_attributes(self) -> dict[str, dict]:
        """full_name -> attribute, for contacts."""
        answer = self._call("GET", "/data_attributes", params={"model": "contact"}) or {}
        return {a.get("full_name") or a.get("name"): a for a in answer.get("data", [])}

    def tag_contact(self, contact_id: str, tag_name: str) -> str:
        tag = self._call("POST", "/tags", json_body={"name": tag_name})
        self._call("POST", f"/contacts/{contact_id}/tags", json_body={"id": str(tag["id"])})
        return str(tag["id"])


class IntercomAuthClient:
    """Token questions (ports.apis.IntercomAuth). One call each, outside the shared limiter: a connect
    is one person's click, and the workspace is not known before `/me` answers."""

    def __init__(self, base_url: str, timeout: float = 10.0):
        self.base_url, self.timeout = base_url.rstrip("/"), timeout

    def exchange(self, code: str, client_id: str, client_secret: str) -> str:
        import requests

        # Never retried: a code is single-use, and an answer lost after Intercom used it cannot be asked again.
        try:
            resp = requests.post(f"{self.base_url}/auth/eagle/token", timeout=self.timeout,
                                 data={"code": code, "client_id": client_id, "client_secret": client_secret},
                                 headers={"Accept": "application/json"}, allow_redirects=False)
        except requests.RequestException as exc:
            raise Transient(f"Intercom unreachable ({type(exc).__name__})") from None
        body = _json_or_none(resp)
        if resp.status_code >= 400:
            errors = body.get("errors") if isinstance(body, dict) else None
            message = "; ".join(str(e.get("message") or e.get("code")) for e in errors if isinstance(e, dict)) \
                if isinstance(errors, list) else ""
            reason = f"Intercom answered {resp.status_code}: {message or resp.reason}"
            raise (Transient if resp.status_code >= 500 else Permanent)(reason)
        token = (body.get("access_token") or body.get("token")) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise Permanent("Intercom's token answer held no access token")
        return token

    def whoami(self, token: str, api_base: str | None = None) -> dict:
        client = IntercomClient(api_base or self.base_url, token, timeout=self.timeout)
        me = client._call("GET", "/me")
        return me if isinstance(me, dict) else {}


def _json_or_none(resp) -> Any:
    try:
        return resp.json() if resp.content else None
    except ValueError:
        return None
