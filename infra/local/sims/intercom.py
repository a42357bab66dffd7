"""Stateful local simulator of the Intercom REST API (v2.16 subset).

Behaviour follows docs/external-apis.md and the official OpenAPI description:

* Bearer auth against ``sim.tokens`` (401 ``unauthorized``); ``X-RateLimit-*`` headers on every
  answer; fixed 10 s windows of ``sim.rate_limit`` calls (default 1666), 429 ``rate_limit_exceeded``.
* ``POST /contacts`` answers 200. A *user* whose email (case-insensitive) or ``external_id`` another
  user has answers 409 ``conflict`` "A contact matching those details already exists with id=<id>"
  (archived variant: "An archived contact matching those details already exists with id=<id>").
  Leads never conflict: Intercom lets leads share an email, so a repeated lead create is a
  second lead.
* Custom attributes must be defined (``define_attribute``), not archived, and fit their data_type
  (string <= 255 chars / integer / float / boolean / date = unix int); else 400 parameter_invalid, the
  first one refused named in the message (``Custom attribute 'plan' is archived``), without the
  optional ``field``: Intercom's answers seen in public (e.g. "Conversation attribute 'x' does not
  exist") leave it out.
* Search (rules in search.py) only sees a contact once ``clock() >= created + search_lag``;
  merged, archived and deleted contacts never appear in search or list. Cursors are stateless
  offsets (records changed between pages can repeat or be missed, as documented). Search honours
  ``sort`` (``{"field", "order"}``; the order defaults to ``descending``, as the OpenAPI file says);
  without one it orders by ``sim.unsorted_by`` (``created_at``; ``"updated_at"`` makes a write reorder
  the pages, as the documentation warns), descending. Of equal values, the order of creation (reversed when descending).
* A merged-away contact answers 410 ``contact_merged`` with ``Link: </contacts/<final id>>;
  rel="canonical"`` (chains resolved) on every ``/contacts/{id}...`` route; archived and deleted
  ones answer 404. Also served: DELETE /contacts/{id}, POST /contacts/{id}/archive|unarchive,
  GET /tags, ``POST /tags`` (with ``users``: tags those contacts), ``POST /contacts/merge`` (a lead
  into a user only), ``POST /data_attributes`` (400 when the name exists; ``options: [{value}]`` of a string one makes
  a list attribute, Intercom's dropdown, listed with its ``options``), ``PUT /data_attributes/{id}``
  (``archived``: as an admin archives it). Webhook builders live
  in webhooks.py (re-exported here).
* ``GET /me`` names the admin and the app (``app_id``, ``app_name``, ``region``) any valid token
  belongs to.
* OAuth: ``GET /oauth?client_id&state&redirect_uri`` is the authorize page an admin sees (an HTML
  form: Authorize / Cancel); ``POST /oauth`` issues a single-use code (ending in ``=``, as real codes
  may) for a new token and redirects to ``redirect_uri?code=...&state=...`` (Cancel:
  ``?error=access_denied&state=...``); ``POST /auth/eagle/token`` exchanges it.
"""
from __future__ import annotations

import base64
import html
import secrets
import itertools
import json
import math
import time
import uuid

from urllib.parse import urlencode

from .base import SimServer, clone
from .search import SearchError, compile_query, field_type, norm
from .webhooks import DATE_FIELDS, DEFAULT_APP_ID, sign, webhook_payload  # noqa: F401 (re-exported)

STANDARD_ATTRIBUTES = {"email": "string", "name": "string", "phone": "string", "external_id": "string",
                       "role": "string", "signed_up_at": "date", "last_seen_at": "date",
                       "owner_id": "string", "unsubscribed_from_emails": "boolean"}
WRITABLE = set(STANDARD_ATTRIBUTES) | {"avatar"}
NULL_FIELDS = (
    "external_id email phone name avatar owner_id signed_up_at last_seen_at last_replied_at "
    "last_contacted_at last_email_opened_at last_email_clicked_at language_override browser "
    "browser_version browser_language os android_app_name android_app_version android_device "
    "android_os_version android_sdk_version android_last_seen_at ios_app_name ios_app_version "
    "ios_device ios_os_version ios_sdk_version ios_last_seen_at utm_campaign utm_content "
    "utm_medium utm_source utm_term referrer").split()
SUB_LISTS = {"tags": "tags", "notes": "notes", "companies": "companies",
             "opted_out_subscription_types": "subscriptions",
             "opted_in_subscription_types": "subscriptions"}
ERROR_CODES = {400: "parameter_invalid", 401: "unauthorized", 403: "api_plan_restricted",
               404: "not_found", 409: "conflict", 410: "contact_merged",
               429: "rate_limit_exceeded", 500: "server_error", 503: "service_unavailable"}


def _type_ok(data_type, value):
    if value is None:
        return True
    if isinstance(value, bool):
        return data_type == "boolean"
    return {"string": isinstance(value, str), "integer": isinstance(value, int),
            "date": isinstance(value, int), "datetime": isinstance(value, int),
            "float": isinstance(value, (int, float))}.get(data_type, False)


class IntercomSim(SimServer):
    window_seconds = 10
    default_rate_limit = 1666
    token_prefix = "sim-token"
    public_paths = (r"/auth/eagle/token", r"/oauth")
    ROUTES = [
        ("POST", r"/auth/eagle/token", "_oauth_token"),
        ("GET", r"/oauth", "_authorize_page"),
        ("POST", r"/oauth", "_authorize_decide"),
        ("GET", r"/me", "_me"),
        ("POST", r"/contacts/search", "_search"),
        ("POST", r"/contacts/merge", "_merge_http"),
        ("GET", r"/contacts", "_list"),
        ("POST", r"/contacts", "_create"),
        ("GET", r"/contacts/(?P<cid>[^/]+)", "_get"),
        ("PUT", r"/contacts/(?P<cid>[^/]+)", "_update"),
        ("DELETE", r"/contacts/(?P<cid>[^/]+)", "_delete_http"),
        ("POST", r"/contacts/(?P<cid>[^/]+)/(?P<action>archive|unarchive)", "_archive_http"),
        ("POST", r"/contacts/(?P<cid>[^/]+)/tags", "_tag_contact"),
        ("GET", r"/data_attributes", "_data_attributes"),
        ("POST", r"/data_attributes", "_create_data_attribute"),
        ("PUT", r"/data_attributes/(?P<aid>[^/]+)", "_update_data_attribute"),
        ("GET", r"/segments", "_segments"),
        ("GET", r"/tags", "_list_tags"),
        ("POST", r"/tags", "_create_tag"),
    ]

    def __init__(self, tokens=("sim-token",), app_id=DEFAULT_APP_ID, clock=time.time,
                 search_lag=0.0, validator=None, app_name="Acme (simulated)", region="US", answer_validator=None):
        super().__init__(clock=clock, validator=validator, answer_validator=answer_validator)
        self.tokens = set(tokens)
        self.app_id, self.app_name, self.region = app_id, app_name, region
        self.search_lag = search_lag
        self.unsorted_by = "created_at"       # what a search without `sort` is ordered by (descending)
        self.contacts: dict[str, dict] = {}   # every contact ever created (except deleted)
        self.archived: set[str] = set()
        self.merged_into: dict[str, str] = {}
        self.attributes: dict[str, dict] = {}  # full_name -> data_attribute
        self.segments: dict[str, dict] = {}
        self.segment_members: dict[str, set] = {}
        self.tags: dict[str, dict] = {}
        self.oauth_codes: dict[str, str] = {}
        self.used_oauth_codes: set[str] = set()
        self.client_id = self.client_secret = None  # checked by /auth/eagle/token when set
        self._indexed_at: dict[str, float] = {}
        self._seq = itertools.count(1)
        for name, data_type in STANDARD_ATTRIBUTES.items():
            self._add_attribute(name, name, data_type, custom=False)

    # ---- admin helpers (no HTTP, not logged or validated) -------------------------------
    def revoke(self, token):
        with self.lock:
            self.tokens.discard(token)

    def use_token(self, token):
        with self.lock:
            old, self.tokens = self.tokens - {token}, {token}
            return sorted(old)

    def tokens_accepted(self):
        return list(self.tokens)

    def issue_oauth_code(self, code, token):
        with self.lock:
            self.oauth_codes[code] = token
            self.tokens.add(token)

    def define_attribute(self, name, data_type, archived=False, options=None, label=None):
        with self.lock:
            return dict(self._add_attribute(name, f"custom_attributes.{name}", data_type, True,
                                            archived, options, label))

    def add_contact(self, email, role="lead", name=None, custom_attributes=None, created_at=None,
                    searchable=True, searchable_after=None, **fields):
        """Create a contact directly. ``searchable=False`` keeps it out of search until
        ``make_searchable`` (an indexing delay of unbounded length); ``searchable_after`` (seconds
        of the sim's clock) keeps it out for that long."""
        with self.lock:
            created = self.clock() if created_at is None else created_at
            indexed = (created + searchable_after if searchable_after is not None
                       else -math.inf if searchable else math.inf)
            c = self._insert(dict(fields, email=email, role=role, name=name,
                                  custom_attributes=custom_attributes or {}), created, indexed)
            return clone(c)

    def add_contacts(self, emails, role="lead", custom_attributes=None, created_at=None) -> list[str]:
        """Create one contact per email, each as `add_contact` would (searchable at once), in one go:
        their ids, in order, and no copy of each (a test's backlog of tens of thousands of contacts)."""
        with self.lock:
            created = self.clock() if created_at is None else created_at
            return [self._insert(dict(email=email, role=role, name=None,
                                      custom_attributes=dict(custom_attributes or {})), created, -math.inf)["id"]
                    for email in emails]

    def make_searchable(self, contact_id=None):
        """End the indexing delay for one contact (or all)."""
        with self.lock:
            for cid in [contact_id] if contact_id else list(self._indexed_at):
                self._indexed_at[cid] = -math.inf

    def update_contact(self, contact_id, **fields):
        """Set standard fields; other keyword arguments are custom attributes."""
        with self.lock:
            ca = dict(fields.pop("custom_attributes", None) or {})
            ca.update({k: fields.pop(k) for k in list(fields) if k not in self.contacts[contact_id]})
            self._apply(self.contacts[contact_id], dict(fields, custom_attributes=ca),
                        any_field=True)
            return clone(self.contacts[contact_id])

    def get(self, contact_id):
        with self.lock:
            return clone(self.contacts.get(contact_id))

    def contacts_by_email(self, email):
        """Contacts (archived included, merged-away excluded) with this email, any case."""
        with self.lock:
            return [clone(c) for cid, c in self.contacts.items()
                    if cid not in self.merged_into and norm(c["email"]) == norm(email)]

    def merge(self, from_id, into_id):
        with self.lock:
            return clone(self._merge(self.contacts[from_id], self.contacts[into_id]))

    def archive(self, contact_id):
        with self.lock:
            self.archived.add(contact_id)

    def delete(self, contact_id):
        with self.lock:
            self.contacts.pop(contact_id, None)
            self.archived.discard(contact_id)

    def add_segment(self, name, contact_ids, person_type="user"):
        """``sim.segment_members[segment["id"]]`` is a mutable set of member ids."""
        with self.lock:
            now = int(self.clock())
            sid = self._new_id()
            self.segments[sid] = {"type": "segment", "id": sid, "name": name, "created_at": now,
                                  "updated_at": now, "person_type": person_type}
            self.segment_members[sid] = set(contact_ids)
            return dict(self.segments[sid])

    def webhook_payload(self, topic, item, notif_id=None, created_at=None, **kw):
        """Envelope for this workspace; ``item`` may be a contact id (current state; for
        ``*.deleted`` / ``*.archived`` topics only ``{type, id, deleted|archived}``)."""
        if isinstance(item, str):
            kind = topic.rsplit(".", 1)[-1]
            item = ({"type": "contact", "id": item, kind: True} if kind in ("deleted", "archived")
                    else self.get(item))
        return webhook_payload(topic, item, notif_id,
                               self.clock() if created_at is None else created_at,
                               kw.pop("app_id", None) or self.app_id, **kw)

    # ---- SimServer hooks --------------------------------------------------------------
    def error_body(self, status, message, code=None, field=None):
        err = {"code": code or ERROR_CODES.get(status, "error"), "message": message}
        if field:
            err["field"] = field
        return {"type": "error.list", "request_id": str(uuid.uuid4()), "errors": [err]}

    def _err(self, status, message, code=None, field=None, headers=None):
        return status, self.error_body(status, message, code, field), headers or {}

    def authorized(self, rec):
        return self.bearer(rec) in self.tokens

    def unauthorized(self):
        return self._err(401, "Access Token Invalid")

    def rate_limited(self, now, window_end):
        return self._err(429, f"Exceeded rate limit of {self.rate_limit} in 10_seconds")

    def common_headers(self, now, window_end, used):
        if self.rate_limit is None:
            return {}
        return {"X-RateLimit-Limit": self.rate_limit,
                "X-RateLimit-Remaining": max(0, self.rate_limit - used),
                "X-RateLimit-Reset": int(window_end)}

    # ---- internals ----------------------------------------------------------------------
    def _new_id(self):
        return "%08x%016x" % (int(self.clock()) & 0xFFFFFFFF, next(self._seq))

    def _add_attribute(self, name, full_name, data_type, custom, archived=False, options=None,
                       label=None):
        attr = {"type": "data_attribute", "name": name, "full_name": full_name,
                "label": label or name.replace("_", " ").capitalize(), "description": "",
                "data_type": data_type, "api_writable": True, "ui_writable": True,
                "messenger_writable": False, "custom": custom, "archived": archived,
                "model": "contact"}
        if custom:
            attr.update(id=next(self._seq), created_at=int(self.clock()))
        if options is not None:
            attr["options"] = list(options)
        self.attributes[full_name] = attr
        return attr

    def _blank(self, cid, ts):
        c = {"type": "contact", "id": cid, "workspace_id": self.app_id, "role": "user",
             "social_profiles": {"type": "list", "data": []}, "has_hard_bounced": False,
             "marked_email_as_spam": False, "unsubscribed_from_emails": False,
             "created_at": ts, "updated_at": ts, "custom_attributes": {},
             "location": {"type": "location", "country": None, "region": None, "city": None,
                          "country_code": None, "continent_code": None},
             "sms_consent": False, "unsubscribed_from_sms": False}
        c.update(dict.fromkeys(NULL_FIELDS))
        for key, suffix in SUB_LISTS.items():
            c[key] = {"type": "list", "data": [], "url": f"/contacts/{cid}/{suffix}",
                      "total_count": 0, "has_more": False}
        return c

    def _insert(self, fields, created, indexed_at):
        cid = self._new_id()
        c = self._blank(cid, int(created))
        self._apply(c, {"role": "user", **fields}, touch=False)
        self.contacts[cid] = c
        self._indexed_at[cid] = indexed_at
        return c

    def _apply(self, c, fields, touch=True, any_field=False):
        for k, v in fields.items():
            if k == "custom_attributes":
                c["custom_attributes"].update(v or {})
            elif k in WRITABLE or (any_field and k in c):
                c[k] = v
        if touch:
            c["updated_at"] = int(self.clock())

    def _check(self, body):
        """400 answer for invalid contact fields / custom attributes, else None."""
        if not isinstance(body, dict):
            return self._err(400, "Request body must be a JSON object")
        for k in WRITABLE & body.keys():
            dt = STANDARD_ATTRIBUTES.get(k, "string")
            if not _type_ok(dt, body[k]):
                return self._err(400, f"{k} must be of type {dt}", field=k)
        if body.get("role", "user") not in ("user", "lead"):
            return self._err(400, "role must be one of user, lead", field="role")
        ca = body.get("custom_attributes") or {}
        if not isinstance(ca, dict):
            return self._err(400, "custom_attributes must be an object", field="custom_attributes")
        for k, v in ca.items():
            attr = self.attributes.get(f"custom_attributes.{k}")
            if attr is None:
                return self._err(400, f"Custom attribute '{k}' does not exist")
            if attr["archived"]:
                return self._err(400, f"Custom attribute '{k}' is archived")
            if not _type_ok(attr["data_type"], v):
                return self._err(400, f"Custom attribute '{k}' expects type "
                                      f"{attr['data_type']}, got {type(v).__name__}")
            if isinstance(v, str) and len(v) > 255:
                return self._err(400, f"Custom attribute '{k}' value is longer than 255 characters")
        return None

    def _conflict(self, email, external_id, role="user", exclude=None):
        """409 for a user whose email or external_id another user already has. Leads never
        conflict: Intercom lets leads share an email (with each other and with a user), so a
        repeated lead create makes a second lead."""
        if role != "user":
            return None
        for cid, c in self.contacts.items():
            if cid == exclude or cid in self.merged_into or c["role"] != "user":
                continue
            if (email and norm(c["email"]) == norm(email)) or \
                    (external_id and c["external_id"] == external_id):
                prefix = "An archived contact" if cid in self.archived else "A contact"
                return self._err(409, f"{prefix} matching those details already exists "
                                      f"with id={cid}")
        return None

    def _canonical(self, cid):
        while cid in self.merged_into:
            cid = self.merged_into[cid]
        return cid

    def _find(self, cid, allow_archived=False):
        """(contact, None) or (None, error answer) for a /contacts/{id} route."""
        if cid in self.merged_into:
            link = f'</contacts/{self._canonical(cid)}>; rel="canonical"'
            return None, self._err(410, "This contact has been merged. See the 'Link' header "
                                        "for the canonical contact.", headers={"Link": link})
        c = self.contacts.get(cid)
        if c is None or (cid in self.archived and not allow_archived):
            return None, self._err(404, "User Not Found")
        return c, None

    def _live(self, cid):
        return cid in self.contacts and cid not in self.archived and cid not in self.merged_into

    def _merge(self, src, dst):
        for k in ("email", "name", "phone", "external_id"):
            if dst.get(k) is None:
                dst[k] = src.get(k)
        for k, v in src["custom_attributes"].items():
            dst["custom_attributes"].setdefault(k, v)
        known = {t["id"] for t in dst["tags"]["data"]}
        dst["tags"]["data"] += [t for t in src["tags"]["data"] if t["id"] not in known]
        dst["tags"]["total_count"] = len(dst["tags"]["data"])
        dst["updated_at"] = int(self.clock())
        self.merged_into[src["id"]] = dst["id"]
        return dst

    def _paginate(self, items, per_page, cursor):
        try:
            per_page = max(1, min(int(per_page or 50), 150))
            offset = json.loads(base64.urlsafe_b64decode(cursor.encode()))[0] if cursor else 0
        except (ValueError, TypeError, IndexError, KeyError):
            return self._err(400, "Invalid pagination parameters", field="starting_after")
        pages = {"type": "pages", "page": offset // per_page + 1, "per_page": per_page,
                 "total_pages": math.ceil(len(items) / per_page)}
        if offset + per_page < len(items):
            nxt = base64.urlsafe_b64encode(json.dumps([offset + per_page]).encode()).decode()
            pages["next"] = {"per_page": per_page, "starting_after": nxt}
        data = [clone(c) for c in items[offset:offset + per_page]]
        return 200, {"type": "list", "data": data, "total_count": len(items), "pages": pages}

    def _field(self, c, field):
        if field == "segment_id":
            return {sid for sid, members in self.segment_members.items() if c["id"] in members}
        if field == "tag_id":
            return {t["id"] for t in c["tags"]["data"]}
        if field == "email_domain":
            return (c.get("email") or "").rpartition("@")[2] or None
        v = c
        for part in field.split("."):
            v = v.get(part) if isinstance(v, dict) else None
        return v

    def _compile(self, query):
        return compile_query(query, self._field, lambda f: field_type(
            f, lambda name: (self.attributes.get(name) or {}).get("data_type")))

    # ---- HTTP handlers ------------------------------------------------------------------
    def _create(self, rec):
        body = rec["json"]
        bad = self._check(body)
        if bad:
            return bad
        if not any(body.get(k) for k in ("email", "external_id", "role")):
            return self._err(400, "One of email, external_id or role is required")
        conflict = self._conflict(body.get("email"), body.get("external_id"), body.get("role", "user"))
        if conflict:
            return conflict
        now = self.clock()
        return 200, clone(self._insert(body, now, now + self.search_lag))

    def _get(self, rec, cid):
        c, err = self._find(cid)
        return err or (200, clone(c))

    def _update(self, rec, cid):
        c, err = self._find(cid)
        body = rec["json"]
        err = err or self._check(body)
        if err:
            return err
        if c["role"] == "user" and body.get("role") == "lead":
            return self._err(400, "A user cannot be converted to a lead", field="role")
        conflict = self._conflict(body.get("email") if body.get("email") != c["email"] else None,
                                  None, body.get("role", c["role"]), exclude=cid)
        if conflict:
            return conflict
        self._apply(c, body)
        return 200, clone(c)

    def _delete_http(self, rec, cid):
        c, err = self._find(cid, allow_archived=True)
        if err:
            return err
        self.delete(cid)
        return 200, {"id": cid, "external_id": c["external_id"], "type": "contact",
                     "deleted": True}

    def _archive_http(self, rec, cid, action):
        c, err = self._find(cid, allow_archived=True)
        if err:
            return err
        (self.archived.add if action == "archive" else self.archived.discard)(cid)
        return 200, {"id": cid, "external_id": c["external_id"], "type": "contact",
                     "archived": action == "archive"}

    def _search(self, rec):
        body = rec["json"] if isinstance(rec["json"], dict) else {}
        try:
            pred = self._compile(body.get("query"))
        except SearchError as e:
            return self._err(400, str(e))
        sort = body.get("sort") or {}
        order = sort.get("order", "descending")
        if order not in ("ascending", "descending"):
            return self._err(400, f"Invalid sort order '{order}'. Must be one of: ascending, "
                                  "descending", code="invalid_sort_order")
        now = self.clock()
        hits = [c for cid, c in self.contacts.items()
                if self._live(cid) and self._indexed_at[cid] <= now and pred(c)]
        field = sort.get("field") or self.unsorted_by
        position = {cid: n for n, cid in enumerate(self.contacts)}      # (of equal values: the order of creation, reversed when descending)

        def key(c):
            v = self._field(c, field)
            return (v is None, (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)), position[c["id"]])
        hits.sort(key=key, reverse=order == "descending")
        page = body.get("pagination") or {}
        return self._paginate(hits, page.get("per_page"), page.get("starting_after"))

    def _list(self, rec):
        items = [c for cid, c in self.contacts.items() if self._live(cid)]
        return self._paginate(items, rec["query"].get("per_page"),
                              rec["query"].get("starting_after"))

    def _merge_http(self, rec):
        body = rec["json"] if isinstance(rec["json"], dict) else {}
        src, err = self._find(str(body.get("from")))
        dst, err2 = self._find(str(body.get("into")))
        if err or err2:
            return err or err2
        if src["role"] != "lead" or dst["role"] != "user" or src is dst:
            return self._err(400, "Only a contact with role lead can be merged into a "
                                  "contact with role user")
        return 200, clone(self._merge(src, dst))

    def _data_attributes(self, rec):
        model = rec["query"].get("model", "contact")
        archived_too = rec["query"].get("include_archived") == "true"
        data = [dict(a) for a in self.attributes.values()
                if a["model"] == model and (archived_too or not a["archived"])]
        return 200, {"type": "list", "data": data}

    def _segments(self, rec):
        segments = []
        for sid, seg in self.segments.items():
            seg = dict(seg)
            if rec["query"].get("include_count") == "true":
                seg["count"] = sum(1 for cid in self.segment_members[sid] if self._live(cid))
            segments.append(seg)
        return 200, {"type": "segment.list", "segments": segments}

    def _list_tags(self, rec):
        return 200, {"type": "list", "data": [dict(t) for t in self.tags.values()]}

    def _create_tag(self, rec):
        """Create (or find, by name) a tag; with ``users: [{id}...]`` also tag those contacts (all
        of them exist, or none is tagged and the answer is 404)."""
        body = rec["json"] if isinstance(rec["json"], dict) else {}
        name = body.get("name")
        if not isinstance(name, str) or not name:
            return self._err(400, "name is required", field="name")
        users = body.get("users")
        if users is not None and not (isinstance(users, list) and all(
                isinstance(u, dict) and isinstance(u.get("id"), str) for u in users)):
            return self._err(400, "users must be a list of {id}", field="users")
        contacts = []
        for user in users or []:
            c, err = self._find(user["id"])
            if err:
                return self._err(404, "User Not Found")
            contacts.append(c)
        tag = next((t for t in self.tags.values() if t["name"].lower() == name.lower()), None)
        if tag is None:
            tid = str(next(self._seq))
            tag = self.tags[tid] = {"type": "tag", "id": tid, "name": name}
        for c in contacts:
            self._add_tag(c, tag)
        return 200, dict(tag)

    def _add_tag(self, c, tag):
        if tag["id"] not in {t["id"] for t in c["tags"]["data"]}:
            c["tags"]["data"].append({**tag, "url": f"/tags/{tag['id']}"})
            c["tags"]["total_count"] = len(c["tags"]["data"])

    def _tag_contact(self, rec, cid):
        c, err = self._find(cid)
        if err:
            return err
        tag = self.tags.get(str((rec["json"] or {}).get("id")))
        if tag is None:
            return self._err(404, "Resource Not Found")
        self._add_tag(c, tag)
        return 200, {**tag, "applied_at": int(self.clock())}

    def _create_data_attribute(self, rec):
        body = rec["json"] if isinstance(rec["json"], dict) else {}
        name, model, data_type = body.get("name"), body.get("model"), body.get("data_type")
        if not isinstance(name, str) or not name or model not in ("contact", "company"):
            return self._err(400, "name and model (contact or company) are required", field="name")
        if data_type not in ("string", "integer", "float", "boolean", "date", "datetime"):
            return self._err(400, f"data_type {data_type!r} is not supported", field="data_type")
        options = body.get("options")
        if options is not None and not (isinstance(options, list) and options and all(
                isinstance(o, dict) and isinstance(o.get("value"), str) and o["value"] for o in options)):
            return self._err(400, "options must be a list of {value}", field="options")
        if options is not None and data_type != "string":
            return self._err(400, "options can only be given for the string data_type", field="options")
        if f"custom_attributes.{name}" in self.attributes or name in STANDARD_ATTRIBUTES:
            return self._err(400, f"You already have a '{name}' attribute", field="name")
        attr = self._add_attribute(name, f"custom_attributes.{name}", data_type, True,
                                   options=None if options is None else [o["value"] for o in options])
        attr["description"] = str(body.get("description") or "")
        return 200, dict(attr)

    def _update_data_attribute(self, rec, aid):
        """Archiving (or unarchiving) a custom attribute, as an admin does in Settings > Data > People."""
        attr = next((a for a in self.attributes.values() if str(a.get("id")) == aid), None)
        if attr is None:
            return self._err(404, "We couldn't find that data attribute to update", code="field_not_found")
        body = rec["json"] if isinstance(rec["json"], dict) else {}
        attr.update({k: body[k] for k in ("archived", "messenger_writable") if isinstance(body.get(k), bool)})
        if isinstance(body.get("description"), str):
            attr["description"] = body["description"]
        return 200, dict(attr)

    def _me(self, rec):
        return 200, {"type": "admin", "id": "991267459", "email": "admin@example.com", "name": "Sim Admin",
                     "email_verified": True, "has_inbox_seat": True,
                     "app": {"type": "app", "id_code": self.app_id, "name": self.app_name,
                             "created_at": 1734537243, "secure": False, "identity_verification": False,
                             "timezone": "Europe/London", "region": self.region}}

    def _authorize_page(self, rec):
        q = rec["query"]
        if self.client_id is not None and q.get("client_id") != self.client_id:
            return 400, "<!doctype html><title>Error</title><link rel=icon href='data:,'><p>Unknown app (client_id)</p>", \
                {"Content-Type": "text/html; charset=utf-8"}
        hidden = "".join(f'<input type="hidden" name="{k}" value="{html.escape(q.get(k, ""))}">'
                         for k in ("client_id", "state", "redirect_uri"))
        page = f"""<!doctype html><html><head><title>Authorize access</title><link rel="icon" href="data:,"></head><body>
<h1>Allow the app to access {html.escape(self.app_name)}?</h1>
<form method="post" action="/oauth">{hidden}
<button id="authorize" name="decision" value="allow">Authorize access</button>
<button id="cancel" name="decision" value="deny">Cancel</button></form></body></html>"""
        return 200, page, {"Content-Type": "text/html; charset=utf-8"}

    def _authorize_decide(self, rec):
        form = self.form(rec)
        target = form.get("redirect_uri") or ""
        if not target.startswith(("http://", "https://")):
            return 400, "<!doctype html><link rel=icon href='data:,'><p>No redirect_uri</p>", {"Content-Type": "text/html; charset=utf-8"}
        if form.get("decision") != "allow":
            answer = {"error": "access_denied", "state": form.get("state", "")}
        else:
            code = secrets.token_urlsafe(12) + "="
            self.issue_oauth_code(code, "oauth-" + secrets.token_urlsafe(12))
            answer = {"code": code, "state": form.get("state", "")}
        return 302, b"", {"Location": f"{target}{'&' if '?' in target else '?'}{urlencode(answer)}"}

    def _oauth_token(self, rec):
        form = self.form(rec)
        code = form.get("code")
        if self.client_id is not None and (form.get("client_id"), form.get("client_secret")) \
                != (self.client_id, self.client_secret):
            return self._err(401, "Invalid client credentials", code="unauthorized")
        if code not in self.oauth_codes or code in self.used_oauth_codes:
            return self._err(400, "Invalid or already used authorization code", field="code")
        self.used_oauth_codes.add(code)
        token = self.oauth_codes[code]
        return 200, {"token_type": "Bearer", "token": token, "access_token": token}
