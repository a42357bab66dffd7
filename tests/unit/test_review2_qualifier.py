"""Review of today's change to Qualifier._rf_says (the other-campaign check moved RF's reading of the
user out of its try): what `quiet` promised no longer holds."""
from __future__ import annotations

import pytest

from chalicelib.domain.qualification import QState
from chalicelib.errors import Permanent
from tests.unit.scenario import joined, link_of, world
from tests.unit.test_qualifier import SETTINGS, met


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
    FAILED (with RF's 422 reason, and the other campaign's when RF names one), and a Permanent is what the worker sees. Today the Transient (or
    OtherCampaign) raised by qualified_at/campaign_user escapes the `except Permanent` handler: the claim is
    never finished, so the referral stays QUALIFYING under a lease (the retry finds it "in progress
    elsewhere"), RF's 422 reason is recorded nowhere, and the worker retries a failure that is permanent."""
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
