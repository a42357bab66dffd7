"""A worker SIGKILLed between a join's finishing write and its `referral.count` message (the chaos
run's kills, infra/local/chaos): the join's next delivery is a repeat, and the repeat must still ask
for the count to be written (docs/how-it-works.md, "Referral counts": "the count is never lost"), whether the
webhook named the referrer, was thin (the lead's link recorded whom it counted for), or was the
referrer's own join."""
from __future__ import annotations

import pytest

from chalicelib.messages import JoinMessage
from tests.support.killed import Killed
from tests.unit.scenario import run
from tests.unit.test_referral_count import RITA, lead_join, sent, world

REPEAT_ASKS_NOT = "a repeated join asks for the count again (services/join.py _count_later)"



def killed_before_the_count_is_asked(work) -> None:
    """The next `referral.count` send never happens: the worker dies just before it."""
    send_many = work.queue.send_many

    def send_or_die(messages, delay=0):
        if any(isinstance(m, dict) and m.get("kind") == "referral.count" for m in messages):
            work.queue.send_many = send_many          # the restarted worker sends again
            raise Killed()
        send_many(messages, delay)
    work.queue.send_many = send_or_die                # type: ignore


def rita_joins(thin: bool = False) -> dict:
    person = {"id": "100", "campaign_id": "42"} if thin else {
        "id": "100", "campaign_id": "42", "email": "rita@example.com", "first_name": "Rita", "type": "referrer"}
    return JoinMessage(campaign_id="42", rf_user_id="100", person=person).wire()


def thin_lead_join(user: str) -> dict:
    return JoinMessage(campaign_id="42", rf_user_id=user, person={"id": user, "campaign_id": "42"}).wire()


def rita_count(work):
    [rita] = [c for c in work.apis.intercom_.contacts.values() if c.get("email") == "rita@example.com"]
    return rita["custom_attributes"].get("referral_count")


def dies_then_repeats(work, join: dict) -> None:
    """The join is finished, the worker dies before asking for the count, and SQS delivers the join
    again (a repeat); then whatever was asked for is worked."""
    killed_before_the_count_is_asked(work)
    with pytest.raises(Killed):
        run(work, join)
    assert sent(work) == []
    run(work, join)
    run(work, *sent(work))


def test_the_worker_dies_after_a_leads_join_counted_and_the_repeat_writes_the_count():
    """The webhook names the referrer: the repeat asks (`unless_written`)."""
    work = world()
    run(work, rita_joins())
    run(work, *sent(work))
    dies_then_repeats(work, lead_join("1"))
    assert work.store.links.referrals(RITA).n == 1 and rita_count(work) == 1


def test_the_worker_dies_after_the_referrers_own_join_linked_her_and_the_repeat_still_writes_her_count():
    work = world()
    run(work, lead_join("1"), lead_join("2"))          # her leads first: counted and kept, no contact known
    run(work, *sent(work))
    dies_then_repeats(work, rita_joins())
    assert work.store.links.get(RITA) is not None and work.store.links.referrals(RITA).n == 2
    assert rita_count(work) == 2, REPEAT_ASKS_NOT


def test_the_worker_dies_after_a_thin_leads_join_counted_and_the_repeat_still_writes_the_count():
    work = world()
    run(work, rita_joins())
    run(work, *sent(work))
    work.apis.rf_.users["5"] = {"id": 5, "email": "lead5@example.com", "first_name": "L5", "referrer_id": 100}
    dies_then_repeats(work, thin_lead_join("5"))       # the webhook carries only id and campaign_id
    assert work.store.links.referrals(RITA).n == 1
    assert rita_count(work) == 1, REPEAT_ASKS_NOT
