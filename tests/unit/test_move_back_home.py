"""A campaign moved away and back home (services/admin._moved_workspace, _consequences): contact sync's
ledger says the workspace it enrolled each referrer in, so the move back is not refused for people it makes
count again; and the bounded reads of a move (and of doctor) say where they stopped instead of claiming none."""
from __future__ import annotations

import pytest

from chalicelib.domain.link import JoinResult, LinkStatus, PersonRef
from chalicelib.domain.sync import ENROLLED
from chalicelib.ports.store import LedgerEntry
from chalicelib.services import sync
from chalicelib.services.admin import MovesWorkspace
from tests.fakes import FakeWork, seed_ledger
from tests.unit import moves, scenario
from tests.unit.doctoring import checks, commands, healthy, look
from tests.unit.test_sync import drain
from tests.unit.moves import apply

SCAN_LIMIT = 2000      # (ports.store.SCAN_LIMIT: joins and ledger entries a check reads at most)
ENROLLED_IN_WS_B = "1 referrer that contact sync enrolled in workspace ws-b"


def counting_world() -> tuple[FakeWork, dict]:
    """Campaign 42 keeps referral counts and runs contact sync in workspace ws, which holds Rita."""
    work, counting = moves.counting_world()
    work.apis.intercom_.add("rita@example.com", role="user")["name"] = "Rita"
    return work, counting


def test_sync_enrolled_referrers_of_a_campaign_moved_away_and_back_home_count_again_and_the_move_back_is_not_refused():
    """Scenario: contact sync enrols Rita in ws (her count knows her ws contact); the operator moves campaign
    42 to ws-b (refused, then with --move-workspace), then, as doctor and explain advise, applies `workspace:
    ws` again. Expected: the move back is accepted and says Rita's count is written again. Before: refused
    with "1 referrer that contact sync enrolled in workspace ws-b; moved to ws, their referral counts would no
    longer be written" (both halves wrong: the ledger did not say where sync enrolled her)."""
    work, counting = counting_world()
    sync.start(work.deps, "42")
    drain(work)
    [rita] = work.store.sync.ledger("42")
    assert (rita.outcome, rita.count_known, rita.workspace) == (ENROLLED, True, "ws")
    with pytest.raises(MovesWorkspace) as refused:                 # the move away: refused as before
        apply(work, {**counting, "workspace": "ws-b"})
    assert "1 referrer that contact sync enrolled in workspace ws;" in str(refused.value.args)
    [said] = apply(work, {**counting, "workspace": "ws-b"}, move=True)
    assert "1 referrer that contact sync enrolled in ws will no longer have their referral counts written" in said

    back = apply(work, {**counting, "workspace": "ws"})
    assert work.store.settings.get("42").workspace == "ws"
    assert back == ["campaign 42 moved back to workspace ws: its 1 referrer that contact sync enrolled in ws counts "
                    "again (their referral counts are written to them)"], back


def test_ledger_entries_written_before_they_said_their_workspace_still_refuse_the_first_move_but_not_the_move_back():
    """Entries that do not say their workspace (written before) count as enrolled in the stored settings'
    workspace while the campaign was never applied naming another; once it was, nobody can tell: they
    are left out (referral_count.write reads the contact in the current workspace before writing)."""
    work, counting = counting_world()
    seed_ledger(work.store.sync, "42", [LedgerEntry("c7", ENROLLED, rf_user_id="100", run=1, count_known=True)])
    with pytest.raises(MovesWorkspace) as refused:
        apply(work, {**counting, "workspace": "ws-b"})
    assert "1 referrer that contact sync enrolled in workspace ws;" in str(refused.value.args)
    apply(work, {**counting, "workspace": "ws-b"}, move=True)
    assert apply(work, {**counting, "workspace": "ws"}) == []       # not refused, and claims nobody
    assert work.store.settings.get("42").workspace == "ws"


def test_a_move_is_still_refused_for_referrers_sync_enrolled_in_the_workspace_it_leaves_after_a_move_back():
    work, counting = counting_world()
    work.store.settings.put("42", {**counting, "workspace": "ws-b"}, "ws-b")    # once moved away, now in ws-b
    seed_ledger(work.store.sync, "42", [LedgerEntry("c7", ENROLLED, rf_user_id="100", run=1, count_known=True,
                                                    workspace="ws-b")])
    with pytest.raises(MovesWorkspace) as refused:
        apply(work, {**counting, "workspace": "ws"})
    assert f"campaign 42 has {ENROLLED_IN_WS_B}; moved to ws" in str(refused.value.args), refused.value.args


# --- bounded reads: said where they stopped ----------------------------------------------------------------
def failed_joins(work: FakeWork, n: int, workspace: str = "ws") -> None:
    for user in range(n):
        claim = work.store.links.claim(PersonRef("42", str(user)), workspace)
        work.store.links.finish(claim, JoinResult(LinkStatus.FAILED, reason="RF answered 404"), [])


def test_a_move_past_the_joins_and_ledger_entries_it_reads_says_it_did_not_check_the_rest():
    """Campaign 42 has more joins (and sync ledger entries) than a move reads: nobody is found linked in
    ws, and the move says it did not check past the first 2,000, instead of claiming nobody."""
    work, counting = counting_world()
    failed_joins(work, SCAN_LIMIT + 1)
    seed_ledger(work.store.sync, "42", [LedgerEntry(f"c{i}", "missing_field", run=1) for i in range(SCAN_LIMIT + 1)])
    said = apply(work, {**counting, "workspace": "ws-b"})
    assert work.store.settings.get("42").workspace == "ws-b"
    assert said == [
        "campaign 42's people linked in other workspaces than ws-b were not checked past the first 2,000 joins: any "
        "among the rest no longer qualify (`bridge doctor 42` after the move)",
        "referrers contact sync enrolled in workspace ws were not checked past the first 2,000 entries of campaign "
        "42's sync ledger: any among the rest no longer have their referral counts written"], said


def test_a_move_whose_reads_reached_the_end_says_nothing_of_them():
    work, counting = counting_world()
    failed_joins(work, 3)
    assert apply(work, {**counting, "workspace": "ws-b"}) == []


def test_doctor_of_a_campaign_once_moved_with_more_joins_than_it_reads_says_it_did_not_check_past_them():
    rt = healthy()
    failed_joins(rt.work, SCAN_LIMIT + 1, "ws-b")
    rt.work.store.settings.put("42", {**scenario.settings(), "workspace": "ws-b"}, "ws-b")   # applied naming ws-b once
    rt.work.store.settings.put("42", scenario.settings(), "ws")                               # and back in ws
    view, text = look(rt)
    [left] = checks(view, "workspace.left_behind")
    assert (left["ok"], left["warn"]) == (True, True), text
    assert left["what"] == ("people linked in other workspaces than ws were not checked past the first 2,000 joins "
                            "of campaign 42"), text
    assert commands(left["fix"]) == ["bridge explain <email>"], left      # (it said `bridge explain 42 <email>`)


def test_a_move_of_a_campaign_keeping_counts_reads_its_stored_settings_and_its_sync_ledger_once():
    """`settings apply` moving campaign 42 (counts kept, Rita enrolled by sync) reads the stored settings once
    and the sync ledger once (each a DynamoDB read; before: the settings three times, the ledger twice), and
    still says both what the move leaves behind and nothing of a move back."""
    work, counting = counting_world()
    sync.start(work.deps, "42")
    drain(work)
    reads: list[str] = []
    for repository, method in ((work.store.settings, "get"), (work.store.sync, "ledger")):
        original = getattr(repository, method)
        setattr(repository, method, lambda *a, _o=original, _m=method, **k: reads.append(_m) or _o(*a, **k))
    [said] = apply(work, {**counting, "workspace": "ws-b"}, move=True)
    assert "1 referrer that contact sync enrolled in ws will no longer have their referral counts written" in said
    assert sorted(reads) == ["get", "ledger"], reads
