"""Referral Factory REST client (API v2). Only what the bridge needs."""
from __future__ import annotations

from typing import Any

from ..errors import ApiError, Permanent
from ..observability import count
from .http import JsonApi
from .ratelimit import CircuitOpen


class ReferralFactoryClient(JsonApi):
    service = "Referral Factory"
    # A qualification is a reward: never sent twice without asking RF first (errors.Uncertain).
    NOT_IDEMPOTENT = (("PUT", "/users/qualification"),)

    def __init__(self, base_url: str, token: str, **kw):
        super().__init__(base_url, {}, token=token, **kw)

    def message(self, body: Any) -> str:
        if not isinstance(body, dict):
            return ""
        text = str(body.get("message", ""))
        errors = body.get("errors")
        if isinstance(errors, dict):
            details = [e.get("message", "") if isinstance(e, dict) else str(e)
                       for items in errors.values() for e in (items if isinstance(items, list) else [items])]
            text = "; ".join([text] + [d for d in details if d]) if details else text
        return text

    def _call(self, method: str, path: str, **kw) -> Any:
        try:
            return self.call(method, path, **kw)
        except CircuitOpen:
            count("RFBlocked")              # the alarm: RF blocked us, and the work waits in the queue
            raise
        except ApiError as exc:
            if exc.retryable:
                raise self.retry_later(exc) from None
            if exc.status == 401:
                raise Permanent(f"{exc.reason} — the RF token is invalid: run `bridge rf connect`, then replay "
                                "the dead-letter queue") from None
            raise Permanent(exc.reason) from None

    @staticmethod
    def _data(answer: Any) -> dict:
        if isinstance(answer, dict) and isinstance(answer.get("data"), dict):
            return answer["data"]
        return answer or {}

    def get_user(self, user_id: str) -> dict:
        return self._data(self._call("GET", f"/users/{user_id}"))

    def get_campaign(self, campaign_id: str) -> dict:
        return self._data(self._call("GET", f"/campaigns/{campaign_id}"))

    def qualify(self, user_id: str) -> dict:
        ident: int | str = int(user_id) if str(user_id).isdigit() else user_id
        return self._data(self._call("PUT", "/users/qualification", json_body={"id": ident, "qualified": True}))
