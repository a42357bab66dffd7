"""A join ignored under `action: nothing` is applied by `bridge backfill --apply` once the settings'
action creates (the hint `bridge explain` gives for it), through the worker, on the store's twin
and fake APIs: once, never doubled, and counted for its referrer once. RF sending such a join again is
not applied either, and `bridge explain` says so."""
from __future__ import annotations

import dataclasses

import pytest
from typing import Any, Iterable

from chalicelib.adapters.memory import MemoryLinks
from chalicelib.domain.link import Link, LinkStatus, PersonRef
from chalicelib.messages import JoinMessage
from chalicelib.services.backfill import BackfillError, backfill
from chalicelib.services.explain import as_text, explain
from chalicelib.webhooks import rf_person
from tests.fakes import FakeApis, FakeIntercom, FakeRF, FakeWork
from tests.unit.scenario import history, link_of, run

NOTHING = {"campaign_id": "42", "workspace": "ws",
           "leads": {"action": "nothing"}, "referrers": {"action": "nothing"}}
CREATE = {**NOTHING, "leads": {"action": "create_lead", "fields": [{"from": "email", "to": "email"}]}}
LEAD = {"id": 7, "campaign_id": 42, "email": "noth@example.com", "type": "person_invited", "referrer_id": 3}
REFERRER = {"id": 3, "campaign_id": 42, "email": "rita@example.com", "type": "person_referring", "referrer_id": None}
COUNT = "custom_attributes.referral_count"


class Running:
    """What backfill is given, over the worker's own twin and fakes."""

    def __init__(self, work: FakeWork):
        self.work, self.store, self.queue, self.clock = work, work.store, work.queue, work.clock

    def rf(self) -> FakeRF:
        return self.work.apis.rf_


def world(settings: dict = NOTHING) -> FakeWork:
    work = FakeWork(FakeApis(FakeIntercom(), FakeRF({"7": LEAD, "3": REFERRER})))
    work.apis.rf_.created += [REFERRER, LEAD]           # RF's list of the campaign's people
    work.store.settings.put("42", settings, "ws")
    return work


def join(user: dict) -> dict:
    """RF's webhook of the person's join, as the edge queues it."""
    return JoinMessage(campaign_id="42", rf_user_id=str(user["id"]), person=rf_person(user)).wire()


def joined_under_nothing(settings: dict = NOTHING) -> FakeWork:
    work = world(settings)
    assert run(work, join(LEAD))["done"] == 1
    assert run(work, join(REFERRER))["done"] == 1
    assert link_of(work).status is LinkStatus.IGNORED and work.apis.intercom_.contacts == {}
    work.queue.sent.clear()
    return work


def joins_queued(work: FakeWork) -> list[dict]:
    return [m for m in work.queue.sent if m.get("kind") == "rf.join"]


def test_a_join_ignored_under_nothing_is_sent_again_by_backfill_once_the_action_creates_and_makes_one_contact():
    work = joined_under_nothing()
    hint = next(e for e in explain(work, "noth@example.com").view()["trail"] if e["outcome"] == "ignored")["hint"]
    assert "set `leads.action` to create_lead or create_user" in hint and "`bridge backfill 42 --apply`" in hint
    work.store.settings.put("42", CREATE, "ws")           # what the hint says: the action, then backfill
    dry = backfill(Running(work), "42")
    assert dry.view()["outcomes"] == {"ignored under action nothing, now create_lead: would be joined again": 1,
                                      "already applied: nothing to do by the settings": 1}     # (the referrer's)
    assert work.queue.sent == [] and link_of(work).status is LinkStatus.IGNORED      # a dry run changes nothing
    done = backfill(Running(work), "42", apply=True)
    assert done.view()["outcomes"] == {"ignored under action nothing, now create_lead: joined again": 1,
                                       "already applied: nothing to do by the settings": 1}
    [message] = joins_queued(work)
    assert done.queued == 1 and message["rf_user_id"] == "7"
    assert link_of(work).status is LinkStatus.WAITING          # claimable by the worker: not a repeat
    # delivered twice (SQS at least once), and a second backfill before the worker ran: one contact
    again = backfill(Running(work), "42", apply=True)
    assert again.view()["outcomes"] == {"waiting (in the queue, or dead-lettered before its next try): joined again": 1,
                                        "already applied: nothing to do by the settings": 1}
    assert run(work, message, *joins_queued(work)[1:])["done"] == 2
    assert run(work, message)["done"] == 1
    [contact] = work.apis.intercom_.contacts.values()
    assert (contact["email"], contact["role"]) == ("noth@example.com", "lead")
    link = link_of(work)
    assert (link.status, link.contact_id) == (LinkStatus.LINKED, contact["id"])
    assert history(work)[:5] == [("join_received", "received"), ("join", "ignored"), ("join", "resent"),
                                 ("join_received", "received"), ("contact", "created")]
    work.queue.sent.clear()
    last = backfill(Running(work), "42", apply=True)
    assert last.view()["outcomes"] == {"already linked": 1, "already applied: nothing to do by the settings": 1}
    assert joins_queued(work) == []
    # explain tells it, and the ignored join's hint is gone (it was followed)
    text = as_text(explain(work, "noth@example.com"))
    assert "join: resent — sent again by `bridge backfill 42 --apply`: the join was ignored under leads.action " \
           "nothing, and the settings now say create_lead" in text
    assert f"Intercom contact {contact['id']} (lead)" in text and "contact: created" in text
    assert "hint: to send them" not in text


def test_a_join_ignored_under_nothing_that_rf_sends_again_says_it_was_not_applied_and_backfill_sends_it():
    """Scenario: leads.action nothing, Noth joins (ignored); the operator applies create_lead; RF re-sends
    Noth's join. Expected: explain says the repeat was not applied (ignored under `leads.action: nothing`) and
    that `bridge backfill 42 --apply` sends it now. Before: "it had already been applied (x1)", no hint."""
    work = joined_under_nothing()
    assert run(work, join(LEAD))["done"] == 1               # RF re-sends it while the action is still nothing
    [repeat] = [e for e in explain(work, "noth@example.com").view()["trail"] if e["outcome"] == "repeated"]
    assert "set `leads.action` to create_lead or create_user" in repeat["hint"]
    work.store.settings.put("42", CREATE, "ws")
    assert run(work, join(LEAD))["done"] == 1               # and again once it creates: still not applied
    assert work.apis.intercom_.contacts == {}
    [repeat] = [e for e in explain(work, "noth@example.com").view()["trail"] if e["outcome"] == "repeated"]
    said = ("the same join arrived again and was not applied: the person's join was ignored under "
            "`leads.action: nothing`, and a repeat is not applied again")
    assert (repeat["event"], repeat["reason"], repeat["count"], repeat["hint"]) == (
        "join", said, 2, "`bridge backfill 42 --apply` sends it now (leads.action is create_lead)")
    text = as_text(explain(work, "noth@example.com"))
    assert f"join: repeated — {said} (x2)" in text
    assert "hint: `bridge backfill 42 --apply` sends it now (leads.action is create_lead)" in text
    assert "already been applied" not in text


def test_a_referrer_ignored_under_nothing_stays_ignored_while_their_side_still_says_nothing():
    work = joined_under_nothing()
    work.store.settings.put("42", CREATE, "ws")
    backfill(Running(work), "42", apply=True)
    assert link_of(work, "3").status is LinkStatus.IGNORED
    assert [m["rf_user_id"] for m in joins_queued(work)] == ["7"]


def test_an_ignored_lead_counted_for_their_referrer_is_counted_once_when_sent_again():
    counting = {**NOTHING, "referrers": {"action": "create_user", "fields": [{"from": "email", "to": "email"}]},
                "sync": {"referral_count_attribute": COUNT}}
    work = world(counting)
    run(work, join(LEAD))
    assert link_of(work).counted_for == "3" and work.store.links.referrals(PersonRef("42", "3")).n == 1
    work.store.settings.put("42", {**counting, "leads": CREATE["leads"]}, "ws")
    work.queue.sent.clear()
    backfill(Running(work), "42", apply=True)
    run(work, *joins_queued(work))
    link = link_of(work)
    assert (link.status, link.counted_for) == (LinkStatus.LINKED, "3")
    assert work.store.links.referrals(PersonRef("42", "3")).n == 1         # not twice


class StaleReads:
    """The links' twin whose batched read (not consistent) answers with the copies held when it was
    made stale, as DynamoDB's eventually consistent read may just after a write."""

    def __init__(self, links: MemoryLinks):
        self.links, self.stale = links, {ref: held.link for ref, held in links.tables.links.items()}

    def get_many(self, refs: Iterable[PersonRef], consistent: bool = False) -> dict[PersonRef, Link]:
        if consistent:
            return self.links.get_many(refs, consistent=True)
        return {ref: self.stale[ref] for ref in (PersonRef(*r) for r in refs) if ref in self.stale}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.links, name)


def test_a_join_reopened_by_backfill_is_applied_even_when_the_workers_read_still_shows_it_ignored():
    work = joined_under_nothing()
    stale = StaleReads(work.store.links)           # the copies before backfill reopened the join
    work.store.settings.put("42", CREATE, "ws")
    backfill(Running(work), "42", apply=True)
    assert link_of(work).status is LinkStatus.WAITING
    work.deps = dataclasses.replace(work.deps, links=stale)
    [message] = joins_queued(work)
    assert run(work, message)["done"] == 1
    [contact] = work.apis.intercom_.contacts.values()      # applied, not dropped as "already applied"
    link = link_of(work)
    assert (link.status, link.contact_id) == (LinkStatus.LINKED, contact["id"])
    assert ("join", "repeated") not in history(work)


def test_a_reopened_join_whose_send_failed_is_sent_by_the_next_backfill_and_joined_once_counted_once():
    counting = {**NOTHING, "referrers": {"action": "create_user", "fields": [{"from": "email", "to": "email"}]},
                "sync": {"referral_count_attribute": COUNT}}
    work = world(counting)
    run(work, join(LEAD), join(REFERRER))
    assert link_of(work).status is LinkStatus.IGNORED and link_of(work).counted_for == "3"
    work.store.settings.put("42", {**counting, "leads": CREATE["leads"]}, "ws")
    work.queue.sent.clear()
    work.queue.refuse = lambda m: "ServiceUnavailable" if isinstance(m, dict) and m.get("kind") == "rf.join" else None
    with pytest.raises(BackfillError, match=r"could not be queued \(SQS refused 1 of 1 message\(s\): ServiceUnavailable\): "
                                            "run backfill again"):
        backfill(Running(work), "42", apply=True)
    assert joins_queued(work) == [] and link_of(work).status is LinkStatus.WAITING     # reopened, nothing queued
    work.queue.refuse = lambda m: None
    again = backfill(Running(work), "42", apply=True)
    assert again.queued == 1 and [m["rf_user_id"] for m in joins_queued(work)] == ["7"]
    run(work, *joins_queued(work))
    [lead] = [c for c in work.apis.intercom_.contacts.values() if c["email"] == "noth@example.com"]
    link = link_of(work)
    assert (link.status, link.contact_id, link.counted_for) == (LinkStatus.LINKED, lead["id"], "3")
    assert work.store.links.referrals(PersonRef("42", "3")).n == 1         # not twice
