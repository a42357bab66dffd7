"""moto's DynamoDB serves requests in parallel threads over plain dicts, so two updates of one item
can both read its old value (two ADDs, one lost). DynamoDB applies one item's writes one at a time.
Tests that race several writers at one item (the shared rate limiter) serialise moto's DynamoDB
requests (moto runs in the test's own process) to test our code, not moto's races."""
from __future__ import annotations

import threading


def atomic_dynamodb(monkeypatch) -> None:
    from moto.dynamodb.responses import DynamoHandler

    lock = threading.Lock()
    original = DynamoHandler.call_action

    def call_action(self):
        with lock:
            return original(self)
    monkeypatch.setattr(DynamoHandler, "call_action", call_action)
