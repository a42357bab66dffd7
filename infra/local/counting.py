"""Counting what the code does, for tests (counts are asserted) and `make bench` (counts per join).

* AWS: :class:`AwsCallRecorder` sees every botocore API call made in this process. boto3's clients
  and PynamoDB's own botocore sessions (one per thread) alike go through
  ``BaseClient._make_api_call``, so one class-level wrapper sees them all: from any thread (a worker
  that runs records concurrently is still counted) and from clients created before recording began
  (a warm container's). A call is one request as the caller sees it; botocore's own retries of it
  are not counted again. The local harness's clients (``infra.local.aws.client``: the event
  source's receives and deletes, the bench's floors, test setup) are left out: they stand for the
  AWS platform, not for the code.
* Intercom and Referral Factory: the simulators' own request logs (``sim.requests``), so every call
  that reached them counts, retries and refusals (429) included.

    counter = CallCounter(intercom=intercom_sim, rf=rf_sim)
    with counter.installed():
        with counter.measure() as counts:
            bridge.drain()
    counts.as_dict()  # {"intercom": 12, "rf": 0, "dynamodb_writes": 21, "dynamodb_reads": 2, "sqs": 0}
"""
from __future__ import annotations

import contextlib
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from botocore.client import BaseClient

DYNAMODB_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
DYNAMODB_READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})


@dataclass(frozen=True)
class AwsCall:
    service: str                 # botocore's service name: "dynamodb", "sqs", "ssm", ...
    operation: str               # "UpdateItem", "SendMessage", ...
    params: dict = field(repr=False)
    label: Optional[str] = None  # the recorder's label when the call was made (e.g. the function)

    @property
    def name(self) -> str:
        return f"{self.service}:{self.operation}"

    @property
    def is_dynamodb_write(self) -> bool:
        return self.service == "dynamodb" and self.operation in DYNAMODB_WRITES

    @property
    def is_dynamodb_read(self) -> bool:
        return self.service == "dynamodb" and self.operation in DYNAMODB_READS

    @property
    def items(self) -> int:
        """Items the call writes or reads (a batch or a transaction carries several)."""
        p = self.params
        if self.operation in ("BatchWriteItem", "BatchGetItem"):
            return sum(len(v if self.operation == "BatchWriteItem" else v.get("Keys", []))
                       for v in p.get("RequestItems", {}).values())
        if self.operation in ("TransactWriteItems", "TransactGetItems"):
            return len(p.get("TransactItems", []))
        if self.operation == "SendMessageBatch" or self.operation == "DeleteMessageBatch":
            return len(p.get("Entries", []))
        return 1


def harness_clients() -> list[Any]:
    """The boto3 clients the local harness made (infra.local.aws.client)."""
    from infra.local import aws

    with aws._session_lock:
        return list(aws._clients.values())


class AwsCallRecorder:
    """Records botocore calls while installed. ``label`` is stamped on each call made while it is
    set (e.g. which function is running); ``include_harness`` also records the harness's clients."""

    def __init__(self, *, include_harness: bool = False) -> None:
        self.calls: list[AwsCall] = []
        self.label: Optional[str] = None
        self.include_harness = include_harness
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def installed(self) -> Iterator["AwsCallRecorder"]:
        original = BaseClient._make_api_call
        recorder = self

        def recording(client, operation_name, api_params):
            if recorder.include_harness or not any(client is c for c in harness_clients()):
                call = AwsCall(client.meta.service_model.service_name, operation_name, dict(api_params),
                               recorder.label)
                with recorder._lock:
                    recorder.calls.append(call)
            return original(client, operation_name, api_params)

        BaseClient._make_api_call = recording
        try:
            yield self
        finally:
            BaseClient._make_api_call = original

    def mark(self) -> int:
        with self._lock:
            return len(self.calls)

    def since(self, mark: int) -> list[AwsCall]:
        with self._lock:
            return list(self.calls[mark:])


@dataclass
class Counts:
    """What a scenario did. Filled in when its ``measure()`` block ends."""

    intercom_requests: list[str] = field(default_factory=list)   # "POST /contacts/search", ...
    rf_requests: list[str] = field(default_factory=list)
    aws_calls: list[AwsCall] = field(default_factory=list)

    @property
    def intercom(self) -> int:
        return len(self.intercom_requests)

    @property
    def rf(self) -> int:
        return len(self.rf_requests)

    @property
    def dynamodb_writes(self) -> int:
        """Write requests (PutItem, UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems)."""
        return sum(c.is_dynamodb_write for c in self.aws_calls)

    @property
    def dynamodb_write_items(self) -> int:
        """Items written (a batch or a transaction of n items counts n)."""
        return sum(c.items for c in self.aws_calls if c.is_dynamodb_write)

    @property
    def dynamodb_reads(self) -> int:
        """Read requests (GetItem, BatchGetItem, Query, Scan, TransactGetItems)."""
        return sum(c.is_dynamodb_read for c in self.aws_calls)

    @property
    def sqs(self) -> int:
        return sum(c.service == "sqs" for c in self.aws_calls)

    @property
    def aws(self) -> int:
        return len(self.aws_calls)

    def operations(self, service: Optional[str] = None) -> Counter:
        """How many calls of each operation, e.g. {"dynamodb:UpdateItem": 14, ...}."""
        return Counter(c.name for c in self.aws_calls if service is None or c.service == service)

    def as_dict(self) -> dict[str, int]:
        return {"intercom": self.intercom, "rf": self.rf, "dynamodb_writes": self.dynamodb_writes,
                "dynamodb_reads": self.dynamodb_reads, "sqs": self.sqs}

    def per(self, n: int) -> dict[str, float]:
        """``as_dict()`` divided by ``n`` (e.g. per join of a batch)."""
        return {k: v / n for k, v in self.as_dict().items()}


def _describe(rec: dict) -> str:
    return f"{rec['method']} {rec['path']}"


class CallCounter:
    """Counts, for a block of code, the calls that reached the simulators and the AWS calls made.
    ``installed()`` puts the AWS recorder in place (once, around many ``measure()`` blocks)."""

    def __init__(self, intercom: Any = None, rf: Any = None,
                 recorder: Optional[AwsCallRecorder] = None) -> None:
        self.intercom, self.rf = intercom, rf
        self.recorder = recorder or AwsCallRecorder()

    def installed(self):
        return self.recorder.installed()

    @staticmethod
    def _log_mark(sim: Any) -> int:
        if sim is None:
            return 0
        with sim.lock:
            return len(sim.requests)

    @staticmethod
    def _log_since(sim: Any, mark: int) -> list[str]:
        if sim is None:
            return []
        with sim.lock:
            return [_describe(r) for r in sim.requests[mark:]]

    @contextlib.contextmanager
    def measure(self) -> Iterator[Counts]:
        counts = Counts()
        marks = (self._log_mark(self.intercom), self._log_mark(self.rf), self.recorder.mark())
        try:
            yield counts
        finally:
            counts.intercom_requests = self._log_since(self.intercom, marks[0])
            counts.rf_requests = self._log_since(self.rf, marks[1])
            counts.aws_calls = self.recorder.since(marks[2])


__all__ = ["AwsCall", "AwsCallRecorder", "CallCounter", "Counts", "DYNAMODB_READS", "DYNAMODB_WRITES",
           "harness_clients"]
