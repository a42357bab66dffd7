"""Rate limits are shared budgets: two workers (two Lambdas) draw from one DynamoDB-backed
budget, so Referral Factory never answers 429 — let alone blocks our IP."""
from __future__ import annotations

import dataclasses

from infra.local.esm import QueuePoller

from .conftest import lead_settings
from .test_join_flow import new_lead


def test_two_workers_share_one_rf_budget_and_never_hit_rfs_limit(bridge, rf, intercom, clock):
    import app as app_module
    from chalicelib.runtime import Runtime, reset_default_runtime

    rf.rate_limit = 5                                     # RF's limit per minute in this test
    budget = dataclasses.replace(bridge.rt.config, rf_calls_per_minute=5)
    bridge.rt.config = budget
    other = Runtime(budget, clock=clock, sleeper=clock.sleep)        # a second, concurrent Lambda
    bridge.apply(lead_settings())
    leads = [new_lead(rf, email=f"p{i}@example.com") for i in range(12)]
    for lead in leads:
        bridge.post_join({"id": lead["id"], "campaign_id": 42})       # each needs GET /users/{id}

    second_batches = []

    def second_lambda(event, context):
        second_batches.append(len(event["Records"]))
        reset_default_runtime(other)
        try:
            return app_module.worker(event, context)
        finally:
            reset_default_runtime(bridge.rt)

    sqs = bridge.resources.client("sqs")
    pollers = [bridge.poller, QueuePoller(sqs, bridge.resources.queue_url, bridge.resources.queue_arn,
                                          second_lambda, batch_size=3)]
    for minute in range(4):
        for poller in pollers:
            poller.poll_once()
        pollers[0].drain()
        clock.now += 60                                               # a minute passes
        for poller in pollers:
            poller.expire_inflight()
    assert len(intercom.contacts) == 12 and bridge.dead_letters() == []
    assert sum(second_batches) > 0, "the second Lambda took part"
    assert [r for r in rf.requests if r["status"] == 429] == []
    assert not rf.blocked
