"""A write Intercom refuses because the bridge's attribute list was stale (a type changed in
Intercom's UI since it was read): the list is read again once, and the write planned and sent again
when that changes what it writes. The decision (domain/join.replan) and the use case on fakes."""
from __future__ import annotations

from chalicelib.domain import join as decide
from chalicelib.domain.link import LinkStatus
from chalicelib.domain.settings import parse_settings
from chalicelib.errors import Permanent
from tests.unit.scenario import history, link_of, run, settings, world
from tests.unit.test_join_use_case import comes_back, join

SIGNED_UP = "custom_attributes.signed_up"
PERSON = {"id": "7", "email": "ann@example.com", "first_name": "Ann", "type": "lead"}


def planned(attributes: dict) -> decide.Plan:
    made = decide.plan(parse_settings(settings()), PERSON, attributes)
    assert isinstance(made, decide.Plan)
    return made


def replanned(before: str, after: str) -> decide.Replan | None:
    old = planned({SIGNED_UP: {"data_type": before}})
    return decide.replan(parse_settings(settings()), PERSON, old, {SIGNED_UP: {"data_type": after}})


def test_a_type_changed_since_the_list_was_read_plans_the_value_again_in_the_new_type():
    again = replanned("string", "boolean")
    assert again is not None and again.changed == ("custom_attributes.signed_up",)
    assert again.plan.payload.attributes[SIGNED_UP] is False          # "No", now a boolean


def test_the_same_list_or_a_change_that_writes_the_same_value_is_no_reason_to_write_again():
    assert replanned("string", "string") is None
    old = planned({SIGNED_UP: {"data_type": "string"}})
    other = {SIGNED_UP: {"data_type": "string"}, "custom_attributes.unmapped": {"data_type": "integer"}}
    assert decide.replan(parse_settings(settings()), PERSON, old, other) is None


def test_a_value_of_another_type_is_another_write_even_when_python_calls_it_equal():
    rule = {"attribute": SIGNED_UP, "value": "1", "initial_value": "1"}
    doc = parse_settings(settings(rule))
    old = decide.plan(doc, PERSON, {SIGNED_UP: {"data_type": "boolean"}})
    assert isinstance(old, decide.Plan) and old.payload.attributes[SIGNED_UP] is True
    again = decide.replan(doc, PERSON, old, {SIGNED_UP: {"data_type": "integer"}})   # True == 1 in Python
    assert again is not None and again.plan.payload.attributes[SIGNED_UP] == 1
    assert type(again.plan.payload.attributes[SIGNED_UP]) is int


def test_a_value_the_new_type_cannot_hold_is_left_out_and_said():
    again = replanned("string", "integer")                            # "No" is not a number
    assert again is not None and SIGNED_UP not in again.plan.payload.attributes
    assert [e.to for e in again.plan.payload.errors] == [SIGNED_UP]


def refused(work, call: str) -> None:
    work.apis.intercom_.fail[call] = Permanent("Intercom answered 400 parameter_invalid: Custom attribute "
                                               "'signed_up' expects type boolean, got str", status=400)


def held(work) -> None:
    """The container holds the workspace's list (our marker in it) as it is now."""
    work.apis.intercom_.attributes["custom_attributes.rf_person"] = {"data_type": "string"}
    work.apis.hold_attributes()


def stale(work) -> None:
    """The container holds the list from before `signed_up` became a boolean in Intercom's UI."""
    held(work)
    work.apis.intercom_.attributes[SIGNED_UP] = {"data_type": "boolean"}


def test_a_create_refused_for_a_stale_type_is_written_again_with_the_fresh_list_in_the_same_try(monkeypatch):
    work = world()
    stale(work)
    refused(work, "create")
    metrics = counted(monkeypatch)
    assert run(work, join({"id": "7", "campaign_id": "42", "email": "ann@example.com", "type": "lead"}))["done"] == 1
    [contact] = work.apis.intercom_.contacts.values()
    assert contact["custom_attributes"]["signed_up"] is False
    assert work.apis.read_again == 1
    assert work.apis.intercom_.calls == ["search", "create", "create"]
    assert link_of(work).baseline is False
    assert history(work) == [("join_received", "received"), ("attributes", "read_again"), ("contact", "created")]
    assert [n for n, _ in metrics].count("StaleAttributeWritesHealed") == 1      # a healed write: counted once


def test_an_update_of_an_existing_contact_refused_for_a_stale_type_is_written_again():
    work = world()
    work.apis.intercom_.add("ann@example.com", role="user")
    stale(work)
    refused(work, "update")
    run(work, join({"id": "7", "campaign_id": "42", "email": "ann@example.com", "first_name": "Ann",
                    "type": "lead"}))
    [contact] = work.apis.intercom_.contacts.values()
    assert contact["name"] == "Ann" and link_of(work).status is LinkStatus.LINKED
    assert work.apis.intercom_.calls == ["search", "get", "update", "update"]
    assert ("attributes", "read_again") in history(work)


def test_a_refusal_the_fresh_list_does_not_explain_stands_after_one_read():
    work = world()
    held(work)                                          # Intercom has changed nothing since
    refused(work, "create")
    assert run(work, join({"id": "7", "campaign_id": "42", "email": "ann@example.com", "type": "lead"}))["dead"] == 1
    assert work.apis.read_again == 1 and work.apis.intercom_.calls == ["search", "create"]
    assert link_of(work).reason == ("Intercom answered 400 parameter_invalid: Custom attribute 'signed_up' expects "
                                    "type boolean, got str")
    # A refusal that is not a 400 (the workspace's plan, a revoked token) is not about the list: no read.
    again = world()
    stale(again)
    again.apis.intercom_.fail["create"] = Permanent("Intercom answered 403 api_plan_restricted: no", status=403)
    assert run(again, join({"id": "7", "campaign_id": "42", "email": "ann@example.com", "type": "lead"}))["dead"] == 1
    assert again.apis.read_again == 0 and again.apis.intercom_.calls == ["search", "create"]


def counted(monkeypatch) -> list[tuple[str, float]]:
    from chalicelib.services import join as service
    seen: list[tuple[str, float]] = []
    monkeypatch.setattr(service, "count", lambda name, value=1: seen.append((name, value)))
    return seen


def test_a_write_refused_again_after_the_list_was_read_again_is_not_sent_a_third_time_nor_counted_healed(
        monkeypatch):
    work = world()
    stale(work)
    intercom = work.apis.intercom_

    def create(body: dict) -> dict:                    # Intercom refuses every create
        intercom.calls.append("create")
        raise Permanent("Intercom answered 400 parameter_invalid: no", status=400)
    intercom.create_contact = create                   # type: ignore[method-assign]
    metrics = counted(monkeypatch)
    assert run(work, join({"id": "7", "campaign_id": "42", "email": "ann@example.com", "type": "lead"}))["dead"] == 1
    assert intercom.calls == ["search", "create", "create"] and work.apis.read_again == 1
    assert "StaleAttributeWritesHealed" not in [n for n, _ in metrics]



# --- review: what the second read and the second write leave behind ----------------------------------

def test_a_refused_create_whose_list_cannot_be_read_again_is_not_taken_for_a_create_that_may_exist():
    """The create was refused (400: no contact was made); reading the list again then fails (Intercom
    busy). The next try must not wait for search as if a contact might exist unseen."""
    from chalicelib.errors import Transient
    work = world()
    stale(work)
    refused(work, "create")

    def busy(workspace: str, since: float) -> dict:
        raise Transient("Intercom answered 503 to GET /data_attributes")
    work.apis.attributes_again = busy               # type: ignore[method-assign]
    assert "GET /data_attributes" in comes_back(work, join({"id": "7", "campaign_id": "42",
                                                            "email": "ann@example.com", "type": "lead"}))
    assert link_of(work).uncertain_since is None                # no contact can exist: nothing to wait for
    assert run(work, join({"id": "7", "campaign_id": "42", "email": "ann@example.com", "type": "lead"}))["done"] == 1


def test_a_field_that_cannot_be_converted_is_counted_once_when_the_write_is_planned_again(monkeypatch):
    """`age` is a number in both lists ("Ann" never converts); `signed_up` became a boolean since."""
    work = world(settings(fields=[{"from": "email", "to": "email"}, {"from": "first_name", "to": "custom_attributes.age"}]))
    work.apis.intercom_.attributes["custom_attributes.age"] = {"data_type": "integer"}
    stale(work)
    refused(work, "create")
    metrics = counted(monkeypatch)
    run(work, join({"id": "7", "campaign_id": "42", "email": "ann@example.com", "first_name": "Ann", "type": "lead"}))
    assert link_of(work).status is LinkStatus.LINKED and work.apis.read_again == 1
    assert sum(v for n, v in metrics if n == "FieldConversionErrors") == 1


def test_an_update_planned_again_with_nothing_left_to_write_links_the_contact_and_says_so():
    """`nick` was text when the list was read, a number now: "Ann" cannot be one, so the update
    planned again has nothing to write (the contact has its name already). Without a tag that is a
    link, said as the update with nothing to write is when first planned, not "marked as referred"."""
    work = world(settings(fields=[{"from": "email", "to": "email"}, {"from": "first_name", "to": "name"},
                                  {"from": "first_name", "to": "custom_attributes.nick"}]))
    contact = work.apis.intercom_.add("ann@example.com", role="user")
    contact["name"] = "Ann"
    work.apis.intercom_.attributes["custom_attributes.nick"] = {"data_type": "string"}
    held(work)
    work.apis.intercom_.attributes["custom_attributes.nick"] = {"data_type": "integer"}
    refused(work, "update")
    outcome = run(work, join({"id": "7", "campaign_id": "42", "email": "ann@example.com", "first_name": "Ann",
                              "type": "lead"}))
    assert outcome["done"] == 1 and work.apis.intercom_.calls == ["search", "get", "update"]
    assert link_of(work).status is LinkStatus.LINKED
    [said] = [e for e in work.store.history.entries(link_of(work).ref) if e.event == "contact"]
    assert "nothing to write" in (said.reason or "") and "marked as referred" not in (said.reason or "")


def test_a_create_sent_again_whose_answer_is_lost_is_found_by_its_marker_not_made_a_third_time():
    from chalicelib.errors import Uncertain
    from tests.unit.test_join_use_case import LAG
    work = world()
    stale(work)
    refused(work, "create")                                            # the first create: refused
    work.apis.intercom_.after["create"] = Uncertain("Intercom did not answer POST /contacts in time")   # the second
    lead = {"id": "7", "campaign_id": "42", "email": "ann@example.com", "type": "lead"}
    comes_back(work, join(lead))
    assert link_of(work).uncertain_since == work.clock.now
    work.clock.now += LAG
    assert run(work, join(lead))["done"] == 1
    [contact] = work.apis.intercom_.contacts.values()
    assert work.apis.intercom_.calls.count("create") == 2
    assert (link_of(work).contact_id, link_of(work).baseline) == (contact["id"], False)
