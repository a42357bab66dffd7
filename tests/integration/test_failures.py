"""At-least-once delivery: failing records come back, then reach the dead-letter queue with
their reason; records that succeeded are never applied twice; bad input never enters."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from infra.local.esm import QueuePoller
from tests.fakes import refused

from .conftest import MAX_ATTEMPTS, SECRET, WORKSPACE, join_body, lead_settings, new_lead
from .test_troubleshooting import bad, doctor, explain


def test_a_failing_record_comes_back_then_dead_letters_and_successes_are_not_reapplied(bridge, intercom, rf, clock):
    bridge.apply(lead_settings())
    ok1, bad, ok2 = (new_lead(rf, email=f"{n}@example.com", first_name=n) for n in ("ann", "bob", "cat"))
    rf.fail_next("GET", rf"^/users/{bad['id']}$", 500, times=1000)   # RF keeps failing for bob only
    bridge.post_join(join_body(ok1))
    bridge.post_join({"id": bad["id"], "campaign_id": 42})            # bob's fields must be fetched
    bridge.post_join(join_body(ok2))

    first = bridge.drain()
    assert sum(o.received for o in first) == 3 and all(o.ok for o in first)     # RF's 500s: bob waits, no try
    assert {c["email"] for c in intercom.contacts.values()} == {"ann@example.com", "cat@example.com"}
    for _ in range(MAX_ATTEMPTS + 2):                                  # more waits than tries: still waiting
        clock.now += 900
        assert bridge.poller.release_delayed() == 1                    # only bob comes back
        [again] = bridge.drain()
        assert again.received == 1 and again.ok
    assert bridge.dead_letters() == []
    clock.now += 24 * 3600                                              # past BRIDGE_OUTAGE_HOURS (24)
    bridge.poller.release_delayed()
    bridge.drain()
    assert bridge.queued() == 0
    creates = intercom.count("POST", "/contacts") - intercom.count("POST", "/contacts/search")
    assert creates == 2, "the records that succeeded were applied again"

    [dead] = bridge.dead_letters()
    assert dead["body"]["rf_user_id"] == str(bad["id"])
    assert dead["reason"].startswith("Referral Factory unavailable for 24 h (BRIDGE_OUTAGE_HOURS): Referral Factory "
                                     "answered 500")
    history = bridge.history(42, bad["id"])["history"]
    [gave_up] = [h for h in history if h["event"] == "dead_letter"]   # (the counted waits' note is kept last)
    assert gave_up["reason"] == dead["reason"]
    details = gave_up["details"]                                        # (the record's own words and start)
    assert "Referral Factory answered 500" in details["last_answer"] and details["outage_since"]

    rf.clear_faults()
    from chalicelib.services.dead_letters import replay
    assert replay(bridge.rt)["replayed"] == 1
    bridge.drain()
    assert len(intercom.contacts_by_email("bob@example.com")) == 1
    assert bridge.dead_letters() == []


def test_a_worker_dying_after_its_work_redelivers_the_batch_without_doubling_anything(bridge, intercom, rf):
    import app as app_module
    bridge.apply(lead_settings())
    leads = [new_lead(rf, email=f"p{i}@example.com") for i in range(3)]
    for lead in leads:
        bridge.post_join(join_body(lead))

    def dies_at_the_end(event, context):
        app_module.worker(event, context)
        raise TimeoutError("Task timed out")                           # Lambda killed before the ack

    crashing = QueuePoller(bridge.resources.client("sqs"), bridge.resources.queue_url,
                           bridge.resources.queue_arn, dies_at_the_end)
    crashing.drain()
    assert crashing.expire_inflight() == 3
    bridge.drain()
    assert bridge.queued() == 0
    assert len(intercom.contacts) == 3
    for lead in leads:
        history = bridge.history(42, lead["id"])["history"]
        assert [h["outcome"] for h in history] == ["received", "created", "repeated"]


def test_an_intercom_400_is_not_retried_and_dead_letters_with_intercoms_message(bridge, intercom, rf):
    """A refusal of the contact that names no attribute the bridge may leave out (here the email, without
    which no contact is written) refuses the whole write: Intercom's answer stands."""
    bridge.apply(lead_settings())
    lead = new_lead(rf)
    intercom.fail_next("POST", r"^/contacts$", 400, body={"type": "error.list", "errors": [
        {"code": "parameter_invalid", "message": "Email address is invalid", "field": "email"}]})
    bridge.post_join(join_body(lead))
    bridge.drain()
    [dead] = bridge.dead_letters()
    assert dead["reason"] == "Intercom answered 400 parameter_invalid: Email address is invalid"
    assert dead["attempts"] == 1 and intercom.contacts == {}
    link = bridge.history(42, lead["id"])["link"]
    assert link["status"] == "failed" and link["reason"] == dead["reason"]


def test_a_revoked_token_holds_a_join_and_a_notification_until_a_reconnect_completes_them_without_a_replay(
        bridge, intercom, rf, clock, joined, capsys):
    """The workspace's admin revokes the app's token; a join and a notification arrive meanwhile. As for an
    outage, they wait (no try used, no dead letter), saying for what and how to end it; once the workspace is
    reconnected, their copies complete by themselves: no replay. RF is called once for the qualification."""
    from chalicelib.services.connections import connect_workspace
    ann, contact = joined()
    intercom.revoke("sim-token")
    bob = new_lead(rf, email="bob@example.com", first_name="Bob")
    bridge.post_join(join_body(bob))
    intercom.update_contact(contact["id"], signed_up="Maybe")          # not the target: the contact is read now
    bridge.notify("contact.lead.updated", contact["id"])
    for _ in range(8):                                                  # two hours: more waits than tries
        assert all(b.ok for b in bridge.drain())
        clock.now += 900                                                # the longest wait (SQS's longest delay)
        bridge.poller.release_delayed()
    assert bridge.dead_letters() == [] and intercom.contacts_by_email("bob@example.com") == []
    waiting = [e for e in bridge.history(42, bob["id"])["history"] if e["event"] == "waiting"]
    assert waiting and waiting[-1]["reason"].startswith(f"Intercom refuses workspace {WORKSPACE}'s token since ")
    assert f"`bridge workspace connect {WORKSPACE}`" in waiting[-1]["reason"]
    assert "dlq replay" not in waiting[-1]["reason"]
    _, found = explain(bridge, capsys, bob["id"])
    [person] = found["people"]
    assert person["status"] == "waiting" and "to be replaced" in person["reason"]
    _, report = doctor(bridge, capsys)
    [token] = bad(report, "intercom.token")
    assert "wait" in token["why"] and "dlq replay" not in token["fix"]
    assert f"`bridge workspace connect {WORKSPACE}`" in token["fix"]

    intercom.update_contact(contact["id"], signed_up="Yes")
    intercom.tokens.add("new-token")
    connect_workspace(bridge.operator(), WORKSPACE, "new-token")       # the operator reconnects (another process)
    clock.now += 900
    bridge.poller.release_delayed()
    bridge.drain()
    bridge.later.release()                                              # Bob's created contact's verification
    bridge.drain()
    assert len(intercom.contacts_by_email("bob@example.com")) == 1
    assert [user_id for user_id, _ in rf.qualification_events] == [ann["id"]]     # qualified once
    assert bridge.dead_letters() == [] and bridge.queued() == 0
    assert bridge.history(42, bob["id"])["link"]["status"] == "linked"


def test_a_token_refused_longer_than_the_outage_budget_dead_letters_with_the_refusals_reason_and_advice(
        bridge, intercom, rf, clock, monkeypatch):
    bridge.apply(lead_settings())
    lead = new_lead(rf)
    intercom.revoke("sim-token")
    bridge.post_join(join_body(lead))
    [dead] = outlasting_the_outage_budget(bridge, clock, monkeypatch)
    assert dead["reason"] == (f"Intercom answered 401 unauthorized: Access Token Invalid — Intercom refuses "
                              f"workspace {WORKSPACE}'s token (invalid or revoked): reconnect the workspace, then "
                              f"`bridge dlq replay --reason \"Intercom refuses workspace {WORKSPACE}'s token\"`")
    assert dead["attempts"] == 1

    intercom.tokens.add("new-token")
    from chalicelib.services.connections import connect_workspace
    connect_workspace(bridge.operator(), WORKSPACE, "new-token")       # the operator reconnects (another process)
    from chalicelib.services.dead_letters import replay
    replay(bridge.rt, reason=f"Intercom refuses workspace {WORKSPACE}'s token")
    bridge.drain()
    assert len(intercom.contacts_by_email("ann@example.com")) == 1


def test_a_revoked_token_pauses_the_sweeps_checks_and_a_reconnect_resumes_them_without_a_replay(
        bridge, intercom, rf, clock, joined):
    """The workspace's admin uninstalls the app (Intercom refuses its token): each round of the one-by-one
    sweep queued a check of every pending lead, each a dead letter at once (with 500 pending leads, 500 letters
    an hour over a weekend, all to replay or discard). As for a disconnect, the leads wait: the search of changed
    contacts still runs each run (one letter a run, superseded later) and tells when the token works again. The
    first run's check waits in the queue for the token (no letter), and completes after the reconnect."""
    from chalicelib.services.connections import connect_workspace
    ann, contact = joined()
    intercom.revoke("sim-token")
    runs = []
    for _ in range(4):
        runs.append(bridge.reconcile())
        bridge.drain()
        clock.now += bridge.rt.config.reconcile_retry
    kinds = [d["body"]["kind"] for d in bridge.dead_letters()]
    assert kinds.count("intercom.changes") == 4 and kinds.count("intercom.check") == 0    # the first run's waits
    assert [r.get("paused_workspaces") for r in runs[1:]] == [["vne310wv"]] * 3 and runs[-1]["queued"] == 0

    intercom.tokens.add("new-token")
    connect_workspace(bridge.operator(), "vne310wv", "new-token")     # the operator reconnects (another process)
    bridge.poller.release_delayed()      # the first run's check, back from its wait
    bridge.reconcile()                   # its search succeeds: the token works again
    bridge.drain()
    clock.now += bridge.rt.config.reconcile_retry
    again = bridge.reconcile()
    assert "paused_workspaces" not in again and again["queued"] == 1          # Ann's check, no replay needed
    bridge.drain()
    assert len(bridge.dead_letters()) == 4 and bridge.queued() == 0


def outlasting_the_outage_budget(bridge, clock, monkeypatch, letters: int = 1) -> list[dict]:
    """The queued work worked while the clock passes BRIDGE_OUTAGE_HOURS (1 h here), its waiting copies back each
    time: the dead letters once `letters` of them are there (none before the hour)."""
    monkeypatch.setattr(bridge.rt, "config", replace(bridge.rt.config, outage_hours=1))
    start = clock.now
    while len(bridge.dead_letters()) < letters:
        assert clock.now < start + 2 * 3600, "never dead-lettered"
        bridge.drain()
        clock.now += 900
        bridge.poller.release_delayed()
    assert clock.now >= start + 3600                                    # not before BRIDGE_OUTAGE_HOURS
    return bridge.dead_letters()


BAD = [
    ("wrong secret", {"secret": "nope"}, {"id": 1, "campaign_id": 42}, None, 401, "unauthorized"),
    ("missing secret", {"secret": None}, {"id": 1, "campaign_id": 42}, None, 401, "unauthorized"),
    ("malformed json", {}, None, b"{not json", 400, "malformed_json"),
    ("not an object", {}, None, b"[1, 2]", 400, "malformed_json"),
    ("no user id", {}, {"campaign_id": 42, "email": "a@b.co"}, None, 400, "missing_user_id"),
    ("no campaign", {}, {"id": 1}, None, 400, "missing_campaign_id"),
    ("a boolean id", {}, {"id": True, "campaign_id": 42}, None, 400, "invalid_field"),
    ("a boolean campaign", {}, {"id": 1, "campaign_id": True}, None, 400, "invalid_field"),
    ("unknown campaign", {}, {"id": 1, "campaign_id": 999}, None, 404, "unknown_campaign"),
    ("oversize body", {}, None, json.dumps({"id": 1, "campaign_id": 42, "pad": "x" * 300_000}).encode(), 413,
     "too_large"),
]


@pytest.mark.parametrize("case,kw,body,raw,status,error", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_its_status_and_nothing_is_enqueued(bridge, case, kw, body, raw, status, error):
    bridge.apply(lead_settings())
    answer = bridge.post_join(body, raw=raw, secret=kw.get("secret", SECRET))
    assert answer.status_code == status
    assert answer.json()["error"] == error and answer.json()["message"]
    assert bridge.queued() == 0
    from chalicelib.ports.edge import UNKNOWN
    store = bridge.operator().store                         # the reason is recorded, for doctor and explain
    assert sum(refused(store.edge.refusals(scope), error) for scope in ("campaign:42", UNKNOWN)) == 1
