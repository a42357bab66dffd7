"""`make demo`: against a running `make run` with simulators, play one referral end to end:
a referrer and a lead join in Referral Factory, RF's webhooks (each one's) reach the bridge, the lead
appears in Intercom, signs up ("signed_up" becomes "Yes"), Intercom's webhook reaches the
bridge, and the referral is qualified in Referral Factory. Prints the person's history."""
from __future__ import annotations

if __name__ == "__main__":
    from infra.local import exit_quietly_on_interrupt
    exit_quietly_on_interrupt()

import hashlib
import hmac
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

# Light imports only: a Ctrl-C while the demo loads ends as quietly as one while it plays.
from infra.local.bridge_env import START, STATE, simulated_stack


def _wait(what: str, check: Callable[[], object], settle: Callable[[], None], look: str, timeout: float = 30.0,
          why: Callable[[], bool] = lambda: True, clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep):
    """What `check` finds, looked for `timeout` s; then the demo stops naming `look` once `why()` (the person's
    history says why: `news`), waited for as long again: a first try can outlast the demo's wait."""
    start = clock()
    while True:
        settle()
        found = check()
        if found:
            return found
        waited = clock() - start
        if waited > timeout and why():
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}: see why with `{look}`")
        if waited > 2 * timeout:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}, and in {timeout:g} s more the bridge "
                             f"recorded no wait or failure that says why: see `make run`'s terminal (`{look}` says "
                             "what the bridge knows)")
        sleep(0.5)


def news(history: Callable[[], list[dict]]) -> Callable[[], bool]:
    """Whether the person's history (`history` reads it) has said, since now, why the bridge has not done it yet,
    as `explain` shows it: an entry failed or waiting, new or noted again."""
    from chalicelib.services.explain import NEUTRAL

    def said(e: dict) -> tuple:
        return e["at"], e["event"], e["outcome"], e.get("reason")
    seen = set(map(said, history()))
    return lambda: any(e["outcome"] in ("failed", *NEUTRAL) and said(e) not in seen for e in history())


def play(state: dict, settle: Callable[[], None] = lambda: None, say=print,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> list[dict]:
    import requests

    from infra.local.fault import accepted_token
    from infra.local.run import secret

    # The people in RF and Intercom, not the bridge: they use whatever token the simulators accept now
    # (`make fault ARGS="rf revoke-token"` revokes the bridge's).
    rf = requests.Session()
    rf.headers["Authorization"] = f"Bearer {accepted_token(state, 'rf')}"
    ic = requests.Session()
    ic.headers.update({"Authorization": f"Bearer {accepted_token(state, 'intercom')}",
                       "Intercom-Version": "2.16"})
    tag = uuid.uuid4().hex[:6]

    def join(person: dict) -> dict:
        answer = rf.post(f"{state['rf_url']}/users", json={"campaign_id": 42, **person})
        if not answer.ok:     # e.g. `make fault ARGS="rf 503 --for 60"` on every call
            raise SystemExit(f"the simulated Referral Factory answered {answer.status_code} to the demo's own "
                             "POST /users: see `make fault ARGS=show`")
        return answer.json()["data"]
    def webhook(user: dict) -> requests.Response:
        """RF's join webhook of `user`, as RF sends it: the user's fields, the secret in X-Bridge-Secret."""
        body = {k: user.get(k) for k in ("id", "campaign_id", "email", "first_name", "code", "url", "referrer_id")}
        return requests.post(f"{state['api_url']}/webhooks/referral-factory", json=body,
                             headers={"X-Bridge-Secret": secret(state, "rf_webhook_secret")})
    # RF sends a join webhook for everyone who joins, a referrer too: Rita's links her user contact (`referrers` in
    # campaign.yaml), so `bridge backfill 42` after the demo finds no one RF has and the bridge never saw.
    referrer = join({"first_name": "Rita", "email": f"rita-{tag}@example.com"})
    first = webhook(referrer)
    lead = join({"first_name": "Ann", "email": f"ann-{tag}@example.com",
                 "referrer": {"field": "id", "value": referrer["id"]}})
    say(f"1. Ann (RF user {lead['id']}) joined campaign 42 through the link of Rita (RF user {referrer['id']}), "
        "who joined just before")
    os.environ.update(state["env"])     # the bridge's store: Ann's history
    from chalicelib.runtime import default_runtime
    from chalicelib.services.admin import person_history

    def history() -> list[dict]:
        return person_history(default_runtime(), "42", str(lead["id"]))["history"]
    # What her history says from before each webhook is sent: the worker may fail or defer it before the demo
    # begins to wait (RF's 401 dead-letters a qualification within milliseconds), and that says why all the same.
    joined = news(history)
    answer = webhook(lead)
    say(f"2. RF's webhooks -> bridge: Rita's {first.status_code}, Ann's {answer.status_code} {answer.json()}")

    def contact():      # (an error answer, e.g. `make fault ARGS="intercom 503 --for 120"`: not yet)
        found = ic.post(f"{state['intercom_url']}/contacts/search", json={
            "query": {"field": "email", "operator": "=", "value": lead["email"]}})
        return found.json()["data"][0] if found.ok and found.json()["data"] else None
    look = f"./bridge explain {lead['id']}"
    found = _wait("the Intercom contact", contact, settle, look, why=joined, clock=clock, sleep=sleep)
    say(f"3. Intercom now has a {found['role']} {found['id']} with {found['custom_attributes']}")
    updated = ic.put(f"{state['intercom_url']}/contacts/{found['id']}",
                     json={"custom_attributes": {"signed_up": "Yes"}}).json()
    event = {"type": "notification_event", "app_id": state["workspace"], "id": f"notif_{uuid.uuid4()}",
             "topic": "contact.lead.updated", "created_at": int(time.time()),
             "data": {"type": "notification_event_data", "item": updated}}
    raw = json.dumps(event).encode()
    signed_up = news(history)
    signature = "sha1=" + hmac.new(secret(state, "intercom_client_secret").encode(), raw, hashlib.sha1).hexdigest()
    answer = requests.post(f"{state['api_url']}/webhooks/intercom", data=raw,
                           headers={"Content-Type": "application/json", "X-Hub-Signature": signature})
    say(f"4. Ann signed up (signed_up = Yes); Intercom's webhook -> bridge: {answer.status_code}")
    def qualified():
        found = rf.get(f"{state['rf_url']}/users/{lead['id']}")
        return found.ok and found.json()["data"].get("qualified_at")
    user = _wait("the qualification in RF", qualified, settle, look, why=signed_up, clock=clock, sleep=sleep)
    say(f"5. Referral Factory: Ann's referral qualified at {user} — Rita's reward is due")
    said = history()
    say(f"\nWhy: Ann's history in the bridge (`{look}` prints it with its details)")
    for row in why_rows(said):
        say(row)
    return said


def why_rows(history: list[dict]) -> list[str]:
    """The person's history, a row an entry: its columns as wide as their widest, none left empty at the end."""
    columns = [[e["at"], e["event"], e["outcome"], e.get("reason") or ""] for e in history]
    widths = [max((len(c[i]) for c in columns), default=0) for i in range(3)]
    return ["  " + "  ".join(f"{c:<{w}}" for c, w in zip(row, [*widths, 0])).rstrip() for row in columns]


def main(state_file: Path = STATE) -> int:
    """`make demo`: one line and exit 1 when there is no running stack to play on; Ctrl-C: exit 130."""
    state = simulated_stack(state_file, "make demo plays a referral on the simulators")
    if state is None:
        return 1
    import requests

    from infra.local import interrupts_raise
    from infra.local.run import secret  # noqa: F401 (loaded before Ctrl-C raises)
    interrupts_raise()
    try:
        play(state)
    except KeyboardInterrupt:
        return 130
    except requests.ConnectionError as exc:   # the stack stopped while the demo played
        url = getattr(exc.request, "url", None) or state.get("api_url")
        print(f"the local stack stopped answering ({url}): {START}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        code = main()
    except KeyboardInterrupt:     # Ctrl-C while loading (exit_quietly_on_interrupt covers most of it)
        code = 130
    sys.exit(code)
