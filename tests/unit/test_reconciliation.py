"""Reconciliation: what a run queues (overdue links, one search of changes per workspace, the sweep of
young pending leads), and the worker's search of changed contacts — on the twin and fakes."""
from __future__ import annotations

import pytest

from chalicelib import messages
from chalicelib.domain.changes import DAY, changes_query, target_filter
from chalicelib.domain.history import epoch, iso
from chalicelib.domain.mapping import WATCHABLE_ATTRIBUTE_TYPES
from chalicelib.domain.link import LinkStatus, PersonRef
from chalicelib.domain.qualification import QState
from chalicelib.domain.settings import Qualification
from chalicelib.errors import ApiError, Permanent
from chalicelib.messages import ChangesMessage
from chalicelib.services.reconcile import past_sweep_age, reconcile
from chalicelib.services.worker import RetryBatch, handle_batch
from tests.unit.moves import apply
from tests.unit.scenario import (WS, changed, changes, check, event, history, joined, link_of, made, reasons, records,
                                 run, set_value, settings, world)

YES = Qualification(attribute="custom_attributes.signed_up", value="Yes")


def connected(work):
    work.store.connections.put_workspace(WS, secrets={"token", "client-secret"})
    return work


def kinds(work) -> list[str]:
    return [messages.read(m).kind for m in work.queue.sent]


# --- the query ----------------------------------------------------------------------------------
def test_the_query_asks_for_contacts_changed_since_a_day_earlier_at_the_target():
    since = 1_790_000_000.0
    assert changes_query([(YES, "string")], since) == {"operator": "AND", "value": [
        {"field": "updated_at", "operator": ">", "value": int(since) - DAY},
        {"field": "custom_attributes.signed_up", "operator": "~", "value": "Yes"}]}


def test_several_targets_make_an_or_of_ands_and_duplicates_are_asked_once():
    plan = Qualification(attribute="custom_attributes.plan", value="pro", operator="contains")
    seats = Qualification(attribute="custom_attributes.seats", value="10", operator="gte")
    query = changes_query([(YES, "string"), (plan, "string"), (YES, "string"), (seats, "integer")], 0)
    assert query["operator"] == "OR" and [g["value"][1] for g in query["value"]] == [
        {"field": "custom_attributes.signed_up", "operator": "~", "value": "Yes"},
        {"field": "custom_attributes.plan", "operator": "~", "value": "pro"},
        {"field": "custom_attributes.seats", "operator": ">=", "value": 10}]


@pytest.mark.parametrize("rule,data_type", [
    (Qualification(attribute="custom_attributes.signed_up", value=None, operator="is_set"), "string"),
    (Qualification(attribute="custom_attributes.score", value=2.5, operator="gte"), "float"),
    (Qualification(attribute="custom_attributes.paid_on", value=1_790_000_000), "date"),
    (Qualification(attribute="custom_attributes.plan", value="pro", operator="gte"), "string"),
    (Qualification(attribute="custom_attributes.signed_up", value="  "), "string"),     # blank: no value (not `~ ""`)
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


@pytest.mark.parametrize("attribute", sorted(WATCHABLE_ATTRIBUTE_TYPES))
def test_a_rule_on_any_attribute_it_may_watch_makes_a_query_intercoms_search_accepts(attribute):
    """The contact search refuses a field it does not accept and a value not of its type (the simulator's
    engine, as its documentation says), and with it reconciliation's every search of the workspace."""
    from infra.local.sims.search import compile_query, field_type
    data_type = WATCHABLE_ATTRIBUTE_TYPES[attribute]
    value = {"string": "user", "boolean": True, "integer": "3", "date": "2026-01-01"}[data_type]
    operators = {"string": ("equals", "contains", "is_set"), "boolean": ("equals", "is_set"),
                 "integer": ("equals", "gte", "is_set"), "date": ("equals", "gte", "is_set")}[data_type]
    for operator in ("equals",) if attribute == "role" else operators:
        rule = Qualification(attribute=attribute, operator=operator, value=None if operator == "is_set" else value)
        compile_query(changes_query([(rule, data_type), (YES, "string")], 1e9), lambda contact, field: None,
                      field_type)


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


def test_until_a_search_succeeded_each_starts_a_week_before_the_earliest_one_asked():
    """Failed first searches move no start (nor does the next run's, worked before the first run's): the
    search that succeeds, 8 days later, covers every change they were to find."""
    work = connected(world())
    joined(work)
    at = work.clock()
    for asked in (at + 900, at):
        work.apis.intercom_.fail["search_contacts"] = ApiError("Intercom", 503, "Service Unavailable")
        with pytest.raises(RetryBatch):
            run(work, changes(work, asked))
    run(work, changes(work, at + 8 * DAY))
    [query] = work.apis.intercom_.searches
    assert query["value"][0]["value"] == int(at - 7 * DAY - 3600) - DAY


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


def test_a_search_longer_than_a_workers_time_goes_on_in_a_message_of_its_own_from_the_page_it_reached(
        monkeypatch):
    """What an operator saw: a workspace with more changed contacts at the target than one worker's time can
    page through (pages are oldest first, so its leads' young contacts come last). The worker was stopped at
    its timeout every try, the search never completed, its starting point never moved, and a lost webhook was
    never caught. Here 50 contacts, 2 a page, each page 2 s of a worker that has 40 s."""
    from chalicelib.services.qualification import changes as search
    monkeypatch.setattr(search, "PER_PAGE", 2)
    work = connected(world())
    for n in range(49):
        changed(work, work.apis.intercom_.add(f"user{n}@example.com", role="user", signed_up="No"), "Yes")
    link, contact = joined(work)
    changed(work, contact, "Yes")
    pages = lambda: work.apis.intercom_.calls.count("search_contacts")     # noqa: E731
    alive: list[int] = []
    searching = work.apis.intercom_.search_contacts

    def timed(*args, **kw):
        alive.append(work.remaining_ms())
        return searching(*args, **kw)
    monkeypatch.setattr(work.apis.intercom_, "search_contacts", timed)
    at, todo = work.clock(), [changes(work)]
    for _ in range(100):                 # each message in a worker of its own (bounded: a loop fails, not hangs)
        if not todo:
            break
        begun = pages()
        handle_batch(records(todo.pop(0)), work, remaining_ms=lambda: 40_000 - 2_000 * (pages() - begun))
        todo += [m for m in work.queue.sent if isinstance(m, dict) and m.get("kind") == "intercom.changes"]
        work.queue.sent.clear()
    assert min(alive) > 0                                  # no worker ran past its time
    assert pages() == 25                                   # each page asked once
    assert work.apis.rf_.qualified == ["7"] and work.store.cursor.get("changes#ws") == repr(at)


def drain(work) -> None:
    """Work what the queue holds, and what that work queues, until nothing is left (a loop fails, not hangs)."""
    for _ in range(100):
        if not work.queue.sent:
            return
        todo = list(work.queue.sent)
        work.queue.sent.clear()
        run(work, *todo)
    pytest.fail(f"the queue never empties: {work.queue.sent[:3]}")


PREMIUM = {"attribute": "custom_attributes.signed_up", "value": "Premium"}


def premium_reached_long_ago(work):
    """A lead who joined 30 days ago (past the sweep's age), whose contact reached "Premium" 10 days ago while
    the rule's target was "Yes": its webhook was judged then (not met), and every search since is done."""
    link, contact = joined(work)
    work.clock.now += 20 * DAY
    changed(work, contact, "Premium")
    run(work, event(contact))
    drain(work)
    work.clock.now += 10 * DAY
    reconcile(work)
    drain(work)
    return contact


def test_a_new_target_on_the_same_attribute_qualifies_a_lead_already_at_it():
    """A new target on the same attribute keeps the baseline. A lead older than the sweep's age whose contact
    reached the new target while the old one was in force qualifies by the next run's search (it waited for
    the contact's next change: the search asked for recent changes only, and the sweep skips old leads)."""
    work = connected(world())
    premium_reached_long_ago(work)
    assert work.apis.rf_.qualified == []
    apply(work, settings(rule=PREMIUM))
    work.clock.now += 900
    reconcile(work)
    drain(work)
    assert work.apis.rf_.qualified == ["7"]
    assert work.store.cursor.get("changes#ws#back") is None        # once: the next searches are ordinary


def test_the_look_back_after_a_rule_change_survives_a_search_that_stops_midway_and_ends_with_the_one_that_completes(
        monkeypatch):
    """The worker's time runs out after the first page: the rest goes on in a message of its own, looking back
    as far, and the rule change is done with only once the last page is. A rule changed again meanwhile makes
    the next run look back once more (the search under way may have read the rule before it)."""
    from chalicelib.services.qualification import changes as search
    monkeypatch.setattr(search, "PER_PAGE", 1)
    work = connected(world())
    premium_reached_long_ago(work)
    changed(work, work.apis.intercom_.add("other@example.com", role="user", signed_up="No"), "Premium")
    apply(work, settings(rule=PREMIUM))
    work.clock.now += 900
    reconcile(work)
    [first] = work.queue.sent
    work.queue.sent.clear()
    pages = lambda: len(work.apis.intercom_.searches)     # noqa: E731
    begun = pages()
    handle_batch(records(first), work, remaining_ms=lambda: 40_000 - 30_000 * (pages() - begun))   # one page's time
    [rest] = work.queue.sent
    work.queue.sent.clear()
    assert rest["cursor"] and work.store.cursor.get("changes#ws#back") is not None
    apply(work, settings(rule={**PREMIUM, "require_change": False}))
    run(work, rest)
    assert work.apis.rf_.qualified == ["7"] and work.store.cursor.get("changes#ws#back") is not None
    assert {q["value"][0]["value"] for q in work.apis.intercom_.searches[-2:]} == {
        int(epoch(link_of(work).joined_at) - 3600) - DAY}       # each page of the search looked back as far
    work.clock.now += 900
    reconcile(work)
    drain(work)
    assert work.store.cursor.get("changes#ws#back") is None


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
    user = made(work, work.apis.intercom_.add("ann@example.com", role="user", signed_up="No"))
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
    assert reconcile(work)["queued"] == 0                       # one check: the overdue one, not the sweep's too
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
    work.apis.rf_.get_answers = [None, Uncertain("Referral Factory did not answer")]   # asked first: no
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


# --- nothing queued again while its earlier copy waits in the queue ------------------------------
def unfinished_and_pending(work):
    """A join whose worker died (RF user 1), a qualification whose worker died (2), one RF left
    unconfirmed (3), and two leads waiting for their contact (4, 5); every lease has run out."""
    connected(work)
    work.store.links.claim(PersonRef("42", "1"), WS)
    dying, _ = joined(work, "2", email="b@example.com")
    work.store.links.start_qualifying(dying)
    unsure, _ = joined(work, "3", email="c@example.com")
    claim = work.store.links.start_qualifying(unsure)
    work.store.links.finish_qualifying(claim, QState.UNCONFIRMED, [], reason="RF's answer was lost")
    for user in ("4", "5"):
        joined(work, user, email=f"p{user}@example.com")
    work.clock.now += 121


def sent_since(work, before: int) -> list[tuple[str, str]]:
    return sorted((m["kind"], m.get("rf_user_id", "")) for m in work.queue.sent[before:])


def test_a_second_run_queues_nothing_again_while_the_first_runs_messages_wait_in_the_queue():
    work = world()
    unfinished_and_pending(work)
    reconcile(work)
    assert sent_since(work, 0) == [("intercom.changes", ""), ("intercom.check", "2"), ("intercom.check", "3"),
                                   ("intercom.check", "4"), ("intercom.check", "5"), ("rf.join", "1")]
    for minutes in (15, 30, 45):                           # the schedule runs on; nothing was handled
        work.clock.now += 15 * 60
        before = len(work.queue.sent)
        run_ = reconcile(work)
        assert sent_since(work, before) == [("intercom.changes", "")], minutes    # only the search of changes
        assert (run_["overdue"], run_["queued"]) == (0, 0)
    assert len(work.queue.sent) == 6 + 3
    assert history(work, "1") == [("reconciliation", "stuck_join")]            # one entry, not one per run


def test_after_the_retry_interval_what_is_still_unfinished_is_queued_again_and_its_history_says_so():
    work = world()
    unfinished_and_pending(work)
    first = work.clock()
    reconcile(work)
    retry = work.config.reconcile_retry
    assert retry == 3600 and f"if it is still unfinished at {iso(first + retry)}" in reasons(work, "1")[-1]
    work.clock.now = first + retry - 1
    before = len(work.queue.sent)
    reconcile(work)
    assert sent_since(work, before) == [("intercom.changes", "")]
    work.clock.now = first + retry + 1                     # their messages had their chance: none finished them
    before = len(work.queue.sent)
    run_ = reconcile(work)
    assert sent_since(work, before) == [("intercom.changes", ""), ("intercom.check", "2"), ("intercom.check", "3"),
                                        ("intercom.check", "4"), ("intercom.check", "5"), ("rf.join", "1")]
    assert run_["overdue"] == 3
    assert history(work, "1") == [("reconciliation", "stuck_join")] * 2
    again = work.store.history.entries(PersonRef("42", "1"))[-1]
    assert "1 join(s) queued since its claim's lease ended" in (again.reason or "")
    assert again.details["queued"] == 2 and again.details["retry_at"] == iso(first + 2 * retry + 1)


def test_a_message_that_ran_lets_the_link_be_queued_again_at_its_own_lease_not_the_retry():
    """The check ran, and RF still did not answer: the qualification is unconfirmed again and due
    after its own wait, not after the retry interval."""
    from chalicelib.errors import Uncertain
    work = world()
    link, contact = joined(work)
    set_value(work, contact, "Yes")
    claim = work.store.links.start_qualifying(link)
    work.store.links.finish_qualifying(claim, QState.UNCONFIRMED, [], reason="RF's answer was lost")
    work.clock.now += 121
    assert reconcile(work)["overdue"] == 1
    work.apis.rf_.get_answers = [Uncertain("Referral Factory did not answer")] * 3
    work.apis.rf_.answers = [Uncertain("Referral Factory did not answer")] * 3
    [queued] = [m for m in work.queue.sent if m["kind"] == "intercom.check"]
    from chalicelib.services.worker import RetryBatch
    with pytest.raises(RetryBatch):
        run(work, queued)
    assert link_of(work).qualification is QState.UNCONFIRMED
    work.clock.now += 121
    assert reconcile(work)["overdue"] == 1


def queue_down(work, monkeypatch) -> type[Exception]:
    """The work queue cannot be reached: no message of the run is sent."""
    def unreachable(messages, delay=0):
        raise ConnectionError("SQS could not be reached")
    monkeypatch.setattr(work.queue, "send_many", unreachable)
    return ConnectionError


def join_refused(work, monkeypatch) -> type[Exception]:
    """SQS refuses the join's message (the checks are sent)."""
    from chalicelib.ports import NotSent
    monkeypatch.setattr(work.queue, "refuse", lambda m: "InternalError" if m["kind"] == "rf.join" else None)
    return NotSent


@pytest.mark.parametrize("fail, not_sent", [(queue_down, ["1", "2", "3"]), (join_refused, ["1"])])
def test_overdue_links_whose_messages_were_not_sent_are_queued_by_the_next_run_not_after_the_retry(
        fail, not_sent, monkeypatch):
    work = world()
    unfinished_and_pending(work)
    with monkeypatch.context() as failing:
        with pytest.raises(fail(work, failing)):
            reconcile(work)
    work.clock.now += 15 * 60                              # the next scheduled run
    before = len(work.queue.sent)
    assert reconcile(work)["overdue"] == len(not_sent)
    assert sorted(m["rf_user_id"] for m in work.queue.sent[before:] if m.get("rf_user_id") in {"1", "2", "3"}) == not_sent
    assert history(work, "1") == [("reconciliation", "stuck_join"), ("reconciliation", "not_queued"),
                                  ("reconciliation", "stuck_join")]
    assert work.store.history.entries(PersonRef("42", "1"))[-1].details["queued"] == 1   # the lost one not counted


def test_overdue_links_marked_before_one_whose_mark_meets_a_transaction_conflict_are_queued_by_the_next_run(
        monkeypatch):
    """The run marks each overdue link, then sends their messages. A worker's write met the second link's mark
    (DynamoDB's TransactionConflict, a wait of a few seconds for a worker): the run failed before any send, and the
    first link, marked, waited RECONCILE_RETRY_SECONDS (an hour) for a message never sent."""
    from chalicelib.adapters.dynamo.models import Conflict
    work = world()
    unfinished_and_pending(work)
    requeue, marks = work.store.links.requeue, []

    def second_conflicts(late, retry_at, entries):
        marks.append(late.link.ref)
        if len(marks) == 2:
            raise Conflict("DynamoDB refused TransactWriteItems: another transaction was writing its items",
                           retry_after=5)
        return requeue(late, retry_at, entries)
    with monkeypatch.context() as failing:
        failing.setattr(work.store.links, "requeue", second_conflicts)
        with pytest.raises(Conflict):
            reconcile(work)
    work.clock.now += 15 * 60                              # the next scheduled run
    before = len(work.queue.sent)
    assert reconcile(work)["overdue"] == 3
    queued = [m.get("rf_user_id") for m in work.queue.sent[before:]]
    assert [queued.count(rf_user_id) for rf_user_id in ("1", "2", "3")] == [1, 1, 1]     # each overdue one, once
    assert ("the message that finishes it was not sent: the run failed (Conflict) before the queue took it; the next "
            "run queues it again") in reasons(work, marks[0].rf_user_id)


def test_two_runs_at_once_queue_an_overdue_link_once():
    work = world()
    work.store.links.claim(PersonRef("42", "1"), WS)
    work.clock.now += 121
    [late] = work.store.links.overdue(work.clock(), 10)    # the other run read it too, and requeued it first
    assert work.store.links.requeue(late, work.clock() + 3600, [])
    assert reconcile(work)["overdue"] == 0 and work.queue.sent == []


# --- the sweep: a round at most once per retry interval ----------------------------------------------
def test_a_small_pending_set_is_swept_once_per_interval_not_every_run():
    work = world()
    for user in ("4", "5", "6"):
        joined(work, user, email=f"p{user}@example.com")
    began = work.clock()
    first = reconcile(work)
    assert (first["queued"], first["round_complete"]) == (3, True)
    work.clock.now += 15 * 60
    second = reconcile(work)
    assert (second["queued"], second["next_round_at"]) == (0, iso(began + 3600))
    work.clock.now = began + 3600
    assert reconcile(work)["queued"] == 3                  # the next round
    assert [m["kind"] for m in work.queue.sent] == ["intercom.check"] * 6


def test_the_sweep_leaves_out_leads_linked_in_a_workspace_their_campaign_left():
    """Campaign 42 moved to ws-b (`settings apply --move-workspace`): its leads linked in ws are never judged
    there, so checking them would only note that again, run after run. Those linked in ws-b are checked."""
    work = world()
    for user in ("4", "5"):
        joined(work, user, email=f"p{user}@example.com")
    work.store.settings.put("42", {**settings(), "workspace": "ws-b"}, "ws-b")
    joined(work, "6", email="p6@example.com", workspace="ws-b")
    before = history(work, "4")
    assert reconcile(work)["queued"] == 1
    assert [(m["kind"], m["rf_user_id"], m["workspace"]) for m in work.queue.sent] == [
        ("intercom.check", "6", "ws-b")]
    assert history(work, "4") == before


def test_a_backlog_larger_than_a_run_is_swept_run_after_run_and_the_next_round_waits_for_the_interval():
    work = world()
    for n in range(5):
        joined(work, str(10 + n), email=f"p{n}@example.com")
    began = work.clock()
    done = []
    for _ in range(4):
        done.append(reconcile(work, limit=2)["queued"])
        work.clock.now += 15 * 60
    assert done == [2, 2, 1, 0]                            # a round over three runs, then it waits
    work.clock.now = began + 3600
    assert reconcile(work, limit=2)["queued"] == 2
    checked = [m["rf_user_id"] for m in work.queue.sent]
    assert checked == ["10", "11", "12", "13", "14", "10", "11"]


def test_a_round_that_takes_longer_than_the_interval_is_followed_at_once():
    work = world()
    for n in range(3):
        joined(work, str(10 + n), email=f"p{n}@example.com")
    done = []
    for _ in range(3):
        done.append(reconcile(work, limit=2)["queued"])
        work.clock.now += 3600
    assert done == [2, 1, 2]


@pytest.mark.parametrize("refusal", [Permanent("Referral Factory answered 422: campaign paused", status=422),
                                     Permanent("Referral Factory answered 401: Unauthenticated", status=401)],
                         ids=["422", "401"])
@pytest.mark.parametrize("match", ["contact", "email"])
def test_a_lead_rf_refuses_in_a_search_gets_a_letter_every_advised_replay_reaches_and_that_replay_qualifies(
        refusal, match):
    """RF refused Ann's (or Bob's) qualification while the search of changed contacts judged her: the search was
    dead-lettered (Bob, found by the same search, was left for the next one), and explain advised the replay of
    that search's letter by its reason: it selected it, but a replayed search judges the leads still waiting,
    and a failed qualification is reopened only by a replay of the lead's own work: Ann's reward was lost, and
    doctor and `dlq list` said a search's letter has nothing to replay. Now her letter is hers (a check of her,
    naming her campaign), every replay explain, doctor and `dlq list` advise selects it, and once RF is fixed the
    replay qualifies her; the search goes on for Bob."""
    from chalicelib.services import dead_letters
    from chalicelib.services.doctor import examine
    from chalicelib.services.explain import explain
    from tests.support.cli import replay_selectors
    from tests.unit.doctoring import healthy
    rt = healthy()
    work = rt.work
    rule = {"attribute": "custom_attributes.signed_up", "value": "Yes", "match": match}
    work.store.settings.put("42", settings(rule=rule), WS)
    joined(work)
    _, bob = joined(work, user="8", email="bob@example.com")
    ann = work.apis.intercom_.add("ann@example.com", role="user", signed_up="No") if match == "email" else \
        work.apis.intercom_.contacts[link_of(work).contact_id]
    work.apis.rf_.answers = [refusal]
    changed(work, ann, "Yes")
    changed(work, bob, "Yes")
    assert run(work, changes(work)) == {"done": 1, "retry": 0, "dead": 0}
    [refused] = [u for u in ("7", "8") if link_of(work, u).qualification is QState.FAILED]   # the first judged
    [other] = work.apis.rf_.qualified
    [letter] = [dead_letters.read(m) for m in work.queue.letters.values()]
    advice = [explain(work, refused).view(), letter.view(), examine(rt, "42").view()["findings"]]
    selectors = replay_selectors(*advice)
    assert selectors and all(dead_letters.matches(letter, *s) for s in selectors), (selectors, advice)
    assert "nothing to replay" not in str(advice)
    work.clock.now += 60
    assert dead_letters.replay(work, *selectors[0])["replayed"] == 1            # RF fixed meanwhile
    run(work, work.queue.sent[-1])
    assert work.apis.rf_.qualified == [other, refused] and link_of(work, refused).qualification is QState.QUALIFIED


BY_EMAIL = {"attribute": "custom_attributes.signed_up", "value": "Yes", "match": "email"}
SINCE_REFUSED = {   # what changed between RF's refusal and the replay of the lead's letter
    "nothing": lambda work, dup: None,
    "rule_now_match_contact": lambda work, dup: work.store.settings.put(
        "42", settings(rule={**BY_EMAIL, "match": "contact"}), WS),
    "duplicate_email_changed": lambda work, dup: dup.update(email="someone@example.com"),
    "duplicate_deleted": lambda work, dup: work.apis.intercom_.contacts.pop(dup["id"]),
}


@pytest.mark.parametrize("since", SINCE_REFUSED)
def test_the_letter_of_a_lead_rf_refused_on_a_duplicate_pays_her_on_replay_whatever_changed_since(since):
    """`match: email`: the search found Ann's duplicate contact at the target and RF refused her qualification (her
    own contact never met the target). Her letter is replayed once RF is fixed: the rule decided, and the decision
    sticks whatever the rule, the duplicate's email or the duplicate itself became since (as a webhook's replay, or
    an unfinished qualification, is finished); RF is asked first."""
    from chalicelib.services import dead_letters
    work = connected(world(settings(rule=BY_EMAIL)))
    joined(work)
    dup = work.apis.intercom_.add("ann@example.com", role="user", signed_up="No")
    work.apis.rf_.answers = [Permanent("Referral Factory answered 422: campaign paused", status=422)]
    changed(work, dup, "Yes")
    run(work, changes(work))
    assert len(work.queue.letters) == 1 and link_of(work).qualification is QState.FAILED
    SINCE_REFUSED[since](work, dup)
    work.clock.now += 60
    assert dead_letters.replay(work, None, "42")["replayed"] == 1
    work.apis.rf_.calls.clear()
    run(work, work.queue.sent[-1])
    assert work.apis.rf_.calls == ["get_user 7", "qualify 7"] and work.apis.rf_.qualified == ["7"]
    assert link_of(work).qualification is QState.QUALIFIED


def _no_notified_late_then_yes_lost(work):
    """Ann joined with "Yes" (require_change). She sets "No" at T+10 and, in the same breath, "Yes" at T+11; Intercom
    creates the "No"'s notification at T+12 (its own clock: after the "Yes"), and the "Yes"'s webhook is lost. The
    "No" arms the link since T+12 (its notification's time); the contact read at once still showed "No"."""
    link, lead = joined(work, signed_up="Yes")
    t = int(work.clock())
    no = dict(lead, custom_attributes={"signed_up": "No"}, updated_at=t + 10)
    changed(work, lead, "No", at=t + 10)
    run(work, event(no, notification="n-no", created_at=t + 12))
    assert (link_of(work).armed, link_of(work).armed_at, work.apis.rf_.calls) == (True, t + 12, [])
    changed(work, lead, "Yes", at=t + 11)
    work.clock.now += 60


def test_the_search_qualifies_a_return_to_the_target_made_before_the_notification_that_armed_the_link():
    """The contact as it is now (updated at T+11, by its own clock) is judged armed: what armed the link was applied
    before, so its value now is at least as new (Link.armed_at holds back only values of events, not the contact now)."""
    work = connected(world())
    _no_notified_late_then_yes_lost(work)
    run(work, changes(work))
    assert work.apis.rf_.qualified == ["7"] and link_of(work).qualification is QState.QUALIFIED


def test_a_check_qualifies_a_return_to_the_target_made_before_the_notification_that_armed_the_link():
    work = world()
    _no_notified_late_then_yes_lost(work)
    run(work, check())
    assert work.apis.rf_.qualified == ["7"] and link_of(work).qualification is QState.QUALIFIED


def _search_showing(work, copy):
    """Reconciliation's search run, Intercom's search answering `copy` (behind: not the contact as it is). The
    Intercom calls it made."""
    searched = work.apis.intercom_.search_contacts
    work.apis.intercom_.search_contacts = lambda *a, **k: (searched(*a, **k), ([copy], None))[1]
    calls = len(work.apis.intercom_.calls)
    run(work, changes(work))
    return work.apis.intercom_.calls[calls:]


def _searched_stale(work, stale_value, joined_with="Yes"):
    """Ann joined with "Yes" (`joined_with`); her contact saved at T+5 with `stale_value`, then "No" at T+10, whose notification arms
    the link since T+10. Reconciliation's search, behind, shows her as of T+5. The Intercom calls it made, and T."""
    link, lead = joined(work, signed_up=joined_with)
    t = int(work.clock())
    stale = dict(changed(work, lead, stale_value, at=t + 5), custom_attributes={"signed_up": stale_value})
    changed(work, lead, "No", at=t + 10)
    run(work, event(lead, notification="n-no", created_at=t + 10))
    assert (link_of(work).armed_at, work.apis.rf_.calls) == (t + 10, [])
    work.clock.now += 60
    return _search_showing(work, stale), t


def test_a_search_showing_the_contact_from_before_the_change_that_armed_the_link_does_not_qualify_her():
    """Ann joined with "Yes", kept it (saved again at T+5), then set "No" at T+10, which armed the link. Intercom's
    search, behind, still shows her "Yes" of T+5: older than what armed the link, so her contact is read, and its
    "No" judged (in order, nothing changed to "Yes")."""
    work = connected(world())
    assert _searched_stale(work, "Yes")[0] == ["search_contacts", "get"]
    assert work.apis.rf_.calls == [] and link_of(work).qualification is QState.PENDING


def test_a_search_showing_a_value_missing_the_target_older_than_what_armed_the_link_reads_nothing_more():
    """The extra read is for a value at the target held back only: one missing it ("No" at T+5), older than what
    armed the link, arms it since then (as its notification would), without reading the contact."""
    work = connected(world())
    calls, t = _searched_stale(work, "No")
    assert (calls, link_of(work).armed_at, work.apis.rf_.calls) == (["search_contacts"], t + 5, [])


def test_a_search_showing_a_lead_who_joined_off_the_target_at_it_qualifies_her_whatever_armed_the_link():
    """Ann joined with "No": any "Yes" qualifies her, whatever the order (nothing is held back for her). The search,
    behind, shows her "Yes" of T+5, older than the "No" that armed the link: she qualifies on it, with no contact
    read (her value now, "No" again, does not undo a change to the target that was made)."""
    work = connected(world())
    calls, t = _searched_stale(work, "Yes", joined_with="No")
    assert calls == ["search_contacts"] and work.apis.rf_.qualified == ["7"]


def _survivor_searched_stale(work, later=None, email="ann@example.com"):
    """Ann joined on lead A with "No" (at T). User B, her email, made after she joined, went "Yes" at T+10 and "No" at
    T+12 (not hers then); A merged into B at T+15, its notification handled: the link moves to B keeping her baseline
    "No" (Link.moved_at T+15). `later`: B's value since T+20 (after the merge). Reconciliation's search, behind, shows
    B as of T+10 ("Yes", with `email` then), or, with `later`, as of T+20. The Intercom calls the search made, and T."""
    link, lead = joined(work, signed_up="No")
    t = int(work.clock())
    user = work.apis.intercom_.add("ann@example.com", role="user", signed_up="No")
    user.update(created_at=t + 1, updated_at=t + 12)
    stale = dict(user, email=email, custom_attributes={"signed_up": "Yes"}, updated_at=t + 10)
    work.apis.intercom_.merge(lead["id"], user["id"])
    work.clock.now = t + 100
    run(work, event(dict(user), "contact.merged", "m", created_at=t + 15,
                    merged_from={"type": "contact", "id": lead["id"]}))
    assert (link_of(work).contact_id, link_of(work).baseline, link_of(work).moved_at) == (user["id"], "No", t + 15)
    if later is not None:
        stale = dict(changed(work, user, later, at=t + 20), custom_attributes={"signed_up": later})
    return _search_showing(work, stale), t


def test_a_search_showing_her_contact_from_before_backfill_took_her_baseline_does_not_qualify_her():
    """Her baseline unknown when she joined (the rule then on another attribute); her contact "Yes" at T+5, "No" at
    T+8; `bridge backfill --apply` reads her "No" at T+20 and takes it (Link.baseline_at). Intercom's search, behind,
    shows her "Yes" of T+5: older than the take (judge.searched_before_view), so her contact is read and its "No"
    judged. In order nothing after the take changed to "Yes"; judged as she is now, the copy qualified her."""
    work = connected(world())
    link, lead = joined(work, signed_up="No", baseline_of="custom_attributes.plan")
    t = int(work.clock())
    stale = dict(changed(work, lead, "Yes", at=t + 5), custom_attributes={"signed_up": "Yes"})
    changed(work, lead, "No", at=t + 8)
    work.clock.now = t + 20
    assert work.store.links.take_baselines([(link_of(work), "No", "custom_attributes.signed_up", [])],
                                           read_at=t + 20) == [True]
    work.clock.now = t + 100
    assert _search_showing(work, stale) == ["search_contacts", "get"]
    assert work.apis.rf_.calls == [] and link_of(work).qualification is QState.PENDING


def test_a_search_showing_the_survivor_from_before_the_merge_moved_her_link_there_does_not_qualify_her():
    """Ann's link moved to B by the merge at T+15, keeping her baseline "No"; B's "Yes" of T+10 was not hers (nor
    her email's duplicate's: `match: id`), and B shows "No" since T+12: in order nothing qualifies her. The search,
    behind, shows B's "Yes" of T+10, older than the move (judge.before_view): judged as B is now, it qualified her.
    B is read, and its "No" judged (the stale copy is no change after the baseline the link kept at the move)."""
    work = connected(world())
    calls, t = _survivor_searched_stale(work)
    assert calls == ["search_contacts", "get"]
    assert work.apis.rf_.calls == [] and link_of(work).qualification is QState.PENDING


def test_a_search_showing_the_survivor_at_the_target_after_the_merge_qualifies_her_once_reading_nothing_more():
    """The legit mirror: B goes "Yes" at T+20, after the merge moved her link there (baseline "No"); the search shows
    it: she qualifies, once, with no contact read (the common path's calls), and a second search changes nothing."""
    work = connected(world())
    calls, t = _survivor_searched_stale(work, later="Yes")
    assert calls == ["search_contacts"] and work.apis.rf_.qualified == ["7"]
    run(work, changes(work, work.clock() + 60))
    assert work.apis.rf_.qualified == ["7"] and link_of(work).qualification is QState.QUALIFIED


@pytest.mark.parametrize("require_change", [True, False])
def test_a_search_showing_the_survivor_from_before_the_merge_counts_as_the_duplicate_it_was_under_match_email(
        require_change):
    """`match: email`: B's "Yes" of T+10, her email, was a duplicate's then, and in order it qualified her (its
    notification, delivered late, counts so: contact_events.duplicate_then). The search's stale copy of B is judged
    so too, against what the link held on A: qualified once, with no contact read."""
    work = connected(world(settings(rule={**BY_EMAIL, "require_change": require_change})))
    calls, t = _survivor_searched_stale(work)
    assert calls == ["search_contacts"] and work.apis.rf_.qualified == ["7"]
    assert link_of(work).qualification is QState.QUALIFIED
    run(work, changes(work, work.clock() + 60))
    assert work.apis.rf_.qualified == ["7"]


@pytest.mark.parametrize("require_change", [True, False])
def test_a_search_showing_the_survivor_from_before_she_joined_does_not_count_as_her_duplicate_under_match_email(
        require_change):
    """`match: email`: Ann joined on lead A with "No" (at T); user B, her email, made before she joined, "Yes" at T-30
    and "No" since T-20, survives A's merge at T+15 (its value then her baseline: unchanged since she joined). The
    search, behind, shows B's "Yes" of T-30: from before the move, when B was a duplicate of hers (duplicate_then), but
    also from before she joined, when it was no duplicate's value of hers (in order nothing judged it: nobody was
    linked): noted, not judged (judge.before_joined), with no contact read; she is not qualified."""
    work = connected(world(settings(rule={**BY_EMAIL, "require_change": require_change})))
    link, lead = joined(work, signed_up="No")
    t = int(work.clock())
    user = work.apis.intercom_.add("ann@example.com", role="user", signed_up="No")
    user.update(created_at=1, updated_at=t - 20)
    stale = dict(user, custom_attributes={"signed_up": "Yes"}, updated_at=t - 30)
    work.apis.intercom_.merge(lead["id"], user["id"])
    work.clock.now = t + 100
    run(work, event(dict(user), "contact.merged", "m", created_at=t + 15,
                    merged_from={"type": "contact", "id": lead["id"]}))
    assert (link_of(work).contact_id, link_of(work).moved_at) == (user["id"], t + 15)
    assert _search_showing(work, stale) == ["search_contacts"]
    assert work.apis.rf_.calls == [] and link_of(work).qualification is QState.PENDING
    assert ("evaluation", "not_met") in history(work)


def test_a_search_showing_the_survivor_from_before_the_merge_under_another_email_does_not_count_under_match_email():
    """As above, but B had another email at T+10 (not a duplicate of hers then: in order not counted): B is read, and
    its "No" judged."""
    work = connected(world(settings(rule=BY_EMAIL)))
    calls, t = _survivor_searched_stale(work, email="bob@example.com")
    assert calls == ["search_contacts", "get"]
    assert work.apis.rf_.calls == [] and link_of(work).qualification is QState.PENDING


@pytest.mark.parametrize("path", ["search", "notification"])
def test_a_survivor_under_another_email_before_the_merge_does_not_count_as_her_duplicate_then_under_match_email(path):
    """`match: email`: Ann (ann@) joined on lead A with "No"; user B, bob@'s, made after she joined, "Yes" at T+10 and
    "No" at T+12; A merged into B at T+15: the link moves to B keeping her baseline, and takes B's email (bob@) after.
    B's "Yes" of T+10, from before the merge, in a search's stale copy or a notification delivered late, shows bob@,
    her link's email now: it was not hers then (ann@), nor B a duplicate of hers, and in order nothing qualified her.
    Compared with the link's email now, it was judged as her duplicate's then (contact_events.duplicate_then) and
    qualified her. Her email then is the one the merge recorded with what it left (LeftContact.email). Found by
    review-final (distinct seconds)."""
    work = connected(world(settings(rule=BY_EMAIL)))
    link, lead = joined(work, signed_up="No")
    t = int(work.clock())
    user = work.apis.intercom_.add("bob@example.com", role="user", signed_up="No")
    user.update(created_at=t + 1, updated_at=t + 12)
    stale = dict(user, custom_attributes={"signed_up": "Yes"}, updated_at=t + 10)
    work.apis.intercom_.merge(lead["id"], user["id"])
    work.clock.now = t + 100
    run(work, event(dict(user), "contact.merged", "m", created_at=t + 15,
                    merged_from={"type": "contact", "id": lead["id"]}))
    assert (link_of(work).contact_id, link_of(work).email) == (user["id"], "bob@example.com")
    assert link_of(work).left_then(lead["id"]).email == "ann@example.com"
    if path == "search":
        assert _search_showing(work, stale) == ["search_contacts", "get"]
    else:
        run(work, event(stale, "contact.user.updated", "late", created_at=t + 10))
    assert work.apis.rf_.calls == [] and link_of(work).qualification is QState.PENDING
