"""AWS throttling the bridge's own table is DynamoDB's outage, waited out as a vendor's is (domain/outage.py): a
record the throttle holds for longer than BRIDGE_MAX_ATTEMPTS tries uses up none, is never dead-lettered within the
outage budget, and is worked once the throttle ends; a reward already sent is not sent again (RF is asked first).
On the store's in-memory twin, which throttles as the table does (MemoryStore.throttle)."""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Optional

from chalicelib.domain.qualification import QState
from chalicelib.observability import metrics
from tests.fakes import FakeWork
from tests.support.meanwhile import after
from tests.support.sqs import Sqs
from tests.unit.scenario import check, joined, link_of, set_value, world

HOUR = 3600.0


def qualified_then_throttled(hours: float, budget: Optional[float] = None) -> tuple[FakeWork, Sqs]:
    """A lead meets the rule; RF qualifies them (the reward), and from then on DynamoDB throttles the table for
    `hours`, which the check waits through (the outage budget: `budget` hours)."""
    work = world()
    if budget is not None:
        work.config = replace(work.config, outage_hours=budget)
    link, contact = joined(work)
    set_value(work, contact, "Yes")
    metrics.clear_metrics()
    sqs, start = Sqs(work), work.clock()
    sqs.send(json.dumps(check()), start)
    with after(work.apis.rf_, "qualify", lambda: work.store.throttle(work.clock() + hours * HOUR)):  # from RF's yes on
        sqs.run_until(start + hours * HOUR)
    return work, sqs


def test_a_qualification_whose_write_the_throttled_table_refuses_waits_and_pays_the_reward_once():
    # What a user sees: RF qualified the lead (the reward is paid), then DynamoDB throttled the table for three
    # hours: each try of the check failed on the throttle, and after BRIDGE_MAX_ATTEMPTS (3) of them the check was
    # dead-lettered "gave up after 3 tries", the lead left `qualifying` until someone replayed it.
    work, sqs = qualified_then_throttled(3)
    waits = len(work.queue.deferred)
    assert work.queue.dead == [] and waits > work.config.max_attempts and sqs.due     # still waiting, no try used
    assert {d.tries for d in work.queue.deferred} == {0}
    assert sum(metrics.metric_set["AWSThrottled"]["Value"]) == waits                 # the dashboard's count
    sqs.run_until(work.clock() + 48 * HOUR)
    assert sqs.due == [] and work.queue.dead == []
    assert link_of(work).qualification is QState.QUALIFIED
    rf = work.apis.rf_
    assert rf.qualified == ["7"] and rf.calls.count("qualify 7") == 1       # the reward once: RF was asked first


def test_past_the_outage_budget_a_throttled_record_is_dead_lettered_saying_dynamodb_throttled_it():
    work, sqs = qualified_then_throttled(3, budget=2)
    [letter] = work.queue.dead
    assert letter["reason"] == ("DynamoDB unavailable for 2 h (BRIDGE_OUTAGE_HOURS): DynamoDB throttled the "
                                "bridge's calls — replay it once DynamoDB answers again (`bridge dlq replay`)")
    assert letter["attempts"] == 1


def test_a_join_batch_whose_finishing_write_the_table_throttles_waits_and_logs_it_in_one_line(monkeypatch):
    """The joins' one finishing write met the throttle (a batch step, not one record's): every join waits, as the
    outage a throttle is, and the log said it at ERROR level with a traceback, as a bug in the batch's own steps."""
    import io

    from chalicelib.observability import logger
    from tests.unit.scenario import run
    from tests.unit.test_join_use_case import join, world as joins_world
    work = joins_world()
    finish_many = work.store.links.finish_many

    def throttled_from_then_on(done):
        work.store.throttle(work.clock() + HOUR)
        return finish_many(done)
    monkeypatch.setattr(work.store.links, "finish_many", throttled_from_then_on)
    written = io.StringIO()
    before = logger.registered_handler.setStream(written)
    try:
        assert run(work, join())["waiting"] == 1 and work.queue.dead == []
    finally:
        logger.registered_handler.setStream(before)
    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    assert [line["level"] for line in lines if line["message"] == "batch of records failed: DynamoDB throttled "
            "finish_many (ProvisionedThroughputExceededException: The level of configured provisioned throughput "
            "for the table was exceeded)"] == ["WARNING"]
    assert not any("exception" in line or line["level"] == "ERROR" for line in lines)
