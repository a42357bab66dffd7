"""Focused tests of the simulators' important behaviours (no sleeping: the clock is injected)."""
import hashlib
import hmac
import http.client
import json
import socket
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from infra.local.sims.intercom import IntercomSim, sign, webhook_payload
from infra.local.sims.referral_factory import RFSim, default_fields
from tests.support.intercom_contract import validate_request, validate_response


class FakeClock:
    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def ic(clock):
    with IntercomSim(clock=clock) as sim:
        sim.session = requests.Session()
        sim.session.headers.update({"Authorization": "Bearer sim-token", "Intercom-Version": "2.16"})
        yield sim


@pytest.fixture
def rf(clock):
    with RFSim(clock=clock) as sim:
        sim.add_campaign(7, "Spring")
        sim.session = requests.Session()
        sim.session.headers["Authorization"] = "Bearer rf-token"
        yield sim


def call(sim, method, path, **kw):
    return sim.session.request(method, sim.base_url + path, timeout=5, **kw)


# ---- Intercom ------------------------------------------------------------------------------
def test_a_second_user_with_the_email_is_409_with_id(ic):
    r = call(ic, "POST", "/contacts", json={"role": "user", "email": "Ann@Example.com"})
    assert r.status_code == 200
    contact = r.json()
    assert contact["type"] == "contact" and contact["workspace_id"] == "vne310wv"
    assert contact["tags"]["url"] == f"/contacts/{contact['id']}/tags"
    r = call(ic, "POST", "/contacts", json={"role": "user", "email": "ann@example.com"})
    assert r.status_code == 409
    err = r.json()["errors"][0]
    assert err["code"] == "conflict"
    assert err["message"] == f"A contact matching those details already exists with id={contact['id']}"
    ic.archive(contact["id"])
    r = call(ic, "POST", "/contacts", json={"email": "ann@example.com"})   # role defaults to user
    assert r.status_code == 409 and r.json()["errors"][0]["message"].startswith("An archived contact")
    assert call(ic, "GET", f"/contacts/{contact['id']}").status_code == 404
    assert len(ic.contacts_by_email("ANN@example.com")) == 1


def test_leads_share_an_email_a_repeated_lead_create_is_a_second_lead(ic):
    user = call(ic, "POST", "/contacts", json={"role": "user", "email": "ann@example.com"}).json()
    first = call(ic, "POST", "/contacts", json={"role": "lead", "email": "ann@example.com"})
    again = call(ic, "POST", "/contacts", json={"role": "lead", "email": "ANN@example.com"})
    assert first.status_code == again.status_code == 200
    assert len({user["id"], first.json()["id"], again.json()["id"]}) == 3
    assert sorted(c["role"] for c in ic.contacts_by_email("ann@example.com")) == ["lead", "lead", "user"]


def test_custom_attributes_are_checked(ic):
    ic.define_attribute("rf_code", "string")
    ic.define_attribute("rf_referrals", "integer")
    ic.define_attribute("old", "string", archived=True)
    ok = call(ic, "POST", "/contacts", json={"email": "a@b.co", "custom_attributes": {"rf_code": "x"}})
    assert ok.status_code == 200
    cid = ok.json()["id"]
    for attrs in ({"nope": 1}, {"rf_referrals": "3"}, {"rf_referrals": True},
                  {"rf_code": "x" * 256}, {"old": "v"}):
        r = call(ic, "PUT", f"/contacts/{cid}", json={"custom_attributes": attrs})
        assert r.status_code == 400, attrs
        assert r.json()["errors"][0]["code"] == "parameter_invalid"
    assert "'nope'" in call(ic, "POST", "/contacts", json={
        "email": "z@b.co", "custom_attributes": {"nope": 1}}).json()["errors"][0]["message"]
    r = call(ic, "PUT", f"/contacts/{cid}", json={"custom_attributes": {"rf_referrals": 3}})
    assert r.json()["custom_attributes"] == {"rf_code": "x", "rf_referrals": 3}
    names = {a["full_name"]: a for a in call(ic, "GET", "/data_attributes?model=contact").json()["data"]}
    assert names["custom_attributes.rf_code"]["custom"] and not names["email"]["custom"]
    assert names["signed_up_at"]["data_type"] == "date" and "custom_attributes.old" not in names


def test_an_attribute_archived_over_the_api_is_refused_on_contacts_until_unarchived(ic):
    attr = call(ic, "POST", "/data_attributes", json={"name": "plan", "model": "contact", "data_type": "string"}).json()
    archived = call(ic, "PUT", f"/data_attributes/{attr['id']}", json={"archived": True})
    assert archived.status_code == 200 and archived.json()["archived"] is True
    r = call(ic, "POST", "/contacts", json={"email": "a@b.co", "custom_attributes": {"plan": "pro"}})
    assert r.status_code == 400 and r.json()["errors"][0]["message"] == "Custom attribute 'plan' is archived"
    listed = call(ic, "GET", "/data_attributes?model=contact").json()["data"]
    assert "custom_attributes.plan" not in {a["full_name"] for a in listed}
    call(ic, "PUT", f"/data_attributes/{attr['id']}", json={"archived": False})
    assert call(ic, "POST", "/contacts", json={"email": "a@b.co", "custom_attributes": {"plan": "pro"}}).ok
    missing = call(ic, "PUT", "/data_attributes/999", json={"archived": True})
    assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "field_not_found"


def test_an_attribute_created_with_options_is_a_list_attribute_listed_with_them(ic):
    """As in Intercom (`options: [{value}]`, string only): the local stack's walkthrough makes its dropdown so, and
    `settings apply` checks a rule against the options (a sim that dropped them let a rule no option meets pass)."""
    made = call(ic, "POST", "/data_attributes", json={"name": "stage", "model": "contact", "data_type": "string",
                                                      "options": [{"value": "Trial"}, {"value": "Customer"}]})
    assert made.status_code == 200 and made.json()["options"] == ["Trial", "Customer"]
    listed = {a["full_name"]: a for a in call(ic, "GET", "/data_attributes?model=contact").json()["data"]}
    assert listed["custom_attributes.stage"]["options"] == ["Trial", "Customer"]
    for name, data_type, options in (("n1", "boolean", [{"value": "x"}]), ("n2", "string", []),
                                     ("n3", "string", ["Trial"])):
        r = call(ic, "POST", "/data_attributes", json={"name": name, "model": "contact", "data_type": data_type,
                                                       "options": options})
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "options"
    plain = call(ic, "POST", "/data_attributes", json={"name": "plain", "model": "contact", "data_type": "string"})
    assert "options" not in plain.json()
    assert len([a for a in call(ic, "GET", "/data_attributes?model=contact").json()["data"] if a["custom"]]) == 2


def test_search_lags_creation(clock):
    with IntercomSim(clock=clock, search_lag=120) as sim:
        h = {"Authorization": "Bearer sim-token"}
        r = requests.post(sim.base_url + "/contacts", json={"email": "lag@x.io"}, headers=h)
        q = {"query": {"field": "email", "operator": "=", "value": "LAG@x.io"}}
        search = lambda: requests.post(sim.base_url + "/contacts/search", json=q, headers=h).json()  # noqa
        assert search()["total_count"] == 0
        assert requests.get(sim.base_url + f"/contacts/{r.json()['id']}", headers=h).status_code == 200
        clock.advance(119)
        assert search()["data"] == []
        clock.advance(1)
        assert [c["email"] for c in search()["data"]] == ["lag@x.io"]
        sim.add_contact("hidden@x.io", searchable=False)
        q["query"]["value"] = "hidden@x.io"
        assert search()["total_count"] == 0
        sim.make_searchable()
        assert search()["total_count"] == 1


def test_search_filters_nesting_dates_and_pagination(ic, clock):
    ic.define_attribute("plan", "string")
    day = 1_700_006_400  # a UTC midnight
    for i in range(5):
        ic.add_contact(f"u{i}@corp.io", role="user" if i % 2 else "lead",
                       custom_attributes={"plan": "pro" if i < 2 else "free"}, created_at=day + i * 3600)
    ic.add_contact("x@other.io", created_at=day + 2 * 86400)
    q = {"operator": "AND", "value": [
        {"field": "email", "operator": "$", "value": "@corp.io"},
        {"operator": "OR", "value": [{"field": "custom_attributes.plan", "operator": "=", "value": "pro"},
                                     {"field": "role", "operator": "IN", "value": ["user"]}]}]}
    r = call(ic, "POST", "/contacts/search", json={"query": q, "pagination": {"per_page": 2}}).json()
    assert r["total_count"] == 3 and len(r["data"]) == 2 and r["pages"]["total_pages"] == 2
    assert [c["email"] for c in r["data"]] == ["u3@corp.io", "u1@corp.io"]         # no sort: newest first
    nxt = r["pages"]["next"]
    r2 = call(ic, "POST", "/contacts/search", json={"query": q, "pagination": nxt}).json()
    assert [c["email"] for c in r2["data"]] == ["u0@corp.io"] and "next" not in r2["pages"]
    oldest_first = {"query": q, "sort": {"field": "created_at", "order": "ascending"}, "pagination": {"per_page": 3}}
    assert [c["email"] for c in call(ic, "POST", "/contacts/search", json=oldest_first).json()["data"]] == \
        ["u0@corp.io", "u1@corp.io", "u3@corp.io"]
    by_day = {"field": "created_at", "operator": "=", "value": day + 7200}
    assert call(ic, "POST", "/contacts/search", json={"query": by_day}).json()["total_count"] == 5
    after = {"field": "created_at", "operator": ">", "value": day}
    assert [c["email"] for c in call(ic, "POST", "/contacts/search", json={"query": after}).json()["data"]] \
        == ["x@other.io"]
    bad = [{"field": "created_at", "operator": ">=", "value": day},
           {"operator": "AND", "value": [{"operator": "OR", "value": [
               {"operator": "AND", "value": [{"field": "id", "operator": "=", "value": "1"}]}]}]},
           {"operator": "OR", "value": [{"field": "id", "operator": "=", "value": str(i)} for i in range(16)]}]
    for query in bad:
        assert call(ic, "POST", "/contacts/search", json={"query": query}).status_code == 400
    listed = call(ic, "GET", "/contacts", params={"per_page": 4}).json()
    assert listed["total_count"] == 6 and listed["pages"]["next"]["starting_after"]
    rest = call(ic, "GET", "/contacts", params={"per_page": 4,
                                                "starting_after": listed["pages"]["next"]["starting_after"]})
    assert len(rest.json()["data"]) == 2


def test_a_search_without_sort_can_be_ordered_by_what_updates_change(ic, clock):
    contacts = [ic.add_contact(f"c{i}@x.io", created_at=clock() + i) for i in range(3)]
    ic.unsorted_by = "updated_at"
    clock.now += 10
    ic.update_contact(contacts[0]["id"], name="Ann")
    search = {"query": {"field": "email", "operator": "$", "value": "@x.io"}}
    assert [c["email"] for c in call(ic, "POST", "/contacts/search", json=search).json()["data"]] == \
        ["c0@x.io", "c2@x.io", "c1@x.io"]                               # the one written first: descending
    oldest_first = {**search, "sort": {"field": "created_at", "order": "ascending"}}
    assert [c["email"] for c in call(ic, "POST", "/contacts/search", json=oldest_first).json()["data"]] == \
        ["c0@x.io", "c1@x.io", "c2@x.io"]


@pytest.mark.parametrize("query", [
    {"field": "session_count", "operator": ">", "value": 3},                 # no contact field search accepts
    {"field": "browser_version", "operator": "=", "value": "120"},           # on a contact, not searchable
    {"field": "has_hard_bounced", "operator": "=", "value": "true"},         # a Boolean field takes a boolean
    {"field": "name", "operator": "=", "value": 3},                          # a String one text
    {"field": "owner_id", "operator": "=", "value": 7},                      # owner_id too (an admin's id, as text)
    {"field": "role", "operator": "=", "value": "customer"},                 # role: user or lead
    {"field": "browser", "operator": ">=", "value": 3},                      # >= compares integers
    {"field": "custom_attributes.plan", "operator": "=", "value": 1},        # a custom attribute: its type
])
def test_search_accepts_only_its_documented_fields_each_with_a_value_of_its_type(ic, query):
    ic.define_attribute("plan", "string")
    assert call(ic, "POST", "/contacts/search", json={"query": query}).status_code == 400
    fine = {"operator": "AND", "value": [{"field": "role", "operator": "=", "value": "user"},
                                         {"field": "has_hard_bounced", "operator": "=", "value": False},
                                         {"field": "owner_id", "operator": "=", "value": "7"}]}
    assert call(ic, "POST", "/contacts/search", json={"query": fine}).status_code == 200


def test_merge_gives_410_with_canonical_link(ic):
    lead = ic.add_contact("l@x.io", role="lead", custom_attributes={"k": 1})
    user = ic.add_contact("u@x.io", role="user")
    assert call(ic, "POST", "/contacts/merge", json={"from": user["id"], "into": lead["id"]}).status_code == 400
    r = call(ic, "POST", "/contacts/merge", json={"from": lead["id"], "into": user["id"]})
    assert r.status_code == 200 and r.json()["id"] == user["id"]
    assert r.json()["custom_attributes"] == {"k": 1}
    for method in ("GET", "PUT"):
        gone = call(ic, method, f"/contacts/{lead['id']}", json={})
        assert gone.status_code == 410
        assert gone.json()["errors"][0]["code"] == "contact_merged"
        assert gone.headers["Link"] == f'</contacts/{user["id"]}>; rel="canonical"'
    # chains resolve to the final target; merged contacts vanish from search and list
    final = ic.add_contact("f@x.io", role="user")
    ic.merge(user["id"], final["id"])
    assert call(ic, "GET", f"/contacts/{lead['id']}").headers["Link"] == f'</contacts/{final["id"]}>; rel="canonical"'
    q = {"query": {"field": "email", "operator": "~", "value": "x.io"}}
    assert [c["id"] for c in call(ic, "POST", "/contacts/search", json=q).json()["data"]] == [final["id"]]
    # the lead's email is free again
    assert call(ic, "POST", "/contacts", json={"email": "l@x.io"}).status_code == 200


def test_update_role_and_admin_helpers(ic):
    lead = ic.add_contact("p@x.io")
    r = call(ic, "PUT", f"/contacts/{lead['id']}", json={"role": "user", "external_id": "rf-1"})
    assert r.json()["role"] == "user" and r.json()["external_id"] == "rf-1"
    assert call(ic, "PUT", f"/contacts/{lead['id']}", json={"role": "lead"}).status_code == 400
    ic.update_contact(lead["id"], name="Pat", plan="pro")
    assert ic.get(lead["id"])["name"] == "Pat" and ic.get(lead["id"])["custom_attributes"] == {"plan": "pro"}
    ic.delete(lead["id"])
    assert call(ic, "GET", f"/contacts/{lead['id']}").status_code == 404


def test_segments_and_tags(ic):
    a, b = ic.add_contact("a@x.io", role="user"), ic.add_contact("b@x.io", role="user")
    seg = ic.add_segment("VIP", [a["id"]])
    segs = call(ic, "GET", "/segments", params={"include_count": "true"}).json()
    assert segs["type"] == "segment.list" and segs["segments"][0]["count"] == 1
    q = {"query": {"field": "segment_id", "operator": "=", "value": seg["id"]}}
    assert [c["id"] for c in call(ic, "POST", "/contacts/search", json=q).json()["data"]] == [a["id"]]
    tag = call(ic, "POST", "/tags", json={"name": "referrer"}).json()
    assert call(ic, "POST", "/tags", json={"name": "referrer"}).json()["id"] == tag["id"]
    r = call(ic, "POST", f"/contacts/{b['id']}/tags", json={"id": tag["id"]})
    assert r.status_code == 200 and r.json()["name"] == "referrer"
    assert ic.get(b["id"])["tags"]["data"][0]["id"] == tag["id"]
    assert call(ic, "POST", f"/contacts/{b['id']}/tags", json={"id": "999999"}).status_code == 404


def test_auth_revoke_and_oauth(ic):
    assert call(ic, "GET", "/contacts").status_code == 200
    bad = requests.get(ic.base_url + "/contacts", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["errors"][0] == {
        "code": "unauthorized", "message": "Access Token Invalid"}
    ic.revoke("sim-token")
    assert call(ic, "GET", "/contacts").status_code == 401
    ic.issue_oauth_code("abc=", "tok-2")
    form = {"code": "abc=", "client_id": "cid", "client_secret": "sec"}
    r = requests.post(ic.base_url + "/auth/eagle/token", data=form)
    assert r.json() == {"token_type": "Bearer", "token": "tok-2", "access_token": "tok-2"}
    assert requests.post(ic.base_url + "/auth/eagle/token", data=form).status_code == 400
    assert requests.get(ic.base_url + "/contacts", headers={"Authorization": "Bearer tok-2"}).ok


def test_me_and_the_authorize_page(ic):
    me = call(ic, "GET", "/me").json()
    assert me["type"] == "admin" and me["app"]["id_code"] == ic.app_id and me["app"]["region"] == "US"
    assert requests.get(ic.base_url + "/me", headers={"Authorization": "Bearer nope"}).status_code == 401
    query = {"client_id": "cid", "state": "s.1.x", "redirect_uri": "https://bridge.example/cb?a=1"}
    page = requests.get(ic.base_url + "/oauth", params=query)          # public: the admin's browser
    assert page.status_code == 200 and 'id="authorize"' in page.text and 'value="s.1.x"' in page.text
    allow = requests.post(ic.base_url + "/oauth", data={**query, "decision": "allow"}, allow_redirects=False)
    assert allow.status_code == 302 and allow.headers["Location"].startswith("https://bridge.example/cb?a=1&code=")
    code = dict(p.split("=", 1) for p in allow.headers["Location"].split("?", 1)[1].split("&"))["code"]
    assert code.endswith("%3D")                                          # a code may end in "=", URL-encoded
    deny = requests.post(ic.base_url + "/oauth", data={**query, "decision": "deny"}, allow_redirects=False)
    assert deny.headers["Location"] == "https://bridge.example/cb?a=1&error=access_denied&state=s.1.x"
    ic.client_id = "someone-else"
    assert requests.get(ic.base_url + "/oauth", params=query).status_code == 400


def test_intercom_rate_limit_headers(ic, clock):
    clock.now = 1_700_000_000.0  # start of a 10 s window
    ic.rate_limit = 2
    r1 = call(ic, "GET", "/contacts")
    assert r1.headers["X-RateLimit-Limit"] == "2" and r1.headers["X-RateLimit-Remaining"] == "1"
    assert r1.headers["X-RateLimit-Reset"] == str(1_700_000_010)
    call(ic, "GET", "/contacts")
    r3 = call(ic, "GET", "/contacts")
    assert r3.status_code == 429 and r3.json()["errors"][0]["code"] == "rate_limit_exceeded"
    assert r3.headers["X-RateLimit-Remaining"] == "0" and r3.headers["X-RateLimit-Reset"] == "1700000010"
    clock.advance(10)
    assert call(ic, "GET", "/contacts").status_code == 200


def test_fail_next_and_request_log(ic):
    ic.fail_next("POST", r"^/contacts$", 503, headers={"Retry-After": "1"}, times=2)
    for _ in range(2):
        r = call(ic, "POST", "/contacts", json={"email": "f@x.io"})
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert r.json()["type"] == "error.list"
    assert ic.contacts == {}  # not applied to state
    assert call(ic, "POST", "/contacts", json={"email": "f@x.io"}).status_code == 200
    ic.fail_next("GET", "/contacts", 500, body={"custom": True})
    assert call(ic, "GET", "/contacts").json() == {"custom": True}
    assert ic.count("POST", "/contacts") == 3 and ic.count("GET") == 1
    assert [r["status"] for r in ic.requests] == [503, 503, 200, 500]
    first = ic.requests[0]
    assert first["json"] == {"email": "f@x.io"} and json.loads(first["body"]) == first["json"]
    assert first["headers"]["Intercom-Version"] == "2.16"


def test_delay_next_causes_client_timeout(ic):
    ic.delay_next("GET", "/contacts", 0.3)
    with pytest.raises(requests.Timeout):
        ic.session.get(ic.base_url + "/contacts", timeout=0.05)
    assert call(ic, "GET", "/contacts").status_code == 200


def test_validator_records_contract_violations(clock):
    def validator(method, path, query, headers, body):
        return [] if headers.get("Intercom-Version") == "2.16" else ["missing Intercom-Version"]
    with IntercomSim(clock=clock, validator=validator) as sim:
        h = {"Authorization": "Bearer sim-token"}
        assert requests.get(sim.base_url + "/contacts", headers=h).status_code == 200
        requests.get(sim.base_url + "/contacts", headers={**h, "Intercom-Version": "2.16"})
        assert sim.contract_violations == [
            {"method": "GET", "path": "/contacts", "errors": ["missing Intercom-Version"]}]


def test_every_answer_of_the_intercom_simulator_is_one_intercom_gives(clock):
    """Each route once, its successes and its refusals, checked against the answers Intercom's OpenAPI documents
    (the integration tests check the answers they get too, but not every route's every refusal)."""
    with IntercomSim(clock=clock, validator=validate_request, answer_validator=validate_response) as sim:
        s = requests.Session()
        s.headers.update({"Authorization": "Bearer sim-token", "Intercom-Version": "2.16", "Accept": "application/json"})

        def call(method, path, **kw):
            return s.request(method, sim.base_url + path, timeout=5, **kw).json()
        sim.define_attribute("plan", "string")
        user = call("POST", "/contacts", json={"role": "user", "email": "a@x.io", "custom_attributes": {"plan": "p"}})
        lead, other = (call("POST", "/contacts", json={"role": "lead", "email": f"{n}@x.io"}) for n in ("l", "o"))
        call("POST", "/contacts", json={"role": "user", "email": "A@x.io"})                      # 409
        call("POST", "/contacts", json={"role": "user", "email": "b@x.io", "custom_attributes": {"nope": 1}})  # 400
        call("GET", f"/contacts/{user['id']}")
        call("GET", "/contacts/missing")                                                         # 404
        call("PUT", f"/contacts/{user['id']}", json={"name": "Ann", "custom_attributes": {"plan": "q"}})
        call("POST", "/contacts/search", json={"query": {"field": "email", "operator": "IN", "value": [
            "a@x.io", "l@x.io"]}, "pagination": {"per_page": 1}})
        call("POST", "/contacts/search", json={"query": {"field": "nope", "operator": "=", "value": "x"}})  # 400
        call("GET", "/contacts", params={"per_page": 1})
        call("GET", "/data_attributes", params={"model": "contact", "include_archived": "true"})
        attr = call("POST", "/data_attributes", json={"name": "n2", "model": "contact", "data_type": "string"})
        call("POST", "/data_attributes", json={"name": "n2", "model": "contact", "data_type": "string"})    # 400
        call("PUT", f"/data_attributes/{attr['id']}", json={"archived": True})
        sim.add_segment("S", [user["id"]])
        call("GET", "/segments", params={"include_count": "true"})
        tag = call("POST", "/tags", json={"name": "T", "users": [{"id": user["id"]}]})
        call("POST", "/tags", json={"name": "T", "users": [{"id": "missing"}]})                 # 404
        call("GET", "/tags")
        call("POST", f"/contacts/{user['id']}/tags", json={"id": tag["id"]})
        call("POST", "/contacts/merge", json={"from": lead["id"], "into": user["id"]})
        call("GET", f"/contacts/{lead['id']}")                                                   # 410
        call("POST", f"/contacts/{other['id']}/archive")
        call("POST", f"/contacts/{other['id']}/unarchive")
        call("DELETE", f"/contacts/{other['id']}")
        call("GET", "/me")
        sim.rate_limit = len(sim.requests)
        call("GET", "/me")                                                                       # 429
        s.headers["Authorization"] = "Bearer revoked"
        sim.rate_limit = 1666
        call("GET", "/me")                                                                       # 401
        assert {r["status"] for r in sim.requests} == {200, 400, 401, 404, 409, 410, 429}
        assert sim.contract_violations == []


def _types(value, path=""):
    """Each leaf of a JSON document: its path and its JSON type."""
    if isinstance(value, dict):
        return {k: t for key, v in value.items() for k, t in _types(v, f"{path}.{key}").items()}
    return {path: type(value).__name__}


def test_a_notification_has_the_keys_and_types_of_a_real_one(ic):
    """Intercom's own notification (tests/contracts/intercom/webhooks/) next to the simulator's of a contact alike:
    every key it has, each of the same type (its times as ISO-8601 texts, not unix numbers), and no other key but
    the envelope's `self` (null: docs/external-apis lists it)."""
    real = json.loads((Path(__file__).parents[1] / "contracts/intercom/webhooks/contact.user.updated.json").read_text())
    contact = ic.add_contact("nardwuar@example.com", role="user", name="Nardwuar", external_id="12342353")
    ours = _types(ic.webhook_payload("contact.user.updated", contact["id"], delivery_status="retry"))
    assert {k: t for k, t in ours.items() if k != ".self"} == _types(real)


def test_webhook_payload_and_sign(ic):
    c = ic.add_contact("w@x.io", role="user")
    env = ic.webhook_payload("contact.user.created", c["id"])
    assert env["type"] == "notification_event" and env["app_id"] == "vne310wv"
    assert env["id"].startswith("notif_") and env["created_at"] == 1_700_000_000
    assert env["data"]["item"]["id"] == c["id"] and env["data"]["item"]["created_at"].startswith("2023-11-14T")
    assert ic.webhook_payload("contact.deleted", c["id"])["data"]["item"] == {
        "type": "contact", "id": c["id"], "deleted": True}
    assert webhook_payload("ping", {"type": "ping", "message": "hi"})["id"] is None
    body = json.dumps(env).encode()
    assert sign(body, "s3cret") == "sha1=" + hmac.new(b"s3cret", body, hashlib.sha1).hexdigest()


# ---- Referral Factory ------------------------------------------------------------------------
def test_rf_users_and_validation(rf):
    assert rf.base_url.endswith("/api/v2")
    r = call(rf, "POST", "/users", json={"campaign_id": 7, "first_name": "Ann", "email": "ann@x.io"})
    assert r.status_code == 201
    ann = r.json()["data"]
    assert ann["type"] == "person_referring" and ann["source"] == "Direct" and ann["qualified_at"] is None
    assert ann["url"].endswith(ann["code"]) and len(ann["code"]) == 8
    dup = call(rf, "POST", "/users", json={"campaign_id": 7, "first_name": "A", "email": "ANN@x.io"})
    assert dup.status_code == 422 and dup.json() == {
        "code": 422, "message": "The given data was invalid.",
        "errors": {"email": [{"field": "email", "message": "The email has already been taken."}]}}
    bad = call(rf, "POST", "/users", json={"campaign_id": 99, "email": "nope"}).json()["errors"]
    assert set(bad) == {"first_name", "email", "campaign_id"}
    bob = call(rf, "POST", "/users", json={"campaign_id": 7, "first_name": "Bob", "email": "bob@x.io",
                                           "referrer": {"field": "code", "value": ann["code"]}}).json()["data"]
    assert bob["type"] == "person_invited" and bob["referrer_id"] == ann["id"] and bob["source"] == "Referred"
    assert call(rf, "GET", f"/users/{ann['code']}").json()["data"]["id"] == ann["id"]
    upd = call(rf, "PUT", f"/users/{bob['id']}", json={"meta": [{"field": "plan", "value": "pro"}]})
    assert upd.json()["data"]["meta"] == [{"field": "plan", "value": "pro"}]
    assert call(rf, "GET", "/users/424242").status_code == 404
    assert requests.get(rf.base_url + "/users").json() == {"code": 401, "message": "Unauthenticated."}


def test_rf_refuses_a_user_without_a_custom_field_the_campaign_requires_of_their_side(rf):
    company = {"id": "company", "type": "text", "label": "Company", "required": True}
    rf.add_campaign(9, "B2B", fields={"person_referring": default_fields()["person_referring"] + [company],
                                      "person_invited": default_fields()["person_invited"]})
    ann = {"campaign_id": 9, "first_name": "Ann", "email": "ann@x.io"}
    for meta in (None, [], [{"field": "company", "value": " "}], [{"field": "plan", "value": "pro"}]):
        r = call(rf, "POST", "/users", json={**ann, **({"meta": meta} if meta is not None else {})})
        assert r.status_code == 422 and r.json()["errors"] == {
            "company": [{"field": "company", "message": "The Company field is required."}]}
    assert rf.users_by_email("ann@x.io") == []
    r = call(rf, "POST", "/users", json={**ann, "meta": [{"field": "company", "value": "Acme"}]})
    assert r.status_code == 201
    bob = call(rf, "POST", "/users", json={"campaign_id": 9, "first_name": "Bob", "email": "bob@x.io",   # invited:
                                           "referrer": {"field": "id", "value": r.json()["data"]["id"]}})  # not theirs
    assert bob.status_code == 201


def test_rf_user_limit_and_pagination(rf):
    rf.add_campaign(8, "Small", user_limit=3)
    for i in range(3):
        rf.add_user(8, f"p{i}@x.io", f"P{i}")
    r = call(rf, "POST", "/users", json={"campaign_id": 8, "first_name": "Q", "email": "q@x.io"})
    assert r.status_code == 422 and "user limit" in r.json()["message"]
    page = call(rf, "GET", "/users", params={"campaign_id": 8, "per_page": 2}).json()
    assert len(page["data"]) == 2 and page["meta"]["total"] == 3
    last = rf.session.get(page["links"]["next"], timeout=5).json()
    assert len(last["data"]) == 1 and last["links"]["next"] is None
    camp = call(rf, "GET", "/campaigns/7").json()["data"]
    assert camp["status"] == "launched" and camp["fields"]["person_invited"][0]["required"] is True
    assert len(call(rf, "GET", "/campaigns").json()["data"]) == 2


def test_rf_can_list_every_campaign_s_people_and_page_them_by_a_cursor_alone(rf):
    """The documentation gives neither `campaign_id` nor `page` for GET /users: the switches make RF ignore them."""
    rf.add_campaign(8, "Other")
    ids = [rf.add_user(7 + i % 2, f"p{i}@x.io", f"P{i}")["id"] for i in range(5)]
    rf.campaign_filter, rf.cursor_links = False, True
    page = call(rf, "GET", "/users", params={"campaign_id": 7, "per_page": 2, "page": 3}).json()
    seen = [u["id"] for u in page["data"]]
    assert seen == ids[:2] and "total" not in page["meta"]
    for _ in range(10):                  # (bounded: a cursor that loops fails, not hangs)
        if not page["links"]["next"]:
            break
        assert list(parse_qs(urlsplit(page["links"]["next"]).query)) == ["cursor"]      # nothing else
        page = call(rf, "GET", "/users", params={"cursor": parse_qs(urlsplit(page["links"]["next"]).query)[
            "cursor"][0], "per_page": 2}).json()
        seen += [u["id"] for u in page["data"]]
    assert seen == ids                                                    # every campaign's, each once


def test_rf_qualification_recorded_once(rf, clock):
    ref = rf.add_user(7, "r@x.io", "Ref")
    lead = rf.add_user(7, "l@x.io", "Lead", referrer_id=ref["id"])
    r = call(rf, "PUT", "/users/qualification", json={"qualified": True, "id": lead["id"]})
    assert r.status_code == 200 and r.json()["data"]["qualified_at"]
    first = r.json()["data"]["qualified_at"]
    clock.advance(3600)
    again = call(rf, "PUT", "/users/qualification",
                 json={"qualified": True, "email": "L@x.io", "campaign_id": 7})
    assert again.status_code == 200 and again.json()["data"]["qualified_at"] == first
    refused = call(rf, "PUT", "/users/qualification", json={"qualified": True, "code": ref["code"]})
    assert refused.status_code == 422 and refused.json()["message"] == "Only referred users can be qualified"
    rf.fail_next("PUT", "qualification", 500)
    assert call(rf, "PUT", "/users/qualification", json={"qualified": True, "id": lead["id"]}).status_code == 500
    assert [c["status"] for c in rf.qualification_calls] == [200, 200, 422, 500]
    assert rf.qualified == {lead["id"]: first} and rf.qualification_events == [(lead["id"], first)]
    call(rf, "PUT", "/users/qualification", json={"qualified": False, "id": lead["id"]})
    assert rf.qualified == {lead["id"]: None} and rf.get_user(lead["id"])["qualified_at"] is None


def test_rf_rate_limit_then_ip_block(rf, clock):
    clock.now = 1_700_000_020.0  # windows start at multiples of 60: 20 s left in this one
    rf.rate_limit = 2
    codes = [call(rf, "GET", "/campaigns").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = call(rf, "GET", "/campaigns")
    assert r.status_code == 429 and r.headers["Retry-After"] == "20"
    assert len(rf.excess_windows) == 1 and not rf.blocked  # one window, however many 429s
    for _ in range(2):
        clock.advance(60)
        assert [call(rf, "GET", "/campaigns").status_code for _ in range(3)] == [200, 200, 429]
    assert not rf.blocked and len(rf.excess_windows) == 3
    clock.advance(60)
    assert [call(rf, "GET", "/campaigns").status_code for _ in range(3)] == [200, 200, 403]
    assert rf.blocked
    clock.advance(3600)
    r = call(rf, "GET", "/campaigns")
    assert r.status_code == 403 and r.json() == {"code": 403, "message": "IP blocked"}


@pytest.mark.parametrize("how", ["drop", "500"])
def test_an_answer_lost_after_the_request_was_applied(rf, how):
    ref = rf.add_user(7, "r@x.io", "Ref")
    lead = rf.add_user(7, "l@x.io", "Lead", referrer_id=ref["id"])
    rf.lose_answer_next("PUT", "qualification", how)
    if how == "drop":
        with pytest.raises(requests.ConnectionError):
            call(rf, "PUT", "/users/qualification", json={"qualified": True, "id": lead["id"]})
    else:
        assert call(rf, "PUT", "/users/qualification", json={"qualified": True, "id": lead["id"]}).status_code == 500
    assert rf.qualified[lead["id"]] and [c["status"] for c in rf.qualification_calls] == [200]   # applied
    assert rf.requests[-1]["lost"] == how
    assert call(rf, "GET", f"/users/{lead['id']}").json()["data"]["qualified_at"]           # the next is answered


def test_a_stalled_answer_after_applying_times_the_client_out(ic):
    ic.lose_answer_next("POST", "^/contacts$", "stall", seconds=0.3)
    with pytest.raises(requests.Timeout):
        ic.session.post(ic.base_url + "/contacts", json={"email": "s@x.io"}, timeout=0.05)
    assert [c["email"] for c in ic.contacts.values()] == ["s@x.io"]


def _address(sim):
    host, port = urlsplit(sim.base_url).netloc.split(":")
    return host, int(port)


def _request(method, path, body=b""):
    return (f"{method} /api/v2{path} HTTP/1.1\r\nHost: rf\r\nAuthorization: Bearer rf-token\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def _answer(reader):
    """The status line of one answer read whole from `reader` (the client's end of a connection, as a file)."""
    status, length = reader.readline(), 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        length = int(value) if name.strip().lower() == b"content-length" else length
    reader.read(length)
    return status


def test_a_simulator_keeps_its_connections_open_and_dates_its_answers_by_its_clock(ic, clock):
    """As Intercom and RF do: the worker's pooled connection serves call after call (werkzeug's server closed each
    after its answer, and every call opened a new one)."""
    conn = http.client.HTTPConnection(*_address(ic), timeout=5)
    answers, sockets = [], []
    for path in ("/contacts", "/me", "/contacts"):
        conn.request("GET", path, headers={"Authorization": "Bearer sim-token", "Intercom-Version": "2.16"})
        answer = conn.getresponse()
        answer.read()
        answers.append((answer.status, answer.getheader("Connection"), answer.getheader("Date")))
        sockets.append(conn.sock)
    conn.close()
    assert answers == [(200, None, formatdate(clock.now, usegmt=True))] * 3
    assert sockets[0] is not None and sockets == [sockets[0]] * 3 and ic.count("GET") == 3


def test_an_answer_dropped_after_applying_cuts_its_kept_connection_and_nothing_more_is_read_on_it(rf):
    """The client sees its connection closed with no answer, as when a vendor's answer is lost: no answer comes later
    on that connection, and a request sent behind the lost one is never received."""
    ref = rf.add_user(7, "r@x.io", "Ref")
    lead = rf.add_user(7, "l@x.io", "Lead", referrer_id=ref["id"])
    rf.lose_answer_next("PUT", "qualification", "drop")
    with socket.create_connection(_address(rf), timeout=5) as client, client.makefile("rb") as reader:
        client.sendall(_request("GET", "/campaigns"))
        assert _answer(reader).startswith(b"HTTP/1.1 200")
        client.sendall(_request("PUT", "/users/qualification", json.dumps({"qualified": True, "id": lead["id"]}).encode())
                       + _request("GET", "/campaigns"))
        assert reader.read() == b""                                   # closed, no answer (not a timeout)
    assert rf.qualified[lead["id"]] and rf.requests[-1]["lost"] == "drop"   # applied
    assert [r["method"] for r in rf.requests] == ["GET", "PUT"]        # the GET behind it: never read


def test_a_stopped_simulator_closes_the_connections_it_kept(rf):
    """Nothing answers at a stopped simulator's address: the client's pooled connection is closed too (its pool
    sees it and connects anew, to nothing), not left open to take a request and drop it."""
    with socket.create_connection(_address(rf), timeout=5) as client, client.makefile("rb") as reader:
        client.sendall(_request("GET", "/campaigns"))
        assert _answer(reader).startswith(b"HTTP/1.1 200")
        rf.stop()
        assert reader.read() == b""                                   # (a timeout: it was kept open)
    with pytest.raises(requests.ConnectionError):
        call(rf, "GET", "/campaigns")


def test_another_client_spends_part_of_every_window_and_windows_may_start_anywhere(rf, clock):
    clock.now = 1_700_000_000.0
    rf.rate_limit, rf.window_offset = 5, 30.0          # windows [1_699_999_950, 1_700_000_010), ...
    rf.spend_elsewhere(3)
    assert [call(rf, "GET", "/campaigns").status_code for _ in range(3)] == [200, 200, 429]
    clock.now = 1_700_000_009.0
    assert call(rf, "GET", "/campaigns").status_code == 429
    clock.now = 1_700_000_010.0                         # a new window: the other client spent 3 again
    assert [call(rf, "GET", "/campaigns").status_code for _ in range(3)] == [200, 200, 429]
    assert rf.busiest() == 7 and rf.busiest(seconds=1) == 3   # two windows of its own, one 60 s span
