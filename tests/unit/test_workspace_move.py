"""A campaign moved to another workspace: `settings apply` refuses while people are linked in the old
one (unless --move-workspace), and a link made in the old workspace is never judged again (in-memory
twins, fake APIs)."""
from __future__ import annotations

import pytest
import yaml

from chalicelib.domain.link import JoinResult, LinkStatus, PersonRef
from chalicelib.domain.qualification import QState
from chalicelib.services.admin import MovesWorkspace, apply_settings
from tests.fakes import FakeWork
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


def apply(work: FakeWork, document: dict, move: bool = False) -> list[str]:
    """`bridge settings apply --offline [--move-workspace]` on the worker's store: its warnings."""
    operator = type("Operator", (), {"store": work.store, "clock": work.clock, "forget": lambda self: None})()
    warnings = apply_settings(operator, yaml.safe_dump(document), check_workspace=False,  # type: ignore
                              move_workspace=move)["warnings"]
    return [w for w in warnings if not w.startswith("--offline")]


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
