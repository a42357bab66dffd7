import pytest

from urllib3.exceptions import ConnectTimeoutError

from chalicelib.adapters.http import retry_policy
from chalicelib.adapters.ratelimit import SharedLimiter
from chalicelib.errors import Transient
from chalicelib.adapters.memory import MemoryRates
from tests.fakes import FakeClock


class Resp:
    def __init__(self, headers, status=429):
        self.headers, self.status = headers, status


def policy(clock, taken, max_wait=20):
    return retry_policy(clock, clock.sleep, lambda: taken.append(clock()), max_wait)


def test_retry_honours_x_ratelimit_reset_then_takes_a_slot():
    clock, taken = FakeClock(), []
    retry = policy(clock, taken)
    retry.sleep(Resp({"X-RateLimit-Reset": str(int(clock()) + 4)}))
    assert 4 <= clock.slept[0] <= 4.5 and len(taken) == 1


def test_retry_honours_retry_after():
    clock, taken = FakeClock(), []
    policy(clock, taken).sleep(Resp({"Retry-After": "2"}))
    assert 2 <= clock.slept[0] <= 2.5


def test_a_wait_too_long_for_a_lambda_goes_back_to_the_queue():
    clock, taken = FakeClock(), []
    with pytest.raises(Transient) as exc:
        policy(clock, taken).sleep(Resp({"Retry-After": "3600"}))
    assert exc.value.retry_after >= 3600 and clock.slept == [] and taken == []


def test_backoff_grows_with_jitter_and_stays_capped():
    clock, taken = FakeClock(), []
    retry = policy(clock, taken, max_wait=5)
    for _ in range(3):
        retry = retry.increment(method="POST", url="/contacts", error=ConnectTimeoutError())
    assert 0 < retry.get_backoff_time() <= 5


def test_retry_policy_covers_429_5xx_and_every_method():
    retry = policy(FakeClock(), [])
    assert all(retry.is_retry("POST", s) for s in (429, 500, 502, 503, 504))
    assert not retry.is_retry("POST", 400) and not retry.is_retry("PUT", 422)


def test_shared_limiter_waits_for_the_next_window_when_the_budget_is_spent():
    clock, slots = FakeClock(now=600.0), MemoryRates()
    limiter = SharedLimiter(slots, "rf", limit=3, window=60, clock=clock, sleeper=clock.sleep, max_wait=120)
    for _ in range(4):
        limiter.acquire()
    assert len(clock.slept) == 1 and 60 <= clock.slept[0] <= 60.1
    assert sorted(slots.windows.values()) == [1, 3]


def test_shared_limiter_gives_work_back_rather_than_wait_too_long():
    clock, slots = FakeClock(now=600.0), MemoryRates()
    limiter = SharedLimiter(slots, "rf", limit=1, window=60, clock=clock, sleeper=clock.sleep, max_wait=20)
    limiter.acquire()
    with pytest.raises(Transient, match="budget of 1 calls per 60s is spent"):
        limiter.acquire()
    assert clock.slept == []


def test_two_limiters_share_one_budget():
    clock, slots = FakeClock(now=600.0), MemoryRates()
    a, b = (SharedLimiter(slots, "rf", limit=2, window=60, clock=clock, sleeper=clock.sleep, max_wait=0)
            for _ in range(2))
    a.acquire()
    b.acquire()
    with pytest.raises(Transient):
        a.acquire()
