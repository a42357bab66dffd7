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
