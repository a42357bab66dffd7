"""`make demo`: against a running `make run` with simulators, play one referral end to end:
a referrer and a lead join in Referral Factory, RF's webhook reaches the bridge, the lead
appears in Intercom, signs up ("signed_up" becomes "Yes"), Intercom's webhook reaches the
bridge, and the referral is qualified in Referral Factory. Prints the person's history."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import time
import uuid
from typing import Callable

import requests

from infra.local.run import STATE, secret


def _wait(what: str, check: Callable[[], object], settle: Callable[[], None], timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        settle()
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)


def play(state: dict, settle: Callable[[], None] = lambda: None, say=print) -> dict:
    rf = requests.Session()
    rf.headers["Authorization"] = "Bearer rf-token"
    ic = requests.Session()
    ic.headers.update({"Authorization": "Bearer sim-token", "Intercom-Version": "2.16"})
    tag = uuid.uuid4().hex[:6]
    referrer = rf.post(f"{state['rf_url']}/users", json={"campaign_id": 42, "first_name": "Rita",
                                                          "email": f"rita-{tag}@example.com"}).json()["data"]
    lead = rf.post(f"{state['rf_url']}/users", json={
        "campaign_id": 42, "first_name": "Ann", "email": f"ann-{tag}@example.com",
        "referrer": {"field": "id", "value": referrer["id"]}}).json()["data"]
    say(f"1. Ann (RF user {lead['id']}) joined campaign 42 through Rita's link")
    body = {k: lead.get(k) for k in ("id", "campaign_id", "email", "first_name", "code", "url", "referrer_id")}
    answer = requests.post(f"{state['api_url']}/webhooks/referral-factory", json=body,
                           headers={"X-Bridge-Secret": secret(state, "rf_webhook_secret")})
    say(f"2. RF's webhook -> bridge: {answer.status_code} {answer.json()}")

    def contact():
        found = ic.post(f"{state['intercom_url']}/contacts/search", json={
            "query": {"field": "email", "operator": "=", "value": lead["email"]}}).json()["data"]
        return found[0] if found else None
    found = _wait("the Intercom contact", contact, settle)
    say(f"3. Intercom now has a {found['role']} {found['id']} with {found['custom_attributes']}")
    updated = ic.put(f"{state['intercom_url']}/contacts/{found['id']}",
                     json={"custom_attributes": {"signed_up": "Yes"}}).json()
    event = {"type": "notification_event", "app_id": state["workspace"], "id": f"notif_{uuid.uuid4()}",
             "topic": "contact.lead.updated", "created_at": int(time.time()),
             "data": {"type": "notification_event_data", "item": updated}}
    raw = json.dumps(event).encode()
    signature = "sha1=" + hmac.new(secret(state, "intercom_client_secret").encode(), raw, hashlib.sha1).hexdigest()
    answer = requests.post(f"{state['api_url']}/webhooks/intercom", data=raw,
                           headers={"Content-Type": "application/json", "X-Hub-Signature": signature})
    say(f"4. Ann signed up (signed_up = Yes); Intercom's webhook -> bridge: {answer.status_code}")
    user = _wait("the qualification in RF", lambda: rf.get(f"{state['rf_url']}/users/{lead['id']}").json()
                 ["data"].get("qualified_at"), settle)
    say(f"5. Referral Factory: Ann's referral qualified at {user} — Rita's reward is due")
    os.environ.update(state["env"])
    from chalicelib.services.admin import person_history
    from chalicelib.runtime import default_runtime
    history = person_history(default_runtime(), "42", str(lead["id"]))
    say(f"\nWhy (./bridge history 42 {lead['id']}):")
    for entry in history["history"]:
        say(f"  {entry['at']}  {entry['event']:<14} {entry['outcome']:<16} {entry.get('reason') or ''}")
    return history


def main() -> None:
    if not STATE.exists():
        sys.exit("start the stack first: make run")
    state = json.loads(STATE.read_text())
    if state.get("mode") == "real":
        sys.exit("make demo plays a referral on the simulators; this stack runs against the real APIs")
    play(state)


if __name__ == "__main__":
    main()
