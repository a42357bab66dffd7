"""Issue 10, "Must show": every problem of the hosted integration's troubleshooting page (16) and FAQ (4)
that can happen here — minus the 4 about contact sync (issue 11) — has a test. Each sets up the cause
in the simulators (or at the edge, as a misconfigured sender would) and shows that `bridge doctor` or
`bridge explain` names it with its fix. docs/operating.md's troubleshooting table points at these answers.

What is impossible here by design is said in the test that meets it (e.g. settings without an email
mapping, an attribute mapped twice or an unsupported type are refused when applied)."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from chalicelib.cli import main

from tests.fakes import refused
from tests.support.cli import replays_advised, run_cli

from .conftest import SECRET, WORKSPACE, join_body, lead_settings, new_lead, qualifying_settings
from .test_edge_cases import join


# --- the two commands, as an operator runs them (a fresh CLI runtime each time) ---------------------
def doctor(bridge, capsys, campaign="42") -> tuple[int, dict]:
    code, out = doctor_text(bridge, capsys, campaign, "--json")
    return code, json.loads(out)


def doctor_text(bridge, capsys, campaign="42", *options: str) -> tuple[int, str]:
    return run_cli(bridge.operator(), capsys, "doctor", str(campaign), *options)[:2]


def bad(report: dict, check: str) -> list[dict]:
    return [f for f in report["findings"] if not f["ok"] and (check in ("", f["check"]) or
                                                             f["check"].startswith(check + "."))]


def explain(bridge, capsys, who) -> tuple[int, dict]:
    code, out, _ = run_cli(bridge.operator(), capsys, "explain", str(who), "--json")
    return code, json.loads(out)


def entries(found: dict, event: str, outcome: str | None = None) -> list[dict]:
    return [e for e in found["trail"] if e["event"].startswith(event) and outcome in (None, e["outcome"])]


def apply_offline(bridge, doc: dict) -> None:
    """Settings stored without the live check (`settings apply --offline`), or valid when applied and
    broken since in Intercom."""
    from chalicelib.services.admin import apply_settings
    apply_settings(bridge.rt, yaml.safe_dump(doc), check_workspace=False)


# ===================================================================================================
# 1. Connection problems
# ===================================================================================================
def test_connection_fails_doctor_names_a_revoked_token_and_an_unconnected_workspace(bridge, intercom, capsys):
    """"You cannot connect your Intercom account ... or the connection fails." Here a token is checked
    with GET /me; a revoked one, and a campaign whose workspace was never connected, are named."""
    bridge.apply(lead_settings())
    intercom.revoke("sim-token")
    code, report = doctor(bridge, capsys)
    assert code == 1
    [token] = bad(report, "intercom.token")
    assert "refused the token of workspace vne310wv" in token["what"]
    assert token["fix"] == ("`bridge workspace connect vne310wv` (it asks for the new token); what waits for it then "
                            "goes on by itself, with no replay")
    assert token["what"] == ("Intercom refused the token of workspace vne310wv: Intercom answered 401 unauthorized: "
                             "Access Token Invalid")             # (not the dead letter's replay: nothing is dead yet)

    apply_offline(bridge, {**lead_settings(), "campaign_id": "43", "workspace": "otherws"})
    code, report = doctor(bridge, capsys, 43)
    [conn] = bad(report, "intercom.connection")
    assert conn["what"] == "workspace otherws is not connected" and conn["fix"] == (
        "`bridge workspace connect otherws` (it asks for the token and the client secret), then `bridge dlq replay`")


RF_REFUSES = {"its token revoked (401)": lambda rf: rf.use_token("rf-token-2"),
              "its IP block (403)": lambda rf: rf.fail_next("*", ".*", 403, body={"message": "IP blocked"},
                                                              times=10**6)}


@pytest.mark.parametrize("refusal", RF_REFUSES)
def test_every_replay_advised_for_rfs_refusal_takes_back_the_letters_the_refusal_made(bridge, intercom, rf, capsys,
                                                                                      refusal):
    """RF refuses the bridge (after a lead joined): a notification's qualification and a join that asks RF for a
    field fail. Doctor, `dlq list` and explain each advise the replay; run as advised, it must take back every
    letter the refusal made, the notification's (which names no campaign) too. RF's 403 is its block of the IP:
    the work waits, nothing is dead-lettered, and nothing advises a replay of letters that do not exist."""
    lead, contact = join(bridge, intercom, rf)
    RF_REFUSES[refusal](rf)
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", contact["id"])
    other = new_lead(rf, email="bob@example.com", first_name="Bob")
    bridge.post_join({k: v for k, v in join_body(other).items() if k != "code"})   # RF is asked for the code
    bridge.drain()
    code, out, _ = run_cli(bridge.operator(), capsys, "dlq", "list", "--json")
    letters = json.loads(out)["dead_letters"]
    advice = [doctor(bridge, capsys)[1]["findings"], letters,
              *(explain(bridge, capsys, who)[1] for who in (lead["id"], other["id"]))]
    selectors = replays_advised(*advice)
    if refusal.endswith("(403)"):
        assert letters == [] and selectors == [], selectors
        [blocked] = bad(doctor(bridge, capsys)[1], "rf.campaign")
        assert blocked["fix"].startswith("ask Referral Factory's support to lift the block"), blocked
        return
    assert {d["kind"] for d in letters} == {"intercom.contact", "rf.join"}, letters
    assert len(selectors) >= 4 and set(selectors) == {"Referral Factory answered 401"}, selectors
    code, out, _ = run_cli(bridge.operator(), capsys, "dlq", "replay", "--reason", selectors[0], "--json")
    assert (code, json.loads(out)["replayed"]) == (0, len(letters)), out
    assert bridge.dead_letters() == []


def test_a_revoked_rf_tokens_advice_is_said_once_beside_each_reason_in_dlq_list_doctor_and_explain(bridge, intercom,
                                                                                                    rf, capsys):
    """Walkthrough: RF's token revoked, a lead's qualification dead-lettered. Its reason is RF's answer, then the one
    fix (advice.rf_token_reason); `dlq list`, doctor's [dead_letters] and explain printed that reason and, beside
    it, the same fix again as `fix:`. Each says the answer beside the fix once; `--json` keeps the stored reason."""
    from chalicelib.domain.advice import rf_token_fix
    lead, contact = join(bridge, intercom, rf)
    rf.use_token("rf-token-2")
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    code, out, _ = run_cli(bridge.operator(), capsys, "dlq", "list", "--json")
    assert [d["reason"].count(rf_token_fix()) for d in json.loads(out)["dead_letters"]] == [1], out
    said = {"dlq list": run_cli(bridge.operator(), capsys, "dlq", "list")[1], "doctor": doctor_text(bridge, capsys)[1],
            "explain": run_cli(bridge.operator(), capsys, "explain", str(lead["id"]))[1]}
    # The fix once each where it is given: `dlq list`'s by reason (the stored reason, as `--reason` matches it) and
    # its letter's fix; doctor's [rf.campaign] and [dead_letters]; explain's person (no fix beside it) and its two.
    assert {k: text.count(rf_token_fix()) for k, text in said.items()} == {"dlq list": 2, "doctor": 2, "explain": 3}
    answer = "Referral Factory answered 401: Unauthenticated."
    assert [line for line in said["dlq list"].splitlines() if re.match(" {4}\\S", line)] == [
        f"    {answer}", f"    fix: {rf_token_fix()}"], said["dlq list"]
    assert f"[dead_letters] 1 dead letter(s) name no campaign (Intercom notifications): {answer}\n" in said["doctor"]
    assert re.findall(r"(\w+): failed — (.*?)(?:  |$)", said["explain"], re.M) == [
        ("qualification", answer), ("dead_letter", answer)], said["explain"]


@pytest.mark.parametrize("headers", [{}, {"Retry-After": "soon"}], ids=["no Retry-After", "an unreadable Retry-After"])
def test_doctor_during_an_intercom_outage_says_so_at_once_without_the_workers_retries(bridge, intercom, capsys,
                                                                                       headers):
    """Walkthrough: `make fault ARGS="intercom 503 --for 120"`, then `time ./bridge doctor 42`: no output for
    ~25 s. Its `GET /me` had the worker's retries: 3, each waiting for Intercom's X-RateLimit-Reset (up to
    10 s). Doctor answers the operator now: a call retried once at most, no long wait, and the outage said.
    The waits it would make are counted here, not made (its sleeper), over real HTTP to the simulator.
    A Retry-After neither seconds nor a date is as none: it said "Intercom unreachable after retries
    (InvalidHeader)" of an Intercom that answered."""
    bridge.apply(lead_settings())
    intercom.fail_next("*", ".*", 503, headers=headers, times=10**6)   # every call, whatever it is
    rt = bridge.operator()
    slept: list[float] = []
    rt.sleeper = slept.append
    before = intercom.count("GET", "/me")
    code, out, _ = run_cli(rt, capsys, "doctor", "42")
    assert code == 1 and "BAD [intercom.token] Intercom is unavailable or limiting the bridge now" in out, out
    assert "could not be checked (Intercom answered 503)" in out, out     # no "next retry in 1s": doctor makes none
    assert intercom.count("GET", "/me") - before <= 2 and sum(slept) <= 0.5, slept


def test_explain_of_a_contact_id_during_an_intercom_outage_says_so_at_once_without_the_workers_retries(bridge, intercom,
                                                                                                    capsys):
    """`bridge explain <contact id>` of a contact no link names asks Intercom about it (a duplicate's email): during
    an outage it made that call with the worker's retries and waits (4 GETs, seconds of backoff each workspace),
    where doctor answers at once. It says Intercom could not be asked, as quickly as doctor says the outage."""
    bridge.apply(lead_settings())
    intercom.fail_next("*", ".*", 503, times=10**6)
    rt = bridge.operator()
    slept: list[float] = []
    rt.sleeper = slept.append
    contact = "65f0c0ffee0000000000beef"
    code, out, _ = run_cli(rt, capsys, "explain", contact)
    assert code == 1 and out.startswith(f"Intercom could not be asked about contact {contact} (workspace "), out
    assert intercom.count("GET", f"/contacts/{contact}") <= 2 and sum(slept) <= 0.5, slept


def test_doctor_masks_the_emails_a_vendors_refusal_quotes_in_text_and_json(bridge, intercom, rf, capsys):
    """Intercom's and RF's error texts may name someone by email: [intercom.token] and [rf.campaign] printed them
    as the vendor wrote them, where doctor masks them in its dead letters' reasons."""
    bridge.apply(lead_settings())
    intercom.fail_next("GET", "^/me$", 401, times=2, body=intercom.error_body(
        401, "Access Token revoked by Owen.Admin@acme.example", "unauthorized"))
    rf.fail_next("GET", "^/campaigns/42$", 404, times=2, body={"code": 404, "message": "No campaign 42 for "
                                                                                     "rex@rf-account.example"})
    code, text = doctor_text(bridge, capsys)
    _, report = doctor(bridge, capsys)
    assert "O***@acme.example" in bad(report, "intercom.token")[0]["what"], report
    assert "r***@rf-account.example" in bad(report, "rf.campaign")[0]["what"], report
    for said in (text, json.dumps(report)):
        assert "Owen.Admin@" not in said and "rex@" not in said, said


def test_doctor_names_the_missing_secrets_and_advises_commands_that_ask_for_them(bridge, capsys):
    """No fix tells the operator to type a secret on a command line (it would stay in the history)."""
    from chalicelib.adapters.dynamo.catalog import ConnectionItem, RFConfigItem
    from chalicelib.adapters.dynamo.keys import RF_KEY, connection_key
    bridge.apply(lead_settings())
    RFConfigItem(*RF_KEY).delete()                                           # RF never connected
    ConnectionItem(*connection_key("vne310wv")).update(actions=[ConnectionItem.secrets.delete({"client-secret"})])
    code, report = doctor(bridge, capsys)
    fixes = {f["check"]: f["fix"] for f in bad(report, "")}
    assert code == 1 and {k: fixes[k] for k in ("rf.webhook_secret", "rf.connection", "intercom.client_secret")} == {
        "rf.webhook_secret": "`bridge rf connect` (it asks for the webhook secret)",
        "rf.connection": "`bridge rf connect` (it asks for the token)",
        "intercom.client_secret": "`bridge workspace connect vne310wv` (Enter keeps the token; then it asks for the "
                                  "app's client secret)"}


# ===================================================================================================
# 2. Referred users (the person invited)
# ===================================================================================================
def test_no_referred_users_sent_the_joins_refused_for_a_wrong_secret_are_counted_and_named(bridge, rf, capsys):
    """"No referred users are being sent." Mapping Name/Email or an unsupported type cannot be the cause
    here (settings without an email are refused; dates and decimals convert). The silent cause left is
    the webhook refused at the edge: RF sends the wrong header value."""
    bridge.apply(lead_settings())
    leads = [new_lead(rf, email=f"l{i}@example.com") for i in range(3)]
    for lead in leads:
        assert bridge.post_join(join_body(lead), secret="not-the-secret").status_code == 401
    code, report = doctor(bridge, capsys)
    assert code == 1
    [refused] = bad(report, "webhooks.rf_refused")
    assert refused["what"].startswith("3 join(s) refused (unauthorized: RF's webhook sends a wrong or no "
                                      "X-Bridge-Secret header)")
    assert "X-Bridge-Secret" in refused["fix"]
    assert refused["fix"].endswith("then `bridge backfill 42` (dry run), then `--apply`"), refused["fix"]
    [quiet] = bad(report, "webhooks.rf")
    assert quiet["what"] == "no join of campaign 42 was ever received"
    assert quiet["fix"].endswith("then `bridge backfill 42` (dry run), then `--apply`"), quiet["fix"]  # (advice.BACKFILL)
    # explain, for one of them, by email or RF id: the refusal is in their trail. A body without the
    # secret names whoever its sender likes: its email and id are kept as digests only, never readable.
    samples = bridge.rt.store.edge.refusals("campaign:42").samples
    assert len(samples) == 3 and all(s.rf_user_digest and s.email_digest and not (s.rf_user_id or s.email_hash
                                                                                   or s.email_masked) for s in samples)
    code, found = explain(bridge, capsys, leads[0]["email"])
    assert code == 0
    [shown] = entries(found, "webhook_refused")
    assert shown["outcome"] == "unauthorized" and shown["rf_user_id"] is None
    assert "X-Bridge-Secret" in shown["fix"] and "l0@example.com" not in json.dumps(found)
    [shown] = entries(explain(bridge, capsys, str(leads[0]["id"]))[1], "webhook_refused")
    assert shown["outcome"] == "unauthorized" and shown["rf_user_id"] == str(leads[0]["id"])


def test_no_referred_users_sent_rfs_webhook_missing_doctor_sees_rfs_newest_person_never_arrived(bridge, rf, clock,
                                                                                                 capsys):
    """The same problem when nothing reaches the edge at all (no webhook in RF, or one filtered by
    source): RF's newest person is not in the bridge minutes after joining."""
    bridge.apply(lead_settings())
    lead = new_lead(rf, email="quiet@example.com")
    clock.sleep(600)
    code, report = doctor(bridge, capsys)
    [missing] = bad(report, "webhooks.rf_missing")
    assert missing["what"].startswith(f"the newest person in RF's campaign 42 (RF user {lead['id']}, joined ")
    assert missing["fix"].endswith("then `bridge backfill 42` (dry run), then `--apply`"), missing["fix"]


def test_some_referred_users_not_sent_those_who_joined_before_the_settings_are_named_with_backfill(bridge, rf,
                                                                                                  capsys):
    """"Some but not all are sent: the user joined before the settings were set up (not retroactive)."
    The early joins were refused as unknown_campaign; doctor counts them and points at backfill."""
    early = new_lead(rf, email="early@example.com")
    assert bridge.post_join(join_body(early)).status_code == 404
    bridge.apply(lead_settings())
    code, report = doctor(bridge, capsys)
    [before] = bad(report, "webhooks.before_settings")
    assert before["what"].startswith("1 join(s) for campaign 42 were refused as unknown_campaign")
    assert before["fix"] == "`bridge backfill 42` (dry run), then `--apply`"
    code, found = explain(bridge, capsys, early["id"])
    [shown] = entries(found, "webhook_refused", "unknown_campaign")
    assert shown["fix"].endswith("then `bridge backfill 42` (dry run), then `--apply`"), shown["fix"]   # as doctor's


def test_referred_users_sent_but_an_attribute_not_updated_explain_names_the_field_and_the_limit(bridge, rf,
                                                                                               intercom, capsys):
    """"Sent, but one or more attributes are not updated": validation rules or character limits.
    The contact is created with the other fields; the one that could not be written is recorded."""
    bridge.apply(lead_settings())
    lead = new_lead(rf, email="long@example.com")
    bridge.post_join({**join_body(lead), "code": "x" * 300})
    bridge.drain()
    [contact] = intercom.contacts_by_email("long@example.com")
    assert "referral_code" not in contact["custom_attributes"]
    code, found = explain(bridge, capsys, "long@example.com")
    [field] = entries(found, "fields", "not_written")
    [error] = field["details"]["errors"]
    assert error["to"] == "custom_attributes.referral_code" and "255" in error["reason"]
    assert "255 characters" in field["fix"]


def test_referred_users_sent_but_an_attribute_not_updated_doctor_counts_them_and_names_whom_to_explain(bridge, rf,
                                                                                                     capsys):
    """The same, for an operator with many leads who does not know whom to explain: doctor counts the
    campaign's joins applied without a field, per attribute and kind, with a few people (masked); forget
    erases the sample that names the person."""
    bridge.apply(lead_settings())
    lead = new_lead(rf, email="long@example.com")
    bridge.post_join({**join_body(lead), "code": "x" * 300})
    bridge.drain()
    code, report = doctor(bridge, capsys)
    [field] = [f for f in report["findings"] if f["check"] == "fields.not_written"]
    assert field["ok"] and field["warn"] and report["warning_count"] >= 1 and "warnings" not in report
    assert field["what"].startswith("1 join(s) applied without custom_attributes.referral_code (text too long, "
                                    "from code) at ")
    assert field["what"].endswith(f"— e.g. l***@example.com (RF user {lead['id']})")
    assert f"`bridge explain {lead['id']}` lists each person's fields not written" in field["fix"]
    code, text = doctor_text(bridge, capsys)
    assert "  warn [fields.not_written] 1 join(s) applied without custom_attributes.referral_code" in text
    assert main(["forget", "long@example.com"], rt=bridge.operator()) == 0
    assert json.loads(capsys.readouterr().out)["field_error_samples"] == 1
    code, report = doctor(bridge, capsys)
    [field] = [f for f in report["findings"] if f["check"] == "fields.not_written"]      # the count stays, nobody named
    assert field["what"].startswith("1 join(s) applied without") and "e.g." not in field["what"]


def test_referred_users_not_updating_in_intercom_explain_names_duplicates_skip_and_its_fix(bridge, rf, intercom,
                                                                                         capsys):
    """"Referred users are not updating in Intercom": the duplicates option is skip."""
    bridge.apply(lead_settings(duplicates="skip"))
    existing = intercom.add_contact("known@example.com", role="user", name="Known")
    lead = new_lead(rf, email="known@example.com")
    bridge.post_join(join_body(lead))
    bridge.drain()
    code, found = explain(bridge, capsys, existing["id"])
    [skipped] = entries(found, "contact", "skipped_existing")
    assert "duplicates is skip, so it was left untouched" in skipped["reason"]
    # what the settings asked for: nothing to fix, a hint of the setting that changes it
    assert "fix" not in skipped and skipped["hint"].startswith(
        "to write the mapped attributes to existing contacts too, set `leads.duplicates: update`")
    capsys.readouterr()
    assert main(["explain", existing["id"]], rt=bridge.operator()) == 0
    text = capsys.readouterr().out
    assert "hint: to write the mapped attributes" in text and "fix:" not in text


@pytest.mark.parametrize("had", [{}, {"referral_code": "theirs", "lead_source": "theirs"}],
                         ids=["some fields written", "every field kept"])
def test_referred_users_not_updating_under_duplicates_update_explain_names_overwrite_for_the_values_kept(
        bridge, rf, intercom, capsys, had):
    """"Referred users are not updating in Intercom" although duplicates is update (the hosted integration's
    update writes every mapped field over the contact's): the values the contact had are kept, and explain says
    which setting replaces them."""
    bridge.apply(lead_settings())
    existing = intercom.add_contact("known@example.com", role="user", name="Known", custom_attributes=had)
    lead = new_lead(rf, email="known@example.com")
    bridge.post_join(join_body(lead))
    bridge.drain()
    assert intercom.get(existing["id"])["name"] == "Known"
    code, found = explain(bridge, capsys, lead["id"])
    [updated] = entries(found, "contact", "updated_existing")
    assert updated["details"]["kept"] == sorted(["name", *(f"custom_attributes.{k}" for k in had)])
    assert "fix" not in updated
    assert updated["hint"] == ("to replace the values an existing contact already has, add `overwrite: true` to their "
                               "rows of `leads.fields` and apply the settings")


# ===================================================================================================
# 3. Direct users (the person referring)
# ===================================================================================================
def test_no_direct_users_sent_the_webhook_secret_is_not_set_and_the_refusals_are_named(bridge, rf, clock, capsys):
    """"No direct users are being sent": here, the bridge has no RF webhook secret (e.g. never
    connected), so every join is refused with 503 not_configured."""
    from chalicelib.ports.secrets import EDGE, RF_WEBHOOK_SECRET
    bridge.apply(lead_settings())
    bridge.rt.secrets.scoped(EDGE).delete(RF_WEBHOOK_SECRET)
    clock.sleep(61)                                      # the edge's cached secret runs out
    referrer = rf.add_user(42, "rita@example.com", "Rita")
    assert bridge.post_join(join_body(referrer)).status_code == 503
    code, report = doctor(bridge, capsys)
    [refused] = bad(report, "webhooks.rf_refused")
    assert "not_configured" in refused["what"] and refused["fix"].startswith(
        "`bridge rf connect` (it asks for the webhook secret)")
    code, found = explain(bridge, capsys, referrer["id"])
    [shown] = entries(found, "webhook_refused", "not_configured")
    assert shown["fix"].startswith("`bridge rf connect` (it asks for the webhook secret)")


def test_some_direct_users_not_sent_a_referrer_without_email_is_a_named_dead_letter(bridge, rf, capsys):
    """"Some but not all direct users are sent": here, one has no email in RF (Intercom needs one):
    the join fails, is dead-lettered with its reason, and doctor counts the campaign's dead letters."""
    bridge.apply(lead_settings())
    ok, nomail = rf.add_user(42, "rita@example.com", "Rita"), rf.add_user(42, "", "Nomail")
    bridge.post_join(join_body(ok))
    bridge.post_join({**join_body(nomail), "email": None})
    bridge.drain()
    code, report = doctor(bridge, capsys)
    [dead] = bad(report, "dead_letters")
    assert dead["what"].startswith("1 dead letter(s) of campaign 42:") and "has no email" in dead["what"]
    assert dead["fix"].endswith("`bridge dlq replay --campaign 42` (see `bridge dlq list`)")
    code, found = explain(bridge, capsys, nomail["id"])
    assert entries(found, "join", "failed") and "bridge dlq replay --campaign 42" in entries(found, "join")[-1]["fix"]


def test_direct_users_sent_but_an_attribute_not_updated_explain_names_the_unconvertible_value(bridge, rf, intercom,
                                                                                           capsys):
    """"Sent, but one or more attributes are not updated" (unsupported types, validation): the
    referrer's custom field does not fit the float attribute; it is recorded, the rest is written."""
    settings = lead_settings()
    settings["referrers"]["fields"].append({"from": "meta.score", "to": "custom_attributes.score"})
    bridge.apply(settings)
    referrer = rf.add_user(42, "rita@example.com", "Rita", meta=[{"field": "score", "value": "lots"}])
    bridge.post_join({**join_body(referrer), "meta": {"score": "lots"}})
    bridge.drain()
    [contact] = intercom.contacts_by_email("rita@example.com")
    assert contact["custom_attributes"]["referral_link"] == referrer["url"]
    code, found = explain(bridge, capsys, "rita@example.com")
    [field] = entries(found, "fields", "not_written")
    assert field["details"]["errors"][0]["to"] == "custom_attributes.score"


def test_explain_in_text_shows_every_field_error_whole(bridge, rf, intercom, capsys):
    """Two fields not written, each with a long reason: the text shows both, in full, one a line."""
    settings = lead_settings()
    settings["referrers"]["fields"].append({"from": "meta.score", "to": "custom_attributes.score"})
    settings["referrers"]["fields"].append({"from": "meta.bio", "to": "custom_attributes.lead_source"})
    bridge.apply(settings)
    referrer = rf.add_user(42, "rita@example.com", "Rita")
    bridge.post_join({**join_body(referrer), "meta": {"score": "lots", "bio": "b" * 300}})
    bridge.drain()
    code, found = explain(bridge, capsys, "rita@example.com")
    [field] = entries(found, "fields", "not_written")
    errors = {e["to"]: e for e in field["details"]["errors"]}
    assert set(errors) == {"custom_attributes.score", "custom_attributes.lead_source"}
    assert len(json.dumps(field["details"])) > 120 and "255" in errors["custom_attributes.lead_source"]["reason"]
    capsys.readouterr()
    assert main(["explain", "rita@example.com"], rt=bridge.operator()) == 0
    lines = capsys.readouterr().out.splitlines()
    for to, error in errors.items():
        [line] = [x for x in lines if x.strip().startswith(f"- {to} ")]
        assert line.strip() == f"- {to} ({error['source']}): {error['reason']}"


def test_direct_users_not_updating_in_intercom_explain_names_referrers_duplicates_skip(bridge, rf, intercom, capsys):
    """"Direct users are not updating in Intercom": referrers.duplicates is skip."""
    bridge.apply(lead_settings())                         # referrers: duplicates skip
    intercom.add_contact("rita@example.com", role="user", name="Old Rita")
    referrer = rf.add_user(42, "rita@example.com", "Rita")
    bridge.post_join(join_body(referrer))
    bridge.drain()
    code, found = explain(bridge, capsys, referrer["id"])
    [skipped] = entries(found, "contact", "skipped_existing")
    assert "fix" not in skipped and "`referrers.duplicates: update`" in skipped["hint"]


# ===================================================================================================
# 4. Intercom data attributes unavailable
# ===================================================================================================
def test_a_mapped_attribute_not_available_doctor_names_it_missing_with_the_fix(bridge, intercom, capsys):
    """"A custom or default data attribute is not showing": here the attribute was archived in
    Intercom after the settings were applied (mapping one twice is refused when applying)."""
    bridge.apply(lead_settings())
    intercom.attributes["custom_attributes.lead_source"]["archived"] = True
    code, report = doctor(bridge, capsys)
    assert code == 1
    [archived] = bad(report, "settings.workspace")   # not "create it": Intercom refuses a name it already has
    assert archived["what"] == "leads.fields[3].to: custom_attributes.lead_source is archived in Intercom"
    assert archived["fix"] == "unarchive it or map another attribute"
    del intercom.attributes["custom_attributes.lead_source"]
    code, report = doctor(bridge, capsys)
    [missing] = bad(report, "settings.workspace")
    assert missing["what"] == "leads.fields[3].to: custom_attributes.lead_source does not exist in workspace vne310wv"
    assert missing["fix"] == "create it in Intercom (Settings > Data > People) or fix the name"


GONE = {"archived": lambda attributes: attributes["custom_attributes.lead_source"].update(archived=True),
        "deleted": lambda attributes: attributes.pop("custom_attributes.lead_source")}


@pytest.mark.parametrize("how", GONE)
def test_an_attribute_intercom_refuses_the_contact_is_still_created_with_the_other_fields_and_the_refusal_named(
        bridge, intercom, rf, counter, capsys, how):
    """"Sent, but one or more attributes are not updated": the mapped `lead_source` was archived (or deleted)
    in Intercom after the settings were applied. Intercom refuses the whole write naming it (400); the bridge
    writes the contact again without it, in the same try (one more call): the lead is linked, so it can
    qualify, and the history names the field Intercom refused and why, for explain and doctor."""
    bridge.apply(qualifying_settings())
    GONE[how](intercom.attributes)
    lead = new_lead(rf, email="amy@example.com", first_name="Amy")
    bridge.post_join(join_body(lead))
    with counter.measure() as counts:
        bridge.drain()

    [contact] = intercom.contacts_by_email("amy@example.com")
    assert contact["name"] == "Amy" and contact["role"] == "lead" and contact["custom_attributes"] == {
        "referral_code": lead["code"], "signed_up": "No", "rf_person": f"42#{lead['id']}"}
    assert len(intercom.contacts) == 1 and bridge.dead_letters() == []
    # the refused create, and the one without it: the only call more (the list, read at the apply, is this try's)
    assert sorted(counts.intercom_requests) == ["POST /contacts", "POST /contacts", "POST /contacts/search"]
    link = bridge.history(42, lead["id"])["link"]
    assert (link["status"], link["qualification"], link["contact_id"]) == ("linked", "pending", contact["id"])
    refusal = {"archived": "is archived", "deleted": "does not exist"}[how]
    code, found = explain(bridge, capsys, "amy@example.com")
    [field] = entries(found, "fields", "not_written")
    assert field["details"]["errors"] == [{"to": "custom_attributes.lead_source", "source": "fixed value", "reason":
                                           f"Intercom refused it: Custom attribute 'lead_source' {refusal}"}]
    # (a fixed value: the settings', not Referral Factory's)
    assert field["fix"].startswith("fix the attribute in Intercom") and "the fixed value in the settings" in \
        field["fix"] and "Referral Factory" not in field["fix"], field["fix"]
    code, report = doctor(bridge, capsys)
    [written] = [f for f in report["findings"] if f["check"] == "fields.not_written"]
    assert written["what"].startswith("1 join(s) applied without custom_attributes.lead_source (refused by Intercom, "
                                      "fixed value) at ")
    assert written["fix"].startswith(field["fix"] + "; "), (written["fix"], field["fix"])    # the same fix
    [missing] = bad(report, "settings.workspace")        # archived: not "create it", which Intercom would refuse
    assert missing["what"] == {
        "archived": "leads.fields[3].to: custom_attributes.lead_source is archived in Intercom",
        "deleted": "leads.fields[3].to: custom_attributes.lead_source does not exist in workspace vne310wv"}[how]
    assert missing["why"] == ("Intercom refuses it (400): each lead whose join writes it is created or updated "
                              "without it, said in its history (fields not written)")


def test_a_mapped_attribute_read_only_in_intercom_doctor_says_so_with_what_joins_do_without_it(bridge, intercom,
                                                                                              capsys):
    """A mapped attribute Intercom lists read-only: doctor says so, and that joins are applied without it (an
    archived one: the test above)."""
    bridge.apply(lead_settings())
    intercom.attributes["custom_attributes.lead_source"].update(archived=False, api_writable=False)
    code, found = doctor(bridge, capsys)
    [read_only] = bad(found, "settings.workspace")
    assert read_only["what"] == "leads.fields[3].to: custom_attributes.lead_source is read-only in Intercom"
    assert read_only["why"].endswith(": each lead whose join writes it is created or updated without it, said in "
                                     "its history (fields not written)") and code == 1


def test_an_email_an_archived_user_holds_doctor_and_explain_say_to_unarchive_it_then_replay(bridge, intercom, rf,
                                                                                         capsys):
    """Intercom shows an archived contact nowhere (search leaves it out, a read answers 404) and refuses a user
    over its email with its 409's "archived contact" variant: the join fails for that, said where the operator
    looks, and the replay after unarchiving links the contact (rather than "it no longer exists" for good)."""
    bridge.apply(lead_settings())
    archived = intercom.add_contact("rita@example.com", role="user")
    intercom.archive(archived["id"])
    rita = rf.add_user(42, "rita@example.com", "Rita")
    bridge.post_join(join_body(rita))
    bridge.drain()
    why = (f"contact {archived['id']} has this email and is archived in Intercom (its 409 on create): unarchive it "
           "in Intercom, then replay")
    assert [d["reason"] for d in bridge.dead_letters()] == [why]
    code, report = doctor(bridge, capsys)
    [letters] = bad(report, "dead_letters")
    assert letters["what"] == f"1 dead letter(s) of campaign 42: {why}" and code == 1
    code, found = explain(bridge, capsys, "rita@example.com")
    [failed] = entries(found, "join", "failed")
    assert failed["reason"] == why and "`bridge dlq replay --campaign 42`" in failed["fix"]
    intercom.archived.discard(archived["id"])                          # unarchived in Intercom
    assert run_cli(bridge.operator(), capsys, "dlq", "replay", "--campaign", "42")[0] == 0
    bridge.drain()
    assert bridge.history(42, rita["id"])["link"]["contact_id"] == archived["id"]
    assert len(intercom.contacts_by_email("rita@example.com")) == 1


def test_a_join_refused_then_replayed_explain_tells_the_failure_the_replay_and_no_stale_fix(
        bridge, intercom, rf, capsys):
    """After a failed join (Intercom refused the contact, for no mapped field: the whole write), explain says
    it was received and whether a lead (the webhook's `referrer_id`), with its fix; once the cause is fixed
    and the dead letter is replayed, the try says it was a replay and the failure shows as resolved, no fix."""
    bridge.apply(lead_settings())
    intercom.fail_next("POST", r"^/contacts$", 400, body={"type": "error.list", "errors": [
        {"code": "parameter_invalid", "message": "Email address is invalid", "field": "email"}]})
    bridge.post_join(join_body(new_lead(rf, email="amy@example.com")))
    bridge.drain()
    code, found = explain(bridge, capsys, "amy@example.com")
    assert found["people"][0]["kind"] == "lead"
    assert [(e["event"], e["outcome"]) for e in found["trail"]] == [
        ("join_received", "received"), ("join", "failed"), ("dead_letter", "failed")]
    assert all("bridge dlq replay --campaign 42" in e["fix"] for e in found["trail"][1:])
    assert run_cli(bridge.operator(), capsys, "dlq", "replay", "--campaign", "42")[0] == 0
    bridge.drain()
    code, found = explain(bridge, capsys, "amy@example.com")
    assert [e["event"] for e in found["trail"] if e.get("resolved")] == ["join", "dead_letter"]
    assert not any(e.get("fix") for e in found["trail"])
    code, text, _ = run_cli(bridge.operator(), capsys, "explain", "amy@example.com")
    assert code == 0
    assert "RF user" in text and "(lead, a***@example.com): Intercom contact" in text and "fix:" not in text
    [replayed] = [line for line in text.splitlines() if "join_received" in line and "replayed" in line]
    assert "received — replayed from the dead-letter queue (bridge dlq replay)" in replayed


def test_the_referral_link_attribute_doctor_wants_text_and_one_attribute_per_campaign(bridge, intercom, rf,
                                                                                     capsys):
    """"The data attribute for referral links is not available": it must be a text attribute, and each
    campaign needs its own."""
    intercom.define_attribute("link_number", "integer")
    doc = lead_settings()
    doc["referrers"]["fields"][1]["to"] = "custom_attributes.link_number"
    apply_offline(bridge, doc)
    rf.add_campaign(43, "Affiliates")
    bridge.apply({**lead_settings(), "campaign_id": "43"})
    bridge.apply({**lead_settings(), "campaign_id": "44"})
    code, report = doctor(bridge, capsys)
    [text] = [f for f in bad(report, "settings.workspace") if "link_number" in f["what"]]
    assert text["what"] == "referrers.fields[1]: url is string but custom_attributes.link_number is integer"
    assert text["fix"] == "map it to a string attribute"
    code, report = doctor(bridge, capsys, 43)
    [shared] = bad(report, "settings.referral_link")
    assert shared["what"] == "campaign 44 also writes its referral links to custom_attributes.referral_link"
    assert "one referral-link attribute per campaign" in shared["fix"]


# ===================================================================================================
# 5. Qualification
# ===================================================================================================
@pytest.fixture
def pending_lead(bridge, intercom, rf):
    def make(settings=None, email="ann@example.com"):
        return join(bridge, intercom, rf, settings, email)
    return make


def test_converted_but_not_qualified_explain_shows_the_rule_actual_and_expected(bridge, intercom, rf, capsys,
                                                                               pending_lead):
    """"Converted in Intercom but not qualified": the trigger attribute or value does not match the
    conversion. (Waiting 12 hours is not a cause here: a notification qualifies in seconds.)"""
    lead, contact = pending_lead()
    intercom.update_contact(contact["id"], signed_up="Signed up")
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    assert rf.qualification_events == []
    code, found = explain(bridge, capsys, contact["id"])
    evaluation = entries(found, "evaluation", "not_met")[-1]
    assert (evaluation["details"]["actual"], evaluation["details"]["expected"]) == ("Signed up", "Yes")
    assert "'Signed up', which does not meet 'Yes'" in evaluation["reason"]
    # A rule not met (yet) is routine: the values say why, and nothing asks the operator for a fix.
    assert "fix" not in evaluation and "hint" not in evaluation
    assert found["people"][0]["qualification"] == "pending"


# ===================================================================================================
# The FAQ: "Why aren't my referrals being auto-qualified?"
# ===================================================================================================
def test_faq_the_attribute_has_not_changed_explain_shows_its_actual_value(bridge, intercom, rf, capsys, pending_lead):
    """"Check the contact's attribute value in Intercom": a notification came, the value is still "No"."""
    lead, contact = pending_lead()
    intercom.update_contact(contact["id"], name="Ann B.")
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    code, found = explain(bridge, capsys, lead["id"])
    evaluation = entries(found, "evaluation", "not_met")[-1]
    assert evaluation["details"]["actual"] == "No" and "does not meet 'Yes'" in evaluation["reason"]
    capsys.readouterr()
    assert main(["explain", str(lead["id"])], rt=bridge.operator()) == 0
    assert "fix:" not in capsys.readouterr().out          # a lead who has not converted yet needs nothing done


def test_faq_duplicate_contacts_the_change_on_the_duplicate_is_in_the_leads_history_and_doctor_lists_them(
        bridge, intercom, rf, capsys, pending_lead):
    """"Check for duplicate contacts: the attribute may have been updated on the wrong record"."""
    lead, contact = pending_lead()
    twin = intercom.add_contact("ann@example.com", role="lead", custom_attributes={"signed_up": "No"})
    intercom.update_contact(twin["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", twin["id"])
    bridge.drain()
    assert rf.qualification_events == []                    # match: contact — not counted, but said
    code, found = explain(bridge, capsys, "ann@example.com")
    [noted] = entries(found, "duplicate_contact")
    assert (noted["event"], noted["details"]["contact_id"]) == ("duplicate_contact", twin["id"])
    assert noted["reason"].startswith(f"attribute changed on contact {twin['id']}, a duplicate of the linked "
                                      f"contact {contact['id']}")
    assert noted["reason"].endswith("— set `match: email` to count it")
    code, report = doctor(bridge, capsys)
    [dup] = bad(report, "duplicates")
    assert twin["id"] in dup["what"] and contact["id"] in dup["what"] and "a***@example.com" in dup["what"]
    assert dup["fix"].startswith("set `qualification.match: email`")


def test_faq_the_rule_is_not_set_up_correctly_doctor_names_the_missing_attribute(bridge, capsys):
    """"Confirm the qualification rule is mapped to the correct attribute and value"."""
    doc = qualifying_settings()
    doc["qualification"]["attribute"] = "custom_attributes.signedup"
    apply_offline(bridge, doc)
    code, report = doctor(bridge, capsys)
    [rule] = [f for f in bad(report, "settings.workspace") if "qualification" in f["what"]]
    assert rule["what"] == "qualification.attribute: custom_attributes.signedup does not exist in workspace vne310wv"
    assert rule["why"].startswith("the rule reads an attribute no contact has")     # nothing is written to it


def test_faq_give_it_a_few_minutes_notifications_refused_for_a_wrong_client_secret_are_named(bridge, intercom, capsys,
                                                                                              pending_lead):
    """The same delay when Intercom's notifications arrive but are refused: the client secret stored
    for the workspace is not the app's (a reconnect with another app, a rotated secret)."""
    lead, contact = pending_lead()
    assert bridge.notify("contact.lead.updated", contact["id"]).status_code == 200
    assert bridge.post_intercom(intercom.webhook_payload("contact.lead.updated", contact["id"]),
                                secret="another-apps-secret").status_code == 401
    code, report = doctor(bridge, capsys)
    [refused] = bad(report, "webhooks.intercom_refused")
    assert refused["what"].startswith("1 Intercom notification(s) for workspace vne310wv refused (unauthorized: "
                                      "X-Hub-Signature verifies with the client secret of none of the workspace's apps")
    assert refused["fix"] == ("`bridge workspace connect vne310wv` (Enter keeps the token; then it asks for the "
                              "app's client secret: Developer Hub > Basic information); `bridge workspace list` names "
                              "its apps")


def test_faq_give_it_a_few_minutes_doctor_says_no_notification_arrives_and_names_the_topics(bridge, capsys,
                                                                                            pending_lead):
    """"Give it a few minutes": here a qualification takes seconds, unless Intercom's notifications never
    come (topics not subscribed): then only the periodic reconciliation qualifies. Doctor says so."""
    pending_lead()
    code, report = doctor(bridge, capsys)
    [quiet] = bad(report, "webhooks.intercom")
    assert "no Intercom contact notification was ever received for workspace vne310wv while 1 lead(s) are pending" \
        == quiet["what"]
    assert "contact.lead.updated, contact.user.updated, contact.lead.signed_up" in quiet["fix"]
    code, text = doctor_text(bridge, capsys)
    assert code == 1 and "BAD [webhooks.intercom]" in text and "fix: in Intercom's Developer Hub" in text


@pytest.mark.parametrize("schedule, late", [({}, 60), ({"RECONCILE_EVERY_SECONDS": "60"}, 4)],
                         ids=["deployed-15-min", "make-run-60-s"])
def test_faq_give_it_a_few_minutes_a_reconciliation_that_does_not_run_is_named(bridge, capsys, clock, pending_lead,
                                                                              monkeypatch, schedule, late):
    """The last safety net: reconciliation finds what webhooks missed, every 15 minutes. Doctor says
    when it never ran, or stopped running; not while its first run is not due yet (a fresh stack,
    settings just applied: the schedule's next run makes the first search). Late is after 4 runs of
    the stage's schedule: an hour deployed, 4 minutes on `make run` (every 60 s, in the stack's
    environment, which the CLI reads)."""
    from datetime import datetime, timezone
    for name, value in schedule.items():
        monkeypatch.setenv(name, value)
    pending_lead()
    code, report = doctor(bridge, capsys)
    assert bad(report, "reconciliation") == []
    [soon] = [f for f in report["findings"] if f["check"] == "reconciliation"]
    due = datetime.fromtimestamp(clock() + late * 60, timezone.utc).strftime("%H:%M UTC")
    assert soon["what"] == ("reconciliation has not searched the changed contacts of workspace vne310wv yet: "
                            "the settings were applied 0 min ago, and the first search comes with the next "
                            f"scheduled run (late if not done by {due})")
    clock.sleep((late + 1) * 60)
    code, report = doctor(bridge, capsys)
    [never] = bad(report, "reconciliation")
    assert never["what"] == "reconciliation has never searched the changed contacts of workspace vne310wv"
    bridge.reconcile()
    bridge.drain()
    code, report = doctor(bridge, capsys)
    assert bad(report, "reconciliation") == []
    clock.sleep(3 * late * 60)
    code, report = doctor(bridge, capsys)
    [stale] = bad(report, "reconciliation")
    assert stale["what"] == f"the last search of changed contacts of vne310wv ran {3 * late} min ago"


def test_a_link_whose_queued_work_never_finished_it_is_named_by_doctor_and_explained(bridge, capsys, clock,
                                                                                        pending_lead, monkeypatch):
    """Reconciliation queued a check for a qualification whose worker died, then left the link alone
    while the check waited in the queue (it never ran). Doctor still counts the link as unfinished,
    with how many times its work was queued; explain says when the next retry is due."""
    import dataclasses

    from chalicelib.domain.history import iso
    from chalicelib.domain.link import PersonRef
    monkeypatch.setenv("RECONCILE_RETRY_SECONDS", "7200")       # longer than doctor's hour (the operator's CLI)
    monkeypatch.setattr(bridge.rt, "config", dataclasses.replace(bridge.rt.config, reconcile_retry=7200))
    lead, _ = pending_lead()
    links = bridge.rt.store.links
    assert links.start_qualifying(links.get(PersonRef("42", str(lead["id"]))))   # ...and the Lambda died
    clock.sleep(121)
    queued_at = clock()
    assert bridge.reconcile()["overdue"] == 1                      # its check waits in the queue, never handled
    clock.sleep(61 * 60)
    assert bridge.reconcile()["overdue"] == 0                      # not queued again yet
    code, report = doctor(bridge, capsys)
    [late] = bad(report, "reconciliation.overdue")
    assert late["what"] == (f"1 link(s) of campaign 42 left unfinished (e.g. RF user {lead['id']}: linked, qualification "
                            "qualifying; its finishing work was queued 1 time(s)) for over 60 min after their "
                            "worker's claim ran out") and code == 1
    code, found = explain(bridge, capsys, lead["id"])
    [stuck] = entries(found, "reconciliation", "stuck_qualification")
    retry = iso(queued_at + 7200)
    assert f"if it is still unfinished at {retry}, reconciliation queues it again" in stuck["reason"]


def test_a_link_left_unfinished_while_its_workspace_is_disconnected_waits_for_the_reconnect(bridge, capsys, clock,
                                                                                             pending_lead):
    """Its finishing work cannot run without the workspace's token: doctor says the link waits for the
    reconnect (the connection's finding has the fix), not that the reconcile schedule is to blame."""
    from chalicelib.domain.link import PersonRef
    lead, _ = pending_lead()
    links = bridge.rt.store.links
    assert links.start_qualifying(links.get(PersonRef("42", str(lead["id"]))))   # ...and the Lambda died
    assert main(["workspace", "disconnect", WORKSPACE], rt=bridge.operator()) == 0
    clock.sleep(2 * 3600)
    bridge.reconcile()
    code, report = doctor(bridge, capsys)
    assert bad(report, "intercom.connection") and not bad(report, "reconciliation") and code == 1
    [waits] = [f for f in report["findings"] if f["check"] == "reconciliation.overdue"]
    assert waits["what"].endswith(f"worker's claim ran out: they wait for workspace {WORKSPACE} to be reconnected "
                                  "(the work reconciliation queues to finish them waits in the dead-letter queue "
                                  "meanwhile)") and waits["fix"] == ""


# ===================================================================================================
# A healthy campaign, and explain's other promises
# ===================================================================================================
def test_a_healthy_campaign_passes_doctor_with_exit_status_0(bridge, intercom, rf, capsys, pending_lead):
    lead, contact = pending_lead()
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    bridge.reconcile()                                    # the schedule has run: changes searched
    bridge.drain()
    code, report = doctor(bridge, capsys)
    assert bad(report, "") == [] and code == 0, report
    code, text = doctor_text(bridge, capsys)
    assert text.startswith("campaign 42: no problems found")


def test_explain_by_email_rf_id_and_intercom_id_gives_the_same_trail_masked_without_secrets(
        bridge, intercom, rf, capsys, pending_lead, clock):
    lead, contact = pending_lead()
    clock.sleep(1)
    bridge.post_join(join_body(lead), secret="wrong")           # a refused repeat, in the trail too
    clock.sleep(1)
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    trails = [explain(bridge, capsys, who)[1] for who in ("Ann@Example.com", lead["id"], contact["id"])]
    assert trails[0]["trail"] == trails[1]["trail"] == trails[2]["trail"]
    events = [(e["event"], e["outcome"]) for e in trails[0]["trail"]]
    assert ("join_received", "received") in events and ("contact", "created") in events
    assert ("webhook_refused", "unauthorized") in events and events[-1] == ("qualification", "qualified")
    text = json.dumps(trails)
    assert "ann@example.com" not in text.lower() and "a***@example.com" in text
    for secret in ("sim-token", "client-secret", SECRET):
        assert secret not in text
    capsys.readouterr()
    main(["explain", str(lead["id"])], rt=bridge.operator())
    out = capsys.readouterr().out
    assert out.startswith(f"{lead['id']}:\n  campaign 42, RF user {lead['id']} (lead, a***@example.com): Intercom "
                          f"contact {contact['id']}")
    assert "qualification: qualified" in out


def test_explain_says_plainly_when_it_has_no_record_of_someone_and_that_queued_work_may_be_theirs(bridge, rf, capsys):
    """A join the edge accepted (202) is not recorded per person until a try of it ends: while it waits in the
    queue, explain must not say the bridge never saw them and advise a backfill as if nothing were coming."""
    bridge.apply(lead_settings())
    assert bridge.post_join(join_body(new_lead(rf, email="queued@example.com"))).status_code == 202   # not worked
    capsys.readouterr()
    for who in ("queued@example.com", "nobody@example.com"):
        assert main(["explain", who], rt=bridge.operator()) == 1
        out = capsys.readouterr().out
        assert out.startswith(f"no record of {who[0]}***@example.com yet:\n  - a webhook about them accepted in the "
                              "last minutes may still wait in the work queue"), out
        assert out.index("`bridge doctor CAMPAIGN` shows the queue") < out.index("bridge backfill")
    code, found = explain(bridge, capsys, "999999")
    assert code == 1 and found["found"] is False and found["message"] == "no record of 999999 yet"
    assert len(found["cases"]) == 5 and found["cases"][0].startswith("a webhook about them accepted")


def test_the_edge_log_stays_bounded_whatever_an_unauthenticated_caller_sends(bridge, capsys):
    """Refusals for campaigns that do not exist all go to one bucket, whose samples are a fixed ring."""
    from chalicelib.ports.edge import SAMPLES, UNKNOWN
    bridge.apply(lead_settings())
    for i in range(3 * SAMPLES):
        bridge.post_join({"id": i, "campaign_id": f"fake{i}", "email": f"x{i}@example.com"}, secret="guess")
    store = bridge.operator().store
    kept = store.edge.refusals(UNKNOWN)
    assert refused(kept) == 3 * SAMPLES and len(kept.samples) == SAMPLES
    assert all(store.edge.refusals(f"campaign:fake{i}").counts == [] for i in range(3))
