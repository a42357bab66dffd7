"""How long the bridge took to keep its promise: seconds from what started the work (the change to the contact that
qualified her, the join RF sent) to its outcome (RF's confirmation, the contact written in Intercom). Pure: the
caller gives the clock's time. What the dashboard shows as QualificationDelaySeconds and JoinDelaySeconds."""
from __future__ import annotations

from typing import Optional

from . import rules
from .judge import Sighting


def delay(since: Optional[float], now: float) -> Optional[float]:
    """Seconds from `since` to `now`; None when `since` is not known (nothing to measure). A `since` after `now` (the
    vendor's clock ahead of ours, by a few seconds) is no wait: 0."""
    if since is None:
        return None
    return max(0.0, now - since)


def changed_at(seen: Sighting) -> Optional[float]:
    """The time of the change `seen` shows: the event's (a notification's `created_at`, as the verdict ordered it:
    Sighting.when), else, for the contact as read or found by search, its `updated_at` (Intercom's last change of
    it); None when neither is known."""
    if seen.when is not None:
        return seen.when
    return rules.event_time(seen.contact.get("updated_at"))
