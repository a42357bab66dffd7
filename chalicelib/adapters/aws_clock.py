"""AWS's time, for the operator's CLI, whose computer's clock may be seconds off (WSL2's drifts).

The shared rate budgets (ratelimit.py) key their slices by the caller's clock; the workers' clocks are
AWS's. A CLI whose clock is 10 s off would take its slots in other real seconds than the workers do,
and together they would go over RF's limit. So the CLI runs on its own clock plus its offset from AWS's,
learned from the `Date` of the table's answers: AWS stamps it (whole seconds) between our sending and
our receiving, so each answer bounds the offset to a span of 1 s + its round trip; the spans of
successive answers narrow it (towards the round trip), and their middle is the estimate."""
from __future__ import annotations

import math
import threading
import time
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Optional

_SENT = "bridge_sent_at"


def http_date(date: Optional[str]) -> Optional[float]:
    """An HTTP-date's time (UTC when it names no zone); None when there is none, or none that reads."""
    try:
        when = parsedate_to_datetime(date or "")
        return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class AwsClock:
    """Callable: the time by AWS's clock (the local clock until an answer of AWS said its time)."""

    def __init__(self, local: Callable[[], float] = time.time):
        self.local = local
        self._lock = threading.Lock()
        self._span = (-math.inf, math.inf)      # what AWS's answers say of the offset (AWS's time - local)

    def __call__(self) -> float:
        return self.local() + self.offset

    def earliest(self) -> float:
        """The earliest AWS's time may be now (the low end of what its answers say; the local clock until known):
        never ahead of it, so never of a worker's clock (AWS's), as the estimate may be by up to half the span. A
        note that must come before what a worker writes next is stamped so (`bridge dlq replay`'s)."""
        low = self._span[0]
        return self.local() + (low if self.known else 0.0)

    @property
    def known(self) -> bool:
        return self._span[1] < math.inf

    @property
    def offset(self) -> float:
        """Seconds to add to the local clock to read AWS's (0 until known)."""
        low, high = self._span
        return (low + high) / 2 if high < math.inf else 0.0

    @property
    def error(self) -> float:
        """How far the offset may be from the true one (inf until known)."""
        low, high = self._span
        return (high - low) / 2

    def surely_off(self, seconds: float) -> bool:
        """Is the local clock off AWS's by more than `seconds`, whatever the error?"""
        low, high = self._span
        return low > seconds or high < -seconds

    def answered(self, sent: float, received: float, date: Optional[str]) -> None:
        """An answer whose `Date` AWS stamped after we sent the request at `sent` and before we received it at
        `received` (local clock). A span that no longer meets the others means the local clock was set
        meanwhile (synced): it starts again from this answer."""
        at = http_date(date)
        if at is None:
            return        # no Date (or not one): nothing learned, and the call it answered goes on
        low, high = at - received, at + 1 - sent
        with self._lock:
            was_low, was_high = self._span
            self._span = (low, high) if low > was_high or high < was_low else (max(was_low, low), min(was_high, high))

    def watch(self, client: Any) -> None:
        """Learn from every answer of a botocore `client` (again: the handlers of a former AwsClock go)."""
        for event, handler in (("before-call", self._sending), ("after-call", self._received)):
            client.meta.events.unregister(event, unique_id=f"bridge-aws-clock-{event}")
            client.meta.events.register(event, handler, unique_id=f"bridge-aws-clock-{event}")

    def _sending(self, context: dict, **_: Any) -> None:        # None: the call goes on
        context[_SENT] = self.local()

    def _received(self, http_response: Any, context: dict, **_: Any) -> None:
        sent = context.get(_SENT)
        if sent is not None:
            self.answered(sent, self.local(), http_response.headers.get("Date"))
