"""Referral counts end to end (product.md §4 "and optionally referral counts"): moto server, the
simulators (every request to Intercom checked against its OpenAPI file), the worker driven like
Lambda's SQS event source."""
from __future__ import annotations

import pytest

from tests.integration.conftest import join_body, lead_settings
from tests.integration.test_sync import cli, segment, sync_settings

COUNT = "custom_attributes.referral_count"


@pytest.fixture
def rita(bridge, intercom, rf, capsys):
    """A referrer enrolled by sync, in a campaign that keeps referral counts."""
    intercom.define_attribute("referral_count", "integer")
    seg, [contact] = segment(intercom, 0, **{"rita@example.com": {"name": "Rita"}})
    bridge.apply(sync_settings(seg, referral_count_attribute=COUNT))
    assert cli(bridge, "sync", "start", "42", capsys=capsys)[0] == 0
    bridge.drain()
    [user] = rf.users_by_email("rita@example.com", 42)
    return contact, user


def leads(rf, referrer: dict, n: int) -> list[dict]:
    return [rf.add_user(42, f"lead{i}@example.com", f"Lead {i}", referrer_id=referrer["id"]) for i in range(n)]


def count_of(intercom, contact: dict):
    return intercom.get(contact["id"])["custom_attributes"].get("referral_count")


def test_two_leads_each_delivered_twice_out_of_order_leave_2_on_the_referrers_contact_and_her_history_says_so(
        bridge, intercom, rf, rita, capsys):
    contact, user = rita
    first, second = leads(rf, user, 2)
    for lead in (second, first, second):
        assert bridge.post_join(join_body(lead)).status_code == 202
    bridge.drain()
    assert bridge.post_join(join_body(first)).status_code == 202
    bridge.drain()
    assert count_of(intercom, contact) == 2
    history = bridge.history(42, user["id"])["history"]
    assert [h["reason"] for h in history if h["event"] == "referral_count"][-1] == \
        f"referral count: 2 written to {COUNT}"
    code, out, _ = cli(bridge, "explain", "rita@example.com", capsys=capsys)
    assert code == 0 and f"referral count: 2 written to {COUNT}" in out


def test_a_failed_write_is_retried_and_the_count_ends_right_with_intercoms_message_in_the_history(
        bridge, intercom, rf, rita):
    contact, user = rita
    intercom.fail_next("PUT", rf"^/contacts/{contact['id']}$", 500, times=4)   # the client's own retries too
    for lead in leads(rf, user, 3):
        bridge.post_join(join_body(lead))
    bridge.poller.drain(retry_failures=True)
    assert count_of(intercom, contact) == 3
    reasons = [h["reason"] for h in bridge.history(42, user["id"])["history"] if h["event"] == "referral_count"]
    assert reasons[0].startswith(f"referral count: 3 could not be written to {COUNT}: ") and "500" in reasons[0]
    assert reasons[-1] == f"referral count: 3 written to {COUNT}"
    assert bridge.dead_letters() == []


def test_a_campaign_without_the_setting_writes_no_count_and_makes_no_call_for_it(bridge, intercom, rf, counter):
    bridge.apply(lead_settings())
    referrer = rf.add_user(42, "ref@example.com", "Rita")
    bridge.post_join(join_body(referrer))
    bridge.drain()
    for lead in leads(rf, referrer, 2):
        bridge.post_join(join_body(lead))
    with counter.measure() as counts:
        bridge.drain()
    assert counts.intercom_requests and [r for r in counts.intercom_requests if r.startswith("PUT")] == []
    assert counts.aws_calls and [c for c in counts.aws_calls if "referral.count" in str(c.params)
                                 or "REFERRALS#" in str(c.params)] == []
    table = bridge.resources.client("dynamodb").scan(TableName=bridge.resources.table)["Items"]
    assert [i for i in table if i["sk"]["S"].startswith("REFERRALS#")] == []


def test_sync_report_and_doctor_say_where_the_count_is_written(bridge, intercom, rf, rita, capsys):
    code, out, _ = cli(bridge, "sync", "report", "42", capsys=capsys)
    assert code == 0 and f"each referrer's referral count (the leads the bridge saw join with them) to {COUNT}" in out
    _, out, _ = cli(bridge, "doctor", "42", "--json", capsys=capsys)
    assert f"referral count (the leads the bridge saw join with them) to {COUNT}" in out


def test_a_campaign_can_keep_counts_without_contact_sync(bridge, intercom, rf, capsys):
    """A sync block with only `referral_count_attribute`: applied as it is, counts written to the
    contact the referrer's own join linked, and no sync can start from it (it says what to add)."""
    intercom.define_attribute("referral_count", "integer")
    bridge.apply({**lead_settings(), "sync": {"referral_count_attribute": COUNT}})
    referrer = rf.add_user(42, "ref@example.com", "Rita")
    bridge.post_join(join_body(referrer))
    bridge.drain()
    for lead in leads(rf, referrer, 2):
        bridge.post_join(join_body(lead))
    bridge.drain()
    [contact] = intercom.contacts_by_email("ref@example.com")
    assert count_of(intercom, contact) == 2
    _, out, _ = cli(bridge, "doctor", "42", capsys=capsys)
    assert "no contact sync: the sync block only writes back each referrer's referral count" in out
    code, out, err = cli(bridge, "sync", "start", "42", "--dry-run", capsys=capsys)
    assert code != 0 and "this block only keeps referral counts" in out + err
    for command in ("status", "report"):
        code, out, err = cli(bridge, "sync", command, "42", capsys=capsys)
        assert code != 0 and "runs no contact sync: its sync block only keeps referral counts" in out + err
