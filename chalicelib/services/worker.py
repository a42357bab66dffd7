"""The SQS worker: applies each message, and makes sure a failing record comes back.

Chalice's SQS event source does not enable partial batch responses: whatever the handler
returns, a normal return deletes the whole batch, and an exception returns the whole batch.
So the worker deletes the records it has handled itself, then raises if any record must be
retried: only those come back. A record that fails permanently, or too many times, is sent
to the dead-letter queue with its reason (and the failure is in the person's history)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from .. import messages
from ..adapters.store import iso
from ..errors import WorkError
from ..messages import CheckMessage, ContactMessage, JoinMessage, PersonRef
from ..observability import count, logger
from . import qualify
from .join import process_join


@dataclass
class Record:
    message_id: str
    body: str
    receipt_handle: str
    receive_count: int

    @classmethod
    def from_lambda(cls, raw: dict) -> "Record":
        return cls(raw.get("messageId", ""), raw.get("body", ""), raw.get("receiptHandle", ""),
                   int((raw.get("attributes") or {}).get("ApproximateReceiveCount", "1")))


@dataclass(frozen=True)
class Handler:
    """How one kind of message is worked: `prepare` reads what all the batch's messages of that
    kind need in a few batched calls; `handle` applies one message with it."""

    prepare: Callable[[list, Any], Any]
    handle: Callable[[Any, Any, Any], Any]


@dataclass(eq=False)
class Job:
    record: Record
    message: Any


class RetryBatch(Exception):
    """Raised to make the event source return the records that must be retried."""


@dataclass
class Result:
    record: Record
    outcome: str                       # done | retry | dead
    reason: Optional[str] = None
    retry_after: Optional[float] = None


def handle_batch(raw_records: list[dict], rt, remaining_ms: Callable[[], int] = lambda: 10**9,
                 handlers: Optional[dict[type, Handler]] = None) -> dict:
    """`remaining_ms`: the Lambda's time left; records not started in time are handed back.
    Each record succeeds or fails on its own: an unreadable one goes straight to the dead-letter
    queue with the reason, and one that breaks a batched read is found and failed alone."""
    handlers = HANDLERS if handlers is None else handlers
    rt.remaining_ms = remaining_ms           # HTTP waits never run into the Lambda's last seconds
    jobs: list[Job] = []
    results: list[Result] = []
    for record in (Record.from_lambda(r) for r in raw_records):
        logger.append_keys(message_id=record.message_id)
        try:
            jobs.append(Job(record, messages.parse(record.body)))
        except messages.Unreadable as exc:
            results.append(_dead(rt, record, f"unreadable message: {exc.reason}"))
    contexts: dict[Job, Any] = {}
    for kind, handler in handlers.items():    # one batched read per kind, not one per record
        group = [j for j in jobs if type(j.message) is kind]
        if group:
            contexts.update(_prepare(handler, group, rt))
    for job in jobs:
        record, message = job.record, job.message
        logger.append_keys(message_id=record.message_id)
        context = contexts.get(job, WorkError(f"no handler for message kind {message.kind!r}"))
        if isinstance(context, WorkError):   # its read failed: a try like any other
            results.append(_failed(rt, record, message, context.reason, True, 5))   # soon, not after the timeout
            continue
        if remaining_ms() < rt.config.record_budget_ms:
            results.append(Result(record, "retry", "not started: the Lambda's time is running out", retry_after=5))
            continue
        try:
            handlers[type(message)].handle(message, rt, context)
            results.append(Result(record, "done"))
            count("RecordsProcessed")
        except WorkError as exc:
            results.append(_failed(rt, record, message, exc.reason, exc.retryable, exc.retry_after, exc.person))
        except Exception as exc:  # a bug or an outage we did not foresee: retry, then dead-letter
            logger.exception("record failed")
            results.append(_failed(rt, record, message, f"{type(exc).__name__}: {exc}", True, None))
    logger.remove_keys(["message_id"])
    return settle(results, rt)


def _prepare(handler: Handler, group: list[Job], rt) -> dict[Job, Any]:
    """The batched read for `group`. If it fails, one message may be what breaks it (say, a key
    the database refuses): each is read alone to find the ones that fail, and the others are read
    together again, so that they still share one view (e.g. a notification repeated in the batch)."""
    try:
        shared = handler.prepare([j.message for j in group], rt)
        return {j: shared for j in group}
    except Exception as exc:  # e.g. DynamoDB throttled, or a key it refuses
        logger.exception("batched read failed")
        if len(group) == 1:
            return {group[0]: _read_failed(exc)}
    out: dict[Job, Any] = {}
    for job in group:
        try:
            handler.prepare([job.message], rt)
        except Exception as exc:
            out[job] = _read_failed(exc)
    rest = [j for j in group if j not in out]
    if rest:
        try:
            shared = handler.prepare([j.message for j in rest], rt)
        except Exception as exc:
            shared = _read_failed(exc)
        out.update({j: shared for j in rest})
    return out


def _read_failed(exc: Exception) -> WorkError:
    return WorkError(f"batched read failed: {type(exc).__name__}: {exc}")


def settle(results: list[Result], rt) -> dict:
    retry = [r for r in results if r.outcome == "retry"]
    summary = {"done": sum(r.outcome == "done" for r in results), "retry": len(retry),
               "dead": sum(r.outcome == "dead" for r in results)}
    if not retry:
        return summary
    rt.queue.delete([r.record.receipt_handle for r in results if r.outcome != "retry"])
    for r in retry:
        if r.retry_after:
            rt.queue.retry_in(r.record.receipt_handle, r.retry_after)
    raise RetryBatch(f"{len(retry)} of {len(results)} records will be retried: "
                     + "; ".join(f"{r.record.message_id}: {r.reason}" for r in retry))


def _failed(rt, record: Record, message, reason: str, retryable: bool, retry_after,
            person: Optional[tuple[str, str]] = None) -> Result:
    count("RecordsFailed")
    if retryable and record.receive_count < rt.config.max_attempts:
        logger.warning("record will be retried", extra={"reason": reason, "attempt": record.receive_count})
        return Result(record, "retry", reason, retry_after)
    if retryable:
        reason = f"gave up after {record.receive_count} tries: {reason}"
    return _dead(rt, record, reason, person or message.person_ref)


def _dead(rt, record: Record, reason: str, person: Optional[tuple[str, str]] = None) -> Result:
    rt.queue.dead_letter(record.body, reason, record.receive_count, iso(rt.clock()))
    count("DeadLettered")
    logger.error("record sent to the dead-letter queue", extra={"reason": reason})
    if person:
        rt.store.append_history(*person, [
            {"event": "dead_letter", "outcome": "failed", "reason": reason,
             "details": {"attempts": record.receive_count, "replay": "bridge dlq replay"}}])
    return Result(record, "dead", reason)


def _prepare_joins(messages_: list[JoinMessage], rt) -> tuple[dict, dict]:
    links = rt.store.links(m.person_ref for m in messages_)
    settings = rt.store.settings_documents(m.campaign_id for m in messages_)
    return links, settings


def _join(message: JoinMessage, rt, context: tuple[dict, dict]) -> None:
    links, settings = context
    ref: PersonRef = message.person_ref
    process_join(message, rt, prefetched_link=links.get(ref), settings_doc=settings.get(ref.campaign_id))


# The one registry of what the worker does with each kind of message (chalicelib/messages.py).
HANDLERS: dict[type, Handler] = {
    JoinMessage: Handler(_prepare_joins, _join),
    ContactMessage: Handler(qualify.Batch, qualify.on_contact_event),
    CheckMessage: Handler(qualify.Batch, qualify.on_check),
}
if set(HANDLERS) != set(messages.KINDS.values()):
    raise ImportError("worker.HANDLERS must handle every kind of chalicelib.messages")
