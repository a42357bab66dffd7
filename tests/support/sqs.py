"""The work queue as SQS runs it for the worker, on a fake clock (no sleeping)."""
from __future__ import annotations

import json
from typing import Optional

from chalicelib.services.worker import RetryBatch, handle_batch
from tests.fakes import FakeWork

VISIBILITY = 720.0          # the work queue's visibility timeout (infra/template.yaml)


class Sqs:
    """The work queue as SQS runs it for the worker: a record the batch hands back comes again after the
    visibility timeout (or its `retry_in`), with one more receive; a deferred copy after its delay, with its
    attributes; a message sent with a delay after it. The clock jumps to the next record due: no sleeping."""

    def __init__(self, work: FakeWork):
        self.work, self.due, self.made = work, [], 0

    def send(self, body: dict | str, at: float, receives: int = 1, attributes: Optional[dict] = None) -> None:
        self.made += 1
        self.due.append((at, {"messageId": f"m{self.made}", "receiptHandle": f"rh{self.made}",
                              "attributes": {"ApproximateReceiveCount": str(receives)},
                              "messageAttributes": attributes or {},
                              "body": body if isinstance(body, str) else json.dumps(body)}))

    def run_until(self, until: float) -> None:
        work, queue = self.work, self.work.queue
        while self.due and min(at for at, _ in self.due) <= until:
            work.clock.now = max(work.clock.now, min(at for at, _ in self.due))
            batch = [r for at, r in self.due if at <= work.clock.now][:10]
            self.due = [(at, r) for at, r in self.due if not any(r is b for b in batch)]
            sent, deferred = len(queue.sent), len(queue.deferred)
            try:
                handle_batch(batch, work)
                back = []
            except RetryBatch:
                back = [r for r in batch if r["receiptHandle"] not in queue.deleted]
            now = work.clock.now
            for r in back:
                self.send(r["body"], now + queue.delayed.get(r["receiptHandle"], VISIBILITY),
                          int(r["attributes"]["ApproximateReceiveCount"]) + 1, r["messageAttributes"])
            for later in queue.deferred[deferred:]:
                self.send(later.body, now + later.delay, attributes={
                    name: {"stringValue": str(value), "dataType": "Number"} for name, value in (
                        ("bridge-tries", later.tries), ("bridge-waits", later.waits),
                        ("bridge-outage-since", later.outage_since)) if value is not None} | ({
                    "bridge-waits-for": {"stringValue": later.waits_for, "dataType": "String"}}
                        if later.waits_for else {}))
            for message, delay in zip(queue.sent[sent:], queue.sent_delays[sent:]):
                self.send(message, now + delay)
