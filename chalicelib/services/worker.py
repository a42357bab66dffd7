"""The SQS worker: applies each message, and makes sure a failing record comes back.

Chalice's SQS event source does not enable partial batch responses: whatever the handler
returns, a normal return deletes the whole batch, and an exception returns the whole batch.
So the worker deletes the records it has handled itself, then raises if any record must be
retried: only those come back. A record that fails permanently, or too many times, is sent
to the dead-letter queue with its reason (and the failure is in the person's history).

A record that must wait (errors.Deferred: another worker's claim, a rate-limit pause, an open
circuit) has not failed: a copy goes back to the queue with a delay, carrying the tries used so far
(SQS's receive count cannot tell a wait from a try), and the original is deleted. Waiting never
uses up a try, and never sends a message to the dead-letter queue.

A vendor's outage (errors.WorkError.outage: Intercom or Referral Factory answering 5xx, timing out or
refusing connections, after the HTTP client's own retries; AWS throttling the table, the queue or the secret
store, errors.Throttled) is a wait too, with a growing delay, up to
BRIDGE_OUTAGE_HOURS from the record's first outage wait (carried by its copies); then it is dead-lettered
with a reason that says so, or, if the vendor has answered this container since then, it fails as a try like
any other (domain/outage.py decides). Reconciliation's search of changed contacts does not
wait: the next scheduled search covers its window (services/dead_letters.py: superseded)."""
from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import (Any, Callable, ContextManager, Generic, Hashable, Iterable, Iterator, Optional, Protocol, Sequence,
                    TypeVar)

from .. import messages
from ..config import RAISE_MS, SETTLE_MS, Config
from ..domain.history import RETRY, Entry, iso
from ..domain.link import PersonRef
from ..domain.outage import AWS, Attempt, Failure, OutageWait, outage_wait, token_wait, unavailable
from ..errors import Deferred, Permanent, TokenRefused, WorkError, token_wait_fix, unforeseen, waited_out, waits
from ..messages import (ChangesMessage, CheckMessage, ContactMessage, JoinMessage, ReferralCountMessage,
                        SyncPageMessage, VerifyMessage)
from ..observability import Masked, count, logger, mask_emails
from ..ports import Later, NotSent, WorkQueue
from ..ports.queue import OUTAGE_SINCE, TOKEN, TRIES, WAITS, WAITS_FOR
from .concurrency import Runner
from .deps import WorkDeps
from .duplicates import Verification, on_verify
from .join import process_joins
from .qualification.batch import Batch
from .qualification.changes import on_changes
from .qualification.checks import on_check
from .qualification.contact_events import on_contact_event, whole
from .referral_count import on_count, read as read_counts
from . import sync


class Work(Protocol):
    """What the worker is given (the composition root's Runtime; tests: tests/fakes.FakeWork)."""

    config: Config
    remaining_ms: Callable[[], int]      # the Lambda's time left: HTTP waits never run into its last seconds

    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def queue(self) -> WorkQueue: ...
    @property
    def deps(self) -> WorkDeps: ...
    def in_time(self, kept_ms: int) -> ContextManager[None]:
        """Its AWS calls made inside end `kept_ms` before the Lambda's time (`remaining_ms`) runs out."""


@dataclass
class Record:
    message_id: str
    body: str
    receipt_handle: str
    receive_count: int
    tries_before: int = 0      # tries used by the copies this message was deferred from
    waits: int = 0             # how often it was deferred
    outage_since: Optional[float] = None   # its first wait for a vendor's outage (epoch seconds)
    waits_for: Optional[str] = None        # ... or for a refused token (TOKEN): each wait counts from its own

    @property
    def tries(self) -> int:
        """Tries used, this receive included (a receive that ends in a wait is given back)."""
        return self.tries_before + self.receive_count

    @classmethod
    def from_lambda(cls, raw: dict) -> "Record":
        attributes = raw.get("messageAttributes") or {}

        def number(name: str) -> Optional[float]:
            try:
                value = float((attributes.get(name) or {}).get("stringValue", "x"))
            except ValueError:
                return None
            return max(0.0, value) if value == value else None     # (not NaN)
        return cls(raw.get("messageId", ""), raw.get("body", ""), raw.get("receiptHandle", ""),
                   int((raw.get("attributes") or {}).get("ApproximateReceiveCount", "1")),
                   int(number(TRIES) or 0), int(number(WAITS) or 0), number(OUTAGE_SINCE),
                   (attributes.get(WAITS_FOR) or {}).get("stringValue"))


M = TypeVar("M")
C = TypeVar("C")


def _about(message: Any, context: Any) -> Iterable[Hashable]:
    """Who a message is about: messages sharing any of these never run at the same time."""
    ref = getattr(message, "person_ref", None)
    return [("person", *ref)] if ref is not None else []


@dataclass(frozen=True)
class Handler(Generic[M, C]):
    """How one kind of message is worked: `prepare` reads what all the batch's messages of that
    kind need in a few batched calls; `handle` applies one message with it, or `run_all` applies
    them all at once (steps shared by the whole batch: one search, one tag call) and answers, per
    message, its outcome or the exception it failed with. `about`: the people (or contacts) a
    message concerns; messages about the same one run one after another, in batch order.
    `handle_try`: instead of `handle`, also told what the worker does if this try fails (domain/outage.Attempt:
    whether it is the last, and how a vendor's outage is waited out now), so that what it records of the failure
    says so (a sync page's error is shown waiting for the vendor, or failed, not retrying)."""

    prepare: Callable[[list[M], WorkDeps], C]
    handle: Optional[Callable[[M, WorkDeps, C], Any]] = None
    run_all: Optional[Callable[[list[M], WorkDeps, C, Runner], list[Any]]] = None
    about: Callable[[M, C], Iterable[Hashable]] = _about
    handle_try: Optional[Callable[[M, WorkDeps, C, Attempt], Any]] = None
    waits_out_outages: bool = True     # False: a vendor's outage is a failed try, as any other failure


@dataclass(eq=False)
class Job:
    record: Record
    message: Any
    outage: Optional[OutageWait] = None      # how its failure for a vendor's outage is waited out: decided once
    decided: bool = False                    # (outage None once decided: not waited out, a failed try)


class RetryBatch(Masked):
    """Raised to make the event source return the records that must be retried (the Lambda runtime
    prints it, outside the logger: its text is masked)."""


@dataclass
class Result:
    record: Record
    outcome: str                       # done | retry | dead | wait
    reason: Optional[str] = None
    retry_after: Optional[float] = None


_RUNNERS: dict[int, Runner] = {}


def runner(workers: int) -> Runner:
    """The container's pool for running records at once (one per size)."""
    if workers not in _RUNNERS:
        _RUNNERS[workers] = Runner(workers)
    return _RUNNERS[workers]
DEFAULT_WAIT = 30.0                    # a wait that did not say how long
#: A failed try's `retry_after` (a vendor's Retry-After, on a failure not waited out as an outage) is honoured up to
#: this: the work queue's visibility timeout as `make deploy` sets it (6 × the worker's 120 s), the queue's own retry.
#: The record is the same message each try, aging: honoured for hours, its BRIDGE_MAX_ATTEMPTS tries would outlast the
#: work-queue-stalled alarm's hour, which would fire on a worker that works (tests/deploy derives the plan from this).
LONGEST_RETRY_WAIT = 720.0
#: A person's note of their waits counts from one again for a wait this long after their last (a waiting record
#: comes back within SQS's longest delay, 15 min), or for another kind of wait: not every wait since the first.
WAITS_APART = 3600.0


def handle_batch(raw_records: list[dict], work: Work, remaining_ms: Callable[[], int] = lambda: 10**9,
                 handlers: Optional[dict[type, Handler]] = None) -> dict:
    """`remaining_ms`: the Lambda's time left; records not started in time are handed back.
    Each record succeeds or fails on its own: an unreadable one goes straight to the dead-letter
    queue with the reason, and one that breaks a batched read is found and failed alone. The
    records run at once (the work is I/O-bound), except those about the same person."""
    handlers = HANDLERS if handlers is None else handlers
    work.remaining_ms = remaining_ms
    with work.in_time(SETTLE_MS):
        results = _handle(raw_records, work, handlers)
    with work.in_time(RAISE_MS):
        return settle(results, work)


def _handle(raw_records: list[dict], work: Work, handlers: dict[type, Handler]) -> list[Result]:
    jobs, results = _read(raw_records, work)
    logger.remove_keys(["message_id"])
    contexts: dict[Job, Any] = {}
    for kind, handler in handlers.items():    # one batched read per kind, not one per record
        group = [j for j in jobs if type(j.message) is kind]
        if group:
            contexts.update(_prepare(handler, group, work.deps))
    ready: list[Job] = []
    for job in jobs:
        context = contexts.get(job, WorkError(f"no handler for message kind {job.message.kind!r}"))
        with _naming(job):
            if isinstance(context, WorkError) and _outage(handlers, job, context):
                results.append(_waits_out(work, job, context))
            elif isinstance(context, Deferred):    # its read must wait (say, for the rate budget): not a try
                results.append(_waits(work, job.record, job.message, context))
            elif isinstance(context, Permanent):   # its read failed for good (the workspace disconnected): no retry
                results.append(_failed(work, job.record, job.message, context.reason, False, None, context.person))
            elif isinstance(context, WorkError):   # its read failed: a try like any other (soon, not after the timeout)
                results.append(_failed(work, job.record, job.message, context.reason, True, 5))
            elif _late(work):
                results.append(_not_started(job.record))
            else:
                ready.append(job)
    return results + _run(ready, work, handlers, contexts)


def _run(jobs: list[Job], work: Work, handlers: dict[type, Handler], contexts: dict[Job, Any]) -> list[Result]:
    pool = runner(work.config.concurrency)
    outcomes: dict[Job, Any] = {}
    together: dict[int, list[Job]] = {}        # run_all kinds, per shared context
    alone: list[Job] = []
    for job in jobs:
        if handlers[type(job.message)].run_all is not None:
            together.setdefault(id(contexts[job]), []).append(job)
        else:
            alone.append(job)
    for group in together.values():
        run_all = handlers[type(group[0].message)].run_all
        assert run_all is not None
        if _late(work):                 # the groups before it took the time
            outcomes.update((job, NOT_STARTED) for job in group)
            continue
        try:
            answers = run_all([j.message for j in group], work.deps, contexts[group[0]], pool)
        except Exception as exc:   # the batch's own steps failed (a bug, the table throttled): every record with it
            _log_failed("batch of records failed", exc)
            answers = [exc] * len(group)
        outcomes.update(zip(group, answers))

    def one(job: Job) -> Any:
        if _late(work):                 # it waited for another record about the same person
            return NOT_STARTED
        logger.thread_safe_append_keys(message_id=job.record.message_id)
        try:
            handler = handlers[type(job.message)]
            if handler.handle_try is not None:   # as _failed and _waits_out decide: told what a failure does
                return handler.handle_try(job.message, work.deps, contexts[job], Attempt(
                    job.record.tries >= work.config.max_attempts,
                    partial(_outage_wait, work, job) if handler.waits_out_outages else None))
            assert handler.handle is not None
            return handler.handle(job.message, work.deps, contexts[job])
        except WorkError:
            raise
        except Exception:  # a bug or an outage we did not foresee: logged here, with its traceback
            logger.exception("record failed")
            raise
        finally:
            logger.thread_safe_remove_keys(["message_id"])

    about = {job: {("record", id(job)), *handlers[type(job.message)].about(job.message, contexts[job])}
             for job in alone}
    outcomes.update(zip(alone, pool.chains(one, alone, lambda job: about[job])))
    results = []
    for job in jobs:
        with _naming(job):
            results.append(_result(work, job, outcomes[job], _outage(handlers, job, outcomes[job])))
    return results


#: The outcome of a record not started: the time left was less than a record's budget (its AWS calls would be refused
#: before it could finish, adapters/aws.within, a try used for starting late).
NOT_STARTED = object()


def _late(work: Work) -> bool:
    return work.remaining_ms() < work.config.record_budget_ms


def _not_started(record: Record) -> Result:
    """Not a try: nothing was done. It waits (a copy comes back soon), as a deferred record does."""
    return Result(record, "wait", "not started: the Lambda's time is running out", retry_after=5)


@contextmanager
def _naming(job: Job) -> Iterator[None]:
    """The lines written meanwhile (its wait, retry or dead letter) name the record (its SQS message id, as
    RetryBatch names it), its kind and the person it is about (for `bridge explain`). The batch's own thread only,
    while no record runs."""
    ref = job.message.person_ref
    keys = {"message_id": job.record.message_id, "kind": job.message.kind,
            **({"campaign_id": ref.campaign_id, "rf_user_id": ref.rf_user_id} if ref else {})}
    logger.append_keys(**keys)
    try:
        yield
    finally:
        logger.remove_keys(list(keys))


def _outage(handlers: dict[type, Handler], job: Job, outcome: Any) -> bool:
    """Did the record fail with a vendor's outage (or a connected workspace's refused token) that its kind waits out?"""
    handler = handlers.get(type(job.message))
    return (isinstance(outcome, WorkError) and waited_out(outcome) and handler is not None
            and handler.waits_out_outages)


def _result(work: Work, job: Job, outcome: Any, outage: bool = False) -> Result:
    record, message = job.record, job.message
    if outcome is NOT_STARTED:
        return _not_started(record)
    if outage:              # not a try: it waits for the vendor, up to the outage budget
        return _waits_out(work, job, outcome)
    if isinstance(outcome, Deferred):    # not a failure: it waits, without using up a try
        return _waits(work, record, message, outcome)
    if isinstance(outcome, WorkError):
        # (a kind that does not wait out an outage still says it, as doctor reads it: domain/outage.outage_of)
        reason = f"{unavailable(outcome.outage)}: {outcome.reason}" if outcome.outage else outcome.reason
        return _failed(work, record, message, reason, outcome.retryable, outcome.retry_after, outcome.person)
    if isinstance(outcome, Exception):   # a bug or an outage we did not foresee: retry, then dead-letter
        return _failed(work, record, message, unforeseen(outcome), True, None)
    count("RecordsProcessed")
    return Result(record, "done")


def _read(raw_records: list[dict], work: Work) -> tuple[list[Job], list[Result]]:
    """The records' messages; an unreadable one is dead-lettered at once, with the reason."""
    jobs, dead = [], []
    for record in (Record.from_lambda(r) for r in raw_records):
        logger.append_keys(message_id=record.message_id)
        try:
            jobs.append(Job(record, messages.parse(record.body)))
        except messages.Unreadable as exc:
            dead.append(_dead(work, record, f"unreadable message: {exc.reason}"))
    return jobs, dead


def _prepare(handler: Handler, group: list[Job], deps: WorkDeps) -> dict[Job, Any]:
    """The batched read for `group`. If it fails, one message may be what breaks it (say, a key
    the database refuses): each is read alone to find the ones that fail, and the others are read
    together again, so that they still share one view (e.g. a notification repeated in the batch)."""
    try:
        shared = handler.prepare([j.message for j in group], deps)
        return {j: shared for j in group}
    except Exception as exc:  # e.g. DynamoDB throttled, or a key it refuses
        _log_failed("batched read failed", exc)
        if len(group) == 1:
            return {group[0]: _read_failed(exc)}
    out: dict[Job, Any] = {}
    for job in group:
        try:
            handler.prepare([job.message], deps)
        except Exception as exc:
            out[job] = _read_failed(exc)
    rest = [j for j in group if j not in out]
    if rest:
        try:
            shared = handler.prepare([j.message for j in rest], deps)
        except Exception as exc:
            shared = _read_failed(exc)
        out.update({j: shared for j in rest})
    return out


def _log_failed(what: str, exc: Exception) -> None:
    """A step of the batch's own failed: an expected condition with its reason (a WorkError: the table throttled, a
    vendor's outage, a pause, a disconnected workspace) in one line; anything else (a bug) with its traceback."""
    if isinstance(exc, TokenRefused):     # waited out, not dead-lettered: its reason's replay is a dead letter's
        logger.warning(f"{what}: {mask_emails(exc.waiting)}")
    elif isinstance(exc, WorkError):
        logger.warning(f"{what}: {mask_emails(exc.reason)}")
    else:
        logger.exception(what)


def _read_failed(exc: Exception) -> WorkError:
    # The read must wait (a rate-limit pause, a spent budget, a vendor's outage), or retrying will not help
    # (the workspace disconnected): each goes on as itself, with its own reason.
    if isinstance(exc, WorkError) and (isinstance(exc, Permanent) or waits(exc)):
        return exc
    return WorkError(f"batched read failed: {unforeseen(exc)}")


def settle(results: list[Result], work: Work) -> dict:
    """`{"done", "retry", "dead"}` counts (and `"waiting"` when some records wait)."""
    waiting = [r for r in results if r.outcome == "wait"]
    if waiting:
        # Copies first: if this fails, the whole batch comes back and nothing is lost. If SQS refused only some
        # (NotSent: the others were sent), only the refused ones' originals come back, when their wait ends.
        try:
            work.queue.defer([Later(r.record.body, r.retry_after or DEFAULT_WAIT, r.record.tries - 1,
                                    r.record.waits + 1, r.record.outage_since, r.record.waits_for)
                              for r in waiting])
        except NotSent as exc:
            refused = {body: reason for body, reason in exc.refused}
            for r in waiting:
                if r.record.body in refused:
                    r.outcome = "retry"
                    r.reason = f"could not send its copy back to the queue to wait: {refused[r.record.body]}"
            waiting = [r for r in waiting if r.outcome == "wait"]
    retry = [r for r in results if r.outcome == "retry"]
    summary = {"done": sum(r.outcome == "done" for r in results), "retry": len(retry),
               "dead": sum(r.outcome == "dead" for r in results)}
    if waiting:
        summary["waiting"] = len(waiting)
    if not retry:
        return summary
    kept = work.queue.delete([r.record.receipt_handle for r in results if r.outcome != "retry"])
    for r in retry:
        if r.retry_after:       # (a wait whose copy SQS refused too: no longer than a failed try's)
            work.queue.retry_in(r.record.receipt_handle, min(r.retry_after, LONGEST_RETRY_WAIT))
    # A handled record SQS would not delete comes back with the batch and is worked again, as a repeat.
    not_deleted = (f"; SQS would not delete {len(kept)} handled record(s) ({'; '.join(dict.fromkeys(kept.values()))}):"
                   " they come back and are worked again as repeats") if kept else ""
    # (the Lambda runtime logs this exception itself, outside the logger's masking)
    raise RetryBatch(mask_emails(f"{len(retry)} of {len(results)} records will be retried: "
                                 + "; ".join(f"{r.record.message_id}: {r.reason}" for r in retry) + not_deleted))


def _waits(work: Work, record: Record, message: Any, exc: Deferred) -> Result:
    """Not a failure: the record waits in the queue. A little jitter, so that what one pause held
    back does not all come back at the same moment."""
    delay = (exc.retry_after or DEFAULT_WAIT) + random.uniform(0, 2)
    count("RecordsDeferred")
    logger.info("record waits", extra={"reason": mask_emails(exc.reason), "seconds": round(delay),
                                       "tries": record.tries - 1, "waits": record.waits + 1})
    if exc.status is not None:      # the vendor answered (a 429): an outage it was in has ended
        record.outage_since = record.waits_for = None
    person = exc.person or message.person_ref
    if person:
        try:
            work.deps.links.note_repeat(PersonRef(*person), "waiting", f"{exc.reason} (waits in the queue, "
                                        "without using up a try)", outcome="deferred", restart_after=WAITS_APART)
        except WorkError as failed:     # the wait stands without its note (the table throttled too): one line
            logger.warning("could not note the wait in the history", extra={"reason": mask_emails(failed.reason)})
        except Exception:  # the wait stands without its note
            logger.exception("could not note the wait in the history")
    return Result(record, "wait", exc.reason, delay)


def _outage_wait(work: Work, job: Job, exc: Failure) -> Optional[OutageWait]:
    """How the job waits out the outage `exc` met now (None: it does not, the vendor answers again): decided
    once (its handler may have asked first, to record it). A refused token waits for the workspace's reconnect."""
    # Each kind of wait counts its budget from its own beginning: a refused token's is not an outage's before it.
    token = isinstance(exc, TokenRefused)
    since = job.record.outage_since if (job.record.waits_for == TOKEN) == token else None
    if not job.decided and isinstance(exc, TokenRefused):
        job.outage, job.decided = token_wait(
            exc.workspace, token_wait_fix(exc.workspace, exc.token_app), exc.reason, since,
            work.clock(), work.config.outage_hours * 3600, random.random()), True
    if not job.decided:
        assert exc.outage is not None
        job.outage, job.decided = outage_wait(
            exc.outage, exc.reason, since, work.clock(), work.config.outage_hours * 3600,
            random.random(), exc.retry_after, exc.status, work.deps.apis.answered(exc.outage, exc.where)), True
    return job.outage


def _waits_out(work: Work, job: Job, exc: WorkError) -> Result:
    """A vendor's outage: the record waits for it (its copies carry since when), or, past the outage budget,
    is dead-lettered with a reason that says so; or, past the budget while the vendor answers again, fails as a try."""
    record, message = job.record, job.message
    decided = _outage_wait(work, job, exc)
    if decided is None:         # the record's own failure: its reason is the vendor's answer, not an outage
        return _failed(work, record, message, exc.reason, exc.retryable, exc.retry_after, exc.person)
    if decided.delay is None:       # (the reason is the outage's; the history keeps this record's own words)
        count("RecordsFailed")
        since = {"refused_since" if decided.workspace else "outage_since": iso(decided.since)}
        return _dead(work, record, decided.reason, exc.person or message.person_ref, message.kind,
                     {**since, **({} if decided.workspace else {"last_answer": exc.reason}), **_replay_of(message)})
    record.outage_since, record.waits_for = decided.since, TOKEN if decided.workspace else None
    # Apart from the other waits (RecordsDeferred counts them all): the dashboard's and the alarm's outage, by vendor.
    count("IntercomTokenRefused" if decided.workspace else "RFUnavailable" if exc.outage == "Referral Factory"
          else "AWSThrottled" if exc.outage in AWS else "IntercomUnavailable")
    wait = Deferred(decided.reason, retry_after=decided.delay)
    wait.person = exc.person
    return _waits(work, record, message, wait)


def _failed(work: Work, record: Record, message: Any, reason: str, retryable: bool, retry_after: Optional[float],
            person: Optional[tuple[str, str]] = None) -> Result:
    count("RecordsFailed")
    retry_after = min(retry_after, LONGEST_RETRY_WAIT) if retry_after else retry_after
    if retryable and record.tries < work.config.max_attempts:
        logger.warning("record will be retried", extra={"reason": mask_emails(reason), "attempt": record.tries})
        _note_retry(work, record, reason, retry_after, person or message.person_ref, message.kind,
                    _replay_of(message))
        return Result(record, "retry", reason, retry_after)
    if retryable:
        reason = f"gave up after {record.tries} tries: {reason}"
    return _dead(work, record, reason, person or message.person_ref, message.kind, _replay_of(message))


def _replay_of(message: Any) -> dict:
    """The dead letter a replayed message's try comes from (`replayed_from`), for its entries: explain orders the
    replay's note before them, whatever the CLI's clock said."""
    replayed_from = getattr(message, "replayed_from", None)
    return {"replayed_from": replayed_from} if replayed_from else {}


def _note_retry(work: Work, record: Record, reason: str, retry_after: Optional[float],
                person: Optional[Sequence[str]], kind: str, replay: Optional[dict] = None) -> None:
    """The person's history says the failed try is tried again (which try of how many, and when, if the
    failure said so): `explain` shows it retrying, not failed, and advises no replay (nothing is dead). Only
    while the person is kept (LinkRepository.note): erased meanwhile, nothing about them is written back."""
    if not person:
        return
    try:
        work.deps.links.note(PersonRef(*person), [Entry(RETRY, "retrying", reason, {
            "try": record.tries, "of": work.config.max_attempts, "kind": kind,
            **({"next_try_at": iso(work.clock() + retry_after)} if retry_after else {}), **(replay or {})})])
    except Exception:  # the retry stands without its note
        logger.exception("could not note the retry in the history")


def _dead(work: Work, record: Record, reason: str, person: Optional[Sequence[str]] = None,
          kind: Optional[str] = None, details: Optional[dict] = None) -> Result:
    try:
        work.deps.dead_letter(record.body, reason, record.tries, person, kind, details)
    except Exception as exc:  # SQS refused the letter (no room for its reason, throttled): this record alone comes back
        logger.exception("could not send a record to the dead-letter queue")
        return Result(record, "retry", f"could not send it to the dead-letter queue: {unforeseen(exc)}")
    return Result(record, "dead", reason)


JoinContext = tuple[dict, dict]


def _prepare_joins(messages_: list[JoinMessage], deps: WorkDeps) -> JoinContext:
    """The batch's links and its campaigns' settings: two reads, at once."""
    links, settings = runner(2).both(lambda: deps.links.get_many(m.person_ref for m in messages_),
                                     lambda: deps.settings.documents(m.campaign_id for m in messages_))
    if isinstance(links, Exception):
        raise links
    if isinstance(settings, Exception):
        raise settings
    return links, settings


def _joins(messages_: list[JoinMessage], deps: WorkDeps, context: JoinContext, pool: Runner) -> list[Any]:
    links, settings = context
    return process_joins(messages_, deps, links, settings, pool)


def _contact_about(message: ContactMessage, batch: Batch) -> Iterable[Hashable]:
    """A contact event is about its contact (and the one merged into it), and about every person
    linked to them or, by email, to its email."""
    ws, item = message.workspace, message.item
    contacts = [c for c in (item.id, item.merged_from and item.merged_from.id) if c]
    linked = [link for c in contacts for link in batch.linked_to_contact(ws, c)]
    linked += batch.linked_to_email(ws, item.email)
    return [*(("contact", ws, c) for c in contacts), *(("person", *link.ref) for link in linked)]


def _contact(message: ContactMessage, deps: WorkDeps, context: Batch) -> None:
    read = whole(message, deps, context)    # (a notification too large to queue: its contact, read now)
    if read is not None:
        on_contact_event(read, deps, context)
        sync.on_contact(read, deps)         # ongoing sync: a contact just created is enrolled


def _changes(message: ChangesMessage, deps: WorkDeps, context: Any) -> None:
    if on_changes(message, deps, context) != "continued":     # (a search that goes on: once, at its end)
        sync.catch_up(deps, message.workspace)  # ongoing sync: the scheduled catch-up, on the same schedule


# The one registry of what the worker does with each kind of message (chalicelib/messages.py).
HANDLERS: dict[type, Handler] = {
    JoinMessage: Handler(_prepare_joins, run_all=_joins),
    ContactMessage: Handler(Batch.read, _contact, about=_contact_about),
    CheckMessage: Handler(Batch.read, on_check),
    VerifyMessage: Handler(Verification.read, on_verify),
    # One search per workspace. An outage is not waited out: the next scheduled search covers the window.
    ChangesMessage: Handler(lambda messages_, deps: None, _changes, waits_out_outages=False),
    # (a sync page waits out an outage as any record: `sync status` shows it waiting for the vendor)
    SyncPageMessage: Handler(lambda messages_, deps: None, handle_try=sync.on_page,
                             about=lambda message, context: [("sync", message.campaign_id)]),
    ReferralCountMessage: Handler(read_counts, on_count),
}
if set(HANDLERS) != set(messages.KINDS.values()):
    raise ImportError("worker.HANDLERS must handle every kind of chalicelib.messages")
