"""Walk 4's findings on explain: a join ignored under `leads.action: nothing` that RF sent again, the
entries kept once per key (a workspace move, a duplicate contact) and their counts (services/explain.py)."""
from __future__ import annotations

from chalicelib.services.explain import as_text, explain
from tests.unit import scenario
from tests.unit.scenario import event, run, set_value
from tests.unit.test_backfill_ignored import CREATE, LEAD, join, joined_under_nothing
from tests.unit.test_workspace_move import _moved


# --- F3.a: an ignored join sent again by RF ----------------------------------------------------------------
def test_a_join_ignored_under_nothing_that_rf_sends_again_says_it_was_not_applied_and_backfill_sends_it():
    """Scenario: leads.action nothing, Noth joins (ignored); the operator applies create_lead; RF re-sends
    Noth's join. Expected: explain says the repeat was not applied (ignored under `leads.action: nothing`) and
    that `bridge backfill 42 --apply` sends it now. Before: "it had already been applied (x1)", no hint."""
    work = joined_under_nothing()
    assert run(work, join(LEAD))["done"] == 1               # RF re-sends it while the action is still nothing
    [repeat] = [e for e in explain(work, "noth@example.com").view()["trail"] if e["outcome"] == "repeated"]
    assert "set `leads.action` to create_lead or create_user" in repeat["hint"]
    work.store.settings.put("42", CREATE, "ws")
    assert run(work, join(LEAD))["done"] == 1               # and again once it creates: still not applied
    assert work.apis.intercom_.contacts == {}
    [repeat] = [e for e in explain(work, "noth@example.com").view()["trail"] if e["outcome"] == "repeated"]
    said = ("the same join arrived again and was not applied: the person's join was ignored under "
            "`leads.action: nothing`, and a repeat is not applied again")
    assert (repeat["event"], repeat["reason"], repeat["count"], repeat["hint"]) == (
        "join", said, 2, "`bridge backfill 42 --apply` sends it now (leads.action is create_lead)")
    text = as_text(explain(work, "noth@example.com"))
    assert f"join: repeated — {said} (x2)" in text
    assert "hint: `bridge backfill 42 --apply` sends it now (leads.action is create_lead)" in text
    assert "already been applied" not in text


# --- F2.c / F4.a: explain's labels, counts and the moved-workspace entry ------------------------------------
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

    work.store.settings.put("42", scenario.settings(), "ws")                # moved back: they count again
    [moved] = [e for e in explain(work, "ann@example.com").view()["trail"] if e["outcome"] == "not_qualified"]
    assert moved["resolved"] is True and "hint" not in moved
    [line] = [t for t in as_text(explain(work, "ann@example.com")).splitlines() if "not_qualified" in t]
    assert line.endswith("no longer count (resolved since)  workspace=ws-b"), line
