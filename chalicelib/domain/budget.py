"""A shared rate budget, as arithmetic: how a vendor's window is cut into slices so that no span of
the window's length anywhere holds more calls than the budget, how a 429 lowers the budget and how
it recovers, and what a budget's shared state says right now. Pure: no I/O, no clock of its own.

Why slices. A vendor's window may start anywhere (Referral Factory's starts at its first call after
the last one ended), so a fixed window of our own does not protect it: 500 calls at the end of one
of our minutes and 500 at the start of the next land in one of its minutes. The window is cut into
`slices` slices, each with at most `cap` calls. Any span of `window` seconds, plus `skew` seconds
for a call's way to the vendor (and the clocks' difference), touches at most `spans` slices, so it
holds at most `spans * cap <= limit` calls, wherever it starts. The cost is a little headroom: the
sustained rate is `cap * slices` per window (Referral Factory's 600/min: 570, 95%)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

LEARN = 0.8                 # a 429 that starts a pause lowers the share of the budget in use to 80% of
                            # what someone else's pace in the vendor's window that went over leaves us
LOWER_BY = 0.5              # (to half, when that is not known)
LOWEST = 0.1                # never below a tenth (rounded up to whole slots a slice)
RECOVERY_PER_MINUTE = 1 / 12     # once the pause ends it comes back by a twelfth of the budget a minute
                            # (whole within 12 minutes of quiet)...
SLOWER = 4                  # ...4 times more slowly after each further strike (a window over)
LAST_STRIKE = 3             # RF blocks the IP after more than 3 windows over: after the third, the
HOLD_SECONDS = 86400        # lowered budget holds for a day before it recovers (at the slowest speed)
FORGET_SECONDS = 6 * 3600   # strikes count again from one once the budget has been whole this long
MAX_SLICES = 60
GOOD_ENOUGH = 0.97          # the fewest slices (fewest writes) that reach 97% of the best rate


def _spans(window: float, slices: int, skew: float) -> int:
    """How many slices a span of `window + skew` seconds can touch, wherever it starts."""
    return math.ceil((window + skew) * slices / window - 1e-9) + 1


@dataclass(frozen=True)
class Slicing:
    limit: int              # calls allowed in any span of `window` seconds
    window: float           # seconds
    skew: float = 1.0       # seconds between taking a slot and the vendor counting the call
    slices: int = 0         # 0: chosen by `best`
    shortest: float = 1.0   # seconds: a slice no shorter (a container writes at least once a slice it calls in)

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window <= 0 or self.skew < 0:
            raise ValueError(f"a budget needs a limit >= 1 and a window > 0 (got {self.limit} per {self.window}s)")
        if not self.slices:
            object.__setattr__(self, "slices", self.best(self.limit, self.window, self.skew, self.shortest))

    @staticmethod
    def best(limit: int, window: float, skew: float, shortest: float = 1.0) -> int:
        """The fewest slices whose sustained rate is within 3% of the best any slicing reaches."""
        most = max(1, min(MAX_SLICES, int(window / shortest + 1e-9)))
        rates = {s: limit // _spans(window, s, skew) * s for s in range(1, most + 1)}
        top = max(rates.values())
        if top == 0:
            raise ValueError(f"a limit of {limit} per {window}s is too small to guard: raise it")
        return min(s for s, rate in rates.items() if rate >= GOOD_ENOUGH * top)

    @property
    def seconds(self) -> float:
        """One slice's length."""
        return self.window / self.slices

    @property
    def spans(self) -> int:
        return _spans(self.window, self.slices, self.skew)

    def cap(self, share: float = 1.0) -> int:
        """Calls allowed in one slice when `share` of the budget is in use: never over the whole budget's,
        never under a tenth of the budget a window (rounded up to whole slots)."""
        lowest = math.ceil(math.ceil(self.limit * LOWEST) / self.slices)
        return min(self.limit // self.spans, max(lowest, math.floor(self.limit * share) // self.spans))

    def sustained(self, share: float = 1.0) -> int:
        """Calls per window at full use."""
        return self.cap(share) * self.slices

    def slice_of(self, now: float) -> int:
        return math.floor(now / self.seconds)

    def end_of(self, slice_id: int) -> float:
        return (slice_id + 1) * self.seconds


@dataclass(frozen=True)
class BudgetState:
    """What every caller of one budget shares beside the slices' counters."""

    pause_until: float = 0.0             # a 429 asked everyone to wait until then
    share: float = 1.0                   # the share of the budget in use when it was last lowered...
    lowered_at: float = 0.0              # ...at this time, by a strike's first 429 (it recovers once the pause ends)
    strikes: int = 0                     # strikes (windows over) since the budget was last whole for hours
    blocked_until: float = 0.0           # the vendor blocked us: no call before then (then one probe)
    blocked_since: Optional[float] = None
    blocked_reason: Optional[str] = None

    def _recovery(self) -> tuple[float, float]:
        """When the share starts to come back (the pause's end; a day later after the last strike the vendor
        tolerates), and how fast (share a second)."""
        start = max(self.lowered_at, self.pause_until) + (HOLD_SECONDS if self.strikes >= LAST_STRIKE else 0)
        return start, RECOVERY_PER_MINUTE / 60 / SLOWER ** max(0, min(self.strikes, LAST_STRIKE) - 1)

    def share_at(self, now: float) -> float:
        """The share in use now: it recovers linearly once the pause ends, more slowly after each strike,
        and not at all for a day after the last strike the vendor tolerates before it blocks us."""
        if self.share >= 1.0:
            return 1.0
        start, speed = self._recovery()
        return min(1.0, self.share + max(0.0, now - start) * speed)

    def whole_at(self) -> float:
        """When the share is whole again, if no 429 lowers it meanwhile."""
        if self.share >= 1.0:
            return self.lowered_at
        start, speed = self._recovery()
        return start + (1.0 - self.share) / speed

    def new_strike(self, now: float, window: float) -> bool:
        """Does a 429 now start a new strike? 429s that arrive together are one: those during the pause
        the strike asked for, and after it within the vendor's window of the strike's first 429 (the
        same window over: its calls were on their way, or the vendor still throttles it)."""
        return self.pause_until < now and self.lowered_at <= now - window

    def lowered(self, now: float, used: Optional[int] = None, limit: Optional[int] = None,
                elapsed: float = 1.0) -> tuple[float, int]:
        """The share and strikes after a 429 that starts a new strike. `used`: the calls all our
        callers made in the vendor's window that went over, `elapsed` of the way through it. The
        rest of its `limit` went to someone else, who may go on at that pace for the whole window:
        the new share leaves them that, and 20% more of ours."""
        current = self.share_at(now)
        strikes = 1 if now >= self.whole_at() + FORGET_SECONDS else self.strikes + 1
        if used is None or not limit:
            return max(LOWEST, current * LOWER_BY), strikes
        theirs = max(0, limit - used) / min(1.0, max(0.05, elapsed))
        return max(LOWEST, min(current, LEARN * (limit - theirs) / limit)), strikes

    def paused(self, now: float) -> bool:
        return self.pause_until > now

    @property
    def blocked(self) -> bool:
        """The circuit is open (or half open: `blocked_until` passed, waiting for a probe)."""
        return self.blocked_since is not None
