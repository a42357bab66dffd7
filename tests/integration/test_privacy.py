"""Personal data: `bridge forget <email>` erases a person everywhere the bridge keeps them, history
entries carry a TTL, and an email a vendor's refusal quotes is logged masked."""
from __future__ import annotations

import json

from chalicelib.adapters.dynamo.keys import contact_key, email_key, link_key
from chalicelib.domain.link import PersonRef
from chalicelib.cli import main
from tests.fakes import seed_ledger
from tests.support.log_lines import written_lines

from .conftest import WORKSPACE, join_body, new_lead, qualifying_settings
from .test_qualification import qualified_ids
from .test_secrets import aws_calls  # noqa: F401  (fixture)


def item(bridge, key):
    return bridge.resources.client("dynamodb").get_item(
        TableName=bridge.resources.table, Key={"pk": {"S": key[0]}, "sk": {"S": key[1]}}).get("Item")


def everything(bridge) -> str:
    return json.dumps(bridge.resources.client("dynamodb").scan(TableName=bridge.resources.table)["Items"])


def test_forget_erases_a_person_across_campaigns_and_leaves_others_untouched(bridge, intercom, rf, capsys,
                                                                             aws_calls):
    rf.add_campaign(43, "Second campaign")
    bridge.apply(qualifying_settings())
    bridge.apply({**qualifying_settings(), "campaign_id": "43"})
    ann = new_lead(rf)
    bridge.post_join(join_body(ann))
    bridge.drain()
    [contact] = intercom.contacts_by_email("ann@example.com")
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    assert qualified_ids(rf) == [ann["id"]]
    ann_again = rf.add_user(43, "ann@example.com", "Ann", referrer_id=rf.add_user(43, "r@example.com", "R")["id"])
    intercom.fail_next("GET", r"^/contacts/", 400)                 # her second join fails: a dead letter
    bridge.post_join(join_body(ann_again))
    bob = new_lead(rf, email="bob@example.com", first_name="Bob")
    intercom.fail_next("POST", r"^/contacts$", 400)                # and so does Bob's: his must stay
    bridge.post_join(join_body(bob))
    bridge.drain()
    bridge.drain()
    assert len(bridge.dead_letters()) == 2
    assert "ann@example.com" in everything(bridge)

    aws_calls.clear()
    capsys.readouterr()
    assert main(["forget", " Ann@Example.com "], rt=bridge.rt) == 0
    out = capsys.readouterr().out
    report = json.loads(out)
    assert "ann@example.com" not in out.lower()
    assert report["email"] == "a***@example.com"
    assert (report["links"], report["dead_letters"]) == (2, 1)
    assert report["history_entries"] >= 5 and report["pointers"] == 2    # her email pointer, her contact's
    assert {(p["campaign_id"], p["rf_user_id"]) for p in report["people"]} == \
        {("42", str(ann["id"])), ("43", str(ann_again["id"]))}
    assert not any(op == "Scan" for _, op, _ in aws_calls)

    for campaign, person in (("42", ann), ("43", ann_again)):
        assert bridge.history(campaign, person["id"]) == {"campaign_id": campaign, "rf_user_id": str(person["id"]),
                                                          "link": None, "history": []}
        assert main(["history", campaign, str(person["id"])], rt=bridge.rt) == 1
        assert "nothing is known about RF user" in capsys.readouterr().err
    assert item(bridge, email_key(WORKSPACE, "ann@example.com")) is None
    assert item(bridge, contact_key(WORKSPACE, contact["id"])) is None
    assert "ann@example.com" not in everything(bridge)
    [left] = bridge.dead_letters()
    assert left["body"]["rf_user_id"] == str(bob["id"])
    bob_now = bridge.history(42, bob["id"])
    assert bob_now["link"]["email"] == "bob@example.com" and bob_now["history"]
    assert item(bridge, email_key(WORKSPACE, "bob@example.com")) is not None

    capsys.readouterr()
    assert main(["forget", "ann@example.com"], rt=bridge.rt) == 0           # again: nothing left to do
    again = json.loads(capsys.readouterr().out)
    assert (again["links"], again["history_entries"], again["pointers"], again["dead_letters"]) == (0, 0, 0, 0)


def test_explain_and_forget_find_a_person_by_the_email_they_changed_to_in_intercom(bridge, intercom, rf, joined,
                                                                                  capsys):
    """Ann changes her email in Intercom: `contact.email.updated` (a webhook like any contact's) moves her link to
    the new address, so `explain` and `forget` given it reach her, and nothing keeps the old one (sync's ledger
    entry of her contact, written under the old address, goes with her)."""
    from chalicelib.ports.store import LedgerEntry
    from .test_troubleshooting import entries, explain
    lead, contact = joined()
    seed_ledger(bridge.rt.store.sync, "42", [LedgerEntry(contact["id"], "already_in_campaign",
                                                         email="ann@example.com", rf_user_id=str(lead["id"]))])
    intercom.update_contact(contact["id"], email="zoe@example.org")
    bridge.notify("contact.email.updated", contact["id"])
    bridge.drain()
    code, found = explain(bridge, capsys, "Zoe@example.org")
    assert code == 0 and [(p["rf_user_id"], p["email"]) for p in found["people"]] == [
        (str(lead["id"]), "z***@example.org")]
    [changed] = entries(found, "contact", "email_changed")
    assert changed["reason"].startswith("the contact's email changed in Intercom from a***@example.com to "
                                        "z***@example.org (contact.email.updated)")
    capsys.readouterr()
    assert main(["forget", "zoe@example.org"], rt=bridge.operator()) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["links"], report["sync_ledger_entries"]) == (1, 1)
    assert bridge.history(42, lead["id"])["link"] is None
    assert item(bridge, email_key(WORKSPACE, "zoe@example.org")) is None
    assert item(bridge, email_key(WORKSPACE, "ann@example.com")) is None
    assert "zoe@example.org" not in everything(bridge) and "ann@example.com" not in everything(bridge)


def test_history_entries_expire_after_the_configured_days(bridge, intercom, rf, clock):
    bridge.apply(qualifying_settings())
    ann = new_lead(rf)
    bridge.post_join(join_body(ann))
    bridge.post_join(join_body(ann))                                # a repeat: the counted entry expires too
    bridge.drain()
    entries = bridge.rt.store.history.entries(PersonRef("42", str(ann["id"])))
    assert len(entries) == 3 and bridge.rt.config.history_days == 400
    assert {int(e.expires_at) for e in entries} == {int(clock()) + 400 * 86400}
    link = item(bridge, link_key(PersonRef("42", str(ann["id"]))))
    assert link["status"]["S"] == "linked" and "expires_at" not in link      # the link itself stays


def test_history_days_zero_keeps_history(bridge, rf):
    bridge.rt.store.history.days = 0
    bridge.apply(qualifying_settings())
    ann = new_lead(rf)
    bridge.post_join(join_body(ann))
    bridge.drain()
    entries = bridge.rt.store.history.entries(PersonRef("42", str(ann["id"])))
    assert entries and all(e.expires_at is None for e in entries)


def test_forget_erases_the_refused_webhooks_that_named_the_person_and_explain_then_finds_nothing(bridge, rf, capsys):
    bridge.apply(qualifying_settings())
    ann, bob = new_lead(rf), new_lead(rf, email="bob@example.com", first_name="Bob")
    for person in (ann, bob):
        assert bridge.post_join(join_body(person), secret="wrong").status_code == 401     # a misconfigured RF
    assert bridge.post_join({**join_body(ann), "campaign_id": 999}).status_code == 404   # the shared bucket
    assert bridge.post_join(join_body(ann)).status_code == 202
    bridge.drain()
    capsys.readouterr()
    main(["explain", "ann@example.com", "--json"], rt=bridge.operator())
    refused = [e for e in json.loads(capsys.readouterr().out)["trail"] if e["event"] == "webhook_refused"]
    assert sorted(e["outcome"] for e in refused) == ["unauthorized", "unknown_campaign"]

    assert main(["forget", "ann@example.com"], rt=bridge.operator()) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["links"], report["refused_webhook_samples"]) == (1, 2)
    assert main(["explain", "ann@example.com"], rt=bridge.operator()) == 1
    assert main(["explain", str(ann["id"])], rt=bridge.operator()) == 1
    out = capsys.readouterr().out             # the backfill hint is not given as the fix for someone forgotten
    assert out.startswith("no record of a***@example.com yet") and "never seen them, or they were forgotten" in out
    assert "a backfill would also bring a forgotten person back to Intercom" in out
    main(["explain", "bob@example.com", "--json"], rt=bridge.operator())          # Bob's stays
    assert [e["outcome"] for e in json.loads(capsys.readouterr().out)["trail"]] == ["unauthorized"]
    assert main(["forget", "ann@example.com"], rt=bridge.operator()) == 0
    assert json.loads(capsys.readouterr().out)["refused_webhook_samples"] == 0


def test_a_refusal_an_older_version_kept_by_the_emails_bare_hash_is_still_explained_and_forgotten(bridge, rf, capsys):
    """Before the edge's log named every email by its keyed digest, an authenticated refusal (and a field a join could
    not write) kept the email's bare sha256. Such samples live out their REFUSALS_KEEP_DAYS beside the new ones:
    `explain` still shows them and `forget` erases them, by either form."""
    import dataclasses

    from chalicelib.domain.people import email_hash
    from chalicelib.ports.edge import RefusalSample, fields_scope

    bridge.apply(qualifying_settings())
    ann = new_lead(rf)
    assert bridge.post_join({**join_body(ann), "campaign_id": 999}).status_code == 404        # this version's
    edge = bridge.rt.store.edge
    [new] = edge.refusals("unknown").samples
    assert new.email_digest == edge.digest("email", "ann@example.com") and new.email_hash is None
    old = RefusalSample("unknown_campaign", new.at, new.message, rf_user_id="77", email_hash=email_hash("ann@example.com"),
                        email_masked="a***@example.com", campaign_id="998")
    edge.refused("unknown", old)                                          # as the older version wrote it
    edge.refused(fields_scope("42"), dataclasses.replace(old, reason="score: not a number", rf_user_id=None))
    capsys.readouterr()
    main(["explain", "ann@example.com", "--json"], rt=bridge.operator())
    refused = [e for e in json.loads(capsys.readouterr().out)["trail"] if e["event"] == "webhook_refused"]
    assert sorted(e["campaign_id"] for e in refused) == ["998", "999"]
    assert main(["forget", "ann@example.com"], rt=bridge.operator()) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["refused_webhook_samples"], report["field_error_samples"]) == (2, 1)
    assert edge.refusals("unknown").samples == [] and edge.refusals(fields_scope("42")).samples == []


def test_an_unsigned_intercom_notification_about_a_person_is_explained_by_digest_and_forgotten(bridge, rf, capsys):
    """A notification whose signature does not verify (a wrong client secret) names whatever contact its sender
    likes: the edge keeps its contact id and email as digests only. `explain` shows the refusal for the person
    asked about (by email or contact id), as doctor counts it; `forget` deletes it with them."""
    bridge.apply(qualifying_settings())
    ann = new_lead(rf)
    assert bridge.post_join(join_body(ann)).status_code == 202
    bridge.drain()
    [contact] = bridge.intercom.contacts_by_email("ann@example.com")
    payload = bridge.intercom.webhook_payload("contact.lead.updated", contact["id"])
    assert bridge.post_intercom(payload, secret="not-the-client-secret").status_code == 401
    [sample] = bridge.rt.store.edge.refusals(f"workspace:{WORKSPACE}").samples
    assert sample.contact_digest and sample.email_digest and not (sample.contact_id or sample.email_hash)
    for who in ("ann@example.com", contact["id"]):
        capsys.readouterr()
        main(["explain", who, "--json"], rt=bridge.operator())
        [refused] = [e for e in json.loads(capsys.readouterr().out)["trail"] if e["event"] == "webhook_refused"]
        assert (refused["outcome"], refused["details"]["contact_id"]) == ("unauthorized", contact["id"])
        assert "an Intercom notification about this contact was refused" in refused["fix"]
    assert main(["forget", "ann@example.com"], rt=bridge.operator()) == 0
    assert json.loads(capsys.readouterr().out)["refused_webhook_samples"] == 1
    assert bridge.rt.store.edge.refusals(f"workspace:{WORKSPACE}").samples == []


def test_a_backfill_after_forget_brings_the_person_back_while_rf_keeps_them_and_forget_says_so(bridge, rf, capsys):
    """The bridge keeps nothing of an erased person (not even their email's hash), so it cannot tell
    them from someone never sent: forget's answer says that backfill (or a join) brings them back."""
    bridge.apply(qualifying_settings())
    ann = new_lead(rf)
    bridge.post_join(join_body(rf.users[ann["referrer_id"]]))          # her referrer, Rita, joined too
    bridge.post_join(join_body(ann))
    bridge.drain()
    capsys.readouterr()
    assert main(["backfill", "42", "--json"], rt=bridge.operator()) == 0
    assert json.loads(capsys.readouterr().out)["outcomes"] == {"already linked": 2}
    assert main(["forget", "ann@example.com"], rt=bridge.operator()) == 0
    note = json.loads(capsys.readouterr().out)["not_erased_here"]
    assert "erase them there too" in note and "`bridge backfill CAMPAIGN --apply` brings them back" in note
    assert main(["backfill", "42", "--json"], rt=bridge.operator()) == 0
    assert json.loads(capsys.readouterr().out)["outcomes"] == {"already linked": 1,
                                                               "not in the bridge: would be joined": 1}


def test_forget_of_a_person_whose_join_waits_on_a_rate_limit_warns_that_it_would_bring_them_back(
        bridge, intercom, rf, clock, capsys):
    """Ann's join waits in the work queue (Intercom answered 429: its copy is delayed in SQS). `forget`
    erases what the bridge has of her (the claim her join took), and says that one message waits: once it is worked she is back, and
    `forget` run again with the queue empty erases her with nothing to warn of."""
    bridge.apply(qualifying_settings())
    ann = new_lead(rf)
    intercom.fail_next("POST", "^/contacts/search$", 429, headers={"Retry-After": "20"})
    bridge.post_join(join_body(ann))
    bridge.drain()
    assert bridge.queued() == 1 and intercom.contacts == {}          # delayed (ApproximateNumberOfMessagesDelayed)
    capsys.readouterr()
    main(["doctor", "42", "--json"], rt=bridge.operator())          # doctor shows the work queue's count too
    assert [f["what"] for f in json.loads(capsys.readouterr().out)["findings"] if f["check"] == "work_queue"] == [
        "1 message(s) in the work queue (every campaign's: waiting, being worked or delayed)"]

    capsys.readouterr()
    assert main(["forget", "ann@example.com"], rt=bridge.operator()) == 0    # erased what there was: exit 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["queued_work"] == 1 and bridge.history(42, ann["id"])["link"] is None
    assert err.strip() == ("warning: 1 message(s) wait in the work queue: one may be this person's and bring them "
                           "back — run `bridge forget` again once it is empty")

    clock.now += 20
    bridge.poller.release_delayed()
    bridge.drain()                                                   # her join is worked: she is back
    assert bridge.history(42, ann["id"])["link"]["status"] == "linked" and bridge.queued() == 0

    capsys.readouterr()
    assert main(["forget", "ann@example.com", "--json"], rt=bridge.operator()) == 0
    out, err = capsys.readouterr()
    again = json.loads(out)
    assert (again["links"], again["queued_work"], again["warnings"], err) == (1, 0, [], "")


def test_a_vendors_refusal_that_names_the_email_is_logged_with_the_email_masked(bridge, intercom, rf, joined):
    """Leak: Referral Factory (or Intercom) refuses a call with a message that quotes the person's email
    (vendor text is not ours to trust). The worker logs the reason as it is ("record sent to the
    dead-letter queue", "record will be retried", "record waits": worker._failed/_dead/_waits log
    `reason` unmasked), so the address lands in CloudWatch in clear, against "emails masked in logs".
    Expected: every log line carries the email masked (a***@example.com), as `join applied` does."""
    lead, contact = joined()
    rf.fail_next("PUT", r"^/users/qualification$", 422, body={
        "code": 422, "message": "The given data was invalid.",
        "errors": {"id": [{"field": "id", "message": "ann@example.com has no referrer in this campaign"}]}})
    intercom.update_contact(contact["id"], signed_up="Yes")
    with written_lines() as written:                 # the lines as CloudWatch receives them
        bridge.notify("contact.lead.updated", contact["id"])
        bridge.drain()
    assert bridge.dead_letters(), "the refusal reached the dead-letter queue"
    logged = written()
    documents = [json.loads(line) for line in logged]                       # each line one JSON document
    assert [d["message"] for d in documents if "reason" in d] == ["record sent to the dead-letter queue"], logged
    assert not [line for line in logged if "ann@example.com" in line], "an email was logged in clear"
    assert any("a***@example.com has no referrer" in line for line in logged), logged      # the reason, masked
