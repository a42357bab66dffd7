"""`bridge forget` erases a person while a worker's batch, which read their link just before, still judges
what Intercom said of them: nothing about the person is written back (docs/operating.md, "Erasure") — no
note of a repeat or of a settled qualification, no judgement's entry, no "another worker is qualifying"
entry for a claim that failed because the link is gone, and no call to Referral Factory."""
from __future__ import annotations

import contextlib
from typing import Callable

import pytest

from chalicelib.domain.history import Entry
from chalicelib.domain.link import PersonRef
from chalicelib.messages import ContactMessage
from chalicelib.ports.store import LedgerEntry
from chalicelib.errors import Deferred, Permanent, Transient
from chalicelib.services import sync
from chalicelib.services.dead_letters import discard, replay
from chalicelib.services.privacy import forget
from chalicelib.services.worker import RetryBatch
from tests.fakes import FakeIntercom, FakeWork, seed_ledger
from tests.unit.scenario import RULE, check, event, joined, made, run, set_value, settings, world
from tests.unit.moves import ATTRIBUTES, ByWorkspace, apply, rita_in_rf
from tests.unit.moves import counting_world as moving_world
from tests.unit.test_referral_count import RITA, lead_join, puts_answer_gone, rita_to_enrol, sent
from tests.unit.test_referral_count import world as counting_world
from tests.unit.test_sync import WS, drain
from tests.unit.test_sync import world as sync_world

ANN = PersonRef("42", "7")


def forgotten_once_read(work: FakeWork) -> None:
    """The next batch reads its links, then `bridge forget ann@example.com` runs."""
    look_up = work.store.lookup.look_up

    def read_then_forgotten(**kw):
        found = look_up(**kw)
        work.store.lookup.look_up = look_up                  # type: ignore
        assert forget(work, "ann@example.com")["links"] == 1
        return found
    work.store.lookup.look_up = read_then_forgotten          # type: ignore


def meets_the_target(work: FakeWork) -> list[dict]:
    _, contact = joined(work)
    return [event(set_value(work, contact, "Yes"))]


def checked_meeting_the_target(work: FakeWork) -> list[dict]:
    _, contact = joined(work)
    set_value(work, contact, "Yes")                          # its webhook lost: reconciliation checks the lead
    return [check()]


def notified_again(work: FakeWork) -> list[dict]:
    _, contact = joined(work)
    run(work, event(contact))
    return [event(contact)]                                  # the same notification: a counted repeat


def changed_once_qualified(work: FakeWork) -> list[dict]:
    _, contact = joined(work)
    run(work, event(set_value(work, contact, "Yes")))
    return [event(contact, notification="n2")]               # "already qualified": a counted note


def duplicate_meets_the_target(work: FakeWork) -> list[dict]:
    work.store.settings.put("42", settings({**RULE, "match": "contact"}), "ws")
    joined(work)
    twin = work.apis.intercom_.add("ann@example.com", signed_up="No")
    return [event(set_value(work, twin, "Yes"), notification="n-dup")]    # does not count: noted for the lead


@pytest.mark.parametrize("before", [meets_the_target, checked_meeting_the_target, notified_again,
                                    changed_once_qualified, duplicate_meets_the_target],
                         ids=["qualify", "check", "repeat", "settled", "duplicate"])
def test_a_batch_that_read_a_link_before_forget_erased_it_writes_nothing_about_the_person(
        before: Callable[[FakeWork], list[dict]]):
    work = world()
    messages = before(work)
    rf_calls = list(work.apis.rf_.calls)
    forgotten_once_read(work)
    run(work, *messages)
    assert work.store.links.get(ANN) is None
    assert work.store.history.entries(ANN) == []
    assert work.apis.rf_.calls == rf_calls


def forgotten_as_intercom_fails(work: FakeWork, error: Exception) -> None:
    """`bridge forget ann@example.com` runs as the worker's next call to Intercom is made, which then fails."""
    intercom = work.apis.intercom_

    def forgotten(name: str) -> None:
        del intercom._call                                   # type: ignore   # (the fake's own, from now on)
        assert forget(work, "ann@example.com")["links"] == 1
        raise error
    intercom._call = forgotten                               # type: ignore


@pytest.mark.parametrize("error, outcome", [
    (Transient("Intercom answered 503: service_unavailable"), "retry"),
    (Permanent("Intercom answered 400: bad_request"), "dead"),
    (Deferred("Intercom answered 429: rate_limited", retry_after=30), "waiting"),
], ids=["retried", "dead-lettered", "waiting"])
def test_a_try_about_a_person_forgotten_meanwhile_that_fails_notes_nothing_about_them(error: Exception, outcome: str):
    """Reconciliation's check of Ann fails as `bridge forget` erases her: the worker's own notes of a failed try
    (its retry, its dead letter, its wait in the queue) are about her too, and none is written (docs/operating.md,
    "Erasure")."""
    work = world()
    messages = checked_meeting_the_target(work)
    forgotten_as_intercom_fails(work, error)
    with pytest.raises(RetryBatch) if outcome == "retry" else contextlib.nullcontext():   # (a retry raises)
        summary = run(work, *messages)
    if outcome != "retry":
        assert summary.get(outcome) == 1
    assert work.store.links.get(ANN) is None
    assert work.store.history.entries(ANN) == []



def once_answered(store: object, method: str, then: Callable[[], object],
                  when: Callable[..., object] = lambda *args: True) -> None:
    """`then` runs as the next `method` call `when` says (of the store or a vendor's fake) answers."""
    real = getattr(store, method)

    def answered(*args, **kw):
        try:
            return real(*args, **kw)
        finally:                                             # (a call that fails too: as it answered)
            if when(*args):
                setattr(store, method, real)
                then()
    setattr(store, method, answered)


def forgotten_once_written(work: FakeWork, store: object, method: str, email: str,
                           when: Callable[..., object] = lambda *args: True) -> None:
    """`bridge forget <email>` runs as the next `method` call `when` says answers: the work's write of what it did
    just before its note about her, or its call before that write."""
    once_answered(store, method, lambda: forget(work, email), when)


@pytest.mark.parametrize("write_back", [None, Deferred("Intercom answered 429: rate_limited", retry_after=30)],
                         ids=["link-written", "link-write-put-off"])
@pytest.mark.parametrize("when", ["ledger-written", "link-sent"])
def test_a_sync_enrolment_of_a_referrer_forgotten_meanwhile_notes_nothing_about_her(write_back, when):
    """A sync page enrols a referrer (RF made her user) and `bridge forget` erases her as the page sends her link to
    Intercom, or writes her ledger entry, the link written or its write put off: neither her ledger entry nor the
    page's note of her enrolment is written back."""
    work = sync_world(1)
    if when == "link-sent":
        forgotten_once_written(work, work.apis.intercom_, "_call", "p0@example.com",
                               lambda name, *args: name == "update")
    else:
        forgotten_once_written(work, work.store.sync, "intend", "p0@example.com",
                               lambda campaign_id, entries: entries[0].rf_user_id)
    if write_back:
        work.apis.intercom_.fail["update"] = write_back
    sync.start(work.deps, "42")
    drain(work, limit=1)
    [user] = work.apis.rf_.created
    assert list(work.store.sync.ledger("42")) == []
    assert work.store.history.entries(PersonRef("42", str(user["id"]))) == []


def test_a_merge_sync_follows_as_her_survivor_takes_her_ledger_entry_and_she_is_forgotten_notes_nothing_about_her():
    """Intercom merged a lead contact sync enrolled into a user; `bridge forget` erases her as the survivor takes
    her ledger entry: the note that sync follows her there is not written back."""
    work = sync_world(0, source="all")
    lead = work.apis.intercom_.add("ann@example.com", role="lead")
    lead["name"] = "Ann"
    sync.start(work.deps, "42")
    drain(work)
    [user] = work.apis.rf_.created
    survivor = work.apis.intercom_.add("ann@example.com", role="user")
    work.apis.intercom_.merge(lead["id"], survivor["id"])
    forgotten_once_written(work, work.store.sync, "move", "ann@example.com")
    sync.on_contact(ContactMessage(workspace=WS, topic="contact.merged", notification_id="n1",
                                   item={**survivor, "merged_from": {"id": lead["id"]}}), work.deps)
    assert list(work.store.sync.ledger("42")) == []
    assert work.store.history.entries(PersonRef("42", str(user["id"]))) == []


@pytest.mark.parametrize("meanwhile", ["merged", "forgotten"])
@pytest.mark.parametrize("page", ["marks-her-seen", "writes-her-link"])
def test_a_page_holding_a_referrer_enrolled_before_writes_her_entry_back_neither_after_a_merge_nor_after_forget(
        meanwhile: str, page: str):
    """Run 1 enrolled Ann's lead contact (her link written, or refused by Intercom). Full run 2's page reads her entry,
    and marks her seen, or writes her link; meanwhile Intercom merges her lead into a user (the merge's notification
    hands her entry to the survivor), or `bridge forget` erases her. The page does not write her entry back: not a
    second entry naming her RF user (`sync report` counted her twice), nor her email and ids after the erasure."""
    work = sync_world(0, source="all")
    intercom = work.apis.intercom_
    lead = intercom.add("ann@example.com", role="lead")
    lead["name"] = "Ann"
    if page == "writes-her-link":
        intercom.fail["update"] = Permanent("Intercom answered 400: bad_request", status=400)
    sync.start(work.deps, "42")
    drain(work)
    [user] = work.apis.rf_.created
    ann = PersonRef("42", str(user["id"]))
    survivor = {}

    def merged() -> None:
        survivor.update(intercom.add("ann@example.com", role="user"))
        intercom.merge(lead["id"], survivor["id"])
        sync.on_contact(ContactMessage(workspace=WS, topic="contact.merged", notification_id="n1",
                                       item={**survivor, "merged_from": {"id": lead["id"]}}), work.deps)
    event = merged if meanwhile == "merged" else lambda: forget(work, "ann@example.com")
    if page == "writes-her-link":
        once_answered(intercom, "update_contact", event)
    else:
        once_answered(work.store.sync, "entries", event)
    sync.start(work.deps, "42")
    drain(work)
    if meanwhile == "merged":
        assert [e.contact_id for e in work.store.sync.ledger("42") if e.rf_user_id == ann.rf_user_id] == \
            [survivor["id"]]
        assert sync.report(work.deps, "42")["enrolled_in_all"] == 1
    else:
        assert list(work.store.sync.ledger("42")) == []
        assert work.store.history.entries(ann) == []


def test_a_page_adopting_a_referrer_her_own_join_enrolled_writes_no_entry_of_hers_once_forget_erased_her():
    """Her own join linked Ann's contact (RF user 7): a sync page adopts her, writing her link, and `bridge forget`
    erases her as Intercom takes it. The page does not write her ledger entry (her email and ids) afterwards."""
    from chalicelib.domain.link import JoinResult, LinkStatus
    work = sync_world(1)
    [ann] = work.apis.intercom_.contacts.values()
    claim = work.store.links.claim(PersonRef("42", "7"), WS)
    work.store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="referrer", email=ann["email"],
                                              contact_id=ann["id"], contact_role="user"), [Entry("join", "linked")])
    work.apis.rf_.users["7"] = {"id": "7", "url": "https://rf.example/r/ann"}
    once_answered(work.apis.intercom_, "update_contact", lambda: forget(work, ann["email"]))
    sync.start(work.deps, "42")
    drain(work)
    assert ann["custom_attributes"]["referral_link"] == "https://rf.example/r/ann"
    assert list(work.store.sync.ledger("42")) == []
    assert work.store.links.get(PersonRef("42", "7")) is None and work.store.history.entries(PersonRef("42", "7")) == []


def test_a_sync_note_made_as_forget_erased_her_link_and_history_but_not_yet_her_ledger_entry_is_erased_with_it():
    """A person with a link and a sync ledger entry: forget erases her link (and history), then the ledger. A sync
    note held to her ledger entry that lands between the two is erased with the entry."""
    work = world()
    _, contact = joined(work)
    seed_ledger(work.store.sync, "42",
                [LedgerEntry(contact["id"], "enrolled", email="ann@example.com", rf_user_id="7")])
    forget_ledger = work.store.sync.forget

    def noted_then_forgotten(*args):
        work.store.links.note(ANN, [Entry("sync", "link_written")], enrolled=contact["id"])
        return forget_ledger(*args)
    work.store.sync.forget = noted_then_forgotten            # type: ignore
    assert forget(work, "ann@example.com")["sync_ledger_entries"] == 1
    assert work.store.history.entries(ANN) == []


def test_a_referral_count_written_as_its_referrer_is_forgotten_notes_nothing_about_her():
    """The count is written to Rita's contact and checked kept; `bridge forget` erases her before its note of the
    write: the note is not written back."""
    work = counting_world(queue=True)
    joined(work, "100", "rita@example.com", kind="referrer", role="user")
    run(work, lead_join("1"))
    forgotten_once_written(work, work.store.links, "referrals_written", "rita@example.com")
    assert run(work, *sent(work))["done"] == 1
    assert work.store.links.referrals(RITA) is None
    assert work.store.history.entries(RITA) == []


def rita_s_contact_deleted(work: FakeWork) -> str:
    """Her own join linked Rita's contact, which Intercom deleted since (its webhook marked her link)."""
    from chalicelib.domain.link import ContactState
    link, rita = joined(work, "100", "rita@example.com", kind="referrer", role="user")
    work.store.links.set_contact(link, [Entry("contact", "deleted", "deleted")], state=ContactState.DELETED)
    del work.apis.intercom_.contacts[rita["id"]]
    return "referrals"


def rita_s_enrolled_contact_deleted(work: FakeWork) -> str:
    """Contact sync enrolled Rita's contact, which Intercom deleted since, and has no other with her email."""
    rita = rita_to_enrol(work)
    sync.start(work.deps, "42")
    run(work, *sent(work, "sync.page"))
    del work.apis.intercom_.contacts[rita["id"]]
    puts_answer_gone(work.apis.intercom_)
    return "drop_referrer_contact"


@pytest.mark.parametrize("kept", [rita_s_contact_deleted, rita_s_enrolled_contact_deleted, "moved away"],
                         ids=["contact-deleted", "enrolled-contact-deleted", "moved-away"])
def test_a_referral_count_kept_as_its_referrer_is_forgotten_notes_nothing_about_her(kept):
    """A lead Rita referred joins; her count cannot be written (her contact was deleted in Intercom, or is in the
    workspace the campaign moved from) and is kept, which her history says. `bridge forget` erases her as the
    count is read (or as it forgets her deleted contact): the note of why it is kept is not written back."""
    if kept == "moved away":
        work, counting = moving_world(ByWorkspace(FakeIntercom(dict(ATTRIBUTES)), rita_in_rf()))
        joined(work, "100", "rita@example.com", kind="referrer", role="user")
        apply(work, {**counting, "workspace": "ws-b"}, move=True)
        method = "referrals"
    else:
        work = counting_world(queue=True)
        method = kept(work)
    run(work, lead_join("1"))
    forgotten_once_written(work, work.store.links, method, "rita@example.com")
    assert run(work, *sent(work))["done"] == 1
    assert work.store.links.referrals(RITA) is None
    assert work.store.history.entries(RITA) == []


@pytest.mark.parametrize("command", [discard, replay], ids=["discard", "replay"])
def test_a_dead_letter_discarded_or_replayed_as_its_person_is_forgotten_notes_nothing_about_them(command):
    """Ann's join failed for good (Intercom refused her contact): a dead letter, and her history says so. `bridge
    forget` erases her while `dlq discard` (or `replay`) holds her letter (forget cannot see it, and says so): the
    command's note that it discarded (replayed) her letter is not written back into her erased history."""
    from chalicelib.config import Config
    from tests.unit.test_join_use_case import join
    from tests.unit.test_join_use_case import world as join_world
    work = join_world()
    work.config = Config.from_env({"BRIDGE_QUEUE_URL": "memory://queue", "BRIDGE_DLQ_URL": "memory://dlq"})
    work.apis.intercom_.fail["create"] = Permanent("Intercom answered 400: bad attribute")
    assert run(work, join())["dead"] == 1
    assert work.store.history.entries(ANN)
    forgotten_once_written(work, work.queue, "hide_dead_many", "ann@example.com")
    assert command(work, reason="bad attribute")["not_seen"] == 0
    assert work.store.links.get(ANN) is None
    assert work.store.history.entries(ANN) == []


def merged_into_a_user(work: FakeWork) -> tuple[dict, dict]:
    """Ann's lead, linked, and the user Intercom merges it into (its webhook: `merge`)."""
    _, lead = joined(work)
    user = made(work, work.apis.intercom_.add("ann@example.com", role="user", signed_up="No"))
    return lead, user


def merge(lead: dict, user: dict) -> dict:
    return event(user, "contact.merged", notification="n-merge", merged_from={"type": "contact", "id": lead["id"]})


def done_at_once(said: dict) -> bool:
    """The batch's one record was done: neither handed back to wait or retry, nor dead-lettered."""
    return (said["done"], said.get("waiting", 0), said["retry"], said["dead"]) == (1, 0, 0, 0)


def naming_ann(work: FakeWork, *contacts: dict) -> list:
    """The contact pointers of `contacts`, and her email's, that still name Ann."""
    found = work.store.lookup.look_up(contacts=[(WS, c["id"]) for c in contacts], emails=[(WS, "ann@example.com")])
    return [key for key, refs in {**found.by_contact, **found.by_email}.items() if ANN in refs]


def test_a_merge_whose_batch_read_the_link_before_forget_erased_it_is_done_without_a_retry():
    """The worker read Ann's link to follow Intercom's merge of her lead into a user; `bridge forget` erased her before
    the move wrote: nothing comes back (no link, no pointer to the user, no history), and the notification is done,
    not sent back to wait (nor to use a try) for somebody the bridge no longer has."""
    work = world()
    lead, user = merged_into_a_user(work)
    forgotten_once_read(work)
    assert done_at_once(run(work, merge(lead, user)))
    assert work.store.links.get(ANN) is None and work.store.history.entries(ANN) == []
    assert naming_ann(work, lead, user) == [] and work.queue.sent == [] and work.queue.dead == []


def test_forget_that_read_the_link_before_a_merge_moved_it_erases_the_survivors_pointer_and_names_both_contacts():
    """`bridge forget` read Ann's link on her lead; the worker followed Intercom's merge of it into a user before the
    erasure wrote. No pointer names her afterwards (the user's neither), and forget names the user as her contact
    (the lead as her former one): the contacts whose dead letters, samples and sync entries it looks for."""
    work = world()
    lead, user = merged_into_a_user(work)
    erase = work.store.links.erase

    def merged_then_erased(link):
        assert done_at_once(run(work, merge(lead, user)))
        return erase(link)
    work.store.links.erase = merged_then_erased          # type: ignore
    said = forget(work, "ann@example.com")
    assert [(p["contact_id"], p.get("former_contact_id")) for p in said["people"]] == [(user["id"], lead["id"])]
    assert work.store.links.get(ANN) is None and work.store.history.entries(ANN) == []
    assert naming_ann(work, lead, user) == []


def test_forget_of_a_link_holding_an_earlier_workspaces_contact_erases_that_workspaces_refusals_of_it():
    """A retry claimed in ws2 (the campaign moved) while the link still holds ws1's contact c_old: the signed
    refusals of ws1 naming c_old are hers, and go; forget names the contact with its workspace."""
    from chalicelib.domain.link import JoinResult, LinkStatus
    from chalicelib.ports.edge import RefusalSample, workspace_scope
    work = FakeWork()
    for ws in ("ws1", "ws2"):
        work.store.connections.put_workspace(ws)
    claim = work.store.links.claim(ANN, "ws1")
    work.store.links.finish(claim, JoinResult(LinkStatus.FAILED, email="ann@example.com", contact_id="c_old",
                                              reason="Intercom answered 500"), [Entry("join", "failed")])
    for contact in ("c_old", "c_bob"):
        work.store.edge.refused(workspace_scope("ws1"), RefusalSample("bad", "2026-11-27T22:00:00Z", "m",
                                                                      contact_id=contact))

    def kept() -> list:
        return sorted(s.contact_id for s in work.store.edge.refusals(workspace_scope("ws1")).samples)
    assert kept() == ["c_bob", "c_old"]
    work.store.links.claim(ANN, "ws2")
    said = forget(work, "ann@example.com")
    assert kept() == ["c_bob"]                  # hers gone, another person's kept
    assert [(p["workspace"], p["contact_id"], p.get("contact_workspace")) for p in said["people"]] == [
        ("ws2", "c_old", "ws1")]
