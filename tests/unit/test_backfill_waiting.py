"""`bridge backfill` and a join that waits (LinkStatus.WAITING: its try ended in errors.Deferred, a 429's
pause or search catching up, and its message waits in the queue): it did not fail."""
from __future__ import annotations

from chalicelib.domain.link import JoinResult, LinkStatus, PersonRef
from chalicelib.services.backfill import backfill
from tests.unit.test_answers import SETTINGS, WS, Backfilling


def test_backfill_does_not_count_a_join_waiting_in_the_queue_as_failed_earlier():
    """A dry run during an Intercom 429 pause said "failed earlier: would be joined again" for every join
    waiting its turn in the queue (backfill tells only LINKED, IGNORED and IN_PROGRESS apart; WAITING fell
    through to RETRY, the FAILED bucket): the operator reads failures that never happened."""
    users = [{"id": 2, "email": "a@x.co", "type": "person_invited", "referrer_id": 1}]
    rt = Backfilling(users)
    rt.store.settings.put("42", SETTINGS, WS)
    claim = rt.store.links.claim(PersonRef("42", "2"), WS)
    rt.store.links.finish(claim, JoinResult(LinkStatus.WAITING, email="a@x.co",
                                            reason="Intercom answered 429: rate limited"), [])
    outcomes = backfill(rt, "42").view()["outcomes"]
    assert sum(outcomes.values()) == 1
    assert "failed earlier: would be joined again" not in outcomes, outcomes
