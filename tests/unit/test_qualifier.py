"""The Qualifier: one claim, one RF call, and what happens when RF is slow, says no, or a worker died."""
from __future__ import annotations

import pytest

from chalicelib.domain.judge import Sighting
from chalicelib.domain.qualification import QState
from chalicelib.domain.settings import Qualification
from chalicelib.errors import Permanent, Transient
from tests.unit.scenario import history, joined, link_of, world

RULE = Qualification(attribute="custom_attributes.signed_up", value="Yes")


def met(contact):
    return Sighting({**contact, "custom_attributes": {"signed_up": "Yes"}}, "webhook contact.lead.updated")


def test_rf_busy_releases_the_claim_for_a_retry_and_the_retry_qualifies_once():
    work = world()
    link, contact = joined(work)
    work.apis.rf_.answers = [Transient("Referral Factory answered 503")]
    with pytest.raises(Transient) as raised:
        work.deps.qualifier.evaluate(link, RULE, met(contact))
    assert raised.value.person == ("42", "7") and link_of(work).qualification is QState.PENDING
    assert link_of(work).reason == "Referral Factory answered 503"
    work.deps.qualifier.evaluate(link_of(work), RULE, met(contact))
    assert work.apis.rf_.qualified == ["7"] and link_of(work).reason is None


def test_rf_saying_no_fails_the_qualification_with_rfs_reason_and_takes_it_out_of_reconciliation():
    work = world()
    link, contact = joined(work)
    work.apis.rf_.answers = [Permanent("Referral Factory answered 422: Campaign is paused")]
    with pytest.raises(Permanent):
        work.deps.qualifier.evaluate(link, RULE, met(contact))
    failed = link_of(work)
    assert failed.qualification is QState.FAILED and failed.reason.endswith("Campaign is paused")
    assert work.store.links.pending(None, 10).links == []


def test_a_refusal_for_a_user_rf_already_qualified_is_a_success():
    work = world()
    link, contact = joined(work)
    work.apis.rf_.qualified.append("7")                       # a resent PUT: RF already has it
    work.apis.rf_.answers = [Permanent("Referral Factory answered 422: already qualified")]
    work.deps.qualifier.evaluate(link, RULE, met(contact))
    assert link_of(work).qualification is QState.QUALIFIED


def test_taking_over_a_dead_workers_claim_asks_rf_before_calling_it_again():
    work = world()
    link, contact = joined(work)
    work.store.links.start_qualifying(link)                 # a worker claimed it...
    work.apis.rf_.qualified.append("7")                     # ...RF said yes, and the Lambda died
    work.clock.now += 600
    work.deps.qualifier.evaluate(link_of(work), RULE, met(contact))
    assert work.apis.rf_.calls == ["get_user 7"] and link_of(work).qualification is QState.QUALIFIED


def test_a_claim_held_by_another_worker_is_recorded_and_rf_is_not_called():
    work = world()
    link, contact = joined(work)
    work.store.links.start_qualifying(link)
    after = work.deps.qualifier.evaluate(link, RULE, met(contact))
    assert after.qualification is QState.QUALIFYING and work.apis.rf_.calls == []
    assert history(work)[-1] == ("qualification", "in_progress_elsewhere")


def test_an_already_qualified_lead_is_counted_as_a_repeat():
    work = world()
    link, contact = joined(work)
    work.deps.qualifier.evaluate(link, RULE, met(contact))
    work.deps.qualifier.qualify(link, "webhook")            # a stale view of the link: still pending
    assert work.apis.rf_.qualified == ["7"] and history(work)[-1] == ("qualification_qualified", "ignored")


def test_a_value_that_arms_is_written_on_the_link():
    work = world()
    link, contact = joined(work, signed_up="Yes")
    after = work.deps.qualifier.evaluate(link, RULE, Sighting({**contact, "custom_attributes": {"signed_up": "No"}},
                                                              "reconciliation"))
    assert after.armed and link_of(work).armed and work.apis.rf_.calls == []
