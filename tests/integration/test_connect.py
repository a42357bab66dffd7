"""Issue 10 §5: connecting checks the token with Intercom, disconnecting keeps everything but the
token and parks the workspace's work in the dead-letter queue until a reconnect and a replay, and
two connected workspaces with campaigns never touch each other. Real parts: moto server, the
simulators, the app over HTTP, the operator's CLI."""
from __future__ import annotations

import json
import shlex

import pytest
import yaml

from chalicelib.cli import main
from chalicelib.config import Config
from chalicelib.domain.history import REPLAYED, clock_time
from chalicelib.runtime import CACHE_SECONDS, Runtime
from chalicelib.services.admin import apply_settings
from chalicelib.services.dead_letters import replay

from tests.support.cli import run_cli
from tests.unit.doctoring import commands

from .conftest import WORKSPACE, join_body, lead_settings, new_lead, qualifying_settings
from .test_failures import outlasting_the_outage_budget
from .test_qualification import qualified_ids
from .test_troubleshooting import doctor, explain


def tokens_used(sim) -> set[str]:
    return {r["headers"].get("Authorization") for r in sim.requests if r["path"] != "/oauth"}


# --- connect checks the token ------------------------------------------------------------------

def test_connect_checks_the_token_with_intercom_and_names_the_workspace(bridge, intercom, capsys):
    intercom.tokens.add("fresh-token")
    assert main(["workspace", "connect", WORKSPACE, "--token", "fresh-token"], rt=bridge.operator()) == 0
    out = capsys.readouterr().out
    assert out == (f"workspace {WORKSPACE} (Acme (simulated)) connected: token set (from --token, checked with "
                   "Intercom), client secret kept (none given), api base default\n")
    assert intercom.requests[-1]["path"] == "/me" and intercom.requests[-1]["headers"]["Authorization"] == \
        "Bearer fresh-token"
    assert bridge.rt.secrets.scoped("worker").get(f"intercom/{WORKSPACE}/token") == "fresh-token"


def test_a_token_intercom_refuses_is_not_stored(bridge, intercom, capsys):
    assert main(["workspace", "connect", WORKSPACE, "--token", "typo-token"], rt=bridge.operator()) == 1
    err = capsys.readouterr().err
    assert err.startswith("bridge: Intercom refused this token (401 at ") and "nothing was stored" in err
    assert "typo-token" not in err
    assert bridge.rt.secrets.scoped("worker").get(f"intercom/{WORKSPACE}/token") == "sim-token"


def test_a_token_of_another_workspace_is_not_stored_and_the_answer_names_its_workspace(
        bridge, intercom, other_workspaces, capsys):
    other = other_workspaces("ws-b", "b-token", app_name="Beta Inc")
    assert main(["workspace", "connect", WORKSPACE, "--token", "b-token", "--api-base", other.base_url],
                rt=bridge.operator()) == 1
    assert capsys.readouterr().err == ("bridge: this token belongs to workspace ws-b (Beta Inc), not "
                                       f"{WORKSPACE}: nothing was stored\n")
    conn = bridge.rt.store.connections.workspace(WORKSPACE)
    assert conn.api_base is None and bridge.rt.secrets.scoped("worker").get(f"intercom/{WORKSPACE}/token") == \
        "sim-token"


@pytest.mark.parametrize("vendor, argv", [("Intercom", ("workspace", "connect", WORKSPACE, "--token", "sim-token")),
                                          ("Referral Factory", ("rf", "connect", "--token", "rf-token"))])
def test_a_vendor_limiting_calls_gets_the_connect_one_line_at_once_saying_when_to_try_again(
        bridge, intercom, rf, clock, capsys, vendor, argv):
    # What a reviewer saw: the vendor's 429 asked to wait an hour, and the connect command sat silent for that hour.
    sim = intercom if vendor == "Intercom" else rf
    sim.fail_next("*", ".", 429, seconds=1e5, headers={"Retry-After": "3600"})
    asked = sim.count()
    operator = Runtime(Config.from_env(), clock=clock, sleeper=clock.sleep)
    code, out, err = run_cli(operator, capsys, *argv)
    assert (code, out, err) == (1, "", f"bridge: {vendor} is limiting calls for now ({vendor} answered 429 and asked "
                                       f"to wait 3600s): nothing was stored; try again after {clock_time(clock() + 3600, clock())}\n")
    assert clock.slept == [] and sim.count() == asked + 1        # asked once, and nothing waited


def test_a_first_connect_without_a_client_secret_warns_that_webhooks_will_be_refused(
        bridge, other_workspaces, capsys):
    other = other_workspaces("ws-c", "c-token")
    assert main(["workspace", "connect", "ws-c", "--token", "c-token", "--api-base", other.base_url],
                rt=bridge.operator()) == 0
    captured = capsys.readouterr()
    assert "client secret missing" in captured.out and "will be refused (401)" in captured.err


# --- disconnect, then reconnect and replay ---------------------------------------------------------

def test_disconnect_keeps_settings_links_and_history_and_parks_the_work_until_reconnect_and_replay(
        bridge, intercom, rf, clock, capsys, joined):
    ann, contact = joined()
    before = bridge.history(42, ann["id"])

    operator = bridge.operator()
    assert main(["workspace", "disconnect", WORKSPACE], rt=operator) == 0
    told = capsys.readouterr().out
    assert "settings, links and history are kept" in told and "--token" not in told
    assert (f'after `bridge workspace connect {WORKSPACE}` (it asks for the token), run '
            f'`bridge dlq replay --reason "Intercom workspace {WORKSPACE} was disconnected"`') in told  # its letters only
    assert bridge.rt.secrets.scoped("worker").get(f"intercom/{WORKSPACE}/token") is None
    clock.now += CACHE_SECONDS                       # running workers notice within their cache time
    calls = len(intercom.requests)

    # Work keeps arriving: accepted at the edge, parked in the dead-letter queue with one reason.
    bob = new_lead(rf, email="bob@example.com", first_name="Bob")
    assert bridge.post_join(join_body(bob)).status_code == 202
    intercom.update_contact(contact["id"], signed_up="Yes")
    assert bridge.notify("contact.lead.updated", contact["id"]).status_code == 200
    bridge.drain()
    dead = bridge.dead_letters()
    assert len(dead) == 2
    assert all(d["reason"] == "workspace disconnected: Intercom workspace vne310wv was disconnected — reconnect it: "
               "`bridge workspace connect vne310wv` (it asks for the token), then "
               '`bridge dlq replay --reason "Intercom workspace vne310wv was disconnected"`' and d["attempts"] == 1
               for d in dead)                                                                       # no retry
    assert len(intercom.requests) == calls and rf.qualification_calls == []        # nothing reached anyone
    # Reconciliation does not fill the dead-letter queue with checks meanwhile.
    assert bridge.reconcile()["paused_workspaces"] == [WORKSPACE] and bridge.queued() == 0

    # Nothing was lost: settings, the link and its history are as they were, plus the reason.
    assert bridge.rt.store.settings.get("42") is not None
    after = bridge.history(42, ann["id"])
    assert after["link"]["contact_id"] == contact["id"] and after["history"] == before["history"]
    assert "workspace disconnected" in bridge.history(42, bob["id"])["history"][-1]["reason"]

    assert main(["workspace", "connect", WORKSPACE, "--token", "sim-token"], rt=operator) == 0
    assert "client secret kept" in capsys.readouterr().out
    assert replay(operator)["replayed"] == 2
    bridge.drain()
    assert bridge.dead_letters() == []
    assert len(intercom.contacts_by_email("bob@example.com")) == 1
    assert qualified_ids(rf) == [ann["id"]]


def test_a_delayed_duplicate_check_of_a_disconnected_workspace_is_parked_at_once_with_the_one_reason(
        bridge, intercom, rf, clock):
    """The created lead's look for duplicates comes after Intercom's search lag, by then the workspace
    is disconnected: its batched read fails for good, so no retries (docs/setup.md, Disconnecting)."""
    bridge.apply(qualifying_settings())
    bridge.post_join(join_body(new_lead(rf)))
    bridge.drain()
    assert main(["workspace", "disconnect", WORKSPACE], rt=bridge.operator()) == 0
    clock.now += CACHE_SECONDS
    assert bridge.later.release() == 1
    bridge.drain()
    [dead] = bridge.dead_letters()
    assert dead["body"]["kind"] == "join.verify" and dead["attempts"] == 1
    assert dead["reason"].startswith("workspace disconnected: Intercom workspace vne310wv was disconnected")


def test_a_warm_worker_names_the_disconnect_at_once_when_the_token_was_revoked_too(bridge, intercom, rf, capsys):
    """Disconnect, then uninstall the app in Intercom: a worker still holding the old client gets a
    401 and says "workspace disconnected", not "token invalid"."""
    bridge.apply(qualifying_settings())
    bridge.post_join(join_body(new_lead(rf)))
    bridge.drain()                                   # the worker's Intercom client is warm
    assert main(["workspace", "disconnect", WORKSPACE], rt=bridge.operator()) == 0
    intercom.revoke("sim-token")
    bridge.post_join(join_body(new_lead(rf, email="bob@example.com", first_name="Bob")))
    bridge.drain()
    [dead] = bridge.dead_letters()
    assert dead["reason"].startswith("workspace disconnected:") and dead["attempts"] == 1


def test_doctor_names_a_disconnected_workspace_and_how_to_bring_its_work_back(bridge, clock, capsys):
    """The disconnect is the one problem: reconciliation, paused by it for hours, waits for the reconnect
    (its schedule is not to blame)."""
    bridge.apply(qualifying_settings())
    bridge.reconcile()
    bridge.drain()
    assert main(["workspace", "disconnect", WORKSPACE], rt=bridge.operator()) == 0
    clock.now += 2 * 3600
    bridge.reconcile()
    code, report = doctor(bridge, capsys)
    assert code == 1
    findings = report["findings"]
    [finding] = [f for f in findings if f["check"] == "intercom.connection"]
    assert finding["what"] == f"workspace {WORKSPACE} is disconnected" and not finding["ok"]
    assert "workspace disconnected" in finding["why"]
    assert finding["fix"] == (f"reconnect it: `bridge workspace connect {WORKSPACE}` (it asks for the token) or by "
                              f'OAuth, then `bridge dlq replay --reason "Intercom workspace {WORKSPACE} was '
                              'disconnected"`')
    [waits] = [f for f in findings if f["check"] == "reconciliation"]
    assert waits == {"check": "reconciliation", "id": "reconciliation", "ok": True, "warn": False, "why": "", "fix": "", "what": (
        f"reconciliation waits for workspace {WORKSPACE} to be reconnected: it searches no changed contacts "
        "without the workspace's token (the last search ran 120 min ago)")}


@pytest.fixture
def beta(other_workspaces, rf):
    """A second workspace, ws-b (its Intercom: token b-token), connected, with campaign 43's settings: connect(operator)
    gives its simulator."""
    def connect(operator):
        sim = other_workspaces("ws-b", "b-token")
        sim.define_attribute("signed_up", "string")
        assert main(["workspace", "connect", "ws-b", "--token", "b-token", "--api-base", sim.base_url], rt=operator) == 0
        rf.add_campaign(43, "Beta friends")
        apply_settings(operator, yaml.safe_dump({"campaign_id": "43", "workspace": "ws-b",
                                                 "leads": {"action": "create_lead", "fields": [
                                                     {"from": "email", "to": "email"}]}}))
        return sim
    return connect


def cat_joins_43(bridge, rf) -> None:
    """Cat, referred by Rob, joins campaign 43 (ws-b's: `beta`)."""
    rob = rf.add_user(43, "rob@example.com", "Rob")
    bridge.post_join(join_body(rf.add_user(43, "cat@example.com", "Cat", referrer_id=rob["id"])))


def test_after_a_disconnect_the_advised_replay_brings_back_that_workspaces_letters_notifications_too_and_no_others(
        bridge, intercom, rf, clock, capsys, joined, beta):
    """A parked Intercom notification names no campaign: `dlq replay --campaign 42` would leave it
    behind, and doctor would say the campaign has no dead letters while one waits. And with two workspaces
    disconnected, reconnecting one: `--reason "workspace disconnected"` also sent back the other's letters, which
    only failed again. Every command advised (the disconnect's answer, the letters' reason, doctor, explain, `dlq
    list`) names the workspace, and each parses."""
    ann, contact = joined()
    operator = bridge.operator()
    beta(operator)
    capsys.readouterr()
    for workspace in ("ws-b", WORKSPACE):
        assert main(["workspace", "disconnect", workspace], rt=operator) == 0
    said = capsys.readouterr().out.splitlines()
    clock.now += CACHE_SECONDS
    bob = new_lead(rf, email="bob@example.com", first_name="Bob")
    bridge.post_join(join_body(bob))
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", contact["id"])
    cat_joins_43(bridge, rf)
    bridge.drain()
    assert len(bridge.dead_letters()) == 3

    advice = f'`bridge dlq replay --reason "Intercom workspace {WORKSPACE} was disconnected"`'
    code, report = doctor(bridge, capsys)
    assert code == 1
    found = [f for f in report["findings"] if f["check"] == "dead_letters"]
    assert [(f["ok"], f["what"].partition(": workspace disconnected")[0]) for f in found] == [
        (False, "1 dead letter(s) of campaign 42"),
        (False, "1 dead letter(s) name no campaign (Intercom notifications)")]
    assert all(advice in f["fix"] for f in found) and "--campaign" in found[1]["why"]
    code, told = explain(bridge, capsys, bob["id"])
    assert code == 0
    [failed] = [e for e in told["trail"] if e["event"] == "dead_letter"]
    assert advice in failed["fix"] and "--campaign" not in failed["fix"]
    code, out, _ = run_cli(bridge.operator(), capsys, "dlq", "list", "--json")
    listed = {d.get("campaign_id"): d["reason"] for d in json.loads(out)["dead_letters"]}    # (the reason advises)
    assert advice in listed["42"] and advice in listed[None] and advice not in listed["43"]
    assert '`bridge dlq replay --reason "Intercom workspace ws-b was disconnected"`' in listed["43"]
    told_b, told_a = said
    advised = {*commands(told_a), *commands(" ".join(f["fix"] for f in found)), *commands(failed["fix"]),
               *commands(listed["42"])}
    assert advised == {f"bridge workspace connect {WORKSPACE}", advice.strip("`")}, advised
    assert "ws-b" in str(commands(told_b))

    # The advice followed, once this workspace is reconnected: both its letters come back, not ws-b's (still
    # disconnected: it would only fail again), and doctor finds no dead letter left.
    assert main(["workspace", "connect", WORKSPACE, "--token", "sim-token"], rt=operator) == 0
    code, out, _ = run_cli(bridge.operator(), capsys, *shlex.split(advice.strip("`"))[1:], "--json")
    assert code == 0 and json.loads(out)["replayed"] == 2
    bridge.drain()
    assert qualified_ids(rf) == [ann["id"]]
    assert [(d["body"]["campaign_id"], d["attempts"]) for d in bridge.dead_letters()] == [("43", 1)]
    code, report = doctor(bridge, capsys)
    assert [(f["ok"], f["what"]) for f in report["findings"]
            if f["check"] == "dead_letters"] == [(True, "no dead letters for campaign 42 or without a campaign")]


def test_a_refused_token_gets_one_fix_everywhere_whose_replay_brings_back_that_workspaces_letters_and_no_others(
        bridge, intercom, rf, clock, capsys, joined, beta, monkeypatch):
    """The admins of two workspaces uninstall the app (Intercom refuses both tokens), for longer than the work waits
    for a reconnect (BRIDGE_OUTAGE_HOURS). doctor's [intercom.token] said `bridge dlq replay` (every letter, of any
    cause or workspace), [dead_letters] and explain `--campaign 42`, and the letters' reason named no workspace:
    three fixes for one problem. Each says the replay by the refusal naming the workspace ([intercom.token] the
    reconnect, and [dead_letters] only the reconnect that fits the token, as the connection records whose it is);
    once it is reconnected, that replay brings back its letters, not the other's (still refused)."""
    joined()
    operator = bridge.operator()
    beta(operator).revoke("b-token")
    intercom.revoke("sim-token")
    bob = new_lead(rf, email="bob@example.com", first_name="Bob")
    bridge.post_join(join_body(bob))
    cat_joins_43(bridge, rf)
    assert len(outlasting_the_outage_budget(bridge, clock, monkeypatch, letters=2)) == 2

    advice = f'bridge dlq replay --reason "Intercom refuses workspace {WORKSPACE}\'s token"'
    code, report = doctor(bridge, capsys)
    fixes = {f["check"]: f["fix"] for f in report["findings"] if not f["ok"]}
    _, told = explain(bridge, capsys, bob["id"])
    [failed] = [e for e in told["trail"] if e["event"] == "dead_letter"]
    _, out, _ = run_cli(bridge.operator(), capsys, "dlq", "list", "--json")
    listed = {d["campaign_id"]: d for d in json.loads(out)["dead_letters"]}
    for fix in (fixes["dead_letters"], failed["fix"], listed["42"]["fix"], listed["42"]["reason"]):
        assert f"`{advice}`" in fix and "--campaign" not in fix, fix
    reconnect = "`bridge workspace connect vne310wv` (it asks for the new token)"
    assert fixes["intercom.token"] == f"{reconnect}; what waits for it then goes on by itself, with no replay"
    assert fixes["dead_letters"] == f"{reconnect}, then `{advice}`"            # (a private app's token: no OAuth link)
    assert listed["42"]["fix"] == failed["fix"] == fixes["dead_letters"]      # `dlq list`, explain know whose too
    assert "ws-b's token" in listed["43"]["fix"] and WORKSPACE not in listed["43"]["fix"]

    intercom.tokens.add("new-token")
    assert main(["workspace", "connect", WORKSPACE, "--token", "new-token"], rt=operator) == 0
    code, out, _ = run_cli(bridge.operator(), capsys, *shlex.split(advice)[1:], "--json")
    assert code == 0 and json.loads(out)["replayed"] == 1
    bridge.drain()
    assert len(intercom.contacts_by_email("bob@example.com")) == 1
    assert [d["body"]["campaign_id"] for d in bridge.dead_letters()] == ["43"]


def test_disconnecting_an_unknown_workspace_is_one_clear_line(bridge, capsys):
    assert main(["workspace", "disconnect", "nope"], rt=bridge.operator()) == 1
    assert capsys.readouterr().err == "bridge: workspace nope is not connected here (nothing to disconnect)\n"


# --- a base URL that would carry the tokens in clear ------------------------------------------------

def test_an_http_intercom_base_url_on_the_stage_keeps_the_webhooks_and_parks_their_work_naming_the_variable(
        bridge, intercom, rf):
    """An `http://` typo in the stage's INTERCOM_BASE_URL (`make deploy` refuses it; an edit in the Lambda
    console does not go through it): the API still takes the joins (202), and their work waits in the
    dead-letter queue with the reason naming the variable, no token sent; fixed, a replay does the work."""
    from dataclasses import replace

    bridge.apply(lead_settings())
    fixed, calls = bridge.rt.config, len(intercom.requests)
    bridge.rt.config = replace(fixed, intercom_base_url="http://api.intercom.example")
    assert bridge.post_join(join_body(new_lead(rf))).status_code == 202
    bridge.drain()
    [dead] = bridge.dead_letters()
    assert dead["reason"] == ("INTERCOM_BASE_URL must be an https:// URL, e.g. https://api.intercom.io (plain http:// "
                              "only to localhost or 127.0.0.1): tokens would travel in clear — fix it in the stage's "
                              "configuration (infra/chalice-config.json) and run `make deploy`, then replay the "
                              "dead-letter queue")
    assert dead["attempts"] == 1 and len(intercom.requests) == calls
    bridge.rt.config = fixed
    assert replay(bridge.operator())["replayed"] == 1
    bridge.drain()
    assert len(intercom.contacts_by_email("ann@example.com")) == 1 and bridge.dead_letters() == []


# --- two workspaces at once ------------------------------------------------------------------------

def test_two_workspaces_with_their_campaigns_work_end_to_end_and_never_touch_each_other(
        bridge, intercom, rf, other_workspaces, clock):
    beta = other_workspaces("ws-b", "b-token", app_name="Beta Inc")
    for name, dtype in (("referral_code", "string"), ("lead_source", "string"), ("signed_up", "string"),
                        ("referral_link", "string")):
        beta.define_attribute(name, dtype)
    operator = bridge.operator()
    assert main(["workspace", "connect", "ws-b", "--token", "b-token", "--client-secret", "b-secret",
                 "--api-base", beta.base_url], rt=operator) == 0
    rf.add_campaign(43, "Beta friends")
    bridge.apply(qualifying_settings())                                           # campaign 42 -> vne310wv
    apply_settings(operator, yaml.safe_dump({**qualifying_settings(), "campaign_id": "43", "workspace": "ws-b"}))

    # The same person joins both campaigns: each workspace gets its own contact.
    ann_a = new_lead(rf)
    referrer_b = rf.add_user(43, "rob@example.com", "Rob")
    ann_b = rf.add_user(43, "ann@example.com", "Ann", referrer_id=referrer_b["id"])
    assert bridge.post_join(join_body(ann_a)).status_code == 202
    assert bridge.post_join(join_body(ann_b)).status_code == 202
    bridge.drain()
    [contact_a] = intercom.contacts_by_email("ann@example.com")
    [contact_b] = beta.contacts_by_email("ann@example.com")
    assert bridge.history(42, ann_a["id"])["link"]["contact_id"] == contact_a["id"]
    assert bridge.history(43, ann_b["id"])["link"]["contact_id"] == contact_b["id"]

    # Beta's contact qualifies Beta's lead only; a notification about Beta's contact id signed as
    # the other workspace changes nothing.
    beta.update_contact(contact_b["id"], signed_up="Yes")
    forged = beta.webhook_payload("contact.lead.updated", contact_b["id"], app_id=WORKSPACE)
    assert bridge.post_intercom(forged).status_code == 200                      # signed with vne310wv's secret
    bridge.drain()
    assert qualified_ids(rf) == []
    payload = beta.webhook_payload("contact.lead.updated", contact_b["id"])
    assert bridge.post_intercom(payload, secret="b-secret").status_code == 200
    assert bridge.post_intercom(payload, secret="client-secret").status_code == 401  # the other's secret
    bridge.drain()
    assert qualified_ids(rf) == [ann_b["id"]]
    assert bridge.history(42, ann_a["id"])["link"]["qualification"] == "pending"

    # Disconnecting Beta parks Beta's work only.
    assert main(["workspace", "disconnect", "ws-b"], rt=operator) == 0
    clock.now += CACHE_SECONDS
    bob_a = new_lead(rf, email="bob@example.com", first_name="Bob")
    bob_b = rf.add_user(43, "bob@example.com", "Bob", referrer_id=referrer_b["id"])
    bridge.post_join(join_body(bob_a))
    bridge.post_join(join_body(bob_b))
    intercom.update_contact(contact_a["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", contact_a["id"])
    bridge.drain()
    assert qualified_ids(rf) == [ann_b["id"], ann_a["id"]]
    assert len(intercom.contacts_by_email("bob@example.com")) == 1 and beta.contacts_by_email("bob@example.com") == []
    [dead] = bridge.dead_letters()
    assert dead["reason"].startswith("workspace disconnected: Intercom workspace ws-b") and \
        dead["body"]["campaign_id"] == "43"

    # Each workspace's API saw only its own token.
    assert tokens_used(intercom) == {"Bearer sim-token"}
    assert tokens_used(beta) == {"Bearer b-token"}


def test_a_cold_worker_parks_a_disconnected_workspaces_work_though_its_attribute_list_is_fresh(
        bridge, intercom, rf, capsys):
    """The attribute list kept on the connection record a moment ago is never served for a disconnected
    workspace: a cold container parks its joins, events, duplicate checks, checks and searches of changed
    contacts, as it did when the list's own call was what refused them. Reconnected and replayed, explain
    shows the parked check resolved."""
    bridge.apply(qualifying_settings())
    ann = new_lead(rf)
    bridge.post_join(join_body(ann))
    bridge.drain()                                   # the list is read and kept; the duplicate check is held
    [contact] = intercom.contacts_by_email("ann@example.com")
    assert bridge.reconcile()["searches"] == 1      # a search of changed contacts, queued
    assert main(["workspace", "disconnect", WORKSPACE], rt=bridge.operator()) == 0
    assert "disconnected" in capsys.readouterr().out
    assert bridge.later.release() == 1               # the duplicate check's time comes
    kept = bridge.rt.store.connections.workspace(WORKSPACE).attribute_list
    assert kept is not None and bridge.rt.clock() - kept.read_at < CACHE_SECONDS
    bridge.rt.forget()                               # a cold container
    calls = len(intercom.requests)

    assert bridge.post_join(join_body(new_lead(rf, email="bob@example.com", first_name="Bob"))).status_code == 202
    intercom.update_contact(contact["id"], signed_up="Yes")
    assert bridge.notify("contact.lead.updated", contact["id"]).status_code == 200
    bridge.drain()
    dead = bridge.dead_letters()
    # The join, the event, the duplicate check, the reconciliation's search of changed contacts and its
    # check of the pending lead.
    assert sorted(d["body"]["kind"] for d in dead) == ["intercom.changes", "intercom.check", "intercom.contact",
                                                         "join.verify", "rf.join"]
    assert all(d["reason"].startswith("workspace disconnected: Intercom workspace vne310wv was disconnected")
               and d["attempts"] == 1 for d in dead)
    assert len(intercom.requests) == calls and rf.qualification_calls == [] and bridge.queued() == 0

    # Reconnected and replayed:
    assert main(["workspace", "connect", WORKSPACE, "--token", "sim-token"], rt=bridge.operator()) == 0
    assert run_cli(bridge.operator(), capsys, "dlq", "replay")[0] == 0
    bridge.drain()
    assert bridge.dead_letters() == []
    # The pending lead's check was parked by its batched read (a dead letter with no failure before it):
    # explain shows it resolved by the qualification the replay made, by the letter's kind, without a fix.
    code, told = explain(bridge, capsys, ann["id"])
    [parked, replayed] = [e for e in told["trail"]
                          if e["event"] == "dead_letter" and e["details"]["kind"] == "intercom.check"]
    assert replayed["outcome"] == "replayed", replayed       # the operator's replay, noted before the retry
    assert parked.get("resolved") and "fix" not in parked
    # So is the parked duplicate check, by the entry its replayed try wrote.
    [verify, _] = [e for e in told["trail"] if e["event"] == "dead_letter" and e["details"]["kind"] == "join.verify"]
    assert verify.get("resolved") and "fix" not in verify
    [checked] = [e for e in told["trail"] if e["event"] == "duplicate_check"]
    assert checked["outcome"] == "unique" and REPLAYED in checked["reason"]
