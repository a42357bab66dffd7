"""Review 4 of doctor and explain: the same refused join gets the same fix from both; a refusal is resolved
only when every refused person is known to be joined; doctor's JSON counts warnings as `warning_count`;
the "fixed?" warning for Intercom's notifications says why and what to do."""
from __future__ import annotations

from chalicelib.domain.history import iso
from chalicelib.ports.edge import RefusalSample
from chalicelib.services.explain import as_text as explained, explain
from tests.unit.test_doctor_walk import checks, healthy, look

SPACE = "email: holds a character no email address can (a space, U+0020, at character 4): fix the email in RF"


def refuse_person(rt, rf_user_id: str, reason: str = "invalid_field", message: str = SPACE) -> None:
    rt.store.edge.refused("campaign:42", RefusalSample(reason, iso(rt.clock()), message, rf_user_id=rf_user_id))


def test_a_join_refused_for_its_email_gets_the_same_fix_from_doctor_and_explain():
    """Scenario: Ann's join is refused because her email holds a space. Doctor says to fix the email in RF,
    then backfill her; explain, asked about Ann, said only "fix the webhook's payload": an operator who
    followed it would fix the email and still never see her in Intercom (RF does not send a refused join
    again)."""
    rt = healthy()
    refuse_person(rt, "7")
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
