"""Rate limits are shared budgets: several workers (several Lambdas) draw from one budget in
DynamoDB, no 60 s span anywhere holds more than it, a 429 slows every worker, and Referral Factory
never gets to block our IP. What waits does so in the queue, without using up a try."""
from __future__ import annotations

import dataclasses
import re
import time

import pytest

from infra.local.esm import QueuePoller
from tests.support.cli import run_cli
from tests.support.moto_sorting import sort_by_plain_values

from .conftest import MAX_ATTEMPTS, lead_settings, new_lead


def second_worker(bridge, config, clock, batch_size=10):
    """Another Lambda container: its own runtime (caches, clients, limiters), the same queue and table."""
    import app as app_module
    from chalicelib.runtime import Runtime, reset_default_runtime

    other = Runtime(config, clock=clock, sleeper=clock.sleep)

    def handler(event, context):
        reset_default_runtime(other)
        try:
            return app_module.worker(event, context)
        finally:
            reset_default_runtime(bridge.rt)
    sqs = bridge.resources.client("sqs")
    return QueuePoller(sqs, bridge.resources.queue_url, bridge.resources.queue_arn, handler, batch_size=batch_size)


def work_through(bridge, pollers, clock, step=20.0, rounds=200) -> int:
    """Both workers take batches in turn until the queue is empty; whenever nothing is visible,
    time passes by `step` (what waits comes back: delays and visibility timeouts end)."""
    for round_ in range(rounds):
        while sum(p.poll_once().received for p in pollers):
            pass
        if bridge.queued() == 0:
            return round_
        clock.now += step
        for poller in pollers:
            poller.expire_inflight()
        pollers[0].release_delayed()
    raise AssertionError(f"the queue did not empty: {bridge.queued()} messages left")


def test_two_workers_share_one_small_rf_budget_and_never_hit_rfs_limit(bridge, rf, intercom, clock):
    rf.rate_limit = 5                                     # RF's limit per minute in this test
    budget = dataclasses.replace(bridge.rt.config, rf_calls_per_minute=5)
    bridge.rt.config = budget
    bridge.apply(lead_settings())
    leads = [new_lead(rf, email=f"p{i}@example.com") for i in range(12)]
    for lead in leads:
        bridge.post_join({"id": lead["id"], "campaign_id": 42})       # each needs GET /users/{id}
    second = second_worker(bridge, budget, clock, batch_size=3)
    work_through(bridge, [bridge.poller, second], clock)
    assert len(intercom.contacts) == 12 and bridge.dead_letters() == []
    assert [r for r in rf.requests if r["status"] == 429] == [] and not rf.blocked
    assert rf.busiest() <= 5                              # in any 60 s, not only RF's own windows
    # The waits were the bridge's own budget's, and say so: RF limited nothing, and was not called for them.
    waits = [e["reason"] for lead in leads for e in bridge.history(42, lead["id"])["history"] if e["event"] == "waiting"]
    assert waits and all(w.startswith("the bridge's own shared Referral Factory budget (5 calls per 60s) is spent for "
                                      "now: Referral Factory was not called (the next slot is ") for w in waits), waits


@pytest.mark.slow
def test_rfs_budget_partly_spent_elsewhere_and_a_burst_of_150_joins(bridge, rf, intercom, clock, monkeypatch):
    """Issue 7, break 5: another tool spends 400 of RF's 600 calls in every RF minute (whose windows
    are not ours), and 150 joins arrive at once, each needing two RF calls. The first 429 pauses
    both workers until RF's reset and lowers the budget; the work waits in the queue, not in tries.
    (moto's queries, the 150 histories' above all, sort the table by plain values: tests/support.)"""
    sort_by_plain_values(monkeypatch)
    rf.spend_elsewhere(400)
    rf.window_offset = 23.0
    intercom.define_attribute("referrer", "string")
    doc = lead_settings()
    doc["leads"]["fields"].append({"from": "referrer_name", "to": "custom_attributes.referrer"})
    bridge.apply(doc)
    leads = [new_lead(rf, email=f"p{i}@example.com", first_name=f"P{i}") for i in range(150)]
    for lead in leads:
        assert bridge.post_join({"id": lead["id"], "campaign_id": 42}).status_code == 202   # GET user + referrer
    work_through(bridge, [bridge.poller, second_worker(bridge, bridge.rt.config, clock)], clock)

    assert not rf.blocked and len(rf.excess_windows) <= 1       # RF blocks after more than 3
    assert len(intercom.contacts) == 150 and bridge.dead_letters() == []
    assert {c["custom_attributes"].get("referrer") for c in intercom.contacts.values()} == {"Rita"}
    refused = [r for r in rf.requests if r["status"] == 429]
    assert 0 < len(refused) <= 20, f"{len(refused)} calls were refused with 429"
    waited = [bridge.history(42, lead["id"])["history"] for lead in leads]
    assert any(e["event"] == "waiting" for h in waited for e in h)      # the history says why it was slow
    assert all(e["event"] != "dead_letter" for h in waited for e in h)
    assert MAX_ATTEMPTS == 3


@pytest.mark.slow
def test_several_limiters_in_parallel_never_put_more_than_the_budget_in_any_60s_span(bridge, rf, monkeypatch):
    """Six containers, each with its own limiter (and client), call RF as fast as they may, in
    parallel threads; the clock moves only when all of them wait. RF's windows start at second 41."""
    from chalicelib.adapters.dynamo import DynamoStore
    from chalicelib.adapters.ratelimit import SharedLimiter
    from chalicelib.adapters.referral_factory import ReferralFactoryClient
    from tests.support.moto_atomic import atomic_dynamodb
    from tests.support.virtual_time import VirtualTime, busiest

    atomic_dynamodb(monkeypatch)
    clock = VirtualTime()
    rf.clock, rf.window_offset = clock, 41.0
    calls: list[float] = []

    def container() -> None:
        limiter = SharedLimiter(DynamoStore(clock).rates, "referral-factory", 600, 60, vendor="Referral Factory",
                                block_status=403, clock=clock, sleeper=clock.sleep, max_wait=3600)
        client = ReferralFactoryClient(rf.base_url, "rf-token", limiter=limiter, clock=clock, sleeper=clock.sleep)
        for _ in range(200):
            client.get_campaign("42")
            calls.append(clock())
            clock.sleep(0.1)                                  # the call's own time (RF answers at once here)
    clock.run([container] * 6)
    assert len(calls) == 1200 and rf.count("GET") == 1200
    assert rf.excess_windows == [] and rf.busiest() <= 600 and busiest(calls, 61) <= 600
    rate = 1200 / ((max(calls) - min(calls)) / 60)
    assert rate >= 540                                        # RF's 600/min used at 90% or more


def test_the_cli_runs_on_aws_time_whatever_the_computers_clock_says(bridge, capsys, monkeypatch):
    """`bridge` on a laptop whose clock is 10 s ahead: from the table's first answer (its `Date`: the local
    stack's is this machine's true time) it runs on AWS's time, as the workers do, and `doctor` says so."""
    from chalicelib.adapters.dynamo import models
    from chalicelib.cli import _runtime
    from chalicelib.config import Config

    monkeypatch.setattr(models, "_clients", {})         # as in a new `bridge` process: no table client made yet
    monkeypatch.setattr(models, "_bound", ())
    ahead = _runtime(Config.from_env(), local=lambda: time.time() + 10.0)
    code, out, _ = run_cli(ahead, capsys, "doctor", "42")
    assert abs(ahead.clock() - time.time()) < 1.5
    said = re.search(r"\n  warn \[clock\] this computer's clock is (\d+\.\d) s ahead of AWS's \(±(0\.\d) s\): "
                     r"the bridge runs on AWS's time\n        why: .*\n        fix: sync this computer's clock", out)
    assert said and abs(float(said.group(1)) - 10) <= float(said.group(2)) + 0.1, out   # (AWS's Date: whole seconds)
    code, out, _ = run_cli(_runtime(Config.from_env()), capsys, "doctor", "42")
    assert re.search(r"\n  ok  \[clock\] this computer's clock agrees with AWS's \(to ±0\.\d s\)\n", out)
