from chalicelib.domain import join, people
from chalicelib.domain.history import iso
from chalicelib.domain.link import LEAD, MOVED_UNKNOWN, Link, LinkStatus
from chalicelib.domain.settings import parse_settings

SETTINGS = parse_settings({
    "campaign_id": "42", "workspace": "ws",
    "leads": {"action": "create_lead", "duplicates": "update", "tag": "Referred",
              "fields": [{"from": "email", "to": "email"}, {"from": "first_name", "to": "name"},
                         {"from": "code", "to": "custom_attributes.referral_code"}]},
    "referrers": {"action": "nothing"},
    "qualification": {"attribute": "custom_attributes.signed_up", "value": "Yes", "initial_value": "No"},
})


def test_normalise_webhook_body_with_aliases_and_meta():
    p = people.normalise({"user_id": 17, "campaign_id": "42", "email": "a@b.co", "referral_code": "xy",
                          "referrer_id": 3, "meta": [{"field": "company", "value": "Acme"}], "plan": "pro"})
    assert p == {"id": "17", "campaign_id": "42", "email": "a@b.co", "code": "xy", "referrer_id": "3",
                 "type": "lead", "meta.company": "Acme", "meta.plan": "pro"}


def test_a_custom_field_sent_at_the_top_level_as_a_list_is_read_and_said_not_written_when_mapped():
    """`interests[]=golf&interests[]=chess`, or a JSON list: left out of the person, its row was not written and
    nothing said so (nor could RF's API tell: the mapping found no value). Read, it is recorded as not converted."""
    person = people.normalise({"id": 17, "campaign_id": "42", "email": "a@b.co", "referrer_id": 3,
                               "interests": ["golf", "chess"]})
    assert person["meta.interests"] == ["golf", "chess"]
    settings = parse_settings({"campaign_id": "42", "workspace": "ws", "referrers": {"action": "nothing"},
                               "leads": {"action": "create_lead", "fields": [
                                   {"from": "email", "to": "email"},
                                   {"from": "meta.interests", "to": "custom_attributes.interests"}]}})
    plan = join.plan(settings, person, {"custom_attributes.interests": {"data_type": "string"}})
    assert isinstance(plan, join.Plan)
    [error] = plan.payload.errors
    assert (error.to, error.source) == ("custom_attributes.interests", "from meta.interests")


def test_normalise_api_user_types():
    assert people.normalise({"data": {"id": 5, "type": "person_referring"}})["type"] == "referrer"
    assert people.normalise({"id": 5, "referrer_id": None})["type"] == "referrer"


def test_missing_fields_trigger_a_fetch():
    assert people.missing({"id": "1", "email": "a@b.co", "type": "lead"}, {"email", "code"}) == {"code"}
    assert people.missing({"id": "1", "email": "a@b.co", "type": "lead", "code": "x"}, {"email", "code"}) == set()
    assert people.missing({"id": "1"}, set()) == {"email", "type"}


def test_merge_prefers_webhook_values_and_fills_gaps():
    assert people.merge({"email": "hook@x.co", "code": None}, {"email": "api@x.co", "code": "c1", "url": "u"}) == \
        {"email": "hook@x.co", "code": "c1", "url": "u"}


def test_lead_plan_writes_initial_value_role_and_our_marker():
    plan = join.plan(SETTINGS, {"type": "lead", "email": "a@b.co", "first_name": "Ann", "code": "c"}, {})
    assert plan.create_body("42#7") == {"email": "a@b.co", "name": "Ann", "role": "lead", "custom_attributes": {
        "referral_code": "c", "signed_up": "No", "rf_person": "42#7"}}
    assert join.created_baseline(SETTINGS, plan) == "No"
    assert join.duplicate_action(plan, {}) == {"name": "Ann", "custom_attributes": {"referral_code": "c"}}


def test_update_fills_empty_fields_and_keeps_what_the_contact_has():
    plan = join.plan(SETTINGS, {"type": "lead", "email": "a@b.co", "first_name": "Ann", "code": "c"}, {})
    named = {"name": "Existing User", "custom_attributes": {"referral_code": "", "signed_up": "Yes"}}
    assert join.duplicate_action(plan, named) == {"custom_attributes": {"referral_code": "c"}}
    complete = {"name": "Existing User", "custom_attributes": {"referral_code": "old"}}
    assert join.duplicate_action(plan, complete) is None
    assert join.duplicate_action(plan, {"name": "Ann", "custom_attributes": {"referral_code": "c"}}) is None


def test_overwrite_true_replaces_a_value_the_contact_has():
    doc = SETTINGS.to_document()
    doc["leads"]["fields"][2] = {"from": "code", "to": "custom_attributes.referral_code", "overwrite": True}
    plan = join.plan(parse_settings(doc), {"type": "lead", "email": "a@b.co", "first_name": "Ann", "code": "c"}, {})
    existing = {"name": "Existing User", "custom_attributes": {"referral_code": "old"}}
    assert join.duplicate_action(plan, existing) == {"custom_attributes": {"referral_code": "c"}}


def test_our_contact_is_the_one_with_our_marker():
    contacts = [{"id": "x", "created_at": 1, "custom_attributes": {}},
                {"id": "b", "created_at": 9, "custom_attributes": {"rf_person": "42#7"}},
                {"id": "a", "created_at": 5, "custom_attributes": {"rf_person": "42#7"}},
                {"id": "o", "created_at": 2, "custom_attributes": {"rf_person": "43#7"}}]
    assert join.ours(contacts, join.marker("42", "7"))["id"] == "a"
    assert join.ours(contacts[:1], "42#7") is None


def test_a_duplicate_is_an_older_contact_a_lead_merges_only_into_a_user_and_only_with_update():
    ours = {"id": "l9", "role": "lead", "created_at": 100}
    user, lead, later = ({"id": "u1", "role": "user", "created_at": 90}, {"id": "l1", "role": "lead", "created_at": 80},
                         {"id": "u2", "role": "user", "created_at": 200})
    assert join.duplicate_of(ours, [ours, later], "update") is None            # made after the person joined
    assert join.duplicate_of(ours, [ours, lead, user], "update") == join.Duplicate(user, merge=True)
    assert join.duplicate_of(ours, [ours, lead], "update") == join.Duplicate(lead, merge=False)
    assert join.duplicate_of(ours, [user], "skip") == join.Duplicate(user, merge=False)


def test_the_baseline_after_moving_is_the_older_contacts_value_only_if_it_did_not_change_since():
    """(1000: when the person joined.) Made since: the link's own baseline holds. Made before and not changed
    since: its value then. Changed since, or not dated: not known, never the link's own (it may have had the
    target all along)."""
    lead = Link("42", "7", "ws", LinkStatus.LINKED, kind=LEAD, baseline="No", joined_at=iso(1000.0))
    yes = {"custom_attributes": {"signed_up": "Yes"}, "created_at": 900, "updated_at": 999}
    unknown = {"baseline": None, "baseline_of": MOVED_UNKNOWN}
    assert join.moved_baseline(SETTINGS, lead, yes) == {"baseline": "Yes", "baseline_of": "custom_attributes.signed_up"}
    assert join.moved_baseline(SETTINGS, lead, {**yes, "updated_at": 1001}) == unknown
    # changed in the second she joined (1000.5 says 1000): maybe after she joined, so not her value then; a contact
    # search hid at her join keeps the link's own baseline (the change is hers), another's is not known
    assert join.moved_baseline(SETTINGS, lead, {**yes, "updated_at": 1000}) == unknown
    assert join.moved_baseline(SETTINGS, lead, {**yes, "updated_at": 1000}, hidden_by_search=True) == {}
    assert join.moved_baseline(SETTINGS, lead, {**yes, "created_at": 1001, "updated_at": 1001}) == {}
    # Intercom's times are whole seconds: a user made in the second the person joined, 0.4 s after (she signed up
    # at once, a chaos run's signup), says 1000 of a join at 1000.5: made after she joined, not her value then
    later = Link("42", "7", "ws", LinkStatus.LINKED, kind=LEAD, baseline="No", joined_at=iso(1000.5))
    assert join.moved_baseline(SETTINGS, later, {**yes, "created_at": 1000, "updated_at": 1000}) == {}
    assert join.moved_baseline(SETTINGS, lead, {"custom_attributes": {"signed_up": "Yes"}}) == unknown


def test_referrer_with_action_nothing_is_ignored_with_reason():
    skip = join.plan(SETTINGS, {"type": "referrer", "email": "a@b.co"}, {})
    assert skip == join.Skip("ignored", "referrers.action is nothing: no contact is created for referrers")


def test_unknown_type_and_missing_email_fail_with_reason():
    assert join.plan(SETTINGS, {"email": "a@b.co"}, {}).outcome == "failed"
    skip = join.plan(SETTINGS, {"type": "lead"}, {})
    assert skip.outcome == "failed" and "the person has no email" in skip.reason


def test_duplicates_skip_leaves_contact_untouched():
    skip_settings = parse_settings({**SETTINGS.to_document(),
                                    "leads": {**SETTINGS.to_document()["leads"], "duplicates": "skip"}})
    plan = join.plan(skip_settings, {"type": "lead", "email": "a@b.co"}, {})
    assert join.duplicate_action(plan, {}) is None


def test_existing_contact_prefers_user_then_oldest():
    contacts = [{"id": "l1", "role": "lead", "created_at": 1}, {"id": "u2", "role": "user", "created_at": 5},
                {"id": "u1", "role": "user", "created_at": 3}]
    assert join.pick_existing(contacts)["id"] == "u1"
    assert join.pick_existing([]) is None


def test_baseline_reads_the_qualifying_attribute():
    assert join.baseline(SETTINGS, {"custom_attributes": {"signed_up": "Yes"}}) == "Yes"
