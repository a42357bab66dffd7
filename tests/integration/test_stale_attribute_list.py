"""A join refused because the bridge's attribute list was stale heals in the same try: Intercom's UI
changed an attribute's type after a container read the list; the refused write makes the bridge read
the list once more (kept on the connection record for the other containers), convert again and write
again. A refusal the list does not explain stands, after that one read, with Intercom's reason."""
from __future__ import annotations

import yaml

from chalicelib.services.admin import apply_settings

from .conftest import WORKSPACE, join_body, lead_settings, new_lead
from .test_call_counts import demo_settings
from .test_cold_worker import first_record

VISITS = {**demo_settings(), "qualification": {"attribute": "custom_attributes.visits", "value": "5",
                                               "initial_value": "0"}}


def held_list_then_number(bridge, intercom, rf, clock) -> float:
    """The settings applied and a join done (the list read and kept, `visits` text), then its type
    changed to a number in Intercom's UI, a minute later. Returns when the list was read."""
    intercom.define_attribute("visits", "string")
    bridge.apply(VISITS)
    read_at = clock.now
    bridge.post_join(join_body(new_lead(rf, email="warm@example.com")))
    bridge.drain()
    assert intercom.contacts_by_email("warm@example.com")[0]["custom_attributes"]["visits"] == "0"
    intercom.attributes["custom_attributes.visits"]["data_type"] = "integer"     # changed in Intercom's UI
    clock.now += 60
    return read_at


def test_a_type_changed_in_intercom_after_the_list_was_read_is_written_as_a_number_in_the_same_try(
        bridge, intercom, rf, counter, clock):
    held_list_then_number(bridge, intercom, rf, clock)
    lead = new_lead(rf, email="cold@example.com")
    bridge.post_join(join_body(lead))
    with counter.measure() as counts:
        bridge.drain()

    assert intercom.contacts_by_email("cold@example.com")[0]["custom_attributes"]["visits"] == 0
    assert bridge.dead_letters() == []
    # The refused create, one read of the list, the create again: nothing else added to a join's calls.
    assert sorted(counts.intercom_requests) == ["GET /data_attributes", "POST /contacts", "POST /contacts",
                                                "POST /contacts/search", "POST /tags"]
    assert counts.intercom_requests.index("GET /data_attributes") == 2        # between the two creates
    history = bridge.history(42, lead["id"])
    assert history["link"]["status"] == "linked" and history["link"]["baseline"] == 0
    [again] = [h for h in history["history"] if h["outcome"] == "read_again"]
    assert again["reason"].startswith("attribute types changed in Intercom: read again")
    assert again["details"]["attributes"] == ["custom_attributes.visits"]
    assert "Custom attribute 'visits' expects type integer" in again["details"]["refused"]
    # Kept for the other containers: a cold one now uses the number type without reading the list.
    kept = bridge.rt.store.connections.workspace(WORKSPACE).attribute_list
    assert kept.attributes["custom_attributes.visits"]["data_type"] == "integer" and kept.read_at == clock.now


def test_a_cold_container_adopting_the_list_from_before_the_change_heals_too(bridge, intercom, rf, counter, clock):
    """The README's case: a cold container uses the list another kept less than 5 minutes ago."""
    read_at = held_list_then_number(bridge, intercom, rf, clock)
    bridge.post_join(join_body(new_lead(rf, email="cold@example.com")))
    _, calls = first_record(bridge, counter, read_at + 60)

    assert intercom.contacts_by_email("cold@example.com")[0]["custom_attributes"]["visits"] == 0
    assert sorted(calls) == ["GET /data_attributes", "POST /contacts", "POST /contacts", "POST /contacts/search",
                             "POST /tags"]


def test_a_refusal_the_list_does_not_explain_is_read_again_once_and_not_written_again(bridge, intercom, rf, counter,
                                                                                    clock):
    bridge.apply(lead_settings())
    clock.now += 60                                       # the list the worker holds is a minute old
    lead = new_lead(rf)
    intercom.fail_next("POST", r"^/contacts$", 400, times=2, body={"type": "error.list", "errors": [
        {"code": "parameter_invalid", "message": "Email address is invalid"}]})
    bridge.post_join(join_body(lead))
    with counter.measure() as counts:
        bridge.drain()

    [dead] = bridge.dead_letters()
    assert dead["reason"] == "Intercom answered 400 parameter_invalid: Email address is invalid"
    assert dead["attempts"] == 1
    # One read of the list (it says what the worker's did), and the create not sent again.
    assert sorted(counts.intercom_requests) == ["GET /data_attributes", "POST /contacts", "POST /contacts/search"]
    assert intercom.contacts_by_email("ann@example.com") == []


def test_an_unticked_box_created_after_the_worker_read_the_list_does_not_qualify_an_is_set_rule(
        bridge, intercom, rf, clock):
    """The walkthrough's case: a boolean attribute created in Intercom, then a rule `is_set` on it applied by the
    operator (whose own read of the list sees it), while the worker's list, read minutes before, names no such
    attribute: the worker takes it as text, but Intercom's false (an unticked box) is still not set; true is."""
    from chalicelib.services.admin import apply_settings

    bridge.apply(demo_settings())
    bridge.post_join(join_body(new_lead(rf, email="first@example.com")))
    bridge.drain()                                                   # the worker's list read, without `paid`
    intercom.define_attribute("paid", "boolean")
    rule = {"attribute": "custom_attributes.paid", "operator": "is_set"}
    apply_settings(bridge.operator(), yaml.safe_dump({**lead_settings(), "qualification": rule}))
    clock.now += 60                                                  # within the worker's 5 minutes
    lead = new_lead(rf, email="box@example.com")
    bridge.post_join(join_body(lead))
    bridge.drain()
    assert "custom_attributes.paid" not in bridge.rt.attributes(WORKSPACE)      # still the list from before
    [contact] = intercom.contacts_by_email("box@example.com")
    for ticked, qualified in ((False, []), (True, [lead["id"]])):
        intercom.update_contact(contact["id"], paid=ticked)
        assert bridge.notify("contact.lead.updated", contact["id"]).status_code == 200
        bridge.drain()
        assert [user_id for user_id, _ in rf.qualification_events] == qualified
    evaluations = [h for h in bridge.history(42, lead["id"])["history"] if h["event"] == "evaluation"]
    assert [(e["details"]["actual"], e["details"]["met"]) for e in evaluations] == [(False, False), (True, True)]


def _rule_after_the_list(bridge, intercom, rf, clock, name: str, data_type: str, rule: dict) -> str:
    """The worker's list read (a join done) without `name`; then `name` created in Intercom and a rule on it applied
    (the operator's read sees it), a minute later: the worker's list, within its 5 minutes, still names none.
    Returns the id of a lead joined then (her contact's value not set yet)."""
    warm_list(bridge, rf)
    intercom.define_attribute(name, data_type)
    apply_settings(bridge.operator(), yaml.safe_dump({**lead_settings(), "qualification": rule}))
    clock.now += 60
    lead = new_lead(rf, email="new@example.com")
    bridge.post_join(join_body(lead))
    bridge.drain()
    return lead["id"]


def _set_and_notify(bridge, intercom, email: str, **values) -> None:
    [contact] = intercom.contacts_by_email(email)
    intercom.update_contact(contact["id"], **values)
    assert bridge.notify("contact.lead.updated", contact["id"]).status_code == 200
    bridge.drain()


def test_a_gte_rule_on_a_number_attribute_created_after_the_worker_read_the_list_compares_numbers(
        bridge, intercom, rf, clock):
    """10 meets gte 9.5, 9 does not. (Compared as text, the worker's number is "10", which gte still reads as a
    number: this held before the list was read again too; only the list the worker holds afterwards differs.)"""
    rule = {"attribute": "custom_attributes.points", "operator": "gte", "value": "9.5"}
    lead = _rule_after_the_list(bridge, intercom, rf, clock, "points", "float", rule)
    for score, qualified in ((9.0, []), (10.0, [lead])):
        _set_and_notify(bridge, intercom, "new@example.com", points=score)
        assert [user_id for user_id, _ in rf.qualification_events] == qualified
    assert "custom_attributes.points" in bridge.rt.attributes(WORKSPACE)          # read again: it names it now


def test_a_gte_rule_on_a_date_attribute_created_after_the_worker_read_the_list_compares_dates(
        bridge, intercom, rf, clock):
    """Intercom sends a date as unix seconds; the rule's value is a date: as text, the two never compare (no lead
    would qualify, whatever the date)."""
    rule = {"attribute": "custom_attributes.paid_on", "operator": "gte", "value": "2026-01-01"}
    lead = _rule_after_the_list(bridge, intercom, rf, clock, "paid_on", "date", rule)
    for day, qualified in ((1764547200, []), (1767312000, [lead])):        # 2025-12-01, then 2026-01-02
        _set_and_notify(bridge, intercom, "new@example.com", paid_on=day)
        assert [user_id for user_id, _ in rf.qualification_events] == qualified


def test_a_date_field_mapped_to_an_attribute_created_after_the_worker_read_the_list_is_written_as_a_timestamp(
        bridge, intercom, rf, counter, clock):
    """The join converts with the list read again (the mapping names an attribute it does not): no refused write."""
    warm_list(bridge, rf)
    intercom.define_attribute("renewed_on", "date")
    doc = demo_settings()
    doc["leads"]["fields"] = [*doc["leads"]["fields"], {"from": "signed_up_at", "to": "custom_attributes.renewed_on"}]
    apply_settings(bridge.operator(), yaml.safe_dump(doc))       # (the operator's read of the list sees it)
    clock.now += 60
    lead = new_lead(rf, email="dated@example.com")
    bridge.post_join({**join_body(lead), "signed_up_at": "2026-03-01T10:00:00Z"})
    with counter.measure() as counts:
        bridge.drain()

    assert intercom.contacts_by_email("dated@example.com")[0]["custom_attributes"]["renewed_on"] == 1772359200
    assert bridge.dead_letters() == []
    # One read of the list before the create (none after a refusal: there is none).
    assert sorted(counts.intercom_requests) == ["GET /data_attributes", "POST /contacts", "POST /contacts/search",
                                                "POST /tags"]
    assert counts.intercom_requests.index("GET /data_attributes") == 0
    assert not [h for h in bridge.history(42, lead["id"])["history"] if h["outcome"] == "read_again"]


def warm_list(bridge, rf) -> None:
    """The demo campaign applied and one join done: the worker holds the workspace's list, read now."""
    bridge.apply(demo_settings())
    bridge.post_join(join_body(new_lead(rf, email="first@example.com")))
    bridge.drain()


def test_an_attribute_not_in_the_workspace_costs_one_read_of_the_list_per_interval(bridge, intercom, rf, counter,
                                                                                   clock):
    """Settings naming an attribute the workspace does not have (applied --offline: doctor says so): each record's
    look-up of its type (the worker's, as the rule's and the join's do) reads the list again at most once per
    UNLISTED_RECHECK, however many records name it; one the list names reads nothing (the common path)."""
    from chalicelib.runtime import UNLISTED_RECHECK

    warm_list(bridge, rf)
    reads = []
    for step in (1, UNLISTED_RECHECK - 1, 1, UNLISTED_RECHECK - 2, 1, UNLISTED_RECHECK):    # since the list was read
        clock.now += step
        with counter.measure() as counts:
            for _ in range(3):                                   # three records at once
                assert "custom_attributes.nowhere" not in bridge.rt.attributes(WORKSPACE, ["custom_attributes.nowhere"])
                assert "custom_attributes.signed_up" in bridge.rt.attributes(WORKSPACE, ["custom_attributes.signed_up"])
        reads.append(counts.intercom_requests.count("GET /data_attributes"))
    assert reads == [0, 1, 0, 0, 1, 1]
    # Each read kept for the other containers, as any read of the list is.
    assert bridge.rt.store.connections.workspace(WORKSPACE).attribute_list.read_at == clock.now
