"""RF's `User not found` (404) to a qualification was dead-lettered as a deleted user, its fix the discard, even when
the cause was an RF token of another account (RF says so of every user): a reward discarded. The worker now asks RF
for the campaign (once, cached a while): RF not knowing it with the token is the token's case, its letter replayed
once the token is fixed, never discarded; RF showing it is the user's (deleted there), discarded as before."""
from __future__ import annotations

from chalicelib.domain.advice import RF_GONE, discarded, never_succeeds
from chalicelib.errors import Permanent
from chalicelib.services import dead_letters
from chalicelib.services.explain import as_text, explain
from tests.unit import scenario

GONE = "Referral Factory answered 404: User not found."
NO_CAMPAIGN = Permanent("Referral Factory answered 404: Campaign not found.", status=404)


def qualified_with_404(campaign_answer=None):
    work = scenario.world()
    _, contact = scenario.joined(work)
    work.apis.rf_.campaign_answers = [campaign_answer]
    before = work.apis.rf_.campaign_calls
    work.apis.rf_.answers = [Permanent(GONE, status=404)]
    assert scenario.run(work, scenario.event(scenario.set_value(work, contact, "Yes")))["dead"] == 1
    [letter] = [dead_letters.read(m) for m in work.queue.letters.values()]
    return work, letter, work.apis.rf_.campaign_calls - before


def test_rf_not_knowing_the_campaign_with_the_token_makes_the_404_the_tokens_replayed_never_discarded():
    work, letter, asked = qualified_with_404(NO_CAMPAIGN)
    assert asked == 1
    assert not never_succeeds(letter.reason) and not discarded(letter.reason), letter.reason
    assert "does not know campaign 42 with the RF token" in letter.reason and "[rf.campaign]" in letter.reason
    fix = dead_letters.replay_fix(letter.reason, None)
    assert "discard" not in fix and "replay" in fix, fix
    text = as_text(explain(work, "ann@example.com"))
    assert "dlq discard" not in text and "RF token" in text, text
    # the token fixed (RF knows the campaign, the user): the replay qualifies her
    assert dead_letters.replay(work, reason="does not know campaign 42")["replayed"] == 1
    scenario.run(work, *work.queue.sent)
    assert "7" in work.apis.rf_.qualified


def test_rf_showing_the_campaign_with_the_token_makes_the_404_the_users_discarded_as_before():
    _, letter, asked = qualified_with_404(None)
    assert asked == 1
    assert RF_GONE in letter.reason and discarded(letter.reason)
    assert "Referral Factory shows campaign 42 with the RF token" in letter.reason, letter.reason
