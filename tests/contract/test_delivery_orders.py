"""Contact events delivered out of order, through the worker's real registry, on both stores: the in-memory twin
and the DynamoDB store (moto server). A fixed sample of the orders the review's permutation runs tried on both
twins (merges, reconciliation checks and searches, notifications too large to queue whole): each ends as in-order
delivery does, with one qualification PUT at most, so the twins cannot drift apart on who is qualified."""
from __future__ import annotations

import itertools

import pytest

from chalicelib.domain.link import PersonRef
from chalicelib.domain.qualification import QState
from chalicelib.errors import Transient
from chalicelib.messages import JoinMessage
from chalicelib.ports.store import Busy
from tests.orders import merge_play, reconcile_play
from tests.support.meanwhile import before
from tests.unit.scenario import event, link_of, run, world

# The plays are `make orders`' (tests/orders.py): its merge families' (her lead "A" and a user "B" with her
# email change, A is merged into B "kept" (B made after she joined) or "taken" (before), everything before any
# delivery, then a reconciliation "check", a "changes" search or nothing) and its check / search / thin families'
# (each item delivered after it happened, the contact showing the latest change delivered so far).


QUALIFIED, NOT = (True, 1), (False, 0)

AFTER_MERGE = [   # (baseline, events, merge, order, last, as in order)
    ("No", [("A", "Yes", 10), ("B", "No", 20)], ("kept", 15, "Yes"), (2, 1, 0), None, QUALIFIED),
    ("No", [("A", "No", 10), ("B", "Yes", 20)], ("taken", 15, "No"), (1, 2, 0), "check", QUALIFIED),
    ("Yes", [("A", "Yes", 10), ("A", "No", 20), ("B", "Yes", 30)], ("kept", 25, "No"), (3, 2, 0, 1), "changes",
     QUALIFIED),
    ("No", [("A", "No", 10), ("A", "No", 20), ("B", "No", 30)], ("taken", 25, "Yes"), (2, 3, 1, 0), "check", NOT),
]

MEANWHILE = [     # (baseline, events, reconciliation at, kind, order, the thin one, as in order)
    ("No", [("Yes", 10), ("No", 20)], 15, "check", ("C", 1, 0), 1, QUALIFIED),
    ("Yes", [("No", 10), ("Yes", 20), ("No", 30)], 25, "changes", (0, "C", 1, 2), 2, QUALIFIED),
    ("No", [("No", 10), ("No", 20), ("Yes", 30)], 35, "check", ("C", 2, 0, 1), 1, QUALIFIED),
    ("Yes", [("Yes", 10), ("No", 20)], 25, "changes", (1, "C", 0), 1, NOT),
]


@pytest.mark.parametrize("base,evs,merge,order,last,expected", AFTER_MERGE)
def test_notifications_delivered_out_of_order_after_a_merge_end_as_in_order(store, clock, base, evs, merge, order,
                                                                           last, expected):
    kept, at, b_value = merge
    assert merge_play(base, evs, kept, at, b_value, last)(world(clock=clock, store=store), order) == expected


@pytest.mark.parametrize("base,evs,at,kind,order,thin_one,expected", MEANWHILE)
def test_notifications_delivered_out_of_order_around_a_reconciliation_end_as_in_order(store, clock, base, evs, at,
                                                                                     kind, order, thin_one, expected):
    play = reconcile_play(base, evs, at, kind, None, thin_one)
    assert play(world(clock=clock, store=store), tuple(len(evs) if i == "C" else i for i in order)) == expected


@pytest.mark.parametrize("match", ["contact", "email"])
def test_a_value_between_a_waiting_first_try_and_the_retrys_read_delivered_late_does_not_qualify_her(store, clock,
                                                                                                    match):
    """As tests/unit/test_join_use_case.py's, on both twins: her join's first try (t) waits out an Intercom outage
    before finding her user ("No"); the user goes "Yes" at t + 10, "No" at t + 20; the retry (t + 100) reads "No",
    her baseline (Link.found_at: its claim). The "Yes" of t + 10, delivered after, is no change after it: not
    qualified, Referral Factory not called. A "Yes" of the retry's second is judged: she qualifies, once."""
    work = world(clock=clock, store=store)
    rule = {"attribute": "custom_attributes.signed_up", "value": "Yes", "initial_value": "No", "match": match}
    work.store.settings.put("42", {"campaign_id": "42", "workspace": "ws", "qualification": rule,
                                   "leads": {"action": "create_lead", "duplicates": "update",
                                             "fields": [{"from": "email", "to": "email"}]},
                                   "referrers": {"action": "nothing"}}, "ws")
    user = work.apis.intercom_.add("ann@example.com", role="user", signed_up="No")
    clock.now += 0.4
    t = int(clock.now)
    join = JoinMessage(campaign_id="42", rf_user_id="7", person={"id": "7", "campaign_id": "42", "type": "lead",
                                                                  "email": "ann@example.com"}).wire()
    work.apis.intercom_.fail["search"] = Transient("Intercom answered 503", status=503).unavailable("Intercom")
    assert run(work, join)["waiting"] == 1
    work.apis.intercom_.fail.pop("search", None)
    user.update(updated_at=t + 20)
    clock.now = t + 100.4
    run(work, join)
    link = link_of(work)
    assert (link.contact_id, link.baseline, link.found_at, link.joined_since) == (user["id"], "No", t + 100.4, t + 100)

    def told(value, at, name):
        return event(dict(user, custom_attributes={**user["custom_attributes"], "signed_up": value}, updated_at=at),
                     "contact.user.updated", name, created_at=at)
    run(work, told("Yes", t + 10, "between"))
    assert work.apis.rf_.qualified == [] and link_of(work).qualification is QState.PENDING
    assert [c for c in work.apis.rf_.calls if c.startswith("qualify")] == []
    [noted] = [e for e in work.store.history.entries(PersonRef("42", "7"))
               if e.event == "evaluation" and "before_joined" in (e.details or {})]
    assert noted.outcome == "not_met" and noted.details["found_at"] == t + 100.4
    run(work, told("Yes", t + 100, "after"), told("Yes", t + 100, "after again"))
    assert work.apis.rf_.qualified == ["7"] and link_of(work).qualification is QState.QUALIFIED


def her_join_holds_her_user_and_waits(store, clock):
    """Her join's first try (t) finds her user ("No") and holds it (found_at: its claim, t + 0.4), then waits out an
    Intercom outage on the update: the work, her user, t and the join's message."""
    work = world(clock=clock, store=store)
    user = work.apis.intercom_.add("ann@example.com", role="user", signed_up="No")
    clock.now += 0.4
    t = int(clock.now)
    join = JoinMessage(campaign_id="42", rf_user_id="7", person={"id": "7", "campaign_id": "42", "type": "lead",
                                                                  "email": "ann@example.com", "first_name": "Ann",
                                                                  "referrer_id": "3"}).wire()
    work.apis.intercom_.fail["update"] = Transient("Intercom answered 503", status=503).unavailable("Intercom")
    assert run(work, join)["waiting"] == 1
    work.apis.intercom_.fail.pop("update", None)
    held = link_of(work)
    assert (held.contact_id, held.contact_found, held.found_at) == (user["id"], True, t + 0.4)
    return work, user, t, join


def qualified_once(work) -> None:
    """She is qualified, Referral Factory's qualification called once."""
    assert work.apis.rf_.qualified == ["7"] and link_of(work).qualification is QState.QUALIFIED
    assert len([c for c in work.apis.rf_.calls if c.startswith("qualify")]) == 1


def merged_then_retried(work, a, t, join):
    """B ("No"), made at t + 5 (after she joined), changed last at t + 15, is where Intercom merges her held user A
    (its notification not delivered); the join's retry (t + 100) then runs: B."""
    b = work.apis.intercom_.add("ann@example.com", role="user", signed_up="No")
    b.update(created_at=t + 5, updated_at=t + 15)
    work.apis.intercom_.merge(a["id"], b["id"])
    work.clock.now = t + 100.4
    run(work, join)
    return b


def test_a_retry_finding_her_held_user_merged_into_a_newer_one_bounds_its_values_by_its_own_read(store, clock):
    """As tests/unit/test_join_use_case.py's, on both twins (the hold that leaves the contact an earlier try held):
    her join's first try (t) holds her user A ("No") and waits; B, made at t + 5, goes "Yes" at t + 10, "No" at t + 15;
    A is merged into B (its notification not delivered). The retry (t + 100) holds B, keeping her baseline, with its own
    claim's time (found_at). B's "Yes" of t + 10, delivered after, was not hers in order: she is not qualified."""
    work, a, t, join = her_join_holds_her_user_and_waits(store, clock)
    b = merged_then_retried(work, a, t, join)
    link = link_of(work)
    assert (link.contact_id, link.baseline, link.found_at, link.joined_since) == (b["id"], "No", t + 100.4, t + 100)
    run(work, event(dict(b, custom_attributes={**b["custom_attributes"], "signed_up": "Yes"}, updated_at=t + 10),
                    "contact.user.updated", "b-yes", created_at=t + 10))
    assert work.apis.rf_.qualified == [] and link_of(work).qualification is QState.PENDING
    assert [c for c in work.apis.rf_.calls if c.startswith("qualify")] == []


@pytest.mark.parametrize("order", ["RYN", "RNY", "NRY", "YNR", "YRN", "NYR"])
def test_values_of_a_held_joins_wait_qualify_her_once_in_every_order(store, clock, order):
    """As tests/unit/test_join_use_case.py's, on both twins: her join's first try (t) holds her user ("No", read at t:
    her baseline) and waits out an Intercom outage on the update; she goes "Yes" at t + 10 ("Y"), "No" at t + 20
    ("N"); the retry (t + 100, "R") resumes that baseline. In every order she is qualified, once (Referral Factory's
    qualification called once): a "Yes" delivered before the finish is kept for it (held, with an arm since no later
    than it, in one write: LinkRepository.arm's `hold`), and the finish, reading "No", qualifies her."""
    work, user, t, join = her_join_holds_her_user_and_waits(store, clock)
    user.update(updated_at=t + 20)
    for step in order:
        if step == "R":
            clock.now = t + 100.4
            run(work, join)
            continue
        value, at = ("Yes", t + 10) if step == "Y" else ("No", t + 20)
        run(work, event(dict(user, custom_attributes={**user["custom_attributes"], "signed_up": value}, updated_at=at),
                        "contact.user.updated", step.lower(), created_at=at))
        if step == "Y" and order.index("Y") < order.index("R"):
            kept = link_of(work)
            assert (kept.armed, kept.held_at, kept.held_at >= (kept.armed_at or 0.0)) == (True, t + 10, True)
    qualified_once(work)


def test_a_change_kept_on_her_held_user_then_merged_into_a_newer_one_qualifies_her_once(store, clock):
    """As tests/unit/test_join_use_case.py's, on both twins: her join holds A ("No", read at t) and waits; A goes "Yes"
    at t + 10 (delivered while it waits: kept), "No" at t + 15; B, made at t + 5, is where Intercom merges A. The
    retry (t + 100) holds B (its hold clears what the link kept) and keeps her baseline: the finish holds the kept
    change again and qualifies her, once."""
    work, a, t, join = her_join_holds_her_user_and_waits(store, clock)
    for value, at in (("Yes", t + 10), ("No", t + 15)):
        run(work, event(dict(a, custom_attributes={**a["custom_attributes"], "signed_up": value}, updated_at=at),
                        "contact.user.updated", f"a-{value}", created_at=at))
    b = merged_then_retried(work, a, t, join)
    link = link_of(work)
    assert (link.contact_id, link.baseline) == (b["id"], "No")
    qualified_once(work)


def test_a_change_kept_by_a_notification_read_before_the_retrys_finish_is_judged_again_after_it(store, clock):
    """As tests/unit/test_join_use_case.py's, on both twins (the keep's write held to the link's status as read): her
    join holds her user ("No", read at t) and waits; a "No" of t + 5 armed it. The notification of the "Yes" of t + 10
    reads the link (not linked: kept), and before its write lands the retry (t + 100) finishes, judging "No" (armed
    already: nothing written). The keep is Busy (nothing written); delivered again, the "Yes" is judged on the linked
    link: she is qualified, once. Found by review-held-yes."""
    work, user, t, join = her_join_holds_her_user_and_waits(store, clock)

    def told(value, at):
        return run(work, event(dict(user, custom_attributes={**user["custom_attributes"], "signed_up": value},
                                    updated_at=at), "contact.user.updated", f"{value}-{at}", created_at=at))
    told("No", t + 5)
    user.update(updated_at=t + 20)
    finished: list[bool] = []

    def retry():
        clock.now = t + 100.4
        run(work, join)
        finished.append(True)
    with before(work.store.links, "arm", retry, once=True):      # (the keep's write: its first)
        assert told("Yes", t + 10)["waiting"] == 1
    assert finished == [True] and (link_of(work).held_at, work.apis.rf_.qualified) == (None, [])
    told("Yes", t + 10)
    qualified_once(work)


def _told(work, contact, value, at):
    return run(work, event(dict(contact, custom_attributes={**contact["custom_attributes"], "signed_up": value},
                                updated_at=at), "contact.user.updated", f"{contact['id']}-{value}-{at}", created_at=at))


def _merge_notice(a, b, t):
    """The notification of A's merge into B, at t + 20."""
    return event(dict(b, updated_at=t + 20), "contact.merged", "merge", created_at=t + 20,
                 merged_from={"type": "contact", "id": a["id"]})


def _merge_told(work, a, b, t):
    """A merged into B in Intercom, and its notification delivered."""
    work.apis.intercom_.merge(a["id"], b["id"])
    return run(work, _merge_notice(a, b, t))


@pytest.mark.parametrize("refused", ["arm", "start_qualifying"])
def test_a_change_kept_on_her_held_user_merged_into_another_survives_a_failed_write_after_the_finish(store, clock,
                                                                                                    refused):
    """As tests/unit/test_join_use_case.py's, on both twins: her join holds A ("No") and waits; A goes "Yes" at t + 10
    (kept), "No" at t + 15; A is merged into B (made at t + 5). The retry's hold of B carries the kept change in its
    own write (FoundContact.kept_at): no re-arm after the finish to refuse ("arm"); the claim of her qualification
    after the finish refused (Busy, "start_qualifying"), the message's retry, a repeat of the finished join, finds the
    link released and qualifies her. Once either way."""
    work, a, t, join = her_join_holds_her_user_and_waits(store, clock)
    _told(work, a, "Yes", t + 10)
    _told(work, a, "No", t + 15)

    def refuse():
        raise Busy("the link changed meanwhile (another worker)")
    with before(work.store.links, refused, refuse, once=True):
        b = merged_then_retried(work, a, t, join)
    link = link_of(work)
    assert (link.contact_id, link.held_at, link.armed_at) == (b["id"], t + 10, t + 10)
    assert link.qualification is (QState.QUALIFIED if refused == "arm" else QState.PENDING)
    clock.now = t + 200.4
    run(work, join)
    qualified_once(work)


@pytest.mark.parametrize("delivered", ["yes, merge", "merge, yes", "yes during the merge"])
def test_a_change_kept_on_her_held_user_whose_merge_notification_moves_the_waiting_link_qualifies_her_once(
        store, clock, delivered):
    """As tests/unit/test_join_use_case.py's, on both twins: her join holds A ("No") and waits; B is made at t + 5; A's
    "Yes" of t + 10 and "No" of t + 15 are delivered before the merge's notification (t + 20), which moves the waiting
    link to B (the move carries the change kept: Link.keeps_for_join), or after it (judged against what the link held
    on A: the link itself keeps it, judge.kept_left), or the "Yes" is kept while the merge's notification is applied,
    between its read of the link and its move (the move, held to the armed state of a link not linked as read, reads
    it again and carries it). The retry (t + 100) finishes on B: she is qualified, once."""
    work, a, t, join = her_join_holds_her_user_and_waits(store, clock)
    b = work.apis.intercom_.add("ann@example.com", role="user", signed_up="No")
    b.update(created_at=t + 5, updated_at=t + 20)
    if delivered == "yes during the merge":
        with before(work.store.links, "move", lambda: _told(work, a, "Yes", t + 10), once=True):
            _merge_told(work, a, b, t)
        _told(work, a, "No", t + 15)
    else:
        for step in delivered.split(", "):
            if step == "yes":
                _told(work, a, "Yes", t + 10)
                _told(work, a, "No", t + 15)
            else:
                _merge_told(work, a, b, t)
    link = link_of(work)
    assert (link.contact_id, link.held_at, link.armed, link.status.value) == (b["id"], t + 10, True, "waiting")
    clock.now = t + 100.4
    run(work, join)
    qualified_once(work)


def test_a_change_kept_on_her_held_user_between_the_retrys_read_and_its_hold_of_another_is_carried_by_the_next(
        store, clock):
    """On both twins: her join holds A ("No") and waits; A goes "No" at t + 15 (delivered: armed); A is merged into B
    (made at t + 5; its notification not delivered). The retry (t + 100) reads the link, finds B, and, before its hold
    of B is written, A's "Yes" of t + 10 is delivered and kept (the link still holds A). The hold, which writes what
    the retry read (nothing kept), would lose it (a miss): it holds to what the link held as read (FoundContact.
    held_read), is Busy, and the join waits. Its next try reads the keep and carries it to B: she is qualified,
    once."""
    work, a, t, join = her_join_holds_her_user_and_waits(store, clock)
    _told(work, a, "No", t + 15)
    b = work.apis.intercom_.add("ann@example.com", role="user", signed_up="No")
    b.update(created_at=t + 5, updated_at=t + 15)
    work.apis.intercom_.merge(a["id"], b["id"])
    clock.now = t + 100.4
    with before(work.store.links, "hold_found", lambda: _told(work, a, "Yes", t + 10), once=True):
        assert run(work, join)["waiting"] == 1
    link = link_of(work)
    assert (link.contact_id, link.held_at, link.armed_at, link.status.value) == (a["id"], t + 10, t + 10, "waiting")
    assert work.apis.rf_.qualified == []
    clock.now = t + 200.4
    run(work, join)
    assert link_of(work).contact_id == b["id"]
    qualified_once(work)


def _kept_then_merged(store, clock):
    """Her join holds A ("No") and waits; A's "Yes" of t + 10 (kept) and "No" of t + 15 told; A merged into B ("No",
    made at t + 5) in Intercom, its notification not told; the clock at the retry's (t + 100): work, A, B, t, join."""
    work, a, t, join = her_join_holds_her_user_and_waits(store, clock)
    _told(work, a, "Yes", t + 10)
    _told(work, a, "No", t + 15)
    b = work.apis.intercom_.add("ann@example.com", role="user", signed_up="No")
    b.update(created_at=t + 5, updated_at=t + 20)
    work.apis.intercom_.merge(a["id"], b["id"])
    clock.now = t + 100.4
    return work, a, b, t, join


def test_a_merge_notification_moving_her_waiting_link_between_the_retrys_read_and_its_hold_keeps_the_change(store,
                                                                                                           clock):
    """Review of held22, on both twins: her join holds A ("No") and waits; A's "Yes" of t + 10 is kept, its "No" of
    t + 15 delivered; A is merged into B (made at t + 5). The retry (t + 100) reads the link (A, the keep), finds B,
    and before its hold of B the merge's notification moves the waiting link to B (carrying the keep). The hold, on
    the contact found already, carries it too: she is qualified, once."""
    work, a, b, t, join = _kept_then_merged(store, clock)
    with before(work.store.links, "hold_found", lambda: run(work, _merge_notice(a, b, t)), once=True):
        run(work, join)
    clock.now = t + 200.4
    run(work, join)
    assert link_of(work).contact_id == b["id"]
    qualified_once(work)


@pytest.mark.parametrize("order", [o for o in itertools.permutations(("yes", "no", "merged", "told", "retry"))
                                   if o.index("merged") < o.index("told")])
def test_a_change_kept_on_her_held_user_qualifies_her_once_in_any_order_on_both_twins(store, clock, order):
    """Review of held22, on both twins (tests/unit/test_join_use_case.py's permutations, A's "Yes" told twice there):
    her join holds A ("No") and waits; B is made at t + 5 (after she joined: her baseline kept). In `order`: A's "Yes"
    of t + 10, A's "No" of t + 15, A merged into B in Intercom ("merged") and its notification ("told"), the join's
    retry at t + 100; then the join's message once more (a repeat). By the rule she is qualified, once (Referral
    Factory asked once), whatever the order; but where A's "Yes" comes after a retry that held B (A merged, not told
    yet): that hold left A's pointer, no link names A, and it is not judged (how-it-works: "Still missed")."""
    work, a, t, join = her_join_holds_her_user_and_waits(store, clock)
    b = work.apis.intercom_.add("ann@example.com", role="user", signed_up="No")
    b.update(created_at=t + 5, updated_at=t + 20)
    for step in order:
        if step in ("yes", "no"):
            _told(work, a, "Yes" if step == "yes" else "No", t + 10 if step == "yes" else t + 15)
        elif step == "merged":
            work.apis.intercom_.merge(a["id"], b["id"])
        elif step == "told":
            run(work, _merge_notice(a, b, t))
        else:
            clock.now = t + 100.4
            run(work, join)
    clock.now = t + 300.4
    run(work, join)
    at = order.index
    missed = at("merged") < at("retry") < min(at("yes"), at("told"))
    assert len([c for c in work.apis.rf_.calls if c.startswith("qualify")]) == (0 if missed else 1), order
    assert (work.apis.rf_.qualified, link_of(work).qualification) == (
        ([], QState.PENDING) if missed else (["7"], QState.QUALIFIED)), order


def test_the_retrys_hold_and_finish_between_a_merge_notifications_read_and_its_move_qualify_her_once(store, clock):
    """Review of held22, on both twins: her join holds A ("No") and waits; A's "Yes" of t + 10 is kept, its "No" of
    t + 15 told; A is merged into B (made at t + 5). The merge's notification reads the waiting link (A, the keep);
    before its move, the join's retry (t + 100) holds B (carrying the keep), finishes and qualifies her. The move,
    held to the contact it read, is refused and its retry finds the link on B already: she is qualified, once."""
    work, a, b, t, join = _kept_then_merged(store, clock)

    def retried():
        run(work, join)
        assert work.apis.rf_.qualified == ["7"]
    merged = _merge_notice(a, b, t)
    with before(work.store.links, "move", retried, once=True):
        run(work, merged)
    run(work, merged)
    clock.now = t + 300.4
    run(work, join)
    assert link_of(work).contact_id == b["id"]
    qualified_once(work)
