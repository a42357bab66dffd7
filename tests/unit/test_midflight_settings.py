"""Settings that change while a campaign's work is in flight: queued, part-way, or in the dead-letter queue."""
from __future__ import annotations

import pytest

from chalicelib.domain.link import LinkStatus, PersonRef
from chalicelib.domain.qualification import QState
from chalicelib.errors import Transient, Uncertain
from chalicelib.services import dead_letters
from chalicelib.services.backfill import backfill
from chalicelib.services.admin import delete_settings
from chalicelib.services.explain import explain
from chalicelib.services.privacy import forget
from chalicelib.services.reconcile import reconcile
from chalicelib.services.worker import RetryBatch
from tests.fakes import FakeWork
from tests.support.cli import replay_selectors
from tests.unit.moves import apply, operator
from tests.unit.test_backfill_ignored import LEAD as IGNORED_LEAD, Running, join as ignored_join, joins_queued
from tests.unit.test_backfill_ignored import world as ignored_world
from tests.unit.scenario import event, history, joined, link_of, run, set_value, settings, world
from tests.unit.test_qualification_letter import PATHS, letters, refused


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
        delete_settings(operator(work), "42", confirmed=True)
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
        delete_settings(operator(work), "42", confirmed=True)
    run(work, event(set_value(work, contact, "Yes")))
    reconcile(work)
    assert [m for m in work.queue.sent if m["kind"] == "intercom.check"] == []     # nothing judges her under no rule
    apply(work, settings())
    work.clock.now += 2 * 3600                       # the sweep's next round
    work.queue.sent.clear()
    reconcile(work)
    run(work, *[m for m in work.queue.sent if m["kind"] == "intercom.check"])
    assert work.apis.rf_.qualified == ["7"] and link_of(work).qualification is QState.QUALIFIED, history(work)


LEAD_RULE = {"attribute": "custom_attributes.signed_up", "value": "Yes", "initial_value": "No"}
CREATING = {"campaign_id": "42", "workspace": "ws", "referrers": {"action": "nothing"}, "qualification": LEAD_RULE,
            "leads": {"action": "create_lead", "tag": "Referred", "fields": [{"from": "email", "to": "email"}]}}
#: How the lead's first try stopped part-way: its contact made and the tag refused (busy), or its create's answer lost.
PART_WAY = {"made": ("tag", "fail", Transient("Intercom answered 503")),
            "unseen": ("create", "after", Uncertain("Intercom did not answer POST /contacts in time"))}


def part_way(then: dict, stop: str = "made", person: dict = IGNORED_LEAD) -> tuple[FakeWork, dict]:
    """Noth's join made her lead (signed_up "No") and stopped part-way (`stop`: PART_WAY); the operator stored the
    campaign's settings `then` before its retry, which ran while search did not show her lead yet. The world, and
    her lead."""
    work = ignored_world(CREATING)
    intercom = work.apis.intercom_
    intercom.attributes["custom_attributes.signed_up"] = {"data_type": "string"}
    call, how, error = PART_WAY[stop]
    getattr(intercom, how)[call] = error
    with pytest.raises(RetryBatch):
        run(work, ignored_join(person))
    [lead] = intercom.contacts.values()
    intercom.unsearchable.add(lead["id"])                    # (search lags the create)
    work.store.settings.put("42", then, "ws")
    run(work, ignored_join(person), receives=2)
    return work, lead


@pytest.mark.parametrize("stop", PART_WAY)
def test_a_join_part_way_when_leads_action_turns_to_nothing_resumes_its_contact_once_backfill_sends_it(stop):
    """Ann's join made her lead (signed_up "No") and stopped part-way; the operator turned `leads.action` to nothing
    before its retry, which ignored her. The action back to create_lead, `bridge backfill 42 --apply` sent her join
    again. The ignored link had dropped what the try knew: her lead was found as someone else's, its value then
    ("Yes": she had signed up meanwhile) taken as her baseline, so she never qualified (and a create whose answer was
    lost no longer waited for search to show it). Her join resumes her lead, with the value it was made with."""
    work, lead = part_way({**CREATING, "leads": {"action": "nothing"}}, stop)
    assert link_of(work).status is LinkStatus.IGNORED
    lead["custom_attributes"]["signed_up"] = "Yes"           # Ann signs up meanwhile
    work.store.settings.put("42", CREATING, "ws")
    work.queue.sent.clear()
    backfill(Running(work), "42", apply=True)
    work.clock.now += 600                                    # (search has caught up)
    work.apis.intercom_.unsearchable.clear()
    run(work, *joins_queued(work))
    assert list(work.apis.intercom_.contacts) == [lead["id"]] and link_of(work).contact_id == lead["id"]
    assert work.apis.rf_.qualified == ["7"] and link_of(work).qualification is QState.QUALIFIED, history(work)


def test_a_join_resumed_after_the_email_mapping_changed_is_known_by_its_contacts_email_and_forget_erases_it():
    """Noth's join made her lead with her RF email (typed in mixed case), then stopped part-way (the tag refused); the
    operator mapped the email from `meta.work_email` before its retry, which resumed her lead. The link took the work
    email, which her contact never had: `bridge forget` of the address on her contact (and in RF) found no one and said
    the bridge keeps nothing that recognises her, while it kept her link, contact and history. The link takes her
    contact's email in lower case, as the bridge keys every email (her contact shows it as she typed it)."""
    mapped = {**CREATING, "leads": {**CREATING["leads"], "fields": [{"from": "meta.work_email", "to": "email"}]}}
    work, lead = part_way(mapped, person={**IGNORED_LEAD, "email": "Noth@Example.com",
                                          "meta": {"work_email": "noth@work.example"}})
    work.store.connections.put_workspace("ws", secrets={"token", "client-secret"})
    assert (lead["id"], lead["email"]) == ("c1", "Noth@Example.com")         # as she typed it
    assert (link_of(work).contact_id, link_of(work).email) == ("c1", "noth@example.com")   # keyed in lower case
    assert forget(work, lead["email"])["links"] == 1
    assert work.store.links.get(PersonRef("42", "7")) is None
