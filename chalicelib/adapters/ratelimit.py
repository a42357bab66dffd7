"""One rate budget shared by every concurrent Lambda: a fixed-window counter in DynamoDB.
Each call takes a slot with a conditional update; a full window means waiting for the next
(or, past `max_wait`, giving the work back to the queue)."""
from __future__ import annotations

import time
from typing import Callable

from ..errors import Transient
from ..ports import RateWindows


class SharedLimiter:
    def __init__(self, windows: RateWindows, budget: str, limit: int, window: int, *,
                 clock: Callable[[], float] = time.time, sleeper: Callable[[float], None] = time.sleep,
                 max_wait: float | Callable[[], float] = 20.0):
        self.windows, self.budget, self.limit, self.window = windows, budget, limit, window
        self.clock, self.sleeper, self.max_wait = clock, sleeper, max_wait

    def acquire(self) -> None:
        waited = 0.0
        while True:
            now = self.clock()
            start = int(now // self.window * self.window)
            if self.windows.take_slot(self.budget, start, self.limit, ttl=start + self.window * 10):
                return
            wait = start + self.window - now + 0.05
            if waited + wait > (self.max_wait() if callable(self.max_wait) else self.max_wait):
                raise Transient(f"shared {self.budget} budget of {self.limit} calls per {self.window}s is spent",
                                retry_after=wait)
            self.sleeper(wait)
            waited += wait
