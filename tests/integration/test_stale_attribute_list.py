"""A join refused because the bridge's attribute list was stale heals in the same try: Intercom's UI
changed an attribute's type after a container read the list; the refused write makes the bridge read
the list once more (kept on the connection record for the other containers), convert again and write
again. A refusal the list does not explain stands, after that one read, with Intercom's reason."""
from __future__ import annotations

import yaml

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
