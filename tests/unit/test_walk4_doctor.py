"""Walk 4's findings on doctor: the people a workspace move left behind, and refused joins whose people were
joined since (services/doctor.py)."""
from __future__ import annotations

import dataclasses

from tests.unit import scenario
from tests.unit.test_doctor_advice import Doctored
from tests.unit.test_doctor_walk import checks, healthy, look, pending, refused_at_edge
from tests.unit.test_workspace_move import apply


# --- F2.a: doctor after `settings apply --move-workspace` -----------------------------------------------
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


# --- F5.a: refused joins whose people were joined since ---------------------------------------------------
def test_refused_joins_whose_people_were_all_joined_since_are_resolved_without_a_fix():
    """Scenario: two joins refused for their own data (the right secret, a `referrer_id` of the wrong shape);
    joins accepted since; `bridge backfill 42 --apply` joins one person, then the other. Expected: BAD while
    one is missing, then resolved since (ok, no warning, no fix). Before: BAD with its fix, forever."""
    rt = healthy()
    rt.store.edge.heard("workspace:ws", "notification")
    rt.work.clock.now += 60
    refused_at_edge(rt, "7", secret="s3cret", referrer_id=True)
    refused_at_edge(rt, "8", secret="s3cret", referrer_id=True)
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
