import pytest

from chalicelib.domain.settings import SettingsError, check_against_workspace, parse_settings

PRODUCT_EXAMPLE = """
campaign_id: "42"
workspace: "vne310wv"
leads:
  action: create_lead
  duplicates: update
  fields:
    - {from: email, to: email}
    - {from: first_name, to: name}
    - {from: code, to: custom_attributes.referral_code}
    - {value: "referral", to: custom_attributes.lead_source}
  tag: Referred
referrers:
  action: create_user
  duplicates: skip
  fields:
    - {from: email, to: email}
    - {from: url, to: custom_attributes.referral_link}
qualification:
  attribute: custom_attributes.signed_up
  value: "Yes"
  initial_value: "No"
  require_change: true
  match: contact
"""
SYNC = """
sync:
  source: segment
  segment_id: "5f2a"
  mode: ongoing
  fields:
    - {from: email, to: email}
    - {from: name, to: first_name}
  referral_link_attribute: custom_attributes.referral_link
"""


def problems(doc) -> list[str]:
    with pytest.raises(SettingsError) as exc:
        parse_settings(doc)
    return exc.value.problems


def base(**leads):
    return {"campaign_id": 42, "workspace": "ws", "leads": {"action": "create_lead",
            "fields": [{"from": "email", "to": "email"}], **leads}}


def test_the_documented_example_is_valid():
    import yaml
    s = parse_settings(yaml.safe_load(PRODUCT_EXAMPLE))
    assert s.campaign_id == "42" and s.leads.role == "lead" and s.referrers.role == "user"
    assert s.leads.fields[3].value == "referral" and s.qualification.value == "Yes"


def test_the_documented_sync_block_is_valid():
    import yaml
    s = parse_settings(yaml.safe_load(PRODUCT_EXAMPLE + SYNC))
    assert s.sync.source == "segment" and s.sync.segment_id == "5f2a" and s.sync.mode == "ongoing"
    assert [(r.from_, r.to) for r in s.sync.fields] == [("email", "email"), ("name", "first_name")]


def test_a_sync_block_names_what_is_wrong_and_the_fix():
    doc = {**base(), "sync": {"source": "segment"}}
    assert problems(doc) == ["sync: source is segment but segment_id is missing — add segment_id (see GET /segments)"]
    doc = {**base(), "sync": {"fields": [{"from": "email", "to": "email"}]}}
    assert problems(doc) == ["sync: first_name is not mapped — add {from: name, to: first_name} to fields "
                             "(Referral Factory requires it)"]
    doc = {**base(), "sync": {"fields": [{"from": "email", "to": "email"}, {"from": "name", "to": "code"}]}}
    assert problems(doc)[0].startswith("sync.fields[1].to: 'code' is not a Referral Factory field sync can set")


def test_unknown_key_is_named_with_its_path():
    assert problems({**base(), "leeds": {}}) == ["leeds: unknown key — remove it or check its spelling"]
    assert problems(base(colour="red")) == ["leads.colour: unknown key — remove it or check its spelling"]


def test_email_must_be_mapped_when_contacts_are_created():
    doc = base(fields=[{"from": "first_name", "to": "name"}])
    [msg] = problems(doc)
    assert msg.startswith("leads: email is not mapped") and "{from: email, to: email}" in msg


def test_nothing_action_needs_no_mapping():
    parse_settings({"campaign_id": "1", "workspace": "w", "leads": {"action": "nothing"}})


def test_an_attribute_mapped_twice_is_refused():
    doc = base(fields=[{"from": "email", "to": "email"}, {"from": "code", "to": "custom_attributes.c"},
                       {"value": "x", "to": "custom_attributes.c"}])
    [msg] = problems(doc)
    assert "custom_attributes.c' is mapped twice" in msg and msg.startswith("leads:")


def test_row_needs_exactly_one_of_from_and_value():
    doc = base(fields=[{"from": "email", "to": "email"}, {"from": "code", "value": "x", "to": "name"}])
    assert problems(doc) == ["leads.fields[1]: give exactly one of `from` (a Referral Factory field) "
                             "or `value` (a fixed value)"]


def test_unknown_rf_field_and_intercom_attribute_say_what_to_use():
    doc = base(fields=[{"from": "email", "to": "email"}, {"from": "favourite", "to": "nickname"}])
    msgs = problems(doc)
    assert any(m.startswith("leads.fields[1].from: 'favourite' is not a Referral Factory field") and "meta.<field>" in m
               for m in msgs)
    assert any(m.startswith("leads.fields[1].to: 'nickname' is not an Intercom contact attribute") for m in msgs)


def test_bad_choice_lists_the_allowed_values():
    [msg] = problems(base(action="create_customer"))
    assert msg.startswith("leads.action: input should be 'nothing', 'create_lead' or 'create_user'")


WORKSPACE = {
    "email": {"full_name": "email", "data_type": "string"},
    "name": {"full_name": "name", "data_type": "string"},
    "custom_attributes.score": {"full_name": "custom_attributes.score", "data_type": "integer"},
    "custom_attributes.plan_started": {"full_name": "custom_attributes.plan_started", "data_type": "date"},
    "custom_attributes.signed_up": {"full_name": "custom_attributes.signed_up", "data_type": "boolean"},
    "custom_attributes.old": {"full_name": "custom_attributes.old", "data_type": "string", "archived": True},
}


def test_workspace_check_finds_missing_archived_and_unconvertible():
    s = parse_settings(base(fields=[
        {"from": "email", "to": "email"}, {"value": "ten", "to": "custom_attributes.score"},
        {"from": "code", "to": "custom_attributes.plan_started"}, {"from": "url", "to": "custom_attributes.nope"},
        {"value": "x", "to": "custom_attributes.old"}]))
    found = check_against_workspace(s, WORKSPACE)
    assert any(p.startswith("leads.fields[1].value: 'ten' is not a number") for p in found)
    assert any(p.startswith("leads.fields[2]: code is string but custom_attributes.plan_started is date") for p in found)
    assert any(p.startswith("leads.fields[3].to: custom_attributes.nope does not exist") for p in found)
    assert any("archived" in p and p.startswith("leads.fields[4].to") for p in found)


def test_workspace_check_accepts_dates_floats_and_meta_fields():
    s = parse_settings(base(fields=[{"from": "email", "to": "email"},
                                    {"from": "signed_up_at", "to": "custom_attributes.plan_started"},
                                    {"from": "meta.score", "to": "custom_attributes.score"}]))
    assert check_against_workspace(s, WORKSPACE) == []


def test_qualification_value_must_fit_the_attribute_type():
    doc = {**base(), "qualification": {"attribute": "custom_attributes.signed_up", "value": "maybe"}}
    found = check_against_workspace(parse_settings(doc), WORKSPACE)
    assert found == ["qualification.value: 'maybe' is not true or false — use a value of type boolean"]
