"""How long the bridge took to keep its promise: seconds from what started the work (the change to the contact that
qualified her, the join RF sent) to its outcome (RF's confirmation, the contact written in Intercom). Pure: the
caller gives the clock's time. What the dashboard shows as QualificationDelaySeconds and JoinDelaySeconds."""
from __future__ import annotations

from typing import Optional, Sequence

from . import rules
from .history import Recorded, epoch
from .judge import Sighting

#: The detail of a qualification's entry left unfinished (`unconfirmed`, `not_applied`: Qualifier._unconfirmed) that
#: keeps the time of the change that qualified her (ISO-8601), for the try that finishes it without judging it again
#: (Qualifier.resume: reconciliation's check, a check's or a search's retry): the link keeps no such time.
CHANGED_AT = "changed_at"


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


def kept_since(entries: Sequence[Recorded]) -> Optional[float]:
    """The time of the change that qualified her, as a try of the qualification under way kept it in her history
    (CHANGED_AT), the earliest kept: None when none kept one since her last qualification ended (qualified, or failed:
    a dead letter's replay is a qualification of its own, its change's time not known). Read before the finishing
    try writes its own end."""
    kept: Optional[float] = None
    for entry in sorted((e for e in entries if e.event == "qualification"), key=lambda e: e.at):
        if entry.outcome in ("qualified", "failed"):
            kept = None
        elif kept is None and isinstance(at := (entry.details or {}).get(CHANGED_AT), str):
            kept = epoch(at)
    return kept
