"""Issue 9, cold start: the types `settings apply` keeps with a campaign's settings, and the marker the
connection record notes, are what the worker uses instead of Intercom's attribute list; without them
(settings applied offline or before), it reads the list as before. On the store's twin and fake APIs."""
from __future__ import annotations

from chalicelib.domain.mapping import KeptTypes
from chalicelib.domain.settings import parse_settings, types_kept
from chalicelib.errors import Permanent
from tests.fakes import FakeApis, FakeIntercom, FakeRF, FakeWork
from tests.unit.scenario import event, link_of, run
from tests.unit.test_join_use_case import LEAD, RF_USERS, comes_back, join

MARKER = "custom_attributes.rf_person"
SETTINGS = {
    "campaign_id": "42", "workspace": "ws",
    "leads": {"action": "create_lead", "fields": [{"from": "email", "to": "email"},
                                                  {"value": "7", "to": "custom_attributes.visits"}]},
    "qualification": {"attribute": "custom_attributes.score", "operator": "gte", "value": "5",
                      "initial_value": "0"},
}
KEPT = {"email": "string", "custom_attributes.visits": "integer", "custom_attributes.score": "integer"}


def world(kept=KEPT, marker_noted=True, listed=None) -> FakeWork:
    """Intercom's list (`listed`) says nothing of the campaign's attributes unless given: what is
    converted right comes from the kept types."""
    apis = FakeApis(FakeIntercom(dict(listed or {})), FakeRF(dict(RF_USERS)))
    if marker_noted:
        apis.noted.add(MARKER)
    work = FakeWork(apis)
    work.store.settings.put("42", {**SETTINGS, **({"kept_types": kept} if kept is not None else {})}, "ws")
    return work


def test_settings_stored_before_types_were_kept_still_read_and_store_without_them():
    settings = parse_settings(SETTINGS)
    assert settings.kept_types is None and "kept_types" not in settings.to_document()
    assert parse_settings({**SETTINGS, "kept_types": KEPT}).kept_types == KEPT


def test_only_the_types_of_the_attributes_the_settings_use_are_kept():
    workspace = {name: {"full_name": name, "data_type": kind} for name, kind in (
        ("email", "string"), ("name", "string"), ("custom_attributes.visits", "integer"),
        ("custom_attributes.score", "integer"), ("custom_attributes.link", "string"),
        ("custom_attributes.count", "integer"), ("custom_attributes.plan", "string"),
        ("custom_attributes.unused", "float"))}
    settings = parse_settings({**SETTINGS, "referrers": {"action": "create_user", "fields": [
        {"from": "email", "to": "email"}]}, "sync": {
        "fields": [{"from": "email", "to": "email"}, {"from": "name", "to": "first_name"},
                   {"from": "custom_attributes.plan", "to": "meta.plan"}, {"from": "id", "to": "meta.intercom_id"}],
        "referral_link_attribute": "custom_attributes.link", "referral_count_attribute": "custom_attributes.count"}})
    assert types_kept(settings, workspace) == {
        "email": "string", "name": "string", "custom_attributes.visits": "integer",
        "custom_attributes.score": "integer", "custom_attributes.link": "string",
        "custom_attributes.count": "integer", "custom_attributes.plan": "string"}


def test_kept_types_answer_without_reading_the_list_and_a_name_not_kept_reads_it():
    reads = []

    def live():
        reads.append(1)
        return {"custom_attributes.plan": {"data_type": "string"}}
    types = KeptTypes({"custom_attributes.visits": "integer"}, live)
    assert types.get("custom_attributes.visits") == {"full_name": "custom_attributes.visits", "data_type": "integer"}
    assert reads == []
    assert types.get("custom_attributes.plan") == {"data_type": "string"} and types.get("nope") is None
    assert len(reads) == 2 and set(types) == {"custom_attributes.visits", "custom_attributes.plan"}


def test_a_join_converts_with_the_kept_types_and_reads_no_attribute_list():
    work = world()
    assert run(work, join()) == {"done": 1, "retry": 0, "dead": 0}
    [contact] = work.apis.intercom_.contacts.values()
    # 7 and 0 as whole numbers: the kept types (Intercom's list, not read, says nothing of them).
    assert contact["custom_attributes"] == {"visits": 7, "score": 0, "rf_person": "42#7"}
    assert work.apis.listed == 0 and "attribute" not in work.apis.intercom_.calls


def test_a_contact_event_judges_with_the_kept_type_and_reads_no_attribute_list():
    work = world()
    run(work, join())
    [contact] = work.apis.intercom_.contacts.values()
    run(work, event({**contact, "custom_attributes": {**contact["custom_attributes"], "score": 12}}))
    assert work.apis.rf_.qualified == ["7"] and work.apis.listed == 0     # 12 >= 5 as numbers (not as text)


def test_settings_applied_offline_read_the_list_once_and_the_marker_is_then_noted():
    work = world(kept=None, marker_noted=False, listed={
        "custom_attributes.visits": {"data_type": "integer"}, "custom_attributes.score": {"data_type": "integer"}})
    assert run(work, join()) == {"done": 1, "retry": 0, "dead": 0}
    [contact] = work.apis.intercom_.contacts.values()
    assert contact["custom_attributes"] == {"visits": 7, "score": 0, "rf_person": "42#7"}
    assert work.apis.listed >= 1 and work.apis.intercom_.calls.count("attribute") == 1     # the marker made
    assert MARKER in work.apis.noted


def test_an_attribute_the_kept_types_lack_is_read_from_the_list():
    work = world(kept={"email": "string", "custom_attributes.score": "integer"},
                 listed={"custom_attributes.visits": {"data_type": "integer"}})
    assert run(work, join()) == {"done": 1, "retry": 0, "dead": 0}
    [contact] = work.apis.intercom_.contacts.values()
    assert contact["custom_attributes"]["visits"] == 7 and work.apis.listed >= 1


def test_a_create_refused_for_a_noted_marker_drops_the_note_and_the_next_try_looks_again():
    """The marker was taken as existing from the connection record, and Intercom says it is not
    there: the record comes back (not a dead letter), and its next try makes the marker again."""
    work = world()
    work.apis.intercom_.fail["create"] = Permanent("Intercom answered 400: Custom attribute 'rf_person' does not exist")
    assert "rf_person" in comes_back(work, join())
    assert MARKER not in work.apis.noted
    assert run(work, join()) == {"done": 1, "retry": 0, "dead": 0}
    assert work.apis.intercom_.calls.count("attribute") == 1 and MARKER in work.apis.noted
    assert link_of(work).contact_id


def test_a_create_refused_for_a_marker_just_looked_at_is_a_dead_letter_as_before():
    """The list was read in this try (the marker listed): Intercom's refusal is the join's reason, as before."""
    work = world(marker_noted=False, listed={MARKER: {"data_type": "string"}})
    work.apis.intercom_.fail["create"] = Permanent("Intercom answered 400: Custom attribute 'rf_person' is archived")
    assert run(work, join()) == {"done": 0, "retry": 0, "dead": 1}
    assert work.apis.listed == 1 and "archived" in work.queue.dead[0]["reason"]
