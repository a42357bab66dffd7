"""Use case: reconciliation's check of a pending lead, and the reconcile run that queues them."""
from __future__ import annotations

import pytest

from chalicelib.domain.link import ContactState
from chalicelib.domain.qualification import QState
from chalicelib.errors import Permanent
from chalicelib.services.reconcile import reconcile
from tests.unit.scenario import check, history, joined, link_of, made, run, set_value, settings, world


def test_a_check_reads_the_contact_and_qualifies_without_any_webhook():
    work = world()
    link, contact = joined(work)
    set_value(work, contact, "yes")                                    # case differs: still the target
    assert run(work, check()) == {"done": 1, "retry": 0, "dead": 0}
    assert work.apis.rf_.qualified == ["7"] and work.apis.intercom_.calls == ["get"]


# A contact made after the person joined is theirs since: its value is a change. One made before, that changed
# since, may have had the target all along: not qualified by itself (its history names the fix).
MADE = pytest.mark.parametrize("before_the_join, qualified", [(False, ["7"]), (True, [])])


@MADE
def test_a_merged_contact_410_moves_the_link_and_reads_the_survivor(before_the_join, qualified):
    work = world()
    link, contact = joined(work)
    survivor = made(work, work.apis.intercom_.add("ann.work@example.com", role="user", signed_up="Yes"),
                    before_the_join)
    work.apis.intercom_.merge(contact["id"], survivor["id"])
    run(work, check())
    assert link_of(work).contact_id == survivor["id"] and work.apis.rf_.qualified == qualified
    assert (("qualification_baseline_unknown", "ignored") in history(work)) == before_the_join


def test_a_merge_without_a_canonical_link_is_a_clear_dead_letter():
    work = world()
    link, contact = joined(work)
    work.apis.intercom_.merge(contact["id"], None)
    assert run(work, check())["dead"] == 1
    assert "was merged but Intercom gave no canonical link" in work.queue.dead[0]["reason"]


@MADE
def test_a_404_finds_the_contact_with_the_same_email(before_the_join, qualified):
    work = world()
    link, contact = joined(work)
    del work.apis.intercom_.contacts[contact["id"]]
    replacement = made(work, work.apis.intercom_.add("ann@example.com", role="user", signed_up="Yes"),
                       before_the_join)
    run(work, check())
    assert link_of(work).contact_id == replacement["id"] and ("contact", "moved") in history(work)
    assert work.apis.rf_.qualified == qualified


def test_a_contact_gone_for_good_is_marked_and_leaves_the_pending_index():
    work = world()
    link, contact = joined(work)
    del work.apis.intercom_.contacts[contact["id"]]
    run(work, check())
    assert link_of(work).contact_state is ContactState.DELETED
    assert history(work)[-2:] == [("contact", "deleted"), ("reconciliation", "stopped")]
    assert work.store.links.pending(None, 10).links == []


def test_a_check_of_a_campaign_without_a_rule_any_more_reads_nothing_and_keeps_the_lead_for_a_rule_again():
    work = world()
    joined(work)
    work.store.settings.put("42", settings(rule=None), "ws")
    run(work, check())
    assert history(work)[-1] == ("reconciliation_no_rule", "ignored") and work.apis.intercom_.calls == []
    assert [link.rf_user_id for link in work.store.links.pending(None, 10).links] == ["7"]


def test_a_failed_qualification_is_checked_again_only_on_a_replay():
    work = world()
    link, contact = joined(work)
    work.apis.rf_.answers = [Permanent("Referral Factory answered 422: paused")]
    set_value(work, contact, "Yes")
    run(work, check())
    assert link_of(work).qualification is QState.FAILED
    run(work, check())
    assert work.apis.intercom_.calls == ["get"]                          # skipped: not even read
    run(work, check(replayed_from="dead-1"))
    assert work.apis.rf_.qualified == ["7"]


def test_invalid_settings_skip_the_check_with_a_counted_note_but_a_replay_says_why():
    work = world()
    joined(work)
    work.store.settings.put("42", {"campaign_id": "42", "workspace": "ws", "leads": {"action": "fly"}}, "ws")
    assert run(work, check()) == {"done": 1, "retry": 0, "dead": 0}
    assert history(work)[-1] == ("reconciliation_settings_invalid", "ignored")
    assert run(work, check(replayed_from="dead-1"))["dead"] == 1


def test_reconcile_queues_the_pending_leads_oldest_first_and_resumes_where_it_stopped():
    work = world()
    for user in ("1", "2", "3"):
        joined(work, user, email=f"p{user}@example.com")
    joined(work, "4", email="r@example.com", kind="referrer")
    assert reconcile(work, limit=2) == {"queued": 2, "round_complete": False, "searches": 0, "overdue": 0}
    assert reconcile(work, limit=2) == {"queued": 1, "round_complete": True, "searches": 0, "overdue": 0}
    assert [m["rf_user_id"] for m in work.queue.sent] == ["1", "2", "3"]
    assert work.store.cursor.get() is None
