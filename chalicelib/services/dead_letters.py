"""The dead-letter queue as an operator reads it: every dead letter (not just the first batch SQS
hands out), counted by reason and campaign, with the person each is about (email masked), the
payload only on request; and replay by reason, by campaign, or all.

Reading every message: receive with a visibility timeout until the queue answers nothing more (each
message received once, hidden while we look), then make them visible again at once. A message
received twice in one listing (its timeout ran out meanwhile) is counted once."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional, Protocol

from .. import messages
from ..observability import mask_email
from ..ports import DeadLetterQueue

LOOK_SECONDS = 120          # how long a listed message stays hidden if we die before releasing it
MAX_LISTED = 10_000


class HasDeadLetters(Protocol):
    @property
    def queue(self) -> DeadLetterQueue: ...


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    reason: str
    attempts: Optional[int]            # tries before it was given up
    failed_at: Optional[str]
    kind: Optional[str]
    campaign_id: Optional[str]
    rf_user_id: Optional[str]
    workspace: Optional[str]
    contact_id: Optional[str]
    email: Optional[str]               # masked
    body: Any

    def view(self, show_payload: bool = False) -> dict:
        out = {k: v for k, v in (("message_id", self.message_id), ("reason", self.reason),
                                 ("attempts", self.attempts), ("failed_at", self.failed_at), ("kind", self.kind),
                                 ("campaign_id", self.campaign_id), ("rf_user_id", self.rf_user_id),
                                 ("workspace", self.workspace), ("contact_id", self.contact_id),
                                 ("email", self.email)) if v is not None}
        if show_payload:
            out["payload"] = self.body
        return out


def read(m: dict) -> DeadLetter:
    attrs = {k: v.get("StringValue") for k, v in m.get("MessageAttributes", {}).items()}
    if not attrs.get("reason"):
        attrs.update(_moved_by_sqs(m))
    body: Any
    try:
        body = json.loads(m["Body"])
    except ValueError:
        body = m["Body"]
    about: dict[str, Any] = body if isinstance(body, dict) else {}
    person: dict = about["person"] if isinstance(about.get("person"), dict) else {}
    item: dict = about["item"] if isinstance(about.get("item"), dict) else {}
    email = person.get("email") or item.get("email")
    return DeadLetter(m["MessageId"], attrs.get("reason") or "unknown", _count(attrs.get("attempts")),
                      attrs.get("failed_at"),
                      _text(about.get("kind")), _text(about.get("campaign_id")), _text(about.get("rf_user_id")),
                      _text(about.get("workspace")), _text(item.get("id")),
                      mask_email(email) if isinstance(email, str) and email else None, body)


def _count(value: Optional[str]) -> Optional[int]:
    try:
        return int(value) if value is not None else None
    except ValueError:                  # not ours: a message someone else put in the queue
        return None


def _text(value: Any) -> Optional[str]:
    return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def _moved_by_sqs(m: dict) -> dict:
    """SQS's redrive policy moves a message after maxReceiveCount receives that ended without an
    answer: the worker crashed or ran out of time each time, before it could record a reason.
    SQS's count includes this look (and earlier `dlq list` looks), hence "about"."""
    receives = max(1, int(m.get("Attributes", {}).get("ApproximateReceiveCount", "2")) - 1)
    return {"reason": f"moved by SQS after about {receives} receives: the worker crashed or timed out each time",
            "attempts": str(receives)}       # as the worker's message attribute holds it


def _receive_all(rt: HasDeadLetters, visibility: int, limit: int = MAX_LISTED) -> list[dict]:
    seen: dict[str, dict] = {}
    while len(seen) < limit:
        batch = rt.queue.receive_dead(max_messages=10, visibility=visibility)
        if not batch:
            break
        for m in batch:
            seen.setdefault(m["MessageId"], m)
    return list(seen.values())


def list_dead(rt: HasDeadLetters) -> list[DeadLetter]:
    """Every dead letter; the queue is left as it was (each message visible again)."""
    received = _receive_all(rt, LOOK_SECONDS)
    for m in received:
        rt.queue.release_dead(m["ReceiptHandle"])
    return [read(m) for m in received]


def summary(letters: list[DeadLetter], show_payload: bool = False) -> dict:
    return {"total": len(letters),
            "by_reason": dict(Counter(d.reason for d in letters).most_common()),
            "by_campaign": dict(Counter(d.campaign_id or "(none)" for d in letters).most_common()),
            "dead_letters": [d.view(show_payload) for d in letters]}


def matches(letter: DeadLetter, reason: Optional[str], campaign: Optional[str]) -> bool:
    return (reason is None or reason.lower() in letter.reason.lower()) and (
        campaign is None or letter.campaign_id == str(campaign))


def replay(rt: Any, reason: Optional[str] = None, campaign: Optional[str] = None) -> dict:
    """Send the matching dead letters back to the work queue, marked as replays (one no model can read
    goes back as it was: a fixed bridge may read it now); the others stay, visible again at once."""
    received = _receive_all(rt, 300)
    sent, kept = 0, 0
    for m in received:
        if not matches(read(m), reason, campaign):
            rt.queue.release_dead(m["ReceiptHandle"])
            kept += 1
            continue
        try:
            rt.queue.send(messages.parse(m["Body"]).replayed(m["MessageId"]).wire())
        except messages.Unreadable:
            rt.queue.send(m["Body"])
        rt.queue.delete_dead(m["ReceiptHandle"])
        sent += 1
    return {"replayed": sent, "left": kept}
