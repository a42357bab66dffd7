"""Review 4 of doctor and explain: the same refused join gets the same fix from both; a refusal is resolved
only when every refused person is known to be joined; doctor's JSON counts warnings as `warning_count`;
the "fixed?" warning for Intercom's notifications says why and what to do."""
from __future__ import annotations

from chalicelib.services.explain import as_text as explained, explain
from tests.unit.test_doctor_walk import checks, healthy, look, refuse

SPACE = "email: holds a character no email address can (a space, U+0020, at character 4): fix the email in RF"


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
    from tests.unit.test_doctor_walk import fields_world, lead_joins
    rt = fields_world()
    lead_joins(rt, "7", "bad@example.com", score="three")
    [found] = checks(look(rt)[0], "fields.not_written")
    [entry] = [e for e in explain(rt, "7").view()["trail"] if e["event"] == "fields"]
    assert found["fix"] == entry["fix"] + "; `bridge explain 7` lists each person's fields not written"


def test_a_refusal_is_resolved_only_when_every_refused_person_was_joined_not_just_the_sampled_ones():
    """Scenario: RF's header was wrong for a while and 7 joins were refused; the edge keeps 5 samples. The
    header is fixed (joins accepted since) and the 5 sampled people were joined. Expected: a warning that
    the other 2 may still be missing, with the backfill that lists them — not "resolved since" while 2
    people are not in Intercom (test_walk4_doctor: as many refused as sampled, all joined, is resolved)."""
    from tests.unit import scenario
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
