"""Review 3 of the workspace-move guard (services/referral_count.write, services/admin._moved_workspace):
the referral count of a referrer that contact sync enrolled in the workspace the campaign left."""
from __future__ import annotations

import pytest

from chalicelib.domain.link import PersonRef, ReferralCount
from chalicelib.domain.sync import ALREADY, ENROLLED
from chalicelib.ports.store import LedgerEntry
from chalicelib.services.admin import MovesWorkspace
from chalicelib.services.referral_count import messages
from tests.fakes import FakeIntercom, FakeWork
from tests.unit.moves import ATTRIBUTES, ByWorkspace, Workspaces, counting_world, rita_in_rf, rita_refers
from tests.unit.scenario import run
from tests.unit.test_workspace_move import apply


def test_a_sync_enrolled_referrers_count_is_not_written_to_the_old_workspaces_contact_after_a_move():
    """Scenario: campaign 42 keeps referral counts and runs contact sync in workspace ws. Sync enrolled Rita
    (RF user 100) from her ws contact: her count knows that contact (`referrer_contact`), she has no link (a
    referrer enrolled by sync is "not linked yet"). The operator applies campaign 42's settings naming ws-b
    (nobody is linked, so the move happens without a word). A lead referred by Rita joins (in ws-b) and
    Rita's count grows to 1.
    Expected: as the README says of a move ("nor is a referral count written to them (the new workspace does
    not hold their contacts)"), the count is kept, not PUT to Rita's ws contact id through ws-b's client.
    Today referral_count.write guards only a referrer *linked* elsewhere (`_moved_away` needs a LINKED link);
    for a sync-enrolled one it takes `count.contact_id` (ws's) and writes it with `intercom(settings.workspace)`
    (ws-b): another workspace's contact id sent with ws-b's token (a 404 and a dead letter at best)."""
    apis = ByWorkspace(FakeIntercom(dict(ATTRIBUTES)), rita_in_rf())
    work, counting = counting_world(apis)
    rita = apis.intercom_.add("rita@example.com", role="user")
    work.store.links.referrer_contact(PersonRef("42", "100"), rita["id"], "ws")   # contact sync enrolled her in ws
    apply(work, {**counting, "workspace": "ws-b"}, move=True)
    assert work.store.settings.get("42").workspace == "ws-b"

    rita_refers(work)
    assert work.store.links.referrals(PersonRef("42", "100")).n == 1
    assert ("ws-b", rita["id"]) not in apis.updates, "ws's contact was written through workspace ws-b's client"
    [why] = [e for e in work.store.history.entries(PersonRef("42", "100")) if e.event == "referral_count"]
    assert why.outcome == "not_written" and "enrolled by contact sync in workspace ws" in why.reason, why
    assert "now connected to ws-b" in why.reason, why


def _older_count(where: str) -> tuple[FakeWork, Workspaces, dict]:
    """Rita's count learnt her `where` contact before the store recorded contacts' workspaces (an older
    item: no workspace); campaign 42 is connected to ws-b now. A lead referred by Rita joins."""
    apis = Workspaces({"ws": FakeIntercom(dict(ATTRIBUTES)), "ws-b": FakeIntercom(dict(ATTRIBUTES))}, rita_in_rf())
    apis.intercoms["ws"].made = 100        # Intercom's contact ids are unique: none of ws is one of ws-b
    work, _ = counting_world(apis, "ws-b")
    rita = apis.intercoms[where].add("rita@example.com", role="user")
    work.store.links.tables.referrals[PersonRef("42", "100")] = ReferralCount(contact_id=rita["id"])
    rita_refers(work)
    return work, apis, rita


def test_an_older_count_whose_contact_the_campaigns_workspace_does_not_hold_is_kept_and_says_why():
    """A count stored before the workspace was recorded: its contact is looked for in the campaign's
    workspace (one read, no write); not there (it is the old workspace's), the count is kept, and why."""
    work, apis, rita = _older_count("ws")
    assert work.store.links.referrals(PersonRef("42", "100")).n == 1
    assert "update" not in apis.intercoms["ws-b"].calls         # ws-b's client never sent ws's id (a failed write)
    assert "update" not in apis.intercoms["ws"].calls
    assert "referral_count" not in apis.intercoms["ws"].contacts[rita["id"]].get("custom_attributes", {})
    [why] = [e for e in work.store.history.entries(PersonRef("42", "100")) if e.event == "referral_count"]
    assert why.outcome == "not_written" and "did not record" in why.reason and "not ws-b" in why.reason, why


def test_an_older_count_whose_contact_the_campaigns_workspace_does_not_hold_asks_once_then_waits_for_a_contact():
    """Not found, the count forgets the contact: the next leads' counts neither read it again nor rewrite
    why; once sync enrols Rita in the campaign's workspace, her count is written there."""
    work, apis, rita = _older_count("ws")
    rita_ref = PersonRef("42", "100")
    [why] = [e for e in work.store.history.entries(rita_ref) if e.event == "referral_count"]
    reads = apis.intercoms["ws-b"].calls.count("get")
    work.clock.now += 60
    work.queue.sent.clear()
    rita_refers(work, "2")
    count = work.store.links.referrals(rita_ref)
    assert (count.n, count.contact_id) == (2, None)
    assert apis.intercoms["ws-b"].calls.count("get") == reads               # asked once
    assert [e for e in work.store.history.entries(rita_ref) if e.event == "referral_count"] == [why]
    enrolled = apis.intercoms["ws-b"].add("rita@example.com", role="user")
    work.store.links.referrer_contact(rita_ref, enrolled["id"], "ws-b")     # contact sync enrols her in ws-b
    run(work, *messages({rita_ref}))
    assert apis.intercoms["ws-b"].contacts[enrolled["id"]]["custom_attributes"]["referral_count"] == 2


def test_an_older_count_whose_contact_is_in_the_campaigns_workspace_is_written_and_learns_the_workspace():
    work, apis, rita = _older_count("ws-b")
    assert apis.intercoms["ws-b"].contacts[rita["id"]]["custom_attributes"]["referral_count"] == 1
    assert work.store.links.referrals(PersonRef("42", "100")).workspace == "ws-b"     # read once, then recorded


def test_a_move_is_refused_while_contact_sync_enrolled_referrers_whose_counts_it_would_stop_writing():
    """Nobody is linked, but contact sync enrolled Rita in ws (the sync ledger: her count knows her
    contact): a move to ws-b stops writing her count, so it is refused without --move-workspace, and said."""
    work, counting = counting_world()
    work.store.sync.record("42", [LedgerEntry("c7", ENROLLED, rf_user_id="100", run=1, count_known=True),
                                  LedgerEntry("c8", ALREADY, rf_user_id="101", count_known=True, adopted=True)])
    with pytest.raises(MovesWorkspace) as refused:
        apply(work, {**counting, "workspace": "ws-b"})
    assert "1 referrer that contact sync enrolled in workspace ws" in str(refused.value.args), refused.value.args
    assert work.store.settings.get("42").workspace == "ws"
    [said] = apply(work, {**counting, "workspace": "ws-b"}, move=True)
    assert "1 referrer that contact sync enrolled in ws will no longer have their referral counts written" in said
