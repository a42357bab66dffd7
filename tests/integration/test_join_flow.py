"""Issue: people who join a campaign reach Intercom — end to end over HTTP, SQS, worker."""
from __future__ import annotations

from .conftest import WORKSPACE, join_body, lead_settings, new_lead


def test_a_lead_joining_becomes_an_intercom_lead_with_exactly_the_mapped_fields(bridge, intercom, rf):
    bridge.apply(lead_settings())
    lead = new_lead(rf)
    answer = bridge.post_join(join_body(lead))
    assert answer.status_code == 202 and answer.json()["queued"] is True
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    assert contact["role"] == "lead" and contact["name"] == "Ann"
    assert contact["custom_attributes"] == {"referral_code": lead["code"], "lead_source": "referral",
                                            "rf_person": f"42#{lead['id']}"}      # and our marker
    assert intercom.attributes["custom_attributes.rf_person"]["data_type"] == "string"   # made by `apply`
    person = bridge.history(42, lead["id"])
    assert person["link"]["status"] == "linked" and person["link"]["contact_id"] == contact["id"]
    assert [h["outcome"] for h in person["history"]] == ["received", "created"]
    assert rf.count("GET", "/users") == 0, "the webhook had every field: RF's API was not called"


def join_referrer(bridge, intercom, rf, settings) -> tuple[dict, dict]:
    """A referrer joins under `settings`; returns (RF user, Intercom contact)."""
    bridge.apply(settings)
    referrer = rf.add_user(42, "rita@example.com", "Rita")
    bridge.post_join(join_body(referrer))
    bridge.drain()
    [contact] = intercom.contacts_by_email("rita@example.com")
    return referrer, contact


def test_a_referrer_with_create_user_becomes_a_user(bridge, intercom, rf):
    referrer, contact = join_referrer(bridge, intercom, rf, lead_settings())
    assert contact["role"] == "user"
    assert contact["custom_attributes"] == {"referral_link": referrer["url"], "rf_person": f"42#{referrer['id']}"}


def test_action_nothing_creates_nothing_and_says_why(bridge, intercom, rf):
    bridge.apply(lead_settings(action="nothing", fields=[]))
    lead = new_lead(rf)
    bridge.post_join(join_body(lead))
    bridge.drain()
    assert intercom.count("POST", "/contacts") == 0
    person = bridge.history(42, lead["id"])
    assert person["link"]["status"] == "ignored"
    assert person["history"][-1]["reason"] == "leads.action is nothing: no contact is created for leads"


def test_duplicate_with_skip_leaves_the_existing_contact_untouched_but_linked(bridge, intercom, rf):
    bridge.apply(lead_settings(duplicates="skip"))
    existing = intercom.add_contact("ann@example.com", role="user", name="Ann Original")
    before = dict(intercom.get(existing["id"]))
    lead = new_lead(rf)
    bridge.post_join(join_body(lead))
    bridge.drain()
    assert intercom.get(existing["id"]) == before
    assert intercom.count("POST", "/contacts") == intercom.count("POST", "/contacts/search")
    link = bridge.history(42, lead["id"])["link"]
    assert link["contact_id"] == existing["id"] and link["contact_role"] == "user"


def test_duplicate_with_update_marks_the_existing_contact_as_referred(bridge, intercom, rf):
    bridge.apply(lead_settings(tag="Referred"))
    existing = intercom.add_contact("ann@example.com", role="lead", name="Ann Original")
    lead = new_lead(rf)
    bridge.post_join(join_body(lead))
    bridge.drain()
    after = intercom.get(existing["id"])
    assert after["custom_attributes"]["lead_source"] == "referral"
    assert after["custom_attributes"]["referral_code"] == lead["code"]
    assert [t["name"] for t in after["tags"]["data"]] == ["Referred"]
    assert len(intercom.contacts_by_email("ann@example.com")) == 1
    assert bridge.history(42, lead["id"])["history"][-2]["outcome"] == "updated_existing"


def test_a_409_while_search_lags_links_the_existing_user(bridge, intercom, rf):
    """A user with the email exists and search does not show it yet: creating the user answers 409
    with its id (leads never conflict: see test_exactly_one_contact.py)."""
    bridge.apply(lead_settings())
    existing = intercom.add_contact("rita@example.com", role="user", searchable=False)
    referrer = rf.add_user(42, "rita@example.com", "Rita")
    bridge.post_join(join_body(referrer))
    bridge.drain()
    assert len(intercom.contacts_by_email("rita@example.com")) == 1
    person = bridge.history(42, referrer["id"])
    assert person["link"]["contact_id"] == existing["id"]
    assert "409 conflict" in person["history"][-1]["reason"]


def test_the_same_join_three_times_gives_one_contact_one_link_one_repeat_entry(bridge, intercom, rf):
    bridge.apply(lead_settings())
    lead = new_lead(rf)
    for _ in range(3):
        assert bridge.post_join(join_body(lead)).status_code == 202
    bridge.drain()
    assert len(intercom.contacts_by_email("ann@example.com")) == 1
    assert intercom.count("POST", "/contacts") - intercom.count("POST", "/contacts/search") == 1
    history = bridge.history(42, lead["id"])["history"]
    repeats = [h for h in history if h["outcome"] == "repeated"]
    assert len(repeats) == 1 and repeats[0]["count"] == 2 and "already been applied" in repeats[0]["reason"]
    from chalicelib.services.explain import explain
    [repeat] = [e for e in explain(bridge.operator(), "ann@example.com").view()["trail"] if e.get("count")]
    assert (repeat["event"], repeat["outcome"]) == ("join", "repeated") and "fix" not in repeat   # nothing to do


def test_missing_webhook_fields_are_read_from_referral_factory(bridge, intercom, rf):
    bridge.apply(lead_settings())
    lead = new_lead(rf, meta=[{"field": "company", "value": "Acme"}])
    bridge.post_join({"id": lead["id"], "campaign_id": 42})
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    assert contact["name"] == "Ann" and contact["custom_attributes"]["referral_code"] == lead["code"]
    assert rf.count("GET", f"/users/{lead['id']}") == 1


def test_intercom_429_then_500_then_success_gives_one_contact(bridge, intercom, rf, clock):
    bridge.apply(lead_settings())
    lead = new_lead(rf)
    intercom.fail_next("POST", r"^/contacts$", 429, headers={"X-RateLimit-Reset": str(int(clock()) + 3)})
    intercom.fail_next("POST", r"^/contacts$", 500)
    bridge.post_join(join_body(lead))
    bridge.drain()                        # a 500 to a create may have been applied: no blind re-send...
    assert bridge.poller.release_delayed() == 1              # (Intercom's 500: waited out, not a try)
    assert all(o.error is None for o in bridge.drain())     # ...the next try waits out search's lag,
    assert intercom.contacts == {}
    clock.now += bridge.rt.config.search_lag
    assert bridge.poller.release_delayed() == 1
    assert all(o.error is None for o in bridge.drain())     # ...then looks, and creates
    assert len(intercom.contacts_by_email("ann@example.com")) == 1
    # The reset is a whole second: the wait lasts until it has passed, counted from the answer's Date (to the second)
    assert any(3 < s <= 4.6 for s in clock.slept), f"X-RateLimit-Reset was not honoured: {clock.slept}"


def test_types_the_hosted_integration_drops_are_converted(bridge, intercom, rf):
    doc = lead_settings()
    doc["leads"]["fields"] += [{"from": "meta.score", "to": "custom_attributes.score"},
                               {"from": "signed_up_at", "to": "custom_attributes.joined_on"}]
    bridge.apply(doc)
    lead = new_lead(rf, meta=[{"field": "score", "value": "4.75"}])
    body = {**join_body(lead), "signed_up_at": "2024-03-01T10:00:00Z", "score": "4.75"}
    bridge.post_join(body)
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    assert contact["custom_attributes"]["score"] == 4.75
    assert contact["custom_attributes"]["joined_on"] == 1709287200


def test_an_unconvertible_value_is_recorded_and_the_contact_still_created(bridge, intercom, rf):
    doc = lead_settings()
    doc["leads"]["fields"].append({"from": "meta.score", "to": "custom_attributes.score"})
    bridge.apply(doc)
    lead = new_lead(rf)
    bridge.post_join({**join_body(lead), "score": "lots"})
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    assert "score" not in contact["custom_attributes"]
    fields = [h for h in bridge.history(42, lead["id"])["history"] if h["event"] == "fields"]
    assert fields[0]["details"]["errors"] == [{"to": "custom_attributes.score", "source": "from meta.score",
                                               "reason": "'lots' is not a number"}]


def test_the_webhook_route_calls_no_api(bridge, intercom, rf):
    """(Its speed is the bench's: `make bench`, webhook ack beside its floor.)"""
    bridge.apply(lead_settings())
    lead = new_lead(rf)
    bridge.post_join(join_body(lead))                       # warm: secrets and campaign are cached
    calls_before = len(intercom.requests) + len(rf.requests)
    for _ in range(10):
        assert bridge.post_join(join_body(lead)).status_code == 202
    assert len(intercom.requests) + len(rf.requests) == calls_before


def test_a_slow_intercom_answer_times_out_and_is_retried(bridge, intercom, rf, monkeypatch):
    import dataclasses
    bridge.apply(lead_settings())
    bridge.rt.config = dataclasses.replace(bridge.rt.config, http_timeout=0.2)
    bridge.rt.forget()
    lead = new_lead(rf)
    intercom.delay_next("POST", r"^/contacts/search$", 1.0)     # one answer comes too late
    bridge.post_join(join_body(lead))
    outcomes = bridge.drain()
    assert all(o.ok for o in outcomes)
    assert len(intercom.contacts_by_email("ann@example.com")) == 1


def test_a_join_of_a_mapped_email_tried_again_keeps_no_pointer_by_the_rf_email_that_forget_leaves(bridge, intercom,
                                                                                                  rf, capsys):
    """Its failed try was recorded under RF's email (the email pointer too), and the try that linked it under the
    work email: `bridge forget` of the email the link has left the pointer naming her RF email behind."""
    from chalicelib.adapters.dynamo.keys import email_key
    from chalicelib.cli import main

    from .test_privacy import item
    doc = lead_settings()
    doc["leads"]["fields"][0] = {"from": "meta.work_email", "to": "email"}
    bridge.apply(doc)
    lead = new_lead(rf, meta=[{"field": "work_email", "value": "ann@work.example"}])
    intercom.fail_next("POST", r"^/contacts$", 400)                 # her first try fails: a dead letter
    bridge.post_join({**join_body(lead), "work_email": "ann@work.example"})
    bridge.drain()
    assert main(["dlq", "replay"], rt=bridge.rt) == 0
    bridge.drain()
    assert bridge.history(42, lead["id"])["link"]["status"] == "linked"
    assert main(["forget", "ann@work.example"], rt=bridge.rt) == 0
    assert '"links": 1' in capsys.readouterr().out
    assert item(bridge, email_key(WORKSPACE, "ann@example.com")) is None


def test_an_email_mapped_from_a_custom_field_is_the_one_the_contact_is_known_and_checked_by(bridge, intercom, rf):
    """`{from: meta.work_email, to: email}`: the contact is made with the work email, no contact having it. The
    person's RF email is another contact's (a user made long before): the join rightly left it alone, so the
    late duplicate check must too (it looked by the RF email, and merged the new lead into that user, saying
    the two shared an email), and Intercom's first notification is no change of email."""
    doc = lead_settings()
    doc["leads"]["fields"][0] = {"from": "meta.work_email", "to": "email"}
    bridge.apply(doc)
    home = intercom.add_contact("ann@example.com", role="user", name="Ann at home")
    lead = new_lead(rf, meta=[{"field": "work_email", "value": "Ann@Work.example"}])
    bridge.post_join({**join_body(lead), "work_email": "Ann@Work.example"})
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@work.example")
    assert bridge.history(42, lead["id"])["link"]["email"] == "ann@work.example"
    assert bridge.later.release() == 1
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    assert intercom.merged_into == {} and intercom.get(home["id"])["custom_attributes"] == {}
    person = bridge.history(42, lead["id"])
    assert person["link"]["contact_id"] == contact["id"]
    assert [(h["event"], h["outcome"]) for h in person["history"]] == [("join_received", "received"),
                                                                      ("contact", "created")]


def test_an_owner_mapped_from_a_campaign_field_reaches_intercom_as_the_text_its_api_takes(bridge, intercom, rf):
    """Intercom 2.16 takes owner_id as a string (its OpenAPI file: create, update, contact, search): the
    bridge fixture's teardown fails on any request that breaks it."""
    settings = lead_settings()
    settings["leads"]["fields"].append({"from": "meta.owner", "to": "owner_id"})
    bridge.apply(settings)
    lead = new_lead(rf)
    assert bridge.post_join({**join_body(lead), "owner": "321"}).status_code == 202
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    assert contact["owner_id"] == "321"
    assert intercom.contract_violations == []


def test_the_contact_carries_the_email_as_typed_and_the_person_is_still_found_in_any_case(bridge, intercom, rf):
    """RF's "Ann.Smith@Example.com" is what her contact shows (as the hosted integration's Email → Email); the bridge
    knows her by the lower case (link, late duplicate check), and her next join, typed otherwise, finds the contact."""
    bridge.apply(lead_settings())
    lead = new_lead(rf, email=" Ann.Smith@Example.com ")
    bridge.post_join(join_body(lead))
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann.smith@example.com")
    assert contact["email"] == "Ann.Smith@Example.com"
    assert bridge.history(42, lead["id"])["link"]["email"] == "ann.smith@example.com"
    assert bridge.later.release() == 1             # the late duplicate check: nothing else has her email
    bridge.drain()
    again = new_lead(rf, email="ANN.SMITH@example.com")
    bridge.post_join(join_body(again))
    bridge.drain()
    assert [c["id"] for c in intercom.contacts_by_email("ann.smith@example.com")] == [contact["id"]]
    assert bridge.history(42, again["id"])["link"]["contact_id"] == contact["id"]
    assert intercom.merged_into == {} and intercom.contract_violations == []


def test_a_value_mapped_to_an_attribute_intercoms_api_does_not_write_is_recorded_not_sent(bridge, intercom, rf):
    """Settings stored before `settings apply` refused such a row: the join says the value was not written."""
    doc = lead_settings()
    doc["leads"]["fields"].append({"value": "fr", "to": "language_override"})
    bridge.rt.store.settings.put("42", doc, WORKSPACE)
    lead = new_lead(rf)
    bridge.post_join(join_body(lead))
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    [create] = [r for r in intercom.requests if (r["method"], r["path"]) == ("POST", "/contacts")]
    assert "language_override" not in create["json"] and contact["custom_attributes"]["lead_source"] == "referral"
    fields = [h for h in bridge.history(42, lead["id"])["history"] if h["event"] == "fields"]
    assert fields[0]["details"]["errors"] == [{
        "to": "language_override", "source": "fixed value",
        "reason": "Intercom's contact create and update requests have no such field (its API does not write it)"}]
