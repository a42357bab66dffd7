"""Referral Factory REST client (API v2). Only what the bridge needs."""
from __future__ import annotations

from typing import Any, Optional
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

from ..domain.advice import rf_token_reason
from ..domain.people import of_campaign
from ..errors import ApiError, Permanent
from ..ports.apis import PeoplePage, Refused
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
                raise Permanent(rf_token_reason(exc.reason), status=401, message=exc.message) from None
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

    def users_page(self, campaign_id: str, after: Optional[str] = None, per_page: int = 250) -> PeoplePage:
        """`GET /users?per_page=...` (asking for `campaign_id` too), or the page RF's `links.next` named
        (`after`), followed as RF gave it — a page number or a cursor alike — with the campaign and page
        size of the first where the link leaves them out, and only on RF's API base (RF_BASE_URL: the token
        goes nowhere else). The campaign's people only, by their own campaign_id (RF may list every
        campaign's); their campaign is never taken from what was asked."""
        if after is None:
            answer = self._call("GET", "/users", params={"campaign_id": campaign_id, "per_page": per_page})
        else:
            answer = self._call("GET", self._on_base(after, {"campaign_id": campaign_id, "per_page": per_page}))
        answer = answer if isinstance(answer, dict) else {}
        data = [u for u in answer["data"] if isinstance(u, dict)] if isinstance(answer.get("data"), list) else []
        links: dict = answer["links"] if isinstance(answer.get("links"), dict) else {}
        meta: dict = answer["meta"] if isinstance(answer.get("meta"), dict) else {}
        total = meta.get("total") if isinstance(meta.get("total"), int) else None
        following = links.get("next") if isinstance(links.get("next"), str) and links["next"] else None
        return PeoplePage([u for u in data if of_campaign(u, campaign_id)], following, total, len(data))

    def _on_base(self, link: str, asked: dict) -> str:
        """The path (under the API base) of a link RF gave, with what `asked` names that the link does not
        (a Laravel link may carry only its page or cursor). A link elsewhere is refused, not followed."""
        base = urlsplit(self.base_url)
        where = urlsplit(urljoin(self.base_url + "/", link))
        if (where.scheme, where.netloc.lower()) != (base.scheme, base.netloc.lower()) or \
                not where.path.startswith(base.path + "/") or ".." in where.path.split("/"):
            raise Permanent(f"Referral Factory's link to its next page of people ({link}) is not on its API base "
                            f"{self.base_url}: not followed (the token goes only there) — if that address is "
                            "Referral Factory's API, set RF_BASE_URL to it")
        query = parse_qsl(where.query, keep_blank_values=True)
        query += [(k, str(v)) for k, v in asked.items() if k not in {name for name, _ in query}]
        return where.path[len(base.path):] + "?" + urlencode(query)
