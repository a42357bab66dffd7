"""Review of today's workspace-move guard (services/admin._moved_workspace, Qualifier.moved_away) on the
store's in-memory twin and fake APIs: cases the guard gets wrong."""
from __future__ import annotations

import pytest

from chalicelib.domain.link import JoinResult, LinkStatus, PersonRef
from chalicelib.services.admin import PEOPLE_COUNTED, MovesWorkspace
from tests.fakes import FakeIntercom
from tests.unit.moves import ATTRIBUTES, ByWorkspace, counting_world, rita_in_rf, rita_refers
from tests.unit.scenario import joined, reasons, settings, world
from tests.unit.test_workspace_move import apply


def test_a_move_is_refused_when_the_linked_people_come_after_the_first_hundred_links():
    """Scenario: campaign 42 in workspace ws had a bad start: its first PEOPLE_COUNTED (100) joins failed (RF
    user ids 1000..1099, e.g. before the workspace was connected), and later people were linked (RF user
    id 2000 onward). The operator applies settings naming ws-b without --move-workspace.
    Expected: the move is refused (a linked person would stop qualifying), as it is when the linked person
    comes first. Today `_moved_workspace` counts LINKED only among the first 100 links `statuses_in` reads
    (`limit`), finds none, and moves the campaign silently."""
    work = world()
    for user in range(1000, 1000 + PEOPLE_COUNTED):
        claim = work.store.links.claim(PersonRef("42", str(user)), "ws")
        work.store.links.finish(claim, JoinResult(LinkStatus.FAILED, reason="workspace disconnected"), [])
    joined(work, "2000", "ann@example.com")
    with pytest.raises(MovesWorkspace):
        apply(work, {**settings(), "workspace": "ws-b"})
    assert work.store.settings.get("42").workspace == "ws"


def test_a_moved_campaigns_referral_count_is_never_written_to_the_old_workspaces_contact_with_the_new_ones_token():
    """Scenario: campaign 42 keeps referral counts. Rita (a referrer, RF user 100) was linked by her join in
    workspace ws (her contact is ws's). The operator moves campaign 42 to ws-b (`settings apply
    --move-workspace`, warned only that linked people no longer qualify). A new lead referred by Rita joins
    (created in ws-b) and Rita's count grows.
    Expected: the count is not written to Rita's ws contact id through ws-b's client (ws-b does not hold that
    contact: an Intercom 404 and a dead letter at best, another person's contact at worst); it is kept, as
    for a referrer whose contact is not known in the campaign's workspace. Today referral_count.write takes
    the link's contact id (ws) and `deps.apis.intercom(settings.workspace)` (ws-b)."""
    apis = ByWorkspace(FakeIntercom(dict(ATTRIBUTES)), rita_in_rf())
    work, counting = counting_world(apis)
    _, rita = joined(work, "100", "rita@example.com", kind="referrer", role="user")
    [moved] = apply(work, {**counting, "workspace": "ws-b"}, move=True)
    assert "nor will referral counts be written to them" in moved and "their counts are kept" in moved
    assert work.store.settings.get("42").workspace == "ws-b"

    rita_refers(work)
    assert ("ws-b", rita["id"]) not in apis.updates, "ws's contact was written through workspace ws-b's client"
    assert work.store.links.referrals(PersonRef("42", "100")).n == 1                     # kept
    assert reasons(work, "100")[-1] == (
        "referral count: 1 kept, not written to custom_attributes.referral_count: the referrer was linked in "
        "workspace ws; campaign 42 is now connected to ws-b (its settings were applied naming it), which does not "
        "hold their contact")
    from chalicelib.services.explain import as_text, explain
    assert "kept, not written" in as_text(explain(type("R", (), {"store": work.store})(), "rita@example.com"))


def test_settings_deleted_then_applied_naming_another_workspace_are_refused_while_people_are_linked_in_the_first():
    """Scenario: campaign 42's people are linked in workspace ws. The operator runs `bridge settings delete 42
    --yes` (the links and history stay, as it says) and then applies campaign 42's settings naming ws-b
    (without --move-workspace).
    Expected: the same refusal as a direct move — the people linked in ws would silently stop qualifying
    (Qualifier.moved_away compares each link's workspace with the settings'). Today `_moved_workspace`
    compares with the stored settings only: with none stored it says nothing and the move happens."""
    from chalicelib.services.admin import delete_settings
    work = world()
    joined(work, "7", "ann@example.com")
    operator = type("Operator", (), {"store": work.store, "clock": work.clock, "forget": lambda self: None})()
    delete_settings(operator, "42", confirmed=True)
    with pytest.raises(MovesWorkspace) as refused:
        apply(work, {**settings(), "workspace": "ws-b"})
    [said] = refused.value.problems
    assert said.startswith("workspace: campaign 42 has 1 linked person in workspace ws; moved to ws-b")
    assert said.endswith("or keep workspace: ws") and work.store.settings.get("42") is None
    assert apply(work, settings()) == []                       # applied again naming ws: nothing to say
