"""Review of what doctor and `dlq` advise after the session's changes: refused joins kept as digests (an
unauthenticated body's person), the RF token of another account (its 404s are the token's), and failed
searches of changed contacts said superseded. On the store's twin and fakes."""
from __future__ import annotations

import json

from chalicelib.errors import Permanent
from chalicelib.services.dead_letters import look
from chalicelib.services.doctor import examine
from chalicelib.services.worker import handle_batch
from tests.support.cli import run_cli
from tests.unit import scenario
from tests.unit.test_doctor_walk import checks, healthy, look as doctor_look, refused_at_edge
from tests.unit.test_reconcile_outage import doctored, outage
from tests.unit.test_reconciliation import changed, changes

GONE = "Referral Factory answered 404: User not found."


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
    refused_at_edge(rt, "7", "ann@example.com")
    refused_at_edge(rt, "8", "bob@example.com")
    rt.work.clock.now += 60
    rt.store.edge.heard("campaign:42", "join")                      # RF's header fixed
    scenario.joined(rt.work, "7", "ann@example.com")                # the backfill joined both
    scenario.joined(rt.work, "8", "bob@example.com")
    view, text = doctor_look(rt)
    [refused] = checks(view, "webhooks.rf_refused")
    assert (refused["ok"], refused["warn"], refused["fix"]) == (True, False, ""), text
    assert refused["what"].endswith("were joined since: resolved since"), refused["what"]


def with_a_notifications_letter(reason: str, rf_answer: Exception) -> dict:
    """Doctor's view of campaign 42 while an Intercom notification's letter (it names no campaign) failed for
    `reason`, and RF answers `rf_answer` when asked for the campaign."""
    rt = healthy()
    rt.config = type(rt.config).from_env({"BRIDGE_MAX_ATTEMPTS": "3", "BRIDGE_DLQ_URL": "memory://dlq"})
    rt.work.queue.dead_letter(json.dumps({"kind": "intercom.contact", "workspace": scenario.WS,
                                          "item": {"id": "c9", "type": "contact"}}), reason, 3, "2026-09-21T14:00:00Z")
    rt.work.apis.rf_.campaign_answers = [rf_answer]
    return examine(rt, "42").view()                                 # type: ignore[arg-type]


def test_a_revoked_rf_token_gets_one_replay_from_doctor_that_reaches_a_notifications_letter_too():
    """Scenario: RF refuses the bridge's token (revoked): a qualification an Intercom notification made
    dead-letters that notification (its message names no campaign). A user would see: [rf.campaign] said
    `bridge dlq replay --campaign 42`, which leaves that letter (a reward) in the queue, while [dead_letters]
    said another command. Expected: both say the one replay by RF's refusal, which reaches every letter."""
    revoked = ("Referral Factory answered 401: Unauthenticated. — the RF token is invalid: run `bridge rf connect`, "
               "then replay the dead-letter queue")
    view = with_a_notifications_letter(revoked, Permanent(revoked, status=401))
    [campaign], [letters] = checks(view, "rf.campaign"), checks(view, "dead_letters")
    replay = "`bridge dlq replay --reason 'Referral Factory answered 401'`"
    assert replay in campaign["fix"] and "--campaign" not in campaign["fix"], campaign["fix"]
    assert replay in letters["fix"], letters["fix"]


def test_with_an_rf_token_of_another_account_doctor_never_advises_discarding_a_notifications_qualification():
    """Scenario: the RF token is of another RF account than campaign 42's: RF answers 404 for the campaign and
    `User not found.` for every user, so a qualification an Intercom notification made dead-letters that
    notification (its message names no campaign). Doctor knows the token is the cause ([rf.campaign]) and says
    so for the campaign's own letters, but for the notification's it still advises
    `bridge dlq discard --reason "Referral Factory answered 404: User not found" --yes` — no --campaign: it
    takes every campaign's such letters out for good, valid qualifications (rewards) among them."""
    view = with_a_notifications_letter(f"gave up after 3 tries: {GONE}",
                                       Permanent("Referral Factory answered 404: Campaign not found.", status=404))
    [campaign] = checks(view, "rf.campaign")
    assert not campaign["ok"] and "`bridge rf connect`" in campaign["fix"]
    [letters] = checks(view, "dead_letters")
    assert "name no campaign" in letters["what"], letters
    assert "dlq discard" not in letters["fix"], letters["fix"]
    assert "`bridge rf connect`" in letters["fix"] and "dlq replay" in letters["fix"]




def test_after_the_first_search_of_a_workspace_fails_the_next_that_succeeds_still_covers_its_window():
    """Scenario: a lead's contact meets the target (its webhook lost); reconciliation's very first search of
    the workspace (no cursor yet: it looks back 7 days) fails, and Intercom answers again 8 days later. The
    operator is told "nothing is lost: the next search that succeeds covers every change" and, once it did,
    that the failed search is superseded (`bridge dlq discard --superseded --yes`). But that search looked
    back 7 days from its own time, after the change: the lead is never qualified by a search, and a replay of
    the failed one (now from the cursor) would not find it either."""
    rt = doctored()
    work = rt.work
    [contact] = work.apis.intercom_.contacts.values()
    changed(work, contact, "Yes")                       # its webhook lost
    work.clock.now += 2 * 86400
    outage(rt, 1)                                        # the first search ever: it would have found the change
    [told] = [f for f in examine(rt, "42").view()["findings"] if "nothing is lost" in f["why"]]
    assert told["check"] == "reconciliation", told
    work.clock.now += 8 * 86400
    assert handle_batch(scenario.records(changes(work)), work)["done"] == 1      # Intercom is back
    [letter] = look(rt).letters
    assert work.apis.rf_.qualified == ["7"] or not letter.superseded, (
        f"said superseded at {letter.superseded}, yet the change in its window was not found")


def test_dlq_list_says_superseded_every_search_letter_discard_superseded_takes_out(capsys):
    """Scenario: a search of changed contacts failed on Intercom's 403 for the workspace's plan; the plan was
    upgraded and the next search succeeded. `bridge dlq list` shows that letter without `superseded`, with the
    plan's fix ("upgrade it ..., then `bridge dlq replay ...`"), while `bridge dlq discard --superseded` says
    it matches and takes it out: the list and the discard disagree about which letters are superseded."""
    rt = doctored()
    work = rt.work
    work.clock.now += 900
    work.queue.dead_letter(json.dumps(changes(work)), "gave up after 1 tries: Intercom answered 403 "
                           "api_plan_restricted: Active subscription needed.", 1, "2026-09-21T14:00:00Z")
    work.clock.now += 900
    assert handle_batch(scenario.records(changes(work)), work)["done"] == 1
    _, out, _ = run_cli(rt, capsys, "dlq", "list", "--json")
    listed = [d for d in json.loads(out)["dead_letters"] if d.get("superseded")]
    _, _, err = run_cli(rt, capsys, "dlq", "discard", "--superseded")
    assert f"bridge: {len(listed)} dead letter(s) match" in err, (listed, err)
