"""`bridge forget <lead>` stopped between its steps (the process killed, the SQS send failing), or
racing `bridge backfill --apply` counting the same lead, never leaves the referrer's Intercom count
stale, nor an entry about the erased lead (docs/how-it-works.md, "Referral counts"): the erasure marks the lowered
count as owing its write in the link's own delete, and reconciliation asks for the writes still owed."""
from __future__ import annotations

import pytest
from botocore.exceptions import EndpointConnectionError

from chalicelib.domain.link import JoinResult, LinkStatus, PersonRef
from chalicelib.ports.store import COUNT_ASK_GRACE
from chalicelib.services.backfill import backfill
from chalicelib.services.privacy import forget
from chalicelib.services.reconcile import reconcile
from tests.fakes import FakeWork
from tests.support.killed import Killed
from tests.unit.scenario import joined, run, settings
from tests.unit.test_referral_count import RITA, WS, counting_settings, lead_join, sent, world

LEAD = PersonRef("42", "1")



def counting(counts_from_the_start: bool = True) -> tuple[FakeWork, dict]:
    """Rita (her contact linked by her own join) and her lead 1, whose join was applied with the
    campaign keeping counts, or before it did (then RF lists the lead for backfill to count)."""
    work = world(queue=True)
    if not counts_from_the_start:
        work.store.settings.put("42", settings(rule=None), WS)
    _, rita = joined(work, "100", "rita@example.com", kind="referrer", role="user")
    run(work, lead_join("1"), lead_join("2"))
    run(work, *sent(work))
    if not counts_from_the_start:
        work.store.settings.put("42", counting_settings(), WS)
        work.rf = work.apis.rf                                           # type: ignore  (what backfill reads)
        work.apis.rf_.created += [{"id": int(u), "campaign_id": "42", "email": f"lead{u}@example.com",
                                   "first_name": f"L{u}", "type": "lead", "referrer_id": 100} for u in ("1", "2")]
    return work, rita


def count_of(rita: dict):
    return rita["custom_attributes"].get("referral_count")


@pytest.mark.parametrize("stop", [Killed(), EndpointConnectionError(endpoint_url="https://sqs.eu-west-1.amazonaws.com")],
                         ids=["killed", "send_failed"])
def test_a_forget_stopped_after_erasing_and_before_asking_for_the_write_is_repaired_by_reconciliation(stop):
    work, rita = counting()
    assert count_of(rita) == 2
    send_many = work.queue.send_many

    def stopped(messages, delay=0):
        raise stop
    work.queue.send_many = stopped                    # type: ignore
    with pytest.raises(type(stop)):
        forget(work, "lead1@example.com")
    work.queue.send_many = send_many                  # type: ignore
    assert work.store.links.referrals(RITA).n == 1 and count_of(rita) == 2      # lowered, not written
    assert forget(work, "lead1@example.com")["links"] == 0                      # again: nothing left to erase
    run(work, *sent(work))
    work.clock.now += COUNT_ASK_GRACE + 1
    assert reconcile(work)["referral_count_writes"] == 1
    run(work, *sent(work))
    assert count_of(rita) == 1
    assert "referral_count_writes" not in reconcile(work) and sent(work) == []   # asked once


def test_a_forget_that_asked_leaves_reconciliation_a_check_that_writes_nothing_more():
    work, rita = counting()
    forget(work, "lead1@example.com")
    run(work, *sent(work))
    assert count_of(rita) == 1
    updates = work.apis.intercom_.calls.count("update")
    assert reconcile(work).get("referral_count_writes") is None                 # within its grace: not asked
    work.clock.now += COUNT_ASK_GRACE + 1
    assert reconcile(work)["referral_count_writes"] == 1
    run(work, *sent(work))
    assert count_of(rita) == 1 and work.apis.intercom_.calls.count("update") == updates   # Intercom had it


def test_a_forget_killed_after_the_links_delete_leaves_nothing_about_the_lead_once_run_again():
    work, rita = counting()
    erase = work.store.history.erase

    def killed_at_the_history(ref):
        if ref == LEAD:
            raise Killed()
        return erase(ref)
    work.store.history.erase = killed_at_the_history  # type: ignore
    with pytest.raises(Killed):
        forget(work, "lead1@example.com")
    work.store.history.erase = erase                  # type: ignore
    assert work.store.links.get(LEAD) is None
    assert forget(work, "lead1@example.com")["history_entries"] > 0            # run again: its history goes
    assert work.store.history.entries(LEAD) == []
    assert work.store.lookup.look_up(emails=[(WS, "lead1@example.com")]).by_email == {}
    work.clock.now += COUNT_ASK_GRACE + 1
    reconcile(work)
    run(work, *sent(work))
    assert count_of(rita) == 1


def test_a_forget_that_read_the_lead_before_backfill_counted_them_asks_for_the_count_it_lowered():
    work, rita = counting(counts_from_the_start=False)
    look_up = work.store.lookup.look_up

    def read_then_backfill(**kw):
        found = look_up(**kw)                         # the lead's link: counted for nobody yet
        backfill(work, "42", apply=True)              # meanwhile: counted for Rita, and written
        run(work, *sent(work))
        assert count_of(rita) == 2
        return found
    work.store.lookup.look_up = read_then_backfill    # type: ignore
    assert forget(work, "lead1@example.com")["referral_counts_rewritten"] == 1
    run(work, *sent(work))
    assert work.store.links.referrals(RITA).n == 1 and count_of(rita) == 1
    assert work.store.history.entries(LEAD) == []


def test_a_counted_entry_backfill_writes_while_forget_erases_the_lead_does_not_outlive_them():
    """Backfill counts the lead (its "counted" entry written with the link) just after forget erased
    the lead's history: nothing about the lead is left, and Rita's count matches Intercom's."""
    work, rita = counting(counts_from_the_start=False)
    erase = work.store.history.erase

    def erased_then_backfill(ref):
        gone = erase(ref)
        if ref == LEAD:
            work.store.history.erase = erase          # type: ignore
            backfill(work, "42", apply=True)
            run(work, *sent(work))
        return gone
    work.store.history.erase = erased_then_backfill   # type: ignore
    forget(work, "lead1@example.com")
    run(work, *sent(work))
    assert work.store.history.entries(LEAD) == []
    assert count_of(rita) == work.store.links.referrals(RITA).n == 1           # lead 2, counted by that backfill


def test_forgetting_an_old_lead_of_a_forgotten_referrer_leaves_the_count_of_her_new_leads():
    work, rita = counting()                                   # Rita's leads 1 and 2 counted: 2
    forget(work, "rita@example.com")
    assert work.store.links.referrals(RITA) is None
    work.clock.now += 3600                                    # she comes back: her lead 3 joins
    run(work, lead_join("3"))
    run(work, *sent(work))
    assert work.store.links.referrals(RITA).n == 1
    forget(work, "lead1@example.com")
    assert work.store.links.referrals(RITA).n == 1            # was 0


def lead_of_25_referrers() -> FakeWork:
    """ann@example.com joined 25 campaigns as a lead, each time with another referrer, who counts her."""
    work = FakeWork(BRIDGE_QUEUE_URL="memory://queue")
    for n in range(25):
        campaign = str(100 + n)
        work.store.settings.put(campaign, {**counting_settings(), "campaign_id": campaign}, WS)
        claim = work.store.links.claim(PersonRef(campaign, "7"), WS)
        assert claim is not None
        work.store.links.finish(claim, JoinResult(LinkStatus.LINKED, kind="lead", email="ann@example.com",
                                                  contact_id="c1", counts_for="100"), [])
    return work


def test_forgetting_a_lead_counted_by_25_referrers_asks_for_their_25_counts_in_3_sends():
    work = lead_of_25_referrers()
    assert forget(work, "ann@example.com")["referral_counts_rewritten"] == 25
    asked = sent(work)
    assert sorted(m["campaign_id"] for m in asked) == [str(100 + n) for n in range(25)]
    assert work.queue.batch_calls == [10, 10, 5]                  # SendMessageBatch calls, not 25 sends


def test_a_count_sqs_refuses_in_a_batch_is_said_and_reconciliation_asks_for_it_again():
    """SQS sends the rest of the batch and refuses one entry: forget says so (not a silent drop),
    finishes the erasure, and reconciliation asks for the write that count still owes."""
    work = lead_of_25_referrers()
    work.queue.refuse = lambda m: "InternalError: try again" if isinstance(m, dict) and m["campaign_id"] == "113" else None
    done = forget(work, "ann@example.com")
    assert done["referral_counts_rewritten"] == (
        "25, 1 of them not yet written to Intercom: SQS refused 1 of 25 message(s): InternalError: try again "
        "(reconciliation's next run writes them)")
    assert len(sent(work)) == 24 and done["links"] == 25 and forget(work, "ann@example.com")["links"] == 0
    work.queue.refuse = lambda m: None
    work.clock.now += COUNT_ASK_GRACE + 1
    assert reconcile(work)["referral_count_writes"] == 25
    assert "113" in {m["campaign_id"] for m in sent(work)}
