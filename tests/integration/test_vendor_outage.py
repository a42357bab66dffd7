"""An Intercom outage of hours heals by itself (walkthrough: five joins in a 5-minute outage all went to the
dead-letter queue, "gave up after 5 tries", until someone ran `dlq replay`). On moto and the simulators,
through the real HTTP clients: Intercom answers 503 to every call for 3 hours of the test's clock; the joins
wait without using up a try, then each arrives exactly once, with nothing in the dead-letter queue."""
from __future__ import annotations

from dataclasses import replace

import pytest

from .conftest import MAX_ATTEMPTS, join_body, lead_settings, new_lead, qualifying_settings
from .test_exactly_once import UNREADABLE


def test_joins_wait_out_a_three_hour_intercom_outage_and_each_arrives_once(bridge, intercom, rf, clock):
    bridge.apply(lead_settings())
    leads = [new_lead(rf, email=f"p{n}@example.com", first_name=f"P{n}") for n in range(5)]
    intercom.fail_next("*", ".*", 503, times=10**6)                 # every call, whatever it is
    start = clock.now
    for lead in leads:
        assert bridge.post_join(join_body(lead)).status_code == 202
    waits = 0
    while clock.now < start + 3 * 3600:
        [batch] = bridge.drain()
        assert batch.ok and batch.received == 5                     # all five wait: none failed
        waits += 1
        clock.now += 900                                            # the longest wait (SQS's longest delay)
        bridge.poller.release_delayed()
    assert waits > 2 * MAX_ATTEMPTS and intercom.contacts == {} and bridge.dead_letters() == []
    waiting = [e for e in bridge.history(42, leads[0]["id"])["history"] if e["event"] == "waiting"]
    assert waiting and waiting[-1]["reason"].startswith("Intercom unavailable since ")
    assert "Intercom answered 503" in waiting[-1]["reason"]

    intercom.clear_faults()                                         # Intercom is back
    bridge.drain()
    bridge.later.release()                                          # the created leads' verification
    bridge.drain()
    assert sorted(c["email"] for c in intercom.contacts.values()) == [f"p{n}@example.com" for n in range(5)]
    assert intercom.count("POST", "/contacts") - intercom.count("POST", "/contacts/") == 5    # one create each
    assert bridge.queued() == 0 and bridge.dead_letters() == []
    assert {bridge.history(42, lead["id"])["link"]["status"] for lead in leads} == {"linked"}


def test_one_contact_that_intercom_answers_503_holds_back_no_other_contact_event_of_its_batch(bridge, intercom, rf,
                                                                                            monkeypatch):
    # What a user sees: Intercom answers 503 (every time, after the client's retries) for one contact only;
    # the nine other contact events of its batch must be worked in the same invocation, not wait out an
    # "Intercom unavailable" with it (as while one call's outage failure held the container's other calls).
    # The records run one after another, the bad one first: what its failure leaves behind meets every other.
    monkeypatch.setattr(bridge.rt, "config", replace(bridge.rt.config, concurrency=1))
    contacts = one_contact_answered_503(bridge, intercom, rf, 10)
    for contact in contacts:
        bridge.notify("contact.lead.updated", contact["id"])
    [batch] = bridge.drain()
    assert batch.result == {"done": 9, "retry": 0, "dead": 0, "waiting": 1}


def one_contact_answered_503(bridge, intercom, rf, n: int) -> list[dict]:
    """`n` joined leads' contacts; from now on Intercom answers 503 to every GET of the first one (only)."""
    bridge.apply(qualifying_settings())
    leads = [new_lead(rf, email=f"p{i}@example.com", first_name=f"P{i}") for i in range(n)]
    for lead in leads:
        bridge.post_join(join_body(lead))
    bridge.drain()
    bridge.later.release()                                          # their duplicate checks, while Intercom answers
    bridge.drain()
    contacts = list(intercom.contacts.values())
    intercom.fail_next("GET", f"/contacts/{contacts[0]['id']}$", 503, times=10**6)
    return contacts


def test_past_the_outage_budget_a_contact_intercom_answers_503_alone_fails_its_tries_as_intercom_answers_others(
        bridge, intercom, rf, clock, monkeypatch):
    # What a user sees: an event waited out Intercom's 503s to its contact for BRIDGE_OUTAGE_HOURS while Intercom
    # answered the bridge's other calls; it was dead-lettered "Intercom unavailable for 1 h" though Intercom was
    # up. Now it fails its tries as any failure, then waits in the dead-letter queue with Intercom's answer.
    monkeypatch.setattr(bridge.rt, "config", replace(bridge.rt.config, outage_hours=1))
    bad, good = one_contact_answered_503(bridge, intercom, rf, 2)
    bridge.notify("contact.lead.updated", bad["id"])
    assert [b.result for b in bridge.drain()] == [{"done": 0, "retry": 0, "dead": 0, "waiting": 1}]
    clock.now += 2 * 3600                                           # past the budget...
    bridge.notify("contact.lead.updated", good["id"])               # ...Intercom answers the other contact's event
    assert [b.result for b in bridge.drain()] == [{"done": 1, "retry": 0, "dead": 0}]
    bridge.poller.release_delayed()
    *tries, last = bridge.poller.drain(retry_failures=True)          # (a failed try hands its batch back)
    assert [t.ok for t in tries] == [False] * (MAX_ATTEMPTS - 1) and last.result == {"done": 0, "retry": 0, "dead": 1}
    [letter] = bridge.dead_letters()
    assert letter["reason"].startswith(f"gave up after {MAX_ATTEMPTS} tries: Intercom answered 503"), letter


def test_past_the_outage_budget_an_eu_workspaces_intercom_down_is_its_outage_though_the_us_one_answers(
        bridge, intercom, rf, clock, monkeypatch, other_workspaces):
    # What a user sees: Intercom's EU region is down for longer than BRIDGE_OUTAGE_HOURS while the US one (another
    # workspace's API base) answers the same worker. The EU join was dead-lettered "gave up after 3 tries: Intercom
    # answered 503" (its tries spent on a region still down, a letter no outage finding names) because Intercom
    # had answered the US workspace's calls. It is the EU region's outage: its letter says so, at once.
    from chalicelib.services.connections import connect_workspace
    monkeypatch.setattr(bridge.rt, "config", replace(bridge.rt.config, outage_hours=1))
    eu = other_workspaces("ws-eu", "eu-token")
    for name in ("referral_code", "lead_source", "referral_link"):
        eu.define_attribute(name, "string")
    connect_workspace(bridge.rt, "ws-eu", "eu-token", client_secret="eu-secret", api_base=eu.base_url)
    rf.add_campaign(43, "Friends of Acme EU")
    bridge.apply(lead_settings())
    bridge.apply({**lead_settings(), "campaign_id": "43", "workspace": "ws-eu"})
    eu.fail_next("*", ".", 503, times=10**6)
    referrer = rf.add_user(43, "rex@example.com", "Rex")
    bridge.post_join(join_body(rf.add_user(43, "eve@example.com", "Eve", referrer_id=referrer["id"])))
    assert [b.result for b in bridge.drain()] == [{"done": 0, "retry": 0, "dead": 0, "waiting": 1}]
    clock.now += 2 * 3600                                           # past the budget...
    bridge.post_join(join_body(new_lead(rf)))                       # ...the US workspace's Intercom answers
    assert [b.result for b in bridge.drain()] == [{"done": 1, "retry": 0, "dead": 0}]
    bridge.poller.release_delayed()
    assert [b.result for b in bridge.poller.drain(retry_failures=True)] == [{"done": 0, "retry": 0, "dead": 1}]
    [letter] = bridge.dead_letters()
    assert letter["reason"].startswith("Intercom unavailable for 1 h (BRIDGE_OUTAGE_HOURS): Intercom answered 503"), \
        letter


@pytest.mark.parametrize("status", [503, 429])
@pytest.mark.parametrize("retry_after", UNREADABLE)
def test_an_unreadable_retry_after_from_intercom_is_read_as_none_and_the_join_arrives_at_once(
        bridge, intercom, rf, status, retry_after):
    # What a user sees: Intercom answers a join's search with a Retry-After neither seconds nor a date. The join
    # waited as for an outage, "Intercom unavailable: Intercom unreachable after retries (InvalidHeader)", though
    # Intercom had answered. The header is read as absent: a 503 is retried after the ordinary backoff, a 429 after
    # Intercom's rate window (as any 429 that names no wait), both short enough to wait in the call.
    bridge.apply(lead_settings())
    lead = new_lead(rf)
    intercom.fail_next("POST", "^/contacts/search$", status, headers={"Retry-After": retry_after})
    bridge.post_join(join_body(lead))
    [batch] = bridge.drain()
    waits = [e["reason"] for e in bridge.history(42, lead["id"])["history"] if e["event"] == "waiting"]
    assert batch.result == {"done": 1, "retry": 0, "dead": 0} and waits == [], waits
    assert [c["email"] for c in intercom.contacts.values()] == ["ann@example.com"]
