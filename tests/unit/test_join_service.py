"""The join step's orchestration with in-memory fakes of Intercom and RF (no DynamoDB, no HTTP)."""
from chalicelib.domain.settings import parse_settings
from chalicelib.messages import JoinMessage
from chalicelib.services.join import _apply
from tests.fakes import FakeIntercom, FakeJoinRuntime, FakeRF

SETTINGS = {
    "campaign_id": "42", "workspace": "ws",
    "leads": {"action": "create_lead", "duplicates": "update", "tag": "Referred",
              "fields": [{"from": "email", "to": "email"}, {"from": "first_name", "to": "name"},
                         {"from": "referrer_name", "to": "custom_attributes.referred_by"},
                         {"from": "campaign_name", "to": "custom_attributes.campaign"}]},
    "qualification": {"attribute": "custom_attributes.signed_up", "value": "Yes", "initial_value": "No"},
}
LEAD = {"id": "7", "campaign_id": "42", "email": "ann@example.com", "first_name": "Ann", "type": "lead",
        "referrer_id": "3"}
RF_USERS = {"7": {**LEAD, "code": "c7"}, "3": {"id": 3, "first_name": "Rita", "email": "rita@example.com"}}


def run(settings=SETTINGS, person=LEAD, intercom=None, progress=None):
    intercom = intercom or FakeIntercom()
    rt = FakeJoinRuntime(intercom, FakeRF(dict(RF_USERS)))
    progress = {"token": "t", "campaign_id": "42", "rf_user_id": "7", **(progress or {})}
    message = JoinMessage(campaign_id="42", rf_user_id="7", person=person)
    outcome, fields, history = _apply(parse_settings(settings), message, rt, progress)
    return outcome, fields, history, intercom, rt


def test_new_lead_is_created_with_referrer_and_campaign_fields_and_initial_value():
    outcome, fields, history, intercom, rt = run()
    [contact] = intercom.contacts.values()
    assert outcome == "created" and contact["role"] == "lead"
    assert contact["custom_attributes"] == {"referred_by": "Rita", "campaign": "Friends of Acme", "signed_up": "No"}
    assert fields["baseline"] == "No" and fields["qualification"] == "pending"
    assert rt.created == [("42", "7", "t", contact["id"], "No")]     # recorded before anything else can fail
    assert intercom.tags == [(contact["id"], "Referred")]


def test_existing_user_found_by_409_is_updated_but_keeps_its_value():
    intercom = FakeIntercom()
    existing = intercom.add("ann@example.com", role="user", searchable=False, signed_up="Yes")
    outcome, fields, history, _, _ = run(intercom=intercom)
    assert outcome == "updated" and existing["custom_attributes"]["signed_up"] == "Yes"
    assert fields["baseline"] == "Yes" and fields["contact_id"] == existing["id"]
    assert "409 conflict" in history[-2]["reason"]


def test_resuming_uses_the_recorded_baseline_not_todays_value():
    intercom = FakeIntercom()
    ours = intercom.add("ann@example.com", signed_up="Yes")           # the lead signed up meanwhile
    outcome, fields, history, _, _ = run(intercom=intercom, progress={"contact_id": ours["id"], "baseline": "No"})
    assert outcome == "created" and fields["baseline"] == "No"
    assert intercom.calls.count("create") == 0 and history[1]["outcome"] == "resumed"


def test_a_vanished_contact_from_an_earlier_try_is_created_again():
    outcome, fields, history, intercom, _ = run(progress={"contact_id": "gone", "baseline": "No"})
    assert outcome == "created" and fields["contact_id"] in intercom.contacts
    assert history[1]["outcome"] == "vanished"
