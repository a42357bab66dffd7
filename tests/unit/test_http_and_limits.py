"""The retry policy and the shared rate limiter, on the store's in-memory twin and injected clocks."""
import math
import random

import pytest
from urllib3.exceptions import ConnectTimeoutError, ProtocolError, ReadTimeoutError

from chalicelib.adapters.http import retry_policy
from chalicelib.adapters.memory import MemoryRates
from chalicelib.adapters.ratelimit import CircuitOpen, SharedLimiter
from chalicelib.domain.budget import BudgetState, Slicing
from chalicelib.errors import Deferred, Transient
from tests.fakes import FakeClock
from tests.support.answering_server import answering
from tests.support.virtual_time import VirtualTime, busiest


class Resp:
    def __init__(self, headers, status=429):
        self.headers, self.status = headers, status

    def get_redirect_location(self):
        return None


def policy(clock, taken, max_wait=20, throttled=None, idempotent=True, retried_later=True):
    return retry_policy(clock, clock.sleep, lambda: taken.append(clock()), max_wait,
                        on_throttled=(throttled.append if throttled is not None else (lambda wait: None)),
                        idempotent=idempotent, vendor="Intercom", retried_later=retried_later)


# --- the retry policy ------------------------------------------------------------------------------
@pytest.mark.parametrize("headers,told", [({"Retry-After": "2"}, 2),
                                          ({"X-RateLimit-Reset": "+4"}, 5)])   # until its whole second has passed
def test_a_429_tells_the_limiter_how_long_everyone_waits_and_the_limiter_does_the_waiting(headers, told):
    clock, taken, throttled = FakeClock(), [], []
    if "X-RateLimit-Reset" in headers:
        headers = {"X-RateLimit-Reset": str(int(clock()) + 4)}
    retry = policy(clock, taken, throttled=throttled)
    retry = retry.increment(method="GET", url="/x", response=Resp(headers))
    retry.sleep(Resp(headers))
    assert throttled == [told] and clock.slept == [] and len(taken) == 1    # the slot is the limiter's wait


def test_a_5xx_with_retry_after_waits_as_told_and_too_long_a_wait_goes_back_to_the_queue():
    clock, taken = FakeClock(), []
    policy(clock, taken).sleep(Resp({"Retry-After": "2"}, status=503))
    assert 2 <= clock.slept[0] <= 2.5 and len(taken) == 1
    with pytest.raises(Transient) as exc:
        policy(clock, taken).sleep(Resp({"Retry-After": "3600"}, status=503))
    assert exc.value.retry_after >= 3600 and not isinstance(exc.value, Deferred)
    assert exc.value.outage == "Intercom"                    # waited out as the vendor's outage


@pytest.mark.parametrize("status", [503, 429])
def test_intercoms_rate_limit_reset_is_a_wait_after_its_429_only_never_after_a_5xx(status):
    # What a user saw: during an Intercom 503 the worker waited up to 10 s per retry inside the Lambda (the
    # X-RateLimit-Reset Intercom sends with every answer, taken for a wait), and the outage said "Intercom
    # answered 503 and asked to wait 10s". After a 5xx only Retry-After is a wait; after a 429 the reset still is.
    from chalicelib.adapters.intercom import IntercomClient
    from chalicelib.errors import WorkError

    clock = FakeClock()
    with answering(status, {}, {"X-RateLimit-Reset": str(int(clock()) + 10)}) as (url, seen):
        api = IntercomClient(url, "t", clock=clock, sleeper=clock.sleep, timeout=2, max_wait=5)
        with pytest.raises(WorkError) as failed:
            api.get_contact("c1")
    if status == 429:   # longer than the client may wait (no limiter: a token check): not waited, said
        assert isinstance(failed.value, Deferred) and failed.value.retry_after >= 10 and clock.slept == []
        assert len(seen) == 1 and failed.value.reason == "Intercom answered 429 and asked to wait 11s"
        return
    assert len(seen) == 4 and max(clock.slept) < 3, clock.slept     # the client's own backoff, 4 calls
    assert failed.value.retry_after is None and failed.value.outage == "Intercom"
    assert failed.value.reason.startswith("Intercom answered 503"), failed.value.reason


@pytest.mark.parametrize("ahead", [0.0, 3.0, -3.0])
def test_after_intercoms_429_the_one_retry_lands_past_its_window_whichever_clock_is_ahead(ahead):
    # What a reviewer saw: calls 2.7 s and 10.05 s into a run, both answered 429. Intercom's window ended at 10.7 s,
    # its X-RateLimit-Reset (whole seconds) said 10, and the retry went at 10: early, the more so with our clock
    # ahead of Intercom's (`ahead`: Intercom's ahead of ours). It waits until the reset's second has passed, by
    # Intercom's clock (its answer's Date): past the window's end, by less than 2 s.
    from chalicelib.adapters.intercom import IntercomClient
    from infra.local.sims.intercom import IntercomSim

    clock = FakeClock(1_790_000_002.7)
    with IntercomSim(clock=lambda: clock() + ahead) as sim:
        sim.rate_limit, sim.window_offset = 2, 0.7                 # its windows end at .7 of a second
        api = IntercomClient(sim.base_url, "sim-token", clock=clock, sleeper=clock.sleep, max_wait=20)
        for _ in range(3):
            api.me()
    assert [r["status"] for r in sim.requests] == [200, 200, 429, 200]
    window_end = math.floor((sim.requests[2]["time"] - 0.7) / 10) * 10 + 10.7      # of the window that said 429
    assert window_end <= sim.requests[-1]["time"] < window_end + 2, (sim.requests[-1]["time"], window_end)


@pytest.mark.parametrize("date", [None, "soon", "Sun, 20 Sep 2026 14:13:20 GMT"])     # none, unread, a day off
def test_a_reset_without_a_date_that_can_be_intercoms_clock_is_counted_from_ours(date):
    from chalicelib.adapters.http import asked_wait

    now = 1_790_000_000.3
    headers = {"X-RateLimit-Reset": "1790000004", **({"Date": date} if date else {})}
    assert asked_wait(headers, 429, now) == pytest.approx(4.7)       # (with the Date a day off: a day's wait)


@pytest.mark.parametrize("date,wait", [("Sat, 19 Sep 2026 14:13:20 GMT", 30.0),      # the vendor's clock, as said
                                       (None, 29.7), ("Sun, 20 Sep 2026 14:13:20 GMT", 29.7)])   # else ours
def test_a_retry_after_date_is_counted_from_the_answers_date_else_from_our_clock_not_the_computers(date, wait):
    # A Retry-After that is an HTTP-date was counted from time.time(): not the injected clock (the CLI's is AWS's
    # time, its computer's clock maybe seconds off), nor the vendor's clock as the reset is.
    from chalicelib.adapters.http import asked_wait

    now = 1_789_827_200.3                                    # Sat, 19 Sep 2026 14:13:20.3 GMT
    headers = {"Retry-After": "Sat, 19 Sep 2026 14:13:50 GMT", **({"Date": date} if date else {})}
    assert asked_wait(headers, 503, now) == pytest.approx(wait)


@pytest.mark.parametrize("answer, outage", [(Resp({}, status=502), "Intercom"), (None, "Intercom"),
                                            (Resp({"Retry-After": "3600"}, status=413), None)])
def test_a_retry_too_long_for_the_lambda_after_a_5xx_or_no_answer_is_the_vendors_outage(answer, outage):
    # What a user sees: Intercom down (502s, or no connection) while the Lambda has little time left for the
    # client's backoff: the join waits for Intercom, rather than using up a try each time until dead-lettered
    # "gave up after 5 tries". A 413 that asks to wait is no outage.
    retry = policy(FakeClock(), [], max_wait=0)
    for _ in range(2):                                       # (the first retry has no backoff)
        retry = retry.increment(method="GET", url="/x", response=answer,
                                error=None if answer else ConnectTimeoutError())
    with pytest.raises(Transient) as exc:
        retry.sleep(answer)
    assert exc.value.outage == outage


@pytest.mark.parametrize("retried_later", [True, False], ids=["the worker", "an operator's command"])
def test_a_wait_too_long_says_the_next_retry_only_to_a_caller_whose_work_is_retried(retried_later):
    # What an operator saw: `bridge doctor 42` during an Intercom 503 said "could not be checked (Intercom answered
    # 503 and next retry in 1s)": doctor retries nothing, nor does any queue retry its call. The worker's work
    # is retried (its message goes back to the queue); a wait the vendor asked for is said to both.
    retry = policy(FakeClock(), [], max_wait=0, retried_later=retried_later)
    for _ in range(2):                                       # (the first retry has no backoff)
        retry = retry.increment(method="GET", url="/x", response=Resp({}, status=503))
    with pytest.raises(Transient) as exc:
        retry.sleep(Resp({}, status=503))
    assert exc.value.reason.startswith("Intercom answered 503 and next retry in ") if retried_later else (
        exc.value.reason == "Intercom answered 503")
    assert exc.value.outage == "Intercom" and exc.value.retry_after > 0
    with pytest.raises(Transient) as told:
        policy(FakeClock(), [], retried_later=retried_later).sleep(Resp({"Retry-After": "3600"}, status=503))
    assert told.value.reason == "Intercom answered 503 and asked to wait 3600s"


def test_backoff_grows_with_jitter_and_stays_capped():
    clock, taken = FakeClock(), []
    retry = policy(clock, taken, max_wait=5)
    for _ in range(3):
        retry = retry.increment(method="POST", url="/contacts", error=ConnectTimeoutError())
    assert 0 < retry.get_backoff_time() <= 5


def test_an_idempotent_request_is_retried_on_429_5xx_and_read_errors():
    retry = policy(FakeClock(), [])
    assert all(retry.is_retry("GET", s) for s in (429, 500, 502, 503, 504))
    assert not retry.is_retry("GET", 400) and not retry.is_retry("PUT", 422)
    assert retry.increment(method="GET", url="/u", error=ReadTimeoutError(None, "/u", "timed out")).read == 2


def test_a_request_that_may_not_be_sent_twice_is_retried_only_when_it_surely_was_not_applied():
    retry = policy(FakeClock(), [], idempotent=False)
    assert retry.is_retry("PUT", 429)
    assert not any(retry.is_retry("PUT", s) for s in (500, 502, 503, 504))
    # not even a 503 (or 413) with Retry-After, which urllib3 retries for any method it is told to
    assert not any(retry.is_retry("PUT", s, has_retry_after=True) for s in (413, 500, 503))
    assert retry.is_retry("PUT", 429, has_retry_after=True)
    assert policy(FakeClock(), []).is_retry("GET", 503, has_retry_after=True)
    assert retry.increment(method="PUT", url="/q", error=ConnectTimeoutError()).connect == 2   # never sent
    for lost in (ReadTimeoutError(None, "/q", "timed out"), ProtocolError("Connection aborted.")):
        with pytest.raises(type(lost)):
            retry.increment(method="PUT", url="/q", error=lost)


# --- slices: no span of the window anywhere over the budget --------------------------------------------
def test_referral_factorys_budget_runs_at_95_percent_and_no_60s_span_can_pass_600():
    rf = Slicing(600, 60, skew=1.0)
    assert rf.sustained() == 570 and rf.sustained() / 600 >= 0.9
    # a span of 60 s (plus 1 s for a call to reach RF) touches at most `spans` slices
    assert rf.spans * rf.cap() <= 600
    assert Slicing(1666, 10, skew=0.5).sustained() == 1359     # Intercom: slices of at least a second
    assert Slicing(5, 60).sustained() == 3                    # a tiny budget: fewer, longer slices
    with pytest.raises(ValueError, match="too small"):
        Slicing(1, 60)


def test_a_429_lowers_the_budget_to_what_the_other_clients_pace_leaves():
    state = BudgetState()
    assert state.lowered(now=1000) == (0.5, 1)                       # nothing known: half
    # all our callers used 200 of RF's 600 in the window that went over: someone else used 400
    assert state.lowered(now=1000, used=200, limit=600) == (pytest.approx(0.8 * 200 / 600), 1)
    # ...and had used them a third of the way through it: at that pace they need the whole window
    assert state.lowered(now=1000, used=400, limit=600, elapsed=1 / 3) == (0.1, 1)    # never below a tenth
    assert BudgetState(share=0.3, lowered_at=0, strikes=1).lowered(0, used=590, limit=600)[0] == 0.3  # never up


@pytest.mark.parametrize("limit,window", [(600, 60), (100, 60), (1666, 10), (45, 60)])
def test_a_lowered_budget_never_runs_below_a_tenth_of_it_rounded_up(limit, window):
    # RF's 600/min lowered to its floor ran at 38/min (6.3%): docs/how-it-works.md says at least a tenth
    budget = Slicing(limit, window)
    assert budget.sustained(0.1) >= math.ceil(limit / 10) and budget.sustained(0.0) >= math.ceil(limit / 10)
    assert all(budget.cap(s / 100) <= budget.cap() for s in range(101))       # never over the whole budget


def test_a_lowered_budget_is_whole_again_within_12_minutes_of_quiet_slower_after_repeats_held_after_the_third():
    # RF paused us for 15 s and the budget fell to its floor: it stays there while the pause lasts...
    floor = BudgetState(pause_until=15, share=0.1, lowered_at=0, strikes=1)
    assert floor.share_at(15) == 0.1 and 0.4 < floor.share_at(15 + 6 * 60) < 0.8
    assert floor.whole_at() <= 15 + 12 * 60 and floor.share_at(15 + 12 * 60) == 1.0   # ...then climbs fast
    second = BudgetState(pause_until=15, share=0.1, lowered_at=0, strikes=2)          # another client shares RF
    assert second.share_at(15 + 12 * 60) < 0.4 and second.share_at(15 + 48 * 60) == 1.0
    last = BudgetState(pause_until=15, share=0.2, lowered_at=0, strikes=3)             # one more window over: RF blocks
    assert last.share_at(86_000) == 0.2 and last.share_at(86_415 + 3600) > 0.2          # held for a day
    assert last.lowered(100)[1] == 4
    # strikes are remembered for hours after the budget is whole again, so repeats still slow it down
    assert floor.lowered(floor.whole_at() + 3600)[1] == 2
    assert floor.lowered(floor.whole_at() + 6 * 3600 + 1)[1] == 1


def limiter(rates, clock, limit=600, window=60, **kw):
    kw.setdefault("max_wait", 3600)
    kw.setdefault("block_status", 403)              # as the runtime makes RF's
    return SharedLimiter(rates, "rf", limit, window, vendor="Referral Factory", clock=clock, sleeper=clock.sleep, **kw)


def test_one_container_takes_its_slots_in_blocks_and_runs_at_the_sustained_rate():
    clock, rates = FakeClock(now=6000.0), MemoryRates()
    writes = []
    reserve = rates.reserve
    rates.reserve = lambda *a, **kw: writes.append(a) or reserve(*a, **kw)
    rf, times = limiter(rates, clock), []
    for _ in range(1200):
        rf.acquire()
        times.append(clock())
    assert busiest(times, 60) <= 585                     # any 60 s, wherever RF's minute starts
    assert 1200 / ((times[-1] - times[0]) / 60) >= 540   # >= 90% of RF's 600/min
    assert len(writes) < 1200 / 5                        # a write reserves several slots


def test_a_slice_after_an_idle_one_starts_with_the_first_block_then_doubles():
    clock, rates = FakeClock(now=6000.0), MemoryRates()
    writes = []
    reserve = rates.reserve
    rates.reserve = lambda budget, slice_id, want, cap, ttl: writes.append(want) or reserve(budget, slice_id, want, cap, ttl)
    intercom = SharedLimiter(rates, "intercom#ws", 1666, 10, skew=0.5, vendor="Intercom", clock=clock,
                             sleeper=clock.sleep, first_block=4)
    for _ in range(4):                     # a cold join's 4 calls: one write
        intercom.acquire()
    assert writes == [4]
    for _ in range(8):
        intercom.acquire()
    assert writes == [4, 4, 8]             # then as many as it used, doubling while it needs more
    clock.now += 5                         # idle slices: the next one starts with the first block again
    intercom.acquire()
    assert writes == [4, 4, 8, 4]
    rf = limiter(rates, clock)             # RF's slices are small: it starts with one slot
    rf.acquire()
    assert writes[-1] == 1


def intercom_limiter(rates, clock, **kw):
    return SharedLimiter(rates, "intercom#ws", 1666, 10, skew=0.5, vendor="Intercom", clock=clock, sleeper=clock.sleep,
                         first_block=4, **kw)


def recorded_wants(rates) -> list[int]:
    writes: list[int] = []
    reserve = rates.reserve
    rates.reserve = lambda budget, slice_id, want, cap, ttl: writes.append(want) or reserve(budget, slice_id, want, cap, ttl)
    return writes


def test_slots_taken_ahead_for_a_batchs_calls_are_one_write_and_its_calls_then_make_none():
    """A batch of 10 new leads takes its 12 calls' slots before its search (one write, not 4 then 8 while ten
    creates wait for the second); holding enough, it writes nothing more; a block is never over half a slice."""
    clock, rates = FakeClock(now=6000.0), MemoryRates()
    writes = recorded_wants(rates)
    intercom = intercom_limiter(rates, clock)
    intercom.ahead(12)
    assert writes == [12]
    intercom.ahead(12)                    # held already: nothing written
    for _ in range(12):
        intercom.acquire()
    assert writes == [12]
    intercom.acquire()                    # the 13th: a block as its calls need (as many as it used)
    assert writes == [12, 12]
    clock.now += 5
    intercom.ahead(10**6)                 # never more than a block may be: half the slice's cap
    assert writes[-1] == (intercom.slicing.cap() + 1) // 2


def test_nothing_is_taken_ahead_while_the_vendor_pauses_or_blocks_us_and_a_failure_is_the_calls_own():
    clock, rates = FakeClock(now=6000.0), MemoryRates()
    writes = recorded_wants(rates)
    intercom = intercom_limiter(rates, clock, max_wait=1)
    intercom.acquire()
    intercom.throttled(30.0)              # Intercom's 429: everyone waits 30 s
    intercom.ahead(12)
    assert writes == [4]
    another = intercom_limiter(rates, clock, max_wait=1)    # another container: it reads the pause from the table
    another.ahead(12)
    assert writes == [4]
    with pytest.raises(Deferred):
        intercom.acquire()
    rf = limiter(rates, clock, max_wait=1)
    rf.acquire()
    with pytest.raises(CircuitOpen):
        rf.answered(403, "blocked")
    rf.ahead(5)
    assert writes == [4, 1]
    clock.now += 60
    broken = intercom_limiter(MemoryRates(), clock)
    broken.windows.reserve = lambda *a, **kw: (_ for _ in ()).throw(Transient("the table throttled"))
    broken.ahead(12)                      # not raised here ...
    with pytest.raises(Transient):        # ... but by the call that needs the slot
        broken.acquire()


@pytest.mark.parametrize("first_block, ahead", [(1, False), (4, False), (1, True)])
def test_several_containers_in_parallel_never_pass_the_budget_in_any_60s(first_block, ahead):
    """Eight containers (each its own limiter), one shared budget; the clock moves only when all of
    them wait, so their reservations really race. A call takes 50-300 ms, now and then seconds.
    `ahead`: now and then a container takes slots ahead for a batch of 1 to 40 calls."""
    clock, rates = VirtualTime(), MemoryRates()
    taken: list[float] = []

    def container(seed: int):
        rf, rng = limiter(rates, clock, first_block=first_block), random.Random(seed)
        for _ in range(150):
            if ahead and rng.random() < 0.1:
                rf.ahead(rng.randint(1, 40))
            rf.acquire()
            taken.append(clock())
            clock.sleep(rng.uniform(0.05, 0.3) if rng.random() > 0.05 else rng.uniform(0, 5))
    clock.run([lambda s=s: container(s) for s in range(8)])
    assert len(taken) == 1200
    assert busiest(taken, 60) <= 600 and busiest(taken, 61) <= 600
    assert 1200 / ((max(taken) - min(taken)) / 60) >= 510          # and they still use most of it


def test_a_429_pauses_every_container_and_lowers_the_budget_for_all():
    clock, rates = FakeClock(now=6000.0), MemoryRates()
    a, b = limiter(rates, clock), limiter(rates, clock)
    a.acquire()
    b.acquire()
    a.throttled(30.0)                              # RF: Retry-After 30
    start = clock()
    clock.now += 2
    b.acquire()                                    # b reads the pause at its next slice, and waits
    assert clock() >= start + 30
    # they had used 2 of RF's 600 when it said 429: someone else uses the rest, so the budget falls to
    # its floor, a tenth, and recovers from there
    assert rates.state("rf").share == 0.1 and rates.state("rf").strikes == 1
    assert b.slicing.sustained(rates.state("rf").share_at(clock())) >= 60


def test_429s_that_arrive_together_are_one_strike():
    """`make fault ARGS="rf 429 --retry-after 15 --for 30"` during a sync: 8 threads got 429 at once, then one
    more call right after the 15 s pause, while the fault was still on. One window over: one strike."""
    clock, rates = FakeClock(now=6000.0), MemoryRates()
    rf = limiter(rates, clock)
    rf.acquire()
    for _ in range(8):
        rf.throttled(15.0)
    first = rates.state("rf")
    clock.now += 15.5
    rf.throttled(15.0)
    assert (rates.state("rf").strikes, rates.state("rf").lowered_at) == (1, first.lowered_at)
    assert rates.state("rf").pause_until == clock() + 15                  # every caller still waits for this one
    clock.now += 60                                                     # a 429 in another window: another strike
    rf.throttled(15.0)
    assert rates.state("rf").strikes == 2


def test_a_429_from_a_vendor_that_never_blocks_pauses_everyone_and_keeps_the_budget_whole():
    """Intercom does not block after repeated excess: its reset is honoured by every caller, and the
    budget is not lowered (one 429 would otherwise hold every join back for hours)."""
    clock, rates = FakeClock(now=6000.0), MemoryRates()
    a = SharedLimiter(rates, "intercom#ws", 100, 10, vendor="Intercom", clock=clock, sleeper=clock.sleep, max_wait=60)
    b = SharedLimiter(rates, "intercom#ws", 100, 10, vendor="Intercom", clock=clock, sleeper=clock.sleep, max_wait=60)
    a.acquire()
    a.throttled(5.0)
    start = clock()
    b.acquire()
    assert clock() >= start + 5 and rates.state("intercom#ws").share == 1.0
    assert rates.state("intercom#ws").strikes == 0


def test_a_pause_longer_than_a_lambda_may_wait_defers_the_work():
    clock, rates = FakeClock(now=6000.0), MemoryRates()
    rf = limiter(rates, clock, max_wait=20)
    rf.throttled(45.0)
    with pytest.raises(Deferred, match="Referral Factory answered 429: every call waits") as exc:
        rf.acquire()
    assert 45 <= exc.value.retry_after <= 46 and clock.slept == []


def test_a_spent_budget_defers_rather_than_wait_too_long():
    clock, rates = FakeClock(now=6000.0), MemoryRates()
    rf = limiter(rates, clock, limit=5, max_wait=0)
    rf.acquire()
    with pytest.raises(Deferred, match=r"shared Referral Factory budget \(5 calls per 60s\) is spent") as exc:
        rf.acquire()
    # Why it was not waited for: how far the next slot is, and how long this worker may still wait.
    assert exc.value.reason.endswith("(the next slot is 20.0s away; this worker may wait 0.0s more)")


def test_a_block_opens_the_circuit_for_every_container_then_one_probe_closes_it():
    clock, rates = FakeClock(now=6000.0), MemoryRates()
    a, b = (limiter(rates, clock, block_status=403, recheck=900) for _ in range(2))
    a.acquire()
    b.acquire()
    with pytest.raises(CircuitOpen, match=r"^Referral Factory answered 403: IP blocked \(since .*\): Referral "
                       r"Factory has probably blocked this IP .* the work waits in the queue$"):
        a.answered(403, "Referral Factory answered 403: IP blocked")
    clock.now += 2                                 # b's next slice: it reads the state
    with pytest.raises(CircuitOpen) as held:
        b.acquire()
    assert 890 < held.value.retry_after <= 900
    clock.now += 900
    a.acquire()                                    # a probes...
    with pytest.raises(CircuitOpen):
        b.acquire()                                # ...and b waits for its answer
    a.answered(200, "")
    clock.now += 2
    b.acquire()
    assert not rates.state("rf").blocked


def test_a_probes_answer_stands_while_the_table_throttles_the_circuits_closing_and_the_next_answer_closes_it():
    """RF answers the probe (a qualification's PUT, applied), and the write that closes the circuit is throttled: it
    failed the call as a throttle, which says nothing was sent, and the qualification's next try sent the PUT again."""
    from chalicelib.adapters.memory import MemoryStore
    clock = FakeClock(now=6000.0)
    store = MemoryStore(clock)
    a = limiter(store.rates, clock, block_status=403, recheck=900)
    a.acquire()
    with pytest.raises(CircuitOpen):
        a.answered(403, "Referral Factory answered 403: IP blocked")
    clock.now += 902
    a.acquire()                                    # the probe
    store.throttle(clock.now + 1)
    a.answered(200, "")                            # RF applied it: no failure
    clock.now += 2
    assert store.rates.state("rf").blocked         # (not closed yet)
    # This container's next call goes out, RF answers it, and that closes the circuit. (It was refused as RF's block
    # until the probe's own lease ran out, a minute: no answer came to close it, and the work waited, counted blocked.)
    a.acquire()
    a.answered(200, "")
    assert not store.rates.state("rf").blocked


def test_other_answers_never_open_a_circuit():
    clock, rates = FakeClock(now=6000.0), MemoryRates()
    intercom = SharedLimiter(rates, "intercom#ws", 1666, 10, clock=clock, sleeper=clock.sleep)
    intercom.acquire()
    intercom.answered(403, "Intercom answered 403 api_plan_restricted")
    assert not rates.state("intercom#ws").blocked


def contend(other: int, spread: bool, hours: float) -> tuple[int, float]:
    """RF (its windows start at second 23) with another client spending `other` calls of every
    window, spread over it or all at its start, and the bridge calling without a pause for hours
    (50 ms a call). Answers the windows that went over, and the bridge's calls a minute."""
    clock, rates = FakeClock(now=1_790_000_000.0), MemoryRates()
    rf = limiter(rates, clock, max_wait=10**6)
    end, mine, over, calls = clock() + hours * 3600, {}, set(), 0
    while clock() < end:
        rf.acquire()
        now = clock()
        start = (now - 23) // 60 * 60 + 23
        theirs = other * (now - start) / 60 if spread else other
        if mine.get(start, 0) + 1 + theirs > 600:
            over.add(start)
            rf.throttled(start + 60 - now)                     # RF: Retry-After until its window ends
        else:
            mine[start] = mine.get(start, 0) + 1
            calls += 1
        clock.now += 0.05
    return len(over), calls / (hours * 60)


@pytest.mark.parametrize("other,spread", [(400, True), (400, False), (200, True)])
def test_hours_beside_another_client_of_rf_never_go_over_more_than_3_windows(other, spread):
    """RF blocks the IP after more than 3 windows over. Each 429 lowers the budget to what the other
    client's pace leaves, recovery is slow, slower after each 429, and held after the third."""
    over, per_minute = contend(other, spread, hours=6)
    assert over <= 3
    assert per_minute >= 0.5 * (600 - other)                  # and the bridge still gets work done


# --- the environment's proxy, read once ------------------------------------------------------------
@pytest.fixture
def proxy():
    """A local HTTP proxy that answers every request itself: what it saw is what was sent through it."""
    with answering(200, {"type": "admin", "via": "proxy"}) as (url, seen):
        yield url, seen


def test_the_api_clients_go_through_the_environments_proxy_and_keep_out_of_it_what_no_proxy_names(
        proxy, monkeypatch):
    from chalicelib.adapters.http import JsonApi

    url, seen = proxy
    monkeypatch.setenv("HTTP_PROXY", url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    api = JsonApi("http://intercom.invalid", {}, token="t")
    assert api.call("GET", "/me") == {"type": "admin", "via": "proxy"}
    assert seen == ["http://intercom.invalid/me"]
    monkeypatch.setenv("NO_PROXY", "intercom.invalid")
    direct = JsonApi("http://intercom.invalid", {}, token="t", timeout=0.5, sleeper=lambda seconds: None)
    with pytest.raises(Transient):                   # not through the proxy: the name does not resolve
        direct.call("GET", "/me")
    assert seen == ["http://intercom.invalid/me"]


@pytest.mark.parametrize("status, answered", [(200, True), (404, True), (503, False), (None, False)])
def test_a_client_tells_every_answer_of_its_vendor_but_a_5xx_or_none(status, answered):
    # The worker's outage waits read it (domain/outage.py): a vendor that answers, whatever it says, is not out, at
    # that API base (an Intercom region); an outage's failure says at which.
    from contextlib import nullcontext
    from chalicelib.adapters.http import JsonApi
    from chalicelib.errors import WorkError

    told: list[tuple[str, str]] = []
    failed: list[WorkError] = []
    with answering(status, {}) if status else nullcontext(("http://127.0.0.1:9", [])) as (url, _):
        api = JsonApi(url, {}, token="t", timeout=0.5, sleeper=lambda seconds: None,
                      on_answer=lambda *said: told.append(said))
        api.service = "Intercom"
        try:
            api.call("GET", "/me")
        except WorkError as exc:
            failed.append(exc)
    assert told == ([("Intercom", url)] if answered else [])
    assert [(e.outage, e.where) for e in failed if e.outage] == ([] if answered else [("Intercom", url)])


@pytest.mark.parametrize("headers", [{"X-RateLimit-Reset": "1790000004000"},             # milliseconds, not seconds
                                     {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"},   # a date past any pause
                                     {"Retry-After": "99999999999"}])                     # (urllib3 bounds this one)
def test_a_429_asking_for_an_absurd_wait_pauses_every_caller_at_most_urllib3s_longest_and_never_breaks_a_call(headers):
    # What a user would see: a 429 whose X-RateLimit-Reset came in milliseconds (or a Retry-After date centuries
    # away) was a pause past the year 9999: the limiter failed writing it down (ValueError: year out of range), and
    # with the pause stored every later call of the workspace failed so too, a try each, until dead-lettered. A
    # Retry-After in seconds was bounded already (urllib3: at most 6 h): every form of asked wait is bounded alike.
    from chalicelib.adapters.intercom import IntercomClient

    clock = FakeClock(1_790_000_000.3)
    gate = SharedLimiter(MemoryRates(), "intercom#ws", 1666, 10, vendor="Intercom", clock=clock, sleeper=clock.sleep)
    with answering(429, {}, headers) as (url, seen):
        api = IntercomClient(url, "t", clock=clock, sleeper=clock.sleep, timeout=2, max_wait=20, limiter=gate)
        for _ in range(2):                      # the call that met the 429, then the next one: each waits in the queue
            with pytest.raises(Deferred) as waits:
                api.get_contact("c1")
            assert 3600 < waits.value.retry_after <= 6 * 3600 + 1, waits.value.retry_after
    assert len(seen) == 1                       # the pause holds every caller back meanwhile


def test_two_calls_refused_the_old_token_at_once_both_go_out_again_with_the_new_one():
    # What an operator saw (README's revoked-token rehearsal): two qualifications replayed in one batch after `bridge
    # rf connect`, both sent with the token the worker had read, both answered 401. The first re-read the secret,
    # took the new token and went out again; the second then asked for a token newer than the client's (already the
    # new one), got none, and was dead-lettered with the 401 again. Each asks for one newer than the one it sent.
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from chalicelib.adapters.http import JsonApi

    both_refused, new_sent = threading.Barrier(2, timeout=5), threading.Event()
    sent: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            token = self.headers["Authorization"]
            sent.append(token)
            if token == "Bearer old":
                both_refused.wait()                 # both calls were sent with the old token
                if self.path == "/second":          # answered only once the first went out again with the new one
                    new_sent.wait(5)
            else:
                new_sent.set()
            body = b"{}"
            self.send_response(401 if token == "Bearer old" else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stored = "new"                                  # the secret store: `bridge rf connect` stored the new token
    api = JsonApi(f"http://127.0.0.1:{server.server_address[1]}", {}, token="old", timeout=5,
                  sleeper=lambda seconds: None, reauth=lambda stale: stored if stored != stale else None)
    answers: dict[str, object] = {}

    def call(path: str) -> None:
        try:
            answers[path] = api.call("GET", path)
        except Exception as exc:                    # (what the worker would dead-letter)
            answers[path] = exc
    try:
        calls = [threading.Thread(target=call, args=(path,)) for path in ("/first", "/second")]
        for t in calls:
            t.start()
        for t in calls:
            t.join(10)
    finally:
        server.shutdown()
        server.server_close()
    assert answers == {"/first": {}, "/second": {}}, answers
    assert sorted(sent) == ["Bearer new", "Bearer new", "Bearer old", "Bearer old"], sent


def test_a_429_is_counted_under_its_vendors_metric():
    """The dashboard shows whose 429s they are: Intercom's (one workspace's budget pauses) apart from Referral
    Factory's (which lower the shared budget, and lead to its block if they go on)."""
    from chalicelib.observability import metrics

    clock, rates = FakeClock(now=6000.0), MemoryRates()
    metrics.clear_metrics()
    try:
        intercom_limiter(rates, clock).throttled(10.0)
        limiter(rates, clock).throttled(15.0)
        limiter(rates, clock).throttled(15.0)
        counted = {name: sum(m["Value"]) for name, m in metrics.metric_set.items()}
    finally:
        metrics.clear_metrics()
    assert counted == {"IntercomRateLimited": 1, "RFRateLimited": 2}
