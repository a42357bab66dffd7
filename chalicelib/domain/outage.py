"""A vendor's outage (Intercom or Referral Factory answering 5xx, timing out, refusing connections, after the
HTTP client's own retries; AWS throttling the bridge's own table, queue or secrets) is waited out, not failed:
the work goes back to the queue with a growing delay, without using up a try, until the vendor answers or the
outage budget (BRIDGE_OUTAGE_HOURS, counted from the record's first outage wait) is spent; then it is
dead-lettered with a reason that says so, the same for every record one outage held (`bridge doctor` and `dlq
list` count one outage's letters as one). Unless the vendor has answered since the record began waiting (its
outage ended, at least for others): past the budget, the record's own failure is then an ordinary failed try,
dead-lettered after the usual tries. The vendor's own `Retry-After` is honoured: no wait is shorter. Pure: no
I/O, no clock of its own (`now`, and `spread`, a random number in [0, 1) for the jitter, are given)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Callable, Optional, Protocol

from .advice import refused_token
from .history import iso

FIRST_WAIT = 30.0          # seconds: the first wait...
LONGEST_WAIT = 900.0       # ...doubles (it is as long as the outage so far) up to SQS's longest delay
JITTER = 0.2               # up to a fifth shorter: what one outage held back does not all come back at once


@dataclass(frozen=True)
class OutageWait:
    """Wait `delay` seconds (None: give up, and dead-letter with `reason`); `since`: the record's first outage
    wait, carried by its copies."""

    since: float
    delay: Optional[float]
    vendor: str
    budget: float
    answer: str                     # the vendor's last answer (the failure's own reason)
    status: Optional[int] = None    # ... its status (None: no answer came)
    workspace: Optional[str] = None     # set: it waits for this workspace's refused token to be replaced, not for
    fix: str = ""                       # the vendor; `fix`: how (the reconnect)

    @property
    def reason(self) -> str:
        """The wait, or the giving up, as the record's history and its dead letter say it: with the advice."""
        if self.workspace is not None:      # given up: the refusal's own reason (its replay), as without a wait
            return self.answer if self.delay is None else f"{self.refused} — {self.fix}"
        if self.delay is None:
            return (f"{unavailable(self.vendor)} for {hours(self.budget)} (BRIDGE_OUTAGE_HOURS): "
                    f"{last_answer(self.vendor, self.status)} — replay it once {self.vendor} answers again "
                    "(`bridge dlq replay`)")
        return (f"{unavailable(self.vendor)} since {iso(self.since)} ({self.answer}): the bridge waits for it, up to "
                f"{hours(self.budget)} (BRIDGE_OUTAGE_HOURS)")

    @property
    def refused(self) -> str:
        """A refused token's wait, without the advice."""
        return (f"{refused_token(self.workspace or '')} since {iso(self.since)} ({last_answer(self.vendor, self.status)})"
                f": the work waits for the workspace's token to be replaced, up to {hours(self.budget)} "
                "(BRIDGE_OUTAGE_HOURS)")

    @property
    def said(self) -> str:
        """The wait, or the giving up, in one line without the advice (`sync status` shows a page's so)."""
        if self.workspace is not None:
            return self.answer if self.delay is None else self.refused
        if self.delay is None:
            return f"{unavailable(self.vendor)} for {hours(self.budget)} (since {iso(self.since)}): {self.answer}"
        return (f"waiting for {self.vendor} (unavailable since {iso(self.since)}; the bridge waits up to "
                f"{hours(self.budget)}, BRIDGE_OUTAGE_HOURS): {self.answer}")


class Failure(Protocol):
    """What an outage wait reads of a failure (errors.WorkError's): the vendor whose outage it is, its reason,
    the wait the vendor asked for, the vendor's answer's status (None when none came) and where it failed."""

    outage: Optional[str]
    reason: str
    retry_after: Optional[float]
    status: Optional[int]
    where: Optional[str]            # the vendor's API base it failed at (Intercom's regions are apart), if known


@dataclass(frozen=True)
class Attempt:
    """What the worker does if this try of a record fails, for a handler that records it (a sync page's error):
    `last`: a failure now (but a wait) dead-letters it; `outage(failure)`: the wait (or the dead letter) for the
    failure's vendor's outage now (None: none, the failure is a try like any other), decided once by the worker,
    which then does just that."""

    last: bool = False
    outage: Optional[Callable[[Failure], Optional[OutageWait]]] = None


def unavailable(vendor: str) -> str:
    """How a reason names a vendor's outage (it starts the reasons of outage waits and of their dead letters)."""
    return f"{vendor} unavailable"


def outage_of(reason: str) -> Optional[str]:
    """The vendor whose outage a recorded reason names (one of ours, or OutageWait.said's), or None."""
    return next((v for v in VENDORS if unavailable(v) in reason or reason.startswith(f"waiting for {v} (")), None)


#: AWS's services that hold the bridge's own work (the table, the queues, the secrets): their outage is their
#: throttling of the bridge's calls, after botocore's retries (errors.Throttled), waited out as a vendor's is.
AWS = ("DynamoDB", "SQS", "SSM")
VENDORS = ("Intercom", "Referral Factory", *AWS)


def waits_again(previous: Optional[str], reason: str) -> bool:
    """Does a wait (`reason`) say nothing the wait before it (`previous`: its reason) did not: the same words, or
    the same vendor's outage, whatever the vendor answers meanwhile?"""
    vendor = outage_of(reason)
    return previous == reason or vendor is not None and outage_of(previous or "") == vendor


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.3g} h"


def last_answer(vendor: str, status: Optional[int]) -> str:
    """What the vendor last answered, in words no record of its own changes (no message, id or email)."""
    if vendor in AWS:
        return f"{vendor} throttled the bridge's calls"
    if status is None:
        return f"{vendor} did not answer (timeouts or refused connections)"
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:          # a status of the vendor's own (say, a proxy's 520)
        phrase = ""
    return f"{vendor} answered {status}{': ' + phrase if phrase else ''}"


def token_wait(workspace: str, fix: str, reason: str, since: Optional[float], now: float, budget: float,
               spread: float = 0.0) -> OutageWait:
    """What a record Intercom refused `workspace`'s token for (`reason`: the refusal's, its replay's advice and all;
    the workspace still connected: the token, read again, is the one refused) does now: waits for the token to be
    replaced (`fix`: how), as for an outage (`since`: its first wait; `budget`: seconds it may wait from then), or,
    past the budget, gives up (its dead letter's reason is the refusal's own). Intercom answers (a 401), so nothing
    it answers meanwhile ends the wait: only a reconnect does."""
    decided = outage_wait("Intercom", reason, since, now, budget, spread, status=401)
    assert decided is not None          # (no answer known: never the record's own failure)
    return replace(decided, workspace=workspace, fix=fix)


def outage_wait(vendor: str, reason: str, since: Optional[float], now: float, budget: float,
                spread: float = 0.0, retry_after: Optional[float] = None, status: Optional[int] = None,
                answered: Optional[float] = None) -> Optional[OutageWait]:
    """What a record that failed with `vendor`'s outage (`reason`; `status`: the vendor's answer, None when
    none came; `retry_after`: the wait the vendor asked for) does now. `since`: its first outage wait (None:
    this is the first); `budget`: seconds it may wait from then; `answered`: when the vendor last gave an answer
    that was not an outage's (None: not known). Past the budget, a vendor that answered after `since` and lately
    (within LONGEST_WAIT: a few minutes of answers in the middle of a long outage do not end it) is not out: None,
    the failure is the record's own, a try like any other (a record that keeps failing alone still ends in the
    dead-letter queue after its tries)."""
    since = now if since is None else min(since, now)
    waited = now - since
    if waited >= budget:
        if answered is not None and answered > max(since, now - LONGEST_WAIT):
            return None
        return OutageWait(since, None, vendor, budget, reason, status)
    delay = min(LONGEST_WAIT, max(FIRST_WAIT, waited), budget - waited) * (1 - JITTER * min(max(spread, 0.0), 1.0))
    # Never back before the vendor said (up to SQS's longest delay), even past the budget's end.
    delay = max(delay, min(retry_after or 0.0, LONGEST_WAIT))
    return OutageWait(since, max(1.0, delay), vendor, budget, reason, status)
