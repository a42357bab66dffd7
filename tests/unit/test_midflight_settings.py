"""Settings that change while a campaign's work is in flight: queued, part-way, or in the dead-letter queue."""
from __future__ import annotations

import pytest

from chalicelib.domain.qualification import QState
from chalicelib.services import dead_letters
from chalicelib.services.admin import delete_settings
from chalicelib.services.explain import explain
from chalicelib.services.reconcile import reconcile
from tests.support.cli import replay_selectors
from tests.unit.moves import apply
from tests.unit.scenario import event, history, joined, link_of, run, set_value, settings, world
from tests.unit.test_qualification_letter import PATHS, letters, refused


def _operator(work):
    return type("Operator", (), {"store": work.store, "clock": work.clock, "forget": lambda self: None})()


@pytest.mark.parametrize("change", ["rule_off", "deleted"])
@pytest.mark.parametrize("path", PATHS)
def test_a_refused_qualification_replayed_after_the_rule_was_turned_off_is_still_paid(path, change):
    """RF refused a qualification the rule decided (a paused campaign); the operator turned the rule off (or deleted
    the campaign's settings) to stop new ones while RF was fixed, then replayed the letter `explain` advised. The
    decision sticks, as for an unconfirmed one: the replay finishes it, asking RF first."""
    work, contact, body = refused(path)
    run(work, body)
    assert link_of(work).qualification is QState.FAILED and len(letters(work)) == 1
    if change == "rule_off":
        apply(work, settings(rule=None))
    else:
        delete_settings(_operator(work), "42", confirmed=True)
    work.clock.now += 60
    [selector] = set(replay_selectors(explain(work, "7").view()))
    assert dead_letters.replay(work, *selector)["replayed"] == 1
    run(work, work.queue.sent[-1])
    assert work.apis.rf_.qualified == ["7"] and link_of(work).qualification is QState.QUALIFIED, history(work)


@pytest.mark.parametrize("change", ["rule_off", "deleted"])
def test_a_lead_who_met_the_rule_while_it_was_off_qualifies_once_it_is_on_again(change):
    """Ann joined at "No" under the rule. The operator turned the rule off (or deleted the campaign's settings) for a
    while; Ann signed up meanwhile (her webhook judged nothing: no rule). Reconciliation's sweep ran its checks
    then. The rule applied again as it was, Ann's contact (at "Yes", her baseline "No") meets it: the sweep, which
    checks young pending leads one by one, reads her and qualifies her. Its check under no rule took her out of the
    pending index for good: nothing looked at her again, and `doctor` no longer counted her as pending."""
    work = world()
    _, contact = joined(work)
    if change == "rule_off":
        apply(work, settings(rule=None))
    else:
        delete_settings(_operator(work), "42", confirmed=True)
    run(work, event(set_value(work, contact, "Yes")))
    reconcile(work)
    run(work, *[m for m in work.queue.sent if m["kind"] == "intercom.check"])
    apply(work, settings())
    work.clock.now += 2 * 3600                       # the sweep's next round
    work.queue.sent.clear()
    reconcile(work)
    run(work, *[m for m in work.queue.sent if m["kind"] == "intercom.check"])
    assert work.apis.rf_.qualified == ["7"] and link_of(work).qualification is QState.QUALIFIED, history(work)
