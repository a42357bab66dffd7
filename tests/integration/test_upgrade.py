"""A deployed stage upgraded in place (`git pull`, `make deploy`) over its table and queues, with work in flight:
what an earlier version wrote is read and finished by this one, without a lost lead nor a second reward.

The items and messages below are written out as the version of 2026-11-26 (68440ea) wrote them: the attributes
of its models, none of those added since (a link's baseline_of, armed_by, letter_owed...). Only the ids the
simulators hand out are filled in."""
from __future__ import annotations

import json

import pytest

from chalicelib.adapters.dynamo.upgrade import mirror_settings
from chalicelib.domain.history import iso
from chalicelib.services.admin import delete_settings
from chalicelib.services.dead_letters import replay

from .conftest import WORKSPACE, new_lead
from .test_qualification import joined_on_a_lead_with_a_user_search_does_not_show, merged, qualified_ids
from .test_referral_count import count_of, joined_with_leads
from .test_sync import cli, segment, sync_settings

# The campaign's settings as `bridge settings apply` stored them then (the document as that version dumped it).
OLD_SETTINGS = {
    "pk": {"S": "CAMPAIGN#42"}, "sk": {"S": "SETTINGS"}, "version": {"N": "1"}, "workspace": {"S": WORKSPACE},
    "updated_at": {"S": "2026-09-21T14:13:20.000Z"},
    "document": {"S": json.dumps({
        "campaign_id": "42", "workspace": WORKSPACE,
        "leads": {"action": "create_lead", "duplicates": "update", "fields": [
            {"from": "email", "to": "email", "overwrite": False}, {"from": "first_name", "to": "name", "overwrite": False},
            {"from": "code", "to": "custom_attributes.referral_code", "overwrite": False},
            {"value": "referral", "to": "custom_attributes.lead_source", "overwrite": False}]},
        "referrers": {"action": "create_user", "duplicates": "skip", "fields": [
            {"from": "email", "to": "email", "overwrite": False},
            {"from": "url", "to": "custom_attributes.referral_link", "overwrite": False}]},
        "qualification": {"attribute": "custom_attributes.signed_up", "value": "Yes", "operator": "equals",
                          "initial_value": "No", "require_change": True, "match": "contact",
                          "case_sensitive": False}})}}
OLD_CAMPAIGNS = {"pk": {"S": f"WORKSPACE#{WORKSPACE}"}, "sk": {"S": "CAMPAIGNS"}, "names": {"SS": ["42"]}}


def old_link(rf_id: str, contact_id: str, joined: float, **state) -> dict:
    """A pending lead's link as that version wrote it (baseline "No": signed_up when Ann joined)."""
    return {"pk": {"S": "CAMPAIGN#42"}, "sk": {"S": f"PERSON#{rf_id}"}, "campaign_id": {"S": "42"},
            "rf_user_id": {"S": rf_id}, "workspace": {"S": WORKSPACE}, "status": {"S": "linked"},
            "joined_at": {"S": iso(joined)}, "updated_at": {"S": iso(joined)}, "kind": {"S": "lead"},
            "email": {"S": "ann@example.com"}, "contact_id": {"S": contact_id}, "contact_role": {"S": "lead"},
            "baseline": {"S": '"No"'}, "qualification": {"S": "pending"}, "pending_pk": {"S": "PENDING"},
            "pending_sk": {"S": f"{iso(joined)}#42#{rf_id}"}, **state}


def pointers(rf_id: str, contact_id: str) -> list[dict]:
    return [{"pk": {"S": f"CONTACT#{WORKSPACE}#{contact_id}"}, "sk": {"S": "LINKS"}, "links": {"SS": [f"42#{rf_id}"]}},
            {"pk": {"S": f"EMAIL#{WORKSPACE}#ann@example.com"}, "sk": {"S": "LINKS"}, "links": {"SS": [f"42#{rf_id}"]}}]


def old_join(lead: dict, received_at: float) -> dict:
    """Ann's join as the earlier API function queued it (RF's webhook, as RF sends it)."""
    person = {"id": str(lead["id"]), "campaign_id": "42", "referrer_id": str(lead["referrer_id"]), "type": "lead",
              "email": "ann@example.com", "first_name": "Ann", "code": lead["code"], "url": lead["url"],
              "source": "Referred", "signed_up_at": "2026-09-21T14:13:20.000000Z"}
    return {"campaign_id": "42", "rf_user_id": str(lead["id"]), "kind": "rf.join", "person": person,
            "received_at": received_at}


def written_before(bridge, *items: dict) -> None:
    """Written by the earlier version; then `make deploy` upgrades the table before this version's code runs (the
    settings copied to their own partition: infra/deploy.py, step 4b)."""
    ddb = bridge.resources.client("dynamodb")
    for item in items:
        ddb.put_item(TableName=bridge.resources.table, Item=item)
    mirror_settings(ddb, bridge.resources.table)


@pytest.fixture
def ann(bridge, intercom, rf, clock):
    """Ann joined under the earlier version (her contact created with signed_up "No"); her link is its."""
    lead = new_lead(rf)
    contact = intercom.add_contact("ann@example.com", name="Ann", custom_attributes={"signed_up": "No"})
    return lead, contact


@pytest.mark.parametrize("reached_rf", [True, False], ids=["its PUT reached RF", "its PUT never left"])
def test_a_qualification_the_earlier_version_left_part_way_is_finished_with_one_reward(
        bridge, intercom, rf, clock, ann, reached_rf):
    """The earlier worker claimed Ann's qualification, and the deploy replaced it mid-call: the claim's lease
    runs out, reconciliation finds the link, and this version finishes it, asking RF first."""
    lead, contact = ann
    intercom.update_contact(contact["id"], custom_attributes={"signed_up": "Yes"})
    if reached_rf:
        with rf.lock:
            rf.users[lead["id"]]["qualified_at"] = rf.qualified[lead["id"]] = "2026-09-21T14:13:30.000000Z"
    joined = clock()
    written_before(bridge, OLD_SETTINGS, OLD_CAMPAIGNS, *pointers(str(lead["id"]), contact["id"]),
                   old_link(str(lead["id"]), contact["id"], joined, qualification={"S": "qualifying"},
                            claim={"S": "6293886233184486b466640301706879"}, lease_until={"N": str(joined + 120)},
                            overdue_pk={"S": "OVERDUE"}))
    clock.now += 3600
    bridge.reconcile()
    bridge.drain()
    bridge.later.release()
    bridge.drain()
    assert bridge.history(42, lead["id"])["link"]["qualification"] == "qualified"
    puts = [c for c in rf.qualification_calls if c["body"].get("qualified") is True]
    assert len(puts) == (0 if reached_rf else 1)
    assert rf.get_user(lead["id"])["qualified_at"] is not None
    assert bridge.dead_letters() == []


def test_work_and_dead_letters_the_earlier_version_queued_are_worked(bridge, intercom, rf, clock):
    """At the deploy, the earlier reconciliation's search waits in the work queue, and a join its worker gave up on
    in the dead-letter queue, with the attributes that version wrote: both are worked, the join once replayed."""
    written_before(bridge, OLD_SETTINGS, OLD_CAMPAIGNS)
    lead = new_lead(rf)
    join = old_join(lead, clock())
    search = {"kind": "intercom.changes", "workspace": WORKSPACE, "at": clock(), "lookback": 604800.0}
    sqs, compact = bridge.resources.client("sqs"), {"separators": (",", ":")}
    sqs.send_message(QueueUrl=bridge.resources.queue_url, MessageBody=json.dumps(search, **compact))
    sqs.send_message(QueueUrl=bridge.resources.dlq_url, MessageBody=json.dumps(join, **compact), MessageAttributes={
        "reason": {"DataType": "String", "StringValue": "Intercom answered 500: internal error"},
        "attempts": {"DataType": "Number", "StringValue": "5"},
        "failed_at": {"DataType": "String", "StringValue": "2026-09-21T14:13:20.000Z"}})
    bridge.drain()
    [letter] = bridge.dead_letters()
    assert (letter["reason"], letter["attempts"]) == ("Intercom answered 500: internal error", 5)
    assert replay(bridge.operator())["replayed"] == 1
    bridge.drain()
    bridge.later.release()
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    assert contact["custom_attributes"]["signed_up"] == "No"            # the old settings' initial value
    link = bridge.history(42, lead["id"])["link"]
    assert (link["status"], link["qualification"], link["contact_id"]) == ("linked", "pending", contact["id"])
    assert bridge.dead_letters() == [] and bridge.queued() == 0


def test_a_join_the_earlier_version_left_part_way_is_finished_with_its_one_contact(bridge, intercom, rf, clock):
    """The earlier worker claimed Ann's join and created her contact (marked as the bridge marks it), then the deploy
    replaced it before it wrote the link: its message comes back once the claim's lease ended, and this version
    links the contact it made, creating none."""
    written_before(bridge, OLD_SETTINGS, OLD_CAMPAIGNS)
    lead = new_lead(rf)
    rf_id, joined = str(lead["id"]), clock()
    intercom.define_attribute("rf_person", "string")
    made = intercom.add_contact("ann@example.com", name="Ann", custom_attributes={
        "signed_up": "No", "referral_code": lead["code"], "lead_source": "referral", "rf_person": f"42#{rf_id}"})
    written_before(bridge, {"pk": {"S": "CAMPAIGN#42"}, "sk": {"S": f"PERSON#{rf_id}"}, "campaign_id": {"S": "42"},
                            "rf_user_id": {"S": rf_id}, "workspace": {"S": WORKSPACE}, "status": {"S": "in_progress"},
                            "claim": {"S": "0d4c2b1f6a5e4e0c9d8b7a6f5e4d3c2b"}, "lease_until": {"N": repr(joined + 120)},
                            "uncertain_since": {"N": repr(joined)}, "overdue_pk": {"S": "OVERDUE"},
                            "joined_at": {"S": iso(joined)}, "updated_at": {"S": iso(joined)}})
    clock.now += 900
    bridge.resources.client("sqs").send_message(QueueUrl=bridge.resources.queue_url,
                                                MessageBody=json.dumps(old_join(lead, joined)))
    bridge.reconcile()
    bridge.drain()
    bridge.later.release()
    bridge.drain()
    assert [c["id"] for c in intercom.contacts_by_email("ann@example.com")] == [made["id"]]
    link = bridge.history(42, lead["id"])["link"]
    assert (link["status"], link["contact_id"]) == ("linked", made["id"])
    assert bridge.dead_letters() == []


def test_a_sync_run_the_earlier_version_started_goes_on_to_its_end(bridge, intercom, rf, clock, capsys):
    """`bridge sync start` ran under the earlier version: its run (no workspace, no required fields recorded) and
    its first page's message wait at the deploy; this version works the run to its end, enrolling each once."""
    seg, contacts = segment(intercom, 3)
    bridge.apply(sync_settings(seg))
    written_before(bridge, {"pk": {"S": "CAMPAIGN#42"}, "sk": {"S": "SYNC#RUN"}, "number": {"N": "1"},
                            "kind": {"S": "full"}, "source": {"S": f"segment {seg}"}, "status": {"S": "running"},
                            "page": {"N": "0"}, "started_at": {"N": repr(clock())}, "updated_at": {"N": repr(clock())}})
    bridge.resources.client("sqs").send_message(QueueUrl=bridge.resources.queue_url, MessageBody=json.dumps(
        {"kind": "sync.page", "campaign_id": "42", "run": 1, "page": 0, "cursor": None}))
    bridge.drain()
    code, out, _ = cli(bridge, "sync", "status", "42", "--json", capsys=capsys)
    run = json.loads(out)
    assert code == 0 and (run["status"], run["enrolled"], run["skipped"]) == ("done", 3, 0), out
    assert sorted(u["email"] for u in rf.users.values() if u["campaign_id"] == 42) == [c["email"] for c in contacts]
    assert bridge.dead_letters() == []


@pytest.mark.parametrize("deleted_first", [False, True], ids=["applied over the rule", "deleted, then applied"])
def test_a_lead_the_earlier_version_linked_is_not_qualified_by_surprise_when_the_rule_moves_to_another_attribute(
        bridge, intercom, rf, clock, ann, deleted_first):
    """Ann joined under the signed_up rule (baseline "No"), and her contact is on plan "pro" all along. After the
    upgrade, the operator moves the rule to plan = pro. A lead this version linked would wait for `bridge backfill
    --apply` (its baseline is of signed_up: test_rule_change.py); so does Ann's, stored before links named their
    baseline's attribute: were it judged as the new rule's, her "No" taken for her plan when she joined, her next
    update would qualify her. The apply says she waits for the backfill, as it says it of this version's leads.
    So with the campaign's settings deleted (`bridge settings delete`) before the new rule is applied."""
    lead, contact = ann
    intercom.define_attribute("plan", "string")
    intercom.update_contact(contact["id"], custom_attributes={"signed_up": "No", "plan": "pro"})
    written_before(bridge, OLD_SETTINGS, OLD_CAMPAIGNS, *pointers(str(lead["id"]), contact["id"]),
                   old_link(str(lead["id"]), contact["id"], clock()))
    old = json.loads(OLD_SETTINGS["document"]["S"])
    if deleted_first:
        assert delete_settings(bridge.rt, "42", confirmed=True) is not None
    applied = bridge.apply({**old, "qualification": {"attribute": "custom_attributes.plan", "value": "pro"}})
    assert any(w.startswith("1 linked lead joined before the qualification rule on custom_attributes.plan")
               for w in applied["warnings"]), applied["warnings"]
    assert bridge.notify("contact.lead.updated", contact["id"]).status_code == 200
    bridge.drain()
    assert qualified_ids(rf) == []


def test_forgetting_a_lead_the_earlier_version_counted_in_a_race_lowers_its_referrers_count(
        bridge, intercom, rf, capsys):
    """Rob's first two leads finished at once on two workers of the earlier version, each dating its write by its
    own clock: lead 1's transaction began the count (`since`) and lead 0's, dated 4 ms earlier, added to it. That
    version took a lead dated up to 5 minutes before its count began as counted; this one dates every lead from its
    count's start, and allows a second (COUNT_CLOCK_SLACK). Forgetting lead 0 must still take it off."""
    rob, contact = joined_with_leads(bridge, intercom, rf, "rob@example.com", 2)
    assert count_of(intercom, contact) == 2
    ddb, table = bridge.resources.client("dynamodb"), bridge.resources.table
    [lead0, lead1] = [u for u in rf.users.values() if u["email"] in ("lead0@example.com", "lead1@example.com")]
    began = 1790000000.004
    for lead, at in ((lead0, began - 0.004), (lead1, began)):
        ddb.update_item(TableName=table, Key={"pk": {"S": "CAMPAIGN#42"}, "sk": {"S": f"PERSON#{lead['id']}"}},
                        UpdateExpression="SET counted_at = :at", ExpressionAttributeValues={":at": {"N": repr(at)}})
    ddb.update_item(TableName=table, Key={"pk": {"S": "CAMPAIGN#42"}, "sk": {"S": f"REFERRALS#{rob['id']}"}},
                    UpdateExpression="SET since = :at", ExpressionAttributeValues={":at": {"N": repr(began)}})
    code, out, _ = cli(bridge, "forget", "lead0@example.com", capsys=capsys)
    assert code == 0 and json.loads(out)["links"] == 1
    bridge.drain()
    assert count_of(intercom, contact) == 1


def test_a_link_a_later_version_wrote_is_worked_by_this_one_rolled_back_over_it_keeping_what_it_does_not_know(
        bridge, intercom, rf, clock):
    """Rolled back: a later version followed the merge of Ann's lead A into user B, and stored what the link held on
    A with a key this version does not know (amid its own), and an attribute of the item it does not know. A's change
    to the target, delivered after the merge, is judged against that record and qualifies Ann once; the record, and
    the attribute, are as the later version wrote them."""
    ann, lead_a, user_b = joined_on_a_lead_with_a_user_search_does_not_show(bridge, intercom, rf, clock)
    clock.now += 60
    intercom.update_contact(lead_a["id"], signed_up="Yes")
    late = intercom.webhook_payload("contact.lead.updated", lead_a["id"])       # held back: delivered last
    clock.now += 5
    merged(bridge, intercom, lead_a, user_b, webhook=True)
    ddb, table = bridge.resources.client("dynamodb"), bridge.resources.table
    key = {"pk": {"S": "CAMPAIGN#42"}, "sk": {"S": f"PERSON#{ann['id']}"}}
    [(a, record)] = json.loads(ddb.get_item(TableName=table, Key=key)["Item"]["left_baselines"]["S"]).items()
    later = json.dumps({a: {"baseline": record.pop("baseline"), "left_by": {"merge": "m-9"}, **record}})
    ddb.update_item(TableName=table, Key=key, UpdateExpression="SET left_baselines = :l, later_mark = :m",
                    ExpressionAttributeValues={":l": {"S": later}, ":m": {"S": "v9"}})
    bridge.post_intercom(late)
    bridge.drain()
    assert qualified_ids(rf) == [ann["id"]] and len(rf.qualification_calls) == 1
    assert bridge.history(42, ann["id"])["link"]["qualification"] == "qualified" and bridge.dead_letters() == []
    item = ddb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
    assert (item["left_baselines"]["S"], item["later_mark"]["S"]) == (later, "v9")


# --- settings in their own partition (SETTINGS#<campaign>): the upgrade, and a rollback from it -----------------

def _item(bridge, pk: str) -> dict | None:
    return bridge.resources.client("dynamodb").get_item(TableName=bridge.resources.table, ConsistentRead=True, Key={
        "pk": {"S": pk}, "sk": {"S": "SETTINGS"}}).get("Item")


def test_settings_the_earlier_version_stored_are_copied_by_the_deploy_and_its_campaigns_joins_accepted(
        bridge, intercom, rf):
    """The earlier version kept the settings in the campaign's partition, which the API function may no longer read
    (its links are there): until the deploy's upgrade copies them to their own, a join of the campaign is refused as
    one of a campaign the bridge does not know; after it, the join is accepted and worked with those settings. Run
    again, the upgrade writes nothing."""
    ddb = bridge.resources.client("dynamodb")
    for item in (OLD_SETTINGS, OLD_CAMPAIGNS):
        ddb.put_item(TableName=bridge.resources.table, Item=item)
    lead = new_lead(rf)
    assert bridge.post_join(old_join(lead, 0)["person"]).status_code == 404          # not upgraded: unknown there
    done = mirror_settings(ddb, bridge.resources.table)
    assert (done.copied, done.removed, done.kept) == (1, 0, 0)
    assert _item(bridge, "SETTINGS#42") == {**OLD_SETTINGS, "pk": {"S": "SETTINGS#42"}}
    assert _item(bridge, "CAMPAIGN#42") == OLD_SETTINGS                               # kept, for a rollback
    assert bridge.post_join(old_join(lead, 0)["person"]).status_code == 202
    bridge.drain()
    bridge.later.release()
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    assert contact["custom_attributes"]["signed_up"] == "No"                          # the old settings' initial value
    assert bridge.history(42, lead["id"])["link"]["status"] == "linked" and bridge.dead_letters() == []
    again = mirror_settings(ddb, bridge.resources.table)
    assert (again.copied, again.removed, again.kept) == (0, 0, 1)


def test_a_version_rolled_back_to_reads_the_settings_this_one_wrote_and_what_it_writes_holds_after_the_next_upgrade(
        bridge, intercom, rf, clock):
    """This version's `settings apply` writes the settings at both keys in one transaction, so the earlier version,
    rolled back to, reads them where it keeps them (CAMPAIGN#42), to the letter. What that version then applies (in
    its partition only) is what holds once this version is deployed again: the upgrade copies it over, and this
    version's worker creates Ann's contact with it. And a deletion under it: the upgrade removes the copy."""
    applied = bridge.apply(json.loads(OLD_SETTINGS["document"]["S"]))
    new, old = _item(bridge, "SETTINGS#42"), _item(bridge, "CAMPAIGN#42")
    assert new is not None and old == {**new, "pk": {"S": "CAMPAIGN#42"}} and old["version"] == {"N": "1"}, applied
    ddb, table = bridge.resources.client("dynamodb"), bridge.resources.table
    # Rolled back: the earlier version's `settings apply` writes its partition's item whole (version 2, a new initial
    # value for the leads it creates).
    document = json.loads(old["document"]["S"])
    for field in document["leads"]["fields"]:
        if field.get("to") == "custom_attributes.lead_source":
            field["value"] = "rolled-back"
    ddb.put_item(TableName=table, Item={**old, "version": {"N": "2"}, "document": {"S": json.dumps(document)},
                                        "updated_at": {"S": iso(clock() + 60)}})
    done = mirror_settings(ddb, table)                                               # deployed again
    assert (done.copied, done.removed) == (1, 0)
    assert bridge.rt.store.settings.get("42").version == 2
    lead = new_lead(rf)
    assert bridge.post_join(old_join(lead, clock())["person"]).status_code == 202
    bridge.drain()
    bridge.later.release()
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    assert contact["custom_attributes"]["lead_source"] == "rolled-back"
    ddb.delete_item(TableName=table, Key={"pk": {"S": "CAMPAIGN#42"}, "sk": {"S": "SETTINGS"}})   # its delete
    done = mirror_settings(ddb, table)
    assert (done.copied, done.removed) == (0, 1) and bridge.rt.store.settings.get("42") is None


def test_deleting_settings_and_clearing_the_count_backfill_they_owe_write_both_keys(bridge, clock):
    """A version rolled back to never reads settings this one deleted, nor a count backfill it cleared as still owed."""
    from chalicelib.ports.store import CountBackfill
    settings = bridge.rt.store.settings
    owed = CountBackfill("custom_attributes.referrals", iso(clock()))
    settings.put("42", json.loads(OLD_SETTINGS["document"]["S"]), WORKSPACE, owed)
    assert _item(bridge, "CAMPAIGN#42")["count_backfill_attribute"] == {"S": "custom_attributes.referrals"}
    assert settings.count_backfilled("42", owed) is True
    new, old = _item(bridge, "SETTINGS#42"), _item(bridge, "CAMPAIGN#42")
    assert "count_backfill_attribute" not in old and old == {**new, "pk": {"S": "CAMPAIGN#42"}}
    assert settings.count_backfilled("42", owed) is False                            # owed no longer
    # Rolled back, the earlier version applied them again (without the backfill owed), then this one came back
    # before the copy: its own key's is cleared, and the earlier version's item is left as it wrote it.
    settings.put("42", json.loads(OLD_SETTINGS["document"]["S"]), WORKSPACE, owed)
    theirs = {**_item(bridge, "CAMPAIGN#42"), "version": {"N": "3"}}
    del theirs["count_backfill_attribute"], theirs["count_backfill_since"]
    bridge.resources.client("dynamodb").put_item(TableName=bridge.resources.table, Item=theirs)
    assert settings.count_backfilled("42", owed) is True
    assert "count_backfill_attribute" not in _item(bridge, "SETTINGS#42") and _item(bridge, "CAMPAIGN#42") == theirs
    assert settings.delete("42") is True
    assert (_item(bridge, "SETTINGS#42"), _item(bridge, "CAMPAIGN#42")) == (None, None)
    assert settings.delete("42") is False
    # The last version outlives them (the rolled-back version's 3), where no version reads settings, and the
    # deploy's copy leaves it: settings applied again count on from it, never naming a version twice.
    ddb, table = bridge.resources.client("dynamodb"), bridge.resources.table
    kept = ddb.get_item(TableName=table, Key={"pk": {"S": "SETTINGS#42"}, "sk": {"S": "DELETED"}})["Item"]
    assert kept["version"] == {"N": "3"} and "document" not in kept
    done = mirror_settings(ddb, table)
    assert (done.copied, done.removed, done.kept) == (0, 0, 0)
    assert ddb.get_item(TableName=table, Key={"pk": {"S": "SETTINGS#42"}, "sk": {"S": "DELETED"}})["Item"] == kept
    assert settings.get("42") is None and settings.put("42", json.loads(OLD_SETTINGS["document"]["S"]), WORKSPACE) == 4


def test_this_versions_apply_after_a_rolled_back_versions_holds_at_both_keys_and_the_next_upgrade_keeps_it(
        bridge, clock):
    """This version applies (both keys), a version rolled back to applies (its key only), then this version applies
    again before any deploy: its write is whole at both keys, so the next upgrade's copy (the earlier version's key
    wins) finds them alike and writes nothing; the settings read are this version's last, owed backfill and all."""
    from chalicelib.ports.store import CountBackfill
    settings, ddb, table = bridge.rt.store.settings, bridge.resources.client("dynamodb"), bridge.resources.table
    document = json.loads(OLD_SETTINGS["document"]["S"])
    settings.put("42", document, WORKSPACE)
    theirs = {**_item(bridge, "CAMPAIGN#42"), "version": {"N": "2"}, "updated_at": {"S": iso(clock() + 60)},
              "document": {"S": json.dumps({**document, "referrers": {**document["referrers"], "action": "nothing"}})}}
    ddb.put_item(TableName=table, Item=theirs)
    owed = CountBackfill("custom_attributes.referrals", iso(clock() + 120))
    clock.now += 120
    settings.put("42", document, WORKSPACE, owed)
    new, old = _item(bridge, "SETTINGS#42"), _item(bridge, "CAMPAIGN#42")
    assert old == {**new, "pk": {"S": "CAMPAIGN#42"}} and json.loads(new["document"]["S"]) == document
    done = mirror_settings(ddb, table)
    assert (done.copied, done.removed, done.kept) == (0, 0, 1)
    assert settings.get("42").document == document and settings.get("42").count_backfill == owed
    assert settings.count_backfilled("42", owed) is True
    assert "count_backfill_since" not in _item(bridge, "CAMPAIGN#42")
