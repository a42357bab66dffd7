"""The promise of seconds, measured: QualificationDelaySeconds (the change in Intercom that qualified her, to RF's
confirmation) and JoinDelaySeconds (RF's webhook received, to the contact written in Intercom), once each, on the
fake clock; and never the money path's failure."""
from __future__ import annotations

import pytest

from chalicelib import observability
from chalicelib.domain.judge import Sighting
from chalicelib.domain.latency import changed_at, delay
from chalicelib.domain.qualification import QState
from chalicelib.errors import Transient
from chalicelib.messages import JoinMessage
from chalicelib.observability import metrics
from chalicelib.services.worker import RetryBatch
from tests.unit.scenario import changed, changes, check, event, joined, link_of, run, set_value, world

QUALIFIED = "QualificationDelaySeconds"


@pytest.fixture(autouse=True)
def fresh_metrics():
    metrics.metric_set.clear()
    yield
    metrics.metric_set.clear()


def emitted(name: str) -> list[float]:
    return list(metrics.metric_set[name]["Value"]) if name in metrics.metric_set else []


def test_a_delay_is_the_seconds_since_the_change_none_when_its_time_is_unknown_and_never_negative():
    assert delay(100.0, 130.5) == 30.5
    assert delay(None, 130.0) is None
    assert delay(131.0, 130.0) == 0.0           # Intercom's clock ahead of ours
    assert changed_at(Sighting({"updated_at": 50}, "webhook", when=90.0)) == 90.0     # the notification's time
    assert changed_at(Sighting({"updated_at": 50}, "check", current=True)) == 50.0     # the value read: its own
    assert changed_at(Sighting({"updated_at": "1970-01-01T00:01:40Z"}, "search")) == 100.0
    assert changed_at(Sighting({}, "join resumed")) is None


def met_at(contact: dict, when: float, **kw) -> Sighting:
    return Sighting({**contact, "custom_attributes": {"signed_up": "Yes"}}, "webhook contact.lead.updated", when, **kw)


def test_a_qualification_emits_its_delay_once_not_again_for_a_repeat_or_a_replay_of_it():
    from tests.unit.test_qualifier import SETTINGS
    work = world()
    link, contact = joined(work)
    changed = work.clock.now - 4.0          # Intercom's notification, created 4 s before the worker took it
    work.deps.qualifier.evaluate(link, SETTINGS, met_at(contact, changed))
    assert link_of(work).qualification is QState.QUALIFIED and work.apis.rf_.qualified == ["7"]
    assert emitted(QUALIFIED) == [4.0] and emitted("ReferralsQualified") == [1.0]
    work.clock.now += 60
    work.deps.qualifier.evaluate(link_of(work), SETTINGS, met_at(contact, changed))                 # Intercom again
    work.deps.qualifier.evaluate(link_of(work), SETTINGS, met_at(contact, changed, replay=True))    # a dlq replay
    assert emitted(QUALIFIED) == [4.0] and work.apis.rf_.qualified == ["7"]


def test_a_qualification_rf_confirms_on_a_retry_is_measured_from_the_change_once():
    """RF refuses the PUT with a 429: the retry that it confirms emits the whole wait, once; the try that did not
    confirm it emits nothing."""
    from tests.unit.test_qualifier import SETTINGS
    work = world()
    link, contact = joined(work)
    changed = work.clock.now
    work.apis.rf_.answers = [Transient("Referral Factory answered 429")]
    with pytest.raises(Transient):
        work.deps.qualifier.evaluate(link, SETTINGS, met_at(contact, changed))
    assert link_of(work).qualification is QState.UNCONFIRMED and emitted(QUALIFIED) == []
    work.clock.now += 720                   # the queue's retry
    work.deps.qualifier.evaluate(link_of(work), SETTINGS, met_at(contact, changed))
    assert link_of(work).qualification is QState.QUALIFIED and emitted(QUALIFIED) == [720.0]


def test_a_lead_rf_holds_qualified_already_and_a_claim_taken_over_from_a_worker_that_died_emit_no_delay():
    """Not the bridge's doing (RF had her qualified already), or the change's time not known: a worker died holding
    the claim before anything of the try was written (its lease ran out; reconciliation's check takes it over)."""
    from tests.unit.test_qualifier import SETTINGS
    work = world()
    link, contact = joined(work)
    work.apis.rf_.qualified.append("7")         # qualified in RF before the bridge ever called it: not its doing
    work.deps.qualifier.evaluate(link, SETTINGS, met_at(contact, work.clock.now))
    assert emitted("ReferralsFoundQualified") == [1.0] and emitted(QUALIFIED) == []
    other = world()
    link, contact = joined(other)
    assert other.store.links.start_qualifying(link) is not None          # the worker dies here
    other.clock.now += other.config.lease + 60
    run(other, check())                                                  # reconciliation's check of the overdue claim
    assert link_of(other).qualification is QState.QUALIFIED and emitted("ReferralsQualified") == [1.0]
    assert emitted(QUALIFIED) == []


def deferred_once(work) -> None:
    """RF's budget spent (or its 429): the qualification's PUT waits, not sent; the claim is left unconfirmed."""
    work.apis.rf_.answers = [Transient("Referral Factory answered 429")]


def test_a_lost_webhook_reconciliations_check_catches_is_measured_from_the_contacts_change_once():
    """The webhook of her change to "Yes" was lost: reconciliation's check reads her contact 10 minutes later, and
    RF confirms her: the delay counts from her contact's updated_at (Intercom's time of that change), once."""
    work = world()
    _, contact = joined(work)
    changed(work, contact, "Yes", at=work.clock.now)
    work.clock.now += 600
    run(work, check())
    assert link_of(work).qualification is QState.QUALIFIED and emitted(QUALIFIED) == [600.0]
    work.clock.now += 3600
    run(work, check())                                                   # the next round's check: nothing more
    assert emitted(QUALIFIED) == [600.0] and emitted("ReferralsQualified") == [1.0]


@pytest.mark.parametrize("found_by", ["the sweep's check", "the search of changes", "its webhook"])
def test_a_qualification_left_unconfirmed_and_finished_by_a_retry_or_reconciliation_counts_from_the_change_once(
        found_by):
    """She reached the target; the try that decided it could not have RF confirm it (RF's 429: not sent). The claim
    is left unconfirmed, and what finishes it (the check's or the search's retry, or reconciliation's check of the
    overdue claim: Qualifier.resume, which judges nothing again) knew no change: no delay was emitted, so the delays
    of the qualifications reconciliation finishes (a lost webhook caught, then RF busy) never showed. The try that
    confirms it emits the whole wait from her change, once; the one that did not, nothing."""
    work = world()
    _, contact = joined(work)
    at = work.clock.now
    changed(work, contact, "Yes", at=at)
    first = {"the sweep's check": check(), "the search of changes": changes(work, at + 60),
             "its webhook": event(contact, created_at=at)}[found_by]
    work.clock.now += 300
    deferred_once(work)
    with pytest.raises(RetryBatch):
        run(work, first)
    assert link_of(work).qualification is QState.UNCONFIRMED and emitted(QUALIFIED) == []
    work.clock.now += 720
    run(work, check(), receives=2)                # the check's retry, or reconciliation's check of the overdue claim
    assert link_of(work).qualification is QState.QUALIFIED
    assert emitted(QUALIFIED) == [1020.0] and emitted("ReferralsQualified") == [1.0]
    run(work, check(), receives=3)                # its repeat: nothing more
    assert emitted(QUALIFIED) == [1020.0]


def test_a_resume_that_fails_again_still_counts_from_the_first_change():
    """The try that left the qualification unfinished kept the change's time (Qualifier._unconfirmed); a resume that
    fails too keeps none of its own: the try that confirms it counts from the first."""
    other = world()
    _, contact = joined(other)
    at = other.clock.now
    deferred_once(other)
    with pytest.raises(RetryBatch):
        run(other, event(set_value(other, contact, "Yes"), created_at=at))
    other.clock.now += 900
    deferred_once(other)
    with pytest.raises(RetryBatch):
        run(other, check())                             # reconciliation's check: RF still busy
    other.clock.now += 900
    run(other, check(), receives=2)
    assert emitted(QUALIFIED) == [1800.0] and link_of(other).qualification is QState.QUALIFIED


def test_a_replay_of_a_refused_qualification_resumed_emits_no_delay_of_the_refused_ones_change():
    """A qualification RF refused ends it: a dead letter's replay (a check's: the link keeps no change's time) left
    unconfirmed, then resumed, does not count from the change of the refused one."""
    from chalicelib.errors import Permanent
    work = world()
    _, contact = joined(work)
    work.apis.rf_.answers = [Permanent("Referral Factory answered 422: user cannot be qualified", status=422)]
    run(work, event(set_value(work, contact, "Yes"), created_at=work.clock.now))
    assert link_of(work).qualification is QState.FAILED and emitted(QUALIFIED) == []
    work.clock.now += 3600
    deferred_once(work)
    with pytest.raises(RetryBatch):
        run(work, check(replayed_from="letter-1"))      # the operator's replay of its letter: RF busy
    work.clock.now += 900
    run(work, check())                                  # reconciliation finishes it
    assert link_of(work).qualification is QState.QUALIFIED and emitted(QUALIFIED) == []


def test_a_webhook_qualifies_her_and_its_notification_time_is_the_start():
    work = world()
    _, contact = joined(work)
    sent = work.clock.now - 3      # (Intercom stamps whole seconds)
    run(work, event({**contact, "custom_attributes": {"signed_up": "Yes"}}, created_at=sent))
    assert link_of(work).qualification is QState.QUALIFIED and emitted(QUALIFIED) == [3.0]
    run(work, event({**contact, "custom_attributes": {"signed_up": "Yes"}}, notification="n2", created_at=sent))
    assert emitted(QUALIFIED) == [3.0]


def test_a_delay_metric_powertools_refuses_never_fails_the_qualification(monkeypatch):
    from tests.unit.test_qualifier import SETTINGS

    def refused(**_):
        raise ValueError("Powertools refused the metric")
    work = world()
    link, contact = joined(work)
    monkeypatch.setattr(metrics, "add_metric", lambda **kw: refused(**kw) if kw["name"] == QUALIFIED else None)
    done = work.deps.qualifier.evaluate(link, SETTINGS, met_at(contact, work.clock.now))
    assert done.qualification is QState.QUALIFIED and link_of(work).qualification is QState.QUALIFIED


def test_nothing_is_measured_outside_a_lambda():
    with observability.uncounted():
        observability.seconds(QUALIFIED, 3.0)
    observability.seconds(QUALIFIED, None)
    assert emitted(QUALIFIED) == []


def test_a_join_emits_the_seconds_from_its_webhook_to_its_contact_once():
    from tests.unit.test_join_use_case import LEAD, world as join_world
    work = join_world()
    received = work.clock.now - 1.5
    body = JoinMessage(campaign_id="42", rf_user_id="7", person=LEAD, received_at=received).wire()
    run(work, body)
    assert link_of(work, "7").status.value == "linked" and emitted("JoinDelaySeconds") == [1.5]
    work.clock.now += 30
    run(work, body)                         # RF's webhook again: a repeat, ignored
    assert emitted("JoinDelaySeconds") == [1.5]
    run(work, JoinMessage(campaign_id="42", rf_user_id="3", person={**LEAD, "id": "3", "email": "b@example.com"}
                          ).wire())         # a message without the edge's time (reconciliation's): none measured
    assert emitted("JoinDelaySeconds") == [1.5]


def test_a_join_bridge_backfill_queued_emits_no_join_delay_its_queueing_is_no_webhook():
    """`bridge backfill --apply` queues the joins of people RF lists that the bridge never applied: some joined
    months ago, their webhook lost. The seconds since backfill queued them are no promise kept or broken (the
    operator chose when to run it), and a run of thousands would crowd JoinDelaySeconds' p95 and maximum with
    the queue's drain: the join is applied and counted, no delay emitted."""
    from chalicelib.services.backfill import backfill
    from tests.unit.test_answers import SETTINGS as BACKFILLED, WS as BACKFILL_WS, Backfilling
    from tests.unit.test_join_use_case import LEAD, world as join_world
    rt = Backfilling([{**LEAD, "type": "person_invited"}])
    rt.store.settings.put("42", BACKFILLED, BACKFILL_WS)
    backfill(rt, "42", apply=True)
    [queued] = rt.queue.sent
    work = join_world()
    work.clock.now = rt.clock.now + 600             # the queue drained 10 minutes after backfill queued it
    run(work, queued)
    assert link_of(work, "7").status.value == "linked" and emitted("ContactsCreated") == [1.0]
    assert emitted("JoinDelaySeconds") == []
