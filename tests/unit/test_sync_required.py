"""Contact sync and the RF campaign's required fields (`fields.person_referring[].required`): a contact
missing one is skipped, naming the field, before RF is asked (RF would refuse it with a 422, a call each),
in the dry run as in the run; the campaign is read once a run, not once a contact. The pure decision, then
the use cases on the store's twin and fakes."""
from __future__ import annotations

import pytest

from chalicelib.domain.settings import parse_settings
from chalicelib.domain.sync import Create, Skip, decide, preflight, required_fields
from chalicelib.messages import ContactMessage
from chalicelib.services import sync
from tests.unit.test_sync import LINK, WS, drain, sync_settings, world

COMPANY = {"from": "custom_attributes.company", "to": "meta.company"}
REFERRING = [{"id": "first_name", "type": "text", "label": "First name", "required": True},
             {"id": "email", "type": "email", "label": "Email", "required": True},
             {"id": "company", "type": "text", "label": "Company", "required": True},
             {"id": "phone", "type": "text", "label": "Phone", "required": False}]
CAMPAIGN = {"id": 42, "name": "B2B", "status": "launched",
            "fields": {"person_referring": REFERRING, "person_invited": REFERRING[:2] + REFERRING[3:]}}


def block(*rows: dict):
    settings = parse_settings(sync_settings(fields=[{"from": "email", "to": "email"},
                                                    {"from": "name", "to": "first_name"}, *rows]))
    assert settings.sync is not None
    return settings


def contact(company=None) -> dict:
    return {"id": "c1", "email": "ann@example.com", "name": "Ann", "custom_attributes": {"company": company}}


def test_the_campaigns_required_fields_are_those_rf_requires_of_a_referrer_as_sync_maps_them():
    assert required_fields(CAMPAIGN) == ("first_name", "email", "meta.company")
    assert required_fields({"id": 42}) == () and required_fields(None) == ()


@pytest.mark.parametrize("company", [None, "", "   "])
def test_a_contact_whose_mapped_required_field_is_blank_is_skipped_naming_the_field(company):
    sync_block = block(COMPANY).sync
    assert decide(sync_block, "42", contact(company), required_fields(CAMPAIGN)) == Skip(
        "missing_field", "missing required field: meta.company (from custom_attributes.company; required by the "
                         "campaign in Referral Factory)")
    assert isinstance(decide(sync_block, "42", contact(company)), Create)     # a campaign requiring no such field


def test_a_contact_with_the_required_field_is_enrolled_with_it():
    decided = decide(block(COMPANY).sync, "42", contact(" Acme "), required_fields(CAMPAIGN))
    assert decided == Create("ann@example.com", {"campaign_id": 42, "email": "ann@example.com", "first_name": "Ann",
                                                 "meta": [{"field": "company", "value": "Acme"}]})


def test_a_required_field_the_sync_block_does_not_map_stops_the_run_before_anyone_is_created():
    settings = block()
    attributes = {LINK: {"data_type": "string"}, "name": {"data_type": "string"}, "email": {"data_type": "string"}}
    assert preflight(settings, attributes, None, CAMPAIGN) == [
        "sync.fields: meta.company is required by campaign 42 in Referral Factory (its field Company) but not "
        "mapped — add {from: <an Intercom attribute>, to: meta.company}, or make the field optional in Referral "
        "Factory"]
    assert preflight(block(COMPANY), {**attributes, "custom_attributes.company": {"data_type": "string"}}, None,
                     CAMPAIGN) == []


def b2b(n: int = 4, **sync_block):
    """Campaign 42 requiring a company of its referrers, its sync block mapping it; `n` users with a company,
    and Bea, whose company is blank."""
    work = world(n, fields=[{"from": "email", "to": "email"}, {"from": "name", "to": "first_name"}, COMPANY],
                 **sync_block)
    intercom, rf = work.apis.intercom_, work.apis.rf_
    intercom.attributes["custom_attributes.company"] = {"data_type": "string"}
    for c in list(intercom.contacts.values()):
        c["custom_attributes"] = {"company": "Acme"}
    bea = intercom.add("bea@example.com", role="user")
    bea.update(name="Bea", custom_attributes={"company": " "})
    rf.get_campaign = lambda campaign_id, real=rf.get_campaign: {**real(campaign_id), **CAMPAIGN}
    return work, bea


def test_a_run_skips_a_contact_missing_a_required_field_without_asking_rf_and_reads_the_campaign_once(monkeypatch):
    monkeypatch.setattr(sync, "PER_PAGE", 2)
    work, bea = b2b()
    calls: list[str] = []
    campaign = work.apis.rf_.get_campaign
    work.apis.rf_.get_campaign = lambda campaign_id: calls.append(campaign_id) or campaign(campaign_id)
    dry = sync.dry_run(work.deps, "42")
    assert (dry["would_enrol"], dry["skipped"]["missing_field"]["count"]) == (4, 1)
    [example] = dry["skipped"]["missing_field"]["examples"]
    detail = ("missing required field: meta.company (from custom_attributes.company; required by the campaign in "
              "Referral Factory)")
    assert example["detail"] == detail
    assert calls == ["42"]
    sync.start(work.deps, "42")
    drain(work)
    assert calls == ["42"] * 3                      # the start's checks and the first page's: 3 pages, no more
    run = work.store.sync.run("42")
    assert (run.status, run.page, run.counts) == ("done", 3, {"enrolled": 4, "missing_field": 1})
    assert "create_user bea@example.com" not in work.apis.rf_.calls
    assert all(u["meta"] == [{"field": "company", "value": "Acme"}] for u in work.apis.rf_.created)
    [entry] = [e for e in work.store.sync.ledger("42") if e.contact_id == bea["id"]]
    assert (entry.outcome, entry.reason) == ("missing_field", detail)


def test_ongoing_sync_skips_a_new_contact_missing_a_required_field_without_asking_rf():
    work, _ = b2b(1, mode="ongoing")
    sync.start(work.deps, "42")
    drain(work)
    rf = work.apis.rf_
    asked, read = len(rf.calls), rf.campaign_calls
    cy = work.apis.intercom_.add("cy@example.com", role="user")
    cy["name"] = "Cy"
    sync.on_contact(ContactMessage(workspace=WS, topic="contact.user.created", notification_id="n1", item=cy),
                    work.deps)
    assert (len(rf.calls), rf.campaign_calls) == (asked, read)          # neither a create nor the campaign
    [entry] = [e for e in work.store.sync.ledger("42") if e.contact_id == cy["id"]]
    assert entry.outcome == "missing_field" and entry.reason is not None and "meta.company (from" in entry.reason
    assert sync.status(work.deps, "42")["by_webhook"] == {"missing_field": 1}


@pytest.mark.parametrize("signed_up_at,renewal", [(1692125375, 1692125375), ("2023-08-15T18:49:35.016+00:00",
                                                                           "2023-08-15T20:49:35+02:00")])
def test_a_date_is_sent_to_rf_as_iso_8601_utc_whichever_form_intercom_gave_it_in(signed_up_at, renewal):
    """Intercom's search gives dates in UNIX seconds, its webhooks in ISO-8601 text: RF gets one form of one
    moment, from a standard date attribute and a custom one of type date alike; a number is sent as it is."""
    rows = ({"from": "signed_up_at", "to": "meta.member_since"},
            {"from": "custom_attributes.renewal", "to": "meta.renewal"},
            {"from": "custom_attributes.seats", "to": "meta.seats"})
    attributes = {"custom_attributes.renewal": {"data_type": "date"},
                  "custom_attributes.seats": {"data_type": "integer"}}
    given = {**contact(), "signed_up_at": signed_up_at,
             "custom_attributes": {"renewal": renewal, "seats": 1692125375}}
    decided = decide(block(*rows).sync, "42", given, attributes=attributes)
    moment = "2023-08-15T18:49:35Z"
    assert isinstance(decided, Create) and decided.body["meta"] == [
        {"field": "member_since", "value": moment}, {"field": "renewal", "value": moment},
        {"field": "seats", "value": 1692125375}]
