"""Stateful local simulator of the Referral Factory API v2 (``sim.base_url`` ends in ``/api/v2``).

Answer shapes (Laravel style, as the real API):

* single object: ``{"data": {...}}`` (``POST /users`` answers 201, the rest 200);
* list: ``{"data": [...], "links": {"first", "last", "prev", "next"} (URLs or null),
  "meta": {"current_page", "from", "last_page", "path", "per_page", "to", "total"}}``,
  paged with ``?page=`` (1-based) and ``?per_page=`` (default 25, max 250);
* ``GET /users`` lists the campaign ``?campaign_id=`` names. The documentation gives neither that filter
  nor ``page`` (only ``per_page`` and the next page in ``links.next``), so two switches make it behave the
  other way: ``sim.campaign_filter = False`` lists every campaign's people whatever ``campaign_id`` says;
  ``sim.cursor_links = True`` pages it by an opaque cursor (Laravel's cursor paginator): ``page`` is
  ignored, ``links.next`` is ``/users?cursor=<opaque>`` and carries nothing else (no ``campaign_id``, no
  ``per_page``), ``links.first``/``last``/``prev`` are null and ``meta`` is ``{"path", "per_page",
  "next_cursor", "prev_cursor"}`` (no total);
* errors: ``{"code": <status>, "message": "..."}``; validation errors are 422 with
  ``"message": "The given data was invalid.", "errors": {field: [{"field", "message"}]}``.

Rate limit: ``sim.rate_limit`` calls (default 600) per fixed 60 s window of the injected clock;
over it 429 with ``Retry-After``. Every window in which the limit was exceeded is recorded in
``sim.excess_windows``; after more than 3 of them ``sim.blocked`` becomes True and every request
answers 403 ``IP blocked`` (the documented real danger: tests should assert it never happens).

Qualification: every ``PUT /users/qualification`` (also refused, faulted or rate-limited ones)
is appended to ``sim.qualification_calls`` as ``{"body", "status"}``; actual state changes go to
``sim.qualified`` (user id -> qualified_at, None after ``qualified: false``) and to
``sim.qualification_events`` (list of ``(user_id, qualified_at)``).
"""
from __future__ import annotations

import base64
import itertools
import json
import math
import random
import re
import string
import time
from datetime import datetime, timezone
from urllib.parse import urlencode

from .base import SimServer, clone

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
INVALID = "The given data was invalid."


def default_fields():
    base = [{"id": "first_name", "type": "text", "label": "First name", "required": True},
            {"id": "email", "type": "email", "label": "Email", "required": True}]
    return {"person_referring": clone(base), "person_invited": clone(base)}


class RFSim(SimServer):
    url_prefix = "/api/v2"
    window_seconds = 60
    default_rate_limit = 600
    token_prefix = "rf-token"
    ROUTES = [
        ("PUT", r"/users/qualification", "_qualify"),
        ("POST", r"/users", "_create_user"),
        ("GET", r"/users", "_list_users"),
        ("GET", r"/users/(?P<key>[^/]+)", "_get_user"),
        ("PUT", r"/users/(?P<key>\d+)", "_update_user"),
        ("GET", r"/campaigns", "_list_campaigns"),
        ("GET", r"/campaigns/(?P<key>[^/]+)", "_get_campaign"),
    ]

    def __init__(self, token="rf-token", clock=time.time, validator=None):
        super().__init__(clock=clock, validator=validator)
        self.token = token
        self.campaigns: dict[str, dict] = {}   # str(id) -> campaign object
        self.user_limits: dict[str, int | None] = {}
        self.users: dict[int, dict] = {}
        self.blocked = False
        self.campaign_filter = True      # GET /users honours ?campaign_id= (False: lists every campaign's)
        self.cursor_links = False        # GET /users pages by an opaque cursor in links.next, not by ?page=
        self.excess_windows: list[float] = []
        self.qualification_calls: list[dict] = []
        self.qualified: dict[int, str | None] = {}
        self.qualification_events: list[tuple] = []
        self._ids = itertools.count(1001)
        self._rng = random.Random()

    # ---- admin helpers ------------------------------------------------------------------
    def add_campaign(self, id, name, fields=None, status="launched", user_limit=None):
        with self.lock:
            code = "".join(self._rng.choices(string.ascii_uppercase + string.digits, k=6))
            self.campaigns[str(id)] = {"id": id, "name": name, "code": code, "status": status,
                                       "fields": clone(fields) or default_fields()}
            self.user_limits[str(id)] = user_limit
            return clone(self.campaigns[str(id)])

    def add_user(self, campaign_id, email, first_name, referrer_id=None, meta=None, source=None):
        with self.lock:
            return clone(self._insert(campaign_id, email, first_name, referrer_id,
                                              meta, source))

    def get_user(self, key):
        with self.lock:
            return clone(self._user(key))

    def users_by_email(self, email, campaign_id=None):
        with self.lock:
            return [clone(u) for u in self.users.values()
                    if u["email"].lower() == email.lower()
                    and (campaign_id is None or str(u["campaign_id"]) == str(campaign_id))]

    # ---- SimServer hooks --------------------------------------------------------------
    def error_body(self, status, message, code=None):
        return {"code": status, "message": message}

    def authorized(self, rec):
        return self.bearer(rec) == self.token

    def use_token(self, token):
        with self.lock:
            old, self.token = self.token, token
            return [old] if old != token else []

    def tokens_accepted(self):
        return [self.token]

    def unauthorized(self):
        return 401, self.error_body(401, "Unauthenticated.")

    def rate_limited(self, now, window_end):
        return 429, self.error_body(429, "Too Many Attempts."), \
            {"Retry-After": max(1, math.ceil(window_end - now))}

    def on_excess(self, window_start):
        if window_start not in self.excess_windows:
            self.excess_windows.append(window_start)
        if len(self.excess_windows) > 3:
            self.blocked = True

    def gate(self, rec):
        return (403, self.error_body(403, "IP blocked")) if self.blocked else None

    def _answer(self, rec):
        status, body, headers = super()._answer(rec)
        if rec["method"] == "PUT" and rec["path"] == "/users/qualification":
            with self.lock:
                self.qualification_calls.append({"body": rec["json"], "status": status})
        return status, body, headers

    # ---- internals ----------------------------------------------------------------------
    def _now_iso(self):
        return datetime.fromtimestamp(self.clock(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def _insert(self, campaign_id, email, first_name, referrer_id=None, meta=None, source=None):
        uid = next(self._ids)
        codes = {u["code"] for u in self.users.values()}
        code = None
        while code is None or code in codes:
            code = "".join(self._rng.choices(string.ascii_lowercase + string.digits, k=8))
        self.users[uid] = {
            "id": uid, "campaign_id": campaign_id, "referrer_id": referrer_id, "code": code,
            "url": f"https://rf.example/r/{code}", "first_name": first_name, "email": email,
            "source": source or ("Referred" if referrer_id else "Direct"),
            "type": "person_invited" if referrer_id else "person_referring",
            "signed_up_at": self._now_iso(), "qualified_at": None,
            "meta": clone(meta) or []}
        return self.users[uid]

    def _user(self, key):
        key = str(key)
        if key.isdigit() and int(key) in self.users:
            return self.users[int(key)]
        return next((u for u in self.users.values() if u["code"] == key), None)

    def _by_email(self, campaign_id, email, exclude=None):
        return next((u for u in self.users.values()
                     if str(u["campaign_id"]) == str(campaign_id) and u["id"] != exclude
                     and isinstance(email, str) and u["email"].lower() == email.lower()), None)

    @staticmethod
    def _invalid(errors, message=INVALID):
        return 422, {"code": 422, "message": message,
                     "errors": {f: [{"field": f, "message": m}] for f, m in errors.items()}}

    def _not_found(self, what="User"):
        return 404, self.error_body(404, f"{what} not found.")

    def _check_meta(self, meta, errors):
        if meta is not None and not (isinstance(meta, list) and all(
                isinstance(m, dict) and isinstance(m.get("field"), str) for m in meta)):
            errors["meta"] = "The meta must be a list of {field, value} objects."

    @staticmethod
    def _check_required(campaign, body, errors):
        """The campaign's required custom fields of the user's side (`fields.person_referring[]` for a referrer,
        `person_invited[]` with a referrer): each a `meta` entry with a value that is not blank."""
        side = "person_invited" if body.get("referrer") is not None else "person_referring"
        given = {m["field"]: m.get("value") for m in body.get("meta") or []}
        for f in campaign["fields"].get(side) or []:
            value = given.get(f["id"])
            if f.get("required") and f["id"] not in ("first_name", "email") and \
                    (value is None or isinstance(value, str) and not value.strip()):
                errors[f["id"]] = f"The {f.get('label') or f['id']} field is required."

    def _paginate(self, rec, path, items):
        q = rec["query"]
        try:
            per_page = max(1, min(int(q.get("per_page", 25)), 250))
            page = max(1, int(q.get("page", 1)))
        except ValueError:
            return self._invalid({"page": "The page and per_page must be integers."})
        last = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        url = lambda p: f"{self.base_url}{path}?" + urlencode({**q, "page": p})  # noqa: E731
        start = (page - 1) * per_page + 1
        return 200, {
            "data": clone(chunk),
            "links": {"first": url(1), "last": url(last),
                      "prev": url(page - 1) if page > 1 else None,
                      "next": url(page + 1) if page < last else None},
            "meta": {"current_page": page, "from": start if chunk else None, "last_page": last,
                     "path": f"{self.base_url}{path}", "per_page": per_page,
                     "to": start + len(chunk) - 1 if chunk else None, "total": len(items)}}

    # ---- HTTP handlers ------------------------------------------------------------------
    def _create_user(self, rec):
        b = rec["json"] if isinstance(rec["json"], dict) else {}
        errors = {}
        for f in ("campaign_id", "first_name", "email"):
            if b.get(f) in (None, ""):
                errors[f] = f"The {f.replace('_', ' ')} field is required."
        email, cid = b.get("email"), b.get("campaign_id")
        if "email" not in errors and not (isinstance(email, str) and EMAIL_RE.match(email)):
            errors["email"] = "The email must be a valid email address."
        if "campaign_id" not in errors and str(cid) not in self.campaigns:
            errors["campaign_id"] = "The selected campaign id is invalid."
        if not errors and self._by_email(cid, email):
            errors["email"] = "The email has already been taken."
        self._check_meta(b.get("meta"), errors)
        if not errors:
            self._check_required(self.campaigns[str(cid)], b, errors)
        referrer = None
        ref = b.get("referrer")
        if ref is not None and not errors:
            field, value = (ref.get("field"), ref.get("value")) if isinstance(ref, dict) else (0, 0)
            if field == "email":
                referrer = self._by_email(cid, value)
            elif field in ("id", "code"):
                referrer = self._user(value)
                if referrer and (field == "id") != str(value).isdigit():
                    referrer = None
            else:
                errors["referrer"] = "The referrer field must be one of id, code, email."
            if referrer is None or str(referrer["campaign_id"]) != str(cid):
                errors.setdefault("referrer", "The selected referrer is invalid.")
        if errors:
            return self._invalid(errors)
        limit = self.user_limits[str(cid)]
        if limit is not None and sum(
                str(u["campaign_id"]) == str(cid) for u in self.users.values()) >= limit:
            return self._invalid({"campaign_id": "The campaign has reached its user limit."},
                                 "The campaign has reached its user limit.")
        user = self._insert(self.campaigns[str(cid)]["id"], email, b["first_name"],
                            referrer["id"] if referrer else None, b.get("meta"), b.get("source"))
        return 201, {"data": clone(user)}

    def user_of(self, rec):
        """The user a call names: in its path (/users/<id>), or a qualification's body ({"id": ...})."""
        named = re.fullmatch(r"/users/(\d+)", rec["path"])
        if named:
            return named.group(1)
        body = rec["json"]
        if rec["path"] == "/users/qualification" and isinstance(body, dict) and body.get("id") is not None:
            return str(body["id"])
        return None

    def _get_user(self, rec, key):
        user = self._user(key)
        return (200, {"data": clone(user)}) if user else self._not_found()

    def _update_user(self, rec, key):
        user = self._user(key)
        if user is None:
            return self._not_found()
        b = rec["json"] if isinstance(rec["json"], dict) else {}
        errors = {}
        if "email" in b:
            if not (isinstance(b["email"], str) and EMAIL_RE.match(b["email"])):
                errors["email"] = "The email must be a valid email address."
            elif self._by_email(user["campaign_id"], b["email"], exclude=user["id"]):
                errors["email"] = "The email has already been taken."
        if "first_name" in b and not (isinstance(b["first_name"], str) and b["first_name"]):
            errors["first_name"] = "The first name must be a non-empty string."
        self._check_meta(b.get("meta"), errors)
        if errors:
            return self._invalid(errors)
        user.update({k: b[k] for k in ("email", "first_name") if k in b})
        for m in b.get("meta") or []:
            existing = next((x for x in user["meta"] if x["field"] == m["field"]), None)
            if existing:
                existing["value"] = m.get("value")
            else:
                user["meta"].append({"field": m["field"], "value": m.get("value")})
        return 200, {"data": clone(user)}

    def _list_users(self, rec):
        cid = rec["query"].get("campaign_id") if self.campaign_filter else None
        users = [u for u in self.users.values() if cid is None or str(u["campaign_id"]) == cid]
        return self._cursor_page(rec, "/users", users) if self.cursor_links else self._paginate(rec, "/users", users)

    def _cursor_page(self, rec, path, items):
        """`items` (by id) after the one the cursor names: links.next names the next page by cursor alone."""
        q = rec["query"]
        try:
            per_page = max(1, min(int(q.get("per_page", 25)), 250))
            after = json.loads(base64.urlsafe_b64decode(q["cursor"].encode()))["after"] if q.get("cursor") else None
        except (ValueError, TypeError, KeyError):
            return self._invalid({"cursor": "The cursor is invalid."})
        rest = [i for i in sorted(items, key=lambda i: i["id"]) if after is None or i["id"] > after]
        chunk = rest[:per_page]
        cursor = base64.urlsafe_b64encode(json.dumps({"after": chunk[-1]["id"]}).encode()).decode() \
            if len(rest) > per_page else None
        return 200, {
            "data": clone(chunk),
            "links": {"first": None, "last": None, "prev": None,
                      "next": f"{self.base_url}{path}?" + urlencode({"cursor": cursor}) if cursor else None},
            "meta": {"path": f"{self.base_url}{path}", "per_page": per_page, "next_cursor": cursor,
                     "prev_cursor": None}}

    def _qualify(self, rec):
        b = rec["json"] if isinstance(rec["json"], dict) else {}
        if not isinstance(b.get("qualified"), bool):
            return self._invalid({"qualified": "The qualified field must be true or false."})
        if b.get("id") is not None:
            user = self._user(b["id"]) if str(b["id"]).isdigit() else None
        elif b.get("code") is not None:
            user = self._user(b["code"])
        elif b.get("email") is not None and b.get("campaign_id") is not None:
            user = self._by_email(b["campaign_id"], b["email"])
        else:
            return self._invalid({"id": "One of id, code, or email with campaign_id is required."})
        if user is None:
            return self._not_found()
        if user["type"] != "person_invited":
            return 422, self.error_body(422, "Only referred users can be qualified")
        new = (user["qualified_at"] or self._now_iso()) if b["qualified"] else None
        if new != user["qualified_at"]:
            user["qualified_at"] = self.qualified[user["id"]] = new
            self.qualification_events.append((user["id"], new))
        return 200, {"data": clone(user)}

    def _list_campaigns(self, rec):
        return self._paginate(rec, "/campaigns", list(self.campaigns.values()))

    def _get_campaign(self, rec, key):
        c = self.campaigns.get(key)
        return (200, {"data": clone(c)}) if c else self._not_found("Campaign")
