"""Reconciliation: what a run queues (overdue links, one search of changes per workspace, the sweep of
young pending leads), and the worker's search of changed contacts — on the twin and fakes."""
from __future__ import annotations

import pytest

from chalicelib import messages
from chalicelib.domain.changes import DAY, changes_query, target_filter
from chalicelib.domain.link import LinkStatus, PersonRef
from chalicelib.domain.qualification import QState
from chalicelib.domain.settings import Qualification
from chalicelib.messages import ChangesMessage
from chalicelib.services.reconcile import past_sweep_age, reconcile
from tests.unit.scenario import WS, check, history, joined, link_of, reasons, run, set_value, settings, world

YES = Qualification(attribute="custom_attributes.signed_up", value="Yes")


def connected(work):
    work.store.connections.put_workspace(WS, secrets={"token", "client-secret"})
    return work


def changed(work, contact, value, at=None):
    """The contact changed in Intercom (its webhook lost)."""
    set_value(work, contact, value)
    contact["updated_at"] = int(at if at is not None else work.clock())
    return contact


def changes(work, at=None) -> dict:
    return ChangesMessage(workspace=WS, at=at if at is not None else work.clock()).wire()


def kinds(work) -> list[str]:
    return [messages.read(m).kind for m in work.queue.sent]


# --- the query ----------------------------------------------------------------------------------
def test_the_query_asks_for_contacts_changed_since_a_day_earlier_at_the_target():
    since = 1_790_000_000.0
    assert changes_query([(YES, "string")], since) == {"operator": "AND", "value": [
        {"field": "updated_at", "operator": ">", "value": int(since) - DAY},
        {"field": "custom_attributes.signed_up", "operator": "=", "value": "Yes"}]}


def test_several_targets_make_an_or_of_ands_and_duplicates_are_asked_once():
    plan = Qualification(attribute="custom_attributes.plan", value="pro", operator="contains")
    seats = Qualification(attribute="custom_attributes.seats", value="10", operator="gte")
    query = changes_query([(YES, "string"), (plan, "string"), (YES, "string"), (seats, "integer")], 0)
    assert query["operator"] == "OR" and [g["value"][1] for g in query["value"]] == [
        {"field": "custom_attributes.signed_up", "operator": "=", "value": "Yes"},
        {"field": "custom_attributes.plan", "operator": "~", "value": "pro"},
        {"field": "custom_attributes.seats", "operator": ">=", "value": 10}]


@pytest.mark.parametrize("rule,data_type", [
    (Qualification(attribute="custom_attributes.signed_up", value=None, operator="is_set"), "string"),
    (Qualification(attribute="custom_attributes.score", value=2.5, operator="gte"), "float"),
    (Qualification(attribute="custom_attributes.paid_on", value=1_790_000_000), "date"),
    (Qualification(attribute="custom_attributes.plan", value="pro", operator="gte"), "string"),
])
def test_a_rule_search_cannot_express_asks_for_every_changed_contact(rule, data_type):
    assert target_filter(rule, data_type) is None
    assert changes_query([(YES, "string"), (rule, data_type)], 0) == {
        "field": "updated_at", "operator": ">", "value": -DAY}


def test_the_query_is_what_intercoms_openapi_file_accepts():
    from tests.support.intercom_contract import validate_request
    import json
    plan = Qualification(attribute="custom_attributes.plan", value="pro", operator="contains")
    signed = Qualification(attribute="custom_attributes.paid", value="true")
    for query in (changes_query([(YES, "string")], 1e9), changes_query([(YES, "string"), (plan, "string")], 1e9),
                  changes_query([(signed, "boolean")], 1e9), changes_query([], 1e9)):
        body = json.dumps({"query": query, "pagination": {"per_page": 150, "starting_after": "abc"}}).encode()
        assert validate_request("POST", "/contacts/search", {}, {
            "Intercom-Version": "2.16", "Content-Type": "application/json"}, body) == [], query


# --- the search of changed contacts (the worker) ------------------------------------------------
def test_a_lost_webhook_is_caught_by_the_search_with_one_call_and_no_read():
    work = connected(world())
    link, contact = joined(work)
    changed(work, contact, "Yes")
    assert run(work, changes(work))["done"] == 1
    assert work.apis.intercom_.calls == ["search_contacts"] and work.apis.rf_.qualified == ["7"]
    assert "reconciliation (changed contacts)" in reasons(work)[-1]


def test_the_next_search_starts_an_hour_before_the_last_one_and_the_first_looks_back_a_week():
    work = connected(world())
    joined(work)
    at = work.clock()
    run(work, changes(work, at))
    run(work, changes(work, at + 900))
    first, second = (q["value"][0]["value"] for q in work.apis.intercom_.searches)
    assert first == int(at - 7 * DAY - 3600) - DAY and second == int(at - 3600) - DAY
    assert work.store.cursor.get("changes#ws") == repr(at + 900)


def test_contacts_that_changed_without_reaching_the_target_cost_nothing_but_the_search():
    work = connected(world())
    link, contact = joined(work)
    changed(work, contact, "Maybe")
    run(work, changes(work))
    assert work.apis.rf_.calls == [] and history(work) == [("join_received", "received")]


def test_judging_a_contact_found_again_and_again_writes_nothing():
    """A lead who already had the target when joining (require_change): found by every search of the
    day, judged unchanged, and no history entry or write each time."""
    work = connected(world())
    link, contact = joined(work, signed_up="Yes")
    changed(work, contact, "Yes")
    for n in range(3):
        run(work, changes(work, work.clock() + n))
    assert work.apis.rf_.calls == [] and history(work) == [("join_received", "received")]


def test_only_leads_waiting_for_their_contact_are_judged():
    work = connected(world())
    link, contact = joined(work)
    joined(work, "8", email="rita@example.com", kind="referrer")
    for c in work.apis.intercom_.contacts.values():
        changed(work, c, "Yes")
    run(work, changes(work))
    run(work, changes(work, work.clock() + 60))                  # qualified now: not judged again
    assert work.apis.rf_.qualified == ["7"] and history(work, "8") == [("join_received", "received")]
    assert history(work).count(("qualification", "qualified")) == 1


def test_pages_of_150_are_followed_to_the_end():
    work = connected(world())
    for n in range(160):
        link, contact = joined(work, str(100 + n), email=f"p{n}@example.com")
        changed(work, contact, "Yes")
    run(work, changes(work))
    assert work.apis.intercom_.calls.count("search_contacts") == 2 and len(work.apis.rf_.qualified) == 160


def test_with_match_email_a_duplicate_found_by_the_search_qualifies_the_lead():
    work = connected(world(settings(rule={"attribute": "custom_attributes.signed_up", "value": "Yes",
                                          "match": "email"})))
    joined(work)
    duplicate = work.apis.intercom_.add("ann@example.com", role="user", signed_up="No")
    changed(work, duplicate, "Yes")
    run(work, changes(work))
    assert work.apis.rf_.qualified == ["7"] and any("on duplicate contact" in r for r in reasons(work))


def test_a_contact_with_the_leads_email_at_the_target_makes_the_lead_check_its_own_contact():
    """The lead's contact was merged into a user with the same email, and the merge webhook was lost:
    the search finds the user; reading the lead's own contact follows the merge (410)."""
    work = connected(world())
    link, contact = joined(work)
    user = work.apis.intercom_.add("ann@example.com", role="user", signed_up="No")
    work.apis.intercom_.merge(contact["id"], user["id"])
    changed(work, user, "Yes")
    run(work, changes(work))
    assert link_of(work).contact_id == user["id"] and work.apis.rf_.qualified == ["7"]
    assert work.apis.intercom_.calls == ["search_contacts", "get", "get"]


def test_a_workspace_without_a_rule_is_not_searched():
    work = connected(world(settings(rule=None)))
    joined(work, pending=False)
    assert run(work, changes(work))["done"] == 1 and work.apis.intercom_.calls == []


# --- the run: what it queues ----------------------------------------------------------------------
def test_a_run_queues_one_search_per_connected_workspace_with_campaigns():
    work = world()
    work.store.settings.put("50", settings(), "ws-not-connected")
    assert reconcile(work)["searches"] == 0
    connected(work)
    assert reconcile(work)["searches"] == 1
    [message] = [messages.read(m) for m in work.queue.sent]
    assert message == ChangesMessage(workspace=WS, at=work.clock(), lookback=7 * DAY)


def test_pending_leads_past_the_sweep_age_leave_the_sweep_and_are_counted():
    work = world()
    joined(work, "1", email="old@example.com")
    work.clock.now += 8 * DAY
    joined(work, "2", email="young@example.com")
    assert reconcile(work)["queued"] == 1 and [messages.read(m).rf_user_id for m in work.queue.sent] == ["2"]
    assert past_sweep_age(work) == 1


def test_a_join_stuck_in_progress_is_queued_again_with_just_the_person_and_the_history_says_so():
    work = world()
    work.store.links.claim(PersonRef("42", "7"), WS)            # a worker took the join and died
    work.clock.now += 60
    assert reconcile(work)["overdue"] == 0                       # its lease still runs
    work.clock.now += 61
    assert reconcile(work)["overdue"] == 1
    [join] = [messages.read(m) for m in work.queue.sent if m["kind"] == "rf.join"]
    assert (join.person_ref, join.person.as_dict()) == (("42", "7"), {"id": "7", "campaign_id": "42"})
    assert history(work) == [("reconciliation", "stuck_join")] and "the worker holding it died" in reasons(work)[0]


def test_a_qualification_whose_worker_died_is_finished_by_a_check_asking_rf_first():
    work = world()
    link, contact = joined(work)
    work.store.links.start_qualifying(link)                      # claimed; RF said yes; the Lambda died
    work.apis.rf_.qualified.append("7")
    work.clock.now += 121
    reconcile(work)                                              # (the sweep of young leads checks it too)
    set_value(work, contact, "No")                               # what the contact says now does not matter
    run(work, *[m for m in work.queue.sent if m["kind"] == "intercom.check"])
    assert link_of(work).qualification is QState.QUALIFIED and work.apis.rf_.calls == ["get_user 7"]
    assert history(work)[-3:] == [("reconciliation", "stuck_qualification"), ("qualification", "taken_over"),
                                  ("qualification", "qualified")]


def test_an_unconfirmed_qualification_no_retry_finished_is_finished_by_the_next_run():
    from chalicelib.errors import Uncertain
    from chalicelib.services.worker import RetryBatch
    work = world()
    link, contact = joined(work)
    work.apis.rf_.answers = [Uncertain("Referral Factory did not answer: read timed out")]
    work.apis.rf_.get_answers = [Uncertain("Referral Factory did not answer")]
    set_value(work, contact, "Yes")
    with pytest.raises(RetryBatch):                            # its retries went to the dead-letter queue
        run(work, check())
    work.clock.now += 121
    reconcile(work)
    run(work, *[m for m in work.queue.sent if m["kind"] == "intercom.check"])
    assert work.apis.rf_.qualified == ["7"] and link_of(work).qualification is QState.QUALIFIED
    assert work.store.links.overdue(work.clock() + 10**6, 10) == []


def test_a_linked_lead_is_never_overdue():
    work = world()
    joined(work)
    work.clock.now += 10 * DAY
    assert reconcile(work)["overdue"] == 0 and link_of(work).status is LinkStatus.LINKED
