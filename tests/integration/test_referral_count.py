"""Referral counts end to end (product.md §4 "and optionally referral counts"): moto server, the
simulators (every request to Intercom checked against its OpenAPI file), the worker driven like
Lambda's SQS event source."""
from __future__ import annotations

import json

import pytest

from chalicelib.cli import main
from chalicelib.ports.store import COUNT_ASK_GRACE
from tests.integration.conftest import join_body, lead_settings
from tests.integration.test_sync import cli, segment, sync_settings
from tests.support.killed import Killed
from tests.support.meanwhile import after

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


def joined_with_leads(bridge, intercom, rf, email: str, n: int) -> tuple[dict, dict]:
    """A campaign keeping counts without contact sync: a referrer whose own join linked their contact,
    then `n` leads of theirs joined. Their RF user and contact."""
    intercom.define_attribute("referral_count", "integer")
    bridge.apply({**lead_settings(), "sync": {"referral_count_attribute": COUNT}})
    referrer = rf.add_user(42, email, "Rita")
    for people in ([referrer], leads(rf, referrer, n)):
        for person in people:
            bridge.post_join(join_body(person))
        bridge.drain()
    [contact] = intercom.contacts_by_email(email)
    return referrer, contact


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
        bridge, intercom, rf, rita, clock):
    contact, user = rita
    intercom.fail_next("PUT", rf"^/contacts/{contact['id']}$", 500, times=4)   # the client's own retries too
    for lead in leads(rf, user, 3):
        bridge.post_join(join_body(lead))
    bridge.poller.drain(retry_failures=True)
    assert bridge.poller.release_delayed() == 1                      # Intercom's 500s: an outage, waited out
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
    _, contact = joined_with_leads(bridge, intercom, rf, "ref@example.com", 2)
    assert count_of(intercom, contact) == 2
    _, out, _ = cli(bridge, "doctor", "42", capsys=capsys)
    assert "no contact sync: the sync block only writes back each referrer's referral count" in out
    code, out, err = cli(bridge, "sync", "start", "42", "--dry-run", capsys=capsys)
    assert code != 0 and "this block only keeps referral counts" in out + err
    for command in ("status", "report"):
        code, out, err = cli(bridge, "sync", command, "42", capsys=capsys)
        assert code != 0 and "runs no contact sync: its sync block only keeps referral counts" in out + err



def test_a_forget_killed_before_it_asked_for_the_lowered_counts_write_is_repaired_by_reconciliation(
        bridge, intercom, rf, rita, clock, capsys):
    contact, user = rita
    for lead in leads(rf, user, 2):
        bridge.post_join(join_body(lead))
    bridge.drain()
    assert count_of(intercom, contact) == 2
    operator = bridge.operator()

    def killed(messages, delay=0):
        raise Killed()
    operator.queue.send_many = killed                                # type: ignore
    with pytest.raises(Killed):
        main(["forget", "lead0@example.com"], operator)
    code, out, _ = cli(bridge, "forget", "lead0@example.com", capsys=capsys)       # again: nothing left to erase
    assert code == 0 and json.loads(out)["links"] == 0
    bridge.drain()
    assert count_of(intercom, contact) == 2                          # the old count, until...
    clock.now += COUNT_ASK_GRACE + 1
    assert bridge.reconcile()["referral_count_writes"] == 1          # ...reconciliation asks for the write
    bridge.drain()
    assert count_of(intercom, contact) == 1
    assert "referral_count_writes" not in bridge.reconcile()


def test_a_forget_racing_backfill_counting_the_lead_asks_for_the_lowered_count_and_leaves_no_entry(
        bridge, intercom, rf, capsys):
    """The lead's join was applied before the campaign kept counts; `forget` reads their link, then
    `backfill --apply` counts them (an entry in their history) and writes the count, then `forget`
    erases them."""
    intercom.define_attribute("referral_count", "integer")
    bridge.apply(lead_settings())
    referrer = rf.add_user(42, "ref@example.com", "Rita")
    [lead] = leads(rf, referrer, 1)
    for person in (referrer, lead):
        bridge.post_join(join_body(person))
        bridge.drain()
    applied = bridge.apply({**lead_settings(), "sync": {"referral_count_attribute": COUNT}})
    assert [w for w in applied["warnings"] if "referral counts are turned on" in w] == [
        f"referral counts are turned on, to {COUNT}: run `bridge backfill 42 --apply` to write each referrer's "
        "count to it now (until then it shows the count last written, if any, and leads applied while counts "
        "were off are not counted)"]
    [contact] = intercom.contacts_by_email("ref@example.com")
    operator = bridge.operator()

    def backfill():
        assert cli(bridge, "backfill", "42", "--apply", capsys=capsys)[0] == 0
        bridge.drain()
        assert count_of(intercom, contact) == 1
    capsys.readouterr()
    with after(operator.store.lookup, "look_up", backfill):
        assert main(["forget", "lead0@example.com"], operator) == 0
    out = capsys.readouterr().out                                    # (after the worker's metrics lines)
    assert json.loads(out[out.index("{\n"):])["referral_counts_rewritten"] == 1
    bridge.drain()
    assert count_of(intercom, contact) == 0
    assert bridge.history(42, lead["id"])["history"] == []


def test_after_the_count_attribute_changes_one_backfill_writes_every_kept_count_to_the_new_attribute(
        bridge, intercom, rf, rita, capsys):
    contact, user = rita
    for lead in leads(rf, user, 2):
        bridge.post_join(join_body(lead))
    bridge.drain()
    assert count_of(intercom, contact) == 2
    intercom.define_attribute("referral_count2", "integer")
    document = bridge.operator().store.settings.get("42").document
    applied = bridge.apply({**document, "sync": {**document["sync"], "referral_count_attribute": COUNT + "2"}})
    assert f"run `bridge backfill 42 --apply` to write each referrer's count to it now" in " ".join(
        applied["warnings"])
    code, out, _ = cli(bridge, "backfill", "42", "--apply", "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["count_writes_queued"] == 1
    bridge.drain()
    shown = intercom.get(contact["id"])["custom_attributes"]
    assert (shown.get("referral_count2"), shown.get("referral_count")) == (2, 2)
    code, out, _ = cli(bridge, "backfill", "42", "--apply", "--json", capsys=capsys)    # nothing owed any more
    assert code == 0 and json.loads(out)["count_writes_queued"] == 0


def test_doctor_reports_the_count_backfill_settings_apply_asked_for_until_backfill_apply_completes(
        bridge, intercom, rf, clock, capsys):
    """The operator missed `settings apply`'s warning: `doctor` says it (text and --json) until the backfill ran."""
    intercom.define_attribute("referral_count", "integer")
    bridge.apply(lead_settings())
    referrer = rf.add_user(42, "ref@example.com", "Rita")
    for person in (referrer, *leads(rf, referrer, 1)):
        bridge.post_join(join_body(person))
        bridge.drain()
    applied = bridge.apply({**lead_settings(), "sync": {"referral_count_attribute": COUNT}})
    assert any("run `bridge backfill 42 --apply`" in w for w in applied["warnings"])
    since = bridge.operator().store.settings.get("42").updated_at

    def owed() -> tuple[list[dict], str]:
        clock.now += 60                     # (each command is a new process, taking its own share of RF's budget)
        _, out, _ = cli(bridge, "doctor", "42", "--json", capsys=capsys)
        _, text, _ = cli(bridge, "doctor", "42", capsys=capsys)
        return [f for f in json.loads(out)["findings"] if f["check"] == "referral_count.backfill"], text
    [finding], text = owed()
    assert (finding["ok"], finding["fix"]) == (False, "`bridge backfill 42 --apply`")
    assert finding["what"].startswith(f"Intercom's referral counts in {COUNT} may be stale since {since}: ")
    assert f"BAD [referral_count.backfill] Intercom's referral counts in {COUNT} may be stale since {since}" in text
    [contact] = intercom.contacts_by_email("ref@example.com")
    assert count_of(intercom, contact) is None
    assert cli(bridge, "backfill", "42", capsys=capsys)[0] == 0                 # a dry run: still owed
    assert len(owed()[0]) == 1
    clock.now += 60
    assert cli(bridge, "backfill", "42", "--apply", capsys=capsys)[0] == 0
    bridge.drain()
    assert count_of(intercom, contact) == 1
    findings, text = owed()
    assert findings == [] and "referral_count.backfill" not in text


def test_a_forgotten_referrer_who_joins_again_shows_the_count_the_bridge_keeps_not_the_old_one(
        bridge, intercom, rf, capsys):
    """Forgetting a referrer erases their count; their earlier leads stay counted for the erased
    referrer (they never count again). Their contact, kept in Intercom, shows 0 once they join again."""
    rob, contact = joined_with_leads(bridge, intercom, rf, "rob@example.com", 3)
    assert count_of(intercom, contact) == 3
    code, out, _ = cli(bridge, "forget", "rob@example.com", capsys=capsys)
    assert code == 0 and json.loads(out)["links"] == 1
    bridge.post_join(join_body(rob))                                 # he joins again (RF sends his join again)
    bridge.drain()
    assert count_of(intercom, contact) == 0
    assert bridge.history(42, rob["id"])["history"][-1]["reason"] == f"referral count: 0 written to {COUNT}"
    [late] = [rf.add_user(42, "late@example.com", "Late", referrer_id=rob["id"])]
    bridge.post_join(join_body(late))                                # only leads joining after count for him
    bridge.drain()
    assert count_of(intercom, contact) == 1


def test_forgetting_a_lead_from_before_their_referrer_was_forgotten_leaves_the_count_of_his_new_leads(
        bridge, intercom, rf, clock, capsys):
    """Rob's leads 0-2 counted; `forget rob` erased his count; he came back and a new lead joined
    (his count: 1). Forgetting lead 0 (counted for the erased Rob) leaves 1, in the table and on his
    contact; forgetting the new lead takes it off."""
    rob, contact = joined_with_leads(bridge, intercom, rf, "rob@example.com", 3)
    assert cli(bridge, "forget", "rob@example.com", capsys=capsys)[0] == 0
    clock.now += 60                                                  # he comes back a minute later
    bridge.post_join(join_body(rob))
    late = rf.add_user(42, "late@example.com", "Late", referrer_id=rob["id"])
    bridge.post_join(join_body(late))
    bridge.drain()
    assert count_of(intercom, contact) == 1
    code, out, _ = cli(bridge, "forget", "lead0@example.com", capsys=capsys)
    assert code == 0 and json.loads(out)["links"] == 1 and json.loads(out)["referral_counts_rewritten"] == 0
    bridge.drain()
    assert count_of(intercom, contact) == 1
    assert bridge.history(42, rob["id"])["history"][-1]["reason"] == f"referral count: 1 written to {COUNT}"
    code, out, _ = cli(bridge, "forget", "late@example.com", capsys=capsys)
    assert code == 0 and json.loads(out)["referral_counts_rewritten"] == 1
    bridge.drain()
    assert count_of(intercom, contact) == 0


def test_a_parked_count_replayed_after_the_count_was_turned_off_leaves_no_fix_in_explain(
        bridge, intercom, rf, rita, capsys):
    """The count's write refused (dead letter, with its fix), then the count taken out of the settings:
    the replay has nothing to write, and explain says why and shows the dead letter resolved, no fix."""
    contact, user = rita
    intercom.fail_next("PUT", rf"^/contacts/{contact['id']}$", 400, body={"type": "error.list", "errors": [
        {"code": "parameter_invalid", "message": "Custom attribute 'referral_count' does not exist"}]})
    bridge.post_join(join_body(leads(rf, user, 1)[0]))
    bridge.drain()
    [dead] = bridge.dead_letters()
    assert dead["body"]["kind"] == "referral.count"
    code, out, _ = cli(bridge, "explain", "rita@example.com", "--json", capsys=capsys)
    assert [e["event"] for e in json.loads(out)["trail"] if e.get("fix")] == ["dead_letter"]
    document = bridge.rt.store.settings.get("42").document
    del document["sync"]["referral_count_attribute"]
    bridge.apply(document)
    assert cli(bridge, "dlq", "replay", "--campaign", "42", capsys=capsys)[0] == 0
    bridge.drain()
    assert bridge.dead_letters() == [] and count_of(intercom, contact) is None
    code, out, _ = cli(bridge, "explain", "rita@example.com", "--json", capsys=capsys)
    trail = json.loads(out)["trail"]
    assert code == 0 and not any(e.get("fix") for e in trail)
    assert [e["event"] for e in trail if e.get("resolved")] == ["dead_letter"]
    [off] = [e for e in trail if (e["event"], e["outcome"]) == ("referral_count", "off")]
    assert off["reason"].endswith("replayed from the dead-letter queue (bridge dlq replay): referral count off "
                                  "in the settings since: nothing to write")


@pytest.mark.parametrize("ann_first", [True, False], ids=["ann_joins_first", "bo_joins_first"])
def test_a_lead_who_refers_someone_gets_her_count_on_the_contact_her_own_join_linked(bridge, intercom, rf, ann_first):
    """Every participant gets a referral link, leads too: Rita refers Ann, Ann refers Bo. Ann's own join linked
    her as a lead; her count (1) is written to that contact, whichever join arrives first."""
    intercom.define_attribute("referral_count", "integer")
    bridge.apply({**lead_settings(), "sync": {"referral_count_attribute": COUNT}})
    rita = rf.add_user(42, "rita@example.com", "Rita")
    ann = rf.add_user(42, "ann@example.com", "Ann", referrer_id=rita["id"])
    bo = rf.add_user(42, "bo@example.com", "Bo", referrer_id=ann["id"])
    for person in ((ann, bo) if ann_first else (bo, ann)):
        bridge.post_join(join_body(person))
        bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    assert count_of(intercom, contact) == 1
    assert [h["reason"] for h in bridge.history(42, ann["id"])["history"] if h["event"] == "referral_count"][-1] == \
        f"referral count: 1 written to {COUNT}"
