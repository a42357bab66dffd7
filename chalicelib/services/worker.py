"""The SQS worker: applies each message, and makes sure a failing record comes back.

Chalice's SQS event source does not enable partial batch responses: whatever the handler
returns, a normal return deletes the whole batch, and an exception returns the whole batch.
So the worker deletes the records it has handled itself, then raises if any record must be
retried: only those come back. A record that fails permanently, or too many times, is sent
to the dead-letter queue with its reason (and the failure is in the person's history)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Optional

from ..adapters.store import iso
from ..errors import WorkError
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


class RetryBatch(Exception):
    """Raised to make the event source return the records that must be retried."""


@dataclass
class Result:
    record: Record
    outcome: str                       # done | retry | dead
    reason: Optional[str] = None
    retry_after: Optional[float] = None


def handle_batch(raw_records: list[dict], rt, remaining_ms: Callable[[], int] = lambda: 10**9) -> dict:
    """`remaining_ms`: the Lambda's time left; records not started in time are handed back."""
    records = [Record.from_lambda(r) for r in raw_records]
    rt.remaining_ms = remaining_ms           # HTTP waits never run into the Lambda's last seconds
    jobs: list[tuple[Record, dict]] = []
    results: list[Result] = []
    for record in records:
        try:
            message = json.loads(record.body)
            if not isinstance(message, dict) or message.get("kind") not in HANDLERS:
                raise ValueError(f"unknown message kind {message.get('kind') if isinstance(message, dict) else None!r}")
            jobs.append((record, message))
        except ValueError as exc:
            results.append(_dead(rt, record, f"unreadable message: {exc}"))
    contexts = {}
    for kind, (prepare, _) in HANDLERS.items():    # one batched read per kind, not one per record
        messages = [m for _, m in jobs if m["kind"] == kind]
        if messages:
            try:
                contexts[kind] = prepare(messages, rt)
            except Exception as exc:  # e.g. DynamoDB throttled: these records come back, the others go on
                logger.exception("batched read failed")
                contexts[kind] = WorkError(f"batched read failed: {type(exc).__name__}: {exc}")
    for record, message in jobs:
        logger.append_keys(message_id=record.message_id)
        context = contexts[message["kind"]]
        if isinstance(context, WorkError) or remaining_ms() < rt.config.record_budget_ms:
            reason = context.reason if isinstance(context, WorkError) else "not started: the Lambda's time is running out"
            results.append(Result(record, "retry", reason, retry_after=5))   # soon, not after the full timeout
            continue
        try:
            HANDLERS[message["kind"]][1](message, rt, context)
            results.append(Result(record, "done"))
            count("RecordsProcessed")
        except WorkError as exc:
            results.append(_failed(rt, record, message, exc.reason, exc.retryable, exc.retry_after, exc.person))
        except Exception as exc:  # a bug or an outage we did not foresee: retry, then dead-letter
            logger.exception("record failed")
            results.append(_failed(rt, record, message, f"{type(exc).__name__}: {exc}", True, None))
    logger.remove_keys(["message_id"])
    return settle(results, rt)


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


def _failed(rt, record: Record, message: dict, reason: str, retryable: bool, retry_after,
            person: Optional[tuple[str, str]] = None) -> Result:
    count("RecordsFailed")
    if retryable and record.receive_count < rt.config.max_attempts:
        logger.warning("record will be retried", extra={"reason": reason, "attempt": record.receive_count})
        return Result(record, "retry", reason, retry_after)
    if retryable:
        reason = f"gave up after {record.receive_count} tries: {reason}"
    return _dead(rt, record, reason, person or _person(message))


def _dead(rt, record: Record, reason: str, person: Optional[tuple[str, str]] = None) -> Result:
    rt.queue.dead_letter(record.body, reason, record.receive_count, iso(rt.clock()))
    count("DeadLettered")
    logger.error("record sent to the dead-letter queue", extra={"reason": reason})
    if person:
        rt.store.append_history(*person, [
            {"event": "dead_letter", "outcome": "failed", "reason": reason,
             "details": {"attempts": record.receive_count, "replay": "bridge dlq replay"}}])
    return Result(record, "dead", reason)


def _prepare_joins(messages: list[dict], rt) -> tuple[dict, dict]:
    links = rt.store.links((str(m["campaign_id"]), str(m["rf_user_id"])) for m in messages)
    settings = rt.store.settings_documents(str(m["campaign_id"]) for m in messages)
    return links, settings


def _join(message: dict, rt, context: tuple[dict, dict]) -> None:
    links, settings = context
    key = (str(message["campaign_id"]), str(message["rf_user_id"]))
    process_join(message, rt, prefetched_link=links.get(key), settings_doc=settings.get(key[0]))


def _person(message: dict) -> Optional[tuple[str, str]]:
    if message.get("kind") in ("rf.join", "intercom.check"):
        return str(message["campaign_id"]), str(message["rf_user_id"])
    return None


# kind -> (batched read for all messages of that kind, handler of one message)
HANDLERS: dict[str, tuple[Callable, Callable]] = {
    "rf.join": (_prepare_joins, _join),
    "intercom.contact": (qualify.Batch, qualify.on_contact_event),
    "intercom.check": (qualify.Batch, qualify.on_check),
}
