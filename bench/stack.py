"""The bench's stack: `make run`'s (moto server, the resources of infra/template.yaml, the
simulators, the demo campaign, the API on the local HTTP server) and, beside it, the floors on the
same moto and the same HTTP server class."""
from __future__ import annotations

import itertools
import json
import os
import time
from typing import Any, Callable, Optional

import requests

from infra.local import run
from infra.local.counting import CallCounter
from infra.local.http import serve_app
from infra.local.sims.webhooks import sign

from .floors import aws_client, floor_app

CAMPAIGN = 42
TAG = "Referred"               # the demo campaign's lead tag (docs/examples/campaign.yaml)
QUALIFY = {"signed_up": "Yes"}  # its qualification rule's target


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll `predicate` every 0.5 ms (the state it reads is in this process)."""
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what or predicate}")
        time.sleep(0.0005)


class BenchStack:
    def __init__(self, prefix: str = "bench") -> None:
        for var in ("INTERCOM_TOKEN", "RF_TOKEN"):   # the bench measures against the simulators only
            os.environ.pop(var, None)
        self.local = run.start(api_port=0, background=False, prefix=prefix)
        self.intercom, self.rf = self.local.intercom, self.local.rf
        self.state = self.local.state()
        env = self.local.env
        self.endpoint, self.region = self.local.endpoint_url, env["AWS_DEFAULT_REGION"]
        self.table, self.queue_url = env["BRIDGE_TABLE"], env["BRIDGE_QUEUE_URL"]
        self.poller = self.local.poller
        self.sqs = self.poller.sqs                      # the harness's client (not counted)
        self.floor_sqs = aws_client("sqs", self.endpoint, self.region)
        self.floor_queue_url = self.sqs.create_queue(QueueName=f"{prefix}-floor")["QueueUrl"]
        self.round_trip_url = self.sqs.create_queue(QueueName=f"{prefix}-round-trip")["QueueUrl"]
        self.floor_work_url = self.sqs.create_queue(QueueName=f"{prefix}-floor-work")["QueueUrl"]
        self.floor_server = serve_app(floor_app(self.floor_sqs, self.floor_queue_url))
        self.counter = CallCounter(intercom=self.intercom, rf=self.rf)
        self._recording = self.counter.installed()
        self._recording.__enter__()
        self._seq = itertools.count(1)
        self.rf_secret = run.secret(self.state, "rf_webhook_secret")
        self.client_secret = run.secret(self.state, "intercom_client_secret")

    def close(self) -> None:
        self._recording.__exit__(None, None, None)
        self.floor_server.stop()
        self.local.stop()

    # --- queues -------------------------------------------------------------------------------
    def purge(self, *urls: str) -> None:
        """Empty queues between rounds (moto's SendMessage slows as a queue grows). By receiving and
        deleting: PurgeQueue is allowed once a minute, in moto as in SQS."""
        for url in urls or (self.queue_url, self.floor_queue_url, self.round_trip_url, self.floor_work_url):
            while True:
                got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
                if not got.get("Messages"):
                    break
                self.sqs.delete_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got["Messages"])])

    def in_queue(self, url: Optional[str] = None) -> int:
        attrs = self.sqs.get_queue_attributes(QueueUrl=url or self.queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return sum(int(v) for v in attrs.values())

    # --- people and webhooks --------------------------------------------------------------------
    def new_lead(self) -> dict:
        n = next(self._seq)
        referrer = self.rf.add_user(CAMPAIGN, f"referrer{n}@example.com", "Rita")
        return self.rf.add_user(CAMPAIGN, f"lead{n}@example.com", f"Lead{n}", referrer_id=referrer["id"])

    @staticmethod
    def join_body(user: dict) -> bytes:
        """What RF's webhook sends (every field: the worker needs no RF call)."""
        return json.dumps({k: user.get(k) for k in ("id", "campaign_id", "email", "first_name", "code", "url",
                                                    "source", "referrer_id", "signed_up_at")}).encode()

    def join_request(self, user: dict) -> tuple[str, bytes, dict]:
        return (f"{self.local.api_url}/webhooks/referral-factory", self.join_body(user),
                {"Content-Type": "application/json", "X-Bridge-Secret": self.rf_secret})

    def intercom_request(self, contact_id: str) -> tuple[str, bytes, dict]:
        body = json.dumps(self.intercom.webhook_payload("contact.lead.updated", contact_id,
                                                        notif_id=f"notif_{next(self._seq)}")).encode()
        return (f"{self.local.api_url}/webhooks/intercom", body,
                {"Content-Type": "application/json", "X-Hub-Signature": sign(body, self.client_secret)})

    def floor_request(self, body: bytes) -> tuple[str, bytes, dict]:
        return f"{self.floor_server.url}/enqueue", body, {"Content-Type": "application/json"}

    @staticmethod
    def post(session: requests.Session, request: tuple[str, bytes, dict], ok=(200, 202)) -> None:
        url, body, headers = request
        status = session.post(url, data=body, headers=headers, timeout=30).status_code
        if status not in ok:
            raise RuntimeError(f"POST {url} answered {status}")

    def contact(self, email: str) -> Optional[dict]:
        found = self.intercom.contacts_by_email(email)
        return found[0] if found else None

    def tagged(self, email: str) -> bool:
        contact = self.contact(email)
        return bool(contact) and any(t["name"] == TAG for t in contact["tags"]["data"])

    def qualified(self, user_id: Any) -> bool:
        with self.rf.lock:
            return any(str(uid) == str(user_id) for uid, _ in self.rf.qualification_events)

    def latency(self, seconds: float) -> None:
        """Every simulator call is answered after `seconds` (0: at once)."""
        for sim in (self.intercom, self.rf):
            sim.clear_faults()
            if seconds:
                sim.delay_next("*", "", seconds, times=10**9)
