"""The work queue and its dead-letter queue (SQS). The client is created on first use (adapters/aws.py).
It carries message bodies and knows nothing of what is inside them (chalicelib/messages.py does)."""
from __future__ import annotations

import json
import math
from typing import Callable, Iterator, Optional, Sequence, TypeVar

from ..ports import Later, MessageTooLarge, NotSent, ReceivedLetter
from ..ports.queue import OUTAGE_SINCE, TRIES, WAITS, WAITS_FOR, kept_reason

SQS_MAX_BYTES = 256 * 1024
MAX_DELAY_SECONDS = 900        # SQS's longest DelaySeconds
# Room left for what travels with a message later: the dead-letter attributes (reason up to REASON_KEPT
# bytes, attempts, failed_at) and a replay's `replayed_from`.
MAX_BODY_BYTES = SQS_MAX_BYTES - 2048
# Of that room, what a replay's mark takes (`,"replayed_from":"<id>"`, an id of at most 256 characters): a copy that
# carries one may be that much larger, so that a message that fitted is replayed, and waits, with it.
REPLAY_ROOM = 300
# How often the entries of a batch send that SQS failed on its own side (SenderFault false: an InternalError, a
# throttled entry) are sent again, at once, before they are said refused (NotSent). A batch can half succeed at any
# time; a refused wait's copy would hand its record back to SQS, whose next receive counts as a try of it.
RESENDS = 2
T = TypeVar("T")


def encode(message: dict | str) -> str:
    """JSON in UTF-8 as it came (not \\u-escaped: non-Latin text stays its own size). SQS refuses
    U+FFFE and U+FFFF in a body, so those two are escaped; JSON escapes control characters itself."""
    if isinstance(message, str):
        body = message
    else:
        body = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        body = body.replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")
    size = len(body.encode("utf-8"))
    if size > MAX_BODY_BYTES:
        limit = MAX_BODY_BYTES + (REPLAY_ROOM if _replayed(message) else 0)
        if size > limit:
            raise MessageTooLarge(size, limit)
    return body


def _replayed(message: dict | str) -> bool:
    """Does the message carry a replay's mark, its own `replayed_from` (not a field of that name in its data, a
    contact's custom attribute)? Read only of a message past MAX_BODY_BYTES."""
    if isinstance(message, str):
        try:
            message = json.loads(message)
        except ValueError:
            return False
    return isinstance(message, dict) and message.get("replayed_from") is not None


class Queue:
    def __init__(self, queue_url: str, dlq_url: str = "", client=None, poll: int = 1):
        self.queue_url, self.dlq_url, self.poll = queue_url, dlq_url, poll
        self._client = client

    @property
    def client(self):
        if self._client is None:
            from . import aws  # deferred: only the paths that enqueue pay for it
            self._client = aws.client("sqs")
        return self._client

    def send(self, message: dict | str) -> str:
        answer = self.client.send_message(QueueUrl=self.queue_url, MessageBody=encode(message))
        return answer["MessageId"]

    def send_many(self, messages: Sequence[dict | str], delay: float = 0) -> None:
        seconds = max(0, min(int(delay), MAX_DELAY_SECONDS))
        self._send_batches([({"MessageBody": encode(m), **({"DelaySeconds": seconds} if seconds else {})}, m)
                            for m in messages])

    def defer(self, later: list[Later]) -> None:
        self._send_batches([({
            "MessageBody": encode(m.body), "DelaySeconds": max(0, min(MAX_DELAY_SECONDS, math.ceil(m.delay))),
            "MessageAttributes": {TRIES: {"DataType": "Number", "StringValue": str(m.tries)},
                                  WAITS: {"DataType": "Number", "StringValue": str(m.waits)},
                                  **({OUTAGE_SINCE: {"DataType": "Number", "StringValue": f"{m.outage_since:.3f}"}}
                                     if m.outage_since is not None else {}),
                                  **({WAITS_FOR: {"DataType": "String", "StringValue": m.waits_for}}
                                     if m.outage_since is not None and m.waits_for else {})}}, m.body)
            for m in later])

    def _send_batches(self, entries: list[tuple[dict, dict | str]]) -> None:
        """Each (entry, message it carries); every call is made, the entries SQS failed on its own side are sent again
        (RESENDS), then those SQS refused raise NotSent. (SQS sent none of an entry it answers Failed: sent again, it
        is sent once.)"""
        refused = _in_tens(self.client.send_message_batch, self.queue_url, entries, lambda e: e[0], again=RESENDS)
        if refused:
            raise NotSent([(message, reason) for (_, message), reason in refused], len(entries))

    def dead_letter(self, body: str, reason: str, attempts: int, failed_at: str) -> None:
        self.client.send_message(QueueUrl=self.dlq_url, MessageBody=body, MessageAttributes={
            "reason": {"DataType": "String", "StringValue": kept_reason(reason) or "unknown"},
            "attempts": {"DataType": "Number", "StringValue": str(attempts)},
            "failed_at": {"DataType": "String", "StringValue": failed_at},
        })

    def delete(self, receipt_handles: list[str]) -> dict[str, str]:
        return dict(_in_tens(self.client.delete_message_batch, self.queue_url, receipt_handles, _handle))

    def retry_in(self, receipt_handle: str, seconds: float) -> None:
        self.client.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle,
                                              VisibilityTimeout=max(0, min(int(seconds), 43200)))

    def receive_dead(self, max_messages: int = 10, visibility: int = 60) -> list[ReceivedLetter]:
        # A long poll, however short: a short one (0 s) asks a subset of SQS's servers, and may answer none while a
        # few letters are there, which the scans (dlq list, replay, discard, doctor, forget) take for the end. A long
        # one asks them all, answers as soon as it has any, and waits its second only once none is left. (The local
        # stack's SQS, moto, is one server: its short poll sees every letter, BRIDGE_DLQ_POLL_SECONDS=0.)
        answer = self.client.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=max_messages,
                                             MessageAttributeNames=["All"], AttributeNames=["All"],
                                             VisibilityTimeout=visibility, WaitTimeSeconds=self.poll)
        return [_letter(m) for m in answer.get("Messages", [])]

    def delete_dead(self, receipt_handle: str) -> None:
        self.client.delete_message(QueueUrl=self.dlq_url, ReceiptHandle=receipt_handle)

    def delete_dead_many(self, receipt_handles: list[str]) -> dict[str, str]:
        """10 a DeleteMessageBatch call; the handles SQS refused, with its reasons. As with DeleteMessage,
        SQS leaves a letter received again since (its handle is not the latest) where it is, unsaid."""
        return dict(_in_tens(self.client.delete_message_batch, self.dlq_url, receipt_handles, _handle))

    def hide_dead_many(self, receipt_handles: list[str], seconds: int) -> set[str]:
        return {h for h, _ in _in_tens(self.client.change_message_visibility_batch, self.dlq_url,
                                       receipt_handles, lambda h: {**_handle(h), "VisibilityTimeout": seconds})}

    def dead_count(self) -> int:
        """About how many dead letters the queue holds, visible or not (SQS's approximate counts)."""
        return self._count(self.dlq_url, "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")

    def work_count(self) -> int:
        return self._count(self.queue_url, "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                           "ApproximateNumberOfMessagesDelayed")

    def _count(self, url: str, *counts: str) -> int:
        """The sum of these counts of the queue at `url` (one GetQueueAttributes)."""
        attrs = self.client.get_queue_attributes(QueueUrl=url, AttributeNames=list(counts))["Attributes"]
        return sum(int(v) for v in attrs.values())


def _in_tens(call: Callable[..., dict], url: str, items: Sequence[T],
             entry: Callable[[T], dict], again: int = 0) -> list[tuple[T, str]]:
    """`call` (an SQS batch action) on `url` for each item as `entry(item)`, 10 a call, and messages of at most
    SQS_MAX_BYTES together a call (SQS refuses a whole batch past its limit: BatchRequestTooLong); every call is
    made, then the items SQS refused (a batch can half succeed), each with its reason, in the items' order. Those
    SQS failed on its own side (SenderFault false) are asked for again, up to `again` more times (the sender's
    faults would be refused again)."""
    failed: dict[int, dict] = {}
    todo = list(range(len(items)))
    for round_ in range(again + 1):
        for chunk in _batches(todo, lambda n: entry(items[n])):
            answer = call(QueueUrl=url, Entries=[{"Id": str(i), **entry(items[n])} for i, n in enumerate(chunk)])
            failed.update((chunk[int(f["Id"])], f) for f in answer.get("Failed", []))
        todo = [n for n in todo if n in failed and failed[n].get("SenderFault") is False]
        if not todo:
            break
        if round_ < again:
            for n in todo:
                del failed[n]
    return [(items[n], _reason(failed[n])) for n in sorted(failed)]


def _batches(items: Sequence[T], entry: Callable[[T], dict]) -> Iterator[list[T]]:
    chunk: list[T] = []
    size = 0
    for item in items:
        e = entry(item)
        bytes_ = len(e.get("MessageBody", "").encode("utf-8")) + sum(     # (what SQS counts of a message)
            len(f"{name}{a.get('DataType', '')}{a.get('StringValue', '')}".encode("utf-8"))
            for name, a in e.get("MessageAttributes", {}).items())
        if chunk and (len(chunk) == 10 or size + bytes_ > SQS_MAX_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += bytes_
    if chunk:
        yield chunk


def _letter(m: dict) -> ReceivedLetter:
    """A dead letter out of SQS's message: the attributes `dead_letter` wrote (none on one the redrive
    policy moved; anything on one someone else put in the queue)."""
    attrs = {k: v.get("StringValue") for k, v in m.get("MessageAttributes", {}).items()}
    return ReceivedLetter(m["MessageId"], m["ReceiptHandle"], m["Body"], attrs.get("reason") or None,
                          _number(attrs.get("attempts")), attrs.get("failed_at"),
                          int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")))


def _number(value: Optional[str]) -> Optional[int]:
    try:
        return int(value) if value is not None else None
    except ValueError:                  # not ours: a message someone else put in the queue
        return None


def _handle(receipt_handle: str) -> dict:
    return {"ReceiptHandle": receipt_handle}


def _reason(failed: dict) -> str:
    """SQS's reason for an entry of a batch call it refused."""
    return ": ".join(filter(None, (failed.get("Code"), failed.get("Message"))))
