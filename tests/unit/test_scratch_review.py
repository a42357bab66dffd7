from tests.unit.scenario import event, history, link_of, run
from tests.unit.test_join_use_case import SETTINGS, join, verify_later, world

EMAIL = {**SETTINGS, "qualification": {**SETTINGS["qualification"], "match": "email"}}


def test_the_lead_left_in_intercom_by_a_move_to_an_older_lead_still_counts_under_match_email():
    """The duplicate check moved Ann's link from the lead the bridge made (which stays in Intercom: two leads are not
    merged) to the older lead; match: email. She then signs up on the lead the bridge made (current, not late)."""
    work = world(EMAIL)
    intercom = work.apis.intercom_
    older = intercom.add("ann@example.com", role="lead", searchable=False, signed_up="No")
    run(work, join())
    ours = intercom.contacts[str(link_of(work).contact_id)]
    intercom.unsearchable.clear()
    verify_later(work)
    assert link_of(work).contact_id == older["id"] and ours["id"] in intercom.contacts
    work.clock.now += 60
    ours["custom_attributes"]["signed_up"] = "Yes"
    ours["updated_at"] = work.clock.now
    run(work, event(ours, notification="n-ours", created_at=work.clock.now))
    print(history(work))
    assert work.apis.rf_.qualified == ["7"]
