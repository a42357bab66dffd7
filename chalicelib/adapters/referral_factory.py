"""Referral Factory REST client (API v2). Only what the bridge needs."""
from __future__ import annotations

from typing import Any, Optional

from ..errors import ApiError, Permanent
from ..ports.apis import Refused
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
                                "the dead-letter queue", status=401, message=exc.message) from None
            raise Permanent(exc.reason, status=exc.status, message=exc.message, body=exc.body) from None

    @staticmethod
    def _data(answer: Any) -> dict:
        if isinstance(answer, dict) and isinstance(answer.get("data"), dict):
            return answer["data"]
        return answer or {}

    def get_user(self, user_id: str) -> dict:
        return self._data(self._call("GET", f"/users/{user_id}"))

    def get_campaign(self, campaign_id: str) -> dict:
        return self._data(self._call("GET", f"/campaigns/{campaign_id}"))

    def check_token(self) -> None:
        """Asks for the account's campaigns (GET /campaigns, its first page), a question that needs
        only the token, as `bridge rf connect` does before it stores one: Permanent when RF refuses
        it, or when what answers is not RF's API."""
        answer = self._call("GET", "/campaigns")
        if not isinstance(answer.get("data") if isinstance(answer, dict) else None, list):
            # a 200 that is not RF's API (a web page: a wrong RF_BASE_URL)
            raise Permanent(f"the answer at {self.base_url}/campaigns is not Referral Factory's API (no `data` "
                            "list): check RF_BASE_URL")

    def qualify(self, user_id: str) -> dict:
        ident: int | str = int(user_id) if str(user_id).isdigit() else user_id
        return self._data(self._call("PUT", "/users/qualification", json_body={"id": ident, "qualified": True}))

    def create_user(self, body: dict) -> dict:
        try:
            return self._data(self._call("POST", "/users", json_body=body))
        except Permanent as exc:
            if exc.status not in (400, 404, 409, 422):      # (RF's answer: its status, message and body)
                raise
            fields = {}
            errors = exc.body.get("errors") if isinstance(exc.body, dict) else None
            if isinstance(errors, dict):
                for name, items in errors.items():
                    first = items[0] if isinstance(items, list) and items else items
                    fields[str(name)] = str(first.get("message", "") if isinstance(first, dict) else first)
            raise Refused(exc.status, str(exc.body.get("message") or exc.message) if isinstance(exc.body, dict)
                          else str(exc.message), fields) from None

    def users_page(self, campaign_id: str, page: int = 1, per_page: int = 250) -> tuple[list[dict], bool, Optional[int]]:
        """One page of a campaign's people (GET /users?campaign_id=...&page=...), whether another
        follows, and how many there are in all (when RF says)."""
        answer = self._call("GET", "/users", params={"campaign_id": campaign_id, "page": page, "per_page": per_page})
        answer = answer if isinstance(answer, dict) else {}
        data: list = answer["data"] if isinstance(answer.get("data"), list) else []
        links: dict = answer["links"] if isinstance(answer.get("links"), dict) else {}
        meta: dict = answer["meta"] if isinstance(answer.get("meta"), dict) else {}
        total = meta.get("total") if isinstance(meta.get("total"), int) else None
        return [u for u in data if isinstance(u, dict)], bool(links.get("next")), total
