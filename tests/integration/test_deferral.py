"""Waiting is not failing (issue 7, break 4 and break 5): a message that must wait — for a claim
held by a dead worker, for Referral Factory to unblock us (its circuit is open), for a 429's pause —
goes back to the queue without using up a try, however long it waits, and finishes once it may.
One batch on moto, with the worker as Lambda's SQS event source runs it."""
from __future__ import annotations

import pytest

from chalicelib.config import Config
from chalicelib.domain.link import PersonRef
from chalicelib.ports import Busy
from chalicelib.runtime import Runtime

from .conftest import MAX_ATTEMPTS, WORKSPACE, join_body, lead_settings, new_lead


def waits(bridge, lead) -> dict:
    [entry] = [e for e in bridge.history(42, lead["id"])["history"] if e["event"] == "waiting"]
    return entry


def test_a_batch_that_waits_for_a_dead_workers_claim_a_blocked_rf_and_a_429_finishes_with_no_dead_letter(
        bridge, intercom, rf, clock):
    bridge.apply(lead_settings())
    held, blocked, throttled = (new_lead(rf, email=f"{n}@example.com", first_name=n.title())
                                for n in ("held", "blocked", "throttled"))
    # A worker took the join's claim and died: its lease runs 120 s.
    bridge.rt.store.links.claim(PersonRef("42", str(held["id"])), WORKSPACE, lease=120)
    rf.blocked = True                               # RF blocked our IP: every call answers 403
    intercom.fail_next("POST", "^/contacts/search$", 429, headers={"Retry-After": "50"})
    bridge.post_join(join_body(held))
    bridge.post_join({"id": blocked["id"], "campaign_id": 42})        # needs GET /users/{id} from RF
    bridge.post_join(join_body(throttled))

    [batch] = bridge.drain()
    assert batch.received == 3 and batch.ok                           # nothing failed: all three wait
    assert bridge.queued() == 3 and intercom.contacts == {}
    # The dead worker's lease (120 s), then Intercom's search lag (180 s): it may have created the
    # contact before it died, so no new one is made before search would show that one.
    for _ in range(4 * MAX_ATTEMPTS):                                 # far more waits than tries
        clock.now += 30
        bridge.poller.release_delayed()
        bridge.drain()
    assert {c["email"] for c in intercom.contacts.values()} == {"held@example.com", "throttled@example.com"}
    assert rf.count("GET", f"/users/{blocked['id']}") == 1            # the circuit kept every other call away
    rf.blocked = False                                                # RF lifts the block...
    clock.now += 900                                                  # ...and the circuit's recheck comes
    bridge.poller.release_delayed()
    bridge.drain()

    assert len(intercom.contacts) == 3 and bridge.queued() == 0 and bridge.dead_letters() == []
    assert rf.count("GET", f"/users/{blocked['id']}") == 2            # one probe, and it went through
    assert "Intercom's search may not show it yet" in waits(bridge, held)["reason"]   # the latest wait
    assert "Intercom answered 429" in waits(bridge, throttled)["reason"]
    circuit = waits(bridge, blocked)
    assert circuit["outcome"] == "deferred" and circuit["count"] > MAX_ATTEMPTS
    assert "Referral Factory answered 403" in circuit["reason"] and "has probably blocked this IP" in circuit["reason"]
    assert "waits in the queue, without using up a try" in circuit["reason"]
    assert bridge.history(42, blocked["id"])["link"]["status"] == "linked"
    rf.excess_windows.clear()


def test_a_dead_workers_claim_holds_for_the_lease_the_runtime_was_configured_with(bridge, clock, monkeypatch):
    """BRIDGE_LEASE_SECONDS is read with the rest of the configuration, when the runtime is built: `bridge --stage`
    sets the stage's environment after the code was loaded, and a chaos run shortens the lease this way."""
    monkeypatch.setenv("BRIDGE_LEASE_SECONDS", "30")
    rt, ref = Runtime(Config.from_env(), clock=clock), PersonRef("42", "7")
    rt.store.links.claim(ref, WORKSPACE)                        # a worker took the join's claim and died
    clock.now += 29
    with pytest.raises(Busy):
        rt.store.links.claim(ref, WORKSPACE)
    clock.now += 2                                              # its 30 s are over: the join is free again
    assert rt.store.links.claim(ref, WORKSPACE) is not None


class RefusedOnce:
    """The work queue's SQS client: its first SendMessageBatch is answered with every entry Failed (SQS's own
    InternalError, SenderFault false: nothing sent), as SQS may answer any batch; every other call is SQS's."""

    def __init__(self, monkeypatch, client):
        self.real, self.sends = client._make_api_call, 0
        monkeypatch.setattr(client, "_make_api_call", self.call)

    def call(self, operation: str, kwargs: dict) -> dict:
        if operation != "SendMessageBatch":
            return self.real(operation, kwargs)
        self.sends += 1
        if self.sends > 1:
            return self.real(operation, kwargs)
        return {"Successful": [], "Failed": [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError",
                                              "Message": "We encountered an internal error"} for e in kwargs["Entries"]]}


def test_a_wait_whose_copy_sqs_refuses_once_is_sent_again_and_uses_up_no_try(bridge, rf, clock, monkeypatch):
    """A join waits for a dead worker's claim: its copy goes back to the queue to wait, and the original is deleted.
    SQS refused the copy's entry of the SendMessageBatch (an InternalError of its own, which a resend gets past): the
    original was handed back to SQS, and its next receive counted as a try of the join (BRIDGE_MAX_ATTEMPTS, the
    dead-letter queue) though nothing of its work failed. The refused entry is sent again: the copy waits, its tries
    none used, and the join finishes once the claim's lease ends."""
    bridge.apply(lead_settings())
    lead = new_lead(rf)
    bridge.rt.store.links.claim(PersonRef("42", str(lead["id"])), WORKSPACE, lease=120)   # a worker died with it
    bridge.post_join(join_body(lead))
    refused = RefusedOnce(monkeypatch, bridge.rt.queue.client)

    [batch] = bridge.drain()
    assert batch.ok and batch.result == {"done": 0, "retry": 0, "dead": 0, "waiting": 1}, batch.error
    assert refused.sends == 2 and bridge.queued() == 1
    clock.now += 121
    bridge.poller.release_delayed()
    outcomes = bridge.drain()
    [copy] = [m for o in outcomes for m in o.event["Records"]][:1]
    assert copy["attributes"]["ApproximateReceiveCount"] == "1" and copy["messageAttributes"]["bridge-tries"][
        "stringValue"] == "0"
    while bridge.queued():                          # (Intercom's search lag: a dead worker may have made the contact)
        clock.now += 60
        bridge.poller.release_delayed()
        bridge.drain()
    assert bridge.history(42, lead["id"])["link"]["status"] == "linked" and bridge.dead_letters() == []
