"""One person in two campaigns of one workspace (two RF users, one email): each campaign's link is its own,
judged by its own rule, and whatever moves their contact moves both links."""
from __future__ import annotations

from .conftest import join_body, qualifying_settings
from .test_qualification import qualified_ids


def in_both(rf, email="ann@example.com"):
    """Ann, referred in campaign 42 by Rita and in campaign 43 by Rob: two RF users, one email."""
    rf.add_campaign(43, "Second campaign")
    ann = rf.add_user(42, email, "Ann", referrer_id=rf.add_user(42, "rita@example.com", "Rita")["id"])
    ann_43 = rf.add_user(43, email, "Ann", referrer_id=rf.add_user(43, "rob@example.com", "Rob")["id"])
    return ann, ann_43


def test_a_lead_of_two_campaigns_merged_into_an_older_user_by_the_duplicate_check_qualifies_in_both(
        bridge, intercom, rf, clock):
    """Her two joins arrive together just after a user with her email was made (search does not show it yet):
    the first makes a lead, the second links that lead. The late duplicate check merges the lead into the user:
    both links follow it, and her signing up qualifies her in both campaigns."""
    bridge.apply(qualifying_settings())
    bridge.apply({**qualifying_settings(), "campaign_id": "43"})
    user = intercom.add_contact("ann@example.com", role="user", searchable_after=5,
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
    assert intercom.merged_into == {ours: user["id"]}
    assert [bridge.history(c, p["id"])["link"]["contact_id"] for c, p in ((42, ann), (43, ann_43))] == [user["id"]] * 2
    intercom.update_contact(user["id"], signed_up="Yes")
    bridge.notify("contact.user.updated", user["id"])
    bridge.drain()
    assert sorted(qualified_ids(rf)) == sorted([ann["id"], ann_43["id"]])
