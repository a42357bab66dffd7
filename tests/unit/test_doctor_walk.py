"""`bridge doctor` after a tester's walkthrough: a refused-webhook finding shows the fix worked once
webhooks are accepted after the last refusal; Intercom notifications that stop are noticed; mapped
fields that were not written are counted. On the store's twin and fakes, with the fake clock."""
from __future__ import annotations

import json
import re
from typing import Any, Optional

from chalicelib.domain.history import iso
from chalicelib.ports.edge import RefusalSample, campaign_scope
from chalicelib.services.doctor import as_text, examine
from chalicelib.services.ingest import RF_SECRET_HEADER, receive_rf_join
from tests.fakes import FakeEdge
from tests.unit import scenario
from tests.unit.test_doctor_advice import Doctored


def healthy() -> Doctored:
    """A campaign doctor finds nothing wrong with: its attributes exist, a join was heard."""
    rt = Doctored()
    rt.work.apis.intercom_.me = lambda: {"app": {"id_code": scenario.WS}}    # type: ignore[attr-defined]
    rt.work.apis.intercom_.attributes.update({"email": {"data_type": "string"}, "name": {"data_type": "string"}})
    rt.store.edge.heard("campaign:42", "join")
    return rt


def look(rt: Doctored) -> tuple[dict, str]:
    report = examine(rt, "42")
    return report.view(), as_text(report)


def checks(view: dict, check: str) -> list[dict]:
    return [f for f in view["findings"] if f["check"] == check]


def refuse(rt: Doctored, scope: str = "campaign:42", reason: str = "unauthorized",
           message: str = "missing or wrong header", rf_user_id: Optional[str] = None) -> str:
    """A request the edge refused now (of `rf_user_id`'s join, when given): when, as the sample says it. A
    join refused for its secret is sampled by the edge itself (the person it names kept as digests)."""
    at = iso(rt.clock())
    if reason == "unauthorized" and rf_user_id is not None:
        refused_at_edge(rt, rf_user_id)
    else:
        rt.store.edge.refused(scope, RefusalSample(reason, at, message, rf_user_id=rf_user_id))
    return at


def refused_at_edge(rt: Doctored, rf_user_id: str, email: Optional[str] = None, secret: str = "old-secret",
                    **body: object) -> None:
    """RF user `rf_user_id`'s join of campaign 42, sent with `secret` (the edge's is s3cret: by default a wrong
    one), refused by the edge and kept in campaign 42's log as the edge keeps it (services/ingest.receive_rf_join;
    for a wrong secret, the person as digests)."""
    edge = FakeEdge()
    edge.clock = rt.clock
    raw = json.dumps({"id": rf_user_id, "campaign_id": 42, "email": email or f"user{rf_user_id}@example.com",
                      **body}).encode()
    reply = receive_rf_join({RF_SECRET_HEADER: secret, "Content-Type": "application/json"}, raw, edge)
    assert reply.status in (400, 401), reply
    [(campaign, _, sample)] = edge.refusals
    rt.store.edge.refused(campaign_scope(str(campaign)), sample)


# --- 3. refused webhooks, then accepted ones ------------------------------------------------------
def test_joins_accepted_after_the_last_refusal_say_fixed_and_the_report_is_ok_again():
    rt = healthy()
    rt.work.clock.now += 60
    first = refuse(rt, "campaign:42")
    rt.work.clock.now += 120
    last = refuse(rt, "campaign:42")
    view, text = look(rt)
    [refused] = checks(view, "webhooks.rf_refused")                 # refusals are the newest: BAD
    assert not refused["ok"] and not view["ok"] and "fix: in RF, set the webhook's custom header" in text
    assert checks(view, "webhooks.rf") == []

    rt.work.clock.now += 300                                        # RF's header fixed: joins accepted
    rt.store.edge.heard("campaign:42", "join")
    heard = iso(rt.clock())
    view, text = look(rt)
    [refused] = checks(view, "webhooks.rf_refused")
    assert refused["ok"] and refused["warn"] and view["ok"] and view["problems"] == 0    # exit status 0
    assert refused["what"] == (
        f"2 join(s) refused (unauthorized: RF's webhook sends a wrong or no X-Bridge-Secret header) between {first} "
        f"and {last}; joins accepted since (last at {heard}): fixed?")
    assert (refused["why"], refused["fix"]) == ("the people whose joins were refused are not in Intercom",
                                                "`bridge backfill 42` (dry run), then `--apply`")
    assert text.startswith("campaign 42: no problems found, 1 warning(s)")
    assert "  warn [webhooks.rf_refused] 2 join(s) refused" in text
    assert "        fix: `bridge backfill 42` (dry run), then `--apply`" in text
    assert f"ok  [webhooks.rf] joins arrive (last received at {heard})" in text

    rt.work.clock.now += 60                                         # refused again: BAD again
    refuse(rt, "campaign:42")
    view, text = look(rt)
    assert not checks(view, "webhooks.rf_refused")[0]["ok"] and not view["ok"]
    assert "BAD [webhooks.rf_refused] 3 join(s) refused" in text


def test_notifications_accepted_after_a_bad_signature_say_fixed():
    rt = healthy()
    rt.store.edge.heard("workspace:ws", "notification")
    rt.work.clock.now += 60
    refused_at = refuse(rt, "workspace:ws", message="X-Hub-Signature does not verify")
    view, _ = look(rt)
    assert not checks(view, "webhooks.intercom_refused")[0]["ok"]
    rt.work.clock.now += 60
    rt.store.edge.heard("workspace:ws", "notification")
    view, text = look(rt)
    [refused] = checks(view, "webhooks.intercom_refused")
    assert refused["ok"] and refused["warn"] and view["ok"]
    assert (f"warn [webhooks.intercom_refused] 1 Intercom notification(s) for workspace ws refused (unauthorized: "
            f"X-Hub-Signature verifies with the client secret of none of the workspace's apps) between {refused_at} and "
            f"{refused_at}; notifications accepted since (last at {iso(rt.clock())}): fixed?") in text


def test_a_bad_signature_on_a_workspace_connected_by_oauth_alone_is_not_fixed_with_workspace_connect():
    rt = healthy()
    rt.store.connections.unmark(scenario.WS, {"client-secret"})
    rt.store.connections.mark(scenario.WS, {"oauth"})
    refuse(rt, f"workspace:{scenario.WS}", message="X-Hub-Signature does not verify")
    [refused] = checks(look(rt)[0], "webhooks.intercom_refused")
    assert not refused["ok"] and "`bridge workspace oauth-app`" in refused["fix"]
    assert "Enter keeps the token" not in refused["fix"]


def test_a_refusal_lets_the_next_accepted_webhook_be_noted_at_once():
    """The runtime notes "heard" at most once a minute per container; after a refusal it notes the next
    accepted webhook at once, so doctor sees a fix that worked seconds after the refusal."""
    from tests.unit.test_answers import runtime
    rt = runtime()
    rt.store.settings.put("42", {"campaign_id": "42"}, scenario.WS)
    rt.note_heard("campaign:42", "join")
    rt.clock.sleep(5)                                                          # type: ignore[attr-defined]
    rt.note_refusal(RefusalSample("unauthorized", iso(rt.clock()), "m"), campaign_id="42")
    rt.clock.sleep(5)                                                          # type: ignore[attr-defined]
    rt.note_heard("campaign:42", "join")
    assert rt.store.edge.last_heard("campaign:42", "join") == iso(rt.clock())


# --- 5. Intercom notifications that stop -------------------------------------------------------------
def pending(rt: Doctored) -> Any:
    link, _ = scenario.joined(rt.work, email="pat@example.com")
    return link


def test_notifications_that_stopped_while_leads_wait_are_a_warning_naming_the_subscription():
    rt = healthy()
    rt.store.edge.heard("workspace:ws", "notification")
    last = iso(rt.clock())
    pending(rt)
    rt.work.clock.now += 3600
    rt.store.edge.heard("campaign:42", "join")
    view, text = look(rt)
    assert checks(view, "webhooks.intercom")[0]["what"] == f"Intercom notifications arrive (last at {last})"

    rt.work.clock.now += 25 * 3600                                  # the subscription stopped a day ago
    rt.store.edge.heard("campaign:42", "join")
    view, text = look(rt)
    [quiet] = checks(view, "webhooks.intercom")
    assert quiet["ok"] and quiet["warn"]                          # a warning: a workspace may be quiet a day
    assert quiet["what"] == (f"the last Intercom notification for workspace ws was received at {last} (over 24 h "
                             "ago) while 1 lead(s) are pending")
    assert quiet["why"] == ("if contacts changed since, the webhook subscription may have stopped: qualification "
                            "waits for the periodic reconciliation instead of seconds")
    assert quiet["fix"] == ("check the subscription: in Intercom's Developer Hub > Webhooks, set the URL to "
                            "<api>/webhooks/intercom and subscribe the topics contact.lead.updated, "
                            "contact.user.updated, contact.lead.signed_up, contact.merged, contact.deleted, "
                            "contact.archived")
    assert f"  warn [webhooks.intercom] the last Intercom notification for workspace ws was received at {last}" in text
    assert "        fix: check the subscription: in Intercom's Developer Hub > Webhooks" in text


def test_a_quiet_workspace_without_pending_leads_is_not_a_warning():
    rt = healthy()
    rt.store.edge.heard("workspace:ws", "notification")
    last = iso(rt.clock())
    rt.work.clock.now += 48 * 3600
    rt.store.edge.heard("campaign:42", "join")
    view, _ = look(rt)
    assert checks(view, "webhooks.intercom")[0]["what"] == f"Intercom notifications arrive (last at {last})"


# --- 4. mapped fields that were not written -----------------------------------------------------------
def fields_world() -> Doctored:
    rt = healthy()
    doc = scenario.settings()
    doc["leads"]["fields"] += [{"from": "meta.score", "to": "custom_attributes.score"},
                               {"from": "meta.plan", "to": "custom_attributes.plan"},
                               {"from": "meta.vip", "to": "custom_attributes.vip"}]
    rt.store.settings.put("42", doc, scenario.WS)
    rt.store.edge.heard("workspace:ws", "notification")
    rt.work.apis.intercom_.attributes.update({"custom_attributes.score": {"data_type": "integer"},
                                              "custom_attributes.plan": {"data_type": "string"},
                                              "custom_attributes.vip": {"data_type": "boolean"}})
    return rt


def lead_joins(rt: Doctored, user: str, email: str, **meta: Any) -> None:
    from chalicelib.messages import JoinMessage
    person = {"id": user, "campaign_id": "42", "email": email, "first_name": "Pat", "type": "lead",
              "referrer_id": "3", "meta": meta}
    rt.work.apis.rf_.users[user] = {**person}
    assert scenario.run(rt.work, JoinMessage(campaign_id="42", rf_user_id=user, person=person).wire())["done"] == 1
    rt.work.clock.now += 10


def test_fields_not_written_are_counted_per_attribute_and_kind_with_a_few_masked_people_and_the_fix():
    rt = fields_world()
    lead_joins(rt, "7", "bad@example.com", score="three", plan="p" * 300, vip="maybe")
    lead_joins(rt, "8", "odd@example.com", score="lots")
    lead_joins(rt, "9", "fine@example.com", score="3", plan="basic", vip="yes")
    reads = rt.store.edge.refusals
    calls: list[str] = []
    rt.store.edge.refusals = lambda scope: (calls.append(scope), reads(scope))[1]   # type: ignore[method-assign]
    view, text = look(rt)
    assert calls.count("fields:42") == 1                        # one query, no history read
    found = checks(view, "fields.not_written")
    assert [(f["ok"], f["warn"]) for f in found] == [(True, True)] * 3 and view["ok"] and view["warning_count"] == 3
    score, plan, vip = found
    assert score["what"].startswith("2 join(s) applied without custom_attributes.score (not a number, from "
                                    "meta.score) between ")
    assert "o***@example.com (RF user 8)" in score["what"] and "b***@example.com (RF user 7)" in score["what"]
    assert plan["what"].startswith("1 join(s) applied without custom_attributes.plan (text too long, from meta.plan)")
    assert vip["what"].startswith("1 join(s) applied without custom_attributes.vip (not true or false, from meta.vip)")
    assert "three" not in text and "maybe" not in text and "bad@example.com" not in text   # never the values
    assert score["fix"].startswith("fix the values in Referral Factory, or the field mapping")
    assert "`bridge explain 8` lists each person's fields not written" in score["fix"]
    assert text.startswith("campaign 42: no problems found, 3 warning(s)")
    assert "  warn [fields.not_written] 2 join(s) applied without custom_attributes.score (not a number" in text
    assert "        fix: fix the values in Referral Factory, or the field mapping" in text


def test_a_campaign_whose_fields_were_all_written_has_no_such_finding():
    rt = fields_world()
    lead_joins(rt, "9", "fine@example.com", score="3", plan="basic", vip="yes")
    view, _ = look(rt)
    assert checks(view, "fields.not_written") == []


# --- 6. an email with a space is not "a field of the wrong type" ----------------------------------------
def test_a_join_refused_for_its_email_is_labelled_so_with_the_fix_in_rf():
    rt = healthy()
    refuse(rt, "campaign:42", "invalid_field", "email: holds a character no email address can (a space, U+0020, "
                                               "at character 2): fix the email in Referral Factory")
    view, text = look(rt)
    [refused] = checks(view, "webhooks.rf_refused")
    assert refused["what"].startswith("1 join(s) refused (invalid_field: the person's email is not an address, e.g. "
                                      "it holds a space) between ")
    assert refused["fix"] == "fix the email in Referral Factory, then `bridge backfill 42` (dry run), then `--apply`"
    assert "wrong type" not in text
    refuse(rt, "campaign:42", "invalid_field", "first_name: must be text, a number, or true or false")
    [refused] = checks(look(rt)[0], "webhooks.rf_refused")
    assert "(invalid_field: a payload field has a value the bridge does not accept)" in refused["what"]


# --- 7. dead letters doctor could not read -----------------------------------------------------------------
def test_dead_letters_another_command_holds_are_a_warning_not_no_dead_letters():
    """Doctor said `ok [dead_letters] no dead letters for campaign 42` (problems 0, warning_count 0) while the
    campaign's dead letter was held by a `dlq list` running beside it: the operator took it that nothing waited.
    The letters it could not read are now a warning, counted in warning_count, with what to do."""
    import json
    rt = healthy()
    rt.work.queue.dead_letter(json.dumps({"kind": "join", "campaign_id": "42", "rf_user_id": "7"}),
                              "Intercom answered 400: bad", 3, "2026-09-21T14:00:00Z")
    assert [f["ok"] for f in checks(look(rt)[0], "dead_letters")] == [False]
    rt.work.queue.receive_dead(10, 120)                 # another command holds it for 2 minutes
    view, text = look(rt)
    [held] = checks(view, "dead_letters")
    assert (held["ok"], held["warn"], view["problems"], view["warning_count"]) == (True, True, 0, 1), text
    assert held["what"].startswith("about 1 dead letter(s) could not be read (hidden by another command")
    assert "no dead letters" not in text and "`bridge doctor 42` again" in held["fix"]


def test_pending_leads_past_the_scan_are_said_as_a_lower_bound(monkeypatch):
    """Doctor reads at most PENDING_SCAN pending links (of every campaign): past it, it said `1 lead(s) wait for
    qualification` of a campaign with 2 waiting. A count of a cut list says so."""
    from chalicelib.services import doctor
    rt = healthy()
    scenario.joined(rt.work, "7", "ann@example.com")
    scenario.joined(rt.work, "8", "bob@example.com")
    assert checks(look(rt)[0], "pending")[0]["what"].startswith("2 lead(s) wait for qualification; the oldest")
    monkeypatch.setattr(doctor, "PENDING_SCAN", 1)
    [waiting] = checks(look(rt)[0], "pending")
    assert waiting["what"].startswith("1 or more lead(s) wait for qualification (the first 1 pending links of all "
                                      "campaigns were read)"), waiting["what"]


# --- --json: each finding's own id ------------------------------------------------------------------------
def test_findings_that_share_a_check_each_have_their_own_id_the_same_from_run_to_run():
    """Five poison letters of campaign 42 were five `"check": "dead_letters"` findings a machine could not
    tell apart (nor follow from one run to the next): each has its own `id`, its check and a discriminator."""
    from tests.unit.test_join_use_case import join
    rt = healthy()
    for n, reason in enumerate(("Intercom answered 400: bad email", "Intercom answered 400: bad name",
                                "Referral Factory answered 404: User not found.", "gave up after 3 tries: timeout",
                                "workspace disconnected")):
        rt.queue.dead_letter(json.dumps(join(user=str(n))), reason, 3, "t")
    refuse(rt, reason="unauthorized")
    refuse(rt, reason="invalid_field", rf_user_id="7")
    view, _ = look(rt)
    ids = [f["id"] for f in view["findings"]]
    assert len(ids) == len(set(ids)) and all(i == f["check"] or i.startswith(f["check"] + ":")
                                             for i, f in zip(ids, view["findings"]))
    letters = [f["id"] for f in checks(view, "dead_letters")]
    assert len(letters) == 5 and all(re.fullmatch(r"dead_letters:campaign:[0-9a-f]{8}", i) for i in letters)
    assert {f["id"] for f in checks(view, "webhooks.rf_refused")} == {"webhooks.rf_refused:unauthorized",
                                                                     "webhooks.rf_refused:invalid_field"}
    rt.queue.dead_letter(json.dumps(join(user="9")), "Intercom answered 400: bad phone", 3, "t")
    again = [f["id"] for f in look(rt)[0]["findings"]]
    assert set(ids) < set(again) and len(again) == len(ids) + 1          # the same ids, and the new letter's
