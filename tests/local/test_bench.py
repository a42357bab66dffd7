"""`make bench`'s machinery on a stack of its own: the floors are what docs/performance.md says they are
(counted, not timed), and the figures run end to end. The timings themselves are never asserted."""
import dataclasses
import os

import pytest

from infra.local.aws import unique_prefix

TINY = dict(ack_samples=3, ack_round=2, e2e_samples=1)


@pytest.fixture(scope="module")
def bench_stack():
    from bench.stack import BenchStack
    from chalicelib.runtime import reset_default_runtime

    saved = dict(os.environ)
    stack = BenchStack(prefix=unique_prefix("bench"))
    yield stack
    stack.close()
    os.environ.clear()
    os.environ.update(saved)
    reset_default_runtime(None)


@pytest.fixture
def mode():
    from bench.figures import QUICK
    return dataclasses.replace(QUICK, **TINY)


def test_the_floor_worker_makes_only_the_calls_a_join_requires(bench_stack, mode):
    from bench.figures import calls_per_join

    rows = {r.figure: r for r in calls_per_join(bench_stack, mode)}
    floors = {name: row.floor for name, row in rows.items()}
    assert floors == {"Intercom calls per join": 1.2,      # 1 search (IN) + 1 create each + 1 tag call, per 10
                      "RF calls per join": 0.0,
                      "DynamoDB writes per join": 1.0,     # the link, conditionally
                      "DynamoDB reads per join": 0.1}      # 1 BatchGetItem of the links per batch
    assert all(row.project is not None for row in rows.values())


def test_the_webhook_floor_and_both_routes_make_one_aws_call_each(bench_stack, mode):
    from bench.figures import webhook_ack

    rows = {r.figure: r for r in webhook_ack(bench_stack, mode)}
    calls = rows["AWS calls per webhook (both routes)"]
    assert (calls.floor, calls.project) == (1.0, 1.0)
    assert {"webhook ack p50, referral-factory", "webhook ack p50, intercom"} <= set(rows)
    assert bench_stack.in_queue() == 0, "the queues are emptied after the rounds"


def test_end_to_end_sees_a_join_and_a_qualification_through(bench_stack, mode):
    from bench.figures import end_to_end

    rows = end_to_end(bench_stack, mode)
    assert [r.figure for r in rows if "p50" in r.figure] == [
        "end to end p50, join: RF webhook -> contact tagged in Intercom",
        "end to end p50, qualification: Intercom webhook -> RF"]
    assert all(r.floor and r.project for r in rows)


def test_the_cold_starts_run_the_worker_as_a_lambda_container_beside_both_floors(bench_stack, mode):
    """Fresh processes: the worker's init runs as on Lambda (its clients made before the first record;
    the figure refuses a child that did not), beside the floor and the stack alone."""
    from bench.figures import cold_start

    rows = cold_start(bench_stack, dataclasses.replace(mode, cold_samples=1))
    assert [r.figure for r in rows] == ["cold start of the stack alone (its imports + the floor)",
                                        "worker cold start, an Intercom event", "worker cold start, a join"]
    assert all(r.floor and r.project for r in rows)


def test_the_sync_figure_runs_a_contact_sync_through_to_its_end(bench_stack, mode):
    """Its setup connects a workspace and RF as an operator would (the connect checks apply to it too)."""
    from bench.figures import sync_rate

    rows = sync_rate(bench_stack, dataclasses.replace(mode, sync_contacts=12, sync_workers=1))
    assert [r.figure.split(",")[0] for r in rows] == ["sync: RF calls/min", "sync: contacts enrolled/min"]
    assert "12 enrolled" in rows[1].note and "status done" in rows[1].note
