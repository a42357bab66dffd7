"""The operator's CLI runs on AWS's time (adapters/aws_clock.py): the shared budgets' slices are seconds of
each caller's clock, and a laptop's clock may be seconds off the workers' (AWS's)."""
from __future__ import annotations

from email.utils import formatdate
from typing import Any

import pytest

from chalicelib.adapters.aws_clock import AwsClock
from chalicelib.adapters.memory import MemoryRates
from chalicelib.adapters.ratelimit import SharedLimiter
from tests.fakes import FakeClock
from tests.support.virtual_time import VirtualTime, busiest


def date(at: float) -> str:
    """An HTTP `Date` as AWS stamps it: whole seconds."""
    return formatdate(at, usegmt=True)


def test_the_offset_from_aws_is_bounded_by_each_answer_and_narrows_with_more():
    aws = FakeClock(now=1_790_000_000.25)
    laptop = AwsClock(lambda: aws() + 10.0)                     # 10 s ahead
    assert not laptop.known and laptop() == aws() + 10.0        # nothing said yet: its own clock
    sent = laptop.local()
    aws.now += 0.1                                              # the request's way there; AWS stamps it
    stamped = date(aws())
    aws.now += 0.1                                              # and the answer's way back
    laptop.answered(sent, laptop.local(), stamped)
    assert laptop.known and abs(laptop() - aws()) <= 0.5 + 0.1  # to half a second and half the round trip
    assert laptop.surely_off(9) and not laptop.surely_off(11)
    for _ in range(20):                                         # answers stamped at other fractions of a second
        aws.now += 0.37
        at = laptop.local()
        laptop.answered(at, at, date(aws()))
    assert abs(laptop.offset + 10.0) < 0.05 and laptop.error < 0.05


def test_the_earliest_aws_time_may_be_is_never_later_than_its_time_though_the_estimate_may_be_ahead():
    """`bridge dlq replay` stamps its note by the estimate (the middle of what the answers say), ahead of the
    workers' clocks by up to half the span: a try it sent could write before it by time. `earliest` is never
    ahead of AWS's time (a worker's entries, written after, are not earlier), and the local clock until known."""
    aws = FakeClock(now=1_790_000_000.1)                        # stamped early in its second: the estimate runs ahead
    laptop = AwsClock(lambda: aws() + 5.0)
    assert laptop.earliest() == laptop.local()                  # nothing known yet
    sent = laptop.local()
    aws.now += 0.05
    stamped = date(aws())
    aws.now += 0.05
    laptop.answered(sent, laptop.local(), stamped)
    assert laptop() - aws() > 0.3                               # the estimate: ahead, as in a walk (~0.4 s)
    assert aws() - 1.2 <= laptop.earliest() <= aws()            # no later than AWS's time, by at most the span
    for _ in range(20):
        aws.now += 0.37
        at = laptop.local()
        laptop.answered(at, at, date(aws()))
        assert laptop.earliest() <= aws()


def test_a_clock_set_meanwhile_is_learned_again_and_an_answer_without_a_date_says_nothing():
    aws = FakeClock(now=1_790_000_000.6)
    skew = {"by": 10.0}
    laptop = AwsClock(lambda: aws() + skew["by"])
    for _ in range(5):
        aws.now += 0.3
        laptop.answered(laptop.local(), laptop.local(), date(aws()))
    skew["by"] = 0.0                                            # synced (`hwclock -s`) while the command runs
    laptop.answered(laptop.local(), laptop.local(), date(aws()))
    assert abs(laptop() - aws()) <= 0.5 and not laptop.surely_off(0.5)
    for no_date in (None, "", "soon", "Fri, 27 Nov 2026 06:00:00 +9999999999999"):    # (its zone overflows)
        laptop.answered(laptop.local(), laptop.local(), no_date)
    assert abs(laptop() - aws()) <= 0.5


class TableOnAwsTime:
    """The table as the CLI reaches it: every answer carries AWS's `Date` (the true time)."""

    def __init__(self, rates: MemoryRates, true: VirtualTime, clock: AwsClock):
        self.rates, self.true, self.clock = rates, true, clock

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.rates, name)

        def answered(*args: Any, **kw: Any) -> Any:
            sent = self.clock.local()
            try:
                return call(*args, **kw)
            finally:
                self.clock.answered(sent, self.clock.local(), date(self.true()))
        return answered


@pytest.mark.parametrize("off", [10.0, -10.0])
def test_an_operators_cli_with_a_clock_off_shares_the_rf_budget_with_the_workers(off):
    """Two workers and `bridge backfill` on a laptop whose clock is `off`, all calling RF as fast as the
    shared budget lets them: no 60 s holds more than RF's 600 calls (with the laptop's own clock: 672)."""
    clock, rates = VirtualTime(), MemoryRates()
    taken: list[float] = []

    def container(windows: Any, time: Any) -> None:
        rf = SharedLimiter(windows, "referral-factory", 600, 60, vendor="Referral Factory", block_status=403,
                           clock=time, sleeper=clock.sleep, max_wait=3600)
        for _ in range(600):
            rf.acquire()
            taken.append(clock())
            clock.sleep(0.1)
    laptop = AwsClock(lambda: clock() + off)
    cli = TableOnAwsTime(rates, clock, laptop)
    clock.run([lambda: container(rates, clock), lambda: container(rates, clock), lambda: container(cli, laptop)])
    assert busiest(taken, 60) <= 600 and busiest(taken, 61) <= 600
