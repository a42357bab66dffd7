"""Isolation, attacked through the real routes (moto server, the Chalice app over HTTP, the Intercom and RF
simulators): a workspace a campaign was moved away from never qualifies it again, whether by its notifications
or by reconciliation, and a join that names one campaign for a user RF places in another acts on neither.
Each test names an attack and what the bridge must do instead."""
from __future__ import annotations

import json

import yaml

from chalicelib.services.connections import connect_workspace
from tests.support.cli import run_cli

from .conftest import WORKSPACE, qualifying_settings

OTHER = "ws-b"
ATTRIBUTES = (("referral_code", "string"), ("lead_source", "string"), ("signed_up", "string"),
              ("referral_link", "string"))


def _move_campaign_to_other_workspace(bridge, other_workspaces, tmp_path, capsys):
    """The operator connects workspace B and applies campaign 42's settings naming B (the campaign now
    belongs to B: another team's Intercom). `settings apply` refuses while people are linked in A, in
    one line naming how many and what follows; with --move-workspace it moves the campaign and says so."""
    other = other_workspaces(OTHER, "b-token")
    for name, dtype in ATTRIBUTES:
        other.define_attribute(name, dtype)
    connect_workspace(bridge.rt, OTHER, "b-token", client_secret="b-secret", api_base=other.base_url)
    document = tmp_path / "campaign.yaml"
    document.write_text(yaml.safe_dump({**qualifying_settings(), "workspace": OTHER}))
    code, out, err = run_cli(bridge.rt, capsys, "settings", "apply", str(document))
    assert (code, out) == (1, "") and err == (
        f"bridge: workspace: campaign 42 has 1 linked person in workspace {WORKSPACE}; moved to {OTHER}, they would "
        f"no longer qualify (their contacts stay in {WORKSPACE}, whose changes no longer count) — add "
        f"--move-workspace to move it anyway, or keep workspace: {WORKSPACE}\n")
    assert bridge.rt.store.settings.get("42").workspace == WORKSPACE
    code, out, _ = run_cli(bridge.rt, capsys, "settings", "apply", str(document), "--move-workspace", "--json")
    assert code == 0 and json.loads(out)["warnings"] == [
        f"campaign 42 moved from workspace {WORKSPACE} to {OTHER}: its 1 linked person of {WORKSPACE} will no longer "
        f"qualify (their contacts stay in {WORKSPACE}; new joins are created in {OTHER})"]
    assert bridge.rt.store.settings.get("42").workspace == OTHER


def _explained(bridge, capsys, email):
    """What `bridge explain` says of the person, entry by entry."""
    code, out, _ = run_cli(bridge.operator(), capsys, "explain", email, "--json")
    assert code == 0
    return [entry.get("reason") for entry in json.loads(out)["trail"]]


NOT_HERE = (f"not qualified: linked in workspace {WORKSPACE}; campaign 42 is now connected to {OTHER} (its settings "
            "were applied naming it), so changes to this contact no longer count")


def test_a_notification_from_the_old_workspace_never_qualifies_a_campaign_now_connected_to_another(
        bridge, intercom, rf, joined, other_workspaces, tmp_path, capsys):
    """Attack: campaign 42 was connected to workspace A, then re-applied for workspace B. An admin of A
    (A is no longer the campaign's workspace) sets the qualifying attribute on a contact A still has
    linked, and Intercom sends A's signed notification. Before the fix the worker judged the link with
    the campaign's *current* rule and qualified the referral in RF (a reward), reading the contact with
    A's token for B's campaign.
    Expected: `settings apply` refuses the move while people are linked (unless --move-workspace), and
    once moved, A's notification changes nothing of campaign 42 (no RF call) and `explain` says why."""
    lead, contact = joined()
    _move_campaign_to_other_workspace(bridge, other_workspaces, tmp_path, capsys)
    intercom.update_contact(contact["id"], signed_up="Yes")
    assert bridge.notify("contact.lead.updated", contact["id"]).status_code == 200
    bridge.drain()
    assert rf.qualification_calls == [], "workspace A's notification qualified a campaign of workspace B"
    assert bridge.history(42, lead["id"])["link"]["qualification"] != "qualified"
    assert NOT_HERE in _explained(bridge, capsys, "ann@example.com")


def test_reconciliation_never_qualifies_a_campaign_through_a_workspace_it_is_no_longer_connected_to(
        bridge, intercom, rf, joined, other_workspaces, tmp_path, capsys):
    """Attack: as above, but no webhook: the scheduled reconciliation's sweep of pending leads read
    each lead's contact in the link's workspace (A) with A's token and qualified by it, although
    campaign 42 now belongs to workspace B.
    Expected: the sweep leaves a lead linked in another workspace than its campaign's alone (no RF call,
    its contact not read), and `explain` says why."""
    lead, contact = joined()
    _move_campaign_to_other_workspace(bridge, other_workspaces, tmp_path, capsys)
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.rt.clock.now += 3600
    reads = len(intercom.requests)
    bridge.reconcile()
    bridge.drain()
    assert rf.qualification_calls == [], "reconciliation qualified a campaign of workspace B through workspace A"
    assert not [r for r in intercom.requests[reads:] if contact["id"] in r["path"]], \
        "A's contact was read for B's campaign"
    assert NOT_HERE in _explained(bridge, capsys, "ann@example.com")


# --- RF webhook: campaign X acting on campaign Y -------------------------------------------------------
def test_a_join_naming_campaign_42_for_a_user_of_campaign_43_is_refused_not_linked_and_never_qualified(
        bridge, intercom, rf, capsys):
    """Attack (or a webhook body template copied between campaigns): RF's join webhook names campaign 42
    but the user it names belongs to campaign 43 (another team's campaign; the webhook secret is one for
    the whole RF account). The worker reads the user from RF (the body lacks the mapped fields), and
    RF's answer says campaign 43 — but the webhook's campaign wins (people.merge) and nothing compares
    them: campaign 42's settings create a contact in campaign 42's workspace for campaign 43's person,
    link them to campaign 42, and campaign 42's rule then qualifies RF user 43/… (a reward in another
    campaign) through `PUT /users/qualification`.
    Expected: a join whose user RF places in another campaign than the webhook names is refused with
    that reason (dead-lettered or recorded), no contact is created, and no qualification follows."""
    bridge.apply(qualifying_settings())
    rf.add_campaign(43, "Another team's campaign")
    referrer = rf.add_user(43, "rex@example.com", "Rex")
    theirs = rf.add_user(43, "tom@example.com", "Tom", referrer_id=referrer["id"])
    assert bridge.post_join({"id": theirs["id"], "campaign_id": 42}).status_code == 202
    bridge.drain()
    created = intercom.contacts_by_email("tom@example.com")
    for contact in created:                           # the lead "signs up" in campaign 42's workspace
        intercom.update_contact(contact["id"], signed_up="Yes")
        bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    assert rf.qualification_calls == [], "campaign 42's rule qualified a user of campaign 43"
    assert created == [], "a contact was made for campaign 43's person under campaign 42's settings"
    refused = f"RF user {theirs['id']} belongs to campaign 43, not 42"
    assert [d["reason"] for d in bridge.dead_letters()] == [refused]
    assert bridge.history(42, theirs["id"])["link"]["status"] != "linked"
    assert refused in _explained(bridge, capsys, str(theirs["id"]))
