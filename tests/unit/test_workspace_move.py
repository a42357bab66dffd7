"""A campaign moved to another workspace: `settings apply` refuses while people are linked in the old
one (unless --move-workspace), a link made in the old workspace is never judged again (explain says why),
and a referral count is never written to the old workspace's contact through the new one's client
(in-memory twins, fake APIs)."""
from __future__ import annotations

import pytest

from chalicelib.domain.link import JoinResult, LinkStatus, PersonRef, ReferralCount
from chalicelib.domain.qualification import QState
from chalicelib.domain.sync import ALREADY, ENROLLED
from chalicelib.errors import Uncertain
from chalicelib.messages import JoinMessage
from chalicelib.services.worker import RetryBatch
from chalicelib.ports.store import LedgerEntry
from chalicelib.services.admin import PEOPLE_COUNTED, MovesWorkspace
from chalicelib.services.explain import as_text, explain
from chalicelib.services.referral_count import messages
from tests.fakes import FakeIntercom, FakeWork, seed_ledger
from tests.support.meanwhile import before
from tests.unit.moves import ATTRIBUTES, ByWorkspace, Workspaces, apply, counting_world, operator, rita_in_rf, rita_refers
from tests.unit.scenario import check, event, joined, link_of, reasons, run, set_value, settings, world


# --- the guard: a link of the old workspace is never judged -----------------------------------------
MOVED = ("not qualified: linked in workspace ws; campaign 42 is now connected to ws-b (its settings were applied "
         "naming it), so changes to this contact no longer count")


def _moved(rule: dict = {"attribute": "custom_attributes.signed_up", "value": "Yes", "initial_value": "No"}):
    """Ann joined campaign 42 in workspace `ws`; then the campaign's settings were applied naming ws-b."""
    work = world(settings(rule=rule))
    link, contact = joined(work)
    work.store.settings.put("42", {**settings(rule=rule), "workspace": "ws-b"}, "ws-b")
    return work, link, contact


def test_a_notification_from_the_workspace_a_campaign_left_never_qualifies_it_and_the_history_says_why():
    work, link, contact = _moved()
    for n in range(2):
        assert run(work, event(set_value(work, contact, "Yes"), notification=f"n{n}"))["done"] == 1
    assert work.apis.rf_.calls == [] and link_of(work).qualification is QState.PENDING
    [noted] = [e for e in work.store.history.entries(link.ref) if e.outcome == "not_qualified"]
    assert (noted.reason, noted.count) == (MOVED, 2)


def test_with_match_email_a_duplicate_in_the_workspace_a_campaign_left_never_qualifies_it():
    work, link, _ = _moved({"attribute": "custom_attributes.signed_up", "value": "Yes", "match": "email"})
    duplicate = work.apis.intercom_.add("ann@example.com", role="user", signed_up="Yes")
    run(work, event(duplicate, "contact.user.updated"))
    assert work.apis.rf_.calls == [] and MOVED in reasons(work)


def test_reconciliation_does_not_read_the_contact_of_a_lead_in_the_workspace_its_campaign_left():
    work, link, contact = _moved()
    set_value(work, contact, "Yes")
    before = list(work.apis.intercom_.calls)
    assert run(work, check())["done"] == 1
    assert work.apis.rf_.calls == [] and work.apis.intercom_.calls == before    # not read with ws's token
    assert MOVED in reasons(work) and link_of(work).qualification is QState.PENDING


def test_the_moved_workspace_entry_reads_as_an_event_with_a_hint_and_is_resolved_once_moved_back():
    work, link, contact = _moved()
    assert run(work, event(set_value(work, contact, "Yes"), notification="n1"))["done"] == 1
    [moved] = [e for e in explain(work, "ann@example.com").view()["trail"] if e["outcome"] == "not_qualified"]
    hint = ("to make them count, apply campaign 42 back to workspace ws (`workspace: ws`, `bridge settings apply`); "
            "nothing to do if the move is intended")
    assert (moved["event"], moved["details"], moved["count"], moved["hint"]) == (
        "workspace_moved", {"workspace": "ws-b"}, 1, hint)
    text = as_text(explain(work, "ann@example.com"))
    [line] = [t for t in text.splitlines() if "not_qualified" in t]
    assert "workspace_moved: not_qualified — not qualified: linked in workspace ws" in line
    assert line.endswith("no longer count  workspace=ws-b"), line            # no "#ws-b", no "(x1)"
    assert f"hint: {hint}" in text

    work.store.settings.put("42", settings(), "ws")                         # moved back: they count again
    [moved] = [e for e in explain(work, "ann@example.com").view()["trail"] if e["outcome"] == "not_qualified"]
    assert moved["resolved"] is True and "hint" not in moved
    [line] = [t for t in as_text(explain(work, "ann@example.com")).splitlines() if "not_qualified" in t]
    assert line.endswith("no longer count (resolved since)  workspace=ws-b"), line


# --- the move: refused while people are linked, said when confirmed -----------------------------------
def test_a_campaign_nobody_is_linked_in_moves_to_another_workspace_without_a_word():
    work = world()
    claim = work.store.links.claim(PersonRef("42", "8"), "ws")            # a join that linked nobody
    work.store.links.finish(claim, JoinResult(LinkStatus.FAILED, reason="RF answered 404"), [])
    assert apply(work, {**settings(), "workspace": "ws-b"}) == []
    assert work.store.settings.get("42").workspace == "ws-b"


def test_moving_a_campaign_with_linked_people_is_refused_in_one_line_unless_confirmed():
    work = world()
    for user, email in (("7", "ann@example.com"), ("8", "bob@example.com")):
        joined(work, user, email)
    with pytest.raises(MovesWorkspace) as refused:
        apply(work, {**settings(), "workspace": "ws-b"})
    assert refused.value.problems == [
        "workspace: campaign 42 has 2 linked people in workspace ws; moved to ws-b, they would no longer qualify "
        "(their contacts stay in ws, whose changes no longer count) — add --move-workspace to move it anyway, or "
        "keep workspace: ws"]
    assert work.store.settings.get("42").workspace == "ws"
    assert apply(work, settings()) == []                                   # the same workspace: nothing to say
    assert apply(work, {**settings(), "workspace": "ws-b"}, move=True) == [
        "campaign 42 moved from workspace ws to ws-b: its 2 linked people of ws will no longer qualify (their "
        "contacts stay in ws; new joins are created in ws-b)"]
    assert work.store.settings.get("42").workspace == "ws-b"


def test_a_move_is_refused_when_the_linked_people_come_after_the_first_hundred_links():
    """Scenario: campaign 42 in workspace ws had a bad start: its first PEOPLE_COUNTED (100) joins failed (RF
    user ids 1000..1099, e.g. before the workspace was connected), and later people were linked (RF user
    id 2000 onward). The operator applies settings naming ws-b without --move-workspace.
    Expected: the move is refused (a linked person would stop qualifying), as it is when the linked person
    comes first. Before: `_moved_workspace` counts LINKED only among the first 100 links `statuses_in` reads
    (`limit`), finds none, and moves the campaign silently."""
    work = world()
    for user in range(1000, 1000 + PEOPLE_COUNTED):
        claim = work.store.links.claim(PersonRef("42", str(user)), "ws")
        work.store.links.finish(claim, JoinResult(LinkStatus.FAILED, reason="workspace disconnected"), [])
    joined(work, "2000", "ann@example.com")
    with pytest.raises(MovesWorkspace):
        apply(work, {**settings(), "workspace": "ws-b"})
    assert work.store.settings.get("42").workspace == "ws"


def test_settings_deleted_then_applied_naming_another_workspace_are_refused_while_people_are_linked_in_the_first():
    """Scenario: campaign 42's people are linked in workspace ws. The operator runs `bridge settings delete 42
    --yes` (the links and history stay, as it says) and then applies campaign 42's settings naming ws-b
    (without --move-workspace).
    Expected: the same refusal as a direct move — the people linked in ws would silently stop qualifying
    (Qualifier.moved_away compares each link's workspace with the settings'). Before: `_moved_workspace`
    compares with the stored settings only: with none stored it says nothing and the move happens."""
    from chalicelib.services.admin import delete_settings
    work = world()
    joined(work, "7", "ann@example.com")
    delete_settings(operator(work), "42", confirmed=True)
    with pytest.raises(MovesWorkspace) as refused:
        apply(work, {**settings(), "workspace": "ws-b"})
    [said] = refused.value.problems
    assert said.startswith("workspace: campaign 42 has 1 linked person in workspace ws; moved to ws-b")
    assert said.endswith("or keep workspace: ws") and work.store.settings.get("42") is None
    assert apply(work, settings()) == []                       # applied again naming ws: nothing to say


# --- a join part-way when the campaign moves -----------------------------------------------------------
PART_WAY = ("workspace: campaign 42 has 1 join part-way in workspace ws (claimed by a worker, or its contact made "
            "there, not yet linked); moved to ws-b now, it would end linked in ws, where nothing qualifies the "
            "campaign any more, or make a second contact in ws-b — apply again once it ended: within minutes, or once "
            "Intercom takes the workspace's token again or its outage ends (up to BRIDGE_OUTAGE_HOURS): `bridge "
            "doctor 42` says which (a failed one once its dead letter is replayed: `bridge dlq replay --campaign 42`)")


def _two_workspaces() -> tuple[FakeWork, dict[str, FakeIntercom]]:
    """Campaign 42 in workspace ws; ws-b another workspace (its own Intercom)."""
    intercoms = {w: FakeIntercom({"custom_attributes.signed_up": {"data_type": "string"}}) for w in ("ws", "ws-b")}
    work = FakeWork(Workspaces(intercoms, rita_in_rf()))
    work.store.settings.put("42", settings(), "ws")
    return work, intercoms


def _ann_joins(work: FakeWork, receives: int = 1) -> dict:
    person = {"id": "7", "campaign_id": "42", "email": "ann@example.com", "first_name": "Ann", "type": "lead"}
    return run(work, JoinMessage(campaign_id="42", rf_user_id="7", person=person).wire(), receives=receives)


def _move(work: FakeWork, move: bool) -> list[str]:
    """`settings apply` naming ws-b: its warnings, or its refusal."""
    try:
        return apply(work, {**settings(), "workspace": "ws-b"}, move=move)
    except MovesWorkspace as refused:
        return refused.problems


@pytest.mark.parametrize("move", [False, True])
def test_a_campaign_is_not_moved_while_a_join_is_part_way_in_its_workspace(move):
    """Scenario: Ann's join is claimed in workspace ws, its worker about to create her contact, when the operator
    applies campaign 42 naming ws-b (nobody is linked yet: before, the move went through silently, with or without
    --move-workspace). The worker read the settings before: it creates her in ws and links her there, and the
    campaign now listens to ws-b only: her changes never qualify her (a reward lost), and nothing said so.
    Expected: the move is refused in one line saying why and to apply again; her join ends linked in ws, where
    the campaign still is (one contact); applied again, the move is refused as for any linked person."""
    work, intercoms = _two_workspaces()
    said: list[list[str]] = []
    with before(intercoms["ws"], "create_contact", lambda: said.append(_move(work, move))):
        assert _ann_joins(work)["done"] == 1
    assert said == [[PART_WAY]] and work.store.settings.get("42").workspace == "ws"
    assert (link_of(work).status, link_of(work).workspace) == (LinkStatus.LINKED, "ws")
    assert (len(intercoms["ws"].contacts), intercoms["ws-b"].contacts) == (1, {})
    assert _move(work, False)[0].startswith("workspace: campaign 42 has 1 linked person in workspace ws")


@pytest.mark.parametrize("stopped, refused", [
    ("its worker died holding the claim", True),
    ("Intercom's answer to the create was lost", True),
    ("its try failed before any contact was made", False)])
def test_a_join_stopped_after_its_claim_ends_linked_once_in_the_workspace_the_campaign_names(stopped, refused):
    """At least once: Ann's join was stopped after its claim, then the campaign was applied naming ws-b, then her
    join comes again (a retry, a replay). A join that may have made her contact in ws (claimed, or the create's
    answer lost) holds the move back (her retry then finishes it in ws, with that contact); one that made none
    lets it go, and its retry creates her in ws-b. Either way: linked once, with exactly one contact, in the
    workspace the campaign names."""
    work, intercoms = _two_workspaces()
    if stopped.startswith("its worker died"):
        work.store.links.claim(PersonRef("42", "7"), "ws")
    else:
        if "lost" in stopped:
            intercoms["ws"].after["create"] = Uncertain("Intercom did not answer: read timed out")
        else:
            intercoms["ws"].fail["search"] = RuntimeError("Intercom answered 500")
        with pytest.raises(RetryBatch):
            _ann_joins(work)
    assert _move(work, False) == ([PART_WAY] if refused else [])
    work.clock.now += 600                                           # the lease, and search's lag, ran out
    assert _ann_joins(work, receives=2)["done"] == 1
    where = "ws" if refused else "ws-b"
    assert work.store.settings.get("42").workspace == link_of(work).workspace == where
    assert link_of(work).status is LinkStatus.LINKED
    assert {w: len(i.contacts) for w, i in intercoms.items()} == {"ws": int(refused), "ws-b": int(not refused)}


def test_a_join_that_failed_after_finding_her_contact_does_not_hold_the_move_back():
    """Ann's contact existed in ws; the try that found it failed writing to it. Nothing of hers was made there: the
    move goes through (docs/setup.md: a join that failed with no contact made does not hold it back), and her retry
    creates her in ws-b, where the campaign is."""
    work, intercoms = _two_workspaces()
    intercoms["ws"].add("ann@example.com", role="user")
    intercoms["ws"].fail["update"] = RuntimeError("Intercom answered 500")
    with pytest.raises(RetryBatch):
        _ann_joins(work)
    assert link_of(work).contact_found
    assert _move(work, False) == []
    work.clock.now += 600
    assert _ann_joins(work, receives=2)["done"] == 1
    assert (link_of(work).status, link_of(work).workspace) == (LinkStatus.LINKED, "ws-b")
    assert {w: len(i.contacts) for w, i in intercoms.items()} == {"ws": 1, "ws-b": 1}


# --- referral counts of referrers the move leaves behind ---------------------------------------------
def test_a_moved_campaigns_referral_count_is_never_written_to_the_old_workspaces_contact_with_the_new_ones_token():
    """Scenario: campaign 42 keeps referral counts. Rita (a referrer, RF user 100) was linked by her join in
    workspace ws (her contact is ws's). The operator moves campaign 42 to ws-b (`settings apply
    --move-workspace`, warned only that linked people no longer qualify). A new lead referred by Rita joins
    (created in ws-b) and Rita's count grows.
    Expected: the count is not written to Rita's ws contact id through ws-b's client (ws-b does not hold that
    contact: an Intercom 404 and a dead letter at best, another person's contact at worst); it is kept, as
    for a referrer whose contact is not known in the campaign's workspace. Before: referral_count.write takes
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
    assert "kept, not written" in as_text(explain(type("R", (), {"store": work.store, "clock": work.clock})(), "rita@example.com"))


def test_a_sync_enrolled_referrers_count_is_not_written_to_the_old_workspaces_contact_after_a_move():
    """Scenario: campaign 42 keeps referral counts and runs contact sync in workspace ws. Sync enrolled Rita
    (RF user 100) from her ws contact: her count knows that contact (`referrer_contact`), she has no link (a
    referrer enrolled by sync is "not linked yet"). The operator applies campaign 42's settings naming ws-b
    (nobody is linked, so the move happens without a word). A lead referred by Rita joins (in ws-b) and
    Rita's count grows to 1.
    Expected: as docs/setup.md says of a move ("nor is a referral count written to them (the new workspace does
    not hold their contacts)"), the count is kept, not PUT to Rita's ws contact id through ws-b's client.
    Before: referral_count.write guards only a referrer *linked* elsewhere (`_moved_away` needs a LINKED link);
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
    seed_ledger(work.store.sync, "42", [LedgerEntry("c7", ENROLLED, rf_user_id="100", run=1, count_known=True),
                                        LedgerEntry("c8", ALREADY, rf_user_id="101", count_known=True, adopted=True)])
    with pytest.raises(MovesWorkspace) as refused:
        apply(work, {**counting, "workspace": "ws-b"})
    assert "1 referrer that contact sync enrolled in workspace ws" in str(refused.value.args), refused.value.args
    assert work.store.settings.get("42").workspace == "ws"
    [said] = apply(work, {**counting, "workspace": "ws-b"}, move=True)
    assert "1 referrer that contact sync enrolled in ws will no longer have their referral counts written" in said
