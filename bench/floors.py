"""The floors: the least any implementation could do for the same result on the same machinery.

* ``floor_app``: a bare Chalice route that makes one SQS send (the webhook's floor), served by the
  same HTTP server class as the project's API, against the same moto.
* :class:`RoundTrip`: an SQS send, received by a long-polling receiver (the end-to-end floor).
* :class:`FloorWorker`: the least a join can cost, as a worker of its own (no chalicelib): per
  batch one read of the links, one contact search for all emails (``IN``), one create per new
  lead, one conditional write per link, one ``POST /tags`` with the list of users (no tag id to
  learn). The creates and writes run concurrently. Its counts are the per-join floor; its
  throughput, with the simulators' latency, the joins/min floor.
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import boto3
import urllib3
from botocore.config import Config as BotoConfig
from chalice import Chalice, Response

from infra.local.aws import DUMMY_KEY


def aws_client(service: str, endpoint: str, region: str) -> Any:
    """A client of the floor's own (not the harness's: the floor's calls are counted too)."""
    return boto3.session.Session().client(service, endpoint_url=endpoint, region_name=region,
                                          aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY,
                                          config=BotoConfig(retries={"max_attempts": 2, "mode": "standard"}))


def floor_app(sqs: Any, queue_url: str) -> Chalice:
    app = Chalice(app_name="bench-floor")

    @app.route("/enqueue", methods=["POST"], content_types=["*/*"])
    def enqueue():
        sqs.send_message(QueueUrl=queue_url, MessageBody=(app.current_request.raw_body or b"").decode())
        return Response(body={"queued": True}, status_code=202, headers={"Content-Type": "application/json"})

    return app


class RoundTrip:
    """SQS send -> receive: a receiver thread long-polls the queue (as Lambda's event source does)
    and deletes what it got; ``once()`` sends one message and returns the seconds until it was
    received."""

    def __init__(self, sqs: Any, queue_url: str, wait: Callable[[Callable[[], bool]], None]) -> None:
        self.sqs, self.queue_url, self.wait = sqs, queue_url, wait
        self._received: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="floor-receiver", daemon=True)

    def __enter__(self) -> "RoundTrip":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            now = time.perf_counter()
            for m in got.get("Messages", []):
                self._received[m["Body"]] = now
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])

    def once(self, n: int) -> float:
        body = f"round-trip-{n}-{time.time_ns()}"
        started = time.perf_counter()
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)
        self.wait(lambda: body in self._received)
        return self._received.pop(body) - started


class FloorWorker:
    """An SQS batch handler (Lambda's signature) doing the least a batch of new-lead joins needs.
    Bodies: {"email", "name"}."""

    def __init__(self, intercom_url: str, token: str, ddb: Any, table: str, tag: str = "Referred") -> None:
        self.url, self.ddb, self.table, self.tag = intercom_url.rstrip("/"), ddb, table, tag
        self.http = urllib3.PoolManager(maxsize=10, headers={
            "Authorization": f"Bearer {token}", "Accept": "application/json", "Content-Type": "application/json",
            "Intercom-Version": "2.16"})
        self.pool = ThreadPoolExecutor(10, thread_name_prefix="floor-worker")

    def close(self) -> None:
        self.pool.shutdown()
        self.http.clear()

    def _call(self, method: str, path: str, body: Any) -> Any:
        resp = self.http.request(method, self.url + path, body=json.dumps(body).encode(), timeout=10)
        if resp.status >= 400:
            raise RuntimeError(f"{method} {path}: {resp.status} {resp.data[:200]!r}")
        return json.loads(resp.data)

    @staticmethod
    def _key(email: str) -> dict:
        return {"pk": {"S": f"BENCHFLOOR#{email}"}, "sk": {"S": "LINK"}}

    def __call__(self, event: dict, context: Any = None) -> dict:
        people = [json.loads(r["body"]) for r in event["Records"]]
        emails = [p["email"] for p in people]
        linked = self.ddb.batch_get_item(RequestItems={self.table: {"Keys": [self._key(e) for e in emails]}})
        done = {item["pk"]["S"].split("#", 1)[1] for item in linked["Responses"].get(self.table, [])}
        todo = [p for p in people if p["email"] not in done]
        found = self._call("POST", "/contacts/search", {
            "query": {"field": "email", "operator": "IN", "value": [p["email"] for p in todo]},
            "pagination": {"per_page": 150}})
        existing = {c["email"]: c for c in found.get("data", [])}

        def join(person: dict) -> str:
            contact = existing.get(person["email"]) or self._call(
                "POST", "/contacts", {"role": "lead", "email": person["email"], "name": person["name"]})
            self.ddb.put_item(TableName=self.table, Item={**self._key(person["email"]),
                                                          "contact_id": {"S": contact["id"]}},
                              ConditionExpression="attribute_not_exists(pk)")
            return contact["id"]

        ids = list(self.pool.map(join, todo))
        if ids:
            self._call("POST", "/tags", {"name": self.tag, "users": [{"id": i} for i in ids]})
        return {"done": len(ids)}
