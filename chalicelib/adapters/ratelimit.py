"""One rate budget shared by every concurrent Lambda (and every thread of one).

- **Slices.** The vendor's window is cut into slices with a cap each (domain/budget.py), so that no
  span of the window's length anywhere holds more than the budget, whenever the vendor's window starts.
- **Blocks.** A container takes its slots in blocks: one write reserves several of the current
  slice's slots (as many as it used in the last slice, doubling while it needs more), and hands them
  out itself until the slice ends. Callers together never get more than the slice's cap. A slice
  after an idle one starts with `first_block` slots (Intercom's: a join's or an event's few calls in
  one write; RF's slices are small, so it starts with one).
- **429.** A 429 pauses every caller until the vendor's reset (recorded in the shared state). For a
  vendor that blocks after repeated excess (RF), the first 429 of a strike (429s that arrive together,
  in one of its windows, are one) also lowers the budget, which recovers once the pause ends
  (domain/budget.py).
- **Circuit.** A vendor that blocks us (Referral Factory's 403) opens a circuit: no call goes out
  until `recheck` seconds have passed; then one caller probes, and any answer but another block
  closes it.

Waits longer than `max_wait` are not spent in a Lambda: the work is `Deferred` to the queue, where
waiting does not use up a try."""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from ..domain.budget import BudgetState, Slicing
from ..domain.history import clock_time, iso
from ..errors import Blocked, BudgetSpent, Deferred, WorkError
from ..observability import count, logger
from ..ports import RateWindows

KEEP_SLICES_SECONDS = 3600      # a slice's counter outlives the slice this long (DynamoDB TTL)
PROBE_SECONDS = 60              # a probe of an open circuit holds this long before another may try


class CircuitOpen(Blocked):
    """The vendor blocked us: no call goes out until the circuit's recheck (the work waits in the queue)."""


class SharedLimiter:
    def __init__(self, windows: RateWindows, budget: str, limit: int, window: float, *, skew: float = 1.0,
                 vendor: str = "the API", block_status: Optional[int] = None, recheck: float = 900.0,
                 clock: Callable[[], float] = time.time, sleeper: Callable[[float], None] = time.sleep,
                 max_wait: float | Callable[[], float] = 20.0, first_block: int = 1, waiter: str = "this worker"):
        self.windows, self.budget, self.vendor, self.waiter = windows, budget, vendor, waiter
        self.slicing = Slicing(limit, window, skew)
        self.block_status, self.recheck, self.first_block = block_status, recheck, max(1, first_block)
        self.clock, self.sleeper, self.max_wait = clock, sleeper, max_wait
        self._lock = threading.Lock()
        self._slice: Optional[int] = None   # the slice our local slots belong to
        self._left = 0                      # slots reserved and not yet handed out
        self._used = 0                      # slots handed out in this slice
        self._full = False                  # this slice has no slot left anywhere
        self._last: tuple[Optional[int], int] = (None, 0)   # (slice, slots used) of the slice before
        self._state: Optional[BudgetState] = None
        self._state_slice: Optional[int] = None
        self._probe_until = 0.0             # this container's probe of an open circuit is out until then
        self._closing = False               # the vendor answered its probe; the shared circuit is closed at an answer

    @property
    def limit(self) -> int:
        return self.slicing.limit

    # --- taking a slot -----------------------------------------------------------------------
    def acquire(self) -> None:
        """A slot for one call, now or after a short wait; else `Deferred` (or `CircuitOpen`)."""
        waited = 0.0
        while True:
            with self._lock:
                wait, why, status = self._take(self.clock())
            if wait is None:
                return
            cap = self.max_wait() if callable(self.max_wait) else self.max_wait
            if waited + wait > cap:
                # Say both sides: a short wait is deferred when the Lambda has little time left. The vendor's pause
                # (its 429, with its status) is the vendor's; a spent budget the bridge's own (BudgetSpent).
                raise (Deferred if status is not None else BudgetSpent)(
                    f"{why} (the next slot is {wait:.1f}s away; {self.waiter} may wait {max(0.0, cap - waited):.1f}s "
                    "more)", retry_after=wait, status=status)
            self.sleeper(wait)
            waited += wait

    def ahead(self, calls: int) -> None:
        """Slots for the next `calls` calls reserved now, in one write (none when this container holds enough of
        the slice's already), without handing any out: a caller about to make its first calls of a slice takes
        them before it starts other writes that would hold its first call back. Never more than a block may be
        (half a slice's cap), so other containers still get theirs; slots not used are the slice's only. Nothing
        is reserved while the vendor pauses or blocks us, and a failure is left to the calls themselves (their
        `acquire` meets it again, and says so)."""
        with self._lock:
            now = self.clock()
            slice_id = self.slicing.slice_of(now)
            self._refresh(now)
            try:
                state = self._current_state(slice_id)
                if state.blocked or state.paused(now) or self._full or self._left >= calls:
                    return
                cap = self.slicing.cap(state.share_at(now))
                want = max(self._want(slice_id, cap), min(calls - self._left, (cap + 1) // 2))
                got = self.windows.reserve(self.budget, slice_id, want, cap,
                                           ttl=int(self.slicing.end_of(slice_id)) + KEEP_SLICES_SECONDS)
            except Exception:  # noqa: BLE001 - the calls' own acquire meets it again, and raises it
                return
            self._left, self._full = self._left + got, got < want

    def _refresh(self, now: float) -> None:
        """A new slice: what this container held of the last one is no longer its own."""
        slice_id = self.slicing.slice_of(now)
        if slice_id != self._slice:
            self._last = (self._slice, self._used)
            self._slice, self._left, self._used, self._full = slice_id, 0, 0, False

    def _take(self, now: float) -> tuple[Optional[float], str, Optional[int]]:
        """(None, "", None) with a slot taken; else how long to wait, why, and the vendor's answer that said
        so (a 429's pause: the vendor answers, so an outage of it has ended), if one did."""
        self._refresh(now)
        slice_id = self.slicing.slice_of(now)
        state = self._current_state(slice_id)
        if state.blocked and not self._closing:
            # Our own probe is on its way, or the time to probe has not come, or another caller probes.
            if now < self._probe_until or state.blocked_until > now or \
                    not self.windows.probe(self.budget, now, now + PROBE_SECONDS):
                raise self._circuit_open(state, now)
            self._probe_until = now + PROBE_SECONDS      # this call is the probe
            logger.warning("probing a vendor that blocked us", extra={"budget": self.budget})
        if state.paused(now):
            return state.pause_until - now + 0.05, (f"{self.vendor} answered 429: every call waits until "
                                                   f"{iso(state.pause_until)}"), 429
        end = self.slicing.end_of(slice_id)
        if not self._left and not self._full:
            cap = self.slicing.cap(state.share_at(now))
            want = self._want(slice_id, cap)
            got = self.windows.reserve(self.budget, slice_id, want, cap, ttl=int(end) + KEEP_SLICES_SECONDS)
            self._left, self._full = got, got < want        # fewer than asked: that was the last of it
        if self._left:
            self._left -= 1
            self._used += 1
            return None, "", None
        return end - now + 0.001, (f"the bridge's own shared {self.vendor} budget ({self._in_force(state, now)}) is "
                                   f"spent for now: {self.vendor} was not called"), None

    def _in_force(self, state: BudgetState, now: float) -> str:
        """The budget in force: a 429 may have lowered it, and when it is whole again."""
        window, share = self.slicing.window, state.share_at(now)
        if share >= 1.0:
            return f"{self.limit} calls per {window:g}s"
        full = f"{self.slicing.sustained()}" + ("/min" if window == 60 else f" per {window:g}s")
        return (f"lowered to {self.slicing.sustained(share)} of its {self.limit} calls per {window:g}s "
                f"after {self.vendor}'s 429 at {iso(state.lowered_at)}; back to full speed ({full}) by about "
                f"{clock_time(state.whole_at(), now)} if {self.vendor} throttles no more")

    def _want(self, slice_id: int, cap: int) -> int:
        last_slice, last_used = self._last
        demand = max(self._used, last_used if last_slice == slice_id - 1 else self.first_block)
        return max(1, min(demand, (cap + 1) // 2))     # at most half a slice: other containers get some

    def prime(self) -> None:
        """Read the shared state now (a cold container does it beside its other first reads), so that
        the first call does not wait for it."""
        with self._lock:
            self._current_state(self.slicing.slice_of(self.clock()))

    def _current_state(self, slice_id: int) -> BudgetState:
        if self._state is None or self._state_slice != slice_id:
            self._state, self._state_slice = self.windows.state(self.budget), slice_id
        return self._state

    def _circuit_open(self, state: BudgetState, now: float) -> CircuitOpen:
        until = max(state.blocked_until, now + 1)
        return CircuitOpen(f"{state.blocked_reason} (since {iso(state.blocked_since or now)}): {self.vendor} has "
                           "probably blocked this IP for going over its rate limit. No call goes to it until "
                           f"{iso(until)}, when one call checks again; the work waits in the queue",
                           retry_after=until - now)

    # --- what the vendor answered ------------------------------------------------------------------
    def throttled(self, wait: Optional[float]) -> None:
        """The vendor answered 429 (`wait`: its Retry-After or reset, if it gave one): every caller
        pauses until then, and the first 429 of a strike lowers the budget."""
        with self._lock:
            now = self.clock()
            until = now + (wait if wait is not None else self.slicing.window)
            state = self.windows.state(self.budget)
            if state.new_strike(now, self.slicing.window) and self.block_status is not None:
                # What all our callers used in the vendor's window that went over (it ends at `until`).
                # Only a vendor that blocks after repeated excess (RF) lowers the budget: for one that
                # does not (Intercom), honouring its reset is enough, and a lowered budget would
                # hold every join back for minutes after one 429.
                start = until - self.slicing.window
                used = self.windows.used(self.budget, range(self.slicing.slice_of(start), self.slicing.slice_of(now) + 1))
                share, strikes = state.lowered(now, used, self.limit, elapsed=(now - start) / self.slicing.window)
            else:
                share, strikes = state.share, state.strikes
            first = self.windows.pause(self.budget, until, now, share, strikes, self.slicing.window)
            self._state = self.windows.state(self.budget)
            self._left, self._full = 0, True             # our reserved slots are not for this pause
        # By vendor: the dashboard says whose 429s they are (Intercom's are a workspace's; RF's lead to its block).
        count("RFRateLimited" if self.vendor == "Referral Factory" else "IntercomRateLimited")
        if first:
            logger.warning("rate limited: every caller pauses until the reset", extra={
                "budget": self.budget, "until": iso(until), "share": round(share, 3), "strikes": strikes})

    def answered(self, status: int, reason: str) -> None:
        """After every answer. The vendor's block status opens the circuit (raises CircuitOpen);
        any other answer closes a circuit this container was probing."""
        if self.block_status is not None and status == self.block_status:
            with self._lock:
                now, self._closing = self.clock(), False
                self.windows.block(self.budget, now + self.recheck, now, reason)
                self._state, self._probe_until, self._left = self.windows.state(self.budget), 0.0, 0
                state = self._state
            logger.error("the vendor blocked us: the circuit is open", extra={
                "budget": self.budget, "until": iso(state.blocked_until), "reason": reason})
            raise self._circuit_open(state, now)
        if self._probe_until:
            try:
                with self._lock:
                    self.windows.unblock(self.budget)
                    self._probe_until, self._state, self._closing = 0.0, None, False
            except WorkError as exc:    # (the table throttled) the answer stands, a reward's PUT may be applied: it
                self._closing = True    # is no failure. This container calls on; its next answer closes the circuit
                logger.warning("the vendor answers again; the circuit is closed at its next answer",
                               extra={"budget": self.budget, "reason": exc.reason})
                return
            logger.warning("the vendor answers again: the circuit is closed", extra={"budget": self.budget})
