"""AWS answering a client's calls with an error it chooses (a throttle, a transaction conflict; moto makes neither), as
AWS's answer after botocore's retries: the client's own handlers (adapters/aws.py, adapters/dynamo/models.py) read it
as they read any of AWS's answers."""
from __future__ import annotations

import copy
import json
from typing import Any, Callable, Optional

from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders


def answering(monkeypatch: Any, client: Any, operation: Optional[str], answer: Callable[[dict], Optional[dict]]) -> None:
    """Until the test ends, `client`'s calls of `operation` (None: of any) get `answer(request)` (the request's
    parameters; an error
    answer as botocore parses AWS's, {"Error": {"Code": ..., "Message": ...}, ...}: HTTP 400) instead of AWS's, while it
    gives one (None: AWS answers)."""
    events = copy.copy(client.meta.events)          # (the test's own: the client's handlers, as they were, after it)
    monkeypatch.setattr(client.meta, "events", events)

    def before(params: dict, **_: Any) -> Optional[tuple[AWSResponse, dict]]:
        parsed = answer(json.loads(params.get("body") or b"{}"))
        return None if parsed is None else (AWSResponse(params.get("url", ""), 400, HTTPHeaders(), None), parsed)
    service = client.meta.service_model.service_id.hyphenize()
    events.register_first(f"before-call.{service}" + (f".{operation}" if operation else ""), before)


def error(code: str, message: str, **more: Any) -> dict:
    return {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}, **more}


def cancelled(items: int, reason: str, message: str) -> dict:
    """A TransactWriteItems of `items` cancelled for its last item's `reason`, as DynamoDB answers it."""
    reasons = [{"Code": "None"}] * (items - 1) + [{"Code": reason, "Message": message}]
    return error("TransactionCanceledException", "Transaction cancelled, please refer cancellation reasons for "
                 f"specific reasons [{', '.join(r['Code'] for r in reasons)}]", CancellationReasons=reasons)
