"""What every store promises the services (chalicelib/ports/store.py), proved on both
implementations: claims and leases, event-time ordering, only-forward qualification, the pending
index, pointers, history, and the small repositories."""
from __future__ import annotations

import contextlib
import copy
import json
import dataclasses
from typing import ContextManager, Optional, Sequence

import pytest

from chalicelib.adapters.memory import MemoryStore
from chalicelib.domain.history import Entry, iso
from chalicelib.domain.link import (Claim, ContactState, DuplicateSeen, FoundContact, JoinClaim, JoinResult, LeftContact,
                                   Link, LinkStatus, PersonRef, MOVED_UNKNOWN, ReferralCount)
from chalicelib.domain.judge import letter_gone
from chalicelib.domain.qualification import QState
from chalicelib.ports import AttributeList, Busy
from chalicelib.ports.store import CHANGED_SINCE_READ, COUNT_ASK_GRACE, MOVED_SINCE_READ
from tests.fakes import FakeClock, refused, seed_ledger
from tests.support.killed import Killed
from tests.support.meanwhile import after

ANN = PersonRef("42", "7")
WS = "ws1"


def joined(store, ref=ANN, *, contact="c1", email="Ann@Example.com", kind="lead", pending=True,
           entries=(Entry("join", "linked"),), baseline_of=None, workspace=WS) -> Link:
    claim = store.links.claim(ref, workspace)
    store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind=kind, email=email.lower(), contact_id=contact,
                                         contact_role="lead", baseline="No", baseline_of=baseline_of,
                                         qualification=QState.PENDING if pending else None), list(entries))
    return store.links.get(ref)


def outcomes(store, ref=ANN) -> list[str]:
    return [e.outcome for e in store.history.entries(ref)]


# --- joining: claims and leases -------------------------------------------------------------------
def test_a_finished_join_is_read_back_as_the_link_with_its_history(store):
    link = joined(store)
    assert (link.status, link.kind, link.email, link.contact_id, link.baseline, link.qualification) == (
        LinkStatus.LINKED, "lead", "ann@example.com", "c1", "No", QState.PENDING)
    assert link.workspace == WS and link.joined_at and link.final and not link.armed
    assert outcomes(store) == ["linked"]
    assert store.links.claim(ANN, WS) is None                     # a repeat: already applied


def test_a_claim_holds_until_its_lease_runs_out_and_the_loser_cannot_finish(store, clock):
    first = store.links.claim(ANN, WS, lease=120)
    clock.now += 30
    with pytest.raises(Busy) as busy:
        store.links.claim(ANN, WS)
    assert busy.value.retry_after == pytest.approx(90)          # the work waits until the lease ends
    clock.now += 91
    second = store.links.claim(ANN, WS)
    assert second is not None and second.token != first.token
    with pytest.raises(Busy):
        store.links.finish(first, JoinResult(LinkStatus.LINKED, contact_id="c1"), [])
    store.links.finish(second, JoinResult(LinkStatus.LINKED, contact_id="c2"), [])
    assert store.links.get(ANN).contact_id == "c2"


def test_a_claim_says_since_when_the_contact_may_exist_and_only_a_linked_join_clears_it(store, clock):
    claim = store.links.claim(ANN, WS)
    assert store.links.get(ANN).uncertain_since == clock.now      # a crash from here on: look before creating
    store.links.finish(claim, JoinResult(LinkStatus.FAILED, email="ann@example.com", uncertain_since=clock.now - 1,
                                         reason="Intercom answered 500"), [Entry("join", "failed")])
    assert store.links.get(ANN).uncertain_since == clock.now - 1
    clock.now += 5
    again = store.links.claim(ANN, WS)
    store.links.finish(again, JoinResult(LinkStatus.LINKED, contact_id="c1"), [])
    assert store.links.get(ANN).uncertain_since is None


def test_a_failed_join_keeps_what_it_created_for_the_next_claim(store, clock):
    claim = store.links.claim(ANN, WS)
    store.links.finish(claim, JoinResult(LinkStatus.FAILED, email="ann@example.com", contact_id="c9", baseline="No",
                                         reason="Intercom answered 400"), [Entry("join", "failed")])
    joined_at = store.links.get(ANN).joined_at
    clock.now += 5
    again = store.links.claim(ANN, WS)                            # a failed join may be claimed at once
    link = store.links.get(ANN)
    assert again is not None and link.status is LinkStatus.IN_PROGRESS
    assert (link.contact_id, link.baseline, link.joined_at) == ("c9", "No", joined_at)
    found = store.lookup.look_up(emails=[(WS, "ANN@example.com")])
    assert found.linked_to_email(WS, "ann@example.com") == [link]        # forget can find a failed join



def test_a_waiting_join_keeps_what_the_next_try_needs_and_its_claim_drops_the_wait_reason(store, clock):
    claim = store.links.claim(ANN, WS)
    store.links.finish(claim, JoinResult(LinkStatus.WAITING, email="ann@example.com", uncertain_since=clock.now - 1,
                                         reason="Intercom answered 429"), [Entry("join", "waiting")])
    waiting = store.links.get(ANN)
    assert (waiting.status, waiting.reason, waiting.uncertain_since) == (
        LinkStatus.WAITING, "Intercom answered 429", clock.now - 1)
    clock.now += 5
    assert store.links.claim_many([(ANN, WS)])[0] is not None          # its next try claims it at once
    link = store.links.get(ANN)
    assert (link.status, link.reason, link.email) == (LinkStatus.IN_PROGRESS, None, "ann@example.com")

@pytest.mark.parametrize("new", [False, True])
def test_a_contact_found_is_held_under_the_claim_with_its_baseline_and_finished_or_failed_as_held(store, clock, new):
    """A join holds the contact it found (that existed) before writing to it: under its claim only, the link's
    pointer to the contact found at once (a notification then finds it), an arming cleared; a failed try keeps it all
    for the next, and the finish of a link whose claim wrote it whole (`new`) keeps what was written since."""
    bob = PersonRef("42", "8")
    [ann_claim, bob_claim] = store.links.claim_many([(ANN, WS), (bob, WS)], read={ANN: None, bob: None} if new else {})
    store.links.arm(store.links.get(ANN), [], "rule", 100.0)
    stale = JoinClaim(bob, WS, "not-the-token")
    answers = store.links.hold_found([(ann_claim, FoundContact("c1", "lead", "user", "Yes", "custom_attributes.x")),
                                      (stale, FoundContact("c2", "lead", "user", "No", "custom_attributes.x"))])
    assert answers[0] is None and isinstance(answers[1], Busy)
    held = store.links.get(ANN)
    assert (held.status, held.contact_id, held.kind, held.contact_role, held.baseline, held.baseline_of,
            held.contact_found, held.armed, held.armed_at) == (LinkStatus.IN_PROGRESS, "c1", "lead", "user", "Yes",
                                                               "custom_attributes.x", True, False, None)
    assert store.lookup.look_up(contacts=[(WS, "c1")]).linked_to_contact(WS, "c1") == [held]
    assert store.links.get(bob).contact_id is None
    store.links.arm(held, [], "rule")                                # a change away, seen meanwhile
    claim = dataclasses.replace(ann_claim, created_at=None)
    store.links.finish(claim, JoinResult(LinkStatus.FAILED, email="ann@example.com", contact_id="c1", baseline="Yes",
                                         baseline_of="custom_attributes.x", contact_found=True, reason="Intercom 502"),
                       [Entry("join", "failed")])
    clock.now += 5
    again = store.links.claim(ANN, WS)
    link = store.links.get(ANN)
    assert (link.contact_id, link.baseline, link.contact_found, link.armed) == ("c1", "Yes", True, True)
    store.links.finish(again, JoinResult(LinkStatus.LINKED, kind="lead", email="ann@example.com", contact_id="c1",
                                         baseline="Yes", baseline_of="custom_attributes.x",
                                         qualification=QState.PENDING), [])
    link = store.links.get(ANN)
    assert (link.status, link.contact_found, link.armed) == (LinkStatus.LINKED, False, True)


@pytest.mark.parametrize("then", ["found", "created"])
def test_a_join_records_when_the_try_that_found_her_contact_began_and_a_retry_keeps_it(store, clock, then):
    """Each claim says when it was taken (JoinClaim.at, the store's clock; claim_many's too, a link written whole or
    updated); a hold records the time it is given (Link.found_at), a claim after it keeps it, and so does a finish
    saying so; a finish on a contact the join made says none (found_at None: judged from joined_at, as before)."""
    clock.now = 1000.4
    [first] = store.links.claim_many([(ANN, WS)], read={ANN: None})
    assert first.at == 1000.4 and store.links.get(ANN).found_at is None
    store.links.finish(first, JoinResult(LinkStatus.WAITING, email="ann@example.com", reason="Intercom 503"), [])
    clock.now = 1100.4
    second = store.links.claim(ANN, WS)
    assert second.at == 1100.4
    assert store.links.hold_found([(second, FoundContact("c1", "lead", "user", "No", "x", found_at=second.at))]) == [
        None]
    store.links.finish(second, JoinResult(LinkStatus.WAITING, email="ann@example.com", contact_id="c1", baseline="No",
                                          baseline_of="x", contact_found=True, found_at=1100.4,
                                          reason="Intercom 503"), [])
    clock.now = 1200.4
    bob = PersonRef("42", "8")
    [third, _] = store.links.claim_many([(ANN, WS), (bob, WS)], read={ANN: store.links.get(ANN), bob: None})
    assert third.at == 1200.4
    link = store.links.get(ANN)
    assert (link.joined_at, link.found_at, link.contact_found, link.joined_since) == (
        iso(1000.4), 1100.4, True, 1100.0)
    store.links.finish(third, JoinResult(LinkStatus.LINKED, kind="lead", email="ann@example.com", contact_id="c1",
                                         baseline="No", baseline_of="x", qualification=QState.PENDING,
                                         contact_created=then == "created",
                                         found_at=1100.4 if then == "found" else None), [])
    link = store.links.get(ANN)
    assert (link.status, link.joined_at, link.found_at, link.joined_since) == (
        LinkStatus.LINKED, iso(1000.4), 1100.4 if then == "found" else None, 1100.0 if then == "found" else 1000.0)


def test_a_link_says_its_join_created_its_contact_until_it_moves_to_another(store):
    claim = store.links.claim(ANN, WS)
    store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="lead", email="ann@example.com", contact_id="c1",
                                         contact_created=True), [])
    assert store.links.get(ANN).contact_created
    moved = store.links.move(store.links.get(ANN), "c2", [Entry("contact", "merged")])
    assert (moved.contact_id, moved.contact_created) == ("c2", False)
    assert not store.links.get(ANN).contact_created


@pytest.mark.parametrize("then", ["found", "created"])
def test_a_contact_a_join_finds_or_creates_clears_the_state_said_of_the_one_an_earlier_try_had(store, clock, then):
    """An earlier try's contact was deleted in Intercom (its notification marked the link), and the next try found or
    created another: the link no longer says its contact is deleted (reconciliation checks it again)."""
    claim = store.links.claim(ANN, WS)
    store.links.finish(claim, JoinResult(LinkStatus.FAILED, contact_id="c1", reason="Intercom 502"), [])
    store.links.set_contact(store.links.get(ANN), [], when=1.0, state=ContactState.DELETED)
    clock.now += 5
    again = store.links.claim(ANN, WS)
    if then == "found":
        assert store.links.hold_found([(again, FoundContact("c2", "lead", "user", "No", "x"))]) == [None]
    store.links.finish(again, JoinResult(LinkStatus.LINKED, kind="lead", contact_id="c2",
                                         contact_created=then == "created"), [])
    assert (store.links.get(ANN).contact_id, store.links.get(ANN).contact_state) == ("c2", None)


def test_claims_and_finishes_of_a_batch_answer_each_as_alone(store, clock):
    bob, cid, dan = PersonRef("42", "8"), PersonRef("42", "9"), PersonRef("42", "10")
    claims = store.links.claim_many([(ANN, WS), (bob, WS), (cid, WS)])
    assert [c.ref for c in claims] == [ANN, bob, cid]
    assert {store.links.get(r).status for r in (ANN, bob, cid)} == {LinkStatus.IN_PROGRESS}
    linked = [(c, JoinResult(LinkStatus.LINKED, email="same@example.com", contact_id="c1"), [Entry("join", "linked")])
              for c in claims[:2]]                               # two people, one contact and one email
    stale = (JoinClaim(cid, WS, "not-the-token"), JoinResult(LinkStatus.LINKED, contact_id="c3"), [])
    answers = store.links.finish_many([*linked, stale])
    assert answers[:2] == [None, None] and isinstance(answers[2], Busy)
    assert [store.links.get(r).status for r in (ANN, bob, cid)] == [LinkStatus.LINKED, LinkStatus.LINKED,
                                                                   LinkStatus.IN_PROGRESS]
    found = store.lookup.look_up(contacts=[(WS, "c1")])
    assert {link.ref for link in found.linked_to_contact(WS, "c1")} == {ANN, bob}
    assert outcomes(store, bob) == ["linked"]
    again = store.links.claim_many([(ANN, WS), (cid, WS), (dan, WS)])   # done, held elsewhere, free
    assert again[0] is None and isinstance(again[1], Busy) and again[2].ref == dan


def test_a_link_is_claimed_as_read_unless_another_try_wrote_it_since(store, clock):
    """A join's batch read Ann's link (a try that failed before making a contact) and Bob's (none); then another
    worker's try claimed each and failed after creating a contact. Claimed as read, each waits (to be read again):
    a try going on from the older link would not know that contact. Read again, it is claimed."""
    bob = PersonRef("42", "8")
    first = store.links.claim(ANN, WS)
    store.links.finish(first, JoinResult(LinkStatus.WAITING, email="ann@example.com", reason="Intercom 429"), [])
    clock.now += 1
    read = store.links.get_many([ANN, bob])
    assert set(read) == {ANN}
    clock.now += 1
    for ref, contact in ((ANN, "c1"), (bob, "c2")):
        other = store.links.claim(ref, WS)
        store.links.finish(other, JoinResult(LinkStatus.FAILED, email="x@example.com", contact_id=contact,
                                             reason="Intercom 502"), [])
    clock.now += 1
    wanted = [(ANN, WS), (bob, WS)]
    for answers in (store.links.claim_many(wanted, read={ANN: read[ANN], bob: None}),
                    store.links.claim_many(wanted[:1], read={ANN: read[ANN]})):
        assert all(isinstance(a, Busy) and a.reason == CHANGED_SINCE_READ for a in answers)
    assert [store.links.get(r).status for r in (ANN, bob)] == [LinkStatus.FAILED, LinkStatus.FAILED]
    again = store.links.get_many([ANN, bob])
    claims = store.links.claim_many(wanted, read=again)
    assert [c.ref for c in claims] == [ANN, bob] and store.links.get(bob).contact_id == "c2"


def test_claims_of_people_read_without_a_link_end_as_the_same_links_and_a_link_written_meanwhile_waits(store, clock):
    """No link read for them may change how the store writes, never what it keeps: a link written since (a repeat,
    another's claim, a try that failed after creating a contact) is answered as it is, and never claimed as none."""
    bob, cid, dan, eve = (PersonRef("42", n) for n in ("8", "9", "10", "11"))
    joined(store, bob, contact="c8", email="bob@example.com")       # written since the batch's read: a repeat
    store.links.claim(cid, WS)                                      # ... held by another worker
    failed = store.links.claim(dan, WS)                             # ... a failed join that created c9
    store.links.finish(failed, JoinResult(LinkStatus.FAILED, email="dan@example.com", contact_id="c9",
                                          reason="Intercom answered 500"), [Entry("join", "failed")])
    dan_joined = store.links.get(dan).joined_at
    clock.now += 5
    claims = store.links.claim_many([(r, WS) for r in (ANN, bob, cid, dan)], read=dict.fromkeys([ANN, bob, cid, dan]))
    assert claims[0].ref == ANN and claims[1] is None and isinstance(claims[2], Busy)
    assert isinstance(claims[3], Busy) and claims[3].reason == CHANGED_SINCE_READ
    dan_link = store.links.get(dan)
    assert (dan_link.status, dan_link.contact_id, dan_link.joined_at) == (LinkStatus.FAILED, "c9", dan_joined)
    [eve_claim] = store.links.claim_many([(eve, WS)], read={eve: None})
    claimed_at = iso(clock.now)
    assert store.links.get(ANN).status is LinkStatus.IN_PROGRESS and store.links.get(ANN).uncertain_since == clock.now
    assert {late.link.ref for late in store.links.overdue(clock.now + 10_000, 10)} >= {ANN, eve}   # until finished
    clock.now += 1
    result = JoinResult(LinkStatus.LINKED, kind="lead", email="ann@example.com", contact_id="c1", contact_role="lead",
                        baseline="No", qualification=QState.PENDING)
    assert store.links.finish_many([(claims[0], result, [Entry("join", "linked")]),
                                    (eve_claim, dataclasses.replace(result, email="eve@example.com", contact_id="c2"),
                                     [])]) == [None, None]
    ann, eve_link = store.links.get(ANN), store.links.get(eve)
    assert (ann.status, ann.kind, ann.email, ann.contact_id, ann.contact_role, ann.baseline, ann.qualification,
            ann.uncertain_since, ann.joined_at) == (LinkStatus.LINKED, "lead", "ann@example.com", "c1", "lead", "No",
                                                   QState.PENDING, None, claimed_at)
    assert ann.final and eve_link.contact_id == "c2" and outcomes(store) == ["linked"]
    assert {link.ref for link in store.links.pending(None, 10).links} == {bob, ANN, eve}
    assert {late.link.ref for late in store.links.overdue(clock.now + 10_000, 10)}.isdisjoint({ANN, eve})
    found = store.lookup.look_up(contacts=[(WS, "c1")], emails=[(WS, "eve@example.com")])
    assert found.linked_to_contact(WS, "c1") == [ann] and found.linked_to_email(WS, "eve@example.com") == [eve_link]
    never = JoinClaim(PersonRef("42", "12"), WS, "token", created_at=clock.now)   # its link was erased meanwhile
    assert isinstance(store.links.finish_many([(never, result, [])])[0], Busy)
    assert store.links.get(PersonRef("42", "12")) is None


def test_get_many_reads_only_the_links_that_exist(store):
    joined(store)
    joined(store, PersonRef("42", "8"), contact="c2", email="bob@example.com")
    got = store.links.get_many([ANN, PersonRef("42", "8"), PersonRef("42", "nobody")])
    assert set(got) == {ANN, PersonRef("42", "8")} and got[ANN].contact_id == "c1"
    assert store.links.get_many([ANN, PersonRef("42", "nobody")], consistent=True) == {ANN: got[ANN]}


# --- the lookup -----------------------------------------------------------------------------------
def test_one_lookup_answers_linked_by_contact_by_email_and_seen(store):
    joined(store)
    joined(store, PersonRef("43", "7"), contact="c1", kind="referrer", pending=False)
    store.lookup.mark_seen(WS, "n1")
    found = store.lookup.look_up(contacts=[(WS, "c1"), (WS, "c404")], emails=[(WS, " ANN@example.com")],
                                 notifications=[(WS, "n1"), (WS, "n2")], refs=[PersonRef("44", "1")])
    assert [l.ref for l in found.linked_to_contact(WS, "c1")] == [ANN, PersonRef("43", "7")]
    assert found.linked_to_contact(WS, "c404") == [] and found.linked_to_contact("other-ws", "c1") == []
    assert [l.ref for l in found.linked_to_email(WS, "ann@EXAMPLE.com")] == [ANN, PersonRef("43", "7")]
    assert found.seen == {(WS, "n1")}


def test_forgetting_an_email_drops_its_pointer(store):
    joined(store)
    store.lookup.forget_email(WS, "ann@example.com")
    assert store.lookup.look_up(emails=[(WS, "ann@example.com")]).by_email == {}


# --- what Intercom says of the contact ------------------------------------------------------------
def test_contact_changes_apply_in_event_time_order_and_a_late_one_is_counted_not_applied(store):
    link = joined(store)
    archived = store.links.set_contact(link, [Entry("contact", "archived")], when=200.0, state=ContactState.ARCHIVED)
    assert archived.contact_state is ContactState.ARCHIVED and archived.last_event_at == 200.0
    assert store.links.set_contact(archived, [Entry("contact", "unarchived")], when=100.0, state=None) is None
    assert store.links.get(ANN).contact_state is ContactState.ARCHIVED
    same_time = store.links.set_contact(archived, [Entry("contact", "role_changed")], when=200.0, role="user")
    assert same_time.contact_role == "user" and same_time.contact_state is ContactState.ARCHIVED
    entries = store.history.entries(ANN)
    assert [e.outcome for e in entries] == ["linked", "archived", "role_changed", "ignored"]
    assert entries[-1].event == "older_event" and entries[-1].count == 1


@pytest.mark.parametrize("change", [dict(role="user"), dict(state=ContactState.ARCHIVED),
                                    dict(email="ann@new.example"), None], ids=["role", "state", "email", "arming"])
def test_what_intercom_says_of_a_contact_the_link_left_meanwhile_is_not_set_on_the_one_it_is_on(store, change):
    """A worker read the link on c1; another moved it to c2 since (a retried join, a merge): c1's role, state or
    email are not c2's, nor does c1's value missing the target arm the link (`None`: the move disarmed it, and an
    armed link qualifies on c2's value as it was at the merge). Busy, nothing written: read again (the notification
    of c1 then names nobody)."""
    read = joined(store)
    moved = store.links.move(store.links.get(ANN), "c2", [Entry("contact", "merged")], role="lead")
    with pytest.raises(Busy):
        if change is None:
            store.links.arm(read, [Entry("evaluation", "armed")], "rule")
        else:
            store.links.set_contact(read, [Entry("contact", "changed")], when=100.0, **change)
    assert store.links.get(ANN) == moved and outcomes(store)[-1] == "merged"


@pytest.mark.parametrize("store", ["dynamo"], indirect=True)
def test_a_late_event_whose_person_is_erased_while_it_is_told_apart_writes_no_note(store):
    """An event older than the one applied is counted in the history; when `bridge forget` erases the person
    between the refused write and that note (DynamoDB reads the link again to tell the two apart), the note
    recreates nothing of theirs."""
    from chalicelib.adapters.dynamo import links as dynamo_links
    link = store.links.set_contact(joined(store), [Entry("contact", "archived")], when=200.0,
                                   state=ContactState.ARCHIVED)
    with after(dynamo_links, "get", lambda: store.links.erase(link), once=True):  # forget, just after the read
        assert store.links.set_contact(link, [Entry("contact", "unarchived")], when=100.0, state=None) is None
    assert store.links.get(ANN) is None and store.history.entries(ANN) == []


def test_a_merge_moves_the_link_and_its_pointer_to_the_survivor(store):
    link = joined(store)
    store.links.set_contact(link, [], state=ContactState.DELETED)
    moved = store.links.move(store.links.get(ANN), "c2", [Entry("contact", "merged")], role="user")
    assert (moved.contact_id, moved.contact_state, moved.contact_role) == ("c2", None, "user")
    assert store.links.get(ANN) == moved
    found = store.lookup.look_up(contacts=[(WS, "c1"), (WS, "c2")])
    assert found.linked_to_contact(WS, "c1") == [] and found.linked_to_contact(WS, "c2") == [moved]
    with pytest.raises(Busy):                                     # someone else's view of the link is stale
        store.links.move(link, "c3", [])
    assert store.links.move(moved, "c2", []) is moved             # already there: nothing to write
    assert moved.baseline == "No"                                 # kept unless given


def test_a_link_keeps_the_contacts_it_moved_off_and_holds_one_again_when_it_moves_back(store):
    """A late notification about a contact the link left is not hers (contact_events._left): each store records the
    contacts a move says it left, read back as written, and one the link moves back to is held, not left. The
    merge's time is the newest event applied: an older one about the survivor sets nothing back."""
    link = store.links.set_contact(joined(store), [], when=100.0, role="lead")
    moved = store.links.move(link, "c2", [Entry("contact", "merged")], role="user", when=200.0, left=True)
    assert (moved.left_contacts, moved.last_event_at) == (frozenset({"c1"}), 200.0) and store.links.get(ANN) == moved
    assert store.links.set_contact(moved, [], when=150.0, role="lead") is None      # older than the merge
    assert store.links.get(ANN).contact_role == "user"
    assert moved.left("c1") and not moved.left("c2") and not moved.left("c9") and not moved.left(None)
    back = store.links.move(moved, "c1", [Entry("contact", "moved")], when=120.0, left=True)
    assert (back.left_contacts, back.last_event_at) == (frozenset({"c1", "c2"}), 200.0)      # never moved back
    assert store.links.get(ANN) == back
    assert back.left("c2") and not back.left("c1")
    # (a move that does not say so, one that keeps her baseline or leaves a contact still in Intercom, records none)
    kept = store.links.move(back, "c3", [Entry("contact", "moved_to_existing")], when=250.0)
    assert (kept.left_contacts, kept.last_event_at) == (frozenset({"c1", "c2"}), 250.0) and store.links.get(ANN) == kept


def test_every_move_records_when_it_moved_the_link_whether_or_not_it_records_what_it_left(store, clock):
    """Link.moved_at bounds what judge takes as hers on the contact the link holds (judge.before_view): every move
    records its time (Link.last_moved_at), its event's or, naming none, the store's clock then: the duplicate
    check's move leaving her lead in Intercom, which recorded nothing it left before 2026-11-28, too. A link none of whose moves recorded it
    reads none."""
    link = joined(store)
    assert (link.last_moved_at, link.moved_at) == (None, None)
    kept = store.links.move(link, "c2", [Entry("contact", "moved_to_existing")], role="user")
    assert (kept.left_contacts, kept.last_moved_at, kept.moved_at) == (frozenset(), clock.now, clock.now)
    assert store.links.get(ANN) == kept
    clock.now += 60
    merged = store.links.move(kept, "c3", [Entry("contact", "merged")], when=clock.now - 30, left=True)
    assert (merged.last_moved_at, merged.moved_at, merged.left_baselines[0].moved_at) == ((clock.now - 30,) * 3)
    assert store.links.get(ANN) == merged


def test_a_move_or_a_take_dated_by_the_stores_clock_is_dated_by_the_second(store, clock):
    """Intercom dates events in whole seconds: a move naming no event time, and a baseline taken, record the store's
    clock by the second (down), so that a change of the contact in that second after them, notified as of that
    second, is judged (judge.before_view), not taken as one from before them. A take is dated by the time its
    contacts were read when it names one (`read_at`). Found by review-baseline-at."""
    link = joined(store)
    clock.now += 0.7
    kept = store.links.move(link, "c2", [Entry("contact", "moved_to_existing")], role="user")
    assert kept.last_moved_at == kept.moved_at == float(int(clock.now)) and store.links.get(ANN) == kept
    assert store.links.take_baselines([(kept, "pro", "custom_attributes.plan", [])]) == [True]
    assert store.links.get(ANN).baseline_at == float(int(clock.now))
    again = store.links.get(ANN)
    assert store.links.take_baselines([(again, "free", "custom_attributes.x", [])], read_at=clock.now - 2.5) == [True]
    assert store.links.get(ANN).baseline_at == float(int(clock.now - 2.5))


def test_a_move_records_what_the_link_held_on_the_contact_it_left_and_an_item_with_the_contact_alone_reads(store,
                                                                                                          clock):
    """A late notification about a contact the link left, of an event from before the move, is judged against what
    the link held on it (contact_events._late): each store records the stored link's baseline and armed state as the
    move leaves the contact, and when (the move's event time; none given, the store's clock then). A link armed since
    the caller read it is recorded armed. An item moved before the bridge recorded these (the contact alone) reads
    with none, and a later move records its own."""
    attr = "custom_attributes.signed_up"
    read = store.links.set_contact(joined(store, baseline_of=attr), [], when=100.0, role="lead")
    store.links.arm(read, [Entry("evaluation", "not_met")], "rule-1")                 # since `read` was read
    moved = store.links.move(read, "c2", [Entry("contact", "merged")], role="user", baseline="Yes", baseline_of=attr,
                             when=200.0, left=True)
    on_c1 = LeftContact("c1", "No", attr, True, "rule-1", 200.0, email=read.email)
    assert (moved.left_baselines, moved.left_then("c1"), moved.baseline, moved.armed) == ((on_c1,), on_c1, "Yes", False)
    assert store.links.get(ANN) == moved
    clock.now += 50
    gone = store.links.move(moved, "c3", [Entry("contact", "moved")], role="user", baseline="No", baseline_of=attr,
                            left=True)
    assert gone.left_then("c2") == LeftContact("c2", "Yes", attr, False, None, clock.now, last_moved_at=200.0,
                                                 email=read.email)     # (and when it moved there, her email)
    assert gone.left_then("c1") == on_c1
    assert store.links.get(ANN) == gone
    if type(store.links).__name__ == "DynamoLinks":
        from chalicelib.adapters.dynamo.keys import link_key
        from chalicelib.adapters.dynamo.models import LinkItem
        LinkItem(*link_key(ANN)).update(actions=[LinkItem.left_baselines.remove()])
    else:
        store.tables.links[ANN].link = dataclasses.replace(store.tables.links[ANN].link, left_baselines=())
    old = store.links.get(ANN)
    assert (old.left_contacts, old.left_baselines, old.left_then("c1")) == (frozenset({"c1", "c2"}), (), None)
    again = store.links.move(old, "c4", [Entry("contact", "merged")], role="user", when=300.0, left=True)
    assert again.left_baselines == (LeftContact("c3", "No", attr, False, None, 300.0, last_moved_at=gone.last_moved_at,
                                                email=read.email, kept=True),) == \
        store.links.get(ANN).left_baselines
    assert again.left("c1") and again.left_then("c1") is None
    # A baseline stored before links named its attribute (taken as the rule's now) is recorded as of the attribute the
    # move names (the rule's now): a rule changed later does not take it as its own
    bob = PersonRef("42", "8")
    unrecorded = joined(store, bob, contact="c7", email="bob@example.com")
    assert unrecorded.baseline_unrecorded
    left = store.links.move(unrecorded, "c8", [Entry("contact", "merged")], role="user", baseline="Yes",
                            baseline_of=attr, when=400.0, left=True)
    assert left.left_then("c7") == LeftContact("c7", "No", attr, False, None, 400.0, email="bob@example.com") == \
        store.links.get(bob).left_then("c7")


def test_arming_what_the_link_held_on_a_contact_it_left_arms_that_alone_while_it_is_as_read(store):
    """A late notification's value missing the target, seen on a contact the link left (contact_events._late), arms
    what the link held on that contact, with its entries, not the link (on its survivor now). Held to those records
    as read: changed meanwhile, Busy and nothing written; erased meanwhile, or nothing recorded of that contact, the
    link as given and nothing written."""
    attr = "custom_attributes.signed_up"
    link = store.links.set_contact(joined(store, baseline_of=attr), [], when=100.0, role="lead")
    moved = store.links.move(link, "c2", [Entry("contact", "merged")], role="user", baseline="Yes", baseline_of=attr,
                             when=200.0, left=True)
    armed = store.links.arm_left(moved, "c1", [Entry("evaluation", "not_met")], "rule-1")
    assert armed.left_then("c1") == LeftContact("c1", "No", attr, True, "rule-1", 200.0, email=link.email) \
        and not armed.armed
    assert store.links.get(ANN) == armed and outcomes(store)[-1] == "not_met"
    assert store.links.arm_left(armed, "c9", [Entry("evaluation", "not_met")], "rule-1") is armed   # none recorded
    assert store.links.get(ANN) == armed and len(outcomes(store)) == 3
    with pytest.raises(Busy):                                       # as `moved` read them: armed since
        store.links.arm_left(moved, "c1", [Entry("evaluation", "not_met")], "rule-2")
    assert store.links.get(ANN) == armed and len(outcomes(store)) == 3
    store.links.erase(armed)
    assert store.links.arm_left(armed, "c1", [Entry("evaluation", "not_met")], "rule-2") is armed
    assert store.links.get(ANN) is None and store.history.entries(ANN) == []


def test_a_move_leaving_a_contact_in_intercom_records_what_it_held_there_without_taking_it_as_left(store):
    """The duplicate check's move of her link to an older contact, her lead left in Intercom (`stays`): what the link
    held on the lead is recorded (Link.left_baselines, as any move that records what it left), but the lead is not in
    Link.left_contacts (its notifications are a duplicate's, but those from before the move: contact_events
    ._same_email). Such a record is armed as any other (arm_left, Link.left_record); a move without `left` records
    nothing, `stays` or not (as before)."""
    attr = "custom_attributes.signed_up"
    link = store.links.set_contact(joined(store, baseline_of=attr), [], when=100.0, role="lead")
    none = store.links.move(link, "c9", [Entry("contact", "moved_to_existing")], role="user", when=150.0, stays=True)
    assert (none.left_contacts, none.left_baselines) == (frozenset(), ()) and store.links.get(ANN) == none
    store.links.erase(none)
    link = store.links.set_contact(joined(store, baseline_of=attr), [], when=100.0, role="lead")
    moved = store.links.move(link, "c2", [Entry("contact", "moved_to_existing")], role="user", when=200.0, left=True,
                             stays=True)
    record = LeftContact("c1", "No", attr, False, None, 200.0, email=link.email, kept=True)
    assert (moved.contact_id, moved.left_contacts, moved.left_baselines) == ("c2", frozenset(), (record,))
    assert store.links.get(ANN) == moved and not moved.left("c1") and moved.left_then("c1") is None
    assert moved.left_record("c1") == record and moved.left_at(150.0) == record and moved.left_record("c2") is None
    armed = store.links.arm_left(moved, "c1", [Entry("evaluation", "not_met")], "rule-1", 150.0)
    assert armed.left_record("c1") == dataclasses.replace(record, armed=True, armed_by="rule-1", armed_at=150.0)
    assert store.links.get(ANN) == armed and not armed.armed and armed.left_contacts == frozenset()


@pytest.mark.parametrize("stays", [True, False], ids=["stays", "merged"])
def test_a_move_leaving_a_contact_in_intercom_records_the_value_the_link_held_back_there(store, stays):
    """The value the link held back on her lead (Link.held_at, held_by), which any move clears on the link, is recorded
    with what it held there when the lead stays in Intercom (`stays`: a late change away there releases it); a
    contact merged (taken as left) records none (as before: a known miss)."""
    attr = "custom_attributes.signed_up"
    link = store.links.set_contact(joined(store, baseline_of=attr), [], when=100.0, role="lead")
    held = store.links.hold_back(link, [Entry("evaluation", "not_met")], 150.0, "rule-1")
    moved = store.links.move(held, "c2", [Entry("contact", "moved_to_existing")], role="user", when=200.0, left=True,
                             stays=stays)
    record = moved.left_record("c1")
    assert (moved.held_at, moved.held_by) == (None, None) and store.links.get(ANN) == moved
    assert (record.held_at, record.held_by) == ((150.0, "rule-1") if stays else (None, None))


def test_a_value_held_on_a_contact_left_in_intercom_is_recorded_there_and_kept_or_dropped_by_its_arm(store):
    """hold_left: a late value at the target of her lead the duplicate check's move left in Intercom, no change against
    what the link held on it, is held on that record (LeftContact.held_at, held_by), with its entries, read back as
    written; arm_left keeps it, or drops it (`drop_left_held`). Held to the records as read (Busy, nothing written);
    erased meanwhile, or no record of that contact: the link as given, nothing written."""
    attr = "custom_attributes.signed_up"
    link = store.links.set_contact(joined(store, baseline_of=attr), [], when=100.0, role="lead")
    moved = store.links.move(link, "c2", [Entry("contact", "moved_to_existing")], role="user", when=200.0, left=True,
                             stays=True)
    held = store.links.hold_left(moved, "c1", [Entry("evaluation", "not_met")], 150.0, "rule-1")
    assert (held.left_record("c1").held_at, held.left_record("c1").held_by) == (150.0, "rule-1")
    assert store.links.get(ANN) == held and outcomes(store)[-1] == "not_met" and held.held_at is None
    assert held.left_record("c1").held(held).held_under("rule-1") == 150.0
    with pytest.raises(Busy):                                       # as `moved` read them: held since
        store.links.hold_left(moved, "c1", [Entry("evaluation", "not_met")], 160.0, "rule-1")
    assert store.links.hold_left(held, "c9", [], 160.0, "rule-1") is held                     # none recorded
    kept = store.links.arm_left(held, "c1", [], "rule-1", 170.0)
    assert (kept.left_record("c1").armed_at, kept.left_record("c1").held_at) == (170.0, 150.0)
    dropped = store.links.arm_left(kept, "c1", [], "rule-1", 150.0, drop_left_held=True)
    assert (dropped.left_record("c1").armed_at, dropped.left_record("c1").held_at) == (150.0, None)
    assert store.links.get(ANN) == dropped
    store.links.erase(dropped)
    assert store.links.hold_left(dropped, "c1", [], 160.0, "rule-1") is dropped and store.links.get(ANN) is None


def test_a_value_seen_on_another_of_her_contacts_is_recorded_newest_first_held_to_the_records_as_read(store):
    """Link.duplicates_seen (contact_events._not_counted): the newest value meeting the target of each of her other
    contacts. One of an older event than that recorded changes nothing; a worker whose read is older than a record
    made meanwhile is Busy, nothing written (its retry reads them again); erased meanwhile, nothing written."""
    link = joined(store, baseline_of=SIGNED_UP)
    seen = store.links.see_duplicate(link, DuplicateSeen("c2", "Yes", SIGNED_UP, 200.0))
    assert seen.seen_on("c2") == DuplicateSeen("c2", "Yes", SIGNED_UP, 200.0) and store.links.get(ANN) == seen
    other = store.links.see_duplicate(seen, DuplicateSeen("c3", "Yes", SIGNED_UP, 100.0))
    assert [s.contact_id for s in other.duplicates_seen] == ["c2", "c3"] and store.links.get(ANN) == other
    assert store.links.see_duplicate(other, DuplicateSeen("c2", "Yes", SIGNED_UP, 150.0)) == other     # older: kept
    newer = store.links.see_duplicate(other, DuplicateSeen("c2", "yes", SIGNED_UP, 300.0))
    assert newer.seen_on("c2").at == 300.0 and store.links.get(ANN) == newer
    with pytest.raises(Busy):                                       # as `seen` read them: c3's recorded since
        store.links.see_duplicate(seen, DuplicateSeen("c2", "Yes", SIGNED_UP, 400.0))
    assert store.links.get(ANN) == newer and outcomes(store) == ["linked"]                   # no history written
    store.links.erase(newer)
    for read in (newer, link):                                      # (`link`: read before any was recorded)
        assert store.links.see_duplicate(read, DuplicateSeen("c2", "Yes", SIGNED_UP, 500.0)) is read
        assert store.links.get(ANN) is None


def test_a_value_seen_on_another_contact_is_not_recorded_on_a_link_that_moved_since_it_was_read(store):
    """A worker read Ann's link on c1 and sees c2's value at the target (not hers: recorded for a merge onto c2 to
    judge); a merge moved her link onto c2 meanwhile (its judge ran without that record): Busy, nothing written; its
    retry finds the link on c2 and judges the value as hers."""
    read = joined(store, baseline_of=SIGNED_UP)
    store.links.move(store.links.get(ANN), "c2", [Entry("contact", "merged")], when=100.0, left=True)
    moved = store.links.get(ANN)
    with pytest.raises(Busy):
        store.links.see_duplicate(read, DuplicateSeen("c2", "Yes", SIGNED_UP, 200.0))
    assert store.links.get(ANN) == moved and moved.duplicates_seen == ()


def test_a_move_returns_the_values_seen_on_other_contacts_as_stored_not_as_read(store):
    """A merge read Ann's link, and another worker recorded c2's value at the target meanwhile (Link.duplicates_seen):
    the move returns the link with that record (the merge judges it: contact_events._seen_before_merge), on either
    store, and keeps it."""
    read = joined(store, baseline_of=SIGNED_UP)
    seen = DuplicateSeen("c2", "Yes", SIGNED_UP, 200.0)
    store.links.see_duplicate(store.links.get(ANN), seen)
    moved = store.links.move(read, "c2", [Entry("contact", "merged")], when=100.0, left=True)
    assert moved.contact_id == "c2" and moved.seen_on("c2") == seen and store.links.get(ANN) == moved


def test_a_move_without_a_role_returns_the_role_the_link_holds_not_the_one_read(store):
    """A worker read the link, and Intercom's role of its contact was set since (another event): a merge that names
    no role keeps the stored one, and returns the link as it now stands, that role with it, on either store."""
    read = joined(store)                                                        # role "lead" when read
    store.links.set_contact(store.links.get(ANN), [Entry("contact", "changed")], role="user")
    moved = store.links.move(read, "c2", [Entry("contact", "merged")])
    assert (moved.contact_id, moved.contact_role) == ("c2", "user")
    assert store.links.get(ANN) == moved and outcomes(store)[-2:] == ["changed", "merged"]


def test_an_email_change_moves_the_link_and_its_pointer_in_event_time_order(store):
    link = joined(store)
    other = joined(store, PersonRef("43", "7"), kind="referrer", pending=False)      # shares the old email
    changed = store.links.set_contact(link, [Entry("contact", "email_changed")], when=200.0, email="Ann@New.example")
    assert changed == store.links.get(ANN) and (changed.email, changed.last_event_at) == ("Ann@New.example", 200.0)
    found = store.lookup.look_up(emails=[(WS, "ann@example.com"), (WS, "ann@new.example")])
    assert found.linked_to_email(WS, "ann@new.example") == [changed]
    assert found.linked_to_email(WS, "ann@example.com") == [other]
    assert store.links.set_contact(changed, [], when=100.0, email="ann@older.example") is None   # an older event
    alone = store.links.set_contact(other, [], when=300.0, email="rita@example.com")
    found = store.lookup.look_up(emails=[(WS, "ann@example.com"), (WS, "ann@older.example"), (WS, "rita@example.com")])
    assert list(found.by_email) == [(WS, "rita@example.com")] and store.links.get(ANN) == changed  # no address left
    with pytest.raises(Busy):                     # a view of the link older than its email: its pointers are not
        store.links.set_contact(link, [], when=400.0, email="ann@third.example")            # those it names
    assert alone.email == "rita@example.com" and outcomes(store)[-2:] == ["email_changed", "ignored"]


@contextlib.contextmanager
def _killed_after_its_first_write(store, monkeypatch):
    """Inside the block, DynamoDB's store dies (Killed, the block ends there) at its call after its first
    write; the twin's write is one step: nothing comes after it."""
    written: list[bool] = []
    if not isinstance(store, MemoryStore):
        from chalicelib.adapters.dynamo.models import HistoryItem
        client = HistoryItem._get_connection().connection.client
        call = client._make_api_call

        def dying(operation, kwargs):
            if written == [True]:
                raise Killed()
            answer = call(operation, kwargs)
            if not written and operation in ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"):
                written.append(True)
            return answer
        monkeypatch.setattr(client, "_make_api_call", dying)
    with contextlib.suppress(Killed):
        yield
    written.append(False)                   # (the process that follows lives)


def test_an_email_change_leaves_the_old_address_in_no_key_whenever_the_writer_dies(store, monkeypatch):
    """The old address's pointer, left with no link, goes in the write that moves the link: a worker
    killed (or a delete refused) after it cannot leave it behind, as the event's retry sees the new
    email and writes nothing more."""
    link = joined(store)
    with _killed_after_its_first_write(store, monkeypatch):
        store.links.set_contact(link, [Entry("contact", "email_changed")], when=200.0, email="ann@new.example")
    assert store.links.get(ANN).email == "ann@new.example"
    found = store.lookup.look_up(emails=[(WS, "ann@example.com"), (WS, "ann@new.example")])
    assert list(found.by_email) == [(WS, "ann@new.example")]


BOB = PersonRef("43", "7")           # (in another campaign: the same person, sharing Ann's address)


@pytest.mark.parametrize("store", ["dynamo"], indirect=True)
@pytest.mark.parametrize("shared, meanwhile, left", [
    (False, lambda other: joined(other, BOB, kind="referrer", pending=False), {BOB}),    # a join takes the address
    (True, lambda other: other.links.set_contact(other.links.get(BOB), [], email="bob@example.com"), None),  # leaves
], ids=["joined", "left"])
def test_an_old_address_whose_links_changed_meanwhile_is_read_again_and_kept_only_with_a_link(
        store, clock, monkeypatch, shared, meanwhile, left):
    """The old address's pointer is deleted with the link's move when the link is all it names, as read:
    another worker changing who it names meanwhile refuses the write (Busy), and its retry reads it again."""
    link = joined(store)
    if shared:
        joined(store, BOB, kind="referrer", pending=False)
    transact, other = store.links.history.transact, type(store)(clock)

    def changed_first(*args):
        monkeypatch.setattr(store.links.history, "transact", transact)
        meanwhile(other)
        return transact(*args)
    monkeypatch.setattr(store.links.history, "transact", changed_first)
    with pytest.raises(Busy):
        store.links.set_contact(link, [], when=200.0, email="ann@new.example")
    assert store.links.set_contact(store.links.get(ANN), [], when=200.0, email="ann@new.example") is not None
    assert store.lookup.look_up(emails=[(WS, "ann@example.com")]).by_email.get((WS, "ann@example.com")) == left


@pytest.mark.parametrize("late", [
    lambda links, link: links.arm(link, [Entry("evaluation", "not_met")], "rule"),
    lambda links, link: links.set_contact(link, [Entry("contact", "role_changed")], when=100.0, role="user"),
    lambda links, link: links.set_contact(link, [Entry("contact", "archived")], state=ContactState.ARCHIVED),
    lambda links, link: links.set_contact(link, [Entry("contact", "email_changed")], when=100.0,
                                          email="ann@new.example"),
    lambda links, link: links.unpend(link, "the contact is gone: reconciliation stops checking"),
    lambda links, link: links.move(link, "c2", [Entry("contact", "merged")]),
    lambda links, link: links.take_baselines([(link, "No", SIGNED_UP, [Entry("backfill", "baseline")])]),
    lambda links, link: links.count_applied_many([(link.ref, "100", [Entry("referral_count", "counted")])]),
    lambda links, link: links.note(link.ref, [Entry("evaluation", "not_qualified")]),
    lambda links, link: links.note_repeat(link.ref, "qualification_qualified", "already qualified"),
    lambda links, link: links.start_qualifying(link),
], ids=["arm", "role", "state", "email", "unpend", "move", "baseline", "count", "note", "repeat", "claim"])
def test_a_late_write_on_a_link_erased_meanwhile_writes_nothing_about_the_person(store, late):
    """`bridge forget` erased the person after a worker read their link: its write (an Intercom event, an
    arming, reconciliation stopping) brings back neither the link nor a history entry (not even a note of an
    event ignored)."""
    link = joined(store)
    store.links.erase(link)
    with contextlib.suppress(Busy):                # (a move says the link changed: its retry finds nobody)
        late(store.links, link)
    assert store.links.get(ANN) is None and store.history.entries(ANN) == []
    found = store.lookup.look_up(contacts=[(WS, "c1"), (WS, "c2")], emails=[(WS, "ann@new.example")])
    assert (found.by_contact, found.by_email) == ({}, {})


def test_notes_about_a_linked_person_are_written_and_counted_and_a_claim_on_an_erased_link_says_none(store):
    link = joined(store, entries=())
    store.links.note(ANN, [Entry("evaluation", "not_qualified")])
    store.links.note_repeat(ANN, "qualification_qualified", "already qualified")       # makes the counted entry
    store.links.note_repeat(ANN, "qualification_qualified", "already qualified")       # counts on
    assert [(e.event, e.outcome, e.count) for e in store.history.entries(ANN)] == [
        ("evaluation", "not_qualified", None), ("qualification_qualified", "ignored", 2)]
    store.links.erase(link)
    assert store.links.start_qualifying(link) is None                   # not `link`, as if it were still there


def test_notes_about_a_person_are_written_while_her_link_or_her_count_is_kept_and_not_once_she_is_erased(
        store, clock):
    """The worker notes a failed try about anyone its message names (its retry, dead letter, wait): a lead by her
    link, a referrer the bridge kept only a count for by that count. Once `bridge forget` erased the person (link,
    count, then history), a note of a try still under way writes nothing back, counted (`restart_after`) or not."""
    rita = PersonRef("42", "100")
    store.links.referrer_contact(rita, "c9", WS)                        # her count only: no link
    link = joined(store, entries=())

    def noted(ref: PersonRef) -> list[tuple[str, int | None]]:
        store.links.note(ref, [Entry("retry", "retrying")])
        for later in (0, 7200, 60):                                      # (counts from one again after a pause)
            clock.now += later
            store.links.note_repeat(ref, "waiting", "Intercom answered 429", "deferred", restart_after=3600)
        store.links.note_latest(ref, Entry("referral_count", "written"))
        return [(e.event, e.count) for e in store.history.entries(ref)]
    assert noted(ANN) == noted(rita) == [("retry", None), ("referral_count", None), ("waiting", 2)]
    store.links.erase(link)
    store.links.forget_referrals(rita)
    store.history.erase(rita)
    assert noted(ANN) == noted(rita) == []
    assert noted(PersonRef("42", "8")) == []                            # (never kept: nothing)


def test_notes_about_many_people_at_once_are_written_for_those_kept_only(store):
    """`bridge dlq replay` and `discard` note each letter's person at once: a lead by her link, a referrer by her count;
    nobody the bridge does not keep (never kept, or erased by `bridge forget` as the command held the letter)."""
    rita, erased = PersonRef("42", "100"), PersonRef("42", "101")
    store.links.referrer_contact(rita, "c9", WS)
    joined(store, entries=())
    store.links.referrer_contact(erased, "c10", WS)
    store.links.forget_referrals(erased)
    noted = [Entry("dead_letter", "discarded")]
    store.links.note_many([(ANN, noted), (rita, noted), (erased, noted), (PersonRef("42", "8"), noted)])
    assert [[e.outcome for e in store.history.entries(ref)] for ref in (ANN, rita, erased, PersonRef("42", "8"))] == \
        [["discarded"], ["discarded"], [], []]
    store.links.note_many([])


def test_notes_about_many_people_may_be_stamped_earlier_than_the_stores_clock_never_later(store):
    """`bridge dlq replay` stamps its notes no later than AWS's time may be (its own clock's estimate may run
    ahead of the workers'): `at`, earlier than the store's clock, is their time; a later one is the store's."""
    joined(store, entries=())
    now = store.links.clock()
    store.links.note_many([(ANN, [Entry("dead_letter", "replayed")])], at=now - 0.25)
    store.links.note_many([(ANN, [Entry("dead_letter", "failed")])], at=now + 60)
    assert [(e.at, e.outcome) for e in store.history.entries(ANN)] == [(iso(now - 0.25), "replayed"),
                                                                      (iso(now), "failed")]


def test_notes_about_many_people_leave_out_one_erased_after_they_were_read_and_write_the_others(store):
    """The DynamoDB store reads who is kept, then writes the notes in one transaction holding to what it read: one
    `bridge forget` erased in between cancels it; she is left out and the others noted (the twin notes each at once)."""
    if isinstance(store, MemoryStore):
        pytest.skip("the in-memory twin reads and writes each note at once")
    rita = PersonRef("42", "100")
    store.links.referrer_contact(rita, "c9", WS)
    link = joined(store, entries=())
    read = store.links.get_many

    def erased_once_read(refs, consistent=False):
        found = read(refs, consistent)
        store.links.erase(link)                            # forget lands after the read, before the write
        return found
    store.links.get_many = erased_once_read
    store.links.note_many([(ANN, [Entry("dead_letter", "replayed")]), (rita, [Entry("dead_letter", "replayed")])])
    assert [[e.outcome for e in store.history.entries(ref)] for ref in (ANN, rita)] == [[], ["replayed"]]


def test_a_sync_enrolment_is_written_over_its_creating_entry_and_noted_while_that_entry_names_her(store):
    """A page's enrolment is written only over its `creating` entry, and contact sync's notes hold to the ledger entry
    of the contact it enrolled (`enrolled`), not to a link or a count (a sync-enrolled referrer may have neither): once
    `bridge forget` deleted that entry, neither is written back."""
    from chalicelib.ports.store import LedgerEntry
    rita = PersonRef("42", "100")

    def noted(contact: str) -> list[str]:
        store.links.note(rita, [Entry("sync", "enrolled")], enrolled=contact)
        return [e.outcome for e in store.history.entries(rita)]
    enrolled = LedgerEntry("c9", "enrolled", email="rita@example.com", rf_user_id="100")
    assert store.sync.intend("42", [enrolled]) == set() and list(store.sync.ledger("42")) == []
    store.sync.intend("42", [LedgerEntry("c9", "creating", email="rita@example.com")])
    assert store.sync.intend("42", [enrolled]) == {"c9"}
    seed_ledger(store.sync, "42", [LedgerEntry("c8", "enrolled", email="bob@example.com", rf_user_id="101")])
    assert noted("c9") == ["enrolled"]
    assert noted("c8") == noted("c7") == ["enrolled"]                   # (another's entry, or none: not hers)
    store.sync.forget("42", "rita@example.com")
    store.history.erase(rita)
    assert noted("c9") == []


def test_a_move_to_an_older_duplicate_can_set_the_baseline_and_is_no_longer_armed_then(store):
    """(What armed the link was a value of its former contact: it says nothing of a change under the new baseline.)"""
    armed = store.links.arm(joined(store, baseline_of=SIGNED_UP), [], "signed_up rule")
    moved = store.links.move(armed, "c0", [Entry("contact", "moved_to_existing")],
                             role="user", baseline="pro", baseline_of="custom_attributes.plan")
    assert store.links.get(ANN) == moved
    assert (moved.contact_id, moved.baseline, moved.baseline_of, moved.armed, moved.armed_by) == (
        "c0", "pro", "custom_attributes.plan", False, None)
    kept = store.links.move(store.links.arm(moved, [], "plan rule"), "c1", [])          # (its own baseline holds)
    assert store.links.get(ANN) == kept and (kept.baseline, kept.baseline_of, kept.armed) == (
        "pro", "custom_attributes.plan", True)
    unknown = store.links.move(kept, "c2", [], baseline=None, baseline_of=MOVED_UNKNOWN)
    assert store.links.get(ANN) == unknown and (unknown.baseline, unknown.baseline_of, unknown.armed) == (
        None, MOVED_UNKNOWN, False)


def test_arming_is_recorded_with_its_entry_and_the_rule_it_holds_under(store):
    link = joined(store, baseline_of=SIGNED_UP)
    assert link.baseline_of == SIGNED_UP and link.armed_by is None
    armed = store.links.arm(link, [Entry("evaluation", "not_met")], '["signed_up", "equals", "Yes", false]')
    assert armed.armed and armed.armed_by == '["signed_up", "equals", "Yes", false]' and store.links.get(ANN) == armed
    assert outcomes(store)[-1] == "not_met"


SIGNED_UP = "custom_attributes.signed_up"


def test_arming_records_since_when_held_to_it_as_read_and_a_move_keeps_it_with_her_baseline_or_clears_it(store):
    """Link.armed_at: the time of the value that armed the link (judge.armed_for). A worker whose read is older than
    an arming meanwhile is Busy, nothing written (its retry judges its value against it); one that read it arms it
    since an earlier time. A move keeping her baseline keeps it, and records it on the contact it leaves (arm_left
    writes its own there); a move taking another baseline clears it, as does a baseline taken by backfill."""
    link = joined(store, baseline_of=SIGNED_UP)
    armed = store.links.arm(link, [Entry("evaluation", "not_met")], "rule", 300.0)
    assert (armed.armed, armed.armed_at) == (True, 300.0) and store.links.get(ANN) == armed
    with pytest.raises(Busy):
        store.links.arm(link, [Entry("evaluation", "not_met")], "rule", 200.0)
    assert store.links.get(ANN) == armed and len(outcomes(store)) == 2
    earlier = store.links.arm(armed, [Entry("evaluation", "not_met")], "rule", 200.0)
    assert earlier.armed_at == 200.0 and store.links.get(ANN) == earlier and len(outcomes(store)) == 3
    kept = store.links.move(earlier, "c2", [Entry("contact", "merged")], role="user", when=400.0, left=True)
    assert (kept.armed, kept.armed_at, kept.left_then("c1").armed_at) == (True, 200.0, 200.0)
    assert store.links.get(ANN) == kept
    left = store.links.arm_left(kept, "c1", [Entry("evaluation", "not_met")], "rule", 150.0)
    assert left.left_then("c1").armed_at == 150.0 and left.armed_at == 200.0 and store.links.get(ANN) == left
    moved = store.links.move(left, "c3", [Entry("contact", "merged")], role="user", baseline="Yes",
                             baseline_of=SIGNED_UP, when=500.0, left=True)
    assert (moved.armed, moved.armed_at, moved.left_then("c2").armed_at) == (False, None, 200.0)
    assert store.links.get(ANN) == moved
    again = store.links.arm(moved, [], "rule", 600.0)
    assert store.links.take_baselines([(again, "pro", "custom_attributes.plan", [])]) == [True]
    assert (store.links.get(ANN).armed, store.links.get(ANN).armed_at) == (False, None)


def test_arming_a_contact_left_by_a_move_keeping_her_baseline_carries_to_the_link_held_to_its_armed_state(store):
    """A move keeping her baseline records it (LeftContact.kept), one taking another's does not. arm_left with `carry`
    (judge.carried) arms the link itself too, in the same write, as arm does (since `at`, the value held kept or
    dropped), while it is armed as read: armed meanwhile, Busy and nothing written."""
    link = store.links.set_contact(joined(store, baseline_of=SIGNED_UP), [], when=100.0, role="lead")
    kept = store.links.move(link, "c2", [Entry("contact", "merged")], role="user", when=400.0, left=True)
    assert kept.left_then("c1").kept and store.links.get(ANN) == kept
    held = store.links.hold_back(kept, [], 400.0, "rule")
    with pytest.raises(Busy):                                       # as `kept` read it: a value held since
        store.links.arm_left(kept, "c1", [Entry("evaluation", "not_met")], "rule", 150.0, carry=True)
    assert store.links.get(ANN) == held and outcomes(store) == ["linked", "merged"]
    armed = store.links.arm_left(held, "c1", [Entry("evaluation", "not_met")], "rule", 150.0, carry=True)
    assert (armed.armed, armed.armed_by, armed.armed_at, armed.held_at, armed.left_then("c1").armed_at) == \
        (True, "rule", 150.0, 400.0, 150.0)
    assert store.links.get(ANN) == armed and outcomes(store) == ["linked", "merged", "not_met"]
    dropped = store.links.arm_left(armed, "c1", [], "rule", 120.0, carry=True, keep_held=False)
    assert (dropped.armed_at, dropped.held_at, dropped.held_by) == (120.0, None, None) and store.links.get(ANN) == dropped
    taken = store.links.move(dropped, "c3", [Entry("contact", "merged")], role="user", baseline="Yes",
                             baseline_of=SIGNED_UP, when=500.0, left=True)
    assert not taken.left_then("c2").kept and store.links.get(ANN) == taken


@pytest.mark.parametrize("recorded", [False, True], ids=["left unrecorded", "left recorded"])
def test_a_carried_arming_of_a_link_moved_meanwhile_says_it_moved_and_writes_nothing(store, recorded):
    """arm_left with `carry` read the link on c2; another worker moved it on (recording what it left, or not): Busy
    as arm says it (MOVED_SINCE_READ, back in a second: its retry reads the link where it is), nothing written."""
    link = store.links.set_contact(joined(store, baseline_of=SIGNED_UP), [], when=100.0, role="lead")
    kept = store.links.move(link, "c2", [Entry("contact", "merged")], role="user", when=400.0, left=True)
    moved = store.links.move(kept, "c3", [Entry("contact", "merged")], role="user", when=500.0, left=recorded)
    with pytest.raises(Busy) as busy:
        store.links.arm_left(kept, "c1", [Entry("evaluation", "not_met")], "rule", 150.0, carry=True)
    assert (busy.value.reason, busy.value.retry_after) == (MOVED_SINCE_READ, 1.0)
    assert store.links.get(ANN) == moved and outcomes(store) == ["linked", "merged", "merged"]


def test_a_carried_arming_of_a_link_erased_meanwhile_writes_nothing_and_returns_the_link_as_read(store):
    """`bridge forget` erased her after arm_left with `carry` read her link: it returns the link as read, and
    neither the link nor a history entry comes back."""
    link = store.links.set_contact(joined(store, baseline_of=SIGNED_UP), [], when=100.0, role="lead")
    kept = store.links.move(link, "c2", [Entry("contact", "merged")], role="user", when=400.0, left=True)
    store.links.erase(kept)
    assert store.links.arm_left(kept, "c1", [Entry("evaluation", "not_met")], "rule", 150.0, carry=True) == kept
    assert store.links.get(ANN) is None and store.history.entries(ANN) == []


def test_a_worker_that_read_the_link_unarmed_does_not_narrow_an_arming_since_always_made_meanwhile(store):
    """Another worker armed the link by a value of no known time (armed_at None: since always) after this one read it
    unarmed: its arm, since 300, holds to the armed state as read (not only to armed_at, None either way): Busy,
    nothing written (its retry finds the link armed for its value). Likewise under another rule meanwhile."""
    link = joined(store, baseline_of=SIGNED_UP)
    always = store.links.arm(link, [Entry("evaluation", "not_met")], "rule", None)
    assert (always.armed, always.armed_at) == (True, None)
    with pytest.raises(Busy):
        store.links.arm(link, [Entry("evaluation", "not_met")], "rule", 300.0)
    assert store.links.get(ANN) == always and len(outcomes(store)) == 2
    with pytest.raises(Busy):
        store.links.arm(dataclasses.replace(always, armed_by="another rule"), [], "rule", 300.0)
    assert store.links.get(ANN) == always


def test_a_value_held_back_is_recorded_held_to_the_armed_state_kept_by_an_arm_under_its_rule_and_cleared_with_it(store):
    """Link.held_at: hold_back records it with its entry, held to the armed state as read (a worker that read it
    before is Busy, nothing written: so is an arm that read the link before a value was held back). An arm under the
    same rule keeps it, one under another rule clears it, and so does a move taking another baseline."""
    armed = store.links.arm(joined(store, baseline_of=SIGNED_UP), [], "rule", 300.0)
    held = store.links.hold_back(armed, [Entry("evaluation", "not_met")], 250.0, "rule")
    assert (held.armed_at, held.held_at) == (300.0, 250.0) and store.links.get(ANN) == held
    assert len(outcomes(store)) == 2
    for stale in (lambda: store.links.hold_back(armed, [Entry("evaluation", "not_met")], 260.0, "rule"),
                  lambda: store.links.arm(armed, [Entry("evaluation", "not_met")], "rule", 200.0)):
        with pytest.raises(Busy):
            stale()
        assert store.links.get(ANN) == held and len(outcomes(store)) == 2
    lowered = store.links.arm(held, [], "rule", 200.0)
    assert (lowered.armed_at, lowered.held_at) == (200.0, 250.0) and store.links.get(ANN) == lowered
    other = store.links.arm(lowered, [], "another rule", 100.0)
    assert (other.armed_by, other.armed_at, other.held_at) == ("another rule", 100.0, None)
    assert store.links.get(ANN) == other
    again = store.links.hold_back(other, [], 150.0, "rule")
    moved = store.links.move(again, "c3", [Entry("contact", "merged")], role="user", baseline="Yes",
                             baseline_of=SIGNED_UP, when=500.0, left=True)
    assert (moved.armed, moved.held_at, moved.left_then("c1").armed_at) == (False, None, 100.0)
    assert store.links.get(ANN) == moved
    rearmed = store.links.hold_back(store.links.arm(moved, [], "rule", 600.0), [], 550.0, "rule")
    assert store.links.take_baselines([(rearmed, "pro", "custom_attributes.plan", [])]) == [True]
    assert (store.links.get(ANN).armed, store.links.get(ANN).held_at) == (False, None)


def test_a_value_held_on_a_link_not_armed_records_its_rule_kept_by_an_arm_under_it_only_and_held_to_as_read(store):
    """A value at the target held while the link is not armed (judge: a "Yes" delivered before an older "No") is
    recorded with the rule it was held under (Link.held_by). An arm under that rule keeps both; a worker whose read
    names another rule for the same hold (one held meanwhile, after settings changed the rule) is Busy, nothing
    written; an arm under another rule clears both, as do an arm told not to keep it, a move and a baseline taken."""
    link = joined(store, baseline_of=SIGNED_UP)
    held = store.links.hold_back(link, [Entry("evaluation", "not_met")], 250.0, "rule")
    assert (held.armed, held.held_at, held.held_by) == (False, 250.0, "rule") and store.links.get(ANN) == held
    assert len(outcomes(store)) == 2
    for stale in (lambda: store.links.arm(dataclasses.replace(held, held_by="old rule"), [], "old rule", 200.0),
                  lambda: store.links.hold_back(dataclasses.replace(held, held_by="old rule"), [], 260.0, "old rule")):
        with pytest.raises(Busy):
            stale()
        assert store.links.get(ANN) == held and len(outcomes(store)) == 2
    armed = store.links.arm(held, [Entry("evaluation", "not_met")], "rule", 200.0)
    assert (armed.armed_at, armed.held_at, armed.held_by) == (200.0, 250.0, "rule") and store.links.get(ANN) == armed
    other = store.links.arm(armed, [], "another rule", 100.0)
    assert (other.armed_by, other.held_at, other.held_by) == ("another rule", None, None)
    assert store.links.get(ANN) == other
    again = store.links.hold_back(other, [], 150.0, "another rule")
    moved = store.links.move(again, "c2", [Entry("contact", "merged")], role="user", when=400.0, left=True)
    assert (moved.held_at, moved.held_by) == (None, None) and store.links.get(ANN) == moved
    rehold = store.links.hold_back(moved, [], 450.0, "rule")
    dropped = store.links.arm(rehold, [], "rule", 450.0, keep_held=False)    # (judge: Verdict.drops_held)
    assert (dropped.armed_at, dropped.held_at, dropped.held_by) == (450.0, None, None)
    assert store.links.get(ANN) == dropped
    rehold = store.links.hold_back(dropped, [], 440.0, "rule")
    assert store.links.take_baselines([(rehold, "pro", "custom_attributes.plan", [])]) == [True]
    assert (store.links.get(ANN).held_at, store.links.get(ANN).held_by) == (None, None)


def test_an_arm_holding_a_value_kept_for_a_joins_finish_writes_both_at_once_held_to_the_link_as_read(store):
    """arm's `hold` (judge: Verdict.keeps, a join not finished keeping a change to the target): the link armed since
    `at` and holding the value, under the rule, in one write with its entry (the newer of it and one held already
    under the rule); held to the armed state as read (a worker that read it before is Busy, nothing written); an arm
    under another rule, later, clears it (judge.released asks the rule's key)."""
    link = joined(store, baseline_of=SIGNED_UP)
    kept = store.links.arm(link, [Entry("evaluation", "met")], "rule", 210.0, hold=210.0)
    assert (kept.armed, kept.armed_by, kept.armed_at, kept.held_at, kept.held_by) == (True, "rule", 210.0, 210.0,
                                                                                        "rule")
    assert store.links.get(ANN) == kept and len(outcomes(store)) == 2
    with pytest.raises(Busy):
        store.links.arm(link, [Entry("evaluation", "met")], "rule", 220.0, hold=220.0)
    assert store.links.get(ANN) == kept and len(outcomes(store)) == 2
    older = store.links.arm(kept, [], "rule", 200.0, hold=205.0)      # (an earlier arm's time: the newer hold kept)
    assert (older.armed_at, older.held_at, older.held_by) == (200.0, 210.0, "rule") and store.links.get(ANN) == older
    newer = store.links.arm(older, [], "rule", 200.0, hold=230.0)
    assert (newer.armed_at, newer.held_at) == (200.0, 230.0) and store.links.get(ANN) == newer
    other = store.links.arm(newer, [], "another rule", 300.0)
    assert (other.armed_by, other.held_at, other.held_by) == ("another rule", None, None)
    assert store.links.get(ANN) == other


def test_an_arm_holding_a_value_for_a_joins_finish_is_held_to_the_links_status_as_read(store):
    """arm's `hold` (a join not finished keeping a change to the target) read the link waiting, and its join finished
    since (linked; its armed state and contact unchanged): Busy, nothing written (the finish judged her contact before
    this write: the notification, read again, is judged on the linked link). An arm without `hold` is held to the
    contact and armed state only, as before. Found by review-held-yes."""
    claim = store.links.claim(ANN, WS)
    assert store.links.hold_found([(claim, FoundContact("c1", "lead", "user", "No", SIGNED_UP, found_at=claim.at))]) \
        == [None]
    store.links.finish(claim, JoinResult(LinkStatus.WAITING, kind="lead", email="ann@example.com", contact_id="c1",
                                         baseline="No", baseline_of=SIGNED_UP, contact_found=True,
                                         found_at=claim.at), [])
    waiting = store.links.get(ANN)
    assert (waiting.status, waiting.contact_found, waiting.armed) == (LinkStatus.WAITING, True, False)
    again = store.links.claim(ANN, WS)
    store.links.finish(again, JoinResult(LinkStatus.LINKED, kind="lead", email="ann@example.com", contact_id="c1",
                                         contact_role="user", baseline="No", baseline_of=SIGNED_UP,
                                         qualification=QState.PENDING, found_at=claim.at), [Entry("join", "linked")])
    linked = store.links.get(ANN)
    assert (linked.status, linked.armed, linked.held_at) == (LinkStatus.LINKED, False, None)
    with pytest.raises(Busy):
        store.links.arm(waiting, [Entry("evaluation", "met")], "rule", 210.0, hold=210.0)
    assert store.links.get(ANN) == linked and outcomes(store) == ["linked"]
    armed = store.links.arm(waiting, [Entry("evaluation", "not_met")], "rule", 220.0)     # (no hold: as before)
    assert (armed.armed, armed.armed_at, armed.held_at) == (True, 220.0, None)
    assert store.links.get(ANN).armed_at == 220.0 and outcomes(store) == ["linked", "not_met"]


def test_a_move_keeping_her_baseline_keeps_the_armed_state_but_not_the_value_held_back(store):
    """A move that keeps her baseline keeps the link armed as it was, but the value held back (Link.held_at) was the
    contact left's: cleared (a change away on the contact moved to, older than it, is no change on the one left)."""
    held = store.links.hold_back(store.links.arm(joined(store, baseline_of=SIGNED_UP), [], "rule", 300.0), [], 250.0,
                                 "rule")
    moved = store.links.move(held, "c2", [Entry("contact", "merged")], role="user", when=400.0, left=True)
    assert (moved.armed, moved.armed_at, moved.held_at) == (True, 300.0, None)
    assert store.links.get(ANN) == moved


def test_a_move_whose_link_was_armed_since_an_earlier_time_meanwhile_records_that_time_on_the_contact_it_leaves(store):
    """A worker read the link armed since 300; another armed it since 200 meanwhile (an older change away): the move,
    keeping her baseline, records what the link holds on the contact it leaves as it is, since 200 (read again), not
    as read (a late notification of that contact from between 200 and 300 is then judged armed, as in order)."""
    stale = store.links.arm(joined(store, baseline_of=SIGNED_UP), [], "rule", 300.0)
    store.links.arm(stale, [], "rule", 200.0)
    kept = store.links.move(stale, "c2", [Entry("contact", "merged")], role="user", when=400.0, left=True)
    assert (kept.left_then("c1").armed_at, store.links.get(ANN).left_then("c1").armed_at) == (200.0, 200.0)


def test_an_item_armed_before_the_bridge_recorded_since_when_reads_armed_since_always_and_is_written_as_read(store):
    """An item (or a record of a contact it left) armed by an earlier version has no armed_at: read as None (armed
    since always: judge.armed_for), and writes holding to those records as read still apply."""
    link = store.links.arm(store.links.set_contact(joined(store, baseline_of=SIGNED_UP), [], when=100.0), [], "rule")
    moved = store.links.move(link, "c2", [Entry("contact", "merged")], role="user", baseline="Yes",
                             baseline_of=SIGNED_UP, when=200.0, left=True)
    assert (link.armed_at, moved.left_then("c1").armed_at) == (None, None)
    if type(store.links).__name__ == "DynamoLinks":
        from chalicelib.adapters.dynamo.keys import link_key
        from chalicelib.adapters.dynamo.models import LinkItem
        stored = LinkItem.get(*link_key(ANN), consistent_read=True).left_baselines
        assert "armed_at" not in stored["c1"]                    # (as an earlier version stored it)
    left = store.links.arm_left(moved, "c1", [], "rule", None)
    assert left.left_then("c1").armed_at is None and store.links.get(ANN) == left
    again = store.links.move(left, "c3", [Entry("contact", "merged")], role="user", baseline="No",
                             baseline_of=SIGNED_UP, when=300.0, left=True)
    assert store.links.get(ANN) == again and again.left_then("c1") == left.left_then("c1")


# A record of a contact the link left, and a value seen on another contact, as a later version stored them: a key
# this version does not know amid those it knows, and after them.
LATER_LEFT = {"baseline": "No", "left_by": {"merge": "m-9", "n": 2}, "baseline_of": SIGNED_UP, "armed": False,
              "armed_by": None, "moved_at": 200.0, "email": "ann@example.com", "kept": False, "checked": [1, "two"]}
LATER_SEEN = {"value": "Yes", "via": "search", "of": SIGNED_UP, "at": 150.0}


def _written_by_a_later_version(store, link: Link) -> None:
    """Ann's link as a later version left it (a rollback runs this one over it): an attribute of the item this
    version does not know, and keys it does not know in the records of the contact she left (c1) and of a value seen
    on another of her contacts (c3)."""
    if type(store.links).__name__ == "DynamoLinks":
        from chalicelib.adapters.dynamo.keys import link_key
        from chalicelib.adapters.dynamo.models import LinkItem, _client
        LinkItem(*link_key(ANN)).update(actions=[
            LinkItem.left_contacts.set({"c1"}), LinkItem.left_baselines.set({"c1": LATER_LEFT}),
            LinkItem.duplicates_seen.set({"c3": LATER_SEEN})])
        _client().update_item(TableName=LinkItem.Meta.table_name, Key={"pk": {"S": "CAMPAIGN#42"},
                                                                      "sk": {"S": "PERSON#7"}},
                              UpdateExpression="SET later_mark = :m", ExpressionAttributeValues={":m": {"S": "v9"}})
    else:
        held = store.tables.links[ANN]
        held.link = dataclasses.replace(link, left_contacts=frozenset({"c1"}),
                                        left_baselines=(LeftContact.of_stored("c1", copy.deepcopy(LATER_LEFT)),),
                                        duplicates_seen=(DuplicateSeen.of_stored("c3", copy.deepcopy(LATER_SEEN)),))
        held.unknown = {"later_mark": "v9"}


def _later_parts(store) -> tuple[dict, dict, object]:
    """What the store holds of Ann's link that a later version wrote: the records of c1 and c3 as stored (their JSON
    as DynamoDB holds it), and the item's attribute this version does not know."""
    if type(store.links).__name__ == "DynamoLinks":
        from chalicelib.adapters.dynamo.keys import link_key
        from chalicelib.adapters.dynamo.models import LinkItem, _client
        raw = _client().get_item(TableName=LinkItem.Meta.table_name, Key={"pk": {"S": "CAMPAIGN#42"},
                                                                         "sk": {"S": "PERSON#7"}},
                                 ConsistentRead=True)["Item"]
        return (json.loads(raw["left_baselines"]["S"])["c1"], json.loads(raw["duplicates_seen"]["S"])["c3"],
                raw.get("later_mark", {}).get("S"))
    link = store.links.get(ANN)
    return (link.left_then("c1").as_stored(), link.seen_on("c3").as_stored(),
            store.tables.links[ANN].unknown.get("later_mark"))


def test_a_link_a_later_version_wrote_is_read_judged_and_written_under_its_conditions_keeping_what_it_does_not_know(
        store, clock):
    """Rolled back, this version meets links a later one wrote: keys it does not know in the records a link keeps of
    the contacts it left (LeftContact) and of values seen on her other contacts (DuplicateSeen), attributes of the
    item it does not know. It reads and judges them; its writes that hold to those records as read (arm_left,
    see_duplicate, move) apply, as do the others (arm, take_baselines); and what it does not know is still there after,
    as the later version wrote it: a record it did not change, to the letter (the JSON text, in its order); one it
    changed, with its own fields set (those added, last). (She joined at 50, before the events of 120 on: judged as
    hers, Link.joined_since.)"""
    from chalicelib.domain.judge import Action, Sighting, judge
    from chalicelib.domain.settings import Qualification
    clock.now = 50.0
    _written_by_a_later_version(store, store.links.move(joined(store, contact="c1", baseline_of=SIGNED_UP), "c2", [],
                                                        role="user", when=200.0))
    read = store.links.get(ANN)
    left = read.left_then("c1")
    assert (left, read.seen_on("c3")) == (LeftContact("c1", "No", SIGNED_UP, False, None, 200.0,
                                                      email="ann@example.com"),
                                          DuplicateSeen("c3", "Yes", SIGNED_UP, 150.0))
    assert read.left_at(150.0) == left and left.as_stored() == LATER_LEFT and read.seen_on("c3").as_stored() == LATER_SEEN
    rule = Qualification(attribute=SIGNED_UP, value="Yes")
    seen = Sighting({"id": "c1", "custom_attributes": {"signed_up": "Yes"}}, "webhook", when=120.0)
    assert judge(left.held(read), rule, seen, lambda _: "string").action is Action.QUALIFY   # (a late change on c1)
    armed = store.links.arm_left(read, "c1", [Entry("evaluation", "not_met")], "rule-1", 120.0)
    assert armed.left_then("c1").armed and store.links.get(ANN) == armed
    noted = store.links.see_duplicate(armed, DuplicateSeen("c4", "Yes", SIGNED_UP, 160.0))
    assert [s.contact_id for s in noted.duplicates_seen] == ["c3", "c4"] and store.links.get(ANN) == noted
    assert store.links.take_baselines([(noted, "No", SIGNED_UP, [])]) == [True]
    taken = store.links.get(ANN)
    on_c2 = store.links.arm(taken, [Entry("evaluation", "not_met")], "rule-1", 250.0)
    assert on_c2.armed and store.links.get(ANN) == on_c2
    moved = store.links.move(on_c2, "c5", [Entry("contact", "merged")], role="user", when=300.0, left=True)
    assert moved.left_then("c2").armed and moved.left_then("c1") == armed.left_then("c1")
    assert store.links.get(ANN) == moved and outcomes(store) == ["linked", "not_met", "not_met", "merged"]
    on_c1, on_c3, mark = _later_parts(store)
    assert list(on_c1) == [*LATER_LEFT, "armed_at"]                 # (its own fields set in place, the one added last)
    assert on_c1 == {**LATER_LEFT, "armed": True, "armed_by": "rule-1", "armed_at": 120.0}
    assert list(on_c3.items()) == list(LATER_SEEN.items()) and mark == "v9"


def test_a_lead_linked_before_the_rule_takes_a_baseline_once_and_waits_for_qualification(store, clock):
    """What `bridge backfill --apply` writes for a lead linked before the campaign's rule: the value now as the
    baseline of the rule's attribute, not armed, pending (in the index from now), with its entry; once, and only
    while the link is as the backfill read it."""
    untracked = joined(store, pending=False)
    other = joined(store, PersonRef("42", "8"), contact="c8", email="bob@example.com", baseline_of=SIGNED_UP)
    other = store.links.arm(other, [], "key")
    clock.now += 60
    taken = [(untracked, "pro", "custom_attributes.plan", [Entry("qualification", "baseline_taken")]),
             (other, None, "custom_attributes.plan", [])]
    assert store.links.take_baselines(taken) == [True, True]
    for ref, baseline in ((ANN, "pro"), (PersonRef("42", "8"), None)):
        link = store.links.get(ref)
        assert (link.qualification, link.baseline, link.baseline_of, link.armed, link.armed_by) == (
            QState.PENDING, baseline, "custom_attributes.plan", False, None)
        assert link.baseline_at == clock.now and link.viewed_since == clock.now     # (as of the take: judge.before_view)
    assert outcomes(store)[-1] == "baseline_taken"
    assert [l.ref for l in store.links.pending(iso(clock.now - 1), 10).links] == [ANN, PersonRef("42", "8")]
    assert store.links.take_baselines(taken) == [False, False]        # taken already (another run): as read no more
    read = store.links.get(ANN)
    claim = store.links.start_qualifying(read)                   # the rule met meanwhile: never back to pending
    assert store.links.take_baselines([(read, "x", "custom_attributes.x", []),
                                       (claim.link, "x", "custom_attributes.x", [])]) == [False, False]
    assert store.links.get(ANN).baseline == "pro" and store.links.get(ANN).qualification is QState.QUALIFYING


def test_the_leads_linked_before_the_rule_are_counted_by_qualification_state(store, monkeypatch):
    """What `settings apply` and `doctor` ask of a campaign whose rule reads `attribute`: its leads linked (in its
    workspace) with no baseline of it, recorded as such: none (no rule then), or pending with another's."""
    monkeypatch.setattr("chalicelib.adapters.dynamo.links.LINKS_PAGE", 2)      # pages of 2 links in DynamoDB
    joined(store, PersonRef("42", "1"), pending=False)                           # no rule then
    joined(store, PersonRef("42", "2"), baseline_of=SIGNED_UP)                   # another attribute's
    joined(store, PersonRef("42", "3"), baseline_of="custom_attributes.plan")    # the rule's own
    joined(store, PersonRef("42", "4"))                                        # stored before baseline_of: the rule's
    joined(store, PersonRef("42", "5"), kind="referrer", pending=False)         # referrers never qualify
    joined(store, PersonRef("42", "6"), pending=False, workspace="ws2")         # left in another workspace
    settled = joined(store, PersonRef("42", "7"), baseline_of=SIGNED_UP)
    store.links.finish_qualifying(store.links.start_qualifying(settled), QState.QUALIFIED, [])
    joined(store, PersonRef("43", "1"), pending=False)                           # another campaign's
    plan = "custom_attributes.plan"
    assert store.links.unbaselined("42", WS, plan, 100) == ({None: 1, QState.PENDING: 1}, True)
    assert store.links.unbaselined("42", WS, SIGNED_UP, 100) == ({None: 1, QState.PENDING: 1}, True)     # 3, now
    assert store.links.unbaselined("42", WS, plan, 1) == ({None: 1}, True)
    assert store.links.unbaselined("42", WS, plan, 100, scan_limit=1) == ({None: 1}, False)
    assert store.links.unbaselined("44", WS, plan, 100) == ({}, True)


def test_links_stored_before_they_named_their_rule_record_the_rule_settings_replace(store, monkeypatch):
    """What `settings apply` writes before it replaces the campaign's rule: the links an earlier version stored
    (no baseline_of, no armed_by) record that rule, those this version wrote keep theirs; once."""
    monkeypatch.setattr("chalicelib.adapters.dynamo.links.LINKS_PAGE", 2)      # pages of 2 links in DynamoDB
    old, key = SIGNED_UP, '["custom_attributes.signed_up", "equals", "Yes", false]'
    joined(store, PersonRef("42", "1"))                                          # pending, linked under the rule
    store.links.arm(joined(store, PersonRef("42", "2")), [], None)              # and armed under it
    claim = store.links.claim(PersonRef("42", "3"), WS)                          # a join part-way, its contact made
    store.links.finish(claim, JoinResult(LinkStatus.WAITING, email="cy@example.com", contact_id="c3", baseline="No"),
                       [])
    joined(store, PersonRef("42", "4"), pending=False)                           # no rule when linked: none to record
    joined(store, PersonRef("42", "5"), kind="referrer", pending=False)
    store.links.arm(joined(store, PersonRef("42", "6"), baseline_of="custom_attributes.plan"), [], "plan's")
    joined(store, PersonRef("43", "1"))                                          # another campaign's
    held = store.links.claim(PersonRef("42", "8"), WS)             # a contact found with no rule: this version's, none
    store.links.finish(held, JoinResult(LinkStatus.FAILED, contact_id="c8", contact_found=True, reason="502"), [])
    assert store.links.stamp_rule("42", old, key) == 3
    assert store.links.get(PersonRef("42", "8")).baseline_of is None
    links = [store.links.get(PersonRef(c, u)) for c, u in (("42", "1"), ("42", "2"), ("42", "3"), ("42", "4"),
                                                           ("42", "5"), ("42", "6"), ("43", "1"))]
    assert [(link.baseline_of, link.armed_by) for link in links] == [
        (old, None), (old, key), (old, None), (None, None), (None, None), ("custom_attributes.plan", "plan's"),
        (None, None)]
    assert store.links.stamp_rule("42", "custom_attributes.plan", "plan's") == 0      # recorded already


def after_the_campaign_read(store, monkeypatch, worker) -> None:
    """`worker` runs as stamp_rule has read the campaign's links, before it writes any."""
    if hasattr(store, "tables"):
        read = store.links._in_campaign
        monkeypatch.setattr(store.links, "_in_campaign", lambda c: [read(c), worker()][0])
    else:
        from chalicelib.adapters.dynamo.models import LinkItem
        query = LinkItem.query
        monkeypatch.setattr(LinkItem, "query", lambda *a, **k: [list(query(*a, **k)), worker()][0])


@pytest.mark.parametrize("meanwhile", [None, "moved"])
def test_what_a_link_of_an_earlier_version_left_records_the_rule_settings_replace(store, monkeypatch, meanwhile):
    """An earlier version's link (no baseline_of, armed under no rule named) moved to a contact whose value then is
    unknown: what it left on c1 names neither. `settings apply` replacing the rule records it there too, as on the
    link (a late notification of c1 is judged against it: contact_events._late), once; a move meanwhile (another
    record, c1's carried) is read again and c1's recorded still."""
    key = '["custom_attributes.signed_up", "equals", "Yes", false]'
    link = store.links.arm(joined(store), [], None)
    moved = store.links.move(link, "c2", [Entry("contact", "merged")], role="user", baseline=None,
                             baseline_of=MOVED_UNKNOWN, when=200.0, left=True)
    assert moved.left_then("c1") == LeftContact("c1", "No", None, True, None, 200.0, email=link.email)

    def worker() -> None:
        if meanwhile:
            store.links.move(store.links.get(ANN), "c3", [Entry("contact", "merged")], role="user", baseline=None,
                             baseline_of=MOVED_UNKNOWN, when=300.0, left=True)
    after_the_campaign_read(store, monkeypatch, worker)
    assert store.links.stamp_rule("42", SIGNED_UP, key) == 1
    now = store.links.get(ANN)
    assert now.left_then("c1") == LeftContact("c1", "No", SIGNED_UP, True, key, 200.0, email=link.email)
    assert (now.baseline_of, now.armed, len(now.left_baselines)) == (MOVED_UNKNOWN, False, 2 if meanwhile else 1)
    if meanwhile:
        assert now.left_then("c2") == LeftContact("c2", None, MOVED_UNKNOWN, False, None, 300.0, last_moved_at=200.0,
                                                    email=link.email)
    monkeypatch.undo()
    assert store.links.stamp_rule("42", SIGNED_UP, key) == 0                          # recorded already


@pytest.mark.parametrize("meanwhile", ["baseline taken", "erased"])
def test_a_link_written_since_the_rule_was_read_for_keeps_what_was_written(store, monkeypatch, meanwhile):
    """A backfill takes the lead's baseline under the new rule (unarmed), or `bridge forget` erases them, between
    the read of the campaign's links and their write: nothing of the old rule is written over it."""
    link = store.links.arm(joined(store), [], None)

    def worker() -> None:
        if meanwhile == "erased":
            store.links.erase(store.links.get(ANN))
        else:
            assert store.links.take_baselines([(link, "pro", "custom_attributes.plan", [])]) == [True]
    after_the_campaign_read(store, monkeypatch, worker)
    assert store.links.stamp_rule("42", SIGNED_UP, "signed_up's") == 0
    now = store.links.get(ANN)
    assert now is None if meanwhile == "erased" else (now.baseline_of, now.armed, now.armed_by) == (
        "custom_attributes.plan", False, None)


def test_a_join_resumed_as_the_rule_is_recorded_keeps_the_rule_recorded(store):
    """A join the earlier version left part-way (its contact made, its baseline "No" taken under signed_up) is
    resumed by a worker that read the link before `settings apply` recorded the rule on it: the join finishes with
    the baseline it read, naming no rule, and the rule recorded stays (the new rule would take the "No" as its own)."""
    ref = PersonRef("42", "3")
    store.links.finish(store.links.claim(ref, WS), JoinResult(
        LinkStatus.WAITING, email="cy@example.com", contact_id="c3", baseline="No"), [])
    read = store.links.get(ref)
    claim = store.links.claim(ref, WS)
    assert store.links.stamp_rule("42", SIGNED_UP, "signed_up's") == 1
    store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="lead", email=read.email, contact_id=read.contact_id,
                                         baseline=read.baseline, baseline_of=read.baseline_of,
                                         qualification=QState.PENDING), [])
    assert (store.links.get(ref).baseline, store.links.get(ref).baseline_of) == ("No", SIGNED_UP)


# --- qualification: only forward ------------------------------------------------------------------
def test_one_worker_takes_the_qualification_and_the_other_sees_it_in_progress(store):
    link = joined(store)
    claim = store.links.start_qualifying(link)
    assert isinstance(claim, Claim) and claim.link.qualification is QState.QUALIFYING and not claim.took_over
    refused = store.links.start_qualifying(link)
    assert not isinstance(refused, Claim) and refused.qualification is QState.QUALIFYING
    done = store.links.finish_qualifying(claim, QState.QUALIFIED, [Entry("qualification", "qualified")])
    assert done.qualification is QState.QUALIFIED and done.qualified_at
    stays = store.links.start_qualifying(done, replay=True)
    assert not isinstance(stays, Claim) and stays.qualification is QState.QUALIFIED
    assert store.links.get(ANN).qualification is QState.QUALIFIED


def test_a_dead_workers_claim_is_taken_over_once_its_lease_runs_out(store, clock):
    link = joined(store)
    dead = store.links.start_qualifying(link, lease=120)
    clock.now += 121
    taken = store.links.start_qualifying(link)
    assert isinstance(taken, Claim) and taken.took_over
    with pytest.raises(Busy):
        store.links.finish_qualifying(dead, QState.QUALIFIED, [])
    store.links.finish_qualifying(taken, QState.QUALIFIED, [])


def test_a_failed_qualification_is_retried_only_by_a_replay(store):
    claim = store.links.start_qualifying(joined(store))
    failed = store.links.finish_qualifying(claim, QState.FAILED, [Entry("qualification", "failed")],
                                           reason="RF answered 422")
    assert failed.reason == "RF answered 422"
    assert not isinstance(store.links.start_qualifying(failed), Claim)
    again = store.links.start_qualifying(failed, replay=True)
    assert isinstance(again, Claim)


@pytest.mark.parametrize("replayed_to", [QState.QUALIFIED, QState.UNCONFIRMED])
def test_a_failed_qualification_owes_its_dead_letter_until_one_with_its_reason_is_sent(store, replayed_to):
    failed = store.links.finish_qualifying(store.links.start_qualifying(joined(store)), QState.FAILED, [],
                                           reason="RF answered 422")
    assert failed.owes_letter and store.links.get(ANN).owes_letter
    store.links.lettered(ANN, "gave up after 3 tries: Intercom answered 500")     # another letter about Ann
    assert store.links.get(ANN).owes_letter
    store.links.lettered(ANN, "RF answered 422")
    assert not store.links.get(ANN).owes_letter and store.links.get(ANN).qualification is QState.FAILED
    store.links.lettered(PersonRef("42", "nobody"), "RF answered 422")            # no link: nothing is written
    assert store.links.get(PersonRef("42", "nobody")) is None
    again = store.links.finish_qualifying(store.links.start_qualifying(joined(store, PersonRef("42", "8"), contact="c2")),
                                          QState.FAILED, [], reason="RF answered 422")
    replayed = store.links.finish_qualifying(store.links.start_qualifying(again, replay=True), replayed_to, [])
    assert not replayed.letter_owed and not store.links.get(again.ref).letter_owed


@pytest.mark.parametrize("ends", [QState.QUALIFIED, QState.FAILED])
def test_a_refusal_is_dated_by_its_letter_and_its_discard_is_marked_until_the_qualification_ends_again(
        store, clock, ends):
    """A refusal's date (its letter's, which SQS keeps 14 days) and the operator's discard of that letter are kept
    on the link, whatever else writes it later; a qualification ending again (a replay) clears the mark."""
    pending = joined(store)
    store.links.discard_refusals([ANN])                           # not refused: nothing is marked
    assert store.links.get(ANN).refused_at is None and not store.links.get(ANN).refusal_discarded
    failed = store.links.finish_qualifying(store.links.start_qualifying(pending), QState.FAILED, [],
                                           reason="RF answered 422")
    assert failed.refused_at == clock.now == store.links.get(ANN).refused_at
    clock.now += 5 * 86400
    store.links.lettered(ANN, "RF answered 422")                  # its letter sent late: the refusal dated by it
    assert store.links.get(ANN).refused_at == clock.now
    store.links.discard_refusals([ANN, ANN, PersonRef("42", "nobody")])
    clock.now += 86400
    store.links.set_contact(store.links.get(ANN), [], role="user")     # any later write keeps both
    kept = store.links.get(ANN)
    assert kept.refusal_discarded and kept.refused_at == clock.now - 86400 and kept.updated_at == iso(clock.now)
    assert store.links.get(PersonRef("42", "nobody")) is None
    again = store.links.finish_qualifying(store.links.start_qualifying(kept, replay=True), ends, [], reason="again")
    assert not again.refusal_discarded and not store.links.get(ANN).refusal_discarded
    assert store.links.get(ANN).refused_at == again.refused_at == (clock.now if ends is QState.FAILED
                                                                   else clock.now - 86400)


@pytest.mark.parametrize("ends", [QState.QUALIFIED, QState.FAILED])
def test_a_refused_lead_found_deleted_in_rf_is_marked_with_its_entry_until_the_qualification_ends_again(
        store, clock, ends):
    """`bridge backfill --apply` found refused leads deleted in Referral Factory: each whose qualification failed is
    marked so, when, with its entry; a lead not refused, or not kept, is left alone (said so); a qualification
    ending again clears the mark."""
    failed = store.links.finish_qualifying(store.links.start_qualifying(joined(store)), QState.FAILED, [],
                                           reason="RF answered 422")
    pending = joined(store, PersonRef("42", "8"), contact="c8", email="bob@example.com")
    clock.now += 86400
    gone = Entry("qualification", "deleted_in_rf", "deleted in Referral Factory")
    assert store.links.rf_deleted([(failed, [gone]), (pending, [gone]),
                                   (dataclasses.replace(failed, rf_user_id="nobody"), [gone])]) == [True, False, False]
    marked = store.links.get(ANN)
    assert (marked.rf_deleted_at, marked.refused_at, marked.qualification) == (clock.now, failed.refused_at,
                                                                               QState.FAILED)
    assert marked.updated_at == failed.updated_at                   # (the refusal not dated anew)
    assert outcomes(store)[-1] == "deleted_in_rf" and "deleted_in_rf" not in outcomes(store, pending.ref)
    assert store.links.get(pending.ref).rf_deleted_at is None and store.links.get(PersonRef("42", "nobody")) is None
    assert store.history.entries(PersonRef("42", "nobody")) == []
    store.links.set_contact(marked, [], role="user")                  # any later write keeps it
    assert store.links.get(ANN).rf_deleted_at == clock.now
    again = store.links.finish_qualifying(store.links.start_qualifying(store.links.get(ANN), replay=True), ends, [],
                                          reason="again")
    assert again.rf_deleted_at is None and store.links.get(ANN).rf_deleted_at is None


def _refused_before_refused_at(store, ref=ANN) -> Link:
    """The link as a refusal written before the bridge recorded Link.refused_at left it (dated by updated_at)."""
    if type(store.links).__name__ == "DynamoLinks":
        from chalicelib.adapters.dynamo.keys import link_key
        from chalicelib.adapters.dynamo.models import LinkItem
        LinkItem(*link_key(ref)).update(actions=[LinkItem.refused_at.remove()])
    else:
        store.tables.links[ref].link = dataclasses.replace(store.tables.links[ref].link, refused_at=None)
    link = store.links.get(ref)
    assert link.refused_at is None and link.qualification is QState.FAILED
    return link


@pytest.mark.parametrize("legacy", [False, True])
def test_marking_a_lead_deleted_in_rf_does_not_date_its_refusal_anew(store, clock, legacy):
    """The mark keeps Link.updated_at, what dates a refusal recorded without Link.refused_at: Referral Factory
    listing the lead again later, its dead letter is still gone (letter_gone), and backfill checks it again at once,
    not 14 days on."""
    store.links.finish_qualifying(store.links.start_qualifying(joined(store)), QState.FAILED, [], reason="RF said no")
    clock.now += 30 * 86400
    read = _refused_before_refused_at(store) if legacy else store.links.get(ANN)
    assert store.links.rf_deleted([(read, [Entry("qualification", "deleted_in_rf")])]) == [True]
    marked = store.links.get(ANN)
    assert (marked.rf_deleted_at, marked.updated_at, marked.refused_at) == (clock.now, read.updated_at,
                                                                            read.refused_at)
    clock.now += 86400
    assert letter_gone(marked, clock.now, listed=True) and not letter_gone(marked, clock.now)


@pytest.mark.parametrize("meanwhile", ["failed_again", "written"])
@pytest.mark.parametrize("legacy", [False, True])
def test_a_lead_refused_again_since_backfill_read_it_is_not_marked_deleted_in_rf(store, clock, legacy, meanwhile):
    """Backfill read a refusal whose letter is gone; before its mark, a replay failed again (its new dead letter
    there, a replay of it due) or, for a refusal dated by its last write only, another write dated it anew: the
    refusal is no longer the one read, so it is not marked (doctor still counts it), nothing written."""
    store.links.finish_qualifying(store.links.start_qualifying(joined(store)), QState.FAILED, [], reason="RF said no")
    clock.now += 30 * 86400
    read = _refused_before_refused_at(store) if legacy else store.links.get(ANN)
    clock.now += 60
    if meanwhile == "failed_again":
        store.links.finish_qualifying(store.links.start_qualifying(read, replay=True), QState.FAILED, [],
                                      reason="RF said no again")
    else:
        store.links.set_contact(read, [], role="user")
    before = store.links.get(ANN)
    assert store.links.rf_deleted([(read, [Entry("qualification", "deleted_in_rf")])]) == [
        meanwhile == "written" and not legacy]
    if meanwhile == "failed_again" or legacy:
        assert store.links.get(ANN) == before and "deleted_in_rf" not in outcomes(store)


def test_a_claim_cannot_end_where_no_transition_goes(store):
    claim = store.links.start_qualifying(joined(store))
    with pytest.raises(ValueError):
        store.links.finish_qualifying(claim, QState.QUALIFYING, [])


def test_a_lead_without_a_rule_cannot_be_claimed(store):
    link = joined(store, pending=False)
    assert not isinstance(store.links.start_qualifying(link, replay=True), Claim)


# --- the pending index ------------------------------------------------------------------------------
def test_pending_leads_come_oldest_first_in_pages_and_leave_when_settled(store, clock):
    refs = [PersonRef("42", str(n)) for n in range(1, 5)]
    for n, ref in enumerate(refs):
        joined(store, ref, contact=f"c{n}", email=f"p{n}@example.com")
        clock.now += 1
    joined(store, PersonRef("42", "ref"), contact="cr", email="r@example.com", kind="referrer", pending=False)
    first = store.links.pending(None, 2)
    assert [l.ref for l in first.links] == refs[:2]
    rest = store.links.pending(first.position, 10)
    assert [l.ref for l in rest.links] == refs[2:]
    claim = store.links.start_qualifying(rest.links[0])
    store.links.finish_qualifying(claim, QState.QUALIFIED, [])
    store.links.unpend(rest.links[1], "no rule any more")
    unsure = store.links.start_qualifying(first.links[0])        # decided: it waits for RF, not for the contact
    store.links.finish_qualifying(unsure, QState.UNCONFIRMED, [Entry("qualification", "unconfirmed")], reason="lost")
    assert [l.ref for l in store.links.pending(None, 10).links] == refs[1:2]
    assert outcomes(store, refs[3])[-1] == "stopped"


def test_pending_leads_are_counted_and_paged_from_a_join_time(store, clock):
    from chalicelib.domain.history import iso
    old = [PersonRef("42", str(n)) for n in range(1, 4)]
    for n, ref in enumerate(old):
        joined(store, ref, contact=f"c{n}", email=f"p{n}@example.com")
    clock.now += 86400
    young = PersonRef("42", "9")
    joined(store, young, contact="c9", email="y@example.com")
    bound = iso(clock.now - 3600)
    assert store.links.count_pending() == 4 and store.links.count_pending(before=bound) == 3
    assert store.links.count_pending(before=bound, limit=2) == 2 and store.links.count_pending(limit=9) == 4
    assert [l.ref for l in store.links.pending(bound, 10).links] == [young]


def test_a_campaigns_pending_leads_are_read_from_its_own_links_whatever_other_campaigns_wait(store, clock):
    """Doctor's read of one campaign's pending leads, when the index (every campaign's, oldest first) holds too many
    of others before them: its own links, in key order, up to a cap; complete once none is left."""
    for n in range(3):
        joined(store, PersonRef("41", str(n)), contact=f"o{n}", email=f"o{n}@example.com")      # older, another's
    ann = joined(store, PersonRef("42", "7"), contact="c7", email="ann@example.com")
    joined(store, PersonRef("42", "8"), contact="c8", email="r@example.com", kind="referrer", pending=False)
    settled = joined(store, PersonRef("42", "9"), contact="c9", email="bob@example.com")
    store.links.unpend(settled, "no rule any more")
    assert store.links.pending_in("42") == ([ann], True)
    assert store.links.pending_in("42", scan_limit=1) == ([ann], False)             # PERSON#7 read, 8 and 9 not
    assert store.links.pending_in("43") == ([], True)


def test_a_campaigns_refused_qualifications_are_read_from_its_own_links(store):
    """`doctor`'s read of the leads whose qualification RF refused (their letters may be gone): the campaign's own
    links whose qualification failed, with when each was last written, in key order up to a cap."""
    refused = joined(store, PersonRef("42", "7"), contact="c7", email="ann@example.com")
    store.links.finish_qualifying(store.links.start_qualifying(refused), QState.FAILED, [], reason="RF said 422")
    joined(store, PersonRef("42", "8"), contact="c8", email="bob@example.com")                # pending
    other = joined(store, PersonRef("41", "7"), contact="o7", email="o@example.com")          # another campaign's
    store.links.finish_qualifying(store.links.start_qualifying(other), QState.FAILED, [], reason="RF said 422")
    [found], complete = store.links.refused_in("42")
    assert (found.ref, found.qualification, found.reason, complete) == (PersonRef("42", "7"), QState.FAILED,
                                                                        "RF said 422", True)
    assert found.updated_at == store.links.get(PersonRef("42", "7")).updated_at
    assert store.links.refused_in("42", scan_limit=1) == ([found], False)
    assert store.links.refused_in("43") == ([], True)


# --- the overdue index: what reconciliation finishes ------------------------------------------------
def test_a_join_claim_past_its_lease_is_overdue_until_the_join_finishes(store, clock):
    assert store.links.overdue(clock() + 10**6, 10) == []
    claim = store.links.claim(ANN, WS, lease=120)
    assert store.links.overdue(clock.now + 119, 10) == []                    # its worker may still be at it
    [late] = store.links.overdue(clock.now + 121, 10)
    assert (late.link.ref, late.link.status, late.lease_until) == (ANN, LinkStatus.IN_PROGRESS, clock.now + 120)
    store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="lead", contact_id="c1",
                                         qualification=QState.PENDING), [])
    assert store.links.overdue(clock.now + 10**6, 10) == []


def test_a_qualification_left_unconfirmed_is_overdue_until_a_claim_finishes_it(store, clock):
    link = joined(store)
    claim = store.links.start_qualifying(link, lease=120)
    assert claim.previous is QState.PENDING
    [dying] = store.links.overdue(clock.now + 121, 10)                        # a worker died mid-call
    assert dying.link.qualification is QState.QUALIFYING
    unsure = store.links.finish_qualifying(claim, QState.UNCONFIRMED, [Entry("qualification", "unconfirmed")],
                                           reason="Referral Factory's answer was lost", lease=60)
    assert unsure.qualification is QState.UNCONFIRMED and unsure.reason.endswith("lost")
    assert store.links.overdue(clock.now + 59, 10) == [] and store.links.pending(None, 10).links == []
    [late] = store.links.overdue(clock.now + 61, 10)
    assert late.link.qualification is QState.UNCONFIRMED
    again = store.links.start_qualifying(late.link)                           # no lease to wait for
    assert isinstance(again, Claim) and again.previous is QState.UNCONFIRMED and not again.took_over
    store.links.finish_qualifying(again, QState.QUALIFIED, [])
    assert store.links.overdue(clock.now + 10**6, 10) == []


def test_an_unconfirmed_qualification_keeps_whether_rfs_no_still_holds_until_it_ends(store, clock):
    link = joined(store)
    claim = store.links.start_qualifying(link)
    held = store.links.finish_qualifying(claim, QState.UNCONFIRMED, [], reason="budget spent", rf_said_no=True)
    assert held.rf_said_no and store.links.get(link.ref).rf_said_no
    again = store.links.start_qualifying(held)
    assert again.previous is QState.UNCONFIRMED and again.link.rf_said_no      # what the claim decides from
    lost = store.links.finish_qualifying(again, QState.UNCONFIRMED, [], reason="answer lost")
    assert store.links.get(link.ref).rf_said_no is None and lost.rf_said_no is None
    last = store.links.start_qualifying(lost)
    held = store.links.finish_qualifying(last, QState.UNCONFIRMED, [], reason="budget spent", rf_said_no=True)
    done = store.links.finish_qualifying(store.links.start_qualifying(held), QState.QUALIFIED, [])
    assert store.links.get(link.ref).rf_said_no is None and done.rf_said_no is None     # it ends with it


def test_overdue_links_come_longest_overdue_first_and_a_limit_holds(store, clock):
    refs = [PersonRef("42", str(n)) for n in range(1, 4)]
    for ref in refs:
        store.links.claim(ref, WS, lease=120)
        clock.now += 1
    got = store.links.overdue(clock.now + 500, 2)
    assert [o.link.ref for o in got] == refs[:2] and got[0].lease_until < got[1].lease_until


# --- requeued: reconciliation queued the work that finishes an overdue link -------------------------
STUCK = [Entry("reconciliation", "stuck_join")]


def test_a_requeued_link_is_not_due_until_its_retry_and_keeps_when_its_lease_ended(store, clock):
    store.links.claim(ANN, WS, lease=120)                                    # ...and its worker died
    ended = clock.now + 120
    clock.now += 121
    [late] = store.links.overdue(clock.now, 10)
    assert (late.lease_until, late.due, late.requeued) == (ended, ended, 0)
    assert store.links.requeue(late, clock.now + 3600, STUCK)
    assert not store.links.requeue(late, clock.now + 3600, STUCK)            # another run read it too: moved
    assert store.links.overdue(clock.now + 3599, 10) == []                   # its message has its chance
    [again] = store.links.overdue(clock.now + 3601, 10)
    assert (again.lease_until, again.due, again.requeued) == (ended, clock.now + 3600, 1)
    assert store.links.requeue(again, clock.now + 7200, STUCK)
    [third] = store.links.overdue(clock.now + 7201, 10)
    assert (third.lease_until, third.due, third.requeued) == (ended, clock.now + 7200, 2)
    assert outcomes(store) == ["stuck_join", "stuck_join"]                   # one entry per requeue


def test_a_requeue_whose_message_was_not_sent_is_undone_and_the_link_is_due_as_it_was_read(store, clock):
    store.links.claim(ANN, WS, lease=120)                                    # ...and its worker died
    clock.now += 121
    for times in (0, 1):                                                     # its first requeue, then a later one
        [late] = store.links.overdue(clock.now, 10)
        assert late.requeued == times and store.links.requeue(late, clock.now + 3600, STUCK)
        assert store.links.unqueue(late, clock.now + 3600, [Entry("reconciliation", "not_queued")])
        assert store.links.overdue(clock.now, 10) == [late]                  # due again, as it was read
        assert store.links.requeue(late, clock.now + 3600, STUCK)            # (the next run's, sent)
        clock.now += 3601
    assert outcomes(store) == ["stuck_join", "not_queued", "stuck_join"] * 2
    [late] = store.links.overdue(clock.now, 10)
    assert store.links.requeue(late, clock.now + 3600, STUCK)
    store.links.claim(ANN, WS, lease=120)                                    # a worker took it meanwhile
    assert not store.links.unqueue(late, clock.now + 3600, [Entry("reconciliation", "not_queued")])
    assert store.links.overdue(clock.now, 10) == [] and outcomes(store)[-1] == "stuck_join"


def test_a_requeued_join_is_claimed_at_once_and_a_new_claim_starts_afresh(store, clock):
    dead = store.links.claim(ANN, WS, lease=120)
    clock.now += 121
    [late] = store.links.overdue(clock.now, 10)
    store.links.requeue(late, clock.now + 3600, STUCK)
    taken = store.links.claim(ANN, WS, lease=120)                           # the queued join: no waiting
    assert taken is not None and not store.links.requeue(late, clock.now + 3600, STUCK)
    with pytest.raises(Busy):
        store.links.claim(ANN, WS)                                          # the new claim holds
    clock.now += 121                                                        # and its worker died too
    [fresh] = store.links.overdue(clock.now, 10)
    assert (fresh.lease_until, fresh.due, fresh.requeued) == (clock.now - 1, clock.now - 1, 0)
    with pytest.raises(Busy):
        store.links.finish(dead, JoinResult(LinkStatus.LINKED, contact_id="c1"), [])
    store.links.finish(taken, JoinResult(LinkStatus.LINKED, kind="lead", contact_id="c1"), [])
    assert store.links.overdue(clock.now + 10**6, 10) == []


def test_a_requeued_joins_first_claim_still_finishes_while_nobody_took_it(store, clock):
    slow = store.links.claim(ANN, WS, lease=120)                            # not dead: slow
    clock.now += 121
    [late] = store.links.overdue(clock.now, 10)
    store.links.requeue(late, clock.now + 3600, STUCK)
    store.links.finish(slow, JoinResult(LinkStatus.LINKED, kind="lead", contact_id="c1"), [])
    assert store.links.overdue(clock.now + 10**6, 10) == [] and store.links.claim(ANN, WS) is None


def test_a_requeued_qualification_is_taken_over_at_once(store, clock):
    link = joined(store)
    dead = store.links.start_qualifying(link, lease=120)
    clock.now += 121
    [late] = store.links.overdue(clock.now, 10)
    store.links.requeue(late, clock.now + 3600, [Entry("reconciliation", "stuck_qualification")])
    taken = store.links.start_qualifying(link)                              # the queued check: no waiting
    assert isinstance(taken, Claim) and taken.took_over and taken.previous is QState.QUALIFYING
    with pytest.raises(Busy):
        store.links.finish_qualifying(dead, QState.QUALIFIED, [])
    store.links.finish_qualifying(taken, QState.UNCONFIRMED, [], reason="lost again", lease=60)
    [unsure] = store.links.overdue(clock.now + 61, 10)                      # due after its own wait
    assert (unsure.lease_until, unsure.due, unsure.requeued) == (clock.now + 60, clock.now + 60, 0)


# --- history ---------------------------------------------------------------------------------------
def test_history_keeps_the_order_counts_repeats_and_expires(store, clock):
    joined(store, entries=[Entry("a", "one", "r1", {"k": 1}), Entry("b", "two")])
    store.links.note_repeat(ANN, "join", "again")
    store.links.note_repeat(ANN, "join", "again")
    entries = store.history.entries(ANN)
    assert [(e.event, e.outcome, e.count) for e in entries] == [("a", "one", None), ("b", "two", None),
                                                                 ("join", "ignored", 2)]
    assert entries[0].details == {"k": 1} and entries[0].reason == "r1"
    assert {e.expires_at for e in entries} == {int(clock()) + 400 * 86400}


def test_history_a_later_version_wrote_with_more_to_each_entry_reads(store):
    """Rolled back, this version reads the entries a later one wrote: an item's attribute it does not know is left
    out, and so is what the later version may add to each entry written with the first (`also`). (The twin keeps
    entries as this version records them.)"""
    joined(store, entries=[Entry("a", "one"), Entry("b", "two", "r2", {"k": 2})])
    if type(store.links).__name__ != "DynamoLinks":
        pytest.skip("the twin keeps the entries themselves, not their items")
    from chalicelib.adapters.dynamo.models import HistoryItem, _client
    [item] = [i for i in HistoryItem.scan() if i.event == "a"]
    item.update(actions=[HistoryItem.also.set([["b", "two", "r2", {"k": 2}, {"later": True}]])])
    _client().update_item(TableName=HistoryItem.Meta.table_name, Key={"pk": {"S": item.pk}, "sk": {"S": item.sk}},
                          UpdateExpression="SET later_mark = :m", ExpressionAttributeValues={":m": {"S": "v9"}})
    assert [(e.event, e.outcome, e.reason, e.details) for e in store.history.entries(ANN)] == [
        ("a", "one", None, None), ("b", "two", "r2", {"k": 2})]


def test_a_counted_wait_counts_again_from_one_after_a_pause_or_for_another_wait(store, clock):
    """The worker's one note of a person's waits counted every wait since the first: two outages days apart read as
    one of 140 waits. A wait noted longer than `restart_after` after the last, or another kind of wait (its reason
    differs before its first digit: not only in its times and numbers), counts from one; other repeats keep counting."""
    joined(store, entries=())

    def wait(seconds_later: float, reason: str) -> int:
        clock.now += seconds_later
        store.links.note_repeat(ANN, "waiting", reason, outcome="deferred", restart_after=3600)
        store.links.note_repeat(ANN, "join", "again")
        [noted] = [e for e in store.history.entries(ANN) if e.event == "waiting"]
        assert (noted.at, noted.reason, noted.outcome) == (iso(clock()), reason, "deferred")
        return noted.count
    assert [wait(0, "Intercom unavailable since 2026-01-01T00:00:00.000Z (Intercom answered 503)"),
            wait(900, "Intercom unavailable since 2026-01-01T00:00:00.000Z (Intercom answered 502)"),
            wait(3 * 86400, "Intercom unavailable since 2026-01-04T00:15:00.000Z (Intercom answered 503)"),
            wait(900, "Intercom unavailable since 2026-01-04T00:15:00.000Z (Intercom answered 503)"),
            wait(60, "Referral Factory answered 429: Too Many Requests"),
            wait(60, "Referral Factory answered 429: Too Many Requests")] == [1, 2, 1, 2, 1, 2]
    [repeats] = [e for e in store.history.entries(ANN) if e.event == "join"]
    assert repeats.count == 6


def test_a_latest_entry_is_one_entry_replaced_by_each_newer_one_and_erased_with_the_history(store, clock):
    failed = Entry("referral_count", "failed", "count 4 not written")
    joined(store, entries=[failed])
    for n in (1, 2, 3):
        clock.now += 60
        store.links.note_latest(ANN, Entry("referral_count", "written", f"count {n}", {"count": n}))
    store.links.note(ANN, [failed])                                                    # failures: each kept
    store.links.note_repeat(ANN, "join", "again")
    entries = store.history.entries(ANN)
    assert [(e.outcome, e.reason) for e in entries] == [("failed", "count 4 not written")] * 2 + [
        ("written", "count 3"), ("ignored", "again")]
    assert entries[2].details == {"count": 3} and entries[2].at == iso(clock())
    assert entries[2].expires_at == int(clock()) + 400 * 86400
    assert store.history.erase(ANN) == 4 and store.history.entries(ANN) == []


def test_erasing_a_link_takes_its_history_and_its_contact_pointer(store):
    link = joined(store)
    store.links.note_repeat(ANN, "join", "again")
    assert store.links.erase(link) == (2, 1, None, "c1", WS)       # (nobody's count lowered)
    assert store.links.get(ANN) is None and store.history.entries(ANN) == []
    assert store.lookup.look_up(contacts=[(WS, "c1")]).linked_to_contact(WS, "c1") == []


def test_a_link_a_retry_claimed_in_another_workspace_moved_before_it_found_a_contact_leaves_the_earlier_pointer(store):
    """Between the claim in ws2 (the campaign moved) and its hold, reconciliation follows ws1's c_old (Intercom's
    404 in ws2, the contact with her email there): c_old's pointer, in ws1, names her no more."""
    claim = store.links.claim(ANN, WS)
    store.links.finish(claim, JoinResult(LinkStatus.FAILED, email="ann@example.com", contact_id="c_old",
                                         reason="Intercom answered 500"), [Entry("join", "failed")])
    store.links.claim(ANN, "ws2")
    moved = store.links.move(store.links.get(ANN), "c_new", [Entry("contact", "moved")])
    assert moved is not None and moved.contact_id == "c_new"
    found = store.lookup.look_up(contacts=[(WS, "c_old"), ("ws2", "c_old"), ("ws2", "c_new")])
    assert sorted(k for k, refs in found.by_contact.items() if ANN in refs) == [("ws2", "c_new")]


@pytest.mark.parametrize("held", [True, False], ids=["held_then_finished", "finished"])
def test_a_retry_in_another_workspace_leaves_the_earlier_workspaces_contact_pointer(store, held):
    """The campaign moved to workspace ws2 between a failed try (which recorded ws1's contact c_old) and the retry,
    which finds (`held`: holds, then finishes on) ws2's c_new: c_old's pointer, in ws1 where that try wrote it, no
    longer names her (forget, which erases her link's contact pointer only, would never find it)."""
    claim = store.links.claim(ANN, WS)
    store.links.finish(claim, JoinResult(LinkStatus.FAILED, email="ann@example.com", contact_id="c_old",
                                         reason="Intercom answered 500"), [Entry("join", "failed")])
    assert ANN in store.lookup.look_up(contacts=[(WS, "c_old")]).by_contact[(WS, "c_old")]
    again = store.links.claim(ANN, "ws2")
    if held:
        assert store.links.hold_found([(again, FoundContact("c_new", "lead", "lead", "No", "x"))]) == [None]
    store.links.finish(again, JoinResult(LinkStatus.LINKED, kind="lead", email="ann@example.com", contact_id="c_new",
                                         contact_role="lead"), [Entry("join", "linked")])
    found = store.lookup.look_up(contacts=[(WS, "c_old"), ("ws2", "c_old"), ("ws2", "c_new")])
    assert sorted(k for k, refs in found.by_contact.items() if ANN in refs) == [("ws2", "c_new")]
    link = store.links.get(ANN)
    assert (link.workspace, link.contact_id) == ("ws2", "c_new")
    done = store.links.erase(link)
    assert done.pointers == 1 and done.contact_id == "c_new"
    found = store.lookup.look_up(contacts=[(WS, "c_old"), ("ws2", "c_new")])
    assert [k for k, refs in found.by_contact.items() if ANN in refs] == []


def test_forget_of_a_retry_claimed_in_another_workspace_erases_the_earlier_workspaces_contact_pointer(store):
    """Forget comes while the retry in ws2 is under way, before it found a contact: the link still holds ws1's c_old,
    whose pointer (in ws1, where that try wrote it) goes with the link."""
    claim = store.links.claim(ANN, WS)
    store.links.finish(claim, JoinResult(LinkStatus.FAILED, email="ann@example.com", contact_id="c_old",
                                         reason="Intercom answered 500"), [Entry("join", "failed")])
    store.links.claim(ANN, "ws2")
    done = store.links.erase(store.links.get(ANN))
    assert (done.pointers, done.contact_id, done.contact_workspace) == (1, "c_old", WS)    # (its refusals are WS's)
    found = store.lookup.look_up(contacts=[(WS, "c_old"), ("ws2", "c_old")])
    assert [k for k, refs in found.by_contact.items() if ANN in refs] == []


@pytest.mark.parametrize("batch", [False, True])
def test_a_join_finished_on_another_contact_than_it_held_leaves_its_pointer_and_forget_leaves_none(store, batch):
    """Intercom merged the contact a join held into another before the join finished there: the held contact's
    pointer names her no more (another person it names keeps it), so `bridge forget` leaves no pointer naming her.
    `batch`: finished with another person's join in one write."""
    bob, carol = PersonRef("42", "8"), PersonRef("42", "9")
    joined(store, bob, contact="c_found", email="bob@example.com")
    claim, other = store.links.claim_many([(ANN, WS), (carol, WS)])
    assert store.links.hold_found([(claim, FoundContact("c_found", "lead", "lead", "No", "x"))]) == [None]
    done = [(claim, JoinResult(LinkStatus.LINKED, kind="lead", email="ann@example.com", contact_id="c_survivor",
                               contact_role="lead", baseline="No", qualification=QState.PENDING), [Entry("join", "linked")])]
    if batch:
        done.append((other, JoinResult(LinkStatus.LINKED, kind="lead", email="carol@example.com", contact_id="c3"), []))
    assert store.links.finish_many(done) == [None] * len(done)
    contacts = [(WS, c) for c in ("c_found", "c_survivor", "c3")]
    found = store.lookup.look_up(contacts=contacts)
    assert (found.by_contact[(WS, "c_found")], found.by_contact[(WS, "c_survivor")]) == ({bob}, {ANN})
    store.links.erase(store.links.get(ANN))
    assert not any(ANN in refs for refs in store.lookup.look_up(contacts=contacts).by_contact.values())


@pytest.mark.parametrize("store", ["dynamo"], indirect=True)
@pytest.mark.parametrize("follows", ["move", "finish"])
def test_a_link_leaving_a_contact_whose_other_link_left_its_pointer_at_that_moment_reads_it_again(
        store, monkeypatch, follows):
    """Two campaigns' links of one contact follow its merge at once: Bob's merge notification takes his link off the
    merged contact's pointer between Ann's read of that pointer and her write (her merge notification, or her join,
    which held the merged contact, finishing on the survivor). Ann's write is refused on the pointer as read: it is
    read again and Ann's link leaves it, not sent back to wait (a join's, for its own claim's whole lease)."""
    from chalicelib.adapters.dynamo import links as dynamo_links
    bob = PersonRef("43", "8")
    joined(store, bob, contact="c_found", email="bob@example.com")
    if follows == "move":
        joined(store, contact="c_found")
    else:
        claim = store.links.claim(ANN, WS)
        assert store.links.hold_found([(claim, FoundContact("c_found", "lead", "lead", "No", "x"))]) == [None]
    leave, raced = dynamo_links._leave, []

    def bob_moves_at_once(key, ref):
        writes = leave(key, ref)
        if ref == ANN and not raced:
            raced.append(store.links.move(store.links.get(bob), "c_survivor", [Entry("contact", "merged")]))
        return writes
    monkeypatch.setattr(dynamo_links, "_leave", bob_moves_at_once)
    if follows == "move":
        store.links.move(store.links.get(ANN), "c_survivor", [Entry("contact", "merged")])
    else:
        store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="lead", email="ann@example.com",
                                             contact_id="c_survivor", contact_role="lead"), [Entry("join", "linked")])
    found = store.lookup.look_up(contacts=[(WS, "c_found"), (WS, "c_survivor")])
    assert raced and (WS, "c_found") not in found.by_contact and found.by_contact[(WS, "c_survivor")] == {ANN, bob}
    assert store.links.get(ANN).contact_id == "c_survivor" and store.links.get(ANN).final

# --- forget racing a worker that moves the link --------------------------------------------------------
def _naming(store, ref=ANN) -> list[tuple[str, str]]:
    """The contact and email pointers (of those a race could write) that still name `ref`."""
    found = store.lookup.look_up(contacts=[(WS, c) for c in ("c1", "c2", "c_found", "c_survivor")],
                                 emails=[(WS, "ann@example.com"), (WS, "ann@new.example")])
    return sorted(key for key, refs in {**found.by_contact, **found.by_email}.items() if ref in refs)


@pytest.mark.parametrize("meanwhile, contact, emails", [
    (lambda links, read: links.move(read, "c2", [Entry("contact", "merged")], role="user"), "c2",
     [(WS, "ann@example.com")]),
    (lambda links, read: links.set_contact(read, [Entry("contact", "email_changed")], when=100.0,
                                           email="ann@new.example"), "c1", []),
    (lambda links, read: links.set_contact(read, [Entry("contact", "role_changed")], when=100.0, role="user"), "c1",
     [(WS, "ann@example.com")]),
    (lambda links, read: links.arm(read, [Entry("evaluation", "not_met")], "rule"), "c1", [(WS, "ann@example.com")]),
], ids=["move", "email", "role", "arm"])
def test_forget_erases_the_link_as_it_stands_not_as_it_read_it(store, meanwhile, contact, emails):
    """`bridge forget` read Ann's link on c1; a worker then followed a merge of c1 into c2 (or her email's change, her
    role's, an arming) before the erasure wrote: the pointers her link has by then go with it (the survivor's contact
    pointer, her new email's: none is left naming her), and the contact said erased is the one it held then. (The
    pointer of the email forget was given, when still hers, is forget's own to delete, last.)"""
    stale = joined(store)
    meanwhile(store.links, store.links.get(ANN))
    done = store.links.erase(stale)
    assert store.links.get(ANN) is None and store.history.entries(ANN) == []
    assert _naming(store) == emails
    assert (done.contact_id, done.pointers) == (contact, 1 + (not emails))


def test_forget_interrupted_after_erasing_a_link_whose_email_changed_leaves_no_pointer_naming_her(store, monkeypatch):
    """`bridge forget ann@example.com` read Ann's link; her email then changed (its pointer moved to the new one), and
    the erasure was cut short after deleting her link (a throttle, Ctrl-C). A run again finds nothing by the email it
    is given: the new email's pointer went with the link, in its write, not in a later one that never came."""
    stale = joined(store)
    store.links.set_contact(store.links.get(ANN), [Entry("contact", "email_changed")], when=100.0,
                            email="ann@new.example")
    assert _naming(store) == [(WS, "ann@new.example"), (WS, "c1")]

    def cut_short(ref):
        raise RuntimeError("throttled / connection reset / Ctrl-C")
    monkeypatch.setattr(store.links.history, "erase", cut_short)
    with pytest.raises(RuntimeError):
        store.links.erase(stale)
    monkeypatch.undo()
    assert store.links.get(ANN) is None
    assert _naming(store) == []
    again = store.lookup.look_up(emails=[(WS, "ann@example.com")])
    assert (dict(again.by_email), dict(again.links)) == ({}, {})


def test_a_move_that_read_the_link_before_forget_erased_it_writes_nothing_and_says_none(store):
    """The worker following a merge read Ann's link, then `bridge forget` erased her: the move brings back neither
    her link nor a pointer to it (nor a history entry), and says so (None: nothing to follow; not Busy, which would
    send its message back to wait, for nobody)."""
    read = joined(store)
    store.links.erase(store.links.get(ANN))
    assert store.links.move(read, "c2", [Entry("contact", "merged")], role="user") is None
    assert store.links.get(ANN) is None and store.history.entries(ANN) == []
    assert _naming(store) == [(WS, "ann@example.com")]                  # (forget's own, deleted last)


def _held_then_found(store) -> JoinClaim:
    """Ann's earlier try failed on c_found (her email and that contact recorded, as forget finds her); a new try
    claimed her join again."""
    claim = store.links.claim(ANN, WS)
    store.links.finish(claim, JoinResult(LinkStatus.FAILED, email="ann@example.com", contact_id="c_found",
                                         reason="Intercom answered 500"), [Entry("join", "failed")])
    again = store.links.claim(ANN, WS)
    assert again is not None
    return again


@pytest.mark.parametrize("step", ["finish", "hold"])
def test_forget_that_read_a_join_under_way_erases_the_contact_it_finished_on(store, step):
    """`bridge forget` read Ann's link while a retried join of hers was under way (holding c_found); the join
    finished on c_survivor (`hold`: held c_survivor, found now) before the erasure wrote: no pointer names her
    afterwards (nor c_found's: the hold, as a finish, leaves the earlier try's contact it no longer holds)."""
    claim = _held_then_found(store)
    stale = store.links.get(ANN)
    if step == "hold":
        assert store.links.hold_found([(claim, FoundContact("c_survivor", "lead", "lead", "No", "x"))]) == [None]
    else:
        store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="lead", email="ann@example.com",
                                             contact_id="c_survivor", contact_role="lead"), [Entry("join", "linked")])
    done = store.links.erase(stale)
    assert store.links.get(ANN) is None and store.history.entries(ANN) == []
    assert _naming(store) == [(WS, "ann@example.com")] and done.contact_id == "c_survivor"


@pytest.mark.parametrize("step", ["finish", "hold"])
def test_a_join_whose_link_a_merge_moved_onto_its_own_contact_meanwhile_finishes(store, monkeypatch, step):
    """Ann's retried join holds c_found; it finishes (`hold`: holds) on c_survivor, which c_found was merged into,
    and the merge's webhook moves her link onto c_survivor meanwhile (in DynamoDB between the refused write and its
    read of the link): the claim is still the join's, and her link on the contact it wants, so it is written, not
    refused as a lost claim (Busy: its message waiting a lease for nothing)."""
    claim = _held_then_found(store)

    def merged() -> None:
        store.links.move(store.links.get(ANN), "c_survivor", [Entry("contact", "merged")], role="lead")
    if type(store.links).__name__ == "DynamoLinks":
        from chalicelib.adapters.dynamo import links as dynamo_links
        from chalicelib.adapters.dynamo.keys import link_key
        read, raced = dynamo_links.get, []

        def merged_then_read(model, key, **kw):
            if key == link_key(ANN) and not raced:
                raced.append(merged())
            return read(model, key, **kw)
        monkeypatch.setattr(dynamo_links, "get", merged_then_read)
    else:
        raced = [merged()]
    if step == "hold":
        assert store.links.hold_found([(claim, FoundContact("c_survivor", "lead", "lead", "No", "x"))]) == [None]
    else:
        store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="lead", email="ann@example.com",
                                             contact_id="c_survivor", contact_role="lead"), [Entry("join", "linked")])
    monkeypatch.undo()
    link = store.links.get(ANN)
    assert len(raced) == 1 and link.contact_id == "c_survivor"
    assert link.status is (LinkStatus.IN_PROGRESS if step == "hold" else LinkStatus.LINKED)
    assert _naming(store) == [(WS, "ann@example.com"), (WS, "c_survivor")]


def test_a_first_join_whose_link_a_merge_moved_meanwhile_keeps_what_the_move_recorded(store):
    """Ann's first join (claimed with Bob's: DynamoDB writes her link whole when it finishes) held c_found; the merge
    of c_found into c_survivor moved her link meanwhile (its webhook found her by the hold's pointer), and the join
    finishes on c_survivor. The contact the move left and the merge's time stay: written whole, the link lost them,
    and a late notification about c_found was judged again as hers (contact_events._left)."""
    bob = PersonRef("42", "8")
    claim, _ = store.links.claim_many([(ANN, WS), (bob, WS)], read={ANN: None, bob: None})
    assert store.links.hold_found([(claim, FoundContact("c_found", "lead", "lead", "No", "x"))]) == [None]
    store.links.move(store.links.get(ANN), "c_survivor", [Entry("contact", "merged")], role="lead", when=200.0,
                     left=True)
    store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="lead", email="ann@example.com",
                                         contact_id="c_survivor", contact_role="lead"), [Entry("join", "linked")])
    link = store.links.get(ANN)
    assert (link.status, link.contact_id, link.left_contacts, link.last_event_at) == (
        LinkStatus.LINKED, "c_survivor", frozenset({"c_found"}), 200.0)
    assert store.links.claim(ANN, WS) is None                     # finished: its claim released
    assert _naming(store) == [(WS, "ann@example.com"), (WS, "c_survivor")]
    assert outcomes(store) == ["merged", "linked"]


_NOTIFIED = {      # what a contact's notification writes on a link under way, and what the link keeps of it
    "deleted": (lambda store, link: store.links.set_contact(link, [Entry("contact", "deleted")], when=200.0,
                                                            state=ContactState.DELETED),
                lambda link: (link.contact_state, link.last_event_at) == (ContactState.DELETED, 200.0)),
    "armed": (lambda store, link: store.links.arm(link, [Entry("contact", "armed")], "signed_up", at=150.0),
              lambda link: (link.armed, link.armed_by, link.armed_at) == (True, "signed_up", 150.0)),
    "held back": (lambda store, link: store.links.hold_back(link, [Entry("contact", "held")], at=150.0,
                                                            by="signed_up"),
                  lambda link: (link.held_at, link.held_by) == (150.0, "signed_up")),
}


@pytest.mark.parametrize("notified", sorted(_NOTIFIED))
def test_a_first_join_keeps_what_a_notification_of_the_contact_it_held_wrote_meanwhile(store, notified):
    """Ann's first join (claimed with Bob's: DynamoDB writes her link whole when it finishes) held c_found, and a
    notification of c_found found her link by the hold's pointer: her contact deleted, a value armed, one held back.
    The join finishes on c_found: what the notification wrote stays (the link written whole dropped each of these)."""
    bob = PersonRef("42", "8")
    claim, _ = store.links.claim_many([(ANN, WS), (bob, WS)], read={ANN: None, bob: None})
    assert store.links.hold_found([(claim, FoundContact("c_found", "lead", "lead", "No", "x"))]) == [None]
    write, kept = _NOTIFIED[notified]
    write(store, store.links.get(ANN))
    store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="lead", email="ann@example.com", contact_id="c_found",
                                         contact_role="lead", baseline="No", baseline_of="x", contact_found=True),
                       [Entry("join", "linked")])
    link = store.links.get(ANN)
    assert (link.status, link.contact_id) == (LinkStatus.LINKED, "c_found") and kept(link)
    assert store.links.claim(ANN, WS) is None                     # finished: its claim released
    assert _naming(store) == [(WS, "ann@example.com"), (WS, "c_found")]


def test_a_join_finishing_after_forget_erased_its_link_writes_nothing(store):
    """The join's claim went with the link: its finish is refused (Busy, its message retried: a join still under way
    links her again, as docs/operating.md's erasure says) and writes no pointer."""
    claim = _held_then_found(store)
    store.links.erase(store.links.get(ANN))
    with pytest.raises(Busy):
        store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="lead", email="ann@example.com",
                                             contact_id="c_survivor", contact_role="lead"), [Entry("join", "linked")])
    assert store.links.get(ANN) is None and store.history.entries(ANN) == []
    assert _naming(store) == [(WS, "ann@example.com")]                  # (forget's own, deleted last)


@pytest.mark.parametrize("store", ["dynamo"], indirect=True)
def test_a_move_landing_while_forget_erases_leaves_no_pointer(store, monkeypatch):
    """DynamoDB reads c1's pointer before the transaction that deletes her link and takes her off it: a merge
    followed between that read and the delete. The erasure still takes every pointer her link has with it, and the
    move is refused or erased with her, whichever comes first."""
    from chalicelib.adapters.dynamo import links as dynamo_links
    from chalicelib.adapters.dynamo.keys import contact_key
    stale, raced = joined(store), []
    read = dynamo_links.get

    def read_then_merged(model, key, **kw):
        found = read(model, key, **kw)
        if key == contact_key(WS, "c1") and not raced:
            raced.append("merging")                  # (the move reads c1's pointer too)
            raced.append(store.links.move(store.links.get(ANN), "c2", [Entry("contact", "merged")]))
        return found
    monkeypatch.setattr(dynamo_links, "get", read_then_merged)
    store.links.erase(stale)
    monkeypatch.undo()
    assert raced[0] == "merging" and raced[1].contact_id == "c2"       # (the merge landed before the delete)
    assert store.links.get(ANN) is None and store.history.entries(ANN) == []
    assert _naming(store) == [(WS, "ann@example.com")]


# --- the small repositories ------------------------------------------------------------------------
def test_a_campaigns_people_are_counted_by_status_its_own_links_only_up_to_the_limit(store):
    """What `settings delete` shows of the people it would leave behind, and whether anyone joined
    before a referral count moved: the campaign's links only (not its referral counts, not another
    campaign's), at most `limit` of them read."""
    joined(store, PersonRef("42", "1"))
    joined(store, PersonRef("42", "2"))
    store.links.claim(PersonRef("42", "3"), WS)                                 # a join still held
    store.links.referrer_contact(PersonRef("42", "1"), "c1", WS)                 # a referrer's count: not a link
    joined(store, PersonRef("43", "1"))
    assert store.links.statuses_in("42", 100) == {LinkStatus.LINKED: 2, LinkStatus.IN_PROGRESS: 1}
    assert sum(store.links.statuses_in("42", 2).values()) == 2
    assert store.links.statuses_in("44", 100) == {}


def test_a_campaigns_people_linked_in_other_workspaces_are_found_past_any_number_of_other_links(store, monkeypatch):
    """What `settings apply` asks before a campaign changes workspace: its people linked elsewhere than the
    workspace named, by workspace, up to `limit` of them, however many of its links come first (failed
    joins, a referrer's count, people linked in the workspace named), read page after page."""
    monkeypatch.setattr("chalicelib.adapters.dynamo.links.LINKS_PAGE", 2)      # pages of 2 links in DynamoDB
    for user in ("1", "2", "3", "4"):
        claim = store.links.claim(PersonRef("42", user), WS)
        store.links.finish(claim, JoinResult(LinkStatus.FAILED, reason="RF answered 404"), [])
    store.links.referrer_contact(PersonRef("42", "5"), "c5", WS)                 # a referrer's count: not a link
    store.links.claim(PersonRef("42", "6"), "ws2")                              # a join still held
    for user, workspace in (("7", WS), ("8", "ws2"), ("9", WS)):
        claim = store.links.claim(PersonRef("42", user), workspace)
        store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="lead", contact_id=f"c{user}"), [])
    joined(store, PersonRef("43", "1"))                                        # another campaign's
    assert store.links.linked_elsewhere("42", "ws2", 100) == ({WS: 2}, True)
    assert store.links.linked_elsewhere("42", "ws2", 1) == ({WS: 1}, True)           # found after 4 failed joins
    assert store.links.linked_elsewhere("42", WS, 100) == ({"ws2": 1}, True)
    assert store.links.linked_elsewhere("42", "ws3", 100) == ({WS: 2, "ws2": 1}, True)
    assert store.links.linked_elsewhere("44", WS, 100) == ({}, True)


def test_a_campaigns_joins_part_way_in_other_workspaces_are_found_past_any_number_of_other_links(store, monkeypatch):
    """What `settings apply` asks right before a campaign changes workspace: its joins part-way elsewhere than the
    workspace named (claimed, whatever the lease; or tried with a contact made, or maybe made, there), by
    workspace, read as `linked_elsewhere` reads; not a join that ended (linked, ignored) or one tried without a
    contact made (none, or one it found), nor another campaign's. A twin counting otherwise would pass a move DynamoDB refuses (or the
    reverse)."""
    monkeypatch.setattr("chalicelib.adapters.dynamo.links.LINKS_PAGE", 2)      # pages of 2 links in DynamoDB
    ended = {"1": JoinResult(LinkStatus.FAILED, reason="RF answered 404"),                  # no contact: not
             "2": JoinResult(LinkStatus.LINKED, kind="lead", contact_id="c2"),
             "3": JoinResult(LinkStatus.IGNORED, kind="lead", reason="leads.action is nothing"),
             "4": JoinResult(LinkStatus.FAILED, contact_id="c4", reason="tag refused"),       # its contact made
             "5": JoinResult(LinkStatus.WAITING, uncertain_since=1.0, reason="no answer"),    # maybe made
             "8": JoinResult(LinkStatus.FAILED, contact_id="c8", contact_found=True,         # found there: not
                             reason="tag refused")}
    for user, result in ended.items():
        store.links.finish(store.links.claim(PersonRef("42", user), WS), result, [])
    store.links.claim(PersonRef("42", "6"), "ws2")                              # a join still held
    store.links.claim(PersonRef("42", "7"), WS, lease=-1)                       # its worker died: lease over
    store.links.claim(PersonRef("43", "1"), WS)                                 # another campaign's
    assert store.links.joining_elsewhere("42", "ws2", 100) == ({WS: 3}, True)
    assert store.links.joining_elsewhere("42", WS, 100) == ({"ws2": 1}, True)
    assert store.links.joining_elsewhere("42", "ws3", 2) == ({WS: 2}, True)          # found after 3 ended joins
    assert store.links.joining_elsewhere("44", WS, 100) == ({}, True)


def test_a_campaigns_joined_people_are_read_past_pages_with_their_email_and_no_unfinished_join(store, monkeypatch):
    """What doctor matches a refused join's digests with: the campaign's applied joins (linked or ignored),
    their RF id and email, however many pages; not a failed or held join, a referrer's count, another's."""
    monkeypatch.setattr("chalicelib.adapters.dynamo.links.LINKS_PAGE", 2)      # pages of 2 links in DynamoDB
    joined(store, PersonRef("42", "1"))
    claim = store.links.claim(PersonRef("42", "2"), WS)
    store.links.finish(claim, JoinResult(LinkStatus.FAILED, email="bob@example.com", reason="RF answered 404"), [])
    store.links.claim(PersonRef("42", "3"), WS)                                 # a join still held
    store.links.referrer_contact(PersonRef("42", "4"), "c4", WS)                 # a referrer's count: not a link
    claim = store.links.claim(PersonRef("42", "5"), WS)
    store.links.finish(claim, JoinResult(LinkStatus.IGNORED, kind="lead", reason="leads.action is nothing"), [])
    joined(store, PersonRef("43", "6"))                                        # another campaign's
    people, complete = store.links.joined_people("42")
    assert sorted(people) == [("1", "ann@example.com"), ("5", None)] and complete
    assert store.links.joined_people("44") == ([], True)


def test_a_campaigns_joined_people_past_the_cap_are_the_same_links_in_the_twin_as_in_dynamodb(store):
    """joined_people reads the campaign's first `scan_limit` links as DynamoDB orders them (by sort key,
    PERSON#<id> as text: "10" before "9"), not in the order they were written. A user would see: a test on
    the twin says doctor resolves a wrong-secret refusal of a campaign past 2,000 links while the deployed
    stack (DynamoDB) reads other links and keeps its 'fixed?' warning (or the other way round)."""
    nine_written_before_ten(store)
    assert store.links.joined_people("42", scan_limit=1) == ([], False)         # PERSON#10 only: not joined
    assert store.links.joined_people("42", scan_limit=2)[0] == [("9", "ann@example.com")]
    assert store.links.joined_people("42", scan_limit=3) == ([("9", "ann@example.com")], True)


def nine_written_before_ten(store) -> None:
    """Campaign 42: RF user 9 linked in WS, written first; then 10's join failed (PERSON#10 sorts first)."""
    joined(store, PersonRef("42", "9"))
    claim = store.links.claim(PersonRef("42", "10"), WS)
    store.links.finish(claim, JoinResult(LinkStatus.FAILED, reason="RF answered 404"), [])


def test_a_campaigns_capped_counts_read_the_links_dynamodb_reads_first_in_the_twin_too(store):
    """`settings delete`'s and a move's counts stop at a limit: the twin stops at the same links as DynamoDB
    (by sort key), or a test on the twin passes where the deployed stack counts other people."""
    nine_written_before_ten(store)
    assert store.links.statuses_in("42", 1) == {LinkStatus.FAILED: 1}
    assert store.links.linked_elsewhere("42", "ws2", 1, scan_limit=1) == ({}, False)
    assert store.links.linked_elsewhere("42", "ws2", 1, scan_limit=2) == ({WS: 1}, True)


def test_a_campaigns_ignored_joins_are_counted_by_kind_past_any_number_of_other_links(store, monkeypatch):
    """What `settings apply` asks when an action turns from nothing to creating: the joins ignored under
    nothing (a backfill sends them), by kind, up to `limit`, however many other links come first."""
    monkeypatch.setattr("chalicelib.adapters.dynamo.links.LINKS_PAGE", 2)      # pages of 2 links in DynamoDB
    for user in ("1", "2", "3"):
        joined(store, PersonRef("42", user))
    for user, kind in (("4", "lead"), ("5", "referrer"), ("6", "lead"), ("7", None)):
        claim = store.links.claim(PersonRef("42", user), WS)
        store.links.finish(claim, JoinResult(LinkStatus.IGNORED, kind=kind, reason="leads.action is nothing"), [])
    claim = store.links.claim(PersonRef("43", "1"), WS)                        # another campaign's
    store.links.finish(claim, JoinResult(LinkStatus.IGNORED, kind="lead", reason="leads.action is nothing"), [])
    assert store.links.ignored_in("42", 100) == ({"lead": 2, "referrer": 1, None: 1}, True)
    assert sum(store.links.ignored_in("42", 2)[0].values()) == 2                  # found after 3 linked people
    assert store.links.ignored_in("44", 100) == ({}, True)


def test_the_reads_of_a_campaigns_links_stop_after_scan_limit_links_and_say_so(store, monkeypatch):
    """`linked_elsewhere` and `ignored_in` read no more than `scan_limit` links (whatever they find): with
    fewer than `limit` found there, the answer says it is not complete; read to the end, or `limit` found,
    it is."""
    monkeypatch.setattr("chalicelib.adapters.dynamo.links.LINKS_PAGE", 2)      # pages of 2 links in DynamoDB
    for user in ("1", "2", "3", "4", "5"):
        claim = store.links.claim(PersonRef("42", user), WS)
        store.links.finish(claim, JoinResult(LinkStatus.FAILED, reason="RF answered 404"), [])
    assert store.links.linked_elsewhere("42", "ws2", 100, scan_limit=3) == ({}, False)
    assert store.links.ignored_in("42", 100, scan_limit=3) == ({}, False)
    assert store.links.linked_elsewhere("42", "ws2", 100, scan_limit=6) == ({}, True)
    assert store.links.ignored_in("42", 100, scan_limit=6) == ({}, True)
    for user in ("6", "7", "8", "9", "10"):
        claim = store.links.claim(PersonRef("43", user), WS)
        store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="lead", contact_id=f"c{user}"), [])
    assert store.links.linked_elsewhere("43", "ws2", 2, scan_limit=3) == ({WS: 2}, True)    # found before the cap
    assert store.links.linked_elsewhere("43", "ws2", 100, scan_limit=3) == ({WS: 3}, False)


def test_the_first_entries_of_a_ledger_are_read_without_the_rest(store):
    from chalicelib.ports.store import LedgerEntry
    seed_ledger(store.sync, "42", [LedgerEntry(f"c{i}", "missing_field", run=1) for i in range(5)])
    assert [e.contact_id for e in store.sync.ledger("42", 3)] == ["c0", "c1", "c2"]
    assert len(list(store.sync.ledger("42"))) == 5

def test_the_campaigns_of_a_workspace_are_listed(store):
    assert store.settings.campaigns(WS) == set()
    store.settings.put("42", {"campaign_id": "42"}, WS)
    store.settings.put("43", {"campaign_id": "43"}, WS)
    store.settings.put("42", {"campaign_id": "42", "v": 2}, WS)
    store.settings.put("44", {"campaign_id": "44"}, "ws2")
    assert store.settings.campaigns(WS) == {"42", "43"} and store.settings.campaigns("ws2") == {"44"}


def test_deleted_settings_stay_in_the_campaigns_index_for_forget_but_their_document_is_gone(store):
    """`forget` and `explain` visit every campaign ever applied (its links, history and sync ledger are kept);
    what lists the workspace's campaigns now (`workspace list`, doctor) reads the documents."""
    store.settings.put("42", {"campaign_id": "42"}, WS)
    store.settings.put("43", {"campaign_id": "43"}, WS)
    assert store.settings.delete("43") and not store.settings.delete("43")
    assert store.settings.campaigns(WS) == {"42", "43"}
    assert store.settings.documents(store.settings.campaigns(WS)) == {"42": {"campaign_id": "42"}}


def test_settings_are_versioned_and_read_in_batches(store):
    assert store.settings.put("42", {"campaign_id": "42"}, WS) == 1
    assert store.settings.put("42", {"campaign_id": "42", "v": 2}, WS) == 2
    stored = store.settings.get("42")
    assert (stored.version, stored.workspace, stored.document) == (2, WS, {"campaign_id": "42", "v": 2})
    assert store.settings.get("9") is None
    assert store.settings.documents(["42", "9"]) == {"42": {"campaign_id": "42", "v": 2}}
    assert store.connections.workspaces() == {WS}


def test_settings_applied_again_after_a_delete_never_repeat_a_version(store):
    """`settings delete` removed the item holding the version: the next apply said "version 1" again, and doctor
    and history could not tell the new settings from the deleted ones. The last version outlives the delete."""
    assert store.settings.put("42", {"campaign_id": "42"}, WS) == 1
    assert store.settings.put("42", {"campaign_id": "42", "v": 2}, WS) == 2
    assert store.settings.delete("42") and not store.settings.delete("42")
    assert store.settings.get("42") is None and store.settings.documents(["42"]) == {}      # gone as before
    assert store.settings.put("42", {"campaign_id": "42", "v": 3}, WS) == 3
    assert store.settings.get("42").version == 3
    assert store.settings.delete("42") and store.settings.put("42", {"campaign_id": "42"}, WS) == 4
    assert store.settings.put("43", {"campaign_id": "43"}, WS) == 1                       # per campaign


def test_a_settings_write_reads_the_versions_it_follows_in_one_strongly_consistent_batch(store):
    """Each `settings apply` and `settings delete` reads the campaign's last version from three items (the settings,
    their copy where a version rolled back to reads and writes them, the last deleted version): one BatchGetItem,
    strongly consistent (a version applied a moment before counts), not three GetItems. The version rolled back to
    wrote a later one in its partition: the next is past it. (DynamoDB's calls counted; the twin keeps no calls.)"""
    from infra.local.counting import AwsCallRecorder
    if isinstance(store, MemoryStore):
        pytest.skip("the in-memory twin makes no calls")
    from chalicelib.adapters.dynamo.keys import rollback_settings_key
    from chalicelib.adapters.dynamo.models import SettingsItem
    store.settings.put("42", {"campaign_id": "42"}, WS)
    SettingsItem(*rollback_settings_key("42"), document={"campaign_id": "42", "rolled": True}, workspace=WS,
                 version=5, updated_at=iso(0)).save()          # a version rolled back to applied v5 meanwhile
    recorder = AwsCallRecorder()
    with recorder.installed():
        assert store.settings.put("42", {"campaign_id": "42", "v": 6}, WS) == 6
        assert store.settings.delete("42")
    reads = [c for c in recorder.calls if c.is_dynamodb_read]
    assert [c.operation for c in reads] == ["BatchGetItem", "BatchGetItem"], [c.name for c in reads]
    assert all(asked.get("ConsistentRead") and len(asked["Keys"]) == 3
               for c in reads for asked in c.params["RequestItems"].values()), reads
    assert store.settings.put("42", {"campaign_id": "42"}, WS) == 7


def test_the_count_backfill_settings_owe_is_kept_with_them_and_goes_only_when_the_backfill_it_began_with_ends(store):
    from chalicelib.ports import CountBackfill
    owed, later = CountBackfill("custom_attributes.n", "2026-01-01T00:00:00.000Z"), \
        CountBackfill("custom_attributes.n2", "2026-01-02T00:00:00.000Z")
    store.settings.put("42", {"campaign_id": "42"}, WS)                   # as settings stored before the mark
    assert store.settings.get("42").count_backfill is None
    assert store.settings.count_backfilled("42", owed) is False and store.settings.count_backfilled("9", owed) is False
    store.settings.put("42", {"campaign_id": "42"}, WS, owed)
    assert store.settings.get("42").count_backfill == owed
    store.settings.put("42", {"campaign_id": "42"}, WS, later)            # settings applied during a backfill
    assert store.settings.count_backfilled("42", owed) is False            # the backfill began before: stays
    assert store.settings.get("42").count_backfill == later
    assert store.settings.count_backfilled("42", later) is True
    stored = store.settings.get("42")
    assert (stored.count_backfill, stored.version, stored.document) == (None, 3, {"campaign_id": "42"})
    assert store.settings.count_backfilled("42", later) is False


def test_a_reconnect_keeps_what_it_is_not_given(store, clock):
    store.connections.put_workspace("ws2", secrets={"token", "client-secret"}, api_base="https://eu")
    store.connections.put_workspace("ws2", secrets={"token"})
    conn = store.connections.workspace("ws2")
    assert (conn.status, conn.api_base, conn.secrets) == ("active", "https://eu", {"token", "client-secret"})
    assert store.connections.workspace("nope") is None and store.connections.rf() is None
    store.connections.put_rf(secrets={"token"})
    stored = iso(clock())
    clock.now += 60
    store.connections.put_rf(secrets={"webhook-secret"})
    assert store.connections.rf().secrets == {"token", "webhook-secret"}
    # When the token was stored (doctor: letters that failed with the one before; a replay: when every worker has
    # read it), not the webhook secret
    assert store.connections.rf().token_at == stored


def test_the_token_app_is_kept_until_another_is_given_or_a_disconnect_and_an_apps_mark_can_be_removed(store):
    store.connections.put_workspace("ws2", secrets={"token", "client-secret"}, token_app="private")
    store.connections.put_workspace("ws2", secrets={"oauth"})
    assert store.connections.workspace("ws2").token_app == "private"
    store.connections.put_workspace("ws2", secrets={"token"}, token_app="oauth")
    store.connections.unmark("ws2", {"client-secret"})
    store.connections.unmark("never", {"client-secret"})                 # no connection is made up
    conn = store.connections.workspace("ws2")
    assert (conn.secrets, conn.token_app) == ({"token", "oauth"}, "oauth") and store.connections.workspace("never") is None
    store.connections.disconnect_workspace("ws2")
    conn = store.connections.workspace("ws2")
    assert (conn.secrets, conn.token_app) == ({"oauth"}, None)


def test_an_apps_mark_added_changes_nothing_else_and_makes_up_no_connection(store):
    """A relabel (`bridge workspace oauth-app`) marks a disconnected workspace's app without reviving it."""
    store.connections.put_workspace("ws2", secrets={"token", "client-secret"}, api_base="https://eu")
    store.connections.disconnect_workspace("ws2")
    store.connections.mark("ws2", {"oauth"})
    store.connections.mark("never", {"oauth"})
    conn = store.connections.workspace("ws2")
    assert (conn.status, conn.api_base, conn.secrets) == ("disconnected", "https://eu", {"client-secret", "oauth"})
    assert store.connections.workspace("never") is None


@pytest.mark.parametrize("meanwhile", [
    lambda c: c.put_workspace("ws2", secrets={"token"}, token_app="private"),     # the token replaced
    lambda c: c.put_workspace("ws2", secrets={"token"}),                          # a secret set: the token
    lambda c: c.disconnect_workspace("ws2"),
    lambda c: c.unmark("ws2", {"oauth"}),
])
def test_an_apps_mark_is_removed_only_from_the_record_as_it_was_read(store, meanwhile):
    store.connections.put_workspace("ws2", secrets={"client-secret", "oauth"}, token_app="oauth")
    read = store.connections.workspace("ws2")
    assert store.connections.unmark("ws2", {"client-secret"}, read=read) is True
    store.connections.put_workspace("ws2", secrets={"client-secret"})
    read = store.connections.workspace("ws2")
    meanwhile(store.connections)
    now = store.connections.workspace("ws2")
    assert store.connections.unmark("ws2", {"client-secret"}, read=read) is False    # changed since it was read
    assert store.connections.workspace("ws2") == now
    assert store.connections.unmark("never", {"client-secret"}, read=read) is False
    assert store.connections.unmark("ws2", {"client-secret"}, read=now) is True
    assert "client-secret" not in store.connections.workspace("ws2").secrets


def test_a_disconnect_keeps_the_workspace_known_without_its_token_and_a_reconnect_revives_it(store):
    assert store.connections.disconnect_workspace("never") is False
    assert store.connections.workspace("never") is None
    store.connections.put_workspace("ws2", secrets={"token", "client-secret"}, api_base="https://eu")
    assert store.connections.disconnect_workspace("ws2") is True
    conn = store.connections.workspace("ws2")
    assert (conn.status, conn.api_base, conn.secrets) == ("disconnected", "https://eu", {"client-secret"})
    assert "ws2" in store.connections.workspaces()
    store.connections.put_workspace("ws2", secrets={"token"})
    conn = store.connections.workspace("ws2")
    assert (conn.status, conn.api_base, conn.secrets) == ("active", "https://eu", {"token", "client-secret"})


def test_a_workspaces_attribute_list_is_kept_on_its_connection_without_touching_the_connection(store, clock):
    """What a cold worker adopts instead of reading Intercom's attribute list (runtime.attributes)."""
    listed = {"custom_attributes.visits": {"data_type": "integer"},
              "custom_attributes.old": {"data_type": "string", "archived": True, "api_writable": False}}
    store.connections.keep_attributes("never", AttributeList(listed, clock()))
    assert store.connections.workspace("never") is None                # no connection is made up
    store.connections.put_workspace("ws2", secrets={"token", "client-secret"}, api_base="https://eu")
    assert store.connections.workspace("ws2").attribute_list is None
    store.connections.keep_attributes("ws2", AttributeList(listed, clock()))
    conn = store.connections.workspace("ws2")
    assert (conn.status, conn.api_base, conn.secrets) == ("active", "https://eu", {"token", "client-secret"})
    assert conn.attribute_list == AttributeList(listed, clock())
    # A list read earlier (a slow container) never replaces one read later; one read since does.
    older = {"custom_attributes.visits": {"data_type": "string"}}
    store.connections.keep_attributes("ws2", AttributeList(older, clock() - 1))
    assert store.connections.workspace("ws2").attribute_list == AttributeList(listed, clock())
    store.connections.keep_attributes("ws2", AttributeList(older, clock() + 1))
    assert store.connections.workspace("ws2").attribute_list == AttributeList(older, clock() + 1)
    # One stamped ahead of a read by more than clocks differ (a writer's wrong clock) is replaced by it;
    # one a moment ahead is not.
    store.connections.keep_attributes("ws2", AttributeList(older, clock() + 3600))
    assert store.connections.workspace("ws2").attribute_list == AttributeList(older, clock() + 3600)
    store.connections.keep_attributes("ws2", AttributeList(listed, clock() + 3598))
    assert store.connections.workspace("ws2").attribute_list == AttributeList(older, clock() + 3600)
    store.connections.keep_attributes("ws2", AttributeList(older, clock() + 1))
    assert store.connections.workspace("ws2").attribute_list == AttributeList(older, clock() + 1)
    # A disconnect and a reconnect change the status and token, and only them.
    store.connections.disconnect_workspace("ws2")
    conn = store.connections.workspace("ws2")
    assert (conn.status, conn.secrets, conn.attribute_list.attributes) == ("disconnected", {"client-secret"}, older)
    store.connections.keep_attributes("ws2", AttributeList(listed, clock() + 2))
    conn = store.connections.workspace("ws2")
    assert conn.attribute_list == AttributeList(listed, clock() + 2) and conn.status == "disconnected"        # keeping a list reconnects nothing
    store.connections.put_workspace("ws2", secrets={"token"})
    assert store.connections.workspace("ws2").attribute_list == AttributeList(listed, clock() + 2)


def test_an_oauth_state_is_used_once(store, clock):
    assert store.connections.use_oauth_state("n-1", clock() + 600) is True
    assert store.connections.use_oauth_state("n-1", clock() + 600) is False
    assert store.connections.use_oauth_state("n-2", clock() + 600) is True


def test_a_used_oauth_state_records_what_its_callback_did_once_and_stays_used(store, clock):
    from chalicelib.domain.oauth import Outcome
    expires = int(clock()) + 600
    store.connections.use_oauth_state("n-1", expires)
    assert store.connections.oauth_state_outcome("n-1") is None                 # its callback still runs
    store.connections.end_oauth_state("n-1", expires, Outcome(int(clock()), "ws1", "Acme"))
    store.connections.end_oauth_state("n-1", expires, Outcome(int(clock()) + 5))    # once: the first stands
    assert store.connections.oauth_state_outcome("n-1") == Outcome(int(clock()), "ws1", "Acme")
    assert store.connections.use_oauth_state("n-1", expires) is False           # still used
    store.connections.use_oauth_state("n-2", expires)
    store.connections.end_oauth_state("n-2", expires, Outcome(int(clock()), stopped=True))    # failed midway
    assert store.connections.oauth_state_outcome("n-2") == Outcome(int(clock()), stopped=True)
    store.connections.end_oauth_state("n-never", expires, Outcome(int(clock())))    # a state never used: not kept
    assert store.connections.oauth_state_outcome("n-never") is None
    assert store.connections.use_oauth_state("n-never", expires) is True


def test_an_oauth_ticket_is_spent_once_and_never_after_it_expires(store, clock):
    from chalicelib.ports import OAuthTicket
    expires = int(clock()) + 1800
    store.connections.add_oauth_ticket(OAuthTicket("t-any", None, expires))
    store.connections.add_oauth_ticket(OAuthTicket("t-ws1", "ws1", expires))
    store.connections.add_oauth_ticket(OAuthTicket("t-late", None, expires))
    with pytest.raises(ValueError):
        store.connections.add_oauth_ticket(OAuthTicket("t-any", "ws2", expires))     # never replaced
    assert store.connections.spend_oauth_ticket("t-never", clock()) is None
    for _ in range(2):                       # reading one (the start's page) never spends it
        assert store.connections.oauth_ticket("t-any", clock()) == OAuthTicket("t-any", None, expires)
    assert store.connections.oauth_ticket("t-never", clock()) is None
    assert store.connections.spend_oauth_ticket("t-any", clock()) == OAuthTicket("t-any", None, expires)
    assert store.connections.oauth_ticket("t-any", clock()) is None                    # spent
    assert store.connections.spend_oauth_ticket("t-any", clock()) is None               # once
    clock.now = expires - 1
    assert store.connections.spend_oauth_ticket("t-ws1", clock()) == OAuthTicket("t-ws1", "ws1", expires)
    clock.now = expires                      # expired, though still kept until the table's TTL removes it
    assert store.connections.oauth_ticket("t-late", clock()) is None
    assert store.connections.spend_oauth_ticket("t-late", clock()) is None


def test_the_cursor_and_the_rate_windows(store):
    assert store.cursor.get() is None
    store.cursor.set("x#1")
    assert store.cursor.get() == "x#1"
    store.cursor.set("1790000000", "changes#ws1")                      # named positions are kept apart
    assert (store.cursor.get(), store.cursor.get("changes#ws1"), store.cursor.get("changes#ws2")) == (
        "x#1", "1790000000", None)
    store.cursor.set(None)
    assert store.cursor.get() is None and store.cursor.get("changes#ws1") == "1790000000"
    store.cursor.set("change-2", "changes#ws1#back")                  # a rule change newer than the one
    assert not store.cursor.clear("changes#ws1#back", "change-1")       # a search looked back for: kept
    assert store.cursor.clear("changes#ws1#back", "change-2") and store.cursor.get("changes#ws1#back") is None
    assert not store.cursor.clear("changes#ws1#back", "change-2")


# --- the shared rate budget (adapters/ratelimit.py, domain/budget.py) --------------------------------
def test_a_slice_hands_out_its_cap_in_blocks_and_never_more(store):
    got = [store.rates.reserve("rf", 7, want, cap=10, ttl=600) for want in (4, 4, 4, 1)]
    assert got == [4, 4, 2, 0]                       # the third asks for 4 and gets the last 2
    assert store.rates.reserve("rf", 8, 3, cap=10, ttl=600) == 3          # the next slice is new
    assert store.rates.reserve("intercom#ws1", 7, 10, cap=10, ttl=600) == 10   # budgets are apart
    assert store.rates.used("rf", [6, 7, 8, 9]) == 13                   # handed out, not asked for


def test_callers_in_parallel_never_get_more_than_the_cap_between_them(store, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from tests.support.moto_atomic import atomic_dynamodb
    atomic_dynamodb(monkeypatch)             # DynamoDB's one-item atomicity, which moto lacks
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda want: store.rates.reserve("rf", 1, want, cap=25, ttl=600), [3, 5, 2, 7] * 4))
    assert sum(got) == 25 and all(0 <= g <= w for g, w in zip(got, [3, 5, 2, 7] * 4))


def test_a_429_pauses_everyone_and_only_the_first_of_a_window_lowers_the_share(store):
    from chalicelib.domain.budget import BudgetState
    assert store.rates.state("rf") == BudgetState()
    assert store.rates.pause("rf", until=1015.0, now=1000.0, share=0.5, strikes=1, window=60) is True
    # more 429s of the same pause (calls that were already on their way): a longer pause, no lower share
    assert store.rates.pause("rf", until=1020.0, now=1001.0, share=0.25, strikes=2, window=60) is False
    assert store.rates.pause("rf", until=1016.0, now=1002.0, share=0.25, strikes=2, window=60) is False
    state = store.rates.state("rf")
    assert (state.pause_until, state.share, state.lowered_at, state.strikes) == (1020.0, 0.5, 1000.0, 1)
    # a 429 after the pause ended, in the window of the one that lowered the share: the same strike, a new pause
    assert store.rates.pause("rf", until=1045.0, now=1030.0, share=0.3, strikes=2, window=60) is False
    state = store.rates.state("rf")
    assert (state.pause_until, state.share, state.lowered_at, state.strikes) == (1045.0, 0.5, 1000.0, 1)
    # a 429 after the pause and the window ended starts a new one
    assert store.rates.pause("rf", until=1200.0, now=1100.0, share=0.3, strikes=2, window=60) is True
    assert (store.rates.state("rf").share, store.rates.state("rf").strikes) == (0.3, 2)


def test_a_block_opens_the_circuit_then_one_probe_and_a_success_close_it(store):
    store.rates.block("rf", until=1900.0, now=1000.0, reason="IP blocked")
    store.rates.block("rf", until=2000.0, now=1100.0, reason="IP blocked again")
    state = store.rates.state("rf")
    assert state.blocked and (state.blocked_until, state.blocked_since, state.blocked_reason) == (
        2000.0, 1000.0, "IP blocked again")
    assert store.rates.probe("rf", now=1999.0, until=2060.0) is False           # not yet
    assert [store.rates.probe("rf", now=2000.0, until=2060.0) for _ in range(2)] == [True, False]
    assert store.rates.probe("rf", now=2061.0, until=2120.0) is True            # the prober died: another
    store.rates.unblock("rf")
    assert not store.rates.state("rf").blocked and store.rates.probe("rf", now=3000.0, until=3060.0) is False


# --- contact sync: runs and the ledger --------------------------------------------------------------
def test_one_sync_run_at_a_time_numbered_and_each_page_checkpointed_once(store, clock):
    from chalicelib.ports.store import LedgerEntry
    run = store.sync.start("42", "full", "segment s1", clock())
    assert (run.number, run.status, run.page) == (1, "running", 0)
    assert store.sync.start("42", "full", "segment s1", clock()) is None          # one at a time
    _, took = store.sync.claim_page("42", 1, 0, "w1", clock(), lease=60)
    assert took
    with pytest.raises(Busy):                                                     # another worker waits
        store.sync.claim_page("42", 1, 0, "w2", clock(), lease=60)
    assert store.sync.checkpoint("42", 1, 0, "w1", clock(), cursor="c1", counts={"enrolled": 3}, total=5)
    assert not store.sync.checkpoint("42", 1, 0, "w1", clock(), cursor="c1", counts={"enrolled": 3})  # once
    run, took = store.sync.claim_page("42", 1, 0, "w2", clock())                 # a redelivered page 0
    assert not took and (run.page, run.cursor, run.counts, run.total) == (1, "c1", {"enrolled": 3}, 5)
    _, took = store.sync.claim_page("42", 1, 1, "w2", clock(), lease=60)
    store.sync.release("42", 1, 1, "w2")
    _, took = store.sync.claim_page("42", 1, 1, "w3", clock(), lease=60)          # released: free at once
    assert took
    clock.now += 61
    _, took = store.sync.claim_page("42", 1, 1, "w4", clock())                   # w3 died: its lease ran out
    before = store.sync.run("42").updated_at
    clock.now += 5
    store.sync.add_counts("42", 1, {"enrolled": 1, "enrolled_no_link": 1})      # a webhook's: apart, no progress
    assert store.sync.run("42").updated_at == before
    assert store.sync.checkpoint("42", 1, 1, "w4", clock(), cursor=None, counts={"already_in_campaign": 2,
                                                                                 "enrolled_no_link": 1},
                                 finished=True)
    done = store.sync.run("42")
    assert (done.status, done.counts, done.done) == ("done", {"enrolled": 3, "already_in_campaign": 2,
                                                              "enrolled_no_link": 1}, 6)
    assert done.by_webhook == {"enrolled": 1, "enrolled_no_link": 1}
    second = store.sync.start("42", "catch-up", "segment s1", clock(), since=1000.0)
    assert (second.number, second.kind, second.since) == (2, "catch-up", 1000.0)
    assert store.sync.run("42", 1).counts == {"enrolled": 3, "already_in_campaign": 2, "enrolled_no_link": 1}
    assert (store.sync.run("42", 1).by_webhook, second.by_webhook) == ({"enrolled": 1, "enrolled_no_link": 1}, {})
    store.sync.add_counts("42", 1, {"enrolled": 1})     # a webhook read run 1 as the latest, then run 2 started:
    assert (store.sync.run("42", 1).by_webhook, store.sync.run("42").by_webhook) == (
        {"enrolled": 1, "enrolled_no_link": 1}, {})                                                   # left out
    assert store.sync.run("42").number == 2 and store.sync.run("43") is None

    store.sync.intend("42", [LedgerEntry("c1", "creating", email="a@x.io", run=1),
                             LedgerEntry("c2", "creating", email="b@x.io", run=1)])
    seed_ledger(store.sync, "42", [LedgerEntry("c1", "enrolled", email="a@x.io", rf_user_id="7", url="u", run=1,
                                               seen_run=1, written_back=True, link_attribute="custom_attributes.link")])
    got = store.sync.entries("42", ["c1", "c2", "c3"])
    assert (got["c1"].outcome, got["c1"].rf_user_id, got["c1"].written_back, got["c1"].final) == ("enrolled", "7",
                                                                                                 True, True)
    assert (got["c1"].link_attribute, got["c2"].link_attribute) == ("custom_attributes.link", None)
    assert got["c2"].outcome == "creating" and not got["c2"].final and "c3" not in got
    assert store.sync.entries("42", ["c1", "c3"], consistent=True) == {"c1": got["c1"]}
    assert [e.contact_id for e in store.sync.ledger("42")] == ["c1", "c2"]
    store.sync.claim_page("42", 2, 0, "w1", clock())
    assert store.sync.checkpoint("42", 2, 0, "w1", clock(), cursor=None, counts={}, message="user limit")
    assert (store.sync.run("42").status, store.sync.run("42").message) == ("stopped", "user limit")


def test_past_catch_up_runs_and_full_runs_a_newer_one_replaced_expire_the_latest_full_run_is_kept(store, clock):
    """Ongoing sync starts a catch-up every 15 minutes: each copied the run before to an item of its own, kept for
    ever. A past catch-up run, and a full run once a newer full run started, expire PAST_RUN_DAYS after (the table's
    TTL: read as gone from then); the latest full run does not, and each run names it (no walk back needed)."""
    from chalicelib.ports.store import PAST_RUN_DAYS

    def ran(kind):
        run = store.sync.start("42", kind, "users", clock())
        store.sync.claim_page("42", run.number, 0, "w", clock())
        assert store.sync.checkpoint("42", run.number, 0, "w", clock(), cursor=None, counts={}, finished=True)
        clock.now += 900
        return run
    began = clock()
    runs = [ran(kind) for kind in ("full", "catch-up", "catch-up", "full", "catch-up", "catch-up")]
    assert [r.full_run for r in runs] == [1, 1, 1, 4, 4, 4] == [store.sync.run("42", n).full_run for n in range(1, 7)]
    clock.now = began + 2 * 900 + PAST_RUN_DAYS * 86400 - 1     # run 2 was kept apart when run 3 began
    assert all(store.sync.run("42", n) for n in range(1, 7))                  # kept for days
    clock.now = began + 5 * 900 + PAST_RUN_DAYS * 86400         # run 5 was kept apart when run 6 began
    assert [n for n in range(1, 7) if store.sync.run("42", n)] == [4, 6]       # the latest full one, the latest
    if not isinstance(store, MemoryStore):                                     # (DynamoDB deletes them)
        from chalicelib.adapters.dynamo.keys import sync_run_key
        from chalicelib.adapters.dynamo.models import SyncRunItem, get
        assert [bool(get(SyncRunItem, sync_run_key("42", n)).expires_at) for n in range(1, 6)] == [
            True, True, True, False, True]


def _just_after_the_start_s_read(store, meanwhile, every: bool = False) -> ContextManager[None]:
    """Meanwhile, `meanwhile()` runs just after a sync start's read of the latest run, in DynamoDB (once, and not
    after a read of its own; `every`: after each try's); the twin's start is one step, nothing lands inside it: it
    runs now, before."""
    if isinstance(store, MemoryStore):
        meanwhile()
        return contextlib.nullcontext()
    from chalicelib.adapters.dynamo import sync as dynamo_sync
    return after(dynamo_sync, "get", meanwhile, once=not every)

@pytest.mark.parametrize("first", ["full", "catch-up"])
def test_two_sync_starts_at_once_one_wins_and_only_the_winner_says_which_full_run_expires(store, clock, first):
    """`bridge sync start` (full) and the scheduled catch-up both read full run 1 as the latest, done: one run 2
    starts. The loser's view of run 1 (a catch-up keeps it, the latest full run; a full run lets it expire) must not
    land: the latest full run expiring under its catch-ups, or a replaced one kept for ever. In DynamoDB the other
    start runs in the loser's read of the latest run (its read, then all of the other's writes, then its own)."""
    from chalicelib.ports.store import PAST_RUN_DAYS
    store.sync.start("42", "full", "users", clock())
    store.sync.claim_page("42", 1, 0, "w", clock())
    assert store.sync.checkpoint("42", 1, 0, "w", clock(), cursor=None, counts={}, finished=True)
    clock.now += 60
    second = "catch-up" if first == "full" else "full"
    began, raced = clock(), []
    with _just_after_the_start_s_read(store, lambda: raced.append(store.sync.start("42", first, "users", clock()))):
        lost = store.sync.start("42", second, "users", clock())
    [won] = raced
    assert lost is None and (won.number, won.kind, won.full_run) == (2, first, 2 if first == "full" else 1)
    assert (store.sync.run("42").number, store.sync.run("42").kind) == (2, first)
    clock.now = began + PAST_RUN_DAYS * 86400
    assert (store.sync.run("42", 1) is None) == (first == "full")     # replaced: gone; the latest full run: kept
    assert store.sync.run("42", 2) is not None


def _calls(monkeypatch) -> list[str]:
    """DynamoDB's operations the store calls from now on, in order."""
    from chalicelib.adapters.dynamo.models import HistoryItem
    client, calls = HistoryItem._get_connection().connection.client, []
    call = client._make_api_call

    def counted(operation, kwargs):
        calls.append(operation)
        return call(operation, kwargs)
    monkeypatch.setattr(client, "_make_api_call", counted)
    return calls

def test_a_sync_start_that_replaces_a_full_run_and_dies_just_after_its_write_still_lets_the_replaced_run_expire(
        store, clock, monkeypatch):
    """Full run 1, then catch-up 2 (run 1 kept apart, no expiry: the latest full run), then a full run 3 replaces it:
    run 1's expiry goes in the start's one write, so a worker killed just after it cannot leave run 1 kept for ever."""
    from chalicelib.ports.store import PAST_RUN_DAYS
    for kind in ("full", "catch-up"):
        run = store.sync.start("42", kind, "users", clock())
        store.sync.claim_page("42", run.number, 0, "w", clock())
        assert store.sync.checkpoint("42", run.number, 0, "w", clock(), cursor=None, counts={}, finished=True)
    began = clock()
    calls = _calls(monkeypatch) if not isinstance(store, MemoryStore) else []
    with _killed_after_its_first_write(store, monkeypatch):
        store.sync.start("42", "full", "users", clock())
    assert calls in ([], ["GetItem", "TransactWriteItems"])       # one read, one write (was a write more)
    assert (store.sync.run("42").number, store.sync.run("42").kind) == (3, "full")
    clock.now = began + PAST_RUN_DAYS * 86400
    assert [n for n in (1, 2, 3) if store.sync.run("42", n)] == [3]          # the replaced full run, the catch-up: gone


@pytest.mark.parametrize("kind", ["full", "catch-up"])
def test_a_webhook_s_count_landing_between_a_sync_start_s_read_and_its_write_stays_with_the_run_it_counted_on(
        store, clock, monkeypatch, kind):
    """A webhook adds its count to run 1, the latest, just after a start read run 1 (in DynamoDB: between the read
    and the transaction that copies run 1 to its own item and writes run 2 over the latest): the copy holds it too,
    as it holds the webhook's counts from before; the start still starts run 2."""
    store.sync.start("42", "full", "users", clock())
    store.sync.claim_page("42", 1, 0, "w", clock())
    assert store.sync.checkpoint("42", 1, 0, "w", clock(), cursor=None, counts={"enrolled": 3}, finished=True)
    store.sync.add_counts("42", 1, {"enrolled": 1})
    with _just_after_the_start_s_read(store, lambda: store.sync.add_counts("42", 1, {"enrolled": 1, "linked": 1})):
        calls = _calls(monkeypatch) if not isinstance(store, MemoryStore) else None
        run = store.sync.start("42", kind, "users", clock())
    monkeypatch.undo()
    assert (run.number, run.by_webhook) == (2, {})
    assert calls in (None, ["GetItem", "UpdateItem", "TransactWriteItems",     # its write refused, the run read
                            "GetItem", "TransactWriteItems"])                  # again and written (+1 each)
    assert store.sync.run("42", 1).by_webhook == {"enrolled": 2, "linked": 1}
    assert store.sync.run("42", 1).counts == {"enrolled": 3}


@pytest.mark.parametrize("store", ["dynamo"], indirect=True)
def test_a_full_sync_start_whose_replaced_full_run_was_deleted_by_hand_starts_and_makes_no_item_of_it(store, clock):
    from chalicelib.adapters.dynamo.keys import sync_run_key
    from chalicelib.adapters.dynamo.models import SyncRunItem, get
    for kind in ("full", "catch-up"):
        run = store.sync.start("42", kind, "users", clock())
        store.sync.claim_page("42", run.number, 0, "w", clock())
        assert store.sync.checkpoint("42", run.number, 0, "w", clock(), cursor=None, counts={}, finished=True)
    get(SyncRunItem, sync_run_key("42", 1)).delete()
    assert store.sync.start("42", "full", "users", clock()).number == 3
    assert get(SyncRunItem, sync_run_key("42", 1)) is None and store.sync.run("42", 2).kind == "catch-up"


@pytest.mark.parametrize("store", ["dynamo"], indirect=True)
def test_a_sync_start_whose_run_before_webhooks_count_on_at_each_try_waits_and_starts_nothing(store, clock):
    from chalicelib.adapters.dynamo.models import CONFLICT_WAIT
    from chalicelib.adapters.dynamo.sync import START_TRIES
    from chalicelib.errors import Deferred
    store.sync.start("42", "full", "users", clock())
    store.sync.claim_page("42", 1, 0, "w", clock())
    assert store.sync.checkpoint("42", 1, 0, "w", clock(), cursor=None, counts={}, finished=True)
    with _just_after_the_start_s_read(store, lambda: store.sync.add_counts("42", 1, {"enrolled": 1}), every=True), \
            pytest.raises(Deferred) as waits:
        store.sync.start("42", "catch-up", "users", clock())
    assert waits.value.retry_after == CONFLICT_WAIT
    assert store.sync.run("42").number == 1 and store.sync.run("42").by_webhook == {"enrolled": START_TRIES}


def test_a_run_keeps_the_fields_rf_required_and_its_workspace_through_its_pages_and_once_a_later_run_starts(
        store, clock):
    required = ("first_name", "email", "meta.company")
    assert store.sync.start("42", "full", "users", clock(), required=required, workspace="ws").required == required
    run, took = store.sync.claim_page("42", 1, 0, "w1", clock())
    assert took and (run.required, run.workspace) == (required, "ws")
    assert store.sync.checkpoint("42", 1, 0, "w1", clock(), cursor=None, counts={}, finished=True)
    assert store.sync.start("42", "full", "users", clock()).required == ()
    assert (store.sync.run("42", 1).required, store.sync.run("42").required) == (required, ())
    assert (store.sync.run("42", 1).workspace, store.sync.run("42").workspace) == ("ws", None)


def test_a_page_given_back_with_its_error_keeps_it_on_the_run_until_a_checkpoint_clears_it_on_both_stores(
        store, clock):
    """`sync status` shows why a page the queue retries fails: the error rides on the page's release, stays on
    the run over a release without one (a lost lease's), and the page's checkpoint clears it."""
    from chalicelib.domain.sync import PageError
    store.sync.start("42", "full", "users", clock())
    store.sync.claim_page("42", 1, 0, "w1", clock())
    assert store.sync.checkpoint("42", 1, 0, "w1", clock(), cursor="c1", counts={"enrolled": 2})
    failed = PageError(1, "Intercom answered 503: Service Unavailable", 2, clock() + 5, "retrying")
    store.sync.claim_page("42", 1, 1, "w2", clock())
    store.sync.release("42", 1, 1, "w2", failed)
    assert store.sync.run("42").error == failed and store.sync.run("42").owner is None
    store.sync.claim_page("42", 1, 1, "w3", clock())
    store.sync.release("42", 1, 1, "w3")
    assert store.sync.run("42").error == failed
    store.sync.claim_page("42", 1, 1, "w4", clock())
    assert store.sync.checkpoint("42", 1, 1, "w4", clock(), cursor=None, counts={"enrolled": 1}, finished=True)
    assert store.sync.run("42").error is None
    store.sync.start("42", "full", "users", clock())
    store.sync.claim_page("42", 2, 0, "w5", clock())
    store.sync.release("42", 2, 0, "w5", PageError(0, "Referral Factory answered 502: Bad Gateway", 1, clock(),
                                                   "retrying"))
    assert store.sync.run("42", 1).error is None and store.sync.run("42").error.reason.endswith("Bad Gateway")


def test_the_time_a_run_s_pages_waited_in_the_dead_letter_queue_adds_up_and_stays_with_its_run_on_both_stores(
        store, clock):
    """`sync status`'s rate leaves out the time pages waited in the dead-letter queue: each try of a replayed page
    adds its wait on release or checkpoint, the finished run keeps it, and the next run starts at none."""
    store.sync.start("42", "full", "users", clock())
    store.sync.claim_page("42", 1, 0, "w1", clock())
    store.sync.release("42", 1, 0, "w1", paused=600.5)
    store.sync.claim_page("42", 1, 0, "w2", clock())
    assert store.sync.checkpoint("42", 1, 0, "w2", clock(), cursor=None, counts={"enrolled": 1}, finished=True,
                                 paused=60)
    assert store.sync.run("42").paused == 660.5
    store.sync.start("42", "full", "users", clock())
    assert (store.sync.run("42", 1).paused, store.sync.run("42").paused) == (660.5, 0.0)


def test_intending_to_create_writes_over_an_earlier_skip_never_over_an_entry_naming_an_rf_user_on_both_stores(store):
    """A contact run 1 skipped (no name) is created by run 2 once fixed: run 2's `creating` entry must replace the
    skip on both stores, so that a retry after a lost create answer looks the user up in RF (services/sync.py
    `_enrol`'s `earlier`), not skips them as already in the campaign. A contact another worker enrolled after the
    page read the ledger keeps that entry (its RF user: the late link, `left`), and is not among those written."""
    from chalicelib.ports.store import LedgerEntry
    seed_ledger(store.sync, "42", [
        LedgerEntry("c1", "missing_field", email="a@x.io", reason="missing", run=1),
        LedgerEntry("c2", "enrolled", email="b@x.io", rf_user_id="7", url="u", written_back=True),
        LedgerEntry("c3", "creating", email="c@x.io", run=2)])
    written = store.sync.intend("42", [LedgerEntry(c, "creating", email=f"{c}@x.io", run=2, seen_run=2)
                                       for c in ("c1", "c2", "c3", "c4")])
    got = store.sync.entries("42", ["c1", "c2", "c3", "c4"], consistent=True)
    assert written == {"c1", "c3", "c4"}
    assert (got["c1"].outcome, got["c1"].run, got["c1"].final) == ("creating", 2, False)
    assert (got["c2"].outcome, got["c2"].rf_user_id, got["c2"].url, got["c2"].email) == ("enrolled", "7", "u", "b@x.io")
    assert {got[c].outcome for c in ("c3", "c4")} == {"creating"}


def test_a_ledger_entry_keeps_the_run_that_enrolled_and_the_run_that_wrote_the_late_link_on_both_stores(store):
    from chalicelib.ports.store import LedgerEntry
    seed_ledger(store.sync, "42", [
        LedgerEntry("c1", "linked", email="a@x.io", rf_user_id="7", url="u", run=1, seen_run=2, written_back=True,
                    linked_run=2),
        LedgerEntry("c2", "enrolled", email="b@x.io", rf_user_id="8", url="v", run=1)])
    got = store.sync.entries("42", ["c1", "c2"])
    assert (got["c1"].run, got["c1"].linked_run, got["c2"].linked_run) == (1, 2, 0)


def test_forgetting_an_email_deletes_its_ledger_entries_only(store):
    from chalicelib.ports.store import LedgerEntry
    seed_ledger(store.sync, "42", [LedgerEntry("c1", "enrolled", email="a@x.io", rf_user_id="7"),
                                   LedgerEntry("c2", "missing_field", email="b@x.io")])
    assert [e.contact_id for e in store.sync.forget("42", "A@x.io")] == ["c1"]
    assert [e.contact_id for e in store.sync.ledger("42")] == ["c2"]


def test_forgetting_an_email_also_deletes_the_ledger_entries_of_the_contacts_named(store):
    from chalicelib.ports.store import LedgerEntry
    seed_ledger(store.sync, "42", [LedgerEntry("c1", "enrolled", email="old@x.io", rf_user_id="7"),
                                   LedgerEntry("c2", "enrolled", email="a@x.io", rf_user_id="8"),
                                   LedgerEntry("c3", "missing_field", email="b@x.io")])
    assert sorted(e.contact_id for e in store.sync.forget("42", "a@x.io", contact_ids=["c1", "c404"])) == ["c1", "c2"]
    assert [e.contact_id for e in store.sync.ledger("42")] == ["c3"]


def test_the_ledger_entries_of_an_email_are_found_in_its_campaign(store):
    from chalicelib.ports.store import LedgerEntry
    seed_ledger(store.sync, "42", [LedgerEntry("c1", "enrolled", email="a@x.io", rf_user_id="7"),
                                   LedgerEntry("c2", "missing_field", email="b@x.io")])
    seed_ledger(store.sync, "43", [LedgerEntry("c3", "invalid_email", email="a@x.io")])
    assert [(e.contact_id, e.rf_user_id) for e in store.sync.with_email("42", " A@x.io")] == [("c1", "7")]
    assert store.sync.with_email("44", "a@x.io") == [] and len(list(store.sync.ledger("42"))) == 2


def test_a_run_keeps_its_count_of_referrers_enrolled_whose_link_write_failed(store, clock):
    """The run's counts (and its webhooks') keep every outcome, enrolled_writeback_failed too."""
    store.sync.start("42", "full", "users", clock())
    store.sync.claim_page("42", 1, 0, "w1", clock())
    store.sync.add_counts("42", 1, {"enrolled_writeback_failed": 1})
    assert store.sync.checkpoint("42", 1, 0, "w1", clock(), cursor=None, counts={"enrolled_writeback_failed": 2,
                                                                                 "writeback_failed": 1}, finished=True)
    run = store.sync.run("42")
    assert (run.counts, run.by_webhook) == ({"enrolled_writeback_failed": 2, "writeback_failed": 1},
                                            {"enrolled_writeback_failed": 1})


def test_a_ledger_entry_keeps_that_a_referrers_own_join_enrolled_them_and_one_written_without_it_loads(store):
    """`adopted` survives the store (a retried page reads it to count her as already enrolled); an entry
    written without it (as before the field existed) loads as not adopted."""
    from chalicelib.ports.store import LedgerEntry
    seed_ledger(store.sync, "42", [
        LedgerEntry("c1", "no_link_yet", email="a@x.io", rf_user_id="7", run=1, adopted=True),
        LedgerEntry("c2", "writeback_failed", email="b@x.io", rf_user_id="8", run=1)])
    got = store.sync.entries("42", ["c1", "c2"])
    assert (got["c1"].adopted, got["c2"].adopted) == (True, False)
    assert [e.adopted for e in store.sync.ledger("42")] == [True, False]



def test_a_ledger_entry_keeps_the_workspace_of_its_contact_and_one_written_without_it_loads_as_not_known(store):
    """A move of the campaign asks where sync enrolled each referrer; entries written before they said it
    load with no workspace (None: not known)."""
    from chalicelib.ports.store import LedgerEntry
    seed_ledger(store.sync, "42", [
        LedgerEntry("c1", "enrolled", email="a@x.io", rf_user_id="7", run=1, workspace="ws-b"),
        LedgerEntry("c2", "enrolled", email="b@x.io", rf_user_id="8", run=1)])
    got = store.sync.entries("42", ["c1", "c2"])
    assert (got["c1"].workspace, got["c2"].workspace) == ("ws-b", None)
    assert [e.workspace for e in store.sync.ledger("42")] == ["ws-b", None]

# --- the edge's log: bounded, expiring (ports/edge.py) ---------------------------------------------
def refusal(n: int, reason="unauthorized", rf_user_id=None):
    from chalicelib.ports import RefusalSample
    from chalicelib.domain.history import iso
    return RefusalSample(reason, iso(1_790_000_000 + n), f"refused #{n}", rf_user_id=rf_user_id)


def test_refusals_are_counted_per_reason_and_hour_with_a_bounded_ring_of_samples(store, clock):
    from chalicelib.ports.edge import SAMPLES
    for n in range(3 * SAMPLES):
        store.edge.refused("campaign:42", refusal(n, rf_user_id=str(n)))
    store.edge.refused("campaign:42", refusal(99, "unknown_campaign"))
    clock.sleep(3600)
    store.edge.refused("campaign:42", refusal(100))
    kept = store.edge.refusals("campaign:42")
    assert sorted((c.reason, c.count) for c in kept.counts) == [
        ("unauthorized", 1), ("unauthorized", 3 * SAMPLES), ("unknown_campaign", 1)]
    assert refused(kept, "unauthorized") == 3 * SAMPLES + 1 and refused(kept) == 3 * SAMPLES + 2
    # the ring: at most SAMPLES per reason, whatever the number of refusals
    assert sum(s.reason == "unauthorized" for s in kept.samples) == SAMPLES
    assert store.edge.refusals("campaign:7") == type(kept)([], [])


def test_many_refusals_of_one_reason_are_counted_at_once_and_fill_only_the_rings_free_slots(store):
    from chalicelib.ports.edge import SAMPLES
    assert SAMPLES == 5
    store.edge.refused("fields:42", refusal(0, rf_user_id="0"))
    store.edge.refused("fields:42", *(refusal(n, rf_user_id=str(n)) for n in range(1, 4)))
    store.edge.refused("fields:42", *(refusal(n, rf_user_id=str(n)) for n in range(10, 10 + SAMPLES)), count=20)
    kept = store.edge.refusals("fields:42")
    assert [(c.count, c.first_at, c.last_at) for c in kept.counts] == [
        (24, refusal(0).at, refusal(10 + SAMPLES - 1).at)]
    # the ring keeps the hour's first: one, then three, then the first of the twenty while a slot is free
    assert sorted(int(s.rf_user_id) for s in kept.samples) == [0, 1, 2, 3, 10]


def test_a_sample_keeps_an_unauthenticated_bodys_person_as_digests_of_one_key(store):
    """The digests round-trip, the same value gives the same digest (explain matches it later), and an
    email's is of its normalised address and never the plain sha256 an authenticated sample's hash is."""
    import dataclasses

    from chalicelib.domain.people import email_hash
    edge = store.edge
    sample = dataclasses.replace(refusal(0), rf_user_digest=edge.digest("rf_user", "7"),
                                 email_digest=edge.digest("email", "ann@example.com"),
                                 contact_digest=edge.digest("contact", "c1"))
    edge.refused("unknown", sample)
    assert edge.refusals("unknown").samples == [sample]
    assert edge.digest("email", " Ann@Example.com ") == sample.email_digest != email_hash("ann@example.com")
    assert edge.digest("rf_user", "7") != edge.digest("email", "7") != edge.digest("rf_user", "8")
    assert edge.digest("contact", "7") != edge.digest("rf_user", "7")


def test_forgetting_deletes_the_samples_about_a_person_and_keeps_the_counts(store):
    for n in range(3):
        store.edge.refused("campaign:42", refusal(n, rf_user_id=str(n)))
    assert store.edge.forget("campaign:42", lambda s: s.rf_user_id in ("0", "2")) == 2
    kept = store.edge.refusals("campaign:42")
    assert [s.rf_user_id for s in kept.samples] == ["1"] and refused(kept) == 3
    assert store.edge.forget("campaign:7", lambda s: True) == 0


def test_refusals_expire_after_a_week(store, clock):
    from chalicelib.ports.edge import REFUSALS_KEEP_DAYS
    store.edge.refused("unknown", refusal(1))
    clock.sleep(REFUSALS_KEEP_DAYS * 86400 + 3600)
    assert store.edge.refusals("unknown").counts == [] and store.edge.refusals("unknown").samples == []


def test_the_edge_remembers_when_it_last_heard_each_webhook(store, clock):
    assert store.edge.last_heard("campaign:42", "join") is None
    store.edge.heard("campaign:42", "join")
    first = store.edge.last_heard("campaign:42", "join")
    clock.sleep(90)
    store.edge.heard("campaign:42", "join")
    assert store.edge.last_heard("campaign:42", "join") > first
    assert store.edge.last_heard("workspace:ws1", "notification") is None


# --- referral counts: each lead once, in the join's own finishing write -------------------------------
REFERRER = PersonRef("42", "100")


def _finish_leads(store, *users: str, status=LinkStatus.LINKED, counts_for="100") -> list:
    claims = store.links.claim_many([(PersonRef("42", u), WS) for u in users])
    return store.links.finish_many([(c, JoinResult(status, kind="lead", contact_id=f"c{c.ref.rf_user_id}",
                                                   counts_for=counts_for), [Entry("join", "linked")])
                                    for c in claims])


def test_a_referrer_counts_each_lead_once_whatever_repeats_and_batches_and_a_failed_try_counts_nothing(store):
    assert store.links.referrals(REFERRER) is None
    assert _finish_leads(store, "1", "2", "3") == [None, None, None]     # three leads in one write
    assert store.links.referrals(REFERRER).n == 3
    assert store.links.claim(PersonRef("42", "1"), WS) is None             # a repeat cannot be claimed: no count
    assert _finish_leads(store, "4", status=LinkStatus.FAILED) == [None]   # a failed try counts nothing...
    assert store.links.referrals(REFERRER).n == 3
    assert _finish_leads(store, "4", "5", status=LinkStatus.IGNORED) == [None, None]   # ...its next one does
    assert store.links.referrals(REFERRER).n == 5
    _finish_leads(store, "6", counts_for=None)                             # a campaign without the setting
    assert store.links.referrals(REFERRER).n == 5
    assert store.links.referrals(PersonRef("42", "6")) is None


def test_an_ignored_join_reopened_is_claimable_once_keeps_its_count_and_a_linked_one_is_not_reopened(store):
    """`bridge backfill` sends again a join ignored under `action: nothing` once the action creates: its
    link waits (claimable), says why, and still counts for its referrer (once: finishing it counts nobody)."""
    assert _finish_leads(store, "1", "2", status=LinkStatus.IGNORED) + _finish_leads(store, "3") == [None] * 3
    assert store.links.referrals(REFERRER).n == 3
    why = "sent again by `bridge backfill 42 --apply`"
    assert store.links.reopen_ignored_many([(PersonRef("42", u), why, [Entry("join", "resent", why)])
                                            for u in ("1", "2", "3")]) == [True, True, False]
    assert store.links.reopen_ignored_many([(PersonRef("42", "1"), why, [])]) == [False]   # reopened already
    reopened = store.links.get(PersonRef("42", "1"))
    assert (reopened.status, reopened.reason, reopened.counted_for) == (LinkStatus.WAITING, why, "100")
    assert outcomes(store, PersonRef("42", "1")) == ["linked", "resent"]
    assert store.links.get(PersonRef("42", "3")).status is LinkStatus.LINKED and outcomes(
        store, PersonRef("42", "3")) == ["linked"]
    assert _finish_leads(store, "1", "2", counts_for=None) == [None, None]   # the join, which counts nobody again
    assert [store.links.get(PersonRef("42", u)).counted_for for u in ("1", "2")] == ["100", "100"]
    assert store.links.referrals(REFERRER).n == 3


def test_a_lost_claim_counts_nothing_and_the_other_joins_of_its_write_still_count(store, clock):
    lost = store.links.claim(PersonRef("42", "1"), WS, lease=10)
    clock.now += 11
    store.links.claim(PersonRef("42", "1"), WS)                      # another worker took it over
    other = store.links.claim(PersonRef("42", "2"), WS)
    answers = store.links.finish_many([(c, JoinResult(LinkStatus.LINKED, kind="lead", counts_for="100"), [])
                                       for c in (lost, other)])
    assert isinstance(answers[0], Busy) and answers[1] is None
    assert store.links.referrals(REFERRER).n == 1


def test_the_count_learns_its_contact_and_what_intercom_holds(store):
    assert store.links.referrer_contact(REFERRER, "c9", WS).n == 0           # enrolled before any lead joined
    _finish_leads(store, "1", "2")
    store.links.referrals_written(REFERRER, 2, "custom_attributes.referral_count")
    assert store.links.referrals(REFERRER) == ReferralCount(2, 2, "c9", "custom_attributes.referral_count",
                                                            workspace=WS)
    assert store.links.referrer_contact(PersonRef("42", "101"), "c8", "ws2") == ReferralCount(0, None, "c8",
                                                                                             workspace="ws2")
    store.links.referrer_contact(PersonRef("43", "100"), "c7", WS)           # another campaign's
    assert store.links.referrals_in("42") == {REFERRER: store.links.referrals(REFERRER),
                                              PersonRef("42", "101"): ReferralCount(0, None, "c8", workspace="ws2")}


def _count_stored_without_a_workspace(store, ref: PersonRef, contact_id: str) -> None:
    """A count that learnt its contact before the store recorded the contact's workspace."""
    if hasattr(store.links, "tables"):
        store.links.tables.referrals[ref] = ReferralCount(contact_id=contact_id)
        return
    from chalicelib.adapters.dynamo.keys import referrals_key
    from chalicelib.adapters.dynamo.models import ReferralItem
    ReferralItem(*referrals_key(ref), contact_id=contact_id).save()


def test_a_count_stored_before_workspaces_were_recorded_loads_without_one_and_learns_it(store):
    _count_stored_without_a_workspace(store, REFERRER, "c9")
    _finish_leads(store, "1")
    assert store.links.referrals(REFERRER) == ReferralCount(1, None, "c9")        # workspace unknown: None
    assert store.links.referrals_in("42") == {REFERRER: ReferralCount(1, None, "c9")}
    assert store.links.referrer_contact(REFERRER, "c9", WS) == ReferralCount(1, None, "c9", workspace=WS)


def test_a_count_drops_a_contact_it_learnt_without_a_workspace_but_never_one_recorded_since(store):
    _count_stored_without_a_workspace(store, REFERRER, "c9")
    _finish_leads(store, "1")
    assert not store.links.drop_referrer_contact(REFERRER, "c8")          # not the contact it names
    assert store.links.drop_referrer_contact(REFERRER, "c9")
    assert store.links.referrals(REFERRER) == ReferralCount(1)              # the count stays, without a contact
    assert not store.links.drop_referrer_contact(REFERRER, "c9")
    store.links.referrer_contact(REFERRER, "c9", WS)                        # sync enrolled them meanwhile
    assert not store.links.drop_referrer_contact(REFERRER, "c9")
    assert store.links.referrals(REFERRER) == ReferralCount(1, None, "c9", workspace=WS)
    assert not store.links.drop_referrer_contact(REFERRER, "c9", "other")   # recorded in another workspace
    assert store.links.drop_referrer_contact(REFERRER, "c9", WS)            # Intercom deleted it there
    assert store.links.referrals(REFERRER) == ReferralCount(1)
    assert not store.links.drop_referrer_contact(PersonRef("42", "300"), "c9")     # no count
    assert store.links.referrals(PersonRef("42", "300")) is None


def test_a_campaigns_counts_are_read_together_and_only_those_that_exist(store):
    _finish_leads(store, "1", "2")
    _finish_leads(store, "3", counts_for="200")
    assert store.links.referrals_in("42") == {REFERRER: ReferralCount(2), PersonRef("42", "200"): ReferralCount(1)}
    assert store.links.referrals_in("99") == {}


def test_the_counts_of_several_people_are_read_at_once_and_only_those_kept(store):
    _finish_leads(store, "1", "2")
    _finish_leads(store, "3", counts_for="200")
    store.links.referrer_contact(PersonRef("43", "100"), "c7", WS)           # another campaign's, same user id
    wanted = [REFERRER, PersonRef("42", "200"), PersonRef("42", "300"), PersonRef("43", "100")]
    assert store.links.referrals_many(iter(wanted)) == {
        REFERRER: ReferralCount(2), PersonRef("42", "200"): ReferralCount(1),
        PersonRef("43", "100"): ReferralCount(0, None, "c7", workspace=WS)}   # 300 keeps none: left out
    assert store.links.referrals_many([]) == {}


def test_forgetting_a_referrer_erases_their_count_and_the_contact_it_named(store):
    _finish_leads(store, "1")
    store.links.referrer_contact(REFERRER, "c9", WS)
    assert store.links.forget_referrals(REFERRER) is True
    assert store.links.referrals(REFERRER) is None
    assert store.links.forget_referrals(REFERRER) is False
    joined(store, REFERRER, contact="c9", kind="referrer", pending=False)   # a referrer linked by their own join
    _finish_leads(store, "2")
    store.links.erase(store.links.get(REFERRER))
    assert store.links.referrals(REFERRER) is None


def test_an_erased_lead_is_taken_off_their_referrers_count_once_and_never_below_0(store):
    _finish_leads(store, "1", "2")
    one = store.links.get(PersonRef("42", "1"))
    assert one.counted_for == "100"
    store.links.erase(one)
    assert store.links.referrals(REFERRER).n == 1
    store.links.erase(one)                                           # a repeated forget takes nothing more off
    assert store.links.referrals(REFERRER).n == 1
    assert _finish_leads(store, "1") == [None]                       # their join again: counted once again
    assert store.links.referrals(REFERRER).n == 2
    _finish_leads(store, "3", status=LinkStatus.FAILED)              # a failed try counted for nobody
    assert store.links.get(PersonRef("42", "3")).counted_for is None
    store.links.erase(store.links.get(PersonRef("42", "3")))
    assert store.links.referrals(REFERRER).n == 2
    store.links.forget_referrals(REFERRER)                           # the referrer was forgotten first
    _finish_leads(store, "4")                                        # a count of 1 again, which 2 is not in
    store.links.erase(store.links.get(PersonRef("42", "2")))
    store.links.erase(store.links.get(PersonRef("42", "4")))
    assert store.links.referrals(REFERRER).n == 0
    assert store.links.get_many([PersonRef("42", "2"), PersonRef("42", "4")]) == {}


def _worker(store, clock):
    """The store's links as another worker sees them: the same table, its own clock."""
    links = copy.copy(store.links)
    links.clock = clock
    return links


@pytest.mark.parametrize("batch", [1, 2], ids=["alone", "in_a_batch"])
def test_a_lead_counted_on_a_worker_whose_clock_is_behind_the_count_s_start_is_dated_from_it(store, clock, batch):
    """Two first leads of a referrer finishing at once on two workers: the one whose clock is 2 s ahead
    begins the count first; the other's lead is counted from that start, not by its own clock. So
    forgetting either takes it off, while a lead counted before the count began is not."""
    behind = _worker(store, FakeClock(clock.now - 2))
    _finish_leads(store, "0")                                        # counted for the referrer forgotten below
    clock.now += 60
    assert store.links.forget_referrals(REFERRER) is True
    behind.clock.now = clock.now - 2
    _finish_leads(store, "1")                                        # the worker ahead begins the count
    began = store.links.referrals(REFERRER).since
    users = ["2", "3"][:batch]
    claims = behind.claim_many([(PersonRef("42", u), WS) for u in users])
    assert behind.finish_many([(c, JoinResult(LinkStatus.LINKED, kind="lead", counts_for="100"), [])
                               for c in claims]) == [None] * batch
    late = [store.links.get(PersonRef("42", u)) for u in users]
    assert [lead.counted_at for lead in late] == [began] * batch and store.links.referrals(REFERRER).since == began
    assert store.links.referrals(REFERRER).n == 1 + batch
    assert store.links.erase(late[0]).lowered == REFERRER
    assert store.links.erase(store.links.get(PersonRef("42", "0"))).lowered is None     # counted 1 min before it began
    assert store.links.referrals(REFERRER).n == batch


def test_a_lead_backfill_counts_on_a_worker_whose_clock_is_behind_the_count_s_start_is_dated_from_it(store, clock):
    _finish_leads(store, "1")
    began = store.links.referrals(REFERRER).since
    _finish_leads(store, "2", counts_for=None)                       # applied before the campaign kept counts
    behind = _worker(store, FakeClock(clock.now - 2))
    assert behind.count_applied_many([(PersonRef("42", "2"), "100", [])]) == [True]
    assert store.links.get(PersonRef("42", "2")).counted_at == began
    assert store.links.erase(store.links.get(PersonRef("42", "2"))).lowered == REFERRER
    assert store.links.referrals(REFERRER).n == 1


def test_a_lost_claim_on_a_worker_whose_clock_is_behind_the_count_s_start_is_not_retried_as_the_count_s(
        store, clock):
    """The count's refusal is retried dated from its start; the claim's, in the same write, still
    means the claim was lost: nothing is counted."""
    _finish_leads(store, "1")
    behind = _worker(store, FakeClock(clock.now - 2))
    lost = behind.claim(PersonRef("42", "2"), WS, lease=1)
    clock.now += 5
    assert store.links.claim(PersonRef("42", "2"), WS) is not None              # its lease ran out: taken over
    with pytest.raises(Busy, match="lost the claim"):
        behind.finish(lost, JoinResult(LinkStatus.LINKED, kind="lead", counts_for="100"), [])
    assert store.links.referrals(REFERRER).n == 1


def test_an_old_lead_of_a_forgotten_referrer_is_not_taken_off_the_count_she_began_since(store, clock):
    """The referrer's count was erased (`bridge forget`) after leads 1 and 2 counted; she came back and
    lead 3 counts: forgetting lead 1 leaves her 1 (lead 3), forgetting lead 3 takes it off."""
    _finish_leads(store, "1", "2")
    clock.now += 60
    assert store.links.forget_referrals(REFERRER) is True
    clock.now += 60                                                  # she comes back a minute later
    _finish_leads(store, "3")
    assert store.links.referrals(REFERRER).n == 1
    erased = store.links.erase(store.links.get(PersonRef("42", "1")))
    assert erased.lowered is None and store.links.get(PersonRef("42", "1")) is None      # the link goes all the same
    assert store.links.referrals(REFERRER).n == 1
    assert store.links.counts_owed(clock.now + 10_000, 10) == []                          # nothing to write again
    clock.now += 60
    assert store.links.erase(store.links.get(PersonRef("42", "3"))).lowered == REFERRER   # counted after it began
    assert store.links.referrals(REFERRER).n == 0


def test_a_lead_an_earlier_version_dated_a_moment_before_the_count_it_began_is_taken_off_it(store, clock):
    """Versions before 2026-11-26 dated each lead by its worker's clock: of two first leads finishing at once on
    two workers, lead 1's began the count, and lead 2's, dated 4 ms before by a clock behind, added to it."""
    _finish_leads(store, "1", "2")
    began = store.links.referrals(REFERRER).since
    _dated(store, [PersonRef("42", "2")], began - 0.004, began)
    clock.now += 60
    assert store.links.erase(store.links.get(PersonRef("42", "2"))).lowered == REFERRER
    assert store.links.referrals(REFERRER).n == 1


def test_a_lead_backfill_counts_into_a_count_begun_earlier_is_taken_off_it(store, clock):
    _finish_leads(store, "1")
    _finish_leads(store, "2", counts_for=None)                       # applied before the campaign kept counts
    clock.now += 60
    assert store.links.count_applied_many([(PersonRef("42", "2"), "100", [])]) == [True]
    clock.now += 60
    assert store.links.erase(store.links.get(PersonRef("42", "2"))).lowered == REFERRER
    assert store.links.referrals(REFERRER).n == 1


def _dated(store, leads: Sequence[PersonRef], counted_at: Optional[float], since: Optional[float]) -> None:
    """What an earlier version wrote: the leads' links counted `counted_at`, and their referrer's count
    begun `since` (None: not dated, as before the bridge dated counts)."""
    if hasattr(store, "tables"):
        for ref in leads:
            store.tables.links[ref].link = dataclasses.replace(store.tables.links[ref].link, counted_at=counted_at)
        store.tables.referrals[REFERRER] = dataclasses.replace(store.tables.referrals[REFERRER], since=since)
        return
    from chalicelib.adapters.dynamo.keys import link_key, referrals_key
    from chalicelib.adapters.dynamo.models import LinkItem, ReferralItem
    def dated(attr, value):
        return attr.remove() if value is None else attr.set(value)
    for ref in leads:
        LinkItem(*link_key(ref)).update(actions=[dated(LinkItem.counted_at, counted_at)])
    ReferralItem(*referrals_key(REFERRER)).update(actions=[dated(ReferralItem.since, since)])


def test_counts_and_links_written_before_they_were_dated_are_lowered_as_before(store, clock):
    _finish_leads(store, "1", "2", "3")
    _dated(store, [PersonRef("42", u) for u in ("1", "2", "3")], None, None)
    assert store.links.referrals(REFERRER).since is None and store.links.get(PersonRef("42", "1")).counted_at is None
    clock.now += 60
    assert store.links.erase(store.links.get(PersonRef("42", "1"))).lowered == REFERRER    # neither dated
    _finish_leads(store, "4")                                    # the old count is dated from now on
    clock.now += 60
    assert store.links.erase(store.links.get(PersonRef("42", "2"))).lowered == REFERRER    # an undated link
    assert store.links.erase(store.links.get(PersonRef("42", "4"))).lowered == REFERRER
    assert store.links.referrals(REFERRER).n == 1                                          # lead 3
def test_a_link_read_before_its_join_finished_is_erased_with_what_the_join_counted(store):
    [claim] = store.links.claim_many([(PersonRef("42", "1"), WS)])
    stale = store.links.get(PersonRef("42", "1"))                 # `forget` reads it: counts for nobody yet
    assert stale is not None and stale.counted_for is None
    store.links.finish_many([(claim, JoinResult(LinkStatus.LINKED, kind="lead", counts_for="100"), [])])
    assert store.links.referrals(REFERRER).n == 1
    store.links.erase(stale)
    assert store.links.get(PersonRef("42", "1")) is None
    assert store.links.referrals(REFERRER).n == 0                  # a join that comes again counts once


def test_a_count_an_erasure_lowered_owes_its_write_until_its_ask_is_confirmed(store, clock):
    """The mark is written with the lowered count (one write), so nothing that stops the caller after
    it can lose the write: reconciliation finds it once the erasure's own ask had its grace."""
    _finish_leads(store, "1", "2")
    assert store.links.counts_owed(clock.now + 10_000, 10) == []                # joins owe nothing
    stale = store.links.get(PersonRef("42", "2"))
    assert store.links.erase(store.links.get(PersonRef("42", "1"))).lowered == REFERRER
    assert store.links.counts_owed(clock.now + COUNT_ASK_GRACE, 10) == []      # the erasure's own ask goes first
    [(owed, due)] = store.links.counts_owed(clock.now + COUNT_ASK_GRACE + 1, 10)
    assert owed == REFERRER and store.links.referrals(REFERRER).n == 1
    clock.now += 5
    assert store.links.erase(stale).lowered == REFERRER                        # lowered again since it was read
    assert store.links.count_asked(REFERRER, due) is False                     # so it still owes that write
    [(_, later)] = store.links.counts_owed(clock.now + COUNT_ASK_GRACE + 1, 10)
    assert later == due + 5 and store.links.referrals(REFERRER).n == 0
    assert store.links.count_asked(REFERRER, later) is True
    assert store.links.counts_owed(clock.now + 10_000, 10) == []
    assert store.links.count_asked(REFERRER, later) is False                   # once
    assert store.links.erase(stale).lowered is None                            # a repeat lowers nothing


def test_a_referrer_forgotten_owes_no_write(store, clock):
    _finish_leads(store, "1")
    store.links.erase(store.links.get(PersonRef("42", "1")))
    store.links.forget_referrals(REFERRER)
    assert store.links.counts_owed(clock.now + 10_000, 10) == []


def test_an_entry_written_with_the_link_after_it_was_read_goes_with_it_and_its_count_is_lowered(store):
    """`bridge backfill --apply` counts the lead (its entry goes into their history with the link's
    update) after `forget` read the link: the erasure takes that referrer's count down, says whose,
    and leaves no entry about the lead."""
    _finish_leads(store, "1", counts_for=None)
    stale = store.links.get(PersonRef("42", "1"))
    store.links.count_applied_many([(stale.ref, "100", [Entry("referral_count", "counted", "counted for referrer 100")])])
    assert store.links.erase(stale).lowered == REFERRER
    assert store.history.entries(stale.ref) == [] and store.links.referrals(REFERRER).n == 0


def test_no_entry_written_with_the_link_outlives_its_erasure(store):
    """Whenever the erasure reaches the history, a write with the link (conditional on it) can no
    longer land: the history goes after the link's delete."""
    _finish_leads(store, "1", counts_for=None)
    lead = PersonRef("42", "1")
    landed: list[bool] = []

    def counted():
        landed.extend(store.links.count_applied_many([(lead, "100", [Entry("referral_count", "counted", "by backfill")])]))
    with after(store.history, "erase", counted):
        store.links.erase(store.links.get(lead))
    assert landed == [False] and store.history.entries(lead) == []
    assert store.links.referrals(REFERRER) is None


# --- DynamoDB only: a finishing transaction cancelled as a conflict (moto does not make them) -------------
class Conflicts:
    """The table's client, whose next `n` TransactWriteItems DynamoDB cancels as conflicting with
    other transactions (the error AWS answers, read as the client reads any)."""

    def __init__(self, monkeypatch, n: int):
        from chalicelib.adapters.dynamo.models import HistoryItem
        from tests.support.aws_answers import answering, cancelled
        self.n, self.tries, self.sleeps = n, 0, []

        def conflict(request):
            self.tries += 1
            if self.n <= 0:
                return None
            self.n -= 1
            return cancelled(len(request["TransactItems"]), "TransactionConflict",
                             "Transaction is ongoing for the item")
        answering(monkeypatch, HistoryItem._get_connection().connection.client, "TransactWriteItems", conflict)


@pytest.mark.parametrize("store", ["dynamo"], indirect=True)
def test_a_finishing_write_cancelled_as_a_conflict_is_tried_again_after_a_short_wait_and_counts_once(
        store, monkeypatch):
    claims = store.links.claim_many([(PersonRef("42", u), WS) for u in "123"])
    conflicts = Conflicts(monkeypatch, 2)
    store.links.sleep = conflicts.sleeps.append
    assert store.links.finish_many([(c, JoinResult(LinkStatus.LINKED, kind="lead", counts_for="100"), [])
                                    for c in claims]) == [None, None, None]
    assert (conflicts.tries, len(conflicts.sleeps)) == (3, 2)           # one write of the three, third try
    assert 0 <= conflicts.sleeps[0] <= 0.05 and 0 <= conflicts.sleeps[1] <= 0.1
    assert store.links.referrals(REFERRER).n == 3
    assert {store.links.get(PersonRef("42", u)).status for u in "123"} == {LinkStatus.LINKED}
    claim = store.links.claim(PersonRef("42", "4"), WS)
    conflicts.n = 1
    store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="lead", counts_for="100"), [])   # alone too
    assert store.links.referrals(REFERRER).n == 4 and len(conflicts.sleeps) == 3


@pytest.mark.parametrize("store", ["dynamo"], indirect=True)
def test_a_lost_claim_is_not_tried_again_and_conflicts_that_last_make_the_join_wait_a_few_seconds(
        store, clock, monkeypatch):
    from chalicelib.adapters.dynamo.models import CONFLICT_WAIT
    from chalicelib.errors import Deferred
    lost = store.links.claim(PersonRef("42", "1"), WS, lease=10)
    clock.now += 11
    store.links.claim(PersonRef("42", "1"), WS)                      # another worker took it over
    conflicts = Conflicts(monkeypatch, 0)
    store.links.sleep = conflicts.sleeps.append
    with pytest.raises(Busy):
        store.links.finish(lost, JoinResult(LinkStatus.LINKED, kind="lead", counts_for="100"), [])
    assert (conflicts.tries, conflicts.sleeps) == (1, [])            # a failed condition: at once, no wait
    claim = store.links.claim(PersonRef("42", "2"), WS)
    conflicts.n, conflicts.tries = 10, 0
    with pytest.raises(Deferred) as waits:
        store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="lead", counts_for="100"), [])
    assert (conflicts.tries, len(conflicts.sleeps)) == (4, 3)        # a few tries, then the join waits (no try used)
    assert waits.value.retry_after == CONFLICT_WAIT and not isinstance(waits.value, Busy)   # (its claim is not lost)
    assert store.links.referrals(REFERRER) is None


@pytest.mark.parametrize("store", ["dynamo"], indirect=True)
def test_a_single_write_refused_as_a_conflict_with_a_transaction_waits_a_few_seconds_not_a_try(store, monkeypatch):
    """A qualification's claim (one conditional UpdateItem) on a link another worker's transaction writes at that
    moment: DynamoDB answers TransactionConflictException, which botocore does not retry; it was a failed try."""
    from chalicelib.adapters.dynamo.models import CONFLICT_WAIT, HistoryItem
    from chalicelib.errors import Deferred
    from tests.support.aws_answers import answering, error
    store.links.finish(store.links.claim(PersonRef("42", "1"), WS), JoinResult(
        LinkStatus.LINKED, kind="lead", contact_id="c1", qualification=QState.PENDING), [])
    link = store.links.get(PersonRef("42", "1"))
    answering(monkeypatch, HistoryItem._get_connection().connection.client, "UpdateItem", lambda request: error(
        "TransactionConflictException", "Transaction is ongoing for the item"))
    with pytest.raises(Deferred) as waits:
        store.links.start_qualifying(link)
    assert waits.value.retry_after == CONFLICT_WAIT and "another transaction was writing" in waits.value.reason


@pytest.mark.parametrize("store", ["dynamo"], indirect=True)
def test_a_sync_start_cancelled_as_a_conflict_reads_the_latest_run_again_and_starts_or_waits(store, clock,
                                                                                              monkeypatch):
    """The start's transaction (the run before copied, the new run written) met a webhook's count on the latest run,
    or another start's transaction: nothing of it applied. It reads the latest run again and starts the run; while
    the conflicts last, the start waits (Deferred: the schedule's next round, or the operator, tries again)."""
    from chalicelib.adapters.dynamo.models import CONFLICT_WAIT
    from chalicelib.adapters.dynamo.sync import START_TRIES
    from chalicelib.errors import Deferred
    store.sync.start("42", "full", "users", clock())
    store.sync.claim_page("42", 1, 0, "w", clock())
    assert store.sync.checkpoint("42", 1, 0, "w", clock(), cursor=None, counts={"enrolled": 2}, finished=True)
    conflicts = Conflicts(monkeypatch, START_TRIES)
    with pytest.raises(Deferred) as waits:
        store.sync.start("42", "catch-up", "users", clock())
    assert (conflicts.tries, waits.value.retry_after) == (START_TRIES, CONFLICT_WAIT)
    assert store.sync.run("42").number == 1                          # nothing applied
    conflicts.n, conflicts.tries = START_TRIES - 1, 0
    run = store.sync.start("42", "catch-up", "users", clock())
    assert conflicts.tries == START_TRIES and (run.number, run.full_run) == (2, 1)
    assert store.sync.run("42", 1).counts == {"enrolled": 2}


@pytest.mark.parametrize("store", ["dynamo"], indirect=True)
def test_holding_a_contact_found_cancelled_as_a_conflict_is_tried_again(store, monkeypatch):
    """Two people's joins found one contact (its pointer is written by both at once): a hold DynamoDB cancels as
    a conflict is tried again after a short wait, as a finish is, not a failed try."""
    claims = store.links.claim_many([(PersonRef("42", u), WS) for u in "12"])
    conflicts = Conflicts(monkeypatch, 2)
    store.links.sleep = conflicts.sleeps.append
    found = FoundContact("c1", "lead", "user", "No", "custom_attributes.x")
    assert store.links.hold_found([(claim, found) for claim in claims]) == [None, None]
    assert (conflicts.tries, len(conflicts.sleeps)) == (4, 1)         # the batch's, then each alone (one again)
    assert {store.links.get(c.ref).contact_found for c in claims} == {True}


@pytest.mark.parametrize("store", ["dynamo"], indirect=True)
def test_erasing_a_lead_cancelled_as_a_conflict_is_tried_again(store, monkeypatch):
    _finish_leads(store, "1", "2")
    conflicts = Conflicts(monkeypatch, 2)
    store.links.sleep = conflicts.sleeps.append
    store.links.erase(store.links.get(PersonRef("42", "1")))
    assert (conflicts.tries, len(conflicts.sleeps)) == (3, 2)
    assert store.links.get(PersonRef("42", "1")) is None and store.links.referrals(REFERRER).n == 1


def _counting(*users: str, referrer="100", entries=()) -> list:
    return [(PersonRef("42", u), referrer, list(entries)) for u in users]


def test_a_lead_applied_before_the_campaign_kept_counts_is_counted_once_afterwards(store):
    _finish_leads(store, "1", "2", counts_for=None)                 # joins applied before the setting
    _finish_leads(store, "3", status=LinkStatus.IGNORED, counts_for=None)
    done = [Entry("referral_count", "counted", "counted for referrer 100")]
    assert store.links.count_applied_many([*_counting("1", entries=done),
                                           *_counting("3")]) == [True, True]     # an ignored lead counts too
    assert store.links.referrals(REFERRER).n == 2
    assert store.links.get(PersonRef("42", "1")).counted_for == "100"
    assert outcomes(store, PersonRef("42", "1")) == ["linked", "counted"]
    assert store.links.count_applied_many([*_counting("1", entries=done),             # a second time: nothing
                                           *_counting("1", referrer="101")]) == [False, False]   # nor for another
    assert store.links.referrals(REFERRER).n == 2 and store.links.referrals(PersonRef("42", "101")) is None
    assert outcomes(store, PersonRef("42", "1")) == ["linked", "counted"]
    store.links.erase(store.links.get(PersonRef("42", "1")))          # counted this way, taken off as a join's
    assert store.links.referrals(REFERRER).n == 1


def test_only_a_final_link_counted_for_nobody_is_counted_afterwards(store, clock):
    _finish_leads(store, "1")                                          # its join counted it already
    _finish_leads(store, "2", status=LinkStatus.FAILED, counts_for=None)
    store.links.claim(PersonRef("42", "3"), WS)                        # a join in progress
    assert store.links.count_applied_many(_counting("1", "2", "3", "4")) == [False] * 4   # (4: no link at all)
    assert store.links.referrals(REFERRER).n == 1
    assert [store.links.get(PersonRef("42", u)).counted_for for u in ("1", "2", "3")] == ["100", None, None]
    assert store.links.get(PersonRef("42", "4")) is None


def test_a_page_of_leads_counts_each_once_for_their_referrers_and_a_refused_lead_holds_back_no_other(store):
    _finish_leads(store, "1", "2", "3", "4", "5", "6", counts_for=None)
    _finish_leads(store, "7")                                          # counted by its join
    _finish_leads(store, "8", status=LinkStatus.FAILED, counts_for=None)
    done = [Entry("referral_count", "counted", "counted by backfill")]
    page = [*_counting("1", "2", entries=done), *_counting("3", referrer="101", entries=done),
            *_counting("7", "4", "8", entries=done), *_counting("9", "1", "5", referrer="101", entries=done),
            *_counting("6")]                                           # (9: no link; 1: named twice)
    assert store.links.count_applied_many(page) == [True, True, True, False, True, False, False, False, True, True]
    assert store.links.referrals(REFERRER).n == 1 + 4                  # 7's join, then 1, 2, 4 and 6
    assert store.links.referrals(PersonRef("42", "101")).n == 2        # 3 and 5
    assert [store.links.get(PersonRef("42", u)).counted_for for u in "12345678"] == [
        "100", "100", "101", "100", "101", "100", "100", None]
    assert outcomes(store, PersonRef("42", "1")) == ["linked", "counted"] and outcomes(
        store, PersonRef("42", "6")) == ["linked"]                     # (no entries given: none written)
    assert store.links.count_applied_many(page) == [False] * len(page)    # the same page again: nothing
    assert store.links.count_applied_many([]) == []
    assert store.links.referrals(REFERRER).n == 5


def _transactions(monkeypatch) -> list[int]:
    """The number of items of each TransactWriteItems the store sends from now on."""
    from chalicelib.adapters.dynamo.models import HistoryItem
    client, sent = HistoryItem._get_connection().connection.client, []
    call = client._make_api_call

    def recording(operation, kwargs):
        if operation == "TransactWriteItems":
            sent.append(len(kwargs["TransactItems"]))
        return call(operation, kwargs)
    monkeypatch.setattr(client, "_make_api_call", recording)
    return sent


@pytest.mark.parametrize("store", ["dynamo"], indirect=True)
def test_a_page_of_leads_is_counted_in_transactions_of_at_most_100_items_not_one_each(store, monkeypatch):
    users = [str(u) for u in range(1, 121)]
    _finish_leads(store, *users[:60], counts_for=None)
    _finish_leads(store, *users[60:], counts_for=None)
    sent = _transactions(monkeypatch)
    done = [Entry("referral_count", "counted", "counted by backfill")]
    page = [(PersonRef("42", u), f"10{int(u) % 3}", done) for u in users]      # 120 leads of 3 referrers
    assert store.links.count_applied_many(page) == [True] * 120
    # a lead's link and history item, and each referrer's one update in each transaction: 249 items
    assert sent == [99, 99, 51]                                         # ceil(249 / 100) transactions, not 120
    assert [store.links.referrals(PersonRef("42", f"10{r}")).n for r in range(3)] == [40, 40, 40]
    assert all(outcomes(store, PersonRef("42", u)) == ["linked", "counted"] for u in users)


@pytest.mark.parametrize("store", ["dynamo"], indirect=True)
def test_leads_counted_or_erased_by_another_worker_meanwhile_leave_the_others_counted_once(store, clock, monkeypatch):
    """Two backfills at once, or a forget racing one: DynamoDB cancels the transaction on those leads'
    conditions; its other leads are written again without them, and the counts are exact."""
    _finish_leads(store, "1", "2", "3", "4", "5", counts_for=None)
    other, sent = type(store)(clock), _transactions(monkeypatch)
    transact_all = store.links.history.transact_all

    def meanwhile(groups):
        if not sent:                       # just before the first: another run counts 2, a forget erases 3
            assert other.links.count_applied_many(_counting("2")) == [True]
            other.links.erase(other.links.get(PersonRef("42", "3")))
        return transact_all(groups)
    monkeypatch.setattr(store.links.history, "transact_all", meanwhile)
    done = [Entry("referral_count", "counted", "counted by backfill")]
    assert store.links.count_applied_many(_counting("1", "2", "3", "4", "5", entries=done)) == [
        True, False, False, True, True]
    # (the other run's; the other's erasure: the link with its contact pointer), the cancelled one, the one written
    # again without them
    assert sent == [1 + 1, 2, 11, 7]
    assert store.links.referrals(REFERRER).n == 4                      # 2 by the other run, 1, 4 and 5 by this one
    assert store.links.get(PersonRef("42", "3")) is None and outcomes(store, PersonRef("42", "2")) == ["linked"]
    assert outcomes(store, PersonRef("42", "1")) == ["linked", "counted"]


@pytest.mark.parametrize("store", ["dynamo"], indirect=True)
def test_a_counting_transaction_cancelled_as_a_conflict_is_tried_again_and_counts_once(store, monkeypatch):
    _finish_leads(store, "1", "2", "3", counts_for=None)
    conflicts = Conflicts(monkeypatch, 2)
    store.links.sleep = conflicts.sleeps.append
    assert store.links.count_applied_many(_counting("1", "2", "3")) == [True] * 3
    assert (conflicts.tries, len(conflicts.sleeps)) == (3, 2)
    assert store.links.referrals(REFERRER).n == 3


@pytest.mark.parametrize("store", ["dynamo"], indirect=True)
def test_a_counting_transaction_cancelled_without_saying_whose_condition_failed_counts_each_lead_alone(
        store, monkeypatch):
    from botocore.exceptions import ClientError

    from chalicelib.adapters.dynamo.models import HistoryItem
    _finish_leads(store, "1", "2", counts_for=None)
    _finish_leads(store, "3", counts_for="100")
    client, sent = HistoryItem._get_connection().connection.client, []
    call = client._make_api_call

    def unexplained(operation, kwargs):
        if operation == "TransactWriteItems":
            sent.append(len(kwargs["TransactItems"]))
            if len(sent) == 1:
                raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": (
                    "Transaction cancelled, please refer cancellation reasons for specific reasons "
                    "[ConditionalCheckFailed]")}}, operation)
        return call(operation, kwargs)
    monkeypatch.setattr(client, "_make_api_call", unexplained)
    assert store.links.count_applied_many(_counting("1", "2", "3")) == [True, True, False]
    assert sent == [4, 2, 2, 2] and store.links.referrals(REFERRER).n == 3


def test_a_notification_is_first_seen_once_until_its_mark_expires(store, clock):
    """The conditional mark: one of two workers marking the same notification is the first; a mark kept
    7 days, once expired, is taken again."""
    assert store.lookup.first_seen(WS, "sync 42 n1") and not store.lookup.first_seen(WS, "sync 42 n1")
    assert store.lookup.look_up(notifications=[(WS, "sync 42 n1")]).seen == {(WS, "sync 42 n1")}
    clock.now += 8 * 86400
    assert store.lookup.first_seen(WS, "sync 42 n1")


def test_a_lookup_treats_an_expired_mark_as_gone_as_first_seen_does(store, clock):
    """DynamoDB deletes an expired item only days later: a mark past its time is not `seen` (the
    notification is applied again, as first_seen would let it), at the very second it expires."""
    store.lookup.mark_seen(WS, "n1", keep_days=1)
    clock.now += 86400 - 1
    assert store.lookup.look_up(notifications=[(WS, "n1")]).seen == {(WS, "n1")}
    clock.now += 1
    assert store.lookup.look_up(contacts=[(WS, "c1")], notifications=[(WS, "n1")]).seen == set()
    assert store.lookup.first_seen(WS, "n1")
    assert store.lookup.look_up(notifications=[(WS, "n1")]).seen == {(WS, "n1")}


# --- doctor's count of mapped fields not written (the edge log's `fields:` scope) -------------------
def test_a_joins_fields_not_written_are_counted_per_attribute_and_kind_with_a_sample_and_erasable(store, clock):
    """The worker notes an applied join's fields not written where doctor reads them in one query:
    a counter per attribute and kind, a sample naming the person (masked) and the RF field, never the value."""
    from chalicelib.messages import JoinMessage
    from chalicelib.ports.edge import fields_scope
    from chalicelib.services.deps import WorkDeps
    from chalicelib.services.worker import handle_batch
    from tests.fakes import FakeWork
    work = FakeWork()
    work.store, work.clock = store, clock                                  # type: ignore[assignment]
    work.deps = WorkDeps.of(store, work.apis, work.queue, clock)
    store.settings.put("42", {"campaign_id": "42", "workspace": WS, "referrers": {"action": "nothing"},
                              "leads": {"action": "create_lead", "duplicates": "update", "fields": [
                                  {"from": "email", "to": "email"},
                                  {"from": "meta.score", "to": "custom_attributes.score"}]}}, WS)
    work.apis.intercom_.attributes.update({"email": {"data_type": "string"},
                                          "custom_attributes.score": {"data_type": "integer"}})
    for user, email, score in (("7", "Ann@Example.com", "three"), ("8", "bob@example.com", 1.5),
                                ("9", "cy@example.com", "3")):
        person = {"id": user, "campaign_id": "42", "email": email, "type": "lead", "meta": {"score": score}}
        work.apis.rf_.users[user] = person
        body = JoinMessage(campaign_id="42", rf_user_id=user, person=person).wire()
        assert handle_batch([{"messageId": user, "receiptHandle": user, "body": json.dumps(body),
                              "attributes": {"ApproximateReceiveCount": "1"}}], work)["done"] == 1
    kept = store.edge.refusals(fields_scope("42"))
    assert sorted((c.reason, c.count) for c in kept.counts) == [("custom_attributes.score: not a number", 1),
                                                                 ("custom_attributes.score: not a whole number", 1)]
    assert sorted((s.rf_user_id, s.email_masked, s.message, s.campaign_id) for s in kept.samples) == [
        ("7", "a***@example.com", "from meta.score", "42"), ("8", "b***@example.com", "from meta.score", "42")]
    assert "three" not in repr(kept)
    # The email as the log's keyed digest (`forget` matches it), never its bare sha256
    assert sorted((s.email_digest, s.email_hash) for s in kept.samples) == sorted(
        (store.edge.digest("email", e), None) for e in ("ann@example.com", "bob@example.com"))
    assert store.edge.forget(fields_scope("42"), lambda s: s.rf_user_id == "7") == 1
    assert [s.rf_user_id for s in store.edge.refusals(fields_scope("42")).samples] == ["8"]


def test_a_run_stopped_at_the_page_the_operator_gave_up_on_ends_there_and_only_there(store, clock):
    """`bridge dlq discard` of a run's page stops the run only while it is running at that page: a stale letter of a
    page done since stops nothing. The run ends stopped, saying why, its dead-letter wait kept apart."""
    store.sync.start("42", "full", "users", clock())
    store.sync.claim_page("42", 1, 0, "w1", clock())
    assert store.sync.checkpoint("42", 1, 0, "w1", clock(), cursor="c1", counts={"enrolled": 2})
    assert not store.sync.stop("42", 1, 0, clock(), "page 1 discarded")               # done since: not stopped
    assert not store.sync.stop("42", 2, 1, clock(), "no such run")
    store.sync.claim_page("42", 1, 1, "w2", clock())                                  # a worker held it last
    clock.now += 30
    assert store.sync.stop("42", 1, 1, clock(), "page 2 discarded", paused=20.0)
    run = store.sync.run("42")
    assert (run.status, run.message, run.finished_at, run.paused, run.owner) == (
        "stopped", "page 2 discarded", clock(), 20.0, None)
    assert not store.sync.stop("42", 1, 1, clock(), "again")                           # once
    assert store.sync.start("42", "full", "users", clock()).number == 2


def test_a_run_whose_first_page_is_sent_again_counts_its_time_from_then_unless_a_worker_took_that_page(store, clock):
    store.sync.start("42", "full", "users", clock())
    clock.now += 1800
    assert store.sync.begin_again("42", 1, clock())
    assert store.sync.run("42").started_at == clock()
    assert not store.sync.begin_again("42", 2, clock())
    store.sync.claim_page("42", 1, 0, "w1", clock(), lease=60)
    clock.now += 30
    assert not store.sync.begin_again("42", 1, clock())                   # a worker holds the page
    clock.now += 31
    assert store.sync.begin_again("42", 1, clock())                       # its lease ran out: it died
    store.sync.claim_page("42", 1, 0, "w2", clock())
    assert store.sync.checkpoint("42", 1, 0, "w2", clock(), cursor="c1", counts={"enrolled": 2})
    assert not store.sync.begin_again("42", 1, clock() + 100)             # past its first page
    assert store.sync.run("42").started_at == clock()


def test_a_merged_contacts_ledger_entry_moves_to_the_survivor_only_over_an_entry_naming_no_rf_user(store, clock):
    from chalicelib.ports.store import LedgerEntry
    seed_ledger(store.sync, "42", [LedgerEntry("lead", "enrolled", email="a@x.io", rf_user_id="7", url="u", run=1),
                                   LedgerEntry("user", "already_in_campaign", email="a@x.io", run=2),
                                   LedgerEntry("other", "enrolled", email="b@x.io", rf_user_id="8", run=1)])
    taken = LedgerEntry("user", "enrolled", email="a@x.io", rf_user_id="7", url="u", run=1)
    assert not store.sync.move("42", "lead", dataclasses.replace(taken, rf_user_id="9"))   # not the lead's RF user
    assert not store.sync.move("42", "lead", dataclasses.replace(taken, contact_id="other"))  # names an RF user
    assert store.sync.move("42", "lead", taken)
    assert store.sync.entries("42", ["lead", "user", "other"], consistent=True) == {
        "user": dataclasses.replace(taken, at=store.sync.entries("42", ["user"])["user"].at),
        "other": dataclasses.replace(LedgerEntry("other", "enrolled", email="b@x.io", rf_user_id="8", run=1),
                                     at=store.sync.entries("42", ["other"])["other"].at)}     # left as it was
    assert not store.sync.move("42", "lead", taken)                                        # once


def test_a_ledger_entry_read_before_is_rewritten_only_over_an_entry_naming_the_same_rf_user(store):
    """A page rewrites the entries it read (seen by a full run, a link written): never one a merge moved meanwhile,
    nor one `bridge forget` deleted, nor one naming another RF user since."""
    from chalicelib.ports.store import LedgerEntry
    read = [LedgerEntry(c, "enrolled", email=f"{c}@x.io", rf_user_id=r, url="u", run=1)
            for c, r in (("kept", "7"), ("moved", "8"), ("forgotten", "9"), ("other", "10"))]
    seed_ledger(store.sync, "42", read)
    store.sync.move("42", "moved", dataclasses.replace(read[1], contact_id="survivor"))
    store.sync.forget("42", "forgotten@x.io")
    store.sync.forget("42", "other@x.io")
    seed_ledger(store.sync, "42", [dataclasses.replace(read[3], rf_user_id="11")])
    seen = [dataclasses.replace(e, seen_run=2) for e in read]
    assert store.sync.rewrite("42", seen) == {"kept"}
    assert {e.contact_id: (e.rf_user_id, e.seen_run) for e in store.sync.ledger("42")} == {
        "kept": ("7", 2), "survivor": ("8", 0), "other": ("11", 0)}
    assert store.sync.rewrite("42", []) == set()


def test_an_adopted_ledger_entry_is_written_only_while_the_link_of_her_own_join_is_kept(store):
    """A page adopts referrers their own join enrolled: Ann's entry is written while her join's link is kept, not once
    `bridge forget` erased it (nor one of someone never linked)."""
    from chalicelib.ports.store import LedgerEntry
    link = joined(store, entries=())
    adopted = [LedgerEntry(c, "already_enrolled", email=f"{c}@x.io", rf_user_id=r, run=1, adopted=True)
               for c, r in (("c1", ANN.rf_user_id), ("c2", "8"))]
    assert store.sync.adopt("42", adopted) == {"c1"}
    assert [e.contact_id for e in store.sync.ledger("42")] == ["c1"]
    store.sync.forget("42", "c1@x.io")
    store.links.erase(link)
    assert store.sync.adopt("42", adopted[:1]) == set() and list(store.sync.ledger("42")) == []


def test_a_move_recording_what_it_left_records_the_time_backfill_took_the_baseline_it_held_there(store, clock):
    """LeftContact.baseline_at: the take's time the link held as it left the contact (Link.baseline_at then), and
    LeftContact.last_moved_at its move to it (Link.last_moved_at then); the take kept
    when a later take on the contact moved to replaces the link's (a late notification of the contact left, from
    before its take, is no change: LeftContact.held). Read back as written (a later write holds to it as read). (She
    joined at 50, before all of it: the view of the contact the join linked begins there, Link.joined_since.)"""
    clock.now = 50.0
    link = joined(store)
    assert store.links.take_baselines([(link, "No", "custom_attributes.signed_up", [])], read_at=100.4) == [True]
    moved = store.links.move(store.links.get(ANN), "c2", [Entry("contact", "merged")], when=200.0, left=True)
    assert (moved.baseline_at, moved.left_then("c1").baseline_at) == (100.0, 100.0)
    assert moved.left_then("c1").email == link.email is not None       # (her email then: LeftContact.email)
    assert store.links.get(ANN) == moved
    assert store.links.take_baselines([(moved, "Yes", "custom_attributes.signed_up", [])], read_at=300.0) == [True]
    now = store.links.get(ANN)
    assert (now.baseline_at, now.left_then("c1").baseline_at, now.left_then("c1").held(now).viewed_since) == \
        (300.0, 100.0, 100.0)
    # (and when it had moved to the contact it leaves: a move recording nothing it left, the duplicate check's leaving
    # her lead in Intercom before 2026-11-28, too)
    again = store.links.move(store.links.move(now, "c3", [], when=400.0), "c4", [], when=500.0, left=True)
    assert (again.left_then("c3").last_moved_at, again.left_then("c3").held(again).moved_at) == (400.0, 400.0)
    assert again.left_then("c1").last_moved_at is None and store.links.get(ANN) == again
