"""A person's history, read by `bridge history`: what happened, and why. Pure: no I/O."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional


@dataclass(frozen=True)
class Entry:
    event: str
    outcome: str
    reason: Optional[str] = None
    details: Optional[dict[str, Any]] = None


@dataclass(frozen=True)
class Repeat:
    """Something ignored because it was seen before: one entry per person and event counts them."""

    event: str
    reason: str


@dataclass(frozen=True)
class Recorded:
    """An entry as the store keeps it."""

    at: str
    event: str
    outcome: str
    reason: Optional[str] = None
    details: Optional[dict[str, Any]] = None
    count: Optional[int] = None
    expires_at: Optional[int] = None

    def view(self) -> dict[str, Any]:
        return {"at": self.at, "event": self.event, "outcome": self.outcome, "reason": self.reason,
                **({"details": self.details} if self.details else {}),
                **({"count": int(self.count)} if self.count else {})}


# The event of a failed try the queue tries again (the worker's note: try, of, kind, next_try_at).
RETRY = "retry"

# Said on the entry of a try that `bridge dlq replay` sent back (a message's `replayed_from`).
REPLAYED = "replayed from the dead-letter queue (bridge dlq replay)"
# A check's `replayed_from` when `bridge backfill --apply` sent it: a refused qualification whose letter is gone.
RECHECKED = "backfill: dead letter gone"


def replayed_said(replayed_from: str, campaign_id: str) -> str:
    """What a try marked as a replay says it was (its `replayed_from`): a dead letter's replay, or backfill's check
    of a lead whose letter SQS deleted (no letter was replayed)."""
    if replayed_from == RECHECKED:
        return f"checked again by bridge backfill {campaign_id} --apply (its dead letter gone)"
    return REPLAYED


def kind_of(reason: str) -> str:
    """What a counted note says but for its times and numbers (an outage's start, a status, a wait's
    seconds): its reason up to the first digit. Another kind restarts a note's count (`note_repeat`)."""
    return re.split(r"\d", reason, maxsplit=1)[0]


def clock_time(ts: float, now: float) -> str:
    """A time soon, to the minute rounded up, as an operator reads it: "14:32 UTC" (with its date when
    not `now`'s day)."""
    at = datetime.fromtimestamp(math.ceil(ts / 60) * 60, timezone.utc)
    same_day = at.date() == datetime.fromtimestamp(now, timezone.utc).date()
    return at.strftime("%H:%M UTC" if same_day else "%Y-%m-%d %H:%M UTC")


def iso(ts: float) -> str:
    """A unix time as ISO-8601 in UTC, to the millisecond (how the history and the links write time)."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch(iso_text: str) -> float:
    """An ISO-8601 time (as `iso` writes it) as a unix time; 0 for one that is not."""
    try:
        return datetime.fromisoformat(iso_text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
