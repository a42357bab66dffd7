"""RF not knowing a user or a campaign is read from RF's status (404), never from digits in its message."""
from __future__ import annotations

import pytest

from chalicelib.adapters.referral_factory import ReferralFactoryClient
from chalicelib.errors import Permanent
from chalicelib.services import sync
from infra.local.sims.referral_factory import RFSim
from tests.unit.test_sync import world


@pytest.fixture
def rf():
    with RFSim() as sim:
        sim.add_campaign(7, "Spring")
        yield sim


def test_rfs_4xx_answers_carry_their_status_whatever_their_message_says(rf):
    client = ReferralFactoryClient(rf.base_url, "rf-token")
    with pytest.raises(Permanent) as unknown:
        client.get_user("424242")
    assert unknown.value.status == 404
    rf.fail_next("GET", r"/users/424242", 422, body={"message": "user 404 of campaign 404 is not valid"})
    with pytest.raises(Permanent) as refused:
        client.get_user("424242")
    assert refused.value.status == 422 and "404" in refused.value.reason


@pytest.mark.parametrize("status, stopped", [(404, "does not exist in Referral Factory"), (422, None)])
def test_sync_checks_say_the_campaign_is_unknown_only_when_rf_answers_404(status, stopped):
    work = world(1)
    work.apis.rf_.campaign_answers = [Permanent(f"Referral Factory answered {status}: campaign 404 not found",
                                                status=status)]
    settings = sync.settings_of(work.deps, "42")
    if stopped:
        assert any(stopped in p for p in sync.checks(work.deps, settings))
    else:
        with pytest.raises(Permanent, match="422"):
            sync.checks(work.deps, settings)


def test_a_campaign_rf_answers_404_for_is_said_with_the_other_cause_a_token_of_another_account():
    """An operator's `bridge sync start 4343` said "campaign 4343 does not exist in Referral Factory — fix
    campaign_id", where the campaign id was right and the RF token another account's (RF answers 404 to both, and
    `doctor` names both): the line now names both fixes, as doctor's does."""
    work = world(1)
    work.apis.rf_.campaign_answers = [Permanent("Referral Factory answered 404: Campaign not found.", status=404)]
    [problem] = sync.checks(work.deps, sync.settings_of(work.deps, "42"))
    assert problem == ("campaign 42 does not exist in Referral Factory, or the RF token is another account's (RF "
                       "answered 404) — fix campaign_id, or give the token of the account that owns campaign 42 "
                       "(`bridge rf connect`)")
