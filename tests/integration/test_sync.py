"""Contact sync end to end: moto server, the simulators (every request to Intercom checked against its
OpenAPI file), the worker driven like Lambda's SQS event source, the operator's CLI."""
from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.integration.conftest import WORKSPACE, join_body, lead_settings
from tests.support.cli import run_cli

LINK = "custom_attributes.referral_link"


def sync_settings(segment_id: str, **block) -> dict:
    return {**lead_settings(), "sync": {"source": "segment", "segment_id": segment_id,
                                        "fields": [{"from": "email", "to": "email"},
                                                   {"from": "name", "to": "first_name"},
                                                   {"from": "custom_attributes.lead_source", "to": "meta.source"}],
                                        "referral_link_attribute": LINK, **block}}


def segment(intercom, n: int, name="Customers", **extra) -> tuple[str, list[dict]]:
    contacts = [intercom.add_contact(f"person{i}@example.com", role="user", name=f"Person {i}") for i in range(n)]
    contacts += [intercom.add_contact(email, role="user", **kw) for email, kw in extra.items()]
    return intercom.add_segment(name, [c["id"] for c in contacts])["id"], contacts


def cli(bridge, *args: str, capsys) -> tuple[int, str, str]:
    return run_cli(bridge.operator(), capsys, *args)


def creates(rf) -> int:
    return rf.count("POST", "/users")


N = 400                 # contacts of the segment (with its 2 odd ones, Intercom's search pages of 150: 150, 150, 102)
RF_PER_MINUTE = 360     # RF's limit here, and the bridge's budget: N creates are more than one minute's, and a
                        # page's 150 take 25 s of the test's 60 s Lambda (a page gives itself back with 20 s left)
OTHERS = 500            # RF's people of the campaign the segment does not hold: its list pages of 250 are 3


@pytest.fixture
def rf_limit(monkeypatch, rf):
    """RF allows RF_PER_MINUTE calls a minute (its simulator, and RF_CALLS_PER_MINUTE before `bridge` reads it):
    requested before `bridge`. Scaled down from RF's 600 with the segment, so that the run still cannot create
    its N users inside one minute's window without the limiter pacing it (and a page of 150 still fits in a
    Lambda's time at that pace, with room to spare)."""
    monkeypatch.setenv("RF_CALLS_PER_MINUTE", str(RF_PER_MINUTE))
    rf.rate_limit = RF_PER_MINUTE


@pytest.mark.slow
def test_a_segment_of_several_pages_is_enrolled_with_links_written_back_skips_reported_and_run_again_creates_nothing(
        rf_limit, bridge, intercom, rf, clock, capsys):
    """N contacts (was 1,000: the same pages, checkpoints and pacing at a third of the cost): Intercom's search
    gives them in 3 pages of up to 150 (a run's chain of page messages, a checkpoint each, the dry run's walk),
    RF lists its people in 3 pages of 250 (the one already in the campaign is on the last), and the N creates are
    more than RF's limit allows in a minute, so the rate limiter must pace the run over several windows."""
    assert N + 2 > 2 * 150 and N > RF_PER_MINUTE and OTHERS + 1 > 2 * 250
    for i in range(150):                                     # more segments than the hosted integration loads
        intercom.add_segment(f"Other {i}", [])
    seg, contacts = segment(intercom, N)
    intercom.add_contact("nameless@example.com", role="user")                     # no name: skipped
    odd = [intercom.add_contact("not-an-email", role="user", name="Odd"),
           intercom.add_contact("nameless@example.com", role="user")]
    intercom.segment_members[seg].update(c["id"] for c in odd)
    for i in range(OTHERS):                                  # the campaign's people the segment does not hold
        rf.add_user(42, f"other{i}@example.com", f"Other {i}")
    rf.add_user(42, "person7@example.com", "Seven")          # already in the campaign (on RF's last page)
    bridge.apply(sync_settings(seg))

    code, out, err = cli(bridge, "sync", "start", "42", "--dry-run", capsys=capsys)
    dry = json.loads(out)
    assert code == 0 and creates(rf) == 0 and rf.count("GET", "/users") == 3       # RF's people: read to the last page
    assert (dry["total"], dry["would_enrol"]) == (N + 2, N - 1)
    assert {k: v["count"] for k, v in dry["skipped"].items()} == {"already_in_campaign": 1, "missing_field": 1,
                                                                  "invalid_email": 1}

    code, out, err = cli(bridge, "sync", "start", "42", capsys=capsys)
    assert code == 0 and out.startswith("sync run 1 of campaign 42 started (segment ")
    bridge.drain()

    assert creates(rf) == N                                    # N - 1 new, and the one RF had (its 422)
    assert intercom.count("POST", "/contacts/search") == 3 + 3         # the dry run's pages, then the run's
    enrolled = [c for c in contacts if c["email"] != "person7@example.com"]
    for c in enrolled:
        [user] = rf.users_by_email(c["email"], 42)
        assert user["type"] == "person_referring" and user["first_name"] == c["name"]
        assert intercom.get(c["id"])["custom_attributes"]["referral_link"] == user["url"]
    status = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (status["status"], status["done"], status["total"], status["enrolled"], status["skipped"]) == (
        "done", N + 2, N + 2, N - 1, 3)
    report = json.loads(cli(bridge, "sync", "report", "42", "--json", capsys=capsys)[1])
    assert {k: v["count"] for k, v in report["skipped"].items()} == {"already_in_campaign": 1, "missing_field": 1,
                                                                     "invalid_email": 1}
    [invalid] = report["skipped"]["invalid_email"]["examples"]
    assert invalid["detail"] == "invalid email: '<invalid>' is not an email address"      # masked, as `email`
    assert report["skipped"]["missing_field"]["examples"][0]["detail"] == \
        "missing required field: first_name (from name)"
    user = rf.users_by_email("person3@example.com", 42)[0]
    history = bridge.history(42, user["id"])["history"]
    assert [(h["event"], h["outcome"], h["reason"]) for h in history] == [
        ("sync", "enrolled", f"enrolled by sync run 1 from segment {seg}")]
    from chalicelib.services.explain import explain
    by_contact = explain(bridge.operator(), contacts[3]["id"]).view()["trail"]
    assert [(t["event"], t["outcome"], t["reason"]) for t in by_contact] == [
        ("sync", "enrolled", f"enrolled by sync run 1 from segment {seg}")]
    assert by_contact == explain(bridge.operator(), str(user["id"])).view()["trail"]
    skipped = explain(bridge.operator(), odd[0]["id"]).view()["trail"]
    assert [(t["outcome"], t["reason"]) for t in skipped] == [
        ("skipped", "skipped by sync run 1: invalid email: '<invalid>' is not an email address")]

    clock.now += 60
    before = len(rf.requests)
    code, out, err = cli(bridge, "sync", "start", "42", capsys=capsys)
    assert code == 0, err
    bridge.drain()
    assert creates(rf) == N and len(rf.requests) == before + 2        # the checks' campaign reads only
    again = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (again["run"], again["enrolled"], again["already_enrolled"]) == (2, 0, N - 1)
    assert not rf.blocked and rf.excess_windows == []


def test_explain_finds_whom_sync_enrolled_or_skipped_by_their_email_and_no_report_shows_an_email(
        bridge, intercom, rf, capsys):
    seg, contacts = segment(intercom, 2, **{"Bad@@Example": {"name": "Bad"}})
    bridge.apply(sync_settings(seg))
    cli(bridge, "sync", "start", "42", capsys=capsys)
    bridge.drain()
    [user] = rf.users_by_email("person1@example.com", 42)
    code, out, _ = cli(bridge, "explain", "Person1@Example.com", "--json", capsys=capsys)
    by_email = json.loads(out)
    assert code == 0 and [(t["event"], t["outcome"], t["rf_user_id"]) for t in by_email["trail"]] == [
        ("sync", "enrolled", str(user["id"]))]
    assert by_email["trail"] == json.loads(cli(bridge, "explain", str(user["id"]), "--json", capsys=capsys)[1])["trail"]
    code, out, _ = cli(bridge, "explain", "bad@@example", "--json", capsys=capsys)
    [skipped] = json.loads(out)["trail"]
    assert code == 0 and skipped["reason"] == ("skipped by sync run 1: invalid email: 'b***@@example' is not an "
                                               "email address")
    assert skipped["details"] == {"contact_id": contacts[2]["id"]}
    report = cli(bridge, "sync", "report", "42", "--json", capsys=capsys)[1]
    [example] = json.loads(report)["skipped"]["invalid_email"]["examples"]
    assert example["email"] == "b***@@example" and example["detail"] == \
        "invalid email: 'b***@@example' is not an email address"
    assert "bad@@example" not in report.lower()


def test_the_operators_terminal_shows_the_answer_and_no_log_lines(bridge, intercom, rf):
    """`./bridge sync start` as an operator runs it (its own process): the services log in the Lambdas."""
    import subprocess
    from pathlib import Path
    seg, _ = segment(intercom, 2)
    bridge.apply(sync_settings(seg))
    done = subprocess.run([str(Path(__file__).resolve().parents[2] / "bridge"), "sync", "start", "42"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("sync run 1 of campaign 42 started")
    assert done.stderr == ""
    bridge.drain()
    assert creates(rf) == 2


@pytest.mark.parametrize("problem", ["segment", "attribute"])
def test_an_unknown_segment_or_a_link_attribute_that_is_not_text_stops_the_run_before_anything_is_created(
        bridge, intercom, rf, capsys, problem):
    for i in range(160):
        intercom.add_segment(f"Segment {i}", [])
    seg, _ = segment(intercom, 5)
    intercom.define_attribute("referral_count", "integer")
    settings = sync_settings("6f00000000000000ffffffff") if problem == "segment" else \
        sync_settings(seg, referral_link_attribute="custom_attributes.referral_count")
    # `settings apply` refuses both now (test_settings_checks.py): stored with --offline, or before the
    # workspace changed, they still meet `sync start`'s checks
    from chalicelib.services.admin import apply_settings
    apply_settings(bridge.rt, yaml.safe_dump(settings), check_workspace=False)
    code, out, err = cli(bridge, "sync", "start", "42", capsys=capsys)
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert lines[0] == "sync cannot start:" and len(lines) == 2
    if problem == "segment":
        assert lines[1].startswith(f"  - sync.segment_id: segment 6f00000000000000ffffffff does not exist in "
                                   f"workspace {WORKSPACE} (161 segments listed")
        assert "set segment_id to one of them" in lines[1]
    else:
        assert lines[1] == ("  - sync.referral_link_attribute: custom_attributes.referral_count is of type integer, "
                            "not a text attribute — a referral link is text (up to 255 characters): create a Text "
                            "attribute and name it here")
    bridge.drain()
    assert creates(rf) == 0 and bridge.operator().store.sync.run("42") is None


def test_a_segment_that_cannot_be_found_is_named_where_the_readmes_troubleshooting_table_says(bridge, intercom, rf,
                                                                                              capsys):
    """"Sync: a segment cannot be found": `settings apply`, `sync start` (and its `--dry-run`) and `doctor`
    name it with the fix; `sync report` cannot (nothing ran). The docs' row (docs/operating.md, Troubleshooting)
    names those, not `sync report`."""
    from chalicelib.domain.settings import SettingsError
    from chalicelib.services.admin import apply_settings
    missing = "6f00000000000000ffffffff"
    named = f"sync.segment_id: segment {missing} does not exist in workspace {WORKSPACE}"
    with pytest.raises(SettingsError) as refused:
        bridge.apply(sync_settings(missing))
    assert any(p.startswith(named) for p in refused.value.problems)
    apply_settings(bridge.rt, yaml.safe_dump(sync_settings(missing)), check_workspace=False)   # (or Intercom changed)
    for dry in ((), ("--dry-run",)):
        code, _, err = cli(bridge, "sync", "start", "42", *dry, capsys=capsys)
        assert code == 1 and err.splitlines()[1].startswith(f"  - {named}")
    code, out, _ = cli(bridge, "doctor", "42", "--json", capsys=capsys)
    assert any(f["what"].startswith(named) for f in json.loads(out)["findings"] if not f["ok"])
    code, _, err = cli(bridge, "sync", "report", "42", capsys=capsys)
    assert code == 1 and missing not in err
    from tests.support.docs import docs_text
    [row] = [line for line in docs_text().splitlines() if line.startswith("| Sync: a segment cannot be found |")]
    assert [c for c in ("settings apply", "sync start", "--dry-run", "doctor", "sync report") if c in row] == [
        "settings apply", "sync start", "--dry-run", "doctor"]


def test_a_contact_missing_a_field_rf_s_campaign_requires_is_skipped_alike_by_the_dry_run_and_the_run_unasked(
        bridge, intercom, rf, capsys):
    """RF's campaign requires a company of its referrers: a contact whose company is blank is skipped, naming the
    field, before RF is asked (it would answer 422, a call each); a sync block that does not map it cannot start."""
    rf.campaigns["42"]["fields"]["person_referring"].append(
        {"id": "company", "type": "text", "label": "Company", "required": True})
    intercom.define_attribute("company", "string")
    contacts = [intercom.add_contact(f"person{i}@example.com", role="user", name=f"Person {i}",
                                     custom_attributes={"company": "Acme"}) for i in range(3)]
    bea = intercom.add_contact("bea@example.com", role="user", name="Bea", custom_attributes={"company": " "})
    seg = intercom.add_segment("Customers", [c["id"] for c in [*contacts, bea]])["id"]
    bridge.apply(sync_settings(seg))                                              # company not mapped
    code, _, err = cli(bridge, "sync", "start", "42", "--dry-run", capsys=capsys)
    assert code == 1 and err.splitlines()[1:] == [
        "  - sync.fields: meta.company is required by campaign 42 in Referral Factory (its field Company) but not "
        "mapped — add {from: <an Intercom attribute>, to: meta.company}, or make the field optional in Referral "
        "Factory"]
    fields = [*sync_settings(seg)["sync"]["fields"], {"from": "custom_attributes.company", "to": "meta.company"}]
    bridge.apply(sync_settings(seg, fields=fields))
    detail = ("missing required field: meta.company (from custom_attributes.company; required by the campaign in "
              "Referral Factory)")

    code, out, _ = cli(bridge, "sync", "start", "42", "--dry-run", capsys=capsys)
    dry = json.loads(out)
    assert code == 0 and (dry["would_enrol"], {k: v["count"] for k, v in dry["skipped"].items()}) == (
        3, {"missing_field": 1})
    assert [e["detail"] for e in dry["skipped"]["missing_field"]["examples"]] == [detail]
    before = len(rf.requests)
    assert cli(bridge, "sync", "start", "42", capsys=capsys)[0] == 0
    bridge.drain()
    status = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (status["status"], status["enrolled"], status["skipped"]) == ("done", 3, 1)
    assert creates(rf) == 3 and rf.users_by_email("bea@example.com") == []
    assert len(rf.requests) == before + 2 + 3      # the checks' campaign reads (the CLI's, the first page's), 3 POSTs
    assert all(rf.users_by_email(c["email"], 42)[0]["meta"] == [{"field": "company", "value": "Acme"}]
               for c in contacts)
    report = json.loads(cli(bridge, "sync", "report", "42", "--json", capsys=capsys)[1])
    assert {k: v["count"] for k, v in report["skipped"].items()} == {"missing_field": 1}
    assert [e["detail"] for e in report["skipped"]["missing_field"]["examples"]] == [detail]


def test_a_run_whose_checks_fail_in_the_worker_stops_with_the_fix_and_creates_nothing(bridge, intercom, rf, capsys):
    seg, _ = segment(intercom, 5)
    bridge.apply(sync_settings(seg))
    assert cli(bridge, "sync", "start", "42", capsys=capsys)[0] == 0
    rf.campaigns["42"]["status"] = "paused"                 # between the CLI's checks and the worker's
    bridge.drain()
    status = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert status["status"] == "stopped" and creates(rf) == 0
    assert status["message"] == ("campaign 42 is not live in Referral Factory (status paused) — launch it first: "
                                 "people cannot join a paused campaign")
    from chalicelib.services.doctor import examine
    [finding] = [f for f in examine(bridge.operator(), "42", dlq=False).findings if f.check == "sync"]
    assert not finding.ok and finding.what == (f"sync run 1 (full, segment {seg}) stopped: " + status["message"])
    assert finding.fix == "fix what it names, then `bridge sync start 42`"


def test_ongoing_mode_enrols_a_contact_created_after_the_first_run_once(bridge, intercom, rf, clock, capsys):
    bridge.apply({**sync_settings("x"), "sync": {**sync_settings("x")["sync"], "source": "users",
                                                 "mode": "ongoing"}})
    first = intercom.add_contact("first@example.com", role="user", name="First")
    assert cli(bridge, "sync", "start", "42", capsys=capsys)[0] == 0
    bridge.drain()
    assert [u["email"] for u in rf.users.values()] == ["first@example.com"]

    clock.now += 3600
    new = intercom.add_contact("new@example.com", role="user", name="New")
    lead = intercom.add_contact("lead@example.com", role="lead", name="Lead")        # not a user: not synced
    for contact in (new, lead, new):                        # Intercom repeats a webhook now and then (the same
        topic = f"contact.{contact['role']}.created"        # notification, its id too)
        assert bridge.notify(topic, contact["id"], notif_id=f"notif_{contact['id']}").status_code == 200
    bridge.drain()
    status = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert status["by_webhook"] == {"enrolled": 1}           # counted once, not "+1 enrolled, 1 already"
    clock.now += 900
    bridge.reconcile()                                       # the scheduled catch-up searches updated contacts
    bridge.drain()
    assert sorted(u["email"] for u in rf.users.values()) == ["first@example.com", "new@example.com"]
    assert creates(rf) == 2
    user = rf.users_by_email("new@example.com", 42)[0]
    assert intercom.get(new["id"])["custom_attributes"]["referral_link"] == user["url"]
    assert intercom.get(first["id"])["custom_attributes"]["referral_link"]
    [note] = bridge.history(42, user["id"])["history"]
    assert note["reason"] == "enrolled by ongoing sync (contact.user.created) from users"
    catch_up = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (catch_up["run"], catch_up["kind"], catch_up["status"], catch_up["enrolled"]) == (2, "catch-up", "done", 0)


def joined_by_webhook(bridge, intercom, rf) -> tuple[dict, dict, dict, dict]:
    """Rita (a referrer) and Lea (her lead) join through RF's webhook: the bridge creates Rita's contact
    with her email and referral link only (the referrers' fields), and Lea's as a lead with her name."""
    from .conftest import join_body
    rita = rf.add_user(42, "rita@example.com", "Rita")
    lea = rf.add_user(42, "lea@example.com", "Lea", referrer_id=rita["id"])
    for person in (rita, lea):
        assert bridge.post_join(join_body(person)).status_code == 202
    bridge.drain()
    [rita_contact] = intercom.contacts_by_email("rita@example.com")
    [lea_contact] = intercom.contacts_by_email("lea@example.com")
    assert not rita_contact.get("name") and rita_contact["role"] == "user"
    return rita, lea, rita_contact, lea_contact


def test_the_bridge_s_own_referrers_are_already_enrolled_and_its_leads_already_in_the_campaign(
        bridge, intercom, rf, capsys):
    """The contacts the bridge's own joins created are not enrolled again, nor skipped for a name
    they never had: their join linked them to their RF user."""
    seg, contacts = segment(intercom, 1)
    bridge.apply(sync_settings(seg))
    rita, lea, rita_contact, lea_contact = joined_by_webhook(bridge, intercom, rf)
    intercom.segment_members[seg].update((rita_contact["id"], lea_contact["id"]))
    dry = json.loads(cli(bridge, "sync", "start", "42", "--dry-run", capsys=capsys)[1])
    assert (dry["would_enrol"], dry["already_enrolled"]) == (1, 1)
    assert {k: v["count"] for k, v in dry["skipped"].items()} == {"already_in_campaign": 1}
    assert cli(bridge, "sync", "start", "42", capsys=capsys)[0] == 0
    bridge.drain()
    assert creates(rf) == 1                                   # only the new person: no 422 asked for
    status = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (status["enrolled"], status["already_enrolled"], status["skipped"]) == (1, 1, 1)
    report = json.loads(cli(bridge, "sync", "report", "42", "--json", capsys=capsys)[1])
    [skip] = report["skipped"]["already_in_campaign"]["examples"]
    assert skip["contact_id"] == lea_contact["id"]
    assert skip["detail"] == f"already in the campaign: joined it as a lead (RF user {lea['id']}), linked to " \
                             "this contact by the join"
    assert "missing_field" not in report["skipped"]
    found = json.loads(cli(bridge, "explain", rita_contact["id"], "--json", capsys=capsys)[1])
    assert not [e for e in found["trail"] if e["event"] == "sync" or e.get("fix")]
    cli(bridge, "sync", "start", "42", capsys=capsys)          # again: the ledger knows them
    bridge.drain()
    again = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (again["run"], again["already_enrolled"], again["skipped"]) == (2, 2, 1) and creates(rf) == 1


def test_the_bridge_s_own_referrer_gets_the_referral_link_where_sync_writes_it(bridge, intercom, rf, capsys):
    """Their join wrote the link to another attribute (or none): sync asks RF for it and writes it."""
    intercom.define_attribute("sync_link", "string")
    seg, _ = segment(intercom, 0)
    bridge.apply(sync_settings(seg, referral_link_attribute="custom_attributes.sync_link"))
    rita, _, rita_contact, _ = joined_by_webhook(bridge, intercom, rf)
    intercom.segment_members[seg].add(rita_contact["id"])
    assert cli(bridge, "sync", "start", "42", capsys=capsys)[0] == 0
    bridge.drain()
    assert creates(rf) == 0 and rf.count("GET", f"/users/{rita['id']}") == 1
    assert intercom.get(rita_contact["id"])["custom_attributes"]["sync_link"] == rita["url"]
    status = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (status["enrolled"], status["already_enrolled"], status["skipped"]) == (0, 1, 0)
    cli(bridge, "sync", "start", "42", capsys=capsys)
    bridge.drain()
    assert rf.count("GET", f"/users/{rita['id']}") == 1       # written back once: the ledger says so


def own_referrer_without_link(bridge, intercom, rf, n: int) -> tuple[dict, list[dict]]:
    """A segment of `n` contacts and Rita, whose join enrolled her and for whom RF has made no link yet; sync
    writes links to another attribute than her join's. Her contact, and the others."""
    intercom.define_attribute("sync_link", "string")
    seg, contacts = segment(intercom, n)
    bridge.apply(sync_settings(seg, referral_link_attribute="custom_attributes.sync_link"))
    rita, _, rita_contact, _ = joined_by_webhook(bridge, intercom, rf)
    rf.users[rita["id"]]["url"] = None
    intercom.segment_members[seg].add(rita_contact["id"])
    return rita_contact, contacts


def test_the_bridge_s_own_referrer_rf_has_no_link_for_yet_is_already_enrolled_not_enrolled_by_sync(
        bridge, intercom, rf, capsys):
    """Her join enrolled her; RF has made no link for her yet when sync meets her: already enrolled (still
    without a link), not counted as enrolled by this run, and explain does not say sync enrolled her."""
    rita_contact, _ = own_referrer_without_link(bridge, intercom, rf, 0)
    assert cli(bridge, "sync", "start", "42", capsys=capsys)[0] == 0
    bridge.drain()
    status = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (status["enrolled"], status["already_enrolled"], status["still_without_link"]) == (0, 1, 1)
    found = json.loads(cli(bridge, "explain", rita_contact["id"], "--json", capsys=capsys)[1])
    assert "enrolled_by_sync" not in found and creates(rf) == 0


def test_the_bridge_s_own_referrer_adopted_by_a_failed_try_of_a_page_is_already_enrolled_on_its_retry(
        bridge, intercom, rf, capsys):
    """The page's first try adopts Rita (her join enrolled her; RF has no link for her yet) and fails on
    Person 0, whose create RF answers 503: the page waits for RF. Its next try still counts Rita already enrolled
    (the ledger, in DynamoDB, keeps that her join enrolled her): the run enrolled one person, not two."""
    _, contacts = own_referrer_without_link(bridge, intercom, rf, 1)
    rf.fail_next("POST", r"^/users$", 503, times=10)
    assert cli(bridge, "sync", "start", "42", capsys=capsys)[0] == 0
    assert bridge.drain()[-1].result["waiting"] == 1             # RF unavailable: the page waits, using up no try
    rf.clear_faults()
    bridge.poller.release_delayed()                               # (its wait elapsed)
    bridge.drain()
    status = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (status["status"], status["enrolled"], status["already_enrolled"], status["still_without_link"]) == \
        ("done", 1, 1, 1)
    assert creates(rf) == 2 and len(rf.users_by_email(contacts[0]["email"])) == 1    # the 503'd try, then hers


def test_ongoing_mode_takes_the_contact_a_referrer_s_join_created_as_already_enrolled(bridge, intercom, rf, capsys):
    """The bridge's own join creates the referrer's contact; Intercom's contact.user.created about it
    reaches ongoing sync, which recognises them (no create in RF, no skip)."""
    bridge.apply({**sync_settings("x"), "sync": {**sync_settings("x")["sync"], "source": "users",
                                                 "mode": "ongoing"}})
    assert cli(bridge, "sync", "start", "42", capsys=capsys)[0] == 0
    bridge.drain()
    rita, _, rita_contact, _ = joined_by_webhook(bridge, intercom, rf)
    assert bridge.notify("contact.user.created", rita_contact["id"]).status_code == 200
    bridge.drain()
    assert creates(rf) == 0
    status = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (status["by_webhook"], status["done"]) == ({"already_enrolled": 1}, 0)   # the webhook's, not the run's


def test_people_who_left_the_segment_are_reported_not_kept_silently(bridge, intercom, rf, capsys):
    seg, contacts = segment(intercom, 4)
    bridge.apply(sync_settings(seg))
    cli(bridge, "sync", "start", "42", capsys=capsys)
    bridge.drain()
    intercom.segment_members[seg].discard(contacts[1]["id"])
    cli(bridge, "sync", "start", "42", capsys=capsys)
    bridge.drain()
    left = json.loads(cli(bridge, "sync", "report", "42", "--json", capsys=capsys)[1])["left"]
    assert (left["since_run"], left["count"]) == (2, 1)
    assert left["examples"][0]["contact_id"] == contacts[1]["id"]
    assert len(rf.users) == 4                                # reported, never removed from RF


def test_in_a_terminal_status_shows_a_progress_bar_and_report_reads_as_text(bridge, intercom, rf, capsys,
                                                                             monkeypatch):
    import chalicelib.cli as cli_module
    seg, _ = segment(intercom, 3)
    intercom.add_contact("nameless@example.com", role="user")
    intercom.segment_members[seg].add(intercom.contacts_by_email("nameless@example.com")[0]["id"])
    bridge.apply(sync_settings(seg))
    cli(bridge, "sync", "start", "42", capsys=capsys)
    bridge.drain()
    monkeypatch.setattr(cli_module, "_text", lambda args: True)
    code, out, _ = cli(bridge, "sync", "status", "42", capsys=capsys)
    assert code == 0 and out.startswith(f"run 1 (full, segment {seg}) done: [") and "4/4 100%" in out
    assert "enrolled 3, already 0, skipped 1" in out
    code, out, _ = cli(bridge, "sync", "report", "42", capsys=capsys)
    assert out.splitlines()[1:5] == [f"sync writes back each referrer's referral link to {LINK}",
                                     "skipped contacts (all runs), by reason:", "  missing required field: 1",
                                     f"    - contact {intercom.contacts_by_email('nameless@example.com')[0]['id']} "
                                     "n***@example.com: missing required field: first_name (from name)"]
    assert cli(bridge, "sync", "status", "43", capsys=capsys)[0] == 1


def test_every_command_that_answers_takes_json_and_answers_json(bridge, intercom, rf, tmp_path, capsys):
    """docs/operating.md: answers are text for people or JSON with --json. Commands whose answer is JSON anyway
    take --json too (a script passing it everywhere is not refused); `sync start` answers JSON with it."""
    seg, contacts = segment(intercom, 2)
    bridge.apply(sync_settings(seg))
    settings = tmp_path / "campaign.json"
    settings.write_text(json.dumps(sync_settings(seg)))
    commands = [["settings", "apply", str(settings)], ["settings", "show", "42"], ["sync", "start", "42", "--dry-run"],
                ["sync", "start", "42"], ["sync", "status", "42"], ["sync", "report", "42"],
                ["explain", "person0@example.com"], ["doctor", "42"], ["dlq", "list"], ["backfill", "42"]]
    for argv in commands:
        code, out, err = cli(bridge, *argv, "--json", capsys=capsys)
        assert code in (0, 1) and isinstance(json.loads(out), dict), (argv, err)
    bridge.drain()
    [user] = rf.users_by_email("person0@example.com", 42)
    for argv in (["history", "42", str(user["id"])], ["forget", "person1@example.com"]):
        code, out, err = cli(bridge, *argv, "--json", capsys=capsys)
        assert code == 0 and isinstance(json.loads(out), dict), (argv, err)


def test_status_of_a_campaign_without_settings_or_sync_block_says_so(bridge, capsys):
    """`sync start` would fail there too: "never synced — run `bridge sync start`" was bad advice."""
    assert cli(bridge, "sync", "status", "5555", capsys=capsys) == (
        1, "", "bridge: campaign 5555 has no settings — apply them first, with a `sync` block (`bridge settings "
               "apply <file>`)\n")
    bridge.apply(lead_settings())
    assert cli(bridge, "sync", "report", "42", capsys=capsys) == (
        1, "", "bridge: campaign 42's settings have no sync block — add one and apply them\n")


def test_a_referrer_whose_join_skipped_her_existing_contact_still_gets_her_referral_link(bridge, intercom, rf, capsys):
    """The bridge's own referrer counts as enrolled, but her link is written only if her contact holds
    one: her join left an existing contact untouched (`duplicates: skip`), so sync writes it (RF says it)."""
    seg, _ = segment(intercom, 0)
    bridge.apply(sync_settings(seg))
    existing = intercom.add_contact("rita@example.com", role="user", name="Rita")
    rita = rf.add_user(42, "rita@example.com", "Rita")
    assert bridge.post_join(join_body(rita)).status_code == 202
    bridge.drain()
    assert intercom.get(existing["id"])["custom_attributes"].get("referral_link") is None
    intercom.segment_members[seg].add(existing["id"])
    assert cli(bridge, "sync", "start", "42", capsys=capsys)[0] == 0
    bridge.drain()
    assert creates(rf) == 0
    assert intercom.get(existing["id"])["custom_attributes"].get("referral_link") == rita["url"]


def test_the_bridge_s_own_referrer_whose_contact_holds_a_stale_link_gets_hers_and_a_right_one_is_not_written_again(
        bridge, intercom, rf, capsys):
    """Any value where sync writes the link is not taken as written: the hosted integration (another
    campaign's link) or an old URL may have left it. RF says each referrer's link once; a contact that
    holds it already is not written again."""
    seg, _ = segment(intercom, 0)
    bridge.apply(sync_settings(seg))
    stale = intercom.add_contact("rita@example.com", role="user", name="Rita",
                                 custom_attributes={"referral_link": "https://old.example/r/rita"})
    rita = rf.add_user(42, "rita@example.com", "Rita")
    assert bridge.post_join(join_body(rita)).status_code == 202          # duplicates: skip keeps the old value
    ria = rf.add_user(42, "ria@example.com", "Ria")
    assert bridge.post_join(join_body(ria)).status_code == 202           # her contact is created with her link
    bridge.drain()
    [right] = intercom.contacts_by_email("ria@example.com")
    assert intercom.get(stale["id"])["custom_attributes"]["referral_link"] == "https://old.example/r/rita"
    assert intercom.get(right["id"])["custom_attributes"]["referral_link"] == ria["url"]
    intercom.segment_members[seg].update((stale["id"], right["id"]))
    assert cli(bridge, "sync", "start", "42", capsys=capsys)[0] == 0
    bridge.drain()
    assert intercom.get(stale["id"])["custom_attributes"]["referral_link"] == rita["url"]
    assert intercom.count("PUT", f"/contacts/{stale['id']}") == 1
    assert intercom.count("PUT", f"/contacts/{right['id']}") == 0
    assert creates(rf) == 0 and rf.count("GET", f"/users/{rita['id']}") == rf.count("GET", f"/users/{ria['id']}") == 1
    status = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (status["enrolled"], status["already_enrolled"], status["skipped"]) == (0, 2, 0)
    cli(bridge, "sync", "start", "42", capsys=capsys)                     # again: the ledger knows both
    bridge.drain()
    assert intercom.count("PUT", f"/contacts/{stale['id']}") == 1 and rf.count("GET", f"/users/{rita['id']}") == 1


def test_a_referrer_rf_had_made_no_link_for_gets_it_written_by_the_next_run(bridge, intercom, rf, capsys, monkeypatch):
    """RF answered the create without a url: the run says so (`sync report`, `explain`) and the next
    run asks RF for that user again (once), then writes the link: counted as a link written later, not as
    a second enrolment."""
    seg, contacts = segment(intercom, 2)
    bridge.apply(sync_settings(seg))
    insert = rf._insert

    def without_url(*args, **kwargs):
        user = insert(*args, **kwargs)
        user["url"] = None if user["email"] == "person0@example.com" else user["url"]
        return user
    monkeypatch.setattr(rf, "_insert", without_url)
    assert cli(bridge, "sync", "start", "42", capsys=capsys)[0] == 0
    bridge.drain()
    [pending] = rf.users_by_email("person0@example.com")
    cid = contacts[0]["id"]
    assert intercom.count("PUT", f"/contacts/{cid}") == 0
    assert rf.count("GET", f"/users/{pending['id']}") == 0
    report = json.loads(cli(bridge, "sync", "report", "42", "--json", capsys=capsys)[1])
    [example] = report["without_link"]["examples"]                      # enrolled: not a skip
    assert (report["counts"], example["contact_id"], report["skipped"]) == ({"enrolled": 1, "enrolled_no_link": 1},
                                                                            cid, {})
    assert (report["run"]["enrolled"], report["run"]["enrolled_without_link"], report["run"]["skipped"]) == (2, 1, 0)
    assert example["detail"].startswith(f"no referral link yet: Referral Factory has none for user {pending['id']}")
    found = json.loads(cli(bridge, "explain", cid, "--json", capsys=capsys)[1])
    assert [e["reason"] for e in found["trail"] if e["event"] == "sync"] == \
        [f"enrolled by sync run 1 from segment {seg}; {example['detail']}"]

    cli(bridge, "sync", "start", "42", capsys=capsys)                     # RF has no link yet: asked, said again
    bridge.drain()
    assert rf.count("GET", f"/users/{pending['id']}") == 1 and intercom.count("PUT", f"/contacts/{cid}") == 0
    status = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (status["already_enrolled"], status["still_without_link"], status["skipped"]) == (2, 1, 0)

    rf.users[pending["id"]]["url"] = "https://rf.example/r/late"          # RF made the link since
    cli(bridge, "sync", "start", "42", capsys=capsys)
    bridge.drain()
    assert rf.count("GET", f"/users/{pending['id']}") == 2 and intercom.count("PUT", f"/contacts/{cid}") == 1
    assert intercom.get(cid)["custom_attributes"]["referral_link"] == "https://rf.example/r/late"
    status = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (status["enrolled"], status["already_enrolled"], status["linked"], status["skipped"]) == (0, 1, 1, 0)
    found = json.loads(cli(bridge, "explain", cid, "--json", capsys=capsys)[1])
    assert found["trail"][-1]["reason"] == f"referral link written to {LINK} by sync run 3 from segment {seg}: " \
                                           "Referral Factory had made none before"
    cli(bridge, "sync", "start", "42", capsys=capsys)                     # written: not asked again
    bridge.drain()
    assert rf.count("GET", f"/users/{pending['id']}") == 2 and creates(rf) == 2


def test_a_referrer_deleted_in_rf_is_said_once_and_never_asked_for_nor_enrolled_again(bridge, intercom, rf, capsys,
                                                                                       monkeypatch):
    """RF answers 404 for a referrer sync enrolled without a link (the owner deleted them in RF): the
    ledger (`sync report`) and `explain` say so, and later runs ask RF nothing for them."""
    seg, contacts = segment(intercom, 1)
    bridge.apply(sync_settings(seg))
    insert = rf._insert

    def without_url(*args, **kwargs):
        return {**insert(*args, **kwargs), "url": None}
    monkeypatch.setattr(rf, "_insert", without_url)
    cli(bridge, "sync", "start", "42", capsys=capsys)
    bridge.drain()
    [user] = rf.users_by_email("person0@example.com")
    del rf.users[user["id"]]                                               # deleted in RF
    cli(bridge, "sync", "start", "42", capsys=capsys)
    bridge.drain()
    assert rf.count("GET", f"/users/{user['id']}") == 1
    report = json.loads(cli(bridge, "sync", "report", "42", "--json", capsys=capsys)[1])
    [example] = report["skipped"]["not_in_rf"]["examples"]
    assert (report["counts"], report["enrolled_in_all"]) == ({"not_in_rf": 1}, 0)
    assert example["detail"].startswith(f"no longer in Referral Factory: user {user['id']} was deleted there")
    found = json.loads(cli(bridge, "explain", contacts[0]["id"], "--json", capsys=capsys)[1])
    assert found["trail"][-1]["reason"] == example["detail"]
    cli(bridge, "sync", "start", "42", capsys=capsys)
    bridge.drain()
    assert rf.count("GET", f"/users/{user['id']}") == 1 and creates(rf) == 1     # not asked again, nor re-created
    assert json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])["skipped"] == 1



def deleted_in_rf(bridge, intercom, rf, capsys, monkeypatch) -> tuple[dict, dict, Any]:
    """Person0 is enrolled by run 1 without a link (RF made none), then deleted in RF: run 2 skips her as
    not_in_rf. Her contact, her RF user, and RF's own insert (which makes links)."""
    seg, contacts = segment(intercom, 1)
    bridge.apply(sync_settings(seg))
    insert = rf._insert
    monkeypatch.setattr(rf, "_insert", lambda *a, **k: {**insert(*a, **k), "url": None})
    cli(bridge, "sync", "start", "42", capsys=capsys)
    bridge.drain()
    [old] = rf.users_by_email("person0@example.com")
    del rf.users[old["id"]]
    cli(bridge, "sync", "start", "42", capsys=capsys)
    bridge.drain()
    assert json.loads(cli(bridge, "sync", "report", "42", "--json", capsys=capsys)[1])["counts"] == {"not_in_rf": 1}
    return contacts[0], old, insert


def linked_by_backfill_then_synced(bridge, intercom, rf, capsys, contact: dict, url: str) -> None:
    """`backfill --apply` links the campaign's people to their contacts, then a run takes the contact as the
    bridge's own referrer: her link written, already enrolled, not deleted in RF, nobody created."""
    assert run_cli(bridge.operator(), capsys, "backfill", "42", "--apply")[0] == 0
    bridge.drain()
    cli(bridge, "sync", "start", "42", capsys=capsys)
    bridge.drain()
    report = json.loads(cli(bridge, "sync", "report", "42", "--json", capsys=capsys)[1])
    assert intercom.get(contact["id"])["custom_attributes"].get("referral_link") == url, report
    assert report["counts"] == {"already_enrolled": 1} and report["enrolled_in_all"] == 1, report
    assert "not_in_rf" not in report["skipped"] and creates(rf) == 1       # taken as hers, not enrolled again


def test_a_referrer_deleted_in_rf_who_joins_again_is_taken_as_the_bridges_referrer_not_left_not_in_rf(
        bridge, intercom, rf, capsys, monkeypatch):
    """Person0 was enrolled without a link, then deleted in RF (run 2: not_in_rf). She then joins the
    campaign again by herself (a new RF user) and `backfill --apply` links her contact as the campaign's
    referrer: the next run takes her as the bridge's own referrer (writes her new link), as for an
    `already_in_campaign` skip, and no longer says she is deleted in RF."""
    contact, old, insert = deleted_in_rf(bridge, intercom, rf, capsys, monkeypatch)
    monkeypatch.setattr(rf, "_insert", insert)
    back = rf.add_user(42, "person0@example.com", "Person 0")          # she joins again: a new RF user
    assert back["id"] != old["id"] and back["url"]
    linked_by_backfill_then_synced(bridge, intercom, rf, capsys, contact, back["url"])


def test_a_referrer_deleted_in_rf_whom_rf_restores_under_the_same_id_is_no_longer_skipped_once_she_joins(
        bridge, intercom, rf, capsys, monkeypatch, clock):
    """Person0 was enrolled without a link, then deleted in RF (run 2: not_in_rf). RF restores her under the
    same id, and her join reaches the bridge after the skip (`backfill --apply` here): the next run takes her
    as the bridge's own referrer (writes her link) instead of saying for ever that she is deleted in RF."""
    contact, user, _ = deleted_in_rf(bridge, intercom, rf, capsys, monkeypatch)
    clock.now += 60
    rf.users[user["id"]] = {**user, "url": "https://rf.example/r/restored"}       # restored: the same id
    linked_by_backfill_then_synced(bridge, intercom, rf, capsys, contact, "https://rf.example/r/restored")


def test_a_contact_skipped_as_already_in_the_campaign_whom_backfill_then_linked_gets_her_referral_link_once(
        bridge, intercom, rf, capsys):
    """Run 1 skips Rita (RF has her email); `backfill --apply` then links her contact as the campaign's
    referrer: the next run takes her as the bridge's own referrer (RF says her link once, written once),
    and a skip that still stands costs no call to RF or Intercom."""
    seg, _ = segment(intercom, 0)
    bridge.apply(sync_settings(seg))
    existing = intercom.add_contact("rita@example.com", role="user", name="Rita")
    other = intercom.add_contact("other@example.com", role="user", name="Other")
    intercom.segment_members[seg].add(existing["id"])
    rita = rf.add_user(42, "rita@example.com", "Rita")
    assert cli(bridge, "sync", "start", "42", capsys=capsys)[0] == 0
    bridge.drain()
    report = json.loads(cli(bridge, "sync", "report", "42", "--json", capsys=capsys)[1])
    [skip] = report["skipped"]["already_in_campaign"]["examples"]
    assert (skip["contact_id"], skip["detail"]) == (existing["id"], "already in the campaign (Referral Factory "
                                                                    "has this email)")
    assert run_cli(bridge.operator(), capsys, "backfill", "42", "--apply")[0] == 0
    bridge.drain()
    assert intercom.get(existing["id"])["custom_attributes"].get("referral_link") is None   # duplicates: skip
    rf.add_user(42, "other@example.com", "Other")     # RF has Other's email too, by now: skipped, and it stands
    intercom.segment_members[seg].add(other["id"])
    puts, users = intercom.count("PUT", "/contacts/"), rf.count(None, "/users")

    assert cli(bridge, "sync", "start", "42", capsys=capsys)[0] == 0
    bridge.drain()
    assert intercom.get(existing["id"])["custom_attributes"]["referral_link"] == rita["url"]
    assert rf.count(None, "/users") - users == 1 + 1 and rf.count("GET", f"/users/{rita['id']}") == 1
    assert intercom.count("PUT", "/contacts/") - puts == 1 and intercom.count("PUT", f"/contacts/{existing['id']}") == 1
    status = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (status["enrolled"], status["already_enrolled"], status["skipped"]) == (0, 1, 1)
    report = json.loads(cli(bridge, "sync", "report", "42", "--json", capsys=capsys)[1])
    assert [e["contact_id"] for e in report["skipped"]["already_in_campaign"]["examples"]] == [other["id"]]

    users = rf.count(None, "/users")
    assert cli(bridge, "sync", "start", "42", capsys=capsys)[0] == 0          # again: the ledger knows both
    bridge.drain()
    assert rf.count(None, "/users") == users and intercom.count("PUT", "/contacts/") - puts == 1
    status = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (status["run"], status["already_enrolled"], status["skipped"]) == (3, 1, 1)


def test_two_contacts_with_one_email_enrol_one_rf_user_once_when_rf_throttles_their_page(bridge, intercom, rf, clock,
                                                                                         capsys):
    """Two contacts of the segment share an email. RF answers 429 to one create: the page waits, then its retry
    gets RF's 422 for the contact whose create the other's made taken already. That contact was enrolled to the
    other's RF user ("an earlier, interrupted try created them"): status said 2 enrolled for 1 create. Now it is
    skipped as already in the campaign, as without the 429."""
    seg, _ = segment(intercom, 0)
    twins = [intercom.add_contact("dup@example.com", role="lead", name=name) for name in ("Ann", "Bea")]
    intercom.segment_members[seg].update(c["id"] for c in twins)
    bridge.apply(sync_settings(seg))
    rf.fail_next("POST", r"^/users$", 429, times=1)
    assert cli(bridge, "sync", "start", "42", capsys=capsys)[0] == 0
    assert bridge.drain()[-1].result["waiting"] == 1             # RF's 429: the page waits
    clock.now += 120                                              # (its pause over)
    bridge.poller.release_delayed()
    bridge.drain()
    status = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (status["status"], status["enrolled"], status["skipped"]) == ("done", 1, 1)
    [user] = rf.users_by_email("dup@example.com", 42)
    linked = [c for c in twins if intercom.get(c["id"])["custom_attributes"].get("referral_link")]
    assert [intercom.get(c["id"])["custom_attributes"]["referral_link"] for c in linked] == [user["url"]]


def test_a_sync_page_reads_the_ledger_strongly_consistently(bridge, intercom, rf, capsys):
    """A page that gave itself back (its Lambda's time ran out) or failed is worked again a second or so later,
    and DynamoDB's default read may not show yet what its try before wrote: an enrolment read as none is counted
    as someone else's (already enrolled), and a `creating` entry read as none loses the user that try created
    (RF's 422 then reads as someone already in the campaign). Each read of the ledger a page makes is strongly
    consistent."""
    from infra.local.counting import AwsCallRecorder
    seg, _ = segment(intercom, 3)
    bridge.apply(sync_settings(seg))
    cli(bridge, "sync", "start", "42", capsys=capsys)
    recorder = AwsCallRecorder()
    with recorder.installed():
        bridge.drain()
    reads = [asked for call in recorder.calls if call.operation == "BatchGetItem"
             for asked in call.params["RequestItems"].values() if asked["Keys"][0]["pk"]["S"] == "SYNC#42"]
    assert reads and all(asked.get("ConsistentRead") for asked in reads), reads
    assert json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])["enrolled"] == 3


def test_a_retried_page_asks_who_else_has_the_email_of_a_user_it_may_have_created_strongly_consistently(
        bridge, intercom, rf, clock, capsys):
    """A page whose create answer was lost is retried: RF answers 422, and the page asks the ledger which other
    contacts have that email (one being created too owns the user). That query read DynamoDB's default, eventually
    consistent view, which may not show an entry written a second before: the contact could take another contact's
    user. It is strongly consistent, as the page's other reads of the ledger."""
    from infra.local.counting import AwsCallRecorder
    seg, [contact] = segment(intercom, 1)
    bridge.apply(sync_settings(seg))
    rf.lose_answer_next("POST", r"^/users$", "500")
    cli(bridge, "sync", "start", "42", capsys=capsys)
    bridge.drain()
    clock.now += 120
    bridge.poller.release_delayed()
    recorder = AwsCallRecorder()
    with recorder.installed():
        bridge.drain()
    queries = [call.params for call in recorder.calls if call.operation == "Query" and '"SYNC#42"' in
               json.dumps(call.params.get("ExpressionAttributeValues"))]
    assert queries and all(asked.get("ConsistentRead") for asked in queries), queries
    status = json.loads(cli(bridge, "sync", "status", "42", "--json", capsys=capsys)[1])
    assert (status["status"], status["enrolled"], len(rf.users_by_email(contact["email"], 42))) == ("done", 1, 1)


def test_a_repeated_page_reads_where_its_run_stands_strongly_consistently(bridge, clock):
    """A page's message delivered again after its checkpoint (its worker died before sending the next page's)
    decides from where the run stands whether to send the next page's again. That read was DynamoDB's default, which
    may show the run as it was before: the repeat was then deleted, and with it the run's only way to its next page."""
    from infra.local.counting import AwsCallRecorder
    runs = bridge.rt.store.sync
    runs.start("42", "full", "users", clock())
    runs.claim_page("42", 1, 0, "w1", clock())
    assert runs.checkpoint("42", 1, 0, "w1", clock(), cursor="c1", counts={"enrolled": 150})
    recorder = AwsCallRecorder()
    with recorder.installed():
        run, took = runs.claim_page("42", 1, 0, "w2", clock())            # the repeat
    assert not took and run is not None and (run.page, run.owner) == (1, None)
    reads = [call.params for call in recorder.calls if call.operation == "GetItem"]
    assert reads and all(asked.get("ConsistentRead") for asked in reads), reads
