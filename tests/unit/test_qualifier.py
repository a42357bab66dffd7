"""The Qualifier: one claim, one RF call, and what happens when RF is slow, says no, loses its
answer, or a worker died."""
from __future__ import annotations

import pytest

from chalicelib.domain.judge import Sighting
from chalicelib.domain.qualification import QState
from chalicelib.domain.settings import CampaignSettings, Qualification
from chalicelib.errors import Deferred, Permanent, Transient, Uncertain
from tests.unit.scenario import WS, history, joined, link_of, reasons, world

RULE = Qualification(attribute="custom_attributes.signed_up", value="Yes")
SETTINGS = CampaignSettings(campaign_id="42", workspace=WS, qualification=RULE)


def met(contact):
    return Sighting({**contact, "custom_attributes": {"signed_up": "Yes"}}, "webhook contact.lead.updated")


def first_answered(answer: Exception):
    """A joined lead meets the rule and RF's first answer to the qualification is `answer`, which the
    evaluation raises: the world, the contact and what was raised."""
    work = world()
    link, contact = joined(work)
    work.apis.rf_.answers = [answer]
    with pytest.raises(type(answer)) as raised:
        work.deps.qualifier.evaluate(link, SETTINGS, met(contact))
    return work, contact, raised.value


def test_rf_busy_leaves_the_decision_unconfirmed_and_the_retry_sends_it_without_asking_rf_first():
    """A 429 is RF refusing the PUT (after RF, asked first, said no): nothing was applied, so RF's
    budget is not spent on asking again."""
    work, contact, raised = first_answered(Transient("Referral Factory answered 429"))
    assert raised.person == ("42", "7") and link_of(work).qualification is QState.UNCONFIRMED
    assert link_of(work).reason == ("Referral Factory answered 429 — Referral Factory did not apply the "
                                    "qualification: the next try sends it") and link_of(work).rf_said_no
    work.deps.qualifier.evaluate(link_of(work), SETTINGS, met(contact))
    assert work.apis.rf_.qualified == ["7"] and link_of(work).reason is None
    assert work.apis.rf_.calls == ["get_user 7", "qualify 7", "qualify 7"]      # asked first: no
    assert history(work)[-3:] == [("evaluation", "met"), ("qualification", "resumed"), ("qualification", "qualified")]


def test_after_a_lost_answer_rf_is_asked_once_and_its_no_holds_while_the_budget_holds_the_put_back():
    """The PUT's answer is lost (RF did not apply it): the next try asks RF, which says no, and then
    the shared budget has no slot for the PUT. RF's "no" still holds: the try after that sends the
    PUT without asking again (each ask is a call of RF's scarce budget)."""
    work = world()
    link, contact = joined(work)
    work.apis.rf_.answers = [Uncertain("Referral Factory PUT /users/qualification: no answer (ReadTimeout)"),
                             Deferred("the shared Referral Factory budget (500 calls per 60s) is spent")]
    with pytest.raises(Uncertain):
        work.deps.qualifier.evaluate(link, SETTINGS, met(contact))
    assert not link_of(work).rf_said_no                     # it may have reached RF: ask first
    with pytest.raises(Deferred):
        work.deps.qualifier.evaluate(link_of(work), SETTINGS, met(contact))
    assert link_of(work).qualification is QState.UNCONFIRMED and link_of(work).rf_said_no
    work.deps.qualifier.evaluate(link_of(work), SETTINGS, met(contact))
    assert work.apis.rf_.calls == ["get_user 7", "qualify 7",      # asked first: no; sent, its answer lost
                                   "get_user 7",                   # asked at once (quietly): no
                                   "get_user 7", "qualify 7",      # asked first: no; the budget held it back
                                   "qualify 7"]                    # RF's no still holds: sent
    assert work.apis.rf_.qualified == ["7"] and link_of(work).qualification is QState.QUALIFIED


RF_429 = "Referral Factory answered 429: Too Many Requests"
LOST = "Referral Factory PUT /users/qualification: no answer (ReadTimeout)"


def left_unfinished(work, contact: dict, puts: list, gets: list) -> tuple[str, str]:
    """A try on the met rule whose PUT's and questions' answers are `puts` and `gets` is left
    unfinished: its history entry's outcome and words."""
    work.apis.rf_.answers, work.apis.rf_.get_answers = list(puts), list(gets)
    with pytest.raises(Transient):
        work.deps.qualifier.evaluate(link_of(work), SETTINGS, met(contact))
    assert link_of(work).qualification is QState.UNCONFIRMED
    return history(work)[-1][1], reasons(work)[-1]


@pytest.mark.parametrize("puts, gets, outcome, says", [
    ([Deferred(RF_429)], [], "not_applied",                 # RF said no, then refused the PUT
     f"{RF_429} — Referral Factory did not apply the qualification: the next try sends it"),
    ([], [Deferred(RF_429)], "not_applied",                 # RF refused the first question: nothing sent
     f"{RF_429} — Referral Factory did not apply the qualification: the next try asks it first"),
    ([Uncertain(LOST)], [None, Transient("Referral Factory did not answer: read timed out")], "unconfirmed",
     f"{LOST} — Referral Factory may have qualified the user: it is asked before the call is made again"),
])
def test_the_history_says_whether_an_unfinished_try_may_have_qualified_the_user(puts, gets, outcome, says):
    """A 429 is RF refusing the call: "unconfirmed" would read as "may have been applied"."""
    work = world()
    assert left_unfinished(work, joined(work)[1], puts, gets) == (outcome, says)


def test_a_put_that_may_have_reached_rf_stays_unconfirmed_until_rf_is_asked_even_after_a_429():
    """RF applied the PUT and its answer was lost; the next try's question is refused with a 429.
    That try sent nothing, but the earlier PUT may have qualified the user: still unconfirmed, and
    the try after asks first. One PUT."""
    work = world()
    _, contact = joined(work)
    work.apis.rf_.lost = 1
    assert left_unfinished(work, contact, [], [None, Transient("Referral Factory did not answer")])[0] == "unconfirmed"
    assert left_unfinished(work, contact, [], [Deferred(RF_429)]) == (
        "unconfirmed", f"{RF_429} — Referral Factory may have qualified the user: it is asked before the call is "
                       "made again")
    work.deps.qualifier.evaluate(link_of(work), SETTINGS, met(contact))
    assert [c for c in work.apis.rf_.calls if c.startswith("qualify")] == ["qualify 7"]
    assert work.apis.rf_.calls[-1] == "get_user 7" and link_of(work).qualification is QState.QUALIFIED


def test_rf_applies_the_call_and_its_answer_is_lost_one_put_and_qualified_in_the_same_try():
    work = world()
    link, contact = joined(work)
    work.apis.rf_.lost = 1
    work.deps.qualifier.evaluate(link, SETTINGS, met(contact))
    assert work.apis.rf_.calls == ["get_user 7", "qualify 7", "get_user 7"]   # asked, never sent again
    assert link_of(work).qualification is QState.QUALIFIED
    assert "asked before calling it again" in reasons(work)[-1]


def test_four_lost_answers_in_a_row_still_make_one_put_and_the_referral_ends_qualified():
    """RF applies the PUT and its answer is lost; the next three answers (RF asked whether the user
    is qualified) are lost too. Every retry asks first: RF receives one PUT."""
    work = world()
    link, contact = joined(work)
    work.apis.rf_.lost = 1
    work.apis.rf_.get_answers = [None, *[Transient("Referral Factory did not answer: read timed out")] * 3]
    with pytest.raises(Uncertain) as raised:
        work.deps.qualifier.evaluate(link, SETTINGS, met(contact))
    assert raised.value.retry_after == 30 and link_of(work).qualification is QState.UNCONFIRMED
    assert "it is asked before the call is made again" in link_of(work).reason
    for _ in range(2):                     # the message's retries: RF still cannot be asked
        with pytest.raises(Transient):
            work.deps.qualifier.evaluate(link_of(work), SETTINGS, met(contact))
        assert link_of(work).qualification is QState.UNCONFIRMED
    work.deps.qualifier.evaluate(link_of(work), SETTINGS, met(contact))
    assert [c for c in work.apis.rf_.calls if c.startswith("qualify")] == ["qualify 7"]
    assert link_of(work).qualification is QState.QUALIFIED


def test_a_lost_answer_for_a_call_rf_never_applied_is_sent_again_only_after_rf_says_no():
    work, contact, _ = first_answered(Uncertain("Referral Factory did not answer: connection dropped"))
    assert work.apis.rf_.calls == ["get_user 7", "qualify 7", "get_user 7"]
    assert link_of(work).qualification is QState.UNCONFIRMED
    work.deps.qualifier.evaluate(link_of(work), SETTINGS, met(contact))
    assert work.apis.rf_.calls[3:] == ["get_user 7", "qualify 7"] and work.apis.rf_.qualified == ["7"]


def test_an_unconfirmed_decision_is_finished_whatever_the_contact_says_now():
    """Once the rule was met, the referral is due: a later "No" does not take it back."""
    work, _, _ = first_answered(Transient("Referral Factory answered 429"))
    work.deps.qualifier.resume(link_of(work), "reconciliation")
    assert work.apis.rf_.qualified == ["7"] and link_of(work).qualification is QState.QUALIFIED


def test_rf_saying_no_fails_the_qualification_with_rfs_reason_and_takes_it_out_of_reconciliation():
    work, _, _ = first_answered(Permanent("Referral Factory answered 422: Campaign is paused"))
    failed = link_of(work)
    assert failed.qualification is QState.FAILED and failed.reason.endswith("Campaign is paused")
    assert work.store.links.pending(None, 10).links == []


def test_a_refusal_for_a_user_rf_already_qualified_is_a_success():
    work = world()
    link, contact = joined(work)
    work.apis.rf_.qualified.append("7")                       # a resent PUT: RF already has it
    work.apis.rf_.answers = [Permanent("Referral Factory answered 422: already qualified")]
    work.deps.qualifier.evaluate(link, SETTINGS, met(contact))
    assert link_of(work).qualification is QState.QUALIFIED


def test_taking_over_a_dead_workers_claim_asks_rf_before_calling_it_again():
    work = world()
    link, contact = joined(work)
    work.store.links.start_qualifying(link)                 # a worker claimed it...
    work.apis.rf_.qualified.append("7")                     # ...RF said yes, and the Lambda died
    work.clock.now += 600
    work.deps.qualifier.evaluate(link_of(work), SETTINGS, met(contact))
    assert work.apis.rf_.calls == ["get_user 7"] and link_of(work).qualification is QState.QUALIFIED
    assert ("qualification", "taken_over") in history(work)


def test_a_worker_that_died_after_rfs_no_was_remembered_is_taken_over_asking_rf_first():
    """RF's "no" was remembered (the budget held the PUT back); the next try sent the PUT and died
    mid-call. The link still says RF said no, but its PUT may have landed: the takeover asks."""
    work, contact, _ = first_answered(Deferred("the shared Referral Factory budget (500 calls per 60s) is spent"))
    assert link_of(work).rf_said_no
    work.store.links.start_qualifying(link_of(work))        # the next try's worker claimed it...
    work.apis.rf_.qualified.append("7")                     # ...its PUT reached RF, and the Lambda died
    work.clock.now += 600
    work.deps.qualifier.evaluate(link_of(work), SETTINGS, met(contact))
    assert work.apis.rf_.calls == ["get_user 7", "qualify 7", "get_user 7"]
    assert link_of(work).qualification is QState.QUALIFIED


def test_rf_unreachable_when_asked_first_sends_nothing():
    work = world()
    link, contact = joined(work)
    work.store.links.start_qualifying(link)
    work.clock.now += 600                                   # the claim's worker died mid-call
    work.apis.rf_.get_answers = [Transient("Referral Factory answered 503")]
    with pytest.raises(Transient):
        work.deps.qualifier.resume(link_of(work), "reconciliation")
    assert work.apis.rf_.calls == ["get_user 7"] and link_of(work).qualification is QState.UNCONFIRMED


def test_a_claim_held_by_another_worker_is_recorded_and_rf_is_not_called():
    work = world()
    link, contact = joined(work)
    work.store.links.start_qualifying(link)
    after = work.deps.qualifier.evaluate(link, SETTINGS, met(contact))
    assert after.qualification is QState.QUALIFYING and work.apis.rf_.calls == []
    assert history(work)[-1] == ("qualification", "in_progress_elsewhere")


def test_an_already_qualified_lead_is_counted_as_a_repeat():
    work = world()
    link, contact = joined(work)
    work.deps.qualifier.evaluate(link, SETTINGS, met(contact))
    work.deps.qualifier.qualify(link, "webhook")            # a stale view of the link: still pending
    assert work.apis.rf_.qualified == ["7"] and history(work)[-1] == ("qualification_qualified", "ignored")


def test_a_value_that_arms_is_written_on_the_link():
    work = world()
    link, contact = joined(work, signed_up="Yes")
    after = work.deps.qualifier.evaluate(link, SETTINGS, Sighting({**contact, "custom_attributes": {"signed_up": "No"}},
                                                              "reconciliation", current=True))
    assert after.armed and link_of(work).armed and work.apis.rf_.calls == []


def test_rf_placing_the_user_in_another_campaign_fails_the_qualification_without_a_put():
    """The join's body carried every mapped field (RF was not read then); the read before the first
    PUT shows RF's user belongs to campaign 43, not the link's 42: a permanent failure, no PUT, ever."""
    work = world()
    link, contact = joined(work)
    work.apis.rf_.users["7"] = {"id": 7, "campaign_id": 43}
    with pytest.raises(Permanent) as raised:
        work.deps.qualifier.evaluate(link, SETTINGS, met(contact))
    assert raised.value.reason == "RF user 7 belongs to campaign 43, not 42"
    assert work.apis.rf_.calls == ["get_user 7"] and link_of(work).qualification is QState.FAILED
    assert reasons(work)[-1] == "RF user 7 belongs to campaign 43, not 42"
    with pytest.raises(Permanent):                             # a replay asks again, and refuses again
        work.deps.qualifier.evaluate(link_of(work), SETTINGS, Sighting(met(contact).contact, "replay", replay=True))
    assert work.apis.rf_.qualified == [] and link_of(work).qualification is QState.FAILED


@pytest.mark.parametrize("status", [401, 403])
def test_rf_refusing_the_token_when_asked_first_fails_the_qualification_without_the_put(status):
    """The PUT would be refused too, and each refused one spends 2-3 calls of RF's 600 a minute: one call,
    the ask, and the qualification failed with the token's fix (`bridge rf connect`, then replay)."""
    work = world()
    link, contact = joined(work)
    refused = f"Referral Factory answered {status}: Unauthenticated — the RF token is invalid: run `bridge rf connect`"
    work.apis.rf_.get_answers = [Permanent(refused, status=status)]
    with pytest.raises(Permanent):
        work.deps.qualifier.evaluate(link, SETTINGS, met(contact))
    assert work.apis.rf_.calls == ["get_user 7"]
    failed = link_of(work)
    assert failed.qualification is QState.FAILED and "`bridge rf connect`" in failed.reason


def _refused_then_asked(*second: dict):
    """A joined lead meets the rule: RF, asked first, says not qualified (a user of campaign 42); the PUT is
    refused for good (422); RF, asked again (quietly) whether the PUT applied anyway, answers `second`."""
    work = world()
    link, contact = joined(work)
    rf = work.apis.rf_
    answers = [{"id": "7", "campaign_id": "42", "qualified_at": None}, *second]

    def get_user(user_id: str) -> dict:
        rf.calls.append(f"get_user {user_id}")
        return answers.pop(0)
    rf.get_user = get_user  # type: ignore[method-assign]
    rf.answers = [Permanent("Referral Factory answered 422: The given data was invalid.", status=422)]
    return work, link, contact


@pytest.mark.parametrize("second", [
    {"id": "7", "campaign_id": "42"},                          # no `qualified_at`: no answer (Transient)
    {"id": "7", "campaign_id": "43", "qualified_at": None},    # RF now places the user in another campaign
], ids=["answer-without-qualified_at", "answer-of-another-campaign"])
def test_a_put_refused_for_good_fails_the_qualification_whatever_rfs_quiet_answer_says(second):
    """Scenario: the qualification PUT is refused (RF 422). Before it is marked failed, RF is asked quietly
    (`_rf_says(quiet=True)`: "a resent PUT answered 'already qualified'"). RF's answer cannot be read as
    qualified or not: it lacks `qualified_at`, or names another campaign.
    Expected: as `quiet` promises, the question's failure is no answer: the qualification is finished as
    FAILED (with RF's 422 reason, and the other campaign's when RF names one), and a Permanent is what the
    worker sees. Before: the Transient (or OtherCampaign) raised by qualified_at/campaign_user escaped the
    `except Permanent` handler: the claim was never finished, so the referral stayed QUALIFYING under a lease
    (the retry found it "in progress elsewhere"), RF's 422 reason was recorded nowhere, and the worker retried
    a failure that is permanent."""
    work, link, contact = _refused_then_asked(second)
    with pytest.raises(Permanent) as raised:
        work.deps.qualifier.evaluate(link, SETTINGS, met(contact))
    assert "422" in raised.value.reason             # RF's own refusal, not "came without qualified_at"
    after = link_of(work)
    assert after.qualification is QState.FAILED, f"left {after.qualification} (the claim was never finished)"
    assert after.reason is not None and "422" in after.reason      # recorded where explain reads it
    if second["campaign_id"] == "43":
        assert "belongs to campaign 43" in after.reason             # and why RF refused it
    assert work.apis.rf_.calls.count("qualify 7") == 1
