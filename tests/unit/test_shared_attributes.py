"""One referral-link (and referral-count) attribute per campaign: two campaigns of a workspace writing
their own people's links or counts to one attribute overwrite each other's, whether a join's mapping row
(`from: url`) or contact sync (`sync.referral_link_attribute`, `sync.referral_count_attribute`) writes
it. `bridge doctor` reports it and `bridge settings apply` warns of it; a campaign of another workspace
writes other contacts. On the store's twin and fakes."""
from __future__ import annotations

from typing import Optional

import pytest

from tests.unit import scenario
from tests.unit.doctoring import checks, healthy, look
from tests.unit.moves import apply

LINK, COUNT = "custom_attributes.referral_link", "custom_attributes.referral_count"
LINK_FIX = "create one referral-link attribute per campaign (e.g. custom_attributes.referral_link_42)"


def campaign(campaign_id: str, link_by: Optional[str] = "sync", count: Optional[str] = None,
             workspace: str = scenario.WS) -> dict:
    """A campaign's settings writing its referral links to LINK by a join's mapping row ("mapping") or by
    contact sync ("sync"), and its referral counts to `count`."""
    doc = {**scenario.settings(rule=None), "campaign_id": campaign_id, "workspace": workspace}
    if link_by == "mapping":
        doc["referrers"] = {**doc["referrers"], "fields": [{"from": "email", "to": "email"},
                                                           {"from": "url", "to": LINK}]}
    sync: dict = {"referral_count_attribute": count} if count else {}
    if link_by == "sync":
        sync.update(fields=[{"from": "email", "to": "email"}, {"from": "name", "to": "first_name"}],
                    referral_link_attribute=LINK)
    return {**doc, "sync": sync} if sync else doc


def shared(view: dict) -> list[tuple[str, str, str]]:
    return [(f["check"], f["what"], f["fix"]) for f in view["findings"]
            if f["check"] in ("settings.referral_link", "settings.referral_count") and not f["ok"]]


@pytest.mark.parametrize("mine,theirs", [("sync", "sync"), ("mapping", "sync"), ("sync", "mapping"),
                                         ("mapping", "mapping")])
def test_two_campaigns_writing_their_referral_links_to_one_attribute_are_reported_by_doctor_and_warned_by_apply(
        mine, theirs):
    rt = healthy()
    rt.store.settings.put("42", campaign("42", mine), scenario.WS)
    rt.store.settings.put("43", campaign("43", theirs), scenario.WS)
    rt.store.settings.put("44", campaign("44", "sync", workspace="other"), "other")   # other contacts: fine
    [(check, what, fix)] = shared(look(rt)[0])
    assert (check, what) == ("settings.referral_link", f"campaign 43 also writes its referral links to {LINK}")
    assert fix.startswith(LINK_FIX) and fix.endswith(
        "and map `url` to it" if mine == "mapping" else "and name it in sync.referral_link_attribute")
    warnings = apply(rt.work, campaign("42", mine))
    assert [w for w in warnings if "also writes" in w] == [f"{what} — a person in both campaigns gets one "
                                                           f"campaign's referral link over the other's: {fix}"]


def test_two_campaigns_keeping_referral_counts_in_one_attribute_are_reported_by_doctor_and_warned_by_apply():
    rt = healthy()
    rt.store.settings.put("42", campaign("42", link_by=None, count=COUNT), scenario.WS)
    rt.store.settings.put("43", campaign("43", count=COUNT), scenario.WS)
    rt.store.settings.put("44", campaign("44", count=COUNT, workspace="other"), "other")
    assert shared(look(rt)[0]) == [
        ("settings.referral_count", f"campaign 43 also writes its referral counts to {COUNT}",
         "create one referral-count attribute per campaign (e.g. custom_attributes.referral_count_42, a Number "
         "(integer) attribute) and name it in sync.referral_count_attribute")]
    [warning] = [w for w in apply(rt.work, campaign("43", count=COUNT)) if "also writes" in w]
    assert warning.startswith(f"campaign 42 also writes its referral counts to {COUNT} — a person in both campaigns "
                              "gets one campaign's referral count over the other's: create one referral-count")


def test_campaigns_writing_their_links_and_counts_to_attributes_of_their_own_are_not_reported():
    rt = healthy()
    rt.store.settings.put("42", campaign("42", "mapping", count=COUNT), scenario.WS)
    other = campaign("43", count=COUNT + "_43")
    other["sync"]["referral_link_attribute"] = LINK + "_43"
    rt.store.settings.put("43", other, scenario.WS)
    assert shared(look(rt)[0]) == []
    assert [w for w in apply(rt.work, other) if "also writes" in w] == []
