"""The work queue and its dead-letter queue (adapters/queue.py: SQS; tests/fakes.py: FakeQueue)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence


class MessageTooLarge(ValueError):
    """The message would not fit in the queue (SQS: 256 KiB, less room for the dead-letter
    attributes): `size` bytes, of at most `limit`. The webhook edge and `backfill --apply` queue a thin message
    instead."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"the message is {size} bytes; the queue takes at most {limit}")
        self.size, self.limit = size, limit


class NotSent(RuntimeError):
    """A batch send of which the queue refused some messages (every other one was sent): each refused
    message with the queue's reason, so none is dropped unsaid. The text names the reasons only (a
    body may hold an email)."""

    def __init__(self, refused: list[tuple[dict | str, str]], of: int):
        self.refused = refused
        reasons = "; ".join(dict.fromkeys(reason for _, reason in refused))
        super().__init__(f"SQS refused {len(refused)} of {of} message(s): {reasons}")



TRIES, WAITS = "bridge-tries", "bridge-waits"      # the message attributes of a copy sent to wait
OUTAGE_SINCE = "bridge-outage-since"                # (and when its first wait for a vendor's outage began,
WAITS_FOR = "bridge-waits-for"                      # or for a refused token: TOKEN)
TOKEN = "token"
REASON_KEPT = 1000                                  # bytes of its reason a dead letter keeps (kept_reason)
# What SQS refuses in an attribute: it takes #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF,
# so the other C0 controls, the surrogates, U+FFFE and U+FFFF (named so, not as the negated ranges, which took
# ~4 ms of every cold start to compile; tests/unit/test_queue_reasons.py checks the two alike on every code point).
_REFUSED = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def kept_reason(reason: str) -> str:
    """A dead letter's reason as it keeps it (a message attribute, whose size SQS counts in UTF-8 bytes, as it
    counts the message's): each character SQS refuses there written as its escape (`\\x00`), then its first
    REASON_KEPT bytes, never half a character (an email or a value in Greek, or an emoji, takes 2 to 4 a character)."""
    text = _REFUSED.sub(lambda m: repr(m.group())[1:-1], reason)
    return text.encode("utf-8")[:REASON_KEPT].decode("utf-8", "ignore")


@dataclass(frozen=True)
class Later:
    """A message sent back to the queue to wait: its body as it came, how long it waits, and the
    tries and waits it has had (carried as message attributes, since SQS counts receives only), and
    since when it waits out a vendor's outage (the epoch seconds of its first such wait, or None), and
    `waits_for`: TOKEN when that wait is for a workspace's refused token (each counts its own budget)."""

    body: str
    delay: float
    tries: int
    waits: int
    outage_since: Optional[float] = None
    waits_for: Optional[str] = None


@dataclass(frozen=True)
class ReceivedLetter:
    """A dead letter as one receive hands it out: its message id, this receive's handle (the queue
    honours the latest only), its body as sent, and what `WorkQueue.dead_letter` wrote with it: the
    reason (its first REASON_KEPT bytes: kept_reason), the tries, when. A letter the queue's redrive policy
    moved (the worker crashed or timed out each time) has none of the three, and one someone else
    put in the queue may hold tries that are not a number (None). `receive_count`: how many times the
    queue has handed it out, this receive included."""

    message_id: str
    handle: str
    body: str
    reason: Optional[str] = None
    attempts: Optional[int] = None
    failed_at: Optional[str] = None
    receive_count: int = 1


class WorkQueue(Protocol):
    # A dict is sent as JSON; a str as it is (a dead letter's body going back unchanged).
    def send(self, message: dict | str) -> str: ...                 # raises MessageTooLarge
    def send_many(self, messages: list[dict], delay: float = 0) -> None:
        """10 a call (SQS's SendMessageBatch), fewer when they are large. `delay`: seconds before they can be
        received (SQS: at most 900). Raises NotSent, after sending every other one, naming each message refused;
        MessageTooLarge, having sent none, when one would not fit."""
    def delete(self, receipt_handles: list[str]) -> dict[str, str]:
        """10 a call; the handles the queue refused, each with its reason (those records come back)."""
    def retry_in(self, receipt_handle: str, seconds: float) -> None: ...
    def defer(self, later: list[Later]) -> None:
        """Send copies that wait (at most 15 minutes each: SQS's longest delay); NotSent as send_many."""
    def dead_letter(self, body: str, reason: str, attempts: int, failed_at: str) -> None: ...


class DeadLetterQueue(Protocol):
    """What the operator's commands do with dead letters (each a ReceivedLetter), and how much work
    waits in the work queue (`work_count`: doctor, forget)."""

    dlq_url: str

    # To the work queue, as above; a str as it is (a dead letter's body going back unchanged).
    def send_many(self, messages: Sequence[dict | str], delay: float = 0) -> None: ...
    def receive_dead(self, max_messages: int = 10, visibility: int = 60) -> list[ReceivedLetter]:
        """Up to `max_messages` letters, each hidden for `visibility` seconds from now; none only when none is
        visible (the scans stop there)."""
    def delete_dead(self, receipt_handle: str) -> None: ...
    def delete_dead_many(self, receipt_handles: list[str]) -> dict[str, str]:
        """10 a call; the handles the queue refused, each with its reason (those letters stay)."""
    def hide_dead_many(self, receipt_handles: list[str], seconds: int) -> set[str]:
        """Hide received letters for `seconds` from now (a longer look keeps them hidden; 0 shows them
        at once), 10 a call; the handles refused: the letter was deleted, or its hide time had run
        out (it may be another reader's now)."""
    def dead_count(self) -> int:
        """About how many dead letters there are, hidden ones included (SQS's counts are approximate)."""
    def work_count(self) -> int:
        """About how many messages the work queue holds: waiting, being worked (hidden) and delayed (a
        retry or deferral waiting its time): one call (SQS's counts are approximate)."""
