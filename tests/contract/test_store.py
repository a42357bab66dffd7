"""What every store promises the services (chalicelib/ports/store.py), proved on both
implementations: claims and leases, event-time ordering, only-forward qualification, the pending
index, pointers, history, and the small repositories."""
from __future__ import annotations

import pytest

from chalicelib.domain.history import Entry
from chalicelib.domain.link import Claim, ContactState, JoinResult, Link, LinkStatus, PersonRef
from chalicelib.domain.qualification import QState
from chalicelib.ports import Busy

ANN = PersonRef("42", "7")
WS = "ws1"


def joined(store, ref=ANN, *, contact="c1", email="Ann@Example.com", kind="lead", pending=True,
           entries=(Entry("join", "linked"),)) -> Link:
    claim = store.links.claim(ref, WS)
    store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind=kind, email=email.lower(), contact_id=contact,
                                         contact_role="lead", baseline="No",
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
    with pytest.raises(Busy):
        store.links.claim(ANN, WS)
    clock.now += 121
    second = store.links.claim(ANN, WS)
    assert second is not None and second.token != first.token
    with pytest.raises(Busy):
        store.links.finish(first, JoinResult(LinkStatus.LINKED, contact_id="c1"), [])
    store.links.finish(second, JoinResult(LinkStatus.LINKED, contact_id="c2"), [])
    assert store.links.get(ANN).contact_id == "c2"


def test_a_failed_join_keeps_what_it_created_for_the_next_claim(store, clock):
    claim = store.links.claim(ANN, WS)
    store.links.note_created(claim, "c9", "No")
    assert store.links.get(ANN).contact_id == "c9"
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


def test_get_many_reads_only_the_links_that_exist(store):
    joined(store)
    joined(store, PersonRef("42", "8"), contact="c2", email="bob@example.com")
    got = store.links.get_many([ANN, PersonRef("42", "8"), PersonRef("42", "nobody")])
    assert set(got) == {ANN, PersonRef("42", "8")} and got[ANN].contact_id == "c1"


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


def test_arming_is_recorded_with_its_entry(store):
    armed = store.links.arm(joined(store), [Entry("evaluation", "not_met")])
    assert armed.armed and store.links.get(ANN).armed and outcomes(store)[-1] == "not_met"


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
    released = store.links.start_qualifying(first.links[0])
    store.links.finish_qualifying(released, QState.PENDING, [Entry("qualification", "retrying")], reason="503")
    assert [l.ref for l in store.links.pending(None, 10).links] == refs[:2]
    assert outcomes(store, refs[3])[-1] == "stopped"


# --- history ---------------------------------------------------------------------------------------
def test_history_keeps_the_order_counts_repeats_and_expires(store, clock):
    store.history.append(ANN, [Entry("a", "one", "r1", {"k": 1}), Entry("b", "two")])
    store.history.note_repeat(ANN, "join", "again")
    store.history.note_repeat(ANN, "join", "again")
    entries = store.history.entries(ANN)
    assert [(e.event, e.outcome, e.count) for e in entries] == [("a", "one", None), ("b", "two", None),
                                                                 ("join", "ignored", 2)]
    assert entries[0].details == {"k": 1} and entries[0].reason == "r1"
    assert {e.expires_at for e in entries} == {int(clock()) + 400 * 86400}


def test_erasing_a_link_takes_its_history_and_its_contact_pointer(store):
    link = joined(store)
    store.history.note_repeat(ANN, "join", "again")
    assert store.links.erase(link) == (2, 1)
    assert store.links.get(ANN) is None and store.history.entries(ANN) == []
    assert store.lookup.look_up(contacts=[(WS, "c1")]).linked_to_contact(WS, "c1") == []


# --- the small repositories ------------------------------------------------------------------------
def test_settings_are_versioned_and_read_in_batches(store):
    assert store.settings.put("42", {"campaign_id": "42"}, WS) == 1
    assert store.settings.put("42", {"campaign_id": "42", "v": 2}, WS) == 2
    stored = store.settings.get("42")
    assert (stored.version, stored.workspace, stored.document) == (2, WS, {"campaign_id": "42", "v": 2})
    assert store.settings.get("9") is None
    assert store.settings.documents(["42", "9"]) == {"42": {"campaign_id": "42", "v": 2}}
    assert store.connections.workspaces() == {WS}


def test_a_reconnect_keeps_what_it_is_not_given(store):
    store.connections.put_workspace("ws2", secrets={"token", "client-secret"}, api_base="https://eu")
    store.connections.put_workspace("ws2", secrets={"token"})
    conn = store.connections.workspace("ws2")
    assert (conn.status, conn.api_base, conn.secrets) == ("active", "https://eu", {"token", "client-secret"})
    assert store.connections.workspace("nope") is None and store.connections.rf() is None
    store.connections.put_rf(secrets={"token"})
    store.connections.put_rf(secrets={"webhook-secret"})
    assert store.connections.rf().secrets == {"token", "webhook-secret"}


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


def test_an_oauth_state_is_used_once(store, clock):
    assert store.connections.use_oauth_state("n-1", clock() + 600) is True
    assert store.connections.use_oauth_state("n-1", clock() + 600) is False
    assert store.connections.use_oauth_state("n-2", clock() + 600) is True


def test_the_cursor_and_the_rate_windows(store):
    assert store.cursor.get() is None
    store.cursor.set("x#1")
    assert store.cursor.get() == "x#1"
    store.cursor.set(None)
    assert store.cursor.get() is None
    assert [store.rates.take_slot("rf", 60, 2, ttl=600) for _ in range(3)] == [True, True, False]
    assert store.rates.take_slot("rf", 120, 2, ttl=600)
