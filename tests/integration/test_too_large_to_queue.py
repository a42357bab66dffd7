"""Issue: a valid webhook whose message would not fit in the queue (SQS: 256 KiB, less the room kept for a dead
letter's attributes) was answered 413, and its sender dropped it. It is queued thin instead: the worker reads the
rest from the vendor."""
from __future__ import annotations

import json
from typing import Callable

from .conftest import join_body, lead_settings, new_lead


def filling(limit: int, body_with: Callable[[str], dict]) -> dict:
    """The body with a custom value that makes it 100 bytes short of the edge's limit (its message, with what
    the queue adds, is then too large for the queue)."""
    return body_with("x" * (limit - 100 - len(json.dumps(body_with("")).encode())))


def test_a_notification_too_large_to_queue_is_read_from_intercom_and_qualifies_the_lead(bridge, intercom, rf, joined):
    lead, contact = joined()
    intercom.update_contact(contact["id"], signed_up="Yes")

    def notification(notes: str) -> dict:      # (in a custom attribute: a contact's `notes` is Intercom's list of them)
        intercom.update_contact(contact["id"], custom_attributes={"notes": notes})
        return intercom.webhook_payload("contact.lead.updated", contact["id"], notif_id="notif_big")
    answer = bridge.post_intercom(filling(bridge.rt.config.max_body_bytes, notification))
    assert (answer.status_code, answer.json().get("queued")) == (200, True)
    reads = intercom.count("GET", f"/contacts/{contact['id']}")
    bridge.drain()
    assert [user_id for user_id, _ in rf.qualification_events] == [lead["id"]]
    assert intercom.count("GET", f"/contacts/{contact['id']}") == reads + 1      # the whole contact, read once
    history = bridge.history(42, lead["id"])["history"]
    [note] = [h for h in history if h["event"] == "intercom_notification"]
    assert note["outcome"] == "read_from_intercom" and "too large to queue" in note["reason"]
    [evaluation] = [h for h in history if h["event"] == "evaluation"]
    assert evaluation["outcome"] == "met" and evaluation["details"]["actual"] == "Yes"


def test_a_join_too_large_to_queue_is_completed_from_referral_factory_and_creates_the_contact(bridge, intercom, rf):
    bridge.apply(lead_settings())
    lead = new_lead(rf)
    answer = bridge.post_join(filling(bridge.rt.config.max_body_bytes,
                                      lambda notes: {**join_body(lead), "meta": {"notes": notes}}))
    assert (answer.status_code, answer.json().get("queued")) == (202, True)
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    assert contact["name"] == "Ann" and contact["custom_attributes"]["referral_code"] == lead["code"]
    assert rf.count("GET", f"/users/{lead['id']}") == 1          # what was left out, read from RF
    [received] = [h for h in bridge.history(42, lead["id"])["history"] if h["event"] == "join_received"]
    assert "too large to queue" in received["reason"] and received["details"]["fetched_from_referral_factory"] == [
        "user"]
