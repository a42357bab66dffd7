"""Webhook latency on the local stack (moto server + simulators): the route must verify and
enqueue well under Intercom's 500 ms priority threshold. Usage: .venv/bin/python -m bench.webhook_latency [N]"""
from __future__ import annotations

import hashlib
import hmac
import json
import statistics
import sys
import time

import requests

from infra.local import run


def main(n: int = 200) -> None:
    stack = run.start(api_port=0, background=False)
    try:
        state = stack.state()
        session = requests.Session()
        rf_body = json.dumps({"id": 1, "campaign_id": 42, "email": "a@example.com", "referrer_id": 2}).encode()
        event = json.dumps({"type": "notification_event", "app_id": state["workspace"], "id": "notif_1",
                            "topic": "contact.lead.updated", "created_at": 1,
                            "data": {"item": {"type": "contact", "id": "c1"}}}).encode()
        sig = "sha1=" + hmac.new(run.secret(state, "intercom_client_secret").encode(), event, hashlib.sha1).hexdigest()
        routes = {
            "referral-factory": (rf_body, {"X-Bridge-Secret": run.secret(state, "rf_webhook_secret")}),
            "intercom": (event, {"X-Hub-Signature": sig}),
        }
        for name, (body, headers) in routes.items():
            url = f"{state['api_url']}/webhooks/{name}"
            headers = {"Content-Type": "application/json", **headers}
            session.post(url, data=body, headers=headers)                     # warm the container caches
            times = []
            for _ in range(n):
                started = time.perf_counter()
                assert session.post(url, data=body, headers=headers).status_code in (200, 202)
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            print(f"POST /webhooks/{name:<17} n={n}  p50={statistics.median(times):.1f} ms  "
                  f"p95={times[int(n * 0.95) - 1]:.1f} ms  max={times[-1]:.1f} ms")
    finally:
        stack.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
