"""Issue 10 §3 and §4, end to end: `bridge backfill` (dry run, --apply once, a second --apply does
nothing) reading RF's campaign people page by page, and `bridge dlq list` / `replay` over every dead
letter, not only the first batch SQS hands out."""
from __future__ import annotations

import contextlib
import io
import json

import pytest

from chalicelib.cli import main
from chalicelib.domain.link import PersonRef

from tests.support.cli import run_cli

from .conftest import join_body, lead_settings


def run(bridge, capsys, *argv) -> tuple[int, dict]:
    code, out, _ = run_cli(bridge.operator(), capsys, *argv, "--json")
    return code, json.loads(out)


@pytest.fixture
def campaign_before_settings(bridge, rf, intercom, monkeypatch, clock):
    """A referrer and 4 leads in RF's campaign; one lead joined after the settings (linked), the others
    before (their webhooks were refused: unknown campaign). RF answers 2 people a page."""
    from chalicelib.services import rf_people
    monkeypatch.setattr(rf_people, "PER_PAGE", 2)
    rita = rf.add_user(42, "rita@example.com", "Rita")
    early = [rf.add_user(42, f"early{i}@example.com", f"E{i}", referrer_id=rita["id"]) for i in range(3)]
    for person in [rita, *early]:
        assert bridge.post_join(join_body(person)).status_code == 404
    clock.sleep(60)
    bridge.apply(lead_settings())
    late = rf.add_user(42, "late@example.com", "Late", referrer_id=rita["id"])
    bridge.post_join(join_body(late))
    bridge.drain()
    return rita, early, late


def test_backfill_dry_run_counts_and_creates_nothing(bridge, intercom, rf, capsys, campaign_before_settings):
    before = intercom.count("POST", "/contacts")
    code, report = run(bridge, capsys, "backfill", "42")
    assert code == 0 and report["dry_run"] is True and report["queued"] == 0
    assert report["people_in_rf"] == 5
    assert report["outcomes"] == {"not in the bridge: would be joined": 4, "already linked": 1}
    assert bridge.queued() == 0 and intercom.count("POST", "/contacts") == before
    assert rf.count("GET", "/users") == 3                       # 5 people, 2 a page


def test_backfill_apply_creates_the_missing_contacts_once_and_a_second_apply_does_nothing(
        bridge, intercom, rf, capsys, campaign_before_settings):
    rita, early, late = campaign_before_settings
    code, report = run(bridge, capsys, "backfill", "42", "--apply")
    assert code == 0 and report["queued"] == 4
    assert report["outcomes"] == {"not in the bridge: joined": 4, "already linked": 1}
    bridge.drain()
    for person in [rita, *early, late]:
        assert len(intercom.contacts_by_email(person["email"])) == 1, person["email"]
    assert intercom.contacts_by_email("rita@example.com")[0]["role"] == "user"     # the same settings as a join
    created = intercom.count("POST", "/contacts")

    code, again = run(bridge, capsys, "backfill", "42", "--apply")
    assert again["queued"] == 0 and again["outcomes"] == {"already linked": 5}
    bridge.drain()
    assert intercom.count("POST", "/contacts") == created
    # the trail says how they came: a join like any other
    code, found = run(bridge, capsys, "explain", "early0@example.com")
    assert [e["outcome"] for e in found["trail"]][:3] == ["unknown_campaign", "received", "created"]


def test_backfill_refuses_a_campaign_without_settings(bridge, capsys):
    capsys.readouterr()
    assert main(["backfill", "77"], rt=bridge.operator()) == 1
    assert "campaign 77 has no settings here" in capsys.readouterr().err


def test_backfill_of_a_campaign_rf_does_not_know_says_so_and_fails(bridge, rf, capsys):
    """RF lists nobody for an unknown campaign: backfill says RF does not know it (as doctor does), not
    "0 people in Referral Factory" with exit 0."""
    bridge.apply({**lead_settings(), "campaign_id": "77"})              # a typo: RF has campaign 42 only
    capsys.readouterr()
    assert main(["backfill", "77"], rt=bridge.operator()) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("bridge: Referral Factory could not show campaign 77: ")
    assert "answered 404: Campaign not found" in err and "check the campaign id" in err
    rf.add_campaign(43, "Empty")
    bridge.apply({**lead_settings(), "campaign_id": "43"})              # known, nobody in it yet: fine
    code, report = run(bridge, capsys, "backfill", "43")
    assert code == 0 and report["people_in_rf"] == 0


def test_dlq_list_shows_every_dead_letter_counted_by_reason_and_campaign(bridge, rf, intercom, capsys):
    """Today's peek showed 10 while the queue held 69: here 25, all listed, and still there after."""
    bridge.apply(lead_settings())
    rita = rf.add_user(42, "rita@example.com", "Rita")
    for i in range(23):
        intercom.fail_next("POST", r"^/contacts$", 400)
        bridge.post_join(join_body(rf.add_user(42, f"p{i}@example.com", f"P{i}", referrer_id=rita["id"])))
        bridge.drain()
    bridge.rt.queue.dead_letter('{"kind": "rf.join", "campaign_id": "43", "rf_user_id": "1"}', "gave up", 3, "now")
    bridge.rt.queue.dead_letter("{not json", "unreadable message: (body): not JSON", 1, "now")
    for _ in range(2):                                   # listing leaves them in the queue
        code, listed = run(bridge, capsys, "dlq", "list")
        assert listed["total"] == 25 and len({d["message_id"] for d in listed["dead_letters"]}) == 25
    assert listed["by_campaign"] == {"42": 23, "43": 1, "(none)": 1}
    assert sum(listed["by_reason"].values()) == 25
    one = next(d for d in listed["dead_letters"] if d.get("campaign_id") == "42")
    assert one["attempts"] == 1                          # a number, for machines
    assert next(d for d in listed["dead_letters"] if d.get("campaign_id") == "43")["attempts"] == 3
    assert one["email"].endswith("***@example.com") and "payload" not in one
    assert "@example.com" not in json.dumps(listed).replace("***@example.com", "")
    code, shown = run(bridge, capsys, "dlq", "list", "--show-payload")
    assert all("payload" in d for d in shown["dead_letters"])
    assert "@example.com" not in json.dumps(shown).replace("***@example.com", "")     # the payloads' emails too
    code, raw = run(bridge, capsys, "dlq", "list", "--show-payload", "--raw")
    assert "p0@example.com" in json.dumps(raw)                                         # as queued, on request

    capsys.readouterr()
    assert main(["dlq", "replay", "--campaign", "43"], rt=bridge.operator()) == 0
    assert capsys.readouterr().out.startswith("1 message(s) sent back to the work queue; 24 left")
    assert main(["dlq", "replay", "--reason", "unreadable"], rt=bridge.operator()) == 0
    assert capsys.readouterr().out.startswith("1 message(s) sent back")
    assert main(["dlq", "replay", "--all"], rt=bridge.operator()) == 0
    assert capsys.readouterr().out.startswith("23 message(s) sent back")
    bridge.drain()                                        # the 400s are gone: the joins now work
    assert all(len(intercom.contacts_by_email(f"p{i}@example.com")) == 1 for i in range(23))
    capsys.readouterr()
    main(["dlq", "list"], rt=bridge.operator())
    assert capsys.readouterr().out.startswith("2 dead letter(s)")   # the two made-up ones fail again


def test_backfill_apply_counts_the_leads_from_before_for_their_referrer(bridge, intercom, rf, capsys, monkeypatch,
                                                                        clock):
    """Referral counts (docs/how-it-works.md): leads who joined before the bridge count once backfill sends their
    joins."""
    from chalicelib.services import rf_people
    monkeypatch.setattr(rf_people, "PER_PAGE", 2)
    intercom.define_attribute("referral_count", "integer")
    rita = rf.add_user(42, "rita@example.com", "Rita")
    for i in range(3):
        rf.add_user(42, f"early{i}@example.com", f"E{i}", referrer_id=rita["id"])
    bridge.apply({**lead_settings(), "sync": {"referral_count_attribute": "custom_attributes.referral_count"}})
    run(bridge, capsys, "backfill", "42", "--apply")
    bridge.drain()
    [contact] = intercom.contacts_by_email("rita@example.com")
    assert intercom.get(contact["id"])["custom_attributes"]["referral_count"] == 3
    run(bridge, capsys, "backfill", "42", "--apply")                 # nothing new: nothing counted again
    bridge.drain()
    assert intercom.get(contact["id"])["custom_attributes"]["referral_count"] == 3


COUNTING = {**lead_settings(), "sync": {"referral_count_attribute": "custom_attributes.referral_count"}}


def joined_before_counts(bridge, intercom, rf, leads: int) -> tuple[dict, list[dict]]:
    """Rita and her `leads` leads joined (applied) before the campaign kept referral counts; then it does."""
    intercom.define_attribute("referral_count", "integer")
    bridge.apply(lead_settings())                                    # no count setting yet
    rita = rf.add_user(42, "rita@example.com", "Rita")
    early = [rf.add_user(42, f"early{i}@example.com", f"E{i}", referrer_id=rita["id"]) for i in range(leads)]
    for person in [rita, *early]:
        assert bridge.post_join(join_body(person)).status_code == 202
    bridge.drain()
    bridge.apply(COUNTING)
    return rita, early


def test_backfill_apply_counts_the_leads_applied_before_the_count_setting_once(bridge, intercom, rf, capsys,
                                                                               monkeypatch):
    """Referral counts (docs/how-it-works.md): leads whose joins were applied before the campaign kept counts are
    counted by `backfill --apply`, once, and a join delivered again afterwards counts nothing more."""
    from chalicelib.services import rf_people
    monkeypatch.setattr(rf_people, "PER_PAGE", 2)
    rita, early = joined_before_counts(bridge, intercom, rf, 3)
    [contact] = intercom.contacts_by_email("rita@example.com")

    code, dry = run(bridge, capsys, "backfill", "42")
    assert dry["outcomes"] == {"already applied: would be counted for their referrer": 3, "already linked": 1}
    assert (dry["counted"], dry["queued"]) == (0, 0) and bridge.queued() == 0
    code, done = run(bridge, capsys, "backfill", "42", "--apply")
    assert code == 0 and done["outcomes"] == {"already applied: counted now for their referrer": 3,
                                              "already linked": 1}
    assert (done["queued"], done["counted"], done["count_writes_queued"]) == (0, 3, 2)   # 2 people a page
    bridge.drain()
    assert intercom.get(contact["id"])["custom_attributes"]["referral_count"] == 3
    found = bridge.history(42, early[0]["id"])["history"]
    assert found[-1]["outcome"] == "counted" and found[-1]["reason"].startswith(
        f"counted for referrer {rita['id']} by `bridge backfill 42 --apply`")

    writes = intercom.count("PUT", "/contacts")
    code, again = run(bridge, capsys, "backfill", "42", "--apply")   # a second apply: nothing counted again
    assert (again["counted"], again["queued"]) == (0, 0) and again["outcomes"] == {"already linked": 4}
    assert bridge.queued() == 0
    assert bridge.post_join(join_body(early[0])).status_code == 202  # RF sends a lead's join again
    bridge.drain()
    assert intercom.get(contact["id"])["custom_attributes"]["referral_count"] == 3
    assert bridge.rt.store.links.referrals(PersonRef("42", str(rita["id"]))).n == 3
    assert intercom.count("PUT", "/contacts") == writes                 # (the repeat finds it written)


def test_backfill_apply_counts_a_page_of_earlier_leads_in_a_few_transactions_not_one_each(bridge, intercom, rf,
                                                                                           capsys, counter):
    """120 leads of 3 referrers whose joins were applied before the campaign kept counts, in one page
    (250 people a page): counted in ceil(items / 100) TransactWriteItems (each lead's link and history
    item, each referrer's one update per transaction: 249 items), not one per lead."""
    from chalicelib.domain.link import JoinResult, LinkStatus
    intercom.define_attribute("referral_count", "integer")
    bridge.apply(COUNTING)
    referrers = [rf.add_user(42, f"r{r}@example.com", f"R{r}") for r in range(3)]
    leads = [rf.add_user(42, f"lead{i}@example.com", f"L{i}", referrer_id=referrers[i % 3]["id"])
             for i in range(120)]
    people = [PersonRef("42", str(p["id"])) for p in [*referrers, *leads]]
    links, workspace = bridge.rt.store.links, bridge.rt.store.settings.get("42").workspace
    for start in range(0, len(people), 60):      # their joins, applied before the count setting: counted for none
        claims = links.claim_many([(ref, workspace) for ref in people[start:start + 60]])
        assert links.finish_many([(c, JoinResult(LinkStatus.LINKED), []) for c in claims]) == [None] * len(claims)
    with counter.measure() as counts:
        code, done = run(bridge, capsys, "backfill", "42", "--apply")
    assert code == 0 and done["counted"] == 120 and done["count_writes_queued"] == 3
    assert counts.operations("dynamodb")["dynamodb:TransactWriteItems"] == 3          # was 120: one per lead
    [limiter] = [c for c in counts.aws_calls if c.operation == "UpdateItem"]          # (the RF page's slot)
    assert counts.dynamodb_writes == 3 + 1 and limiter.params["Key"]["pk"]["S"].startswith("RATE")
    assert [c.items for c in counts.aws_calls if c.operation == "TransactWriteItems"] == [99, 99, 51]
    assert [bridge.rt.store.links.referrals(PersonRef("42", str(r["id"]))).n for r in referrers] == [40, 40, 40]
    code, again = run(bridge, capsys, "backfill", "42", "--apply")
    assert again["counted"] == 0


def test_backfill_apply_counts_the_rest_of_a_page_exactly_when_a_lead_is_counted_or_forgotten_meanwhile(
        bridge, intercom, rf, capsys, monkeypatch):
    """Another backfill counts one lead of the page, and `bridge forget` erases another, after this run
    read the page and before its counting write: that write is refused on those two, and written again
    without them; the others count once, and the count is exact."""
    from chalicelib.adapters.dynamo.history import DynamoHistory
    rita, early = joined_before_counts(bridge, intercom, rf, 6)
    transact_all, raced = DynamoHistory.transact_all, []

    def meanwhile(self, groups):
        if not raced:
            raced.append(True)
            assert bridge.rt.store.links.count_applied_many([(PersonRef("42", str(early[2]["id"])), str(rita["id"]),
                                                              [])]) == [True]
            with contextlib.redirect_stdout(io.StringIO()):
                assert main(["forget", "early4@example.com"], rt=bridge.rt) == 0
        return transact_all(self, groups)
    monkeypatch.setattr(DynamoHistory, "transact_all", meanwhile)
    code, done = run(bridge, capsys, "backfill", "42", "--apply")
    assert code == 0 and done["counted"] == 4 and done["outcomes"] == {
        "already applied: counted now for their referrer": 4, "already linked": 3}    # (as read: Rita, 2 and 4)
    assert bridge.rt.store.links.referrals(PersonRef("42", str(rita["id"]))).n == 5   # 4 by this run, 1 by the other
    assert bridge.rt.store.links.get(PersonRef("42", str(early[4]["id"]))) is None
    bridge.drain()
    [contact] = intercom.contacts_by_email("rita@example.com")
    assert intercom.get(contact["id"])["custom_attributes"]["referral_count"] == 5


def test_backfill_of_a_lead_rf_already_qualified_never_sends_it_again(
        bridge, intercom, rf, capsys, clock):
    """A lead who qualified before the bridge was installed: `backfill --apply` links them; RF (asked,
    since its page says `qualified_at`) holds them qualified, so the link is qualified at once, and
    their contact meeting the target sends nothing to RF."""
    from .conftest import qualifying_settings
    rita = rf.add_user(42, "rita@example.com", "Rita")
    early = rf.add_user(42, "early@example.com", "Early", referrer_id=rita["id"])
    rf.users[early["id"]]["qualified_at"] = "2025-01-02T03:04:05Z"
    bridge.apply(qualifying_settings(require_change=False))
    assert run(bridge, capsys, "backfill", "42", "--apply")[0] == 0
    bridge.drain()
    assert bridge.rt.store.links.get(PersonRef("42", str(early["id"]))).qualification.value == "qualified"
    [contact] = intercom.contacts_by_email("early@example.com")
    intercom.update_contact(contact["id"], signed_up="Yes")
    assert bridge.notify("contact.lead.updated", contact["id"]).status_code == 200
    bridge.drain()
    assert rf.qualification_calls == []
    assert bridge.rt.store.links.get(PersonRef("42", str(early["id"]))).qualification.value == "qualified"


def test_dlq_discard_takes_out_a_join_rf_will_never_accept_where_replay_only_dead_letters_it_again(
        bridge, rf, intercom, capsys):
    """A join for a user RF answers 404 `User not found.`: replay sends it back and it fails again;
    doctor says to discard it; `dlq discard` takes it out of the real dead-letter queue (the other
    letter stays), and the person's history says so (`explain`: resolved, discarded)."""
    bridge.apply(lead_settings())
    bridge.post_join({"id": 999999, "campaign_id": 42})             # RF has no such user: GET /users answers 404
    intercom.fail_next("POST", r"^/contacts$", 400)
    bridge.post_join(join_body(rf.add_user(42, "bob@example.com", "Bob")))
    bridge.drain()
    code, listed = run(bridge, capsys, "dlq", "list")
    assert listed["total"] == 2 and "Referral Factory answered 404: User not found." in listed["by_reason"]
    assert main(["dlq", "replay", "--reason", "answered 404"], rt=bridge.operator()) == 0
    bridge.drain()
    code, listed = run(bridge, capsys, "dlq", "list")
    assert listed["total"] == 2                                     # replay cannot help: dead-lettered again

    code, report = run(bridge, capsys, "doctor", "42")
    [gone] = [f for f in report["findings"] if "answered 404" in f["what"]]
    assert '`bridge dlq discard --reason "Referral Factory answered 404: User not found" --campaign 42 --yes`' in gone["fix"]

    code, done = run(bridge, capsys, "dlq", "discard", "--reason", "Referral Factory answered 404: User not found", "--yes")
    assert code == 0 and done == {"discarded": 1, "left": 1, "not_seen": 0}
    code, listed = run(bridge, capsys, "dlq", "list")
    assert listed["total"] == 1 and listed["dead_letters"][0]["email"] == "b***@example.com"   # Bob's stays
    code, explained = run(bridge, capsys, "explain", "999999")
    trail = explained["trail"]
    assert trail[-1]["event"] == "dead_letter" and trail[-1]["outcome"] == "discarded"
    assert trail[-1]["reason"] == "dead letter discarded by the operator: Referral Factory answered 404: User not found."
    assert all(e.get("resolved") and e.get("discarded") for e in trail if e["outcome"] == "failed")


def test_a_replay_right_after_rf_connect_waits_in_sqs_until_no_worker_holds_the_old_token(bridge, rf, capsys):
    """`bridge rf connect`, then `bridge dlq replay`, as the README says after a token of another account: the
    copy is sent with SQS's DelaySeconds (a batch entry's), so no worker still holding the old token takes it."""
    from chalicelib.domain.history import iso
    bridge.apply(lead_settings())
    bridge.post_join({"id": 999999, "campaign_id": 42})             # RF: User not found
    bridge.drain()
    assert len(bridge.dead_letters()) == 1
    code, _ = run(bridge, capsys, "rf", "connect", "--token", "rf-token")
    stored = iso(bridge.rt.clock())
    bridge.rt.clock.now += 60
    code, done = run(bridge, capsys, "dlq", "replay")
    assert (code, done) == (0, {"replayed": 1, "left": 0, "not_seen": 0, "runs_from": iso(bridge.rt.clock() + 540),
                                "rf_token_stored_at": stored, "delayed": 1})
    delayed = bridge.resources.client("sqs").get_queue_attributes(
        QueueUrl=bridge.resources.queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])["Attributes"]
    assert delayed == {"ApproximateNumberOfMessagesDelayed": "1"}
    bridge.drain()
    assert bridge.dead_letters() == []                              # not worked (and dead-lettered) meanwhile


def test_a_join_ignored_under_action_nothing_is_created_once_by_backfill_after_the_action_changes(
        bridge, intercom, rf, capsys):
    """Walkthrough 3, problem 1: explain's hint for a join ignored under `leads.action: nothing` (set the
    action, apply, `bridge backfill 42 --apply`) is what creates the contact, once."""
    bridge.apply(lead_settings(action="nothing"))
    rita = rf.add_user(42, "rita@example.com", "Rita")
    noth = rf.add_user(42, "noth@example.com", "Noth", referrer_id=rita["id"])
    for person in (rita, noth):
        bridge.post_join(join_body(person))
    bridge.drain()
    assert intercom.contacts_by_email("noth@example.com") == []
    code, before = run(bridge, capsys, "explain", "noth@example.com")
    [ignored] = [e for e in before["trail"] if e["outcome"] == "ignored"]
    assert ignored["hint"].startswith("to send them, set `leads.action` to create_lead or create_user, apply the "
                                      "settings, then `bridge backfill 42 --apply`")
    bridge.apply(lead_settings())                               # what the hint says
    def creates() -> int:
        return sum((r["method"], r["path"]) == ("POST", "/contacts") for r in intercom.requests)
    created = creates()
    code, dry = run(bridge, capsys, "backfill", "42")
    assert dry["outcomes"] == {"ignored under action nothing, now create_lead: would be joined again": 1,
                               "already linked": 1}
    code, report = run(bridge, capsys, "backfill", "42", "--apply")
    assert code == 0 and report["queued"] == 1
    assert report["outcomes"] == {"ignored under action nothing, now create_lead: joined again": 1,
                                  "already linked": 1}
    code, again = run(bridge, capsys, "backfill", "42", "--apply")     # before the worker ran: sent again, harmless
    assert again["queued"] == 1
    bridge.drain()
    [contact] = intercom.contacts_by_email("noth@example.com")
    assert contact["role"] == "lead" and creates() == created + 1
    code, after = run(bridge, capsys, "explain", "noth@example.com")
    [person] = after["people"]
    assert (person["status"], person["contact_id"]) == ("linked", contact["id"])
    assert [e["outcome"] for e in after["trail"] if e["event"] in ("join", "contact")] == [
        "ignored", "resent", "created", "repeated"]                      # the second run's join: a repeat
    assert "hint" not in next(e for e in after["trail"] if e["outcome"] == "ignored")
    code, last = run(bridge, capsys, "backfill", "42", "--apply")
    assert last["queued"] == 0 and last["outcomes"] == {"already linked": 2}


def test_a_refused_qualification_whose_dead_letter_sqs_deleted_is_qualified_once_by_backfill(
        bridge, intercom, rf, joined, capsys, clock):
    """RF refused Ann's qualification (its campaign paused); nobody replayed the letter, and SQS deleted it after its
    14 days. Once RF accepts again, `bridge backfill 42 --apply` checks her again: RF asked first, one PUT; a second
    run does nothing."""
    from .conftest import qualifying_settings
    lead, contact = joined(qualifying_settings())
    rf.fail_next("PUT", r"^/users/qualification$", 422, body={"code": 422, "message": "Campaign is paused"})
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    assert len(bridge.dead_letters()) == 1 and rf.count("PUT", "/users/qualification") == 1
    bridge.resources.client("sqs").purge_queue(QueueUrl=bridge.resources.dlq_url)      # SQS deleted it, unsaid
    clock.now += 15 * 86400
    assert bridge.dead_letters() == []
    code, dry = run(bridge, capsys, "backfill", "42")
    waiting = ("qualification refused by Referral Factory, its dead letter gone (SQS keeps one 14 days): would be "
               "checked again (Referral Factory asked first)")
    assert code == 0 and dry["people"][waiting] == [{"rf_user_id": str(lead["id"]), "email": "a***@example.com"}]
    code, done = run(bridge, capsys, "backfill", "42", "--apply")
    assert code == 0 and done["queued"] == 2                        # (and the join of her referrer, never sent)
    bridge.drain()
    assert bridge.history(42, lead["id"])["link"]["qualification"] == "qualified"
    assert rf.count("PUT", "/users/qualification") == 2 and bridge.dead_letters() == []      # the refused one, then one
    code, again = run(bridge, capsys, "backfill", "42", "--apply")
    assert code == 0 and again["queued"] == 0 and again["outcomes"] == {"already linked": 2}
    bridge.drain()
    assert rf.count("PUT", "/users/qualification") == 2


def test_a_refused_qualification_whose_lead_was_deleted_in_rf_is_marked_once_and_no_longer_warned_of(
        bridge, intercom, rf, joined, capsys, clock):
    """As above, but Ann was deleted in Referral Factory since: `doctor` warns of her refusal until `bridge backfill 42
    --apply` finds her no longer listed and RF answers 404 for her; her link is marked so, nothing is queued, `doctor`
    stops warning, `explain` says she was deleted in Referral Factory, and a run again asks RF nothing about her."""
    from .conftest import qualifying_settings
    lead, contact = joined(qualifying_settings())
    rf.fail_next("PUT", r"^/users/qualification$", 422, body={"code": 422, "message": "Campaign is paused"})
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    bridge.resources.client("sqs").purge_queue(QueueUrl=bridge.resources.dlq_url)      # SQS deleted it, unsaid
    clock.now += 15 * 86400
    del rf.users[lead["id"]]                                                          # deleted in RF
    _, report = run(bridge, capsys, "doctor", "42")
    assert [f["check"] for f in report["findings"] if f["check"] == "qualification.refused"] == [
        "qualification.refused"]
    deleted = ("qualification refused by Referral Factory, its dead letter gone (SQS keeps one 14 days), and deleted "
               "in Referral Factory (not listed, 404): marked so, never checked again (`doctor` no longer counts it)")
    ann = [{"rf_user_id": str(lead["id"]), "email": "a***@example.com"}]
    code, dry = run(bridge, capsys, "backfill", "42")
    assert code == 0 and dry["people"][deleted.replace("marked so, never", "would be marked so, then never")] == ann
    ref = PersonRef("42", str(lead["id"]))
    assert bridge.rt.store.links.get(ref).rf_deleted_at is None                 # a dry run writes nothing
    asked = rf.count("GET", f"/users/{lead['id']}")
    code, done = run(bridge, capsys, "backfill", "42", "--apply")
    assert code == 0 and done["people"][deleted] == ann and done["outcomes"][deleted] == 1
    assert done["queued"] == 1                                  # (the join of her referrer, never sent), no check
    assert rf.count("GET", f"/users/{lead['id']}") == asked + 1
    bridge.drain()
    assert bridge.history(42, lead["id"])["link"]["qualification"] == "failed"
    assert bridge.rt.store.links.get(ref).rf_deleted_at == clock.now
    assert rf.count("PUT", "/users/qualification") == 1                         # the refused one only
    _, report = run(bridge, capsys, "doctor", "42")
    assert not [f for f in report["findings"] if f["check"] == "qualification.refused"]
    _, explained = run(bridge, capsys, "explain", "ann@example.com")
    assert explained["trail"][-1]["outcome"] == "deleted_in_rf"
    assert "deleted in Referral Factory" in explained["trail"][-1]["reason"]
    code, again = run(bridge, capsys, "backfill", "42", "--apply")
    assert code == 0 and again["queued"] == 0 and again["outcomes"] == {"already linked": 1}
    assert rf.count("GET", f"/users/{lead['id']}") == asked + 1                 # not asked again
