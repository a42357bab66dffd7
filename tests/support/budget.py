"""The bridge's own shared budget of a vendor's calls (adapters/ratelimit.SharedLimiter) in a test: a limiter of
its own that never waits, and what its callers meet once the workers have spent it."""
from __future__ import annotations

from typing import Any

import pytest

from chalicelib.adapters.memory import MemoryRates
from chalicelib.adapters.ratelimit import SharedLimiter
from chalicelib.errors import Deferred
from tests.fakes import FakeClock


def limiter(budget: str = "intercom#ws", limit: int = 5, vendor: str = "Intercom",
            **kw: Any) -> tuple[SharedLimiter, FakeClock]:
    """A shared limiter of `limit` calls per 60 s (its own windows) that waits for no slot, on a fake clock."""
    clock = FakeClock(now=6000.0)
    return SharedLimiter(MemoryRates(), budget, limit, 60, vendor=vendor, clock=clock, sleeper=clock.sleep,
                         max_wait=0, **kw), clock


def spend(gate: SharedLimiter) -> Deferred:
    """The slots left taken (as by the workers), until `gate` refuses one: what it raised."""
    with pytest.raises(Deferred) as refused:
        for _ in range(gate.limit + 1):
            gate.acquire()
    return refused.value
