"""`bridge doctor` after a tester's walkthrough: a refused-webhook finding shows the fix worked once
webhooks are accepted after the last refusal; Intercom notifications that stop are noticed; mapped
fields that were not written are counted; doctor and explain give one refused join the same fix; refused
joins whose people were all joined since are resolved; the people a workspace move left behind are their own
warning. On the store's twin and fakes, with the fake clock."""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Optional

import pytest

from chalicelib.config import Config
from chalicelib.domain.history import iso
from chalicelib.domain.link import PersonRef
from chalicelib.errors import Permanent, Transient
from chalicelib.ports.edge import RefusalSample, campaign_scope
from chalicelib.services.explain import as_text as explained, explain
from chalicelib.services.ingest import RF_SECRET_HEADER, receive_rf_join
from tests.fakes import FakeEdge
from tests.unit import scenario
from tests.unit.doctoring import Doctored, checks, healthy, look
from tests.unit.moves import apply

KEPT = ", or within the minute after: the edge notes it at most once a minute"   # (when last received)


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
    refused_body(rt, {"id": rf_user_id, "campaign_id": 42, "email": email or f"user{rf_user_id}@example.com",
                      **body}, secret)


def refused_body(rt: Doctored, body: dict, secret: str = "s3cret") -> None:
    """A join's `body` (by default with the right secret) refused by the edge and kept as it keeps it."""
    edge = FakeEdge()
    edge.clock = rt.clock
    raw = json.dumps(body).encode()
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
    assert refused["fix"].endswith(", then `bridge backfill 42` (dry run), then `--apply`"), refused["fix"]  # as fixed
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
    assert f"ok  [webhooks.rf] joins arrive (last received at {heard}{KEPT})" in text

    rt.work.clock.now += 60                                         # refused again: BAD again
    refuse(rt, "campaign:42")
    view, text = look(rt)
    assert not checks(view, "webhooks.rf_refused")[0]["ok"] and not view["ok"]
    assert "BAD [webhooks.rf_refused] 3 join(s) refused" in text


def test_joins_refused_before_the_settings_are_backfilled_in_one_wording_before_and_after_the_settings():
    """A user walk: joins of campaign 43 refused as unknown_campaign had the fix "... then `bridge backfill 43
    --apply`" while it had no settings, and "`bridge backfill 43` (dry run), then `--apply`" once it had."""
    from chalicelib.ports.edge import UNKNOWN
    from chalicelib.services.doctor import examine

    rt = healthy()
    rt.store.edge.refused(UNKNOWN, RefusalSample("unknown_campaign", iso(rt.clock()), "m", campaign_id="43"))
    [before] = checks(examine(rt, "43").view(), "settings")
    rt.store.settings.put("43", {**scenario.settings(), "campaign_id": "43"}, scenario.WS)
    [after] = checks(examine(rt, "43").view(), "webhooks.before_settings")
    backfill = "`bridge backfill 43` (dry run), then `--apply`"
    assert before["fix"] == f"apply its settings: `bridge settings apply <file>`, then {backfill}", before["fix"]
    assert after["fix"] == backfill, after["fix"]


def test_joins_refused_before_the_settings_are_resolved_once_backfill_joined_their_people():
    """An operator's walk: joins of campaign 42 refused as unknown_campaign, its settings applied, `bridge backfill 42
    --apply` joined them; doctor still said BAD [webhooks.before_settings] with the backfill as its fix (exit 1, for
    the 7 days the edge keeps the refusals), where `explain` said each refusal "(resolved since)". Expected: BAD while
    one is missing, then resolved since (ok, no fix), as every other refused join's finding."""
    from chalicelib.ports.edge import UNKNOWN

    rt = healthy()
    rt.store.edge.heard("workspace:ws", "notification")
    for user in ("7", "8"):
        rt.store.edge.refused(UNKNOWN, RefusalSample("unknown_campaign", iso(rt.clock()), "m", rf_user_id=user,
                                                     campaign_id="42"))
    rt.work.clock.now += 60
    scenario.joined(rt.work, "7", "ann@example.com")                     # the backfill joined one: still BAD
    view, _ = look(rt)
    [before] = checks(view, "webhooks.before_settings")
    assert not before["ok"] and before["fix"] == "`bridge backfill 42` (dry run), then `--apply`", before

    scenario.joined(rt.work, "8", "bob@example.com")                     # ... and the other
    view, text = look(rt)
    [before] = checks(view, "webhooks.before_settings")
    assert (before["ok"], before["warn"], before["why"], before["fix"]) == (True, False, "", ""), before
    assert before["what"] == ("2 join(s) for campaign 42 were refused as unknown_campaign (they came before its "
                              "settings existed); the 2 refused people sampled (RF users 7, 8) were joined since: "
                              "resolved since"), before
    assert view["ok"] and text.startswith("campaign 42: no problems found\n"), text


def test_joins_refused_before_the_settings_past_the_samples_kept_stay_a_warning_once_those_sampled_were_joined():
    """The edge keeps a few samples of the one bucket of campaigns without settings (5 a reason and hour): a
    refusal it did not sample may be this campaign's, whose person may still be missing: a warning, with the
    backfill that lists them."""
    from chalicelib.ports.edge import SAMPLES, UNKNOWN

    rt = healthy()
    rt.store.edge.heard("workspace:ws", "notification")
    refuse = [RefusalSample("unknown_campaign", iso(rt.clock()), "m", rf_user_id="7", campaign_id="42")] + [
        RefusalSample("unknown_campaign", iso(rt.clock()), "m", rf_user_id=str(100 + n), campaign_id="43")
        for n in range(SAMPLES)]
    for sample in refuse:
        rt.store.edge.refused(UNKNOWN, sample)
    rt.work.clock.now += 60
    scenario.joined(rt.work, "7", "ann@example.com")
    view, _ = look(rt)
    [before] = checks(view, "webhooks.before_settings")
    assert (before["ok"], before["warn"], before["fix"]) == (True, True, "`bridge backfill 42` (dry run), then "
                                                                         "`--apply`"), before
    assert before["what"].endswith("; the refused person (RF user 7) was joined since, others may not be sampled")


def test_rfs_webhook_whose_joins_were_refused_before_the_settings_is_not_said_missing_once_they_were_joined():
    """An operator's walk: joins of campaign 42 refused as unknown_campaign (before its settings), then `bridge backfill
    42 --apply` joined them, and no join since: doctor stayed BAD [webhooks.rf] "no join of campaign 42 was ever
    received", fix "set up the webhook in RF", exit 1, while the refused joins prove RF's webhook is set up (its secret
    was right: the edge checks it before the campaign). It says what is true, ok: none was accepted yet, the webhook
    reaches the bridge, the last refused when; past QUIET_HOURS, to check RF's webhook if people joined since."""
    from chalicelib.ports.edge import UNKNOWN
    from chalicelib.services.doctor import QUIET_HOURS

    rt = healthy()
    rt.store.edge.beats.clear()                                          # no join was ever accepted
    rt.store.edge.heard("workspace:ws", "notification")
    refused_at = iso(rt.clock())
    for user in ("7", "8"):
        rt.store.edge.refused(UNKNOWN, RefusalSample("unknown_campaign", refused_at, "m", rf_user_id=user,
                                                     campaign_id="42"))
    rt.work.clock.now += 60
    for user, email in (("7", "ann@example.com"), ("8", "bob@example.com")):     # `bridge backfill 42 --apply`
        scenario.joined(rt.work, user, email)
    view, text = look(rt)
    [rf] = checks(view, "webhooks.rf")
    assert (rf["ok"], rf["warn"], rf["fix"]) == (True, False, ""), rf
    assert rf["what"] == ("no join of campaign 42 was accepted yet, but RF's webhook reaches the bridge: its joins "
                          f"were refused before the campaign's settings existed (the last at {refused_at})")
    assert view["ok"] and text.startswith("campaign 42: no problems found\n"), text
    rt.work.clock.now += (QUIET_HOURS + 1) * 3600
    [rf] = checks(look(rt)[0], "webhooks.rf")
    assert rf["ok"] and rf["what"].endswith(f"(the last at {refused_at}, over {QUIET_HOURS} h ago): if people "
                                            "joined since, check RF's webhook"), rf


def test_joins_refused_before_the_settings_are_counted_as_the_edge_knows_them_at_least_past_its_samples():
    """[webhooks.before_settings] said "N join(s) were refused" of N samples, while the edge keeps a few samples (5 a
    reason and hour) of its one bucket of campaigns without settings, and counts them all together: 7 refusals of
    campaign 42 in an hour were said 5. Exact while every refusal of the bucket was sampled, else "at least N", with
    what the edge counted; `settings` of a campaign without settings says it alike."""
    from chalicelib.ports.edge import SAMPLES, UNKNOWN
    from chalicelib.services.doctor import examine

    rt = healthy()
    for n in range(SAMPLES + 2):          # 43's first (sampled, its settings not applied), then 42's six (4 sampled)
        rt.store.edge.refused(UNKNOWN, RefusalSample("unknown_campaign", iso(rt.clock()), "m", rf_user_id=str(n),
                                                     campaign_id="43" if n == 0 else "42"))
    counted = (f"the edge sampled {SAMPLES} of the {SAMPLES + 2} joins it refused for campaigns without settings, "
               "counted together: the others may be this campaign's too")
    [before] = checks(look(rt)[0], "webhooks.before_settings")
    assert before["what"] == (f"at least {SAMPLES - 1} join(s) for campaign 42 were refused as unknown_campaign (they "
                              f"came before its settings existed; {counted})"), before
    [unset] = checks(examine(rt, "43").view(), "settings")
    assert unset["what"] == (f"campaign 43 has no settings here; at least 1 join(s) for it were refused as "
                             f"unknown_campaign ({counted})"), unset


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
            f"X-Hub-Signature verifies with the client secret of none of the workspace's apps) at {refused_at}; "
            f"notifications accepted since (last at {iso(rt.clock())}): fixed?") in text   # (one: not "between T and T")


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
    assert checks(view, "webhooks.intercom")[0]["what"] == f"Intercom notifications arrive (last received at {last}{KEPT})"

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


def test_the_topics_doctor_names_are_those_the_campaigns_settings_need():
    """`match: email` also needs a duplicate created already at the target (a user an app creates at sign-up) and the
    lead's email changed; ongoing contact sync needs new contacts: doctor names those topics too, where it names
    the subscription (docs/setup.md, Setting up Intercom, step 2)."""
    rt = healthy()
    pending(rt)
    rule = {**scenario.RULE, "match": "email"}
    apply(rt.work, {**scenario.settings(rule), "sync": {"mode": "ongoing", "fields": [
        {"from": "email", "to": "email"}, {"from": "name", "to": "first_name"}],
        "referral_link_attribute": "custom_attributes.referral_link"}})
    view, text = look(rt)
    [never] = checks(view, "webhooks.intercom")
    assert never["what"].startswith("no Intercom contact notification was ever received for workspace ws"), text
    assert never["fix"] == ("in Intercom's Developer Hub > Webhooks, set the URL to <api>/webhooks/intercom and "
                            "subscribe the topics contact.lead.updated, contact.user.updated, contact.lead.signed_up, "
                            "contact.merged, contact.deleted, contact.archived, contact.user.created, "
                            "contact.lead.created, contact.email.updated")
    apply(rt.work, scenario.settings())                               # match: contact, no sync: the six
    assert checks(look(rt)[0], "webhooks.intercom")[0]["fix"].endswith("contact.deleted, contact.archived")


def test_a_quiet_workspace_without_pending_leads_is_not_a_warning():
    rt = healthy()
    rt.store.edge.heard("workspace:ws", "notification")
    last = iso(rt.clock())
    rt.work.clock.now += 48 * 3600
    rt.store.edge.heard("campaign:42", "join")
    view, _ = look(rt)
    assert checks(view, "webhooks.intercom")[0]["what"] == f"Intercom notifications arrive (last received at {last}{KEPT})"


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


def test_a_fixed_value_intercom_refused_is_fixed_in_intercom_or_the_settings_not_in_referral_factory():
    """A user walk: the rule's initial value (a fixed value the settings write), refused by Intercom (the attribute
    archived there), was said "(refused by Intercom, fixed value)" with the fix "fix the values in Referral Factory,
    ...": no value of RF's is in it. Its fix is the attribute in Intercom, or the value in the settings."""
    from tests.unit.test_refused_attributes import archived

    rt = fields_world()
    archived(rt.work, "signed_up")
    lead_joins(rt, "7", "ann@example.com")
    [refused] = checks(look(rt)[0], "fields.not_written")
    assert "custom_attributes.signed_up (refused by Intercom, fixed value)" in refused["what"], refused["what"]
    assert refused["fix"].startswith("fix the attribute in Intercom (Settings > Data > People: it exists, is not "
                                     "archived, is writable, the value meets its rules), or the fixed value in the "
                                     "settings (then `bridge settings apply`), or map another; `bridge explain 7`")
    assert "Referral Factory" not in refused["fix"], refused["fix"]
    # `bridge explain 7`, which doctor points to, says the same fix on her entry (it said RF's values)
    [entry] = [e for e in explain(rt.work, "7").view()["trail"] if (e["event"], e["outcome"]) == ("fields",
                                                                                                  "not_written")]
    assert refused["fix"].startswith(entry["fix"] + "; `bridge explain 7`"), (entry["fix"], refused["fix"])


def test_explain_says_the_values_fix_of_fields_not_written_beside_a_fixed_value_intercom_refused():
    """A join whose fields not written are a value of RF's that does not convert and a fixed value Intercom refused:
    explain's one entry keeps the fix of RF's values (the fixed value's attribute is named in it too)."""
    from tests.unit.test_refused_attributes import archived

    rt = fields_world()
    archived(rt.work, "signed_up")
    lead_joins(rt, "7", "ann@example.com", score="three")
    [entry] = [e for e in explain(rt.work, "7").view()["trail"] if (e["event"], e["outcome"]) == ("fields",
                                                                                                  "not_written")]
    assert len(entry["details"]["errors"]) == 2 and entry["fix"].startswith("fix the values in Referral Factory"), entry


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
                                      "it holds a space) at ")   # (one refusal: no span)
    assert refused["fix"] == "fix the email in Referral Factory, then `bridge backfill 42` (dry run), then `--apply`"
    assert "wrong type" not in text
    refuse(rt, "campaign:42", "invalid_field", "first_name: must be text, a number, or true or false")
    [refused] = checks(look(rt)[0], "webhooks.rf_refused")
    assert "(invalid_field: a payload field has a value of a type or shape the bridge does not accept" in \
        refused["what"]


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
    qualification` of a campaign with 2 waiting. Past it, the campaign's own links are read too (all of them here:
    the count is whole); a count of a list both reads cut says so."""
    from chalicelib.services import doctor
    rt = healthy()
    scenario.joined(rt.work, "7", "ann@example.com")
    scenario.joined(rt.work, "8", "bob@example.com")
    assert checks(look(rt)[0], "pending")[0]["what"].startswith("2 lead(s) wait for qualification; the oldest")
    monkeypatch.setattr(doctor, "PENDING_SCAN", 1)
    assert checks(look(rt)[0], "pending")[0]["what"].startswith("2 lead(s) wait for qualification; the oldest")
    monkeypatch.setattr(doctor, "SCAN_LIMIT", 1)
    [waiting] = checks(look(rt)[0], "pending")
    assert waiting["what"].startswith("1 or more lead(s) wait for qualification (the first 1 pending links of all "
                                      "campaigns and the first 1 joins of campaign 42 were read)"), waiting["what"]


ANOTHER_CONTACT = {"contact": "not by another contact with their email (that counts under `qualification.match: email` only)",
        "email": "or if another contact with their email meets the rule"}


@pytest.mark.parametrize("match", sorted(ANOTHER_CONTACT))
@pytest.mark.parametrize("state", ["deleted", "archived"])
def test_leads_whose_contact_was_deleted_or_archived_are_counted_apart_from_those_waiting(state, match):
    """Reconciliation's sweep skips a lead whose contact Intercom deleted or archived (the link says so): doctor
    counted it as waiting for qualification, and searched duplicates of its email (finding the contact the person
    has now, with `match: contact`). It is said apart, with what brings it back: under `match: contact` (the
    default), another contact with their email is a duplicate, whose change does not count."""
    from chalicelib.domain.history import Entry
    from chalicelib.domain.link import ContactState
    rt = healthy()
    rt.store.settings.put("42", scenario.settings({**scenario.RULE, "match": match}), scenario.WS)
    pending(rt)
    ann, _ = scenario.joined(rt.work, "8", "ann@example.com")
    rt.store.links.set_contact(ann, [Entry("contact", state)], state=ContactState(state))   # (Intercom's webhook)
    rt.store.edge.heard("workspace:ws", "notification")
    rt.work.apis.intercom_.add("ann@example.com")          # (her contact now: another than the one linked)
    view, text = look(rt)
    assert [f["what"].partition("; the oldest")[0] for f in checks(view, "pending")] == [
        "1 lead(s) wait for qualification",
        f"1 lead(s) whose contact was deleted or archived in Intercom: they qualify only if it is restored, "
        f"{ANOTHER_CONTACT[match]} (reconciliation's sweep skips them) — e.g. RF user 8"], text
    assert checks(view, "duplicates") == [] and view["ok"], text


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


# --- a refusal for one person's data, and the same fix from doctor and explain ------------------------
SPACE = "email: holds a character no email address can (a space, U+0020, at character 4): fix the email in RF"


def test_a_join_refused_for_its_email_stays_a_problem_when_other_peoples_joins_are_accepted_after_it():
    """Scenario: RF sends Ann's join with an email holding a space: the edge refuses it (400 invalid_field,
    "email: holds a character no email address can ..."). A minute later Bob joins with a good email and
    his join is accepted, as every other join is: nothing about Ann changed (her email is still wrong in RF,
    and `bridge backfill` reads her as unreadable until it is fixed there).
    Expected: doctor keeps the refusal a problem (exit 1) with its fix — fix the email in Referral Factory,
    then backfill. An accepted join says the webhook works, not that a person's bad data was fixed.
    Before: any accepted join newer than the refusal turned it into an ok warning "joins accepted since ...:
    fixed?" (exit 0), and its fix lost "fix the email in Referral Factory" (only `bridge backfill`, which
    cannot send her while her email is wrong)."""
    rt = healthy()
    rt.work.clock.now += 60
    refuse(rt, "campaign:42", "invalid_field", "email: holds a character no email address can (a space, U+0020, "
                                               "at character 4): fix the email in Referral Factory")
    rt.work.clock.now += 60
    rt.store.edge.heard("campaign:42", "join")                       # Bob's join, accepted
    view, text = look(rt)
    [refused] = checks(view, "webhooks.rf_refused")
    assert "fix the email in Referral Factory" in refused["fix"], refused
    assert not refused["ok"] and not view["ok"], text
    assert "fixed?" not in refused["what"] and "do not fix it" in refused["what"], refused


def test_a_join_refused_for_its_email_gets_the_same_fix_from_doctor_and_explain():
    """Scenario: Ann's join is refused because her email holds a space. Doctor says to fix the email in RF,
    then backfill her; explain, asked about Ann, said only "fix the webhook's payload": an operator who
    followed it would fix the email and still never see her in Intercom (RF does not send a refused join
    again)."""
    rt = healthy()
    refuse(rt, reason="invalid_field", message=SPACE, rf_user_id="7")
    [refused] = checks(look(rt)[0], "webhooks.rf_refused")
    [entry] = [e for e in explain(rt, "7").view()["trail"] if e["event"] == "webhook_refused"]
    fix = "fix the email in Referral Factory, then `bridge backfill 42` (dry run), then `--apply`"
    assert refused["fix"] == entry["fix"] == fix
    assert f"fix: {fix}" in explained(explain(rt, "7"))


def test_fields_not_written_get_the_same_fix_from_doctor_and_explain():
    """Doctor's finding and explain's entry for a mapped field a join was applied without said the fix in
    two wordings (one of them "map the field to an attribute of a type it converts to", the other "the
    field mapping"): the operator reads one fix."""
    rt = fields_world()
    lead_joins(rt, "7", "bad@example.com", score="three")
    [found] = checks(look(rt)[0], "fields.not_written")
    [entry] = [e for e in explain(rt, "7").view()["trail"] if e["event"] == "fields"]
    assert found["fix"] == entry["fix"] + "; `bridge explain 7` lists each person's fields not written"


def test_refused_intercom_notifications_followed_by_accepted_ones_say_why_and_what_to_do():
    """Scenario: Intercom's notifications were refused (a wrong client secret), then the secret was fixed
    and notifications are accepted again. Doctor said "... fixed?" with no why and no fix: the operator could
    not tell whether the refused ones were lost or what to do about them."""
    rt = healthy()
    rt.work.clock.now += 60
    refuse(rt, "workspace:ws", message="bad signature")
    rt.work.clock.now += 60
    rt.store.edge.heard("workspace:ws", "notification")
    view, text = look(rt)
    [refused] = checks(view, "webhooks.intercom_refused")
    assert refused["warn"] and refused["what"].endswith("fixed?"), refused
    assert refused["why"].startswith("Intercom does not send a refused notification again")
    assert refused["fix"].startswith("nothing to do if notifications keep being accepted: the scheduled "
                                     "reconciliation searches Intercom's changed contacts and catches those "
                                     "qualifications up")
    assert "        why: Intercom does not send a refused notification again" in text


# --- refused joins whose people were joined since -----------------------------------------------------
def test_refused_joins_whose_people_were_all_joined_since_are_resolved_without_a_fix():
    """Scenario: two joins refused for their own data (the right secret, an email with a space in it); joins
    accepted since; the emails fixed in RF, `bridge backfill 42 --apply` joins one person, then the other.
    Expected: BAD while one is missing, then resolved since (ok, no warning, no fix). Before: BAD with its fix,
    forever."""
    rt = healthy()
    rt.store.edge.heard("workspace:ws", "notification")
    rt.work.clock.now += 60
    refused_at_edge(rt, "7", "a nn@example.com", secret="s3cret")
    refused_at_edge(rt, "8", "b ob@example.com", secret="s3cret")
    rt.work.clock.now += 60
    rt.store.edge.heard("campaign:42", "join")
    scenario.joined(rt.work, "7", "ann@example.com")                     # the backfill joined one: still BAD
    view, _ = look(rt)
    [refused] = checks(view, "webhooks.rf_refused")
    assert not refused["ok"] and "do not fix it" in refused["what"] and "resolved" not in refused["what"]

    scenario.joined(rt.work, "8", "bob@example.com")                     # ... and the other
    view, text = look(rt)
    [refused] = checks(view, "webhooks.rf_refused")
    assert (refused["ok"], refused["warn"], refused["why"], refused["fix"]) == (True, False, "", "")
    assert refused["what"].endswith("; the 2 refused people sampled (RF users 7, 8) were joined since: resolved "
                                    "since"), refused
    assert view["warning_count"] == 0 and text.startswith("campaign 42: no problems found\n")
    assert "  ok  [webhooks.rf_refused] 2 join(s) refused (invalid_field" in text
    assert "not in Intercom" not in text


def test_joins_refused_for_their_secret_keep_only_digests_and_are_resolved_once_their_people_were_joined():
    """A wrong X-Bridge-Secret: the edge keeps the person such a body names only as digests (anyone can send
    one); doctor recognises them by the digests of the campaign's joined people: resolved since, no fix."""
    rt = healthy()
    rt.work.clock.now += 60
    refused_at_edge(rt, "7")
    rt.work.clock.now += 60
    rt.store.edge.heard("campaign:42", "join")
    scenario.joined(rt.work, "7", "ann@example.com")
    [sample] = rt.store.edge.refusals("campaign:42").samples
    assert sample.rf_user_id is None and sample.rf_user_digest == rt.store.edge.digest("rf_user", "7")
    view, _ = look(rt)
    [refused] = checks(view, "webhooks.rf_refused")
    assert (refused["ok"], refused["warn"], refused["fix"]) == (True, False, ""), refused
    assert refused["what"].endswith("resolved since"), refused


def test_two_refusal_reasons_kept_as_digests_read_the_campaigns_joined_people_once(monkeypatch):
    """Each reason's digest-only samples are matched with the campaign's joined people (up to SCAN_LIMIT
    links): one read for the whole report, not one per reason."""
    rt = healthy()
    rt.work.clock.now += 60
    refused_at_edge(rt, "7", "ann@example.com")
    [sample] = rt.store.edge.refusals("campaign:42").samples
    rt.store.edge.refused("campaign:42", dataclasses.replace(sample, reason="not_configured"))
    rt.work.clock.now += 60
    rt.store.edge.heard("campaign:42", "join")
    scenario.joined(rt.work, "7", "ann@example.com")
    reads = []
    read = rt.store.links.joined_people
    monkeypatch.setattr(rt.store.links, "joined_people", lambda c: reads.append(c) or read(c))
    refused = checks(look(rt)[0], "webhooks.rf_refused")
    assert [r["what"].endswith("resolved since") for r in refused] == [True, True], refused
    assert reads == ["42"]


def test_a_refusal_still_the_newest_stays_a_problem_even_if_its_people_were_joined():
    rt = healthy()
    rt.work.clock.now += 60
    scenario.joined(rt.work, "7", "ann@example.com")
    refused_at_edge(rt, "7")                              # the header is still wrong
    view, _ = look(rt)
    [refused] = checks(view, "webhooks.rf_refused")
    assert not refused["ok"] and "resolved" not in refused["what"] and "fixed?" not in refused["what"]


def test_a_refused_join_whose_email_was_joined_under_another_rf_id_is_resolved_and_a_stranger_is_not():
    """The edge keeps a wrong-secret body's person as digests: doctor recognises them by the RF id or by
    the email of the campaign's joined people; a body naming nobody joined stays a warning."""
    rt = healthy()
    rt.store.edge.heard("workspace:ws", "notification")
    rt.work.clock.now += 60
    refused_at_edge(rt, "9", "Ann@Example.com")
    rt.work.clock.now += 60
    rt.store.edge.heard("campaign:42", "join")
    scenario.joined(rt.work, "7", "ann@example.com")
    [refused] = checks(look(rt)[0], "webhooks.rf_refused")
    assert refused["what"].endswith("the refused person (RF user 7) was joined since: resolved since"), refused
    refused_at_edge(rt, "8", "eve@example.com")
    rt.work.clock.now += 60
    rt.store.edge.heard("campaign:42", "join")
    [refused] = checks(look(rt)[0], "webhooks.rf_refused")
    assert refused["warn"] and "resolved" not in refused["what"]


def test_a_refused_join_not_found_among_the_first_links_read_says_it_was_not_checked_past_them(monkeypatch):
    """joined_people stops at SCAN_LIMIT links (here 1): the refused person (RF user 9, PERSON#9 read after
    PERSON#10) may be joined past them. A user would see: `fixed?` with "the people whose joins were refused
    are not in Intercom" and nothing saying doctor did not look; expected: it says what it did not check."""
    rt = healthy()
    rt.work.clock.now += 60
    refused_at_edge(rt, "9", "ann@example.com")
    rt.work.clock.now += 60
    rt.store.edge.heard("campaign:42", "join")
    scenario.joined(rt.work, "10", "bob@example.com")
    scenario.joined(rt.work, "9", "ann@example.com")
    read = rt.store.links.joined_people
    monkeypatch.setattr(rt.store.links, "joined_people", lambda c: read(c, scan_limit=1))
    [refused] = checks(look(rt)[0], "webhooks.rf_refused")
    assert refused["warn"] and "resolved" not in refused["what"], refused
    assert "; whether they were joined since was not checked past the first 2,000 joins of campaign 42; joins " \
           "accepted since" in refused["what"], refused


def test_a_refusal_is_resolved_only_when_every_refused_person_was_joined_not_just_the_sampled_ones():
    """Scenario: RF's header was wrong for a while and 7 joins were refused; the edge keeps 5 samples. The
    header is fixed (joins accepted since) and the 5 sampled people were joined. Expected: a warning that
    the other 2 may still be missing, with the backfill that lists them — not "resolved since" while 2
    people are not in Intercom (as many refused as sampled, all joined, is resolved: above)."""
    rt = healthy()
    rt.store.edge.heard("workspace:ws", "notification")
    rt.work.clock.now += 60
    for user in "1234567":
        refuse(rt, rf_user_id=user)
    rt.work.clock.now += 60
    rt.store.edge.heard("campaign:42", "join")
    for user in "12345":
        scenario.joined(rt.work, user, f"p{user}@example.com")
    view, text = look(rt)
    [refused] = checks(view, "webhooks.rf_refused")
    assert (refused["ok"], refused["warn"]) == (True, True) and "resolved" not in refused["what"]
    assert refused["what"].endswith("; the 5 refused people sampled (RF users 1, 2, 3, 4, 5) were joined since, "
                                    "the other 2 are not sampled"), refused
    assert refused["fix"] == "`bridge backfill 42` lists the rest (dry run), then `--apply`"
    assert "may still be missing from Intercom" in refused["why"] and view["warning_count"] == 1
    assert "        fix: `bridge backfill 42` lists the rest (dry run), then `--apply`" in text


def test_wrong_secret_refusals_whose_people_were_backfilled_are_resolved_not_a_backfill_warning_forever():
    """Scenario: two joins refused for a wrong X-Bridge-Secret; the operator fixes RF's header (joins accepted
    since) and runs `bridge backfill 42 --apply`, which joins both people. The operator then sees:
    `warn [webhooks.rf_refused] ... fixed?` with "the people whose joins were refused are not in Intercom" and
    the backfill fix again, for the 7 days the samples are kept — though everyone was joined. Doctor
    recognised them by the sample's RF id; the edge now keeps only a digest of it, which doctor never
    compared with the joined people (a sample built with the clear id, which the edge no longer writes for
    this reason, hid it)."""
    rt = healthy()
    rt.store.edge.heard("workspace:ws", "notification")
    rt.work.clock.now += 60
    refused_at_edge(rt, "7", "ann@example.com")
    refused_at_edge(rt, "8", "bob@example.com")
    rt.work.clock.now += 60
    rt.store.edge.heard("campaign:42", "join")                      # RF's header fixed
    scenario.joined(rt.work, "7", "ann@example.com")                # the backfill joined both
    scenario.joined(rt.work, "8", "bob@example.com")
    view, text = look(rt)
    [refused] = checks(view, "webhooks.rf_refused")
    assert (refused["ok"], refused["warn"], refused["fix"]) == (True, False, ""), text
    assert refused["what"].endswith("were joined since: resolved since"), refused["what"]


# --- the people a workspace move left behind (`settings apply --move-workspace`) ----------------------
def moved_to_ws_b(rt: Doctored) -> None:
    """`bridge settings apply --move-workspace` naming ws-b, which is connected (its token is ws-b's)."""
    rt.work.clock.now += 60
    apply(rt.work, {**scenario.settings(), "workspace": "ws-b"}, move=True)
    rt.store.connections.put_workspace("ws-b", ["token", "client-secret"])
    rt.work.apis.intercom_.me = lambda: {"app": {"id_code": "ws-b"}}      # type: ignore[attr-defined]


LEFT = ("1 linked person of campaign 42 stays in workspace ws (of them 1 pending lead(s)): the campaign names "
        "workspace ws-b now, so they no longer qualify")
LEFT_WHY = "their contacts stay in ws, whose changes no longer count for campaign 42: its pending leads there never qualify"
LEFT_FIX = ("to make them count, apply campaign 42 back to workspace ws (`workspace: ws`, `bridge settings apply`); "
            "nothing to do if the move is intended")


def test_after_a_move_the_leads_left_in_the_old_workspace_are_their_own_warning_not_the_new_workspaces_pending():
    """Scenario: Pat is a pending lead linked in ws; the campaign is moved to ws-b (--move-workspace), whose
    Intercom has sent no notification yet. Expected: doctor says Pat stays in ws and no longer qualifies, with
    the fix (apply the campaign back to ws), and does not count Pat as ws-b's pending lead nor blame ws-b's
    webhook subscription. Before: `ok [pending] 1 lead(s) wait` and `BAD [webhooks.intercom] no Intercom
    contact notification was ever received for workspace ws-b while 1 lead(s) are pending`."""
    rt = healthy()
    pending(rt)
    moved_to_ws_b(rt)
    view, text = look(rt)
    assert checks(view, "webhooks.intercom") == [], text
    assert [f["what"] for f in checks(view, "pending")] == ["no lead is waiting for qualification"]
    [left] = checks(view, "workspace.left_behind")
    assert (left["ok"], left["warn"], left["what"], left["why"], left["fix"]) == (True, True, LEFT, LEFT_WHY, LEFT_FIX)
    assert view["ok"] and view["problems"] == 0, text
    assert f"  warn [workspace.left_behind] {LEFT}\n        why: {LEFT_WHY}\n        fix: {LEFT_FIX}" in text
    assert "not subscribed" not in text

    rt.work.clock.now += 60                                        # the fix: applied back to ws
    apply(rt.work, scenario.settings(), move=True)
    rt.work.apis.intercom_.me = lambda: {"app": {"id_code": "ws"}}        # type: ignore[attr-defined]
    view, text = look(rt)
    assert checks(view, "workspace.left_behind") == [], text
    assert checks(view, "pending")[0]["what"].startswith("1 lead(s) wait for qualification")
    assert checks(view, "webhooks.intercom")[0]["what"].startswith(
        "no Intercom contact notification was ever received for workspace ws while 1 lead(s) are pending")


def test_a_campaign_never_applied_in_another_workspace_has_no_left_behind_finding_nor_its_read():
    rt = healthy()
    pending(rt)
    read = []
    links = rt.store.links
    original = links.linked_elsewhere
    links.linked_elsewhere = lambda *a: read.append(a) or original(*a)    # type: ignore[method-assign]
    view, _ = look(rt)
    assert checks(view, "workspace.left_behind") == [] and read == []


# --- walk 6: refusals whose fix is the webhook's setup, a type error, RF's `User not found`, "heard" ---------
BACKFILL_42 = "`bridge backfill 42` (dry run), then `--apply`"


@pytest.mark.parametrize("body", [
    {"campaign_id": 42},                                            # missing_user_id: a test body typed by hand
    {"id": "7", "campaign_id": 42, "email": 7},                     # invalid_field: `email: must be text`
    {"id": "7", "campaign_id": 42, "email": "ann@example.com", "referrer_id": True},   # a boolean referrer id
    {"id": "7", "user_id": "8", "campaign_id": 42},                 # an id sent twice with two values
], ids=["no id", "email not text", "referrer id true", "id twice"])
def test_a_refusal_whose_fix_is_the_webhooks_payload_is_fixed_once_joins_are_accepted_after_it(body):
    """Walkthrough: ONE test webhook sent by hand without `id` (`curl ... -d '{"campaign_id":42}'`) kept doctor
    BAD (exit 1) for the 7 days the refusal is kept: it names nobody, so nothing could ever resolve it, and it
    said both "joins accepted since do not fix it (it is about those people's own data)" and "add the field
    `id` to RF's webhook payload". A refusal whose fix is the payload (a field missing, of the wrong type or
    shape, sent twice) is the webhook's setup, as a wrong header is: BAD with the payload's fix while it is
    the newest, then a warning "fixed?" (exit 0) once joins are accepted after it."""
    rt = healthy()
    rt.work.clock.now += 60
    refused_body(rt, body)
    view, text = look(rt)
    [refused] = checks(view, "webhooks.rf_refused")
    assert not refused["ok"] and not view["ok"], text
    assert "payload" in refused["fix"] and refused["fix"].endswith(BACKFILL_42), refused["fix"]
    assert "fix the email in Referral Factory" not in refused["fix"]

    rt.work.clock.now += 60
    rt.store.edge.heard("campaign:42", "join")                      # a join of RF's, accepted
    view, text = look(rt)
    [refused] = checks(view, "webhooks.rf_refused")
    assert (refused["ok"], refused["warn"], view["ok"]) == (True, True, True), text
    assert refused["what"].endswith("fixed?") and "do not fix it" not in text, refused["what"]
    assert refused["fix"] == BACKFILL_42


def test_a_join_refused_for_an_email_that_is_not_text_is_the_payloads_problem_not_the_persons_email():
    """Walkthrough: a join with `"email": 7` was said to be refused because "the person's email is not an
    address, e.g. it holds a space", fix "fix the email in Referral Factory", while its sample said `email: must
    be text`: no email in RF is a number; the webhook's payload (or whoever typed the body) sent one. Doctor and
    explain say so, with the payload's fix."""
    rt = healthy()
    refused_body(rt, {"id": "7", "campaign_id": 42, "email": 7})
    view, text = look(rt)
    [refused] = checks(view, "webhooks.rf_refused")
    assert refused["what"].startswith("1 join(s) refused (invalid_field: a payload field has a value of a type or "
                                      "shape the bridge does not accept") and 'e.g. "email: must be text"' in text
    assert "not an address" not in text and "fix the email in Referral Factory" not in text
    [entry] = [e for e in explain(rt, "7").view()["trail"] if e["event"] == "webhook_refused"]
    assert entry["fix"] == refused["fix"]


GONE = "Referral Factory answered 404: User not found."
DISCARD = '`bridge dlq discard --reason "Referral Factory answered 404: User not found" --campaign 42 --yes`'


def test_a_letter_rf_answered_user_not_found_while_the_token_reaches_the_campaign_is_advised_the_discard():
    """Walkthrough: RF answered 404 `User not found.` for a join's user; doctor showed `ok [rf.campaign]` (the
    token reaches the campaign) and still gave both branches (wrong RF account: fix the token and replay; user
    deleted: discard), with "why: this work is stopped until it is replayed", though a replay fails again.
    With the campaign shown, the token is not the cause: the user is gone from it, and the discard is the fix.
    While the campaign could not be checked (RF unavailable), both branches stay."""
    from tests.unit.test_join_use_case import join
    rt = healthy()
    rt.work.clock.now += 780        # failed with the token doctor checks (no worker keeps another, nor a batch runs on)
    rt.work.queue.dead_letter(json.dumps(join(user="9")), GONE, 3, iso(rt.clock()))
    view, text = look(rt)
    [campaign], [letters] = checks(view, "rf.campaign"), checks(view, "dead_letters")
    assert campaign["ok"] and DISCARD in letters["fix"], letters["fix"]
    assert "rf connect" not in letters["fix"] and "dlq replay" not in letters["fix"], letters["fix"]
    assert "until it is replayed" not in letters["why"] and "a replay fails the same way" in letters["why"]

    rt.work.apis.rf_.campaign_answers = [Transient("Referral Factory answered 503: down", status=503)]
    view, _ = look(rt)
    [campaign], [letters] = checks(view, "rf.campaign"), checks(view, "dead_letters")
    assert not campaign["ok"] and "`bridge rf connect`" in letters["fix"] and DISCARD in letters["fix"]
    assert "until it is replayed" not in letters["why"] and "only if the RF token was the cause" in letters["why"]


@pytest.mark.parametrize("failed_after_the_token,lease", [(-600, "120"), (240, "120"), (700, "120"), (880, "300")])
def test_user_not_found_letters_that_failed_with_the_rf_token_replaced_since_are_not_advised_the_discard_alone(
        failed_after_the_token, lease):
    """An RF token of another account: RF answers `User not found` for every user, and a join's work is
    dead-lettered so. The operator connects the campaign's account's token (`bridge rf connect`); doctor now shows
    the campaign, but the letter failed with the old token: a replay succeeds. Doctor said "the user was deleted
    in RF" and advised the discard alone: following it lost the join (or a lead's reward). Also of a letter that
    failed minutes after the token was stored (the replay README advises right after `rf connect`, or a new join):
    a running worker keeps the token it read, and another account's token is never refused (no 401 to read again);
    and its batch, which took the old token at the last moment, is dead-lettered as it ends (700 s: one the worker
    began at 599 s and ended within its lease; 880 s, within the lease of a stage deployed with 300 s, as the CLI
    reads its environment once `--stage` applied it, not as this process began)."""
    from tests.unit.test_join_use_case import join
    rt = healthy()
    rt.config = Config.from_env({"BRIDGE_MAX_ATTEMPTS": "3", "BRIDGE_LEASE_SECONDS": lease})   # (as FakeWork)
    failed = rt.clock() + 960

    def connect() -> None:
        rt.store.connections.put_rf(["token"])                      # the right account's token

    def fail() -> None:
        rt.work.queue.dead_letter(json.dumps(join(user="9")), GONE, 3, iso(rt.clock()))
    for rt.work.clock.now, done in sorted([(failed, fail), (failed - failed_after_the_token, connect)]):
        done()
    view, _ = look(rt)
    [campaign], [letters] = checks(view, "rf.campaign"), checks(view, "dead_letters")
    assert campaign["ok"] and "`bridge dlq replay --campaign 42`" in letters["fix"], letters["fix"]
    assert "so the user was deleted in RF" not in letters["fix"], letters["fix"]
    assert "can never succeed" not in letters["why"] and "only if the RF token was the cause" in letters["why"]


@pytest.mark.parametrize("unseen", ["variant", "hidden"])
def test_the_discard_alone_is_advised_only_when_every_letter_it_takes_out_was_seen_failing_after_the_token(unseen):
    """The discard doctor advises for `User not found` letters matches a part of the reason across all the
    campaign's letters, but doctor decided it over the letters of one exact reason it read: a letter of another
    wording (`gave up after 3 tries: …User not found`) that failed with the RF token replaced since, or one another
    command held, was discarded with them, though a replay saves it. Both fixes stay then."""
    from tests.unit.test_join_use_case import join
    rt = healthy()
    early = "gave up after 3 tries: Referral Factory answered 404: User not found" if unseen == "variant" else GONE
    rt.work.queue.dead_letter(json.dumps(join(user="8")), early, 3, iso(rt.clock()))   # with the token replaced
    if unseen == "hidden":
        rt.work.queue.receive_dead(1, 1200)                 # another command holds it
    rt.work.clock.now += 660
    rt.work.queue.dead_letter(json.dumps(join(user="9")), GONE, 3, iso(rt.clock()))
    [late] = [f for f in checks(look(rt)[0], "dead_letters") if f["what"].endswith(GONE)]
    assert DISCARD in late["fix"] and "`bridge dlq replay --campaign 42`" in late["fix"], late["fix"]
    assert "so the user was deleted in RF" not in late["fix"], late["fix"]


@pytest.mark.parametrize("unseen", ["stored after", "hidden"])
def test_doctor_says_its_own_rf_token_check_in_the_fix_of_the_campaigns_user_not_found_letters(unseen):
    """A user walk: the campaign's `User not found` letters failed before the RF token was stored (`rf connect` of
    the campaign's account's token), or beside a letter another command held; doctor's [rf.campaign] showed the
    campaign with the token, and its dead-letter fix still said "(`bridge doctor` checks it) — then fix the token:
    `bridge rf connect`": doctor telling the operator to run doctor, and to fix the token it had just shown. It
    says what [rf.campaign] showed and the replay that asks RF again with that token, then the discard."""
    from tests.unit.test_join_use_case import join
    rt = healthy()
    rt.work.queue.dead_letter(json.dumps(join(user="8")), GONE, 3, iso(rt.clock()))
    if unseen == "hidden":
        rt.work.queue.receive_dead(1, 1200)                 # another command holds it
        rt.work.clock.now += 660
        rt.work.queue.dead_letter(json.dumps(join(user="9")), GONE, 3, iso(rt.clock()))
    else:
        rt.work.clock.now += 600
        rt.store.connections.put_rf(["token"])              # the campaign's account's token, after the letter failed
    view = look(rt)[0]
    [campaign], [letters] = checks(view, "rf.campaign"), [f for f in checks(view, "dead_letters") if f["what"].endswith(GONE)]
    assert campaign["ok"] and "bridge doctor" not in letters["fix"] and "rf connect" not in letters["fix"], letters
    assert letters["fix"].startswith("Referral Factory says it does not have this user: [rf.campaign] shows the RF "
                                     "token reaches campaign 42, but letters of this reason may have failed with the "
                                     "one before it"), letters["fix"]
    assert letters["fix"].endswith("replay them, RF is asked again with this one: `bridge dlq replay --campaign 42` "
                                   "(see `bridge dlq list`); those that fail the same way again are of users deleted "
                                   f"in RF: {DISCARD} takes them out (each person's history says so)"), letters["fix"]


@pytest.mark.parametrize("campaign_answer", [None, Transient("Referral Factory answered 503: down", status=503),
                                             Permanent("Referral Factory answered 401: Unauthenticated", status=401)],
                         ids=["shown", "unavailable", "token-refused"])
def test_a_letter_of_a_user_rf_places_in_another_campaign_is_said_to_fail_again_on_replay(campaign_answer):
    """Walkthrough: a join whose user RF places in campaign 43, not the webhook's 42, was advised the discard with
    "why: this work is stopped until it is replayed", though a replay fails the same way, whatever the RF token."""
    from tests.unit.test_join_use_case import join
    rt = healthy()
    rt.work.queue.dead_letter(json.dumps(join(user="9")), "RF user 9 belongs to campaign 43, not 42", 1,
                              "2026-09-21T14:00:00Z")
    if campaign_answer is not None:
        rt.work.apis.rf_.campaign_answers = [campaign_answer]
    [letters] = checks(look(rt)[0], "dead_letters")
    assert "dlq discard" in letters["fix"] and "dlq replay" not in letters["fix"], letters["fix"]
    assert "until it is replayed" not in letters["why"] and "a replay fails the same way" in letters["why"], letters


def test_doctor_says_no_dead_letters_as_the_readme_says_it():
    """The README said doctor never says "no dead letters"; it says so when it read every letter and none is
    the campaign's (it never does when some could not be read: a warning instead)."""
    from tests.support.docs import docs_text
    readme = " ".join(docs_text().split())        # the README and docs/*.md
    [none] = checks(look(healthy())[0], "dead_letters")
    assert none["what"] == "no dead letters for campaign 42 or without a campaign"
    assert 'never "no dead letters"' not in readme
    assert "`no dead letters for campaign N or without a campaign`" in readme


def test_when_joins_and_notifications_were_last_received_says_it_is_kept_to_the_minute():
    """Walkthrough: `ok [webhooks.rf] joins arrive (last received at 23:04:52)` after joins at 23:05:13 and
    23:05:30: the edge notes "heard" at most once a minute per container (a join costs no write beyond that),
    so the time shown may be up to a minute before the latest. The line says so."""
    rt = healthy()
    scenario.joined(rt.work, "7", "ann@example.com")                # a pending lead: notifications are checked
    rt.store.edge.heard("workspace:ws", "notification")
    view, text = look(rt)
    [joins], [notes] = checks(view, "webhooks.rf"), checks(view, "webhooks.intercom")
    for finding in (joins, notes):
        assert finding["ok"] and finding["what"].endswith(f"{KEPT})"), finding["what"]


def test_dead_letter_reasons_show_emails_masked_in_doctor_and_dlq_list_and_the_reason_still_selects_them(capsys):
    """Intercom's refusal of a contact names its email: doctor's finding and `dlq list` (text, `by_reason` and each
    letter's reason in --json) printed it as stored, where explain masks it. Masked there too; `--reason` matches
    the stored reason, so the part the operator types still selects the letter."""
    from types import SimpleNamespace

    from chalicelib.config import Config
    from tests.support.cli import run_cli
    from tests.unit.test_join_use_case import join
    rt = healthy()
    refused = "Intercom answered 400: invalid email ann.lee@example.com"
    rt.work.queue.dead_letter(json.dumps(join(user="9")), refused, 1, iso(rt.clock()))
    view, text = look(rt)
    cli = SimpleNamespace(config=Config.from_env({"BRIDGE_DLQ_URL": "https://sqs/dlq"}), queue=rt.work.queue,
                          clock=rt.work.clock, store=rt.work.store)
    listed = [run_cli(cli, capsys, "dlq", "list", *json_)[1] for json_ in ([], ["--json"])]
    for shown in (text, json.dumps(view), *listed):
        assert "ann.lee@" not in shown and "invalid email a***@example.com" in shown, shown
    assert json.loads(listed[1])["by_reason"] == {"Intercom answered 400: invalid email a***@example.com": 1}
    code, out, err = run_cli(cli, capsys, "dlq", "discard", "--reason", "email ann.lee@example.com", "--yes")
    assert code == 0 and out.startswith("1 dead letter(s) discarded"), (out, err)


def test_a_join_left_in_progress_is_named_without_a_qualification_it_does_not_have():
    """A join whose worker died holding its claim: doctor said "RF user 9: in_progress, qualification None"
    (Python's None, of a person not linked yet)."""
    rt = healthy()
    rt.store.links.claim(PersonRef("42", "9"), scenario.WS)
    rt.work.clock.now += 3 * 3600
    view, _ = look(rt)
    [late] = checks(view, "reconciliation.overdue")
    assert late["what"] == ("1 link(s) of campaign 42 left unfinished (e.g. RF user 9: in_progress; reconciliation has "
                            "not queued its finishing work yet) for over 60 min after their worker's claim ran out")


@pytest.mark.parametrize("joined", [
    lambda now: iso(now),                                                 # ISO-8601 in UTC, as the simulator
    lambda now: int(now),                                                 # unix seconds
    lambda now: iso(now)[:19],                                            # ISO-8601 naming no zone (UTC)
], ids=["iso-utc", "unix-seconds", "iso-no-zone"])
def test_rfs_newest_person_an_hour_old_and_never_arrived_is_said_whatever_form_rf_gives_the_time(joined, monkeypatch):
    """RF's newest person is sorted by `signed_up_at` read as a time in any form (unix seconds, ISO-8601, UTC when
    it names no zone), but their age was read from ISO-8601 alone, by the computer's own time zone: unix seconds read
    as no time at all ("may still be on its way", for ever), and a time naming no zone was hours off on an operator's
    laptop west of UTC, so a webhook missing for an hour went unsaid."""
    import time

    with monkeypatch.context() as zone:         # (the zone the process had is set again after it)
        zone.setenv("TZ", "America/New_York")
        time.tzset()
        try:
            rt = healthy()
            rt.work.apis.rf_.created.append({"id": 77, "campaign_id": 42, "email": "quiet@example.com",
                                             "signed_up_at": joined(rt.clock() - 3600)})
            [missing] = checks(look(rt)[0], "webhooks.rf_missing")
        finally:
            zone.undo()
            time.tzset()
    assert not missing["ok"] and missing["what"].startswith("the newest person in RF's campaign 42 (RF user 77"), missing
