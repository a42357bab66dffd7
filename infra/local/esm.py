"""Drive an SQS-triggered handler the way Lambda's SQS event source mapping does.

What is emulated (standard queue, as configured by ``chalice deploy``):

* ReceiveMessage of up to ``batch_size`` (1..10) messages with all system and
  message attributes; the batch becomes one Lambda event in the exact shape
  Lambda delivers (``Records`` with ``messageId``, ``receiptHandle``, ``body``,
  ``attributes``, ``messageAttributes``, ``md5OfBody``, ``eventSource``,
  ``eventSourceARN``, ``awsRegion``).
* The handler returns normally -> every message of the batch is deleted.
  Partial batch responses are NOT enabled (Chalice's ``on_sqs_message`` does not
  set FunctionResponseTypes=ReportBatchItemFailures), so a returned
  ``{"batchItemFailures": [...]}`` is ignored: all messages are deleted.
* The handler raises -> nothing is deleted; the messages become visible again
  when their visibility timeout elapses.  Tests do not wait for that: they call
  :meth:`QueuePoller.expire_inflight`, which sets the visibility of every
  message this poller received and did not delete to 0.
* SQS itself (moto) counts receives and redrives to the DLQ after
  maxReceiveCount.
* Delays are moto's, in real time; :meth:`QueuePoller.release_delayed` ends
  them at once (moto in this process only), as :meth:`expire_inflight` ends
  visibility timeouts.

Not emulated: batching windows, batch sizes above 10, concurrent pollers,
Lambda timeouts killing the handler.
"""
from __future__ import annotations

import base64
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from infra.local.context import FakeLambdaContext

log = logging.getLogger(__name__)

Handler = Callable[[dict, Any], Any]

# System attributes Lambda puts in a record's "attributes", in Lambda's order.
# The last four only appear when SQS returns them (FIFO queues, X-Ray).
_RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
)
_OPTIONAL_RECORD_ATTRIBUTES = (
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
    "AWSTraceHeader",
)


@dataclass
class BatchOutcome:
    """What one poll did."""

    received: int
    message_ids: list[str] = field(default_factory=list)
    error: BaseException | None = None
    #: The handler's return value (ignored by the ESM, kept for assertions).
    result: Any = None
    #: Ids deleted after success; failures are (message_id, code, message).
    deleted: list[str] = field(default_factory=list)
    delete_failures: list[tuple[str, str, str]] = field(default_factory=list)
    #: The event passed to the handler (None when nothing was received).
    event: dict | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.delete_failures


def _message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    out["stringListValues"] = list(value.get("StringListValues", []))
    out["binaryListValues"] = [
        base64.b64encode(v).decode("ascii") for v in value.get("BinaryListValues", [])
    ]
    out["dataType"] = value["DataType"]
    return out


def build_sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One boto3 ReceiveMessage message -> one Lambda SQS event record."""
    received_attrs = message.get("Attributes", {})
    attributes = {k: received_attrs[k] for k in _RECORD_ATTRIBUTES if k in received_attrs}
    for k in _OPTIONAL_RECORD_ATTRIBUTES:
        if k in received_attrs:
            attributes[k] = received_attrs[k]
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": {
            name: _message_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3],
    }


def build_sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """boto3 ReceiveMessage messages -> the Lambda SQS event."""
    return {"Records": [build_sqs_record(m, queue_arn) for m in messages]}


def _chunks(items: list, size: int = 10) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class QueuePoller:
    """One SQS event source mapping: queue -> handler(event, context)."""

    def __init__(
        self,
        sqs_client: Any,
        queue_url: str,
        queue_arn: str,
        handler: Handler,
        batch_size: int = 10,
        *,
        function_name: str = "worker",
        memory_limit_in_mb: int = 128,
        timeout_seconds: float = 60,
        expected: tuple[type[BaseException], ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`expected`: what the handler raises as its normal answer, not as a fault (the worker's
        RetryBatch: some records come back): logged as one line, its message, without a traceback.
        `clock`: what each invocation's time left runs on (FakeLambdaContext)."""
        if not 1 <= batch_size <= 10:
            raise ValueError("batch_size must be 1..10 (larger batches need a batching window)")
        self.sqs = sqs_client
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.region = queue_arn.split(":")[3]
        self.account_id = queue_arn.split(":")[4]
        self.handler = handler
        self.batch_size = batch_size
        self.function_name = function_name
        self.memory_limit_in_mb = memory_limit_in_mb
        self.timeout_seconds = timeout_seconds
        self.expected = expected
        self.clock = clock
        self._lock = threading.Lock()
        # message id -> latest receipt handle, for received-but-not-deleted.
        self._inflight: dict[str, str] = {}

    # ---------------------------------------------------------------- polling

    def make_context(self) -> FakeLambdaContext:
        return FakeLambdaContext(
            function_name=self.function_name,
            memory_limit_in_mb=self.memory_limit_in_mb,
            timeout_seconds=self.timeout_seconds,
            region=self.region,
            account_id=self.account_id,
            clock=self.clock,
        )

    def poll_once(self, wait_time_seconds: int = 0) -> BatchOutcome:
        """Receive one batch, invoke the handler once, delete on success."""
        resp = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=wait_time_seconds,
        )
        messages = resp.get("Messages", [])
        if not messages:
            return BatchOutcome(received=0)
        ids = [m["MessageId"] for m in messages]
        with self._lock:
            for m in messages:
                self._inflight[m["MessageId"]] = m["ReceiptHandle"]

        event = build_sqs_event(messages, self.queue_arn)
        outcome = BatchOutcome(received=len(messages), message_ids=ids, event=event)
        context = self.make_context()
        try:
            outcome.result = self.handler(event, context)
        except Exception as exc:  # Lambda reports any error as a failed invocation
            outcome.error = exc
            if isinstance(exc, self.expected):
                log.warning("%s: %s", self.function_name, exc)
                return outcome
            log.warning(
                "%s failed on %d message(s) %s; they stay on the queue",
                self.function_name,
                len(ids),
                ids,
                exc_info=True,
            )
            return outcome

        if isinstance(outcome.result, dict) and outcome.result.get("batchItemFailures"):
            log.debug(
                "ignoring batchItemFailures (partial batch responses are not "
                "enabled for Chalice SQS handlers): %s",
                outcome.result["batchItemFailures"],
            )
        self._delete(messages, outcome)
        return outcome

    def _delete(self, messages: list[dict[str, Any]], outcome: BatchOutcome) -> None:
        for chunk in _chunks(messages):
            resp = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(chunk)
                ],
            )
            for ok in resp.get("Successful", []):
                mid = chunk[int(ok["Id"])]["MessageId"]
                outcome.deleted.append(mid)
                with self._lock:
                    self._inflight.pop(mid, None)
            for bad in resp.get("Failed", []):
                mid = chunk[int(bad["Id"])]["MessageId"]
                outcome.delete_failures.append(
                    (mid, bad.get("Code", ""), bad.get("Message", ""))
                )
                log.warning("could not delete message %s: %s", mid, bad)

    def drain(self, max_batches: int = 50, *, retry_failures: bool = False) -> list[BatchOutcome]:
        """Poll until a receive returns nothing; return the non-empty outcomes.

        With ``retry_failures`` a failed batch is made visible again at once
        (:meth:`expire_inflight`), as if its visibility timeout had elapsed, so
        the drain goes on until every message is either processed or moved to
        the DLQ by SQS's redrive policy (or ``max_batches`` is reached).
        """
        outcomes: list[BatchOutcome] = []
        for _ in range(max_batches):
            outcome = self.poll_once()
            if outcome.received == 0:
                return outcomes
            outcomes.append(outcome)
            if retry_failures and outcome.error is not None:
                self.expire_inflight()
        log.warning("drain stopped after max_batches=%d with messages left", max_batches)
        return outcomes

    # ------------------------------------------------------------- visibility

    @property
    def inflight(self) -> dict[str, str]:
        """message id -> receipt handle of messages received and not deleted."""
        with self._lock:
            return dict(self._inflight)

    def expire_inflight(self) -> int:
        """Make every message this poller received and did not delete visible
        again now (ChangeMessageVisibility 0): "the visibility timeout elapsed".

        Returns how many messages were made visible.  Messages that are gone
        (deleted elsewhere, moved to the DLQ) are skipped.
        """
        with self._lock:
            pending = list(self._inflight.items())
            self._inflight.clear()
        changed = 0
        for chunk in _chunks(pending):
            resp = self.sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                    for i, (_, handle) in enumerate(chunk)
                ],
            )
            changed += len(resp.get("Successful", []))
            for bad in resp.get("Failed", []):
                log.debug("could not expire %s: %s", chunk[int(bad["Id"])][0], bad)
        return changed

    def release_delayed(self) -> int:
        """Make every delayed message of the queue visible now: "its delay elapsed" (what a
        deferred record's copy waits). moto counts delays in real time, and tests move a fake
        clock instead; this reaches into the moto server running in this process (only there).

        Returns how many messages were released."""
        from moto.sqs.models import sqs_backends

        queue = sqs_backends[self.account_id][self.region].queues[self.queue_url.rsplit("/", 1)[1]]
        released = 0
        with queue._messages_lock:
            for message in queue._messages:
                if message.delayed:
                    message.delayed_until = 0.0
                    released += 1
        return released

    # ------------------------------------------------------------------- loop

    def run_forever(
        self,
        stop_event: threading.Event,
        idle_wait: float = 1.0,
        wait_time_seconds: int = 1,
    ) -> None:
        """Poll until ``stop_event`` is set (for the local stack, in a thread).

        Receives long-poll ``wait_time_seconds``; an idle iteration takes at
        least ``idle_wait`` seconds; after a receive/delete error (e.g. moto
        down) the loop waits ``idle_wait`` and goes on.  Handler errors are
        logged by :meth:`poll_once` and never stop the loop.
        """
        while not stop_event.is_set():
            started = time.monotonic()
            try:
                outcome = self.poll_once(wait_time_seconds=wait_time_seconds)
            except Exception:
                log.exception("polling %s failed", self.queue_url)
                stop_event.wait(idle_wait)
                continue
            if outcome.received == 0:
                remaining = idle_wait - (time.monotonic() - started)
                if remaining > 0:
                    stop_event.wait(remaining)

    def start(self, idle_wait: float = 1.0) -> "PollerThread":
        """Run :meth:`run_forever` in a daemon thread; ``.stop()`` it."""
        thread = PollerThread(self, idle_wait)
        thread.start()
        return thread


class PollerThread(threading.Thread):
    def __init__(self, poller: QueuePoller, idle_wait: float) -> None:
        super().__init__(name=f"esm-{poller.function_name}", daemon=True)
        self.poller = poller
        self.idle_wait = idle_wait
        self.stop_event = threading.Event()

    def run(self) -> None:
        self.poller.run_forever(self.stop_event, idle_wait=self.idle_wait)

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        self.join(timeout)
