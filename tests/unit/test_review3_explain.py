"""Review 3 of `bridge explain <contact id>` on a duplicate contact (services/explain._duplicate): what it
says of whether the duplicate's changes count."""
from __future__ import annotations

from chalicelib.domain.link import PersonRef
from chalicelib.domain.qualification import QState
from tests.unit.scenario import RULE, settings
from tests.unit.test_explain_duplicate import ask, duplicate_changed
from tests.unit.test_workspace_move import apply


def test_a_duplicate_of_a_lead_left_behind_by_a_workspace_move_is_not_said_to_count():
    """Scenario: campaign 42 linked lead 7 (pending) to a contact in workspace ws; a duplicate contact with her
    email exists in ws (its change did not count under match: contact). The operator applies settings with
    `qualification.match: email` that also move campaign 42 to ws-b (`--move-workspace`, warned that the
    people of ws no longer qualify). Then the support team asks `bridge explain <duplicate id>`.
    Expected: explain says the duplicate's changes do not count for lead 7 (nothing of ws qualifies campaign 42
    any more: Qualifier.moved_away), as the README's move section says.
    Today `_duplicate` looks only at `qualification.match` and says "its changes count for them" — advice that
    sends the support team waiting for a qualification that can never come."""
    work, _, twin = duplicate_changed("contact")
    apply(work, {**settings({**RULE, "match": "email"}), "workspace": "ws-b"}, move=True)
    assert work.store.settings.get("42").workspace == "ws-b"
    assert work.store.links.get(PersonRef("42", "7")).qualification is QState.PENDING
    [dup] = ask(work, twin["id"]).view()["duplicate_of"]
    assert dup["counts"] is False, dup
    assert "now connected to ws-b" in dup["why"] and "no longer count" in dup["why"], dup
    assert "hint" not in dup, "no setting to change brings a moved-away lead's contact back into counting"
