"""Issue: one bad message fails alone. In a batch of ten, a message the worker cannot read goes
to the dead-letter queue with its reason, and its nine neighbours finish on the first delivery.
Every dead letter has a reason, also one SQS moved there itself after repeated crashes."""
from __future__ import annotations

import json

from infra.local.esm import QueuePoller

from .conftest import WORKSPACE, join_body, lead_settings, new_lead, qualifying_settings
from .test_qualification import qualified_ids


def enqueue(bridge, message: dict | str) -> None:
    """A message put on the queue by something other than our intake (an older version, a
    hand-edited replay, a bug)."""
    bridge.resources.client("sqs").send_message(
        QueueUrl=bridge.resources.queue_url, MessageBody=message if isinstance(message, str) else json.dumps(message))


def first_delivery(bridge):
    outcome = bridge.poller.poll_once()
    assert outcome.received == 10
    assert outcome.ok, f"the batch was handed back: {outcome.error}"
    assert bridge.queued() == 0, "a record came back for another delivery"
    return outcome


def joined_leads(bridge, intercom, rf, n=9) -> list[tuple[dict, dict]]:
    bridge.apply(qualifying_settings())
    leads = [new_lead(rf, email=f"lead{i}@example.com", first_name=f"Lead{i}") for i in range(n)]
    for lead in leads:
        bridge.post_join(join_body(lead))
    bridge.drain()
    return [(lead, intercom.contacts_by_email(lead["email"])[0]) for lead in leads]


def test_nine_joins_finish_on_the_first_delivery_beside_a_poison_join(bridge, intercom, rf):
    bridge.apply(lead_settings())
    leads = [new_lead(rf, email=f"lead{i}@example.com", first_name=f"Lead{i}") for i in range(9)]
    for lead in leads[:5]:
        assert bridge.post_join(join_body(lead)).status_code == 202
    poison = {"kind": "rf.join", "campaign_id": "42", "person": {"id": "1", "campaign_id": "42"}}   # no rf_user_id
    enqueue(bridge, poison)
    for lead in leads[5:]:
        assert bridge.post_join(join_body(lead)).status_code == 202

    first_delivery(bridge)
    assert sorted(c["email"] for c in intercom.contacts.values()) == sorted(lead["email"] for lead in leads)
    [dead] = bridge.dead_letters()
    assert dead["body"] == poison
    assert dead["reason"] == "unreadable message: rf.join.rf_user_id: required" and dead["attempts"] == 1


def test_nine_contact_events_qualify_on_the_first_delivery_beside_a_poison_event(bridge, intercom, rf):
    people = joined_leads(bridge, intercom, rf)
    for lead, contact in people[:4]:
        intercom.update_contact(contact["id"], signed_up="Yes")
        assert bridge.notify("contact.lead.updated", contact["id"]).status_code == 200
    poison = {"kind": "intercom.contact", "workspace": WORKSPACE, "topic": "contact.lead.updated",
              "notification_id": "notif_poison", "created_at": 1, "item": ["an", "array", "for", "an", "object"]}
    enqueue(bridge, poison)
    for lead, contact in people[4:]:
        intercom.update_contact(contact["id"], signed_up="Yes")
        assert bridge.notify("contact.lead.updated", contact["id"]).status_code == 200

    first_delivery(bridge)
    assert sorted(qualified_ids(rf)) == sorted(lead["id"] for lead, _ in people)
    [dead] = bridge.dead_letters()
    assert dead["body"] == poison and dead["reason"] == "unreadable message: intercom.contact.item: must be an object"


def test_nine_reconciliation_messages_qualify_on_the_first_delivery_beside_a_poison_check(bridge, intercom, rf):
    people = joined_leads(bridge, intercom, rf, n=8)
    for _, contact in people:
        intercom.update_contact(contact["id"], signed_up="Yes")        # the webhooks were lost
    run = bridge.reconcile()
    assert (run["queued"], run["searches"]) == (8, 1)                  # a check per lead, one search of changes
    enqueue(bridge, {"kind": "intercom.check", "campaign_id": "42", "rf_user_id": "7"})    # no workspace

    first_delivery(bridge)
    assert sorted(qualified_ids(rf)) == sorted(lead["id"] for lead, _ in people)
    [dead] = bridge.dead_letters()
    assert dead["reason"] == "unreadable message: intercom.check.workspace: required"


def test_a_body_that_is_not_a_message_at_all_fails_alone_and_goes_back_as_it_was_on_replay(bridge, intercom, rf):
    bridge.apply(lead_settings())
    leads = [new_lead(rf, email=f"lead{i}@example.com") for i in range(9)]
    for lead in leads:
        bridge.post_join(join_body(lead))
    enqueue(bridge, "not json {")

    first_delivery(bridge)
    assert len(intercom.contacts) == 9
    [dead] = bridge.dead_letters()
    assert dead["body"] == "not json {" and dead["reason"].startswith("unreadable message: (body): Invalid JSON")

    from chalicelib.services.dead_letters import replay
    assert replay(bridge.rt)["replayed"] == 1              # sent back unchanged: a fixed worker might read it
    bridge.drain()
    [again] = bridge.dead_letters()
    assert again["body"] == "not json {" and again["reason"] == dead["reason"]


def test_a_message_sqs_moved_after_repeated_crashes_is_listed_with_a_reason(bridge, rf):
    bridge.apply(lead_settings())
    bridge.post_join(join_body(new_lead(rf)))

    def crashes(event, context):
        raise TimeoutError("Task timed out after 60.00 seconds")      # the Lambda dies every time

    poller = QueuePoller(bridge.resources.client("sqs"), bridge.resources.queue_url, bridge.resources.queue_arn,
                         crashes)
    receives = 0
    while poller.poll_once().received:                               # until SQS's redrive policy moves it
        receives += 1
        poller.expire_inflight()
        assert receives <= 20
    [dead] = bridge.dead_letters()
    assert dead["reason"] == (f"moved by SQS after about {receives} receives: the worker crashed or timed out "
                              "each time")
    assert dead["attempts"] == receives and dead["body"]["kind"] == "rf.join"
