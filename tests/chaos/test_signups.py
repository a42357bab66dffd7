"""The chaos run's signups (harness.People.sign_up, _signups_followed): the person's lead is merged into a new user,
as Intercom's lead conversion does, `contact.merged` is delivered, and a link left on the lead, or moved with another
baseline, is reported. No stack is started."""
from __future__ import annotations

import json

from infra.local.chaos.harness import ATTRIBUTE, Person, People, _signups_followed
from infra.local.sims.intercom import IntercomSim


class Scheduled:
    def __init__(self):
        self.events: list = []

    def schedule(self, event, spread):
        self.events.append(event)


def signed_up() -> tuple[IntercomSim, Person, dict, Scheduled]:
    intercom, deliveries = IntercomSim(), Scheduled()
    lead = intercom.add_contact("ann@example.com", role="lead", name="Ann", custom_attributes={ATTRIBUTE: "No"})
    ann = Person(0, "new", "ann@example.com", "Ann", ["No", "Yes"], [0.0, 0.0], rf={"id": 1000})
    crowd = People(intercom, [ann], deliveries, spread=0.0)  # type: ignore[arg-type]
    crowd.sign_up(ann)
    return intercom, ann, lead, deliveries


def test_a_signup_merges_the_lead_into_a_new_user_and_notifies_the_merge():
    intercom, ann, lead, deliveries = signed_up()
    user = ann.signed_up["user"]
    assert intercom.merged_into == {lead["id"]: user}
    assert intercom.get(user)["role"] == "user" and intercom.get(user)["custom_attributes"][ATTRIBUTE] == "No"
    [event] = deliveries.events
    body = json.loads(event.body)
    assert (body["topic"], body["data"]["item"]["id"], body["data"]["item"]["merged_from"]["id"]) == \
        ("contact.merged", user, lead["id"])
    People(intercom, [ann], deliveries, spread=0.0).change(ann, "Yes")    # type: ignore[arg-type]
    assert ann.last_contact == user


def test_a_link_left_on_the_merged_lead_or_with_another_baseline_is_reported():
    intercom, ann, lead, _ = signed_up()
    user = ann.signed_up["user"]

    def judged(link: dict) -> list[str]:
        return _signups_followed([ann], intercom, {"1000": link}, {}, lambda p: f"#{p.i}")

    assert judged({"contact_id": user, "contact_role": "user", "baseline": json.dumps("No")}) == []
    [left] = judged({"contact_id": lead["id"], "contact_role": "lead", "baseline": json.dumps("No")})
    assert left.startswith(f"#0: lead {lead['id']} merged into {user} at ")
    assert f"(before the bridge tagged it); link on {lead['id']} as lead, baseline 'No'" in left
    assert "baseline 'Yes'" in judged({"contact_id": user, "contact_role": "user", "baseline": json.dumps("Yes")})[0]
