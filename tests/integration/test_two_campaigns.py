"""One person in two campaigns of one workspace (two RF users, one email): each campaign's link is its own,
judged by its own rule, and whatever moves their contact moves both links."""
from __future__ import annotations

import pytest

from .conftest import WORKSPACE, join_body, lead_settings, qualifying_settings
from .test_qualification import merged, qualified_ids
from .test_sync import cli


def in_both(rf, email="ann@example.com"):
    """Ann, referred in campaign 42 by Rita and in campaign 43 by Rob: two RF users, one email."""
    rf.add_campaign(43, "Second campaign")
    ann = rf.add_user(42, email, "Ann", referrer_id=rf.add_user(42, "rita@example.com", "Rita")["id"])
    ann_43 = rf.add_user(43, email, "Ann", referrer_id=rf.add_user(43, "rob@example.com", "Rob")["id"])
    return ann, ann_43


@pytest.mark.parametrize("older", ["user", "lead"])
def test_a_lead_of_two_campaigns_the_duplicate_check_finds_older_than_a_contact_takes_both_links_there(
        bridge, intercom, rf, clock, older):
    """Her two joins arrive together just after a contact with her email was made (search does not show it yet):
    the first makes a lead, the second links that lead. The late duplicate check merges the lead into the older
    user (or moves its link to the older lead): both links go there, and her signing up qualifies her in both."""
    bridge.apply(qualifying_settings())
    bridge.apply({**qualifying_settings(), "campaign_id": "43"})
    contact = intercom.add_contact("ann@example.com", role=older, searchable_after=5,
                                   custom_attributes={"signed_up": "No"})
    clock.now += 1
    ann, ann_43 = in_both(rf)
    bridge.post_join(join_body(ann))
    bridge.post_join(join_body(ann_43))
    bridge.drain()
    ours = bridge.history(42, ann["id"])["link"]["contact_id"]
    assert bridge.history(43, ann_43["id"])["link"]["contact_id"] == ours
    bridge.later.release()
    bridge.drain()
    assert intercom.merged_into == ({ours: contact["id"]} if older == "user" else {})
    assert [bridge.history(c, p["id"])["link"]["contact_id"] for c, p in ((42, ann), (43, ann_43))] == [contact["id"]] * 2
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify(f"contact.{older}.updated", contact["id"])
    bridge.drain()
    assert sorted(qualified_ids(rf)) == sorted([ann["id"], ann_43["id"]])


def joined_both(bridge, intercom, rf, rule_43: dict):
    """Ann joined 42 (signed_up "Yes" qualifies, after a change) and then 43 (`rule_43` on the same attribute): one
    contact, two links."""
    bridge.apply(qualifying_settings())
    bridge.apply({**qualifying_settings(**rule_43), "campaign_id": "43"})
    ann, ann_43 = in_both(rf)
    for person in (ann, ann_43):
        bridge.post_join(join_body(person))
        bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    return ann, ann_43, contact


@pytest.mark.parametrize("told", ["webhook", "reconciliation"])
def test_one_contact_of_two_campaigns_qualifies_each_by_its_own_rule(bridge, intercom, rf, clock, told):
    ann, ann_43, contact = joined_both(bridge, intercom, rf, {"value": "Pro", "require_change": False})

    def becomes(value):
        clock.now += 60
        intercom.update_contact(contact["id"], signed_up=value)
        if told == "webhook":
            bridge.notify("contact.lead.updated", contact["id"])
        else:
            bridge.reconcile()
        bridge.drain()
        return sorted(qualified_ids(rf))

    assert becomes("Yes") == [ann["id"]]
    assert becomes("Pro") == sorted([ann["id"], ann_43["id"]])


@pytest.mark.parametrize("told", ["merged_webhook", "reconciliation_after_410"])
def test_a_contact_of_two_campaigns_merged_into_a_user_moves_both_links_and_both_qualify(
        bridge, intercom, rf, clock, told):
    ann, ann_43, contact = joined_both(bridge, intercom, rf, {})
    clock.now += 60
    user = intercom.add_contact("ann.work@example.com", role="user", custom_attributes={"signed_up": "Yes"})
    merged(bridge, intercom, contact, user, told == "merged_webhook")
    assert [bridge.history(c, p["id"])["link"]["contact_id"] for c, p in ((42, ann), (43, ann_43))] == [user["id"]] * 2
    assert sorted(qualified_ids(rf)) == sorted([ann["id"], ann_43["id"]])


def test_deleting_one_campaigns_settings_leaves_the_other_qualifying_on_their_shared_contact(
        bridge, intercom, rf, clock):
    from chalicelib.services.admin import delete_settings
    ann, ann_43, contact = joined_both(bridge, intercom, rf, {})
    assert delete_settings(bridge.operator(), "43", confirmed=True) is not None
    clock.now += 60
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    bridge.reconcile()
    bridge.drain()
    assert qualified_ids(rf) == [ann["id"]] and bridge.dead_letters() == []
    assert bridge.history(43, ann_43["id"])["link"]["qualification"] == "pending"


def test_invalid_stored_settings_of_one_campaign_leave_the_other_qualifying_on_their_shared_contact_at_once(
        bridge, intercom, rf, clock, capsys):
    """42's stored settings no longer read (as an older version may leave them): its lead's own check is dead-lettered
    with the reason, 43's lead qualifies on the notification, not hours later; 42's replay, once corrected settings
    are applied, reads the contact as it is then and qualifies her there too."""
    ann, ann_43, contact = joined_both(bridge, intercom, rf, {})
    bridge.operator().store.settings.put("42", {**qualifying_settings(), "leads": {"action": "bogus"}}, WORKSPACE)
    clock.now += 60
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    assert qualified_ids(rf) == [ann_43["id"]]
    [dead] = bridge.dead_letters()
    assert (dead["body"]["kind"], dead["body"]["campaign_id"]) == ("intercom.check", "42")
    assert "the stored settings of campaign 42 are invalid" in dead["reason"]
    bridge.apply(qualifying_settings())
    assert cli(bridge, "dlq", "replay", "--campaign", "42", capsys=capsys)[0] == 0
    bridge.drain()
    assert sorted(qualified_ids(rf)) == sorted([ann["id"], ann_43["id"]]) and bridge.dead_letters() == []


def test_a_referrer_of_one_campaign_is_a_lead_of_another_on_one_contact(bridge, intercom, rf, clock):
    """Rita refers in 42, which keeps referral counts; Rob referred her in 43. One contact: her count of 42 is
    written to it, and her signing up qualifies her as 43's lead (42 has no lead of hers to qualify)."""
    intercom.define_attribute("referral_count", "integer")
    rf.add_campaign(43, "Second campaign")
    bridge.apply({**qualifying_settings(), "sync": {"referral_count_attribute": "custom_attributes.referral_count"}})
    bridge.apply({**qualifying_settings(), "campaign_id": "43"})
    rita = rf.add_user(42, "rita@example.com", "Rita")
    rita_43 = rf.add_user(43, "rita@example.com", "Rita", referrer_id=rf.add_user(43, "rob@example.com", "Rob")["id"])
    for person in (rita, rita_43, rf.add_user(42, "ann@example.com", "Ann", referrer_id=rita["id"]),
                   rf.add_user(42, "bo@example.com", "Bo", referrer_id=rita["id"])):
        bridge.post_join(join_body(person))
        bridge.drain()
    [contact] = intercom.contacts_by_email("rita@example.com")
    assert contact["role"] == "user" and contact["custom_attributes"]["referral_count"] == 2
    assert bridge.history(43, rita_43["id"])["link"]["contact_id"] == contact["id"]
    clock.now += 60
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.user.updated", contact["id"])
    bridge.drain()
    assert qualified_ids(rf) == [rita_43["id"]]
    assert intercom.get(contact["id"])["custom_attributes"]["referral_count"] == 2


def test_joining_a_second_campaign_before_search_shows_the_first_ones_lead_links_that_lead(bridge, intercom, rf, clock):
    """Ann joins 43 seconds after 42, in a batch of its own: Intercom's search does not show 42's lead yet, the
    bridge's own records do. 43 links that lead and tags it; no second lead is made (one left in Intercom with 43's
    tag and fields, the late duplicate check could only move the link off)."""
    intercom.search_lag = 60
    bridge.apply(lead_settings(tag="Campaign 42"))
    bridge.apply({**lead_settings(tag="Campaign 43"), "campaign_id": "43"})
    ann, ann_43 = in_both(rf)
    bridge.post_join(join_body(ann))
    bridge.drain()
    clock.now += 5
    bridge.post_join(join_body(ann_43))
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    assert [t["name"] for t in contact["tags"]["data"]] == ["Campaign 42", "Campaign 43"]
    later = bridge.history(43, ann_43["id"])
    assert later["link"]["contact_id"] == bridge.history(42, ann["id"])["link"]["contact_id"] == contact["id"]
    found = next(h for h in later["history"] if h["event"] == "contact")
    assert found["outcome"] == "updated_existing" and f"the bridge's link of user {ann['id']} in campaign 42" in found["reason"]
