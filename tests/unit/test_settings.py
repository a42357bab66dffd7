import pytest

from chalicelib.domain.settings import SettingsError, parse_settings, unworkable
from chalicelib.domain.workspace_check import boolean_text_warnings, check_against_workspace, option_warnings

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
    doc = {**base(), "sync": {"source": "segment"}}        # every problem of the block at once
    assert problems(doc) == ["sync: source is segment but segment_id is missing — add segment_id (see GET /segments)",
                             "sync: email is not mapped — add {from: email, to: email} to fields (Referral Factory "
                             "requires it)",
                             "sync: first_name is not mapped — add {from: name, to: first_name} to fields (Referral "
                             "Factory requires it)"]
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


LISTS = {**WORKSPACE,
         "custom_attributes.stage": {"data_type": "string", "options": ["Trial", "Customer", "Churned"]},
         "custom_attributes.source": {"data_type": "string", "options": [{"value": "referral"}, {"value": "ads"}]}}


def test_values_a_list_attribute_has_no_option_for_are_warned_of_not_refused():
    """A list attribute (text with options: Intercom's dropdown) given a value none of its options is: a rule no
    option meets, a fixed value or an initial value written there. Said as warnings; the check itself passes."""
    s = parse_settings({**base(fields=[{"from": "email", "to": "email"},
                                       {"value": "Referral program", "to": "custom_attributes.source"}]),
                        "qualification": {"attribute": "custom_attributes.stage", "value": "Paid",
                                          "initial_value": "Lead"}})
    assert check_against_workspace(s, LISTS) == []
    assert option_warnings(s, LISTS) == [
        "leads.fields[1].value: 'Referral program' is not one of the options of the list attribute "
        "custom_attributes.source in Intercom ('referral', 'ads') — use one of them, or add it to the list in Intercom",
        "qualification.value: no option of the list attribute custom_attributes.stage in Intercom ('Trial', "
        "'Customer', 'Churned') meets the rule (equals 'Paid') — a contact set from the list never qualifies: use one "
        "of its options as the value, or add the value to the list in Intercom",
        "qualification.initial_value: 'Lead' is not one of the options of the list attribute custom_attributes.stage "
        "in Intercom ('Trial', 'Customer', 'Churned') — use one of them, or add it to the list in Intercom"]


def test_a_text_the_rule_of_a_true_false_attribute_reads_as_true_or_false_is_warned_of_not_refused():
    """Walk: `value: "Yes"` on a checkbox (boolean) attribute was taken silently and read as true. It works (a ticked
    box meets it), so settings that run today are not refused: the warning says how it is read, for the operator who
    wrote it for a text attribute."""
    rule = {"attribute": "custom_attributes.signed_up", "value": "Yes", "initial_value": "off"}
    s = parse_settings({**base(), "qualification": rule})
    assert check_against_workspace(s, WORKSPACE) == []
    assert boolean_text_warnings(s, WORKSPACE) == [
        "qualification.value: 'Yes' on the true/false attribute custom_attributes.signed_up is read as true — write "
        "value: true to say so (if custom_attributes.signed_up was to hold the text 'Yes', it is a true/false "
        "attribute in Intercom, not a text one)",
        "qualification.initial_value: 'off' on the true/false attribute custom_attributes.signed_up is read as false "
        "— write initial_value: false to say so (if custom_attributes.signed_up was to hold the text 'off', it is a "
        "true/false attribute in Intercom, not a text one)"]
    # true and false, as booleans or their text, say what they mean; a text attribute takes "Yes" as the text
    for value, initial in ((True, False), ("true", " FALSE"), ("True", None)):
        said = parse_settings({**base(), "qualification": {**rule, "value": value, "initial_value": initial}})
        assert boolean_text_warnings(said, WORKSPACE) == []
    text = {**WORKSPACE, "custom_attributes.signed_up": {"data_type": "string"}}
    assert boolean_text_warnings(s, text) == []
    assert [w.split(":")[0] for w in boolean_text_warnings(parse_settings(
        {**base(), "qualification": {**rule, "value": 1, "initial_value": None}}), WORKSPACE)] == ["qualification.value"]


@pytest.mark.parametrize("rule", [{"value": "customer"},                       # the rule ignores case by default
                                  {"value": "Cust", "operator": "contains"},
                                  {"operator": "is_set"}])
def test_a_rule_an_option_meets_and_values_among_the_options_are_not_warned_of(rule):
    s = parse_settings({**base(fields=[{"from": "email", "to": "email"},
                                       {"value": "referral", "to": "custom_attributes.source"}]),
                        "qualification": {"attribute": "custom_attributes.stage", "initial_value": "Trial", **rule}})
    assert option_warnings(s, LISTS) == []
    # nor is an attribute without options, nor a value no join writes (the side's action is nothing)
    plain = {name: {"data_type": "string"} for name in LISTS}
    off = parse_settings({**base(action="nothing", fields=[{"value": "x", "to": "custom_attributes.source"}]),
                          "qualification": {"attribute": "custom_attributes.stage", "value": "Paid"}})
    assert option_warnings(parse_settings({**base(), "qualification": {"attribute": "custom_attributes.stage",
                                                                      "value": "Paid"}}), plain) == []
    assert [w.split(":")[0] for w in option_warnings(off, LISTS)] == ["qualification.value"]


def test_a_persons_own_link_or_code_mapped_to_a_list_attribute_is_refused_other_fields_are_not():
    rows = [{"from": "email", "to": "email"}, {"from": "url", "to": "custom_attributes.stage"},
            {"from": "code", "to": "custom_attributes.source"}]
    listed = {**LISTS, "custom_attributes.origin": {"data_type": "string", "options": ["Direct", "Referred"]}}
    rows.append({"from": "source", "to": "custom_attributes.origin"})          # (RF's sources: it may be one)
    assert check_against_workspace(parse_settings(base(fields=rows)), listed) == [
        "leads.fields[1]: url is each person's own referral link but custom_attributes.stage is a list in Intercom "
        "('Trial', 'Customer', 'Churned'), not a text attribute — map it to a Text attribute",
        "leads.fields[2]: code is each person's own referral code but custom_attributes.source is a list in Intercom "
        "('referral', 'ads'), not a text attribute — map it to a Text attribute"]


def test_workspace_check_accepts_dates_floats_and_meta_fields():
    s = parse_settings(base(fields=[{"from": "email", "to": "email"},
                                    {"from": "signed_up_at", "to": "custom_attributes.plan_started"},
                                    {"from": "meta.score", "to": "custom_attributes.score"}]))
    assert check_against_workspace(s, WORKSPACE) == []


UNWRITABLE = ("map it to a text, number, decimal, true/false or date attribute (those are the types the bridge "
              "converts to)")


@pytest.mark.parametrize("dtype", ["reference", "relationship"])
@pytest.mark.parametrize("source", [{"from": "meta.company"}, {"from": "code"}, {"value": "Acme"}])
def test_a_mapping_to_an_attribute_type_the_bridge_cannot_write_is_refused_whatever_the_source(source, dtype):
    """A custom RF field fits any type it converts to: one the bridge converts to no type at all is refused
    too, in the words each join would record for it."""
    from chalicelib.domain.mapping import build_payload
    s = parse_settings(base(fields=[{"from": "email", "to": "email"}, {**source, "to": "custom_attributes.company"}]))
    workspace = {**WORKSPACE, "custom_attributes.company": {"full_name": "custom_attributes.company",
                                                            "data_type": dtype}}
    [error] = build_payload(s.leads.fields, {"email": "a@b.co", "meta.company": "Acme", "code": "c7"}, workspace).errors
    assert check_against_workspace(s, workspace) == [
        f"leads.fields[1].to: custom_attributes.company: {error.reason} — {UNWRITABLE}"]
    assert error.reason == f"attribute type '{dtype}' is not supported"


@pytest.mark.parametrize("source", [{"from": "code"}, {"value": "ops-team"}])
def test_owner_id_listed_as_a_number_is_checked_as_the_text_each_join_writes(source):
    """The workspace's list may call owner_id an integer; the join writes it as text (Intercom's API does): the
    check refuses what the join would write no more than the join does."""
    from chalicelib.domain.mapping import build_payload
    s = parse_settings(base(fields=[{"from": "email", "to": "email"}, {**source, "to": "owner_id"}]))
    workspace = {**WORKSPACE, "owner_id": {"full_name": "owner_id", "data_type": "integer", "api_writable": True}}
    assert build_payload(s.leads.fields, {"email": "a@b.co", "code": "c7"}, workspace).errors == []
    assert check_against_workspace(s, workspace) == []


@pytest.mark.parametrize("leads", [
    {"action": "nothing"},                                                          # no lead's contact is made
    {"fields": [{"from": "email", "to": "email"}, {"from": "meta.signed_up", "to": "custom_attributes.signed_up"}]},
], ids=["leads.action nothing", "a from row maps the rule's attribute"])
def test_an_initial_value_meeting_the_rule_that_is_never_written_is_not_refused(leads):
    """The initial value is written only to the contacts made for leads, and not over a field the join maps to the
    rule's attribute (domain/join.plan): where it is never written, it cannot make anyone qualify at once."""
    doc = {**base(**leads), "qualification": {"attribute": "custom_attributes.signed_up", "value": True,
                                              "initial_value": True}}
    assert check_against_workspace(parse_settings(doc), WORKSPACE) == []


def test_qualification_value_must_fit_the_attribute_type():
    doc = {**base(), "qualification": {"attribute": "custom_attributes.signed_up", "value": "maybe"}}
    found = check_against_workspace(parse_settings(doc), WORKSPACE)
    assert found == ["qualification.value: 'maybe' is not true or false — use a value of type boolean"]


# --- what a qualification rule may watch: any attribute Intercom reports on a contact ---------------
@pytest.mark.parametrize("rule", [
    {"attribute": "role", "value": "user"},                                        # a lead becomes a user
    {"attribute": "created_at", "operator": "gte", "value": "2026-01-01"},
    {"attribute": "last_contacted_at", "operator": "is_set"},
    {"attribute": "has_hard_bounced", "value": False},
    {"attribute": "browser", "operator": "contains", "value": "Chrome"},
    {"attribute": "signed_up_at", "operator": "is_set"},
])
def test_a_rule_may_watch_an_attribute_intercom_sets_itself_and_the_workspace_check_accepts_it(rule):
    """Read-only standard attributes are in no settings' mapping; the workspace's attribute list need not
    list them (WORKSPACE does not): their type is known."""
    s = parse_settings({**base(), "qualification": rule})
    assert s.qualification.attribute == rule["attribute"]
    assert check_against_workspace(s, WORKSPACE) == []


def test_a_read_only_attributes_type_still_checks_the_rules_value_and_operator():
    def rule(**q):
        return check_against_workspace(parse_settings({**base(), "qualification": q}), WORKSPACE)
    assert rule(attribute="created_at", operator="gte", value="soon") == [
        "qualification.value: 'soon' is not a date (use ISO-8601 or unix seconds) — use a value of type date"]
    assert rule(attribute="has_hard_bounced", operator="contains", value=True) == [
        "qualification.operator: contains looks for text, but has_hard_bounced is a true/false attribute — use "
        "equals (or gte for a number or a date)"]


@pytest.mark.parametrize("attribute,why", [
    ("session_count", "it is not an Intercom contact attribute"),
    ("email_domain", "a contact (a webhook's, or one read) does not carry it"),
    ("browser_version", "the contact search cannot filter on it"),
    ("android_sdk_version", "the contact search cannot filter on it"),
    ("location.country", "a contact carries it inside `location`"),
    ("id", "it never changes"),
    ("updated_at", "it changes with every change to the contact"),
    ("tags", "a contact carries it as a list of several values"),
    ("social_profiles", "a contact carries it as a list of several values"),
    ("location", "a contact carries it as an object (country, region, city)"),
])
def test_an_attribute_a_rule_cannot_watch_is_refused_with_why_and_what_it_may_watch(attribute, why):
    [msg] = problems({**base(), "qualification": {"attribute": attribute, "operator": "is_set"}})
    assert msg.startswith(f"qualification.attribute: '{attribute}' ")
    assert why in msg
    assert "custom_attributes.<name>" in msg and "role" in msg and "created_at" in msg and "last_seen_at" in msg


def test_settings_writing_an_attribute_intercoms_api_does_not_write_still_read_but_each_place_is_refused():
    """language_override is on a contact, not in Intercom's create or update requests: whatever writes it loses its
    values. Stored settings naming it still read (a campaign whose settings do not read is switched off)."""
    doc = {**base(fields=[{"from": "email", "to": "email"}, {"value": "fr", "to": "language_override"}]),
           "referrers": {"action": "create_user", "fields": [{"from": "email", "to": "email"},
                                                             {"from": "meta.lang", "to": "language_override"}]},
           "qualification": {"attribute": "language_override", "value": "de", "initial_value": "en"},
           "sync": {"fields": [{"from": "email", "to": "email"}, {"from": "name", "to": "first_name"}],
                    "referral_link_attribute": "language_override"}}
    doc["leads"]["fields"].pop()          # (else the mapped row, not the rule's initial value, is written)
    why = ("cannot be written: Intercom's contact create and update requests have no such field (its API does not "
           "write it), so each value would be lost — write a custom attribute (custom_attributes.<name>) instead, or "
           "remove it")
    assert unworkable(parse_settings(doc)) == [f"{key}: language_override {why}" for key in (
        "referrers.fields[1].to", "qualification.initial_value", "sync.referral_link_attribute")]
    doc = base(fields=[{"from": "email", "to": "email"}, {"value": "fr", "to": "language_override"}])
    assert unworkable(parse_settings(doc)) == [f"leads.fields[1].to: language_override {why}"]
    assert check_against_workspace(parse_settings(doc), WORKSPACE) == []        # (said once)


@pytest.mark.parametrize("operator,value", [("equals", "https://example.org/ann.png"), ("is_set", None)])
def test_a_rule_watching_the_avatar_an_object_on_a_contact_is_refused_yet_stored_ones_read(operator, value):
    settings = parse_settings({**base(), "qualification": {"attribute": "avatar", "operator": operator,
                                                            "value": value}})
    assert unworkable(settings) == [
        "qualification.attribute: avatar is an object on a contact ({type, image_url}), written as text (its URL), and "
        "a rule compares a contact's value as it is: no value meets it as meant — watch another attribute (one your "
        "app or team sets when a lead converts)"]


def test_a_rule_on_role_watches_a_lead_becoming_a_user_and_writes_nothing():
    def refused(**q):
        return problems({**base(), "qualification": {"attribute": "role", **q}})
    assert refused(value="lead") == refused(operator="contains", value="use") == [
        "qualification: role only changes from lead to user — use `value: user` (operator equals): the lead "
        "qualifies when their contact becomes a user"]
    assert refused(value="user", initial_value="lead") == [
        "qualification.initial_value: role is set by Intercom, not written by the bridge — remove initial_value"]
    doc = {**base(), "qualification": {"attribute": "role", "value": "user"}}
    doc["leads"]["action"] = "create_user"
    assert problems(doc) == [
        "qualification: every lead's contact is created a user (leads.action: create_user), so its role never "
        "changes to user and nobody qualifies — create leads (leads.action: create_lead), or set "
        "require_change: false"]


def test_an_initial_value_is_refused_for_an_attribute_intercom_sets_itself():
    [msg] = problems({**base(), "qualification": {"attribute": "created_at", "operator": "is_set",
                                                  "initial_value": "2026-01-01"}})
    assert msg == ("qualification.initial_value: created_at is set by Intercom, not written by the bridge — "
                   "remove initial_value")


# --- what the walkthrough found: values, ids, operators, every problem at once ---------------------
TEXT_RULE = {"attribute": "custom_attributes.lead_source", "value": True}
TYPES = {**WORKSPACE, "custom_attributes.lead_source": {"full_name": "custom_attributes.lead_source",
                                                        "data_type": "string"},
         "custom_attributes.link": {"full_name": "custom_attributes.link", "data_type": "string"},
         "custom_attributes.rate": {"full_name": "custom_attributes.rate", "data_type": "float"},
         "custom_attributes.paid": {"full_name": "custom_attributes.paid", "data_type": "boolean"}}


def test_a_boolean_for_a_text_attribute_is_refused_with_the_yaml_fix():
    """`value: Yes` unquoted is YAML's true: a text attribute never equals it, so nothing would qualify."""
    import yaml
    doc = yaml.safe_load(PRODUCT_EXAMPLE.replace('value: "Yes"', "value: Yes").replace('initial_value: "No"',
                                                                                       "initial_value: No"))
    found = check_against_workspace(parse_settings(doc), TYPES | {"custom_attributes.signed_up": {
        "full_name": "custom_attributes.signed_up", "data_type": "string"}})
    assert [p for p in found if p.startswith("qualification")] == [
        'qualification.value: true is a boolean, but custom_attributes.signed_up is a text attribute — YAML reads '
        'unquoted Yes/No, true/false and on/off as booleans: quote the text, e.g. value: "Yes"',
        'qualification.initial_value: false is a boolean, but custom_attributes.signed_up is a text attribute — YAML '
        'reads unquoted Yes/No, true/false and on/off as booleans: quote the text, e.g. initial_value: "No"']
    # a fixed mapping value too; and a true/false attribute takes a boolean as it is
    s = parse_settings(base(fields=[{"from": "email", "to": "email"},
                                    {"value": True, "to": "custom_attributes.lead_source"}]))
    [row] = check_against_workspace(s, TYPES)
    assert row.startswith("leads.fields[1].value: true is a boolean, but custom_attributes.lead_source is a text")
    on_bool = {**base(), "qualification": {"attribute": "custom_attributes.signed_up", "value": True,
                                           "initial_value": False}}
    assert check_against_workspace(parse_settings(on_bool), WORKSPACE) == []


def test_campaign_and_workspace_ids_follow_the_webhooks_rule():
    for bad in ("42 ", "", "4 2", True, "42/43"):
        [msg] = problems({**base(), "campaign_id": bad})
        assert msg.startswith(f"campaign_id: {bad!r} is not an id a webhook can carry") and "letters, digits" in msg
    [msg] = problems({**base(), "workspace": "vne310wv "})
    assert msg.startswith("workspace: 'vne310wv ' is not an id")
    assert parse_settings({**base(), "campaign_id": "spring-2024_b"}).campaign_id == "spring-2024_b"
    assert parse_settings({**base(), "campaign_id": 42.0}).campaign_id == "42"


def test_an_operator_that_cannot_compare_the_attributes_type_is_a_problem():
    def rule(**q):
        return check_against_workspace(parse_settings({**base(), "qualification": q}), TYPES)
    assert rule(attribute="custom_attributes.lead_source", operator="gte", value="abc") == [
        "qualification.operator: gte compares numbers or dates, but custom_attributes.lead_source is a text "
        "attribute — use equals or contains, or a number or date attribute"]
    # a checkbox: not "or contains", which its own check refuses for anything but text (a walkthrough's loop)
    assert rule(attribute="custom_attributes.paid", operator="gte", value=True) == [
        "qualification.operator: gte compares numbers or dates, but custom_attributes.paid is a true/false "
        "attribute — use equals, or a number or date attribute"]
    assert rule(attribute="custom_attributes.paid", operator="contains", value=True)[0].startswith(
        "qualification.operator: contains looks for text, but custom_attributes.paid is a true/false attribute — use "
        "equals")
    assert rule(attribute="custom_attributes.rate", operator="contains", value="1")[0].startswith(
        "qualification.operator: contains looks for text, but custom_attributes.rate is a decimal attribute")
    assert rule(attribute="custom_attributes.rate", operator="gte", value="abc") == [
        "qualification.value: 'abc' is not a number — use a value of type float"]
    assert rule(attribute="custom_attributes.rate", operator="gte", value="2.5") == []
    assert rule(attribute="custom_attributes.plan_started", operator="gte", value="2024-01-01") == []


def test_is_set_needs_no_value_and_the_others_say_value_is_missing():
    s = parse_settings({**base(), "qualification": {"attribute": "custom_attributes.signed_up", "operator": "is_set"}})
    assert s.qualification.value is None and check_against_workspace(s, WORKSPACE) == []
    [msg] = problems({**base(), "qualification": {"attribute": "custom_attributes.signed_up"}})
    assert msg == ("qualification: value is missing — operator equals compares the attribute with it: add `value:` "
                   "(or use operator: is_set, which needs none)")


def test_every_independent_problem_is_reported_at_once():
    doc = {**base(fields=[{"from": "first_name", "to": "name"}, {"from": "code", "to": "name"}]),
           "campaign_id": "4 2", "colour": "red",
           "referrers": {"action": "create_user", "fields": [{"from": "favourite", "to": "email"}]}}
    found = problems(doc)
    assert "leads: 'name' is mapped twice — map each Intercom attribute at most once" in found
    assert any(p.startswith("leads: email is not mapped") for p in found)
    assert any(p.startswith("campaign_id: '4 2'") for p in found)
    assert "colour: unknown key — remove it or check its spelling" in found
    assert any(p.startswith("referrers.fields[0].from: 'favourite'") for p in found)
    assert len(found) == 5


def test_a_bad_from_lists_every_field_a_mapping_can_read():
    [msg] = [p for p in problems(base(fields=[{"from": "email", "to": "email"}, {"from": "kind", "to": "name"}]))]
    from chalicelib.domain.mapping import RF_FIELDS
    assert all(f in msg for f in RF_FIELDS) and "type" in msg and "referrer_id" in msg and "meta.<field>" in msg


def test_the_sync_block_is_checked_against_the_workspace_as_the_dry_run_checks_it():
    import yaml
    doc = yaml.safe_load(PRODUCT_EXAMPLE + SYNC)
    doc["sync"]["referral_link_attribute"] = "custom_attributes.rate"
    doc["sync"]["fields"].append({"from": "custom_attributes.gone", "to": "meta.plan"})
    attrs = {**TYPES, "custom_attributes.referral_code": {"data_type": "string"},
             "custom_attributes.referral_link": {"data_type": "string"}}
    found = [p for p in check_against_workspace(parse_settings(doc), attrs, segments=[{"id": "1", "name": "VIP"}])
             if p.startswith("sync")]
    assert [p.split(":")[0] for p in found] == ["sync.segment_id", "sync.referral_link_attribute", "sync.fields"]
    assert "segment 5f2a does not exist in workspace vne310wv (1 segments listed: VIP (1))" in found[0]
    assert "custom_attributes.rate is of type float, not a text attribute" in found[1]
    assert found[2].startswith("sync.fields: custom_attributes.gone (mapped to meta.plan) does not exist")
    from chalicelib.domain.sync import preflight            # the dry run's checks are the same ones
    assert preflight(parse_settings(doc), attrs, [{"id": "1", "name": "VIP"}], {"status": "launched"}) == found


def test_a_key_given_twice_is_refused_with_its_line():
    from chalicelib.services.admin import read_document
    text = PRODUCT_EXAMPLE + "leads:\n  action: nothing\n"
    with pytest.raises(SettingsError) as exc:
        read_document(text)
    assert exc.value.problems == ["line 25: the key 'leads' is given twice (first on line 4) — keep one: YAML would "
                                  "silently use the last"]
    with pytest.raises(SettingsError) as exc:
        read_document("a: 1\nb: {x: 1, x: 2}\n")
    assert exc.value.problems[0].startswith("line 2: the key 'x' is given twice")


def test_the_file_reader_notes_a_yes_or_no_word_read_as_a_boolean():
    from chalicelib.services.admin import read_document
    doc, notes = read_document(PRODUCT_EXAMPLE.replace('value: "Yes"', "value: Yes"))
    assert doc["qualification"]["value"] is True
    assert notes == ['line 21: value: Yes is read as the boolean true, not the text "Yes" — for a text attribute, '
                     'quote it (value: "Yes"); a true/false attribute takes it as is']
    assert read_document(PRODUCT_EXAMPLE)[1] == []
    assert read_document('{"qualification": {"value": true}, "overwrite": yes}')[1] == []   # meant as booleans


@pytest.mark.parametrize("written, read", [("042", "the number 34"), ("0x2A", "the number 42"),
                                           ("4:20", "the number 260"), ("1_000", "the number 1000"),
                                           ("42.0", "the number 42.0"), ("+42", "the number 42"),
                                           ("1.0e+3", "the number 1000.0"), ("yes", "the boolean true"),
                                           ("2024-13-45", "an impossible date")])
def test_an_unquoted_id_yaml_would_read_as_another_value_is_refused_with_the_fix(written, read):
    """YAML 1.1 turns 042 into 34 and 0x2A into 42: another campaign, silently (one that exists, overwritten)."""
    from chalicelib.services.admin import check_settings
    text = PRODUCT_EXAMPLE.replace('campaign_id: "42"', f"campaign_id: {written}")
    with pytest.raises(SettingsError) as exc:
        check_settings(text)
    assert exc.value.problems == [f'line 2: campaign_id: {written} is read by YAML as {read}, not the text '
                                  f'"{written}" — write the id exactly as Referral Factory shows it, quoted: '
                                  f'campaign_id: "{written}"']


def test_every_id_of_the_file_is_taken_as_written():
    from chalicelib.services.admin import check_settings
    for plain in ("42", "0", "1e3", "0o17"):     # YAML keeps their text (neither last is a number to YAML 1.1)
        assert check_settings(PRODUCT_EXAMPLE.replace('"42"', plain))[0].campaign_id == plain
    assert check_settings(PRODUCT_EXAMPLE.replace('"42"', '"042"'))[0].campaign_id == "042"
    with pytest.raises(SettingsError) as exc:
        check_settings(PRODUCT_EXAMPLE.replace('"vne310wv"', "0x10") + SYNC.replace('"5f2a"', "017"))
    assert [p.split(" is read by YAML")[0] for p in exc.value.problems] == ["line 3: workspace: 0x10",
                                                                            "line 28: segment_id: 017"]
    assert 'as Intercom shows it, quoted: workspace: "0x10"' in exc.value.problems[0]


@pytest.mark.parametrize("text, line", [
    ("campaign_id: '42'\nleads:\n  action: nothing\n  tag: x: y\n",
     "line 4, column 9: mapping values are not allowed here"),
    ('{"campaign_id": "42", "leads": {"action": "nothing"}\n',
     "line 2, column 1: expected ',' or '}', but got '<stream end>' (while parsing a flow mapping on line 1)"),
    ("campaign_id: '42'\n\x07\n", "unacceptable character #x0007: special characters are not allowed at position 18"),
])
def test_a_file_that_is_not_yaml_is_refused_in_one_line_that_says_where(text, line):
    from chalicelib.services.admin import read_document
    with pytest.raises(SettingsError) as exc:
        read_document(text)
    assert exc.value.problems == [f"(document): not valid YAML or JSON — {line}"]


def test_deleting_settings_counts_the_campaigns_people_by_what_their_join_did():
    """The walkthrough's campaign had 54 links, most of them failed joins: "54 linked people" was not so."""
    from types import SimpleNamespace

    from chalicelib.adapters.memory import MemoryStore
    from chalicelib.domain.link import JoinResult, LinkStatus, PersonRef
    from chalicelib.services.admin import PEOPLE_COUNTED, NeedsConfirmation, delete_settings
    rt = SimpleNamespace(store=MemoryStore(lambda: 1000.0), forget=lambda: None)

    def joins(status: LinkStatus, n: int, campaign="42") -> None:
        for _ in range(n):
            claim = rt.store.links.claim(PersonRef(campaign, f"{status}{len(rt.store.tables.links)}"), "ws")
            rt.store.links.finish(claim, JoinResult(status, reason="boom"), [])

    rt.store.settings.put("42", {"campaign_id": "42"}, "ws")
    joins(LinkStatus.LINKED, 1)
    joins(LinkStatus.FAILED, 53)
    joins(LinkStatus.IGNORED, 2)
    joins(LinkStatus.FAILED, 5, campaign="43")
    joins(LinkStatus.WAITING, 1)          # its work may be dead-lettered (an outage past its budget): not "in the queue"
    with pytest.raises(NeedsConfirmation) as exc:
        delete_settings(rt, "42")
    assert str(exc.value) == ("1 linked person, 2 people its settings ignore (action: nothing), 53 failed joins "
                              "that linked nobody and 1 join waiting (in the queue, or dead-lettered before its "
                              "next try: `bridge dlq list`)")
    joins(LinkStatus.FAILED, PEOPLE_COUNTED)
    with pytest.raises(NeedsConfirmation) as exc:
        delete_settings(rt, "42")
    assert str(exc.value).endswith(f"that linked nobody among its first {PEOPLE_COUNTED} people (it may have more)")
    assert delete_settings(rt, "42", confirmed=True)["kept"] == str(exc.value)


def test_deleting_settings_of_a_campaign_contact_sync_ran_for_says_it_ran_not_that_it_runs():
    """Walkthrough: `bridge settings delete 42` said "campaign 42 has 14 linked people and contact sync runs": read
    as a sync running now, where its run had ended long before."""
    from types import SimpleNamespace

    from chalicelib.adapters.memory import MemoryStore
    from chalicelib.services.admin import NeedsConfirmation, delete_settings
    rt = SimpleNamespace(store=MemoryStore(lambda: 1000.0), forget=lambda: None)
    rt.store.settings.put("42", {"campaign_id": "42"}, "ws")
    rt.store.sync.start("42", "full", "users", 1000.0)
    with pytest.raises(NeedsConfirmation) as exc:
        delete_settings(rt, "42")
    assert str(exc.value) == "runs of contact sync"


def test_workspace_list_names_only_the_campaigns_whose_settings_are_stored_for_the_workspace_now():
    """`settings delete 43` (or 44 applied again for another workspace): `workspace list` no longer shows it
    there; `forget` still visits it (its ledger and history are kept)."""
    from types import SimpleNamespace

    from chalicelib.adapters.memory import MemoryStore
    from chalicelib.services.admin import delete_settings
    from chalicelib.services.connections import list_workspaces
    rt = SimpleNamespace(store=MemoryStore(lambda: 1000.0), forget=lambda: None)
    for campaign, workspace in (("42", "ws"), ("43", "ws"), ("44", "ws"), ("44", "ws-b")):
        rt.store.settings.put(campaign, {"campaign_id": campaign, "workspace": workspace}, workspace)
    delete_settings(rt, "43")
    assert {w["workspace"]: w["campaigns"] for w in list_workspaces(rt)} == {"ws": ["42"], "ws-b": ["44"]}
    assert rt.store.settings.campaigns("ws") == {"42", "43", "44"}       # what forget and explain visit


def test_a_value_yaml_cannot_make_is_one_problem_line_not_an_unexpected_error():
    from chalicelib.services.admin import read_document
    with pytest.raises(SettingsError) as exc:
        read_document('campaign_id: "42"\nworkspace: ws\nqualification: {value: 2024-13-45}\n')
    assert exc.value.problems == ["(document): a value YAML cannot read: month must be in 1..12 — quote it to keep "
                                  "it as text"]


@pytest.mark.parametrize("section", ["leads", "referrers"])
def test_a_sync_writing_links_where_the_same_campaigns_mapping_writes_code_is_refused_yet_stored_ones_read(section):
    """`settings apply` refused another campaign's links in the attribute (doctor reports it), but took the
    campaign's own join mapping writing `code` there: each contact both wrote to held the link or the code by
    turns. Refused, with the mapping row that writes there; a row of a section that creates nothing is not."""
    import yaml
    doc = yaml.safe_load(PRODUCT_EXAMPLE + SYNC)
    doc["sync"]["referral_link_attribute"] = "custom_attributes.referral_code"
    if section == "referrers":
        doc["referrers"]["fields"].append({"from": "code", "to": "custom_attributes.referral_code"})
        doc["leads"]["fields"][2] = {"from": "code", "to": "custom_attributes.lead_code"}
    at = "leads.fields[2]" if section == "leads" else "referrers.fields[2]"
    assert unworkable(parse_settings(doc)) == [
        f"sync.referral_link_attribute: custom_attributes.referral_code is also where {at} writes each person's "
        "referral code (`from: code`) — a contact both write to gets the link over the code, or the code over the "
        "link: create a text attribute of its own for the links and name it in sync.referral_link_attribute, or map "
        "`code` to another attribute"]
    from chalicelib.services.admin import check_settings        # what `settings check` and `apply` refuse with
    with pytest.raises(SettingsError) as refused:
        check_settings(yaml.safe_dump(doc))
    assert refused.value.problems == unworkable(parse_settings(doc))
    doc[section]["action"] = "nothing"
    assert unworkable(parse_settings(doc)) == []
    assert unworkable(parse_settings(yaml.safe_load(PRODUCT_EXAMPLE + SYNC))) == []     # the documented pair


@pytest.mark.parametrize("source, what", [("code", "referral code"), ("url", "referral link")])
def test_a_count_written_where_the_same_campaigns_mapping_writes_code_or_links_is_refused_as_a_link_there_is(source,
                                                                                                       what):
    """`settings check` and `apply` refused sync.referral_link_attribute where the campaign's own mapping writes
    `code` (exit 2), but took sync.referral_count_attribute there, or where the mapping writes each person's link:
    each contact both wrote to held the count or the code (the link) by turns. Refused alike, naming the row; a row
    of a section that creates nothing is not."""
    import yaml
    doc = yaml.safe_load(PRODUCT_EXAMPLE + SYNC)
    doc["leads"]["fields"][2] = {"from": source, "to": "custom_attributes.referral_code"}
    doc["sync"]["referral_count_attribute"] = "custom_attributes.referral_code"
    assert unworkable(parse_settings(doc)) == [
        f"sync.referral_count_attribute: custom_attributes.referral_code is also where leads.fields[2] writes each "
        f"person's {what} (`from: {source}`) — a contact both write to gets the count over the {what.split()[1]}, "
        f"or the {what.split()[1]} over the count: create a Number (integer) attribute of its own for the counts "
        f"and name it in sync.referral_count_attribute, or map `{source}` to another attribute"]
    from chalicelib.services.admin import check_settings        # what `settings check` and `apply` refuse with
    with pytest.raises(SettingsError) as refused:
        check_settings(yaml.safe_dump(doc))
    assert refused.value.problems == unworkable(parse_settings(doc))
    doc["leads"]["action"] = "nothing"
    assert unworkable(parse_settings(doc)) == []
