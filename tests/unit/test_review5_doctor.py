"""Review of doctor after the session's changes: refused joins kept as digests (an unauthenticated body's
person), and the RF token of another account (its 404s are the token's). On the store's twin and fakes."""
from __future__ import annotations

import json

from chalicelib.errors import Permanent
from chalicelib.services.doctor import examine
from chalicelib.services.ingest import receive_rf_join
from tests.fakes import FakeEdge
from tests.unit import scenario
from tests.unit.test_doctor_walk import checks, healthy, look

GONE = "Referral Factory answered 404: User not found."


def refused_for_its_secret(rt, rf_user_id: str, email: str) -> None:
    """A join RF sent with the wrong X-Bridge-Secret, refused and sampled as the edge keeps it now (the
    person as digests), in campaign 42's log."""
    edge = FakeEdge()
    edge.clock = rt.clock
    raw = json.dumps({"id": rf_user_id, "campaign_id": "42", "email": email}).encode()
    assert receive_rf_join({"X-Bridge-Secret": "old-secret"}, raw, edge).status == 401
    [(campaign, _, sample)] = edge.refusals
    rt.store.edge.refused(f"campaign:{campaign}", sample)


def test_wrong_secret_refusals_whose_people_were_backfilled_are_resolved_not_a_backfill_warning_forever():
    """Scenario: two joins refused for a wrong X-Bridge-Secret; the operator fixes RF's header (joins accepted
    since) and runs `bridge backfill 42 --apply`, which joins both people. The operator then sees:
    `warn [webhooks.rf_refused] ... fixed?` with "the people whose joins were refused are not in Intercom" and
    the backfill fix again, for the 7 days the samples are kept — though everyone was joined. Doctor
    recognised them by the sample's RF id; the edge now keeps only a digest of it, which doctor never
    compares with the joined people (test_walk4_doctor's test builds a sample with the clear id, which the
    edge no longer writes for this reason)."""
    rt = healthy()
    rt.store.edge.heard("workspace:ws", "notification")
    rt.work.clock.now += 60
    refused_for_its_secret(rt, "7", "ann@example.com")
    refused_for_its_secret(rt, "8", "bob@example.com")
    rt.work.clock.now += 60
    rt.store.edge.heard("campaign:42", "join")                      # RF's header fixed
    scenario.joined(rt.work, "7", "ann@example.com")                # the backfill joined both
    scenario.joined(rt.work, "8", "bob@example.com")
    view, text = look(rt)
    [refused] = checks(view, "webhooks.rf_refused")
    assert (refused["ok"], refused["warn"], refused["fix"]) == (True, False, ""), text
    assert refused["what"].endswith("were joined since: resolved since"), refused["what"]


def test_with_an_rf_token_of_another_account_doctor_never_advises_discarding_a_notifications_qualification():
    """Scenario: the RF token is of another RF account than campaign 42's: RF answers 404 for the campaign and
    `User not found.` for every user, so a qualification an Intercom notification made dead-letters that
    notification (its message names no campaign). Doctor knows the token is the cause ([rf.campaign]) and says
    so for the campaign's own letters, but for the notification's it still advises
    `bridge dlq discard --reason "Referral Factory answered 404: User not found" --yes` — no --campaign: it
    takes every campaign's such letters out for good, valid qualifications (rewards) among them."""
    rt = healthy()
    rt.config = type(rt.config).from_env({"BRIDGE_MAX_ATTEMPTS": "3", "BRIDGE_DLQ_URL": "memory://dlq"})
    rt.work.queue.dead_letter(json.dumps({"kind": "intercom.contact", "workspace": scenario.WS,
                                          "item": {"id": "c9", "type": "contact"}}),
                              f"gave up after 3 tries: {GONE}", 3, "2026-09-21T14:00:00Z")
    rt.work.apis.rf_.campaign_answers = [Permanent("Referral Factory answered 404: Campaign not found.", status=404)]
    view = examine(rt, "42").view()                                 # type: ignore[arg-type]
    [campaign] = checks(view, "rf.campaign")
    assert not campaign["ok"] and "`bridge rf connect`" in campaign["fix"]
    [letters] = checks(view, "dead_letters")
    assert "name no campaign" in letters["what"], letters
    assert "dlq discard" not in letters["fix"], letters["fix"]
    assert "`bridge rf connect`" in letters["fix"] and "dlq replay" in letters["fix"]
