"""Settings the walkthrough of a new user let through: a `value: Yes` that YAML made a boolean, a
campaign id no webhook can carry, an operator that cannot compare its attribute, a sync block
nothing checked, a key given twice. Each is refused by `bridge settings apply` with the same line
`bridge doctor` reports (one shared check), on the local stack (moto + the simulators), as an
operator runs them. And settings applied by mistake can be deleted."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.support.cli import run_cli

from .conftest import WORKSPACE, join_body, lead_settings, new_lead, qualifying_settings
from .test_troubleshooting import apply_offline, bad, doctor

YES_FIX = ('qualification.value: true is a boolean, but custom_attributes.signed_up is a text attribute — YAML '
           'reads unquoted Yes/No, true/false and on/off as booleans: quote the text, e.g. value: "Yes"')


def write(tmp_path, text: str, name="campaign.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def unquoted_yes() -> str:
    """docs/examples/campaign.yaml's rule with `value: Yes` not quoted (the walkthrough's sed)."""
    text = yaml.safe_dump(qualifying_settings(), sort_keys=False).replace("value: 'Yes'", "value: Yes")
    assert "value: Yes\n" in text
    return text


def test_an_unquoted_yes_for_a_text_attribute_is_refused_by_apply_and_reported_by_doctor(bridge, tmp_path, capsys):
    path = write(tmp_path, unquoted_yes())
    # offline, the type of the attribute is unknown: a warning, with its line and the fix
    code, out, err = run_cli(bridge.operator(), capsys, "settings", "check", path)
    assert code == 0 and out.startswith("settings are valid")
    assert 'value: Yes is read as the boolean true, not the text "Yes" — for a text attribute, quote it' in err
    code, out, err = run_cli(bridge.operator(), capsys, "settings", "check", path, "--json")   # in the JSON only
    assert (code, err) == (0, "") and [w for w in json.loads(out)["warnings"] if "value: Yes is read as" in w]
    # the live check knows custom_attributes.signed_up is text: refused, nothing stored
    code, out, err = run_cli(bridge.operator(), capsys, "settings", "apply", path)
    assert (code, err) == (2, f"settings are invalid:\n  - {YES_FIX}\n")
    assert run_cli(bridge.operator(), capsys, "settings", "show", "42")[0] == 1
    # stored anyway (--offline): doctor says the same, as a problem
    code, out, err = run_cli(bridge.operator(), capsys, "settings", "apply", "--offline", path)
    assert code == 0 and "value: Yes is read as the boolean true" in err
    code, report = doctor(bridge, capsys)
    [found] = [f for f in bad(report, "settings.workspace") if f["what"].startswith("qualification.value")]
    assert f"{found['what']} — {found['fix']}" == YES_FIX and "nothing qualifies" in found["why"]
    # quoted, it applies (and doctor finds nothing wrong with the settings)
    assert run_cli(bridge.operator(), capsys, "settings", "apply",
                   write(tmp_path, yaml.safe_dump(qualifying_settings())))[0] == 0
    assert bad(doctor(bridge, capsys)[1], "settings") == []


def test_a_campaign_id_no_webhook_can_carry_is_refused_by_check_and_apply(bridge, tmp_path, capsys):
    for wrong in ("42 ", "", "4 2"):
        path = write(tmp_path, yaml.safe_dump({**lead_settings(), "campaign_id": wrong}))
        for argv in (["settings", "check", path], ["settings", "apply", path]):
            code, _, err = run_cli(bridge.operator(), capsys, *argv)
            assert code == 2 and f"  - campaign_id: {wrong!r} is not an id a webhook can carry" in err


def test_settings_applied_by_mistake_are_deleted_and_doctor_stops_naming_them(bridge, rf, tmp_path, capsys):
    """Campaign 43 was applied by mistake with 42's referral-link attribute: doctor 42 names it until
    it is deleted. Deleting 42, which has a linked person, needs --yes; the link and history stay."""
    bridge.apply(lead_settings())
    rf.add_campaign(43, "Typo")
    bridge.apply({**lead_settings(), "campaign_id": "43"})
    assert [f["what"] for f in bad(doctor(bridge, capsys)[1], "settings.referral_link")] == [
        "campaign 43 also writes its referral links to custom_attributes.referral_link"]

    code, out, _ = run_cli(bridge.operator(), capsys, "settings", "delete", "43")
    assert code == 0 and out.startswith("settings of campaign 43 deleted (version 1, workspace vne310wv)")
    assert bad(doctor(bridge, capsys)[1], "settings.referral_link") == []
    assert bad(doctor(bridge, capsys, 43)[1], "settings")[0]["what"] == "campaign 43 has no settings here"
    code, _, err = run_cli(bridge.operator(), capsys, "settings", "delete", "43")
    assert code == 1 and "bridge: campaign 43 has no settings, nothing was deleted" in err  # (as every command names it)

    lead = new_lead(rf)
    assert bridge.post_join(join_body(lead)).status_code == 202
    bridge.drain()
    code, _, err = run_cli(bridge.operator(), capsys, "settings", "delete", "42")
    assert code == 1 and err.startswith("bridge: campaign 42 has 1 linked person: once its settings are deleted")
    assert "add --yes" in err and run_cli(bridge.operator(), capsys, "settings", "show", "42")[0] == 0
    code, out, err = run_cli(bridge.operator(), capsys, "settings", "delete", "42", "--json")   # a script's: on stdout
    assert (code, err, json.loads(out)["deleted"]) == (1, "", False)    # (and true once deleted: test_cli)
    assert json.loads(out)["problems"][0].startswith("campaign 42 has 1 linked person: once its settings are deleted")
    code, out, _ = run_cli(bridge.operator(), capsys, "settings", "delete", "42", "--yes")
    assert code == 0 and out.rstrip().endswith("; kept, with their history: 1 linked person")
    assert run_cli(bridge.operator(), capsys, "settings", "show", "42")[0] == 1
    code, out, _ = run_cli(bridge.operator(), capsys, "history", "42", str(lead["id"]))
    assert code == 0 and json.loads(out)["link"]["status"] == "linked"
    bridge.rt.forget()                       # the API's cache of known campaigns (a minute in a Lambda)
    answer = bridge.post_join(join_body(new_lead(rf, "bob@example.com")))
    assert (answer.status_code, answer.json()["error"]) == (404, "unknown_campaign")


COMPANY = {"from": "meta.company", "to": "custom_attributes.company"}
INITIAL_WHY = ("every lead's contact is created meeting the rule: under require_change none qualifies until its "
               "value changes away and back; without it, each one is qualified (and rewarded) at the first "
               "notification about its new contact")
REFUSED = {
    "an operator that cannot compare the attribute": (
        qualifying_settings(operator="gte", value="abc"),
        "qualification.operator: gte compares numbers or dates, but custom_attributes.signed_up is a text attribute "
        "— use equals or contains, or a number or date attribute", "the rule never compares as meant: nothing qualifies"),
    # Every lead's contact would be created meeting the rule: with require_change: false each one is qualified (a
    # reward) at the first notification about its new contact; with true, none until its value changes away and back.
    "an initial value that meets the rule (its case aside)": (
        qualifying_settings(initial_value="yes", require_change=False),
        "qualification.initial_value: 'yes' meets the rule itself (custom_attributes.signed_up equals 'Yes') — write "
        "the value a lead has before converting, one that does not meet the rule, or remove initial_value",
        INITIAL_WHY),
    "an initial value a rule `is_set` counts as set": (
        qualifying_settings(operator="is_set", value=None),
        "qualification.initial_value: 'No' meets the rule itself (custom_attributes.signed_up is set) — write the "
        "value a lead has before converting, one that does not meet the rule, or remove initial_value", INITIAL_WHY),
    "a fixed value mapped to the rule's attribute that meets the rule": (
        {**qualifying_settings(initial_value=None), "leads": lead_settings(fields=[
            *lead_settings()["leads"]["fields"], {"value": "Yes", "to": "custom_attributes.signed_up"}])["leads"]},
        "leads.fields[4].value: 'Yes' meets the rule itself (custom_attributes.signed_up equals 'Yes') — write the "
        "value a lead has before converting, one that does not meet the rule, or map no value to it", INITIAL_WHY),
    # A custom RF field (`meta.*`) fits any type it converts to, not one the bridge converts to no type at all.
    "a custom field mapped to an attribute type the bridge cannot write": (
        lead_settings(fields=[*lead_settings()["leads"]["fields"], COMPANY]),
        "leads.fields[4].to: custom_attributes.company: attribute type 'reference' is not supported — map it to a "
        "text, number, decimal, true/false or date attribute (those are the types the bridge converts to)",
        "the bridge cannot write this type: each lead's join is applied without the field, said in its history"),
    # A list attribute (text with options) holds one of its options: a person's own link never is one (as
    # sync.referral_link_attribute is refused a list).
    "a referral link mapped to a list attribute": (
        {**lead_settings(), "referrers": {**lead_settings()["referrers"], "fields": [
            {"from": "email", "to": "email"}, {"from": "url", "to": "custom_attributes.link_kind"}]}},
        "referrers.fields[1]: url is each person's own referral link but custom_attributes.link_kind is a list in "
        "Intercom ('short', 'long'), not a text attribute — map it to a Text attribute",
        "no referrer's own value is one of the list's options, which Intercom may keep it to: each join is then applied "
        "without the field, said in its history (fields not written)"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_mapping_that_cannot_work_is_refused_by_apply_as_doctor_reports_it(bridge, intercom, tmp_path, capsys,
                                                                              case):
    doc, line, why = REFUSED[case]
    intercom.define_attribute("company", "reference")
    intercom.define_attribute("link_kind", "string", options=["short", "long"])
    code, _, err = run_cli(bridge.operator(), capsys, "settings", "apply", write(tmp_path, yaml.safe_dump(doc)))
    assert (code, err) == (2, f"settings are invalid:\n  - {line}\n")
    apply_offline(bridge, doc)
    [found] = bad(doctor(bridge, capsys)[1], "settings.workspace")
    assert (f"{found['what']} — {found['fix']}", found["why"]) == (line, why)


WARNED = {
    # Intercom's list attribute sets only its options: the hosted integration's dropdown offers those; a typed value
    # none of them meets would never qualify anyone, silently.
    "a rule value no option of a list attribute meets": (
        ("stage", "string", ["Trial", "Customer"]), {"value": "Paid", "initial_value": "Trial"},
        "qualification.value: no option of the list attribute custom_attributes.stage in Intercom ('Trial', "
        "'Customer') meets the rule (equals 'Paid') — a contact set from the list never qualifies: use one of its "
        "options as the value, or add the value to the list in Intercom", "never qualifies", "customer"),   # (an option)
    # Walk: `value: "Yes"` on a checkbox attribute was stored silently and read as true. It works as read (refusing it
    # would stop settings that run): warned of, with how it reads.
    "a rule text a true/false attribute reads as true": (
        ("paid", "boolean", None), {"value": "Yes", "initial_value": None},
        "qualification.value: 'Yes' on the true/false attribute custom_attributes.paid is read as true — write "
        "value: true to say so (if custom_attributes.paid was to hold the text 'Yes', it is a true/false attribute "
        "in Intercom, not a text one)", "a ticked box", True),                             # (says what it means)
}


@pytest.mark.parametrize("attribute, rule, line, why, fine", WARNED.values(), ids=WARNED)
def test_a_rule_value_that_works_unlike_meant_is_warned_of_by_apply_and_doctor(bridge, intercom, tmp_path, capsys,
                                                                               attribute, rule, line, why, fine):
    """Stored, with a warning (one line, once); doctor says it too, as a warning, not a problem. A value said as
    meant: nothing to say."""
    name, data_type, options = attribute
    intercom.define_attribute(name, data_type, options=options)
    doc = qualifying_settings(attribute=f"custom_attributes.{name}", **rule)
    code, out, err = run_cli(bridge.operator(), capsys, "settings", "apply", write(tmp_path, yaml.safe_dump(doc)))
    assert code == 0 and f"warning: {line}\n" in err
    assert err.count(f"custom_attributes.{name}") == line.count(f"custom_attributes.{name}")
    code, report = doctor(bridge, capsys)
    [found] = [f for f in report["findings"] if f["warn"] and f["check"] == "settings.workspace"]
    assert (f"{found['what']} — {found['fix']}", bad(report, "settings")) == (line, [])   # a warning, not a problem
    assert why in found["why"]
    code, _, err = run_cli(bridge.operator(), capsys, "settings", "apply",
                           write(tmp_path, yaml.safe_dump({**doc, "qualification": {**doc["qualification"],
                                                                                  "value": fine}})))
    assert code == 0 and f"custom_attributes.{name}" not in err
    assert not [f for f in doctor(bridge, capsys)[1]["findings"] if f["warn"] and f["check"] == "settings.workspace"]


# Refused by `settings check` and `apply` (also --offline: no attribute needed to see them), not by the settings
# model: settings stored before keep working (a campaign whose stored settings do not read is switched off),
# and doctor names their problem.
NEVER_WORKS = {
    "a tag name of spaces only": (
        lead_settings(tag="  "),
        "leads.tag: '  ' is blank, and Intercom refuses a tag without a name — write the tag's name, or remove `tag`",
        "each join that tags its contact fails: Intercom refuses the tag"),
    "a rule whose value is blank": (
        qualifying_settings(value=" "),
        "qualification.value: ' ' is blank, and a blank value is no value: nothing meets it — write the value a "
        "lead's custom_attributes.signed_up has once they convert, or use operator: is_set (without `value`)",
        "the rule compares text without the spaces around it: no lead qualifies"),
    "a value beside is_set, which compares none": (
        qualifying_settings(operator="is_set", value="Yes", initial_value=None),
        "qualification.value: 'Yes' is not compared: operator is_set takes no value (it meets whatever "
        "custom_attributes.signed_up holds, on a true/false attribute true) — remove `value`, or use operator: "
        "equals to meet 'Yes' only",
        "the rule ignores the value: a lead qualifies once their contact holds any value there, not only the one "
        "written"),
    "a rule watching the bridge's own marker": (
        qualifying_settings(attribute="custom_attributes.rf_person", operator="is_set", value=None,
                            initial_value=None),
        "qualification.attribute: custom_attributes.rf_person is the bridge's own marker, which the bridge writes "
        "itself when it creates a contact (the RF person it is for), never a conversion — watch the attribute your "
        "app or team sets when a lead converts",
        "the bridge sets it when it creates a contact, whatever the lead does: the rule qualifies leads as their "
        "contacts are created (without require_change), or never"),
    "a rule watching the avatar, an object on a contact": (
        qualifying_settings(attribute="avatar", operator="is_set", value=None, initial_value=None),
        "qualification.attribute: avatar is an object on a contact ({type, image_url}), written as text (its URL), and "
        "a rule compares a contact's value as it is: no value meets it as meant — watch another attribute (one your "
        "app or team sets when a lead converts)",
        "no lead qualifies by the rule (or, with is_set, every lead whose contact carries the object at all)"),
    "a mapping to an attribute Intercom's API does not write": (
        lead_settings(fields=[{"from": "email", "to": "email"}, {"value": "fr", "to": "language_override"}]),
        "leads.fields[1].to: language_override cannot be written: Intercom's contact create and update requests have "
        "no such field (its API does not write it), so each value would be lost — write a custom attribute "
        "(custom_attributes.<name>) instead, or remove it",
        "Intercom keeps no value sent there: each join records the field as not written (its history: fields not "
        "written)"),
}


@pytest.mark.parametrize("case", NEVER_WORKS)
def test_settings_that_can_never_work_are_refused_and_doctor_names_them_in_settings_stored_before(
        bridge, rf, tmp_path, capsys, case):
    doc, line, why = NEVER_WORKS[case]
    path = write(tmp_path, yaml.safe_dump(doc))
    for argv in (["check", path], ["apply", path], ["apply", "--offline", path]):
        assert run_cli(bridge.operator(), capsys, "settings", *argv) == (2, "", f"settings are invalid:\n  - {line}\n")
    assert run_cli(bridge.operator(), capsys, "settings", "show", "42")[0] == 1
    bridge.rt.store.settings.put("42", doc, WORKSPACE)              # stored before the check refused them
    assert bridge.post_join(join_body(new_lead(rf))).status_code == 202    # the campaign still reads
    [found] = [f for f in bad(doctor(bridge, capsys)[1], "settings") if f["check"] == "settings"]
    assert (f"{found['what']} — {found['fix']}", found["why"]) == (line, why)


def test_the_sync_block_is_checked_by_apply_and_doctor_as_the_dry_run_checks_it(bridge, intercom, tmp_path, capsys):
    doc = {**lead_settings(), "sync": {
        "source": "segment", "segment_id": "nope",
        "fields": [{"from": "email", "to": "email"}, {"from": "name", "to": "first_name"},
                   {"from": "custom_attributes.plan", "to": "meta.plan"}],
        "referral_link_attribute": "custom_attributes.score"}}
    code, _, err = run_cli(bridge.operator(), capsys, "settings", "apply", write(tmp_path, yaml.safe_dump(doc)))
    refused = [line.removeprefix("  - ") for line in err.splitlines()[1:]]
    assert code == 2 and [p.split(":")[0] for p in refused] == [
        "sync.segment_id", "sync.referral_link_attribute", "sync.fields"]
    assert "custom_attributes.score is of type float, not a text attribute" in refused[1]
    assert "custom_attributes.plan (mapped to meta.plan) does not exist in workspace vne310wv" in refused[2]
    apply_offline(bridge, doc)
    reported = [f"{f['what']} — {f['fix']}" for f in bad(doctor(bridge, capsys)[1], "settings.workspace")]
    assert reported == refused
    code, _, err = run_cli(bridge.operator(), capsys, "sync", "start", "42", "--dry-run")
    assert code == 1 and [line.removeprefix("  - ") for line in err.splitlines()[1:]] == refused


def test_a_key_given_twice_is_refused_with_the_key_and_its_line(bridge, tmp_path, capsys):
    text = yaml.safe_dump(lead_settings(), sort_keys=False) + "leads:\n  action: nothing\n"
    path = write(tmp_path, text)
    first = text.splitlines().index("leads:") + 1
    last = len(text.splitlines()) - 1
    expected = (f"settings are invalid:\n  - line {last}: the key 'leads' is given twice (first on line {first}) — "
                "keep one: YAML would silently use the last\n")
    for argv in (["settings", "check", path], ["settings", "apply", path]):
        assert run_cli(bridge.operator(), capsys, *argv)[::2] == (2, expected)
    assert run_cli(bridge.operator(), capsys, "settings", "show", "42")[0] == 1


def refused(bridge, capsys, tmp_path, command: str, doc: dict) -> list[str]:
    """`bridge settings <command>` refuses the document: its problems, one a line, in order."""
    code, _, err = run_cli(bridge.operator(), capsys, "settings", command, write(tmp_path, yaml.safe_dump(doc)))
    head, *lines = err.splitlines()
    assert code == 2 and head == "settings are invalid:" and err.endswith("\n")
    assert all(line.startswith("  - ") for line in lines)
    return [line[4:] for line in lines]


def test_the_readmes_invalid_settings_example_is_what_apply_answers(bridge, tmp_path, capsys):
    """docs/setup.md, Settings: "Invalid settings are refused, with one line per problem" — every problem at once."""
    doc = qualifying_settings(value=True)
    doc["leads"]["fields"] += [{"from": "meta.score", "to": "custom_attributes.scor"},
                               {"value": "ten", "to": "custom_attributes.score"}]
    assert refused(bridge, capsys, tmp_path, "apply", doc) == [
        "leads.fields[4].to: custom_attributes.scor does not exist in workspace vne310wv — create it in "
        "Intercom (Settings > Data > People) or fix the name",
        "leads.fields[5].value: 'ten' is not a number — change the value or the attribute",
        YES_FIX]
    doc = {**lead_settings(), "campaign_id": "4 2"}
    doc["leads"]["fields"] = [{"from": "first_name", "to": "name"}, {"from": "code", "to": "name"}]
    assert refused(bridge, capsys, tmp_path, "check", doc) == [
        "campaign_id: '4 2' is not an id a webhook can carry — write the id exactly as Referral Factory / "
        "Intercom show it: a number, or text of letters, digits, '-' and '_' (at most 128)",
        "leads: 'name' is mapped twice — map each Intercom attribute at most once",
        "leads: email is not mapped — add {from: email, to: email} to fields (Intercom needs an email)"]


def test_what_settings_show_prints_can_be_edited_and_applied_again(bridge, tmp_path, capsys):
    assert run_cli(bridge.operator(), capsys, "settings", "apply",
                   write(tmp_path, yaml.safe_dump(qualifying_settings())))[0] == 0
    code, out, _ = run_cli(bridge.operator(), capsys, "settings", "show", "42")
    shown = json.loads(out)
    assert code == 0 and shown["version"] == 1
    shown["settings"]["qualification"]["value"] = "Done"
    path = write(tmp_path, json.dumps(shown), name="shown.json")
    assert run_cli(bridge.operator(), capsys, "settings", "check", path)[:2] == (0, "settings are valid\n")
    assert run_cli(bridge.operator(), capsys, "settings", "apply", path)[0] == 0
    again = json.loads(run_cli(bridge.operator(), capsys, "settings", "show", "42")[1])
    assert again["version"] == 2 and again["settings"]["qualification"]["value"] == "Done"


def test_an_unquoted_id_yaml_reads_as_another_number_is_refused_and_never_overwrites_that_campaign(
        bridge, tmp_path, capsys):
    """The walkthrough's 042 was stored as campaign 34; 0x2A, 42.0 and +42 overwrote campaign 42."""
    bridge.apply(lead_settings())
    for written, read in (("042", "34"), ("0x2A", "42"), ("4:20", "260"), ("1_000", "1000"), ("42.0", "42.0"),
                          ("+42", "42")):
        path = write(tmp_path, f"campaign_id: {written}\nworkspace: vne310wv\nleads: {{action: nothing}}\n"
                               "referrers: {action: nothing}\n")
        for argv in (["settings", "check", path], ["settings", "apply", "--offline", path]):
            assert run_cli(bridge.operator(), capsys, *argv) == (2, "", (
                f'settings are invalid:\n  - line 1: campaign_id: {written} is read by YAML as the number {read}, '
                f'not the text "{written}" — write the id exactly as Referral Factory shows it, quoted: '
                f'campaign_id: "{written}"\n'))
    code, out, _ = run_cli(bridge.operator(), capsys, "settings", "show", "42")
    assert code == 0 and json.loads(out)["version"] == 1 and json.loads(out)["settings"]["leads"]["action"] == \
        "create_lead"
    assert [run_cli(bridge.operator(), capsys, "settings", "show", other)[0]
            for other in ("34", "260", "1000")] == [1, 1, 1]


def test_apply_offline_warns_that_the_attributes_were_not_checked(bridge, tmp_path, capsys):
    path = write(tmp_path, yaml.safe_dump(lead_settings()))
    warning = ("--offline: workspace vne310wv's attributes were not checked — `bridge doctor 42` checks them (or "
               "apply again without --offline)")
    code, out, err = run_cli(bridge.operator(), capsys, "settings", "apply", "--offline", path)
    assert (code, err, json.loads(out)) == (0, f"warning: {warning}\n", {"campaign_id": "42", "version": 1})
    code, out, err = run_cli(bridge.operator(), capsys, "settings", "apply", "--offline", "--json", path)
    assert (code, err, json.loads(out)) == (0, "", {"campaign_id": "42", "version": 2, "warnings": [warning]})


def test_a_file_that_is_not_yaml_is_refused_in_one_line(bridge, tmp_path, capsys):
    path = write(tmp_path, "campaign_id: '42'\nleads:\n  action: nothing\n  tag: x: y\n")
    for argv in (["settings", "check", path], ["settings", "apply", path]):
        assert run_cli(bridge.operator(), capsys, *argv) == (
            2, "", "settings are invalid:\n  - (document): not valid YAML or JSON "
                   "— line 4, column 9: mapping values are not allowed here\n")


def test_deleting_settings_counts_failed_joins_apart_from_linked_people(bridge, capsys):
    from chalicelib.domain.link import JoinResult, LinkStatus, PersonRef
    bridge.apply(lead_settings())
    for user, status in (("1", LinkStatus.LINKED), ("2", LinkStatus.FAILED), ("3", LinkStatus.FAILED)):
        claim = bridge.rt.store.links.claim(PersonRef("42", user), "vne310wv")
        bridge.rt.store.links.finish(claim, JoinResult(status, reason="Intercom said 500"), [])
    code, _, err = run_cli(bridge.operator(), capsys, "settings", "delete", "42")
    assert code == 1 and err.startswith("bridge: campaign 42 has 1 linked person and 2 failed joins that linked "
                                        "nobody: once its settings are deleted")


def test_an_attribute_named_by_its_label_is_refused_with_the_name_it_has(bridge, tmp_path, capsys):
    """Intercom's UI (and the hosted integration's dropdown) shows an attribute's label, "Signed up"; the settings
    name it, `custom_attributes.signed_up`. An attribute that does not exist but whose words are another's label or
    name is refused naming that attribute."""
    doc = qualifying_settings(attribute="custom_attributes.Signed up")
    doc["leads"]["fields"][2] = {"from": "code", "to": "custom_attributes.referral-code"}
    doc["sync"] = {"fields": [{"from": "email", "to": "email"}, {"from": "custom_attributes.Lead source",
                                                                "to": "first_name"}],
                   "referral_link_attribute": "custom_attributes.ReferralLink"}
    code, _, err = run_cli(bridge.operator(), capsys, "settings", "apply", write(tmp_path, yaml.safe_dump(doc)))
    assert (code, err) == (2, (
        "settings are invalid:\n"
        "  - leads.fields[2].to: custom_attributes.referral-code does not exist in workspace vne310wv — did you mean "
        "custom_attributes.referral_code (labelled 'Referral code' in Intercom)? The settings name an attribute by its "
        "name, not its label; else create it in Intercom (Settings > Data > People) or fix the name\n"
        "  - qualification.attribute: custom_attributes.Signed up does not exist in workspace vne310wv — did you mean "
        "custom_attributes.signed_up (labelled 'Signed up' in Intercom)? The settings name an attribute by its name, "
        "not its label; else create it in Intercom or fix the name\n"
        "  - sync.referral_link_attribute: custom_attributes.ReferralLink does not exist in workspace vne310wv — did "
        "you mean custom_attributes.referral_link (labelled 'Referral link' in Intercom)? The settings name an "
        "attribute by its name, not its label; else create it as a Text attribute in Intercom (Settings > Data > "
        "People) or fix the name\n"
        "  - sync.fields: custom_attributes.Lead source (mapped to first_name) does not exist in workspace vne310wv — "
        "did you mean custom_attributes.lead_source (labelled 'Lead source' in Intercom)? The settings name an "
        "attribute by its name, not its label; else map an existing attribute\n"))
