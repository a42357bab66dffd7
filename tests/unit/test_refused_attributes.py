"""A write Intercom refuses because of mapped attributes (archived in its UI, a rule the value breaks): the
contact is written again without them, in the same try, and each is said as a field not written with
Intercom's words. A refusal naming no such attribute (or the email, or our marker) refuses the whole
write. The decision (domain/join.refused_attributes, without) and the use case on fakes."""
from __future__ import annotations

import pytest

from chalicelib.domain import join as decide
from chalicelib.domain.link import LinkStatus
from chalicelib.domain.settings import parse_settings
from chalicelib.errors import Permanent
from tests.unit.scenario import history, link_of, run
from tests.unit.test_join_use_case import LEAD, SETTINGS, join, world

PERSON = {"id": "7", "email": "ann@example.com", "first_name": "Ann", "type": "lead", "referrer_name": "Rita"}


def planned() -> decide.Plan:
    made = decide.plan(parse_settings(SETTINGS), PERSON, {})
    assert isinstance(made, decide.Plan)
    return made


def answer(*errors: dict) -> dict:
    return {"type": "error.list", "request_id": "r1", "errors": list(errors)}


ARCHIVED = {"code": "parameter_invalid", "message": "Custom attribute 'referred_by' is archived"}


@pytest.mark.parametrize("body, refused", [
    (answer(ARCHIVED), {"custom_attributes.referred_by": "Custom attribute 'referred_by' is archived"}),
    # the optional `field` names it, a custom attribute by its name, a standard one as written
    (answer({"code": "parameter_invalid", "message": "too long", "field": "referred_by"}),
     {"custom_attributes.referred_by": "too long"}),
    (answer({"code": "parameter_invalid", "message": "name is invalid", "field": "name"}), {"name": "name is invalid"}),
    (answer(ARCHIVED, {"code": "parameter_invalid", "message": "Custom attribute \"signed_up\" expects type boolean"}),
     {"custom_attributes.referred_by": "Custom attribute 'referred_by' is archived",
      "custom_attributes.signed_up": "Custom attribute \"signed_up\" expects type boolean"}),
    # refused as a whole: nothing named, one error of several naming nothing, the email, our marker, no error list
    (answer({"code": "parameter_invalid", "message": "Email address is invalid"}), {}),
    (answer(ARCHIVED, {"code": "parameter_invalid", "message": "Request body is invalid"}), {}),
    (answer({"code": "parameter_invalid", "message": "invalid", "field": "email"}), {}),
    (answer({"code": "parameter_invalid", "message": "Custom attribute 'rf_person' is archived"}), {}),
    (answer({"code": "parameter_invalid", "message": "Custom attribute 'unmapped' does not exist"}), {}),
    ("Bad Request", {}), (None, {}), ({"errors": "no"}, {}),
])
def test_the_attributes_a_refusal_names_are_those_the_write_carries_but_the_email_and_marker(body, refused):
    assert decide.refused_attributes(planned(), body) == refused


def test_a_plan_without_the_refused_attributes_says_each_with_its_source_and_intercoms_words():
    plan = planned()
    left = decide.without(plan, {"custom_attributes.referred_by": "Custom attribute 'referred_by' is archived",
                                 "custom_attributes.signed_up": "Custom attribute 'signed_up' is archived"})
    assert set(left.payload.attributes) == set(plan.payload.attributes) - {
        "custom_attributes.referred_by", "custom_attributes.signed_up"}
    assert [(e.to, e.source, e.reason, e.kind) for e in left.payload.errors] == [
        ("custom_attributes.referred_by", "from referrer_name", "Intercom refused it: Custom attribute 'referred_by' "
         "is archived", "refused by Intercom"),
        ("custom_attributes.signed_up", "fixed value", "Intercom refused it: Custom attribute 'signed_up' is archived",
         "refused by Intercom")]                        # (the rule's initial value: written as a fixed value)


def archived(work, *names: str) -> None:
    """`names` are archived in Intercom's UI: a write naming one is refused (400), the first one it names."""
    fake = work.apis.intercom_
    for call, name in (("create_contact", "create"), ("update_contact", "update")):
        real = getattr(fake, call)

        def write(*args, real=real, name=name):
            named = [n for n in args[-1].get("custom_attributes", {}) if n in names]
            if not named:
                return real(*args)
            fake.calls.append(name)
            raise Permanent(f"Intercom answered 400 parameter_invalid: Custom attribute '{named[0]}' is archived",
                            status=400, body=answer({"code": "parameter_invalid",
                                                     "message": f"Custom attribute '{named[0]}' is archived"}))
        setattr(fake, call, write)


def fields_not_written(work) -> list[dict]:
    [entry] = [e for e in work.store.history.entries(link_of(work).ref) if e.event == "fields"]
    return entry.details["errors"]


def test_a_create_refused_for_two_attributes_in_turn_is_written_without_both_once():
    work = world()
    archived(work, "referred_by", "campaign")
    assert run(work, join())["done"] == 1
    [contact] = work.apis.intercom_.contacts.values()           # one contact: a refused create made none
    assert contact["custom_attributes"] == {"signed_up": "No", "rf_person": "42#7"} and contact["name"] == "Ann"
    assert work.apis.intercom_.calls == ["attribute", "search", "create", "create", "create", "tag"]     # one call more a refusal
    assert link_of(work).status is LinkStatus.LINKED and link_of(work).baseline == "No"
    assert [(e["to"], e["reason"]) for e in fields_not_written(work)] == [
        ("custom_attributes.referred_by", "Intercom refused it: Custom attribute 'referred_by' is archived"),
        ("custom_attributes.campaign", "Intercom refused it: Custom attribute 'campaign' is archived")]
    assert history(work) == [("join_received", "received"), ("fields", "not_written"), ("contact", "created"),
                             ("tag", "tagged")]


def test_an_update_of_an_existing_contact_refused_for_an_attribute_is_written_without_it():
    work = world()
    work.apis.intercom_.add("ann@example.com", role="user")
    archived(work, "referred_by")
    assert run(work, join())["done"] == 1
    [contact] = work.apis.intercom_.contacts.values()
    assert contact["name"] == "Ann" and "referred_by" not in contact["custom_attributes"]
    assert work.apis.intercom_.calls == ["attribute", "search", "get", "update", "update", "tag"]
    assert [e["to"] for e in fields_not_written(work)] == ["custom_attributes.referred_by"]


def test_a_refusal_of_our_marker_refuses_the_whole_create_no_contact_is_made_without_it():
    work = world()
    archived(work, "rf_person")
    assert run(work, join({**LEAD}))["dead"] == 1
    assert work.apis.intercom_.contacts == {} and work.apis.intercom_.calls == ["attribute", "search", "create"]
    assert link_of(work).reason == "Intercom answered 400 parameter_invalid: Custom attribute 'rf_person' is archived"


SCORE = "custom_attributes.score"


def test_a_number_attribute_archived_since_the_list_was_read_is_no_type_change_it_is_left_out():
    """Intercom's attribute list leaves archived (and deleted) attributes out: the fresh list does not say the
    attribute is text now, so the value is not written again as text (a refusal more, and a history saying
    the contact was written with the types Intercom has now): the contact is written without it."""
    doc = {**SETTINGS, "leads": {**SETTINGS["leads"], "fields": [*SETTINGS["leads"]["fields"],
                                                                   {"from": "id", "to": SCORE}]}}
    work = world(doc)
    work.apis.intercom_.attributes[SCORE] = {"data_type": "integer"}
    work.apis.hold_attributes()                          # the container's list, from before it was archived
    del work.apis.intercom_.attributes[SCORE]
    archived(work, "score")
    assert run(work, join())["done"] == 1
    [contact] = work.apis.intercom_.contacts.values()
    assert "score" not in contact["custom_attributes"] and work.apis.read_again == 1
    assert work.apis.intercom_.calls == ["attribute", "search", "create", "create", "tag"]
    assert [(e["to"], e["reason"]) for e in fields_not_written(work)] == [
        (SCORE, "Intercom refused it: Custom attribute 'score' is archived")]
    assert history(work) == [("join_received", "received"), ("fields", "not_written"), ("contact", "created"),
                             ("tag", "tagged")]


def test_an_attribute_the_fresh_list_no_longer_shows_is_no_reason_to_plan_the_write_again():
    old = decide.plan(parse_settings(SETTINGS), PERSON, {"custom_attributes.signed_up": {"data_type": "boolean"}})
    assert isinstance(old, decide.Plan) and old.payload.attributes["custom_attributes.signed_up"] is False
    assert decide.replan(parse_settings(SETTINGS), PERSON, old, {}) is None


def test_an_update_left_with_nothing_to_write_once_intercom_refused_it_does_not_say_every_field_had_a_value():
    work = world()
    work.apis.intercom_.add("ann@example.com", role="user", campaign="Friends of Acme")["name"] = "Ann"
    archived(work, "referred_by")                     # the one mapped field the contact has no value for
    assert run(work, join())["done"] == 1
    assert work.apis.intercom_.calls == ["attribute", "search", "get", "update", "tag"]
    [updated] = [e for e in work.store.history.entries(link_of(work).ref) if e.event == "contact"]
    assert updated.reason == ("a user with this email already exists (found by email search); duplicates is update, "
                              "but Intercom refused custom_attributes.referred_by (fields not written) and it already "
                              "has a value for every other mapped field (kept): only the tag is added; linked")
