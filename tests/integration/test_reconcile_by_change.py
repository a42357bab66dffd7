"""Issue 9: reconciliation scales with changes, not with the backlog. With 50,000 pending leads in
the simulators, a lost webhook is caught by the next run, and that run makes at most
(changed contacts / 150 + a few) Intercom calls. Leads past the sweep's age are no longer read one
by one, and still qualify by webhook."""
from __future__ import annotations

import json
import math
import re
from collections import Counter

import pytest

from chalicelib.domain.history import iso
from chalicelib.domain.link import PersonRef

from tests.support.moto_sorting import sort_by_plain_values

from .conftest import WORKSPACE, join_body, qualifying_settings
from .test_qualification import qualified_ids

BACKLOG = 50_000
DAY = 86400


def seed_backlog(bridge, intercom, rf, n: int, joined_at: float, qualifying: int) -> list[tuple[str, str]]:
    """`n` leads who joined at `joined_at` and are still pending: their contacts in the Intercom
    simulator (last updated then, made in one batch), their links and pointers in the store, written
    straight into moto's table in this process, as the store writes them and as moto's put stores them
    (150,000 items over HTTP would take minutes). The first `qualifying` are real RF users, so that RF
    can qualify them. Returns (rf id, contact id)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict

    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][bridge.resources.region]
    referrer = rf.add_user(42, "rita@example.com", "Rita")
    items = _StoreItems(iso(joined_at))
    table = backend.get_table(bridge.resources.table)
    # What moto's Table.put_item stores for a put without a condition, without the rest of its work per
    # item: its checks of the item (ours are far below the 400 KB limit, their keys short and their types
    # the store's: the first and last lead's items are the models' own), the lookup of an item it would
    # replace (there is none: every key is new), and the stream (the table has none).
    assert table.stream_shard is None and table.range_key_attr is not None
    hash_attr, range_attr = table.hash_key_attr, table.range_key_attr
    stored = sum(len(by_range) for by_range in table.items.values())
    emails = [f"lead{i}@example.com" for i in range(n)]
    contact_ids = intercom.add_contacts(emails, custom_attributes={"signed_up": "No"}, created_at=joined_at)
    people = []
    with pytest.MonkeyPatch.context() as mp:
        # moto re-measures an item's whole size at each attribute it sets (the 400 KB limit): quadratic.
        mp.setattr(LimitedSizeDict, "__setitem__", dict.__setitem__)
        for i, (email, contact_id) in enumerate(zip(emails, contact_ids)):
            rf_id = str(rf.add_user(42, email, "Lead", referrer_id=referrer["id"])["id"]) if i < qualifying \
                else str(900_000 + i)
            for attrs in items.of(rf_id, contact_id, email, check=i in (0, n - 1)):
                hash_key, range_key = DynamoType(attrs[hash_attr]), DynamoType(attrs[range_attr])
                table.items[hash_key][range_key] = Item(hash_key, range_key, attrs)
            people.append((rf_id, contact_id))
    # every key was new: none of the items replaced another
    assert len(intercom.contacts) >= n and sum(len(by_range) for by_range in table.items.values()) == stored + 3 * n
    return people


class _StoreItems:
    """A pending lead's link and pointers, serialized as the store's models serialize them: the first
    lead's by the models; each next lead's from those, with its own keys and values (150,000 models
    serialized one by one took most of the seeding). A checked lead's are compared with the models'."""

    def __init__(self, when: str):
        self.when, self.templates = when, None

    def by_models(self, rf_id: str, contact_id: str, email: str) -> list[dict]:
        from chalicelib.adapters.dynamo.keys import PENDING, contact_key, email_key, link_key
        from chalicelib.adapters.dynamo.models import LinkItem, PointerItem

        ref, when = PersonRef("42", rf_id), self.when
        link = LinkItem(*link_key(ref), campaign_id="42", rf_user_id=rf_id, workspace=WORKSPACE, status="linked",
                        kind="lead", email=email, contact_id=contact_id, contact_role="lead", baseline="No",
                        qualification="pending", joined_at=when, updated_at=when, pending_pk=PENDING,
                        pending_sk=f"{when}#{ref}")
        return [item.serialize() for item in (link, PointerItem(*contact_key(WORKSPACE, contact_id), links={str(ref)}),
                                              PointerItem(*email_key(WORKSPACE, email), links={str(ref)}))]

    def of(self, rf_id: str, contact_id: str, email: str, check: bool) -> list[dict]:
        from chalicelib.adapters.dynamo.keys import contact_key, email_key, link_key

        if self.templates is None:
            self.templates = self.by_models(rf_id, contact_id, email)
        ref = PersonRef("42", rf_id)
        link, by_contact, by_email = ({**t} for t in self.templates)
        (link["pk"], link["sk"]), by_contact["pk"], by_email["pk"] = \
            ({"S": k} for k in link_key(ref)), {"S": contact_key(WORKSPACE, contact_id)[0]}, \
            {"S": email_key(WORKSPACE, email)[0]}
        link.update(rf_user_id={"S": rf_id}, email={"S": email}, contact_id={"S": contact_id},
                    pending_sk={"S": f"{self.when}#{ref}"})
        by_contact["links"] = by_email["links"] = {"SS": [str(ref)]}
        made = [link, by_contact, by_email]
        if check:
            assert made == self.by_models(rf_id, contact_id, email)
        return made


def kinds(requests: list[str]) -> Counter:
    """Requests by kind, ids folded: {"GET /contacts/{id}": 3, ...}."""
    return Counter(re.sub(r"^(\w+ /contacts/)(?!search$)[^/]+$", r"\1{id}", r) for r in requests)


@pytest.mark.slow
def test_a_run_over_50000_pending_leads_costs_calls_by_the_changes_not_the_backlog(bridge, intercom, rf, clock,
                                                                                  counter, monkeypatch):
    # moto backs a transaction up by deep-copying the whole table once per item: with 150,000 items each
    # qualification takes seconds. The chaos run's patch backs up item by item.
    from moto.dynamodb.models import DynamoDBBackend

    from infra.local.chaos.moto_patch import _transact_write_items
    monkeypatch.setattr(DynamoDBBackend, "transact_write_items", _transact_write_items)
    sort_by_plain_values(monkeypatch)
    bridge.apply(qualifying_settings())
    at_target, other_changes = 155, 300
    people = seed_backlog(bridge, intercom, rf, BACKLOG, clock() - 30 * DAY, qualifying=at_target)
    # Today: 155 contacts reach the target and 300 others change otherwise; every webhook is lost.
    for rf_id, contact_id in people[:at_target]:
        intercom.update_contact(contact_id, signed_up="Yes")
    for _, contact_id in people[at_target:at_target + other_changes]:
        intercom.update_contact(contact_id, signed_up="Maybe")
    changed = at_target + other_changes

    started = clock()
    with counter.measure() as counts:
        run = bridge.reconcile()
        bridge.drain()

    assert bridge.queued() == 0                                      # nothing deferred to a later try
    assert sorted(qualified_ids(rf)) == sorted(int(rf_id) for rf_id, _ in people[:at_target])
    # Referral Factory: each qualification asks RF, then qualifies (2 calls), paced by the shared budget
    # (600 a minute: 570 sustained), so that the whole run fits in one of RF's minutes.
    assert Counter(re.sub(r"/\d+$", "/{id}", r) for r in counts.rf_requests) == \
        {"GET /users/{id}": at_target, "PUT /users/qualification": at_target}
    assert clock() - started <= 60
    assert run == {"queued": 0, "round_complete": True, "searches": 1, "overdue": 0}   # none read one by one
    assert counts.intercom <= changed / 150 + 3, kinds(counts.intercom_requests)
    # (No attribute list: `settings apply` kept the one it checked the settings with.)
    assert kinds(counts.intercom_requests) == {"POST /contacts/search": math.ceil(at_target / 150)}
    searched = [r["json"] for r in intercom.requests if r["path"] == "/contacts/search"]
    assert searched[0]["query"]["value"][1] == {"field": "custom_attributes.signed_up", "operator": "~",
                                                "value": "Yes"}
    assert all(s["pagination"]["per_page"] == 150 for s in searched)
    # DynamoDB: a few reads for the run (the overdue index's links and referral counts owing their write,
    # the pending index) and for each page of 150 contacts (the pointers of their ids and emails, then
    # their links, by BatchGetItem's 100 keys), none for the 49,845 leads that wait.
    reads, pages = counts.operations("dynamodb"), math.ceil(at_target / 150)
    assert reads["dynamodb:Query"] == 3 and reads["dynamodb:BatchGetItem"] <= 5 * pages + 1


def test_the_next_run_searches_from_the_last_one_and_catches_a_webhook_lost_since(bridge, intercom, rf, clock,
                                                                                  joined):
    lead, contact = joined()
    bridge.reconcile()
    bridge.drain()
    assert rf.qualification_calls == []
    clock.now += 900
    intercom.update_contact(contact["id"], signed_up="Yes")          # its webhook is lost
    bridge.reconcile()
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]
    first, second = [r["json"]["query"]["value"][0]["value"] for r in intercom.requests
                     if r["path"] == "/contacts/search" and r["json"]["query"].get("operator") == "AND"]
    assert second - first == 7 * DAY and second == int(clock() - 900 - 3600) - DAY    # an hour's overlap


def test_leads_past_the_sweep_age_are_not_read_one_by_one_and_still_qualify_by_webhook(bridge, intercom, rf, clock,
                                                                                        joined):
    from chalicelib.services.reconcile import past_sweep_age
    lead, contact = joined()
    assert bridge.reconcile()["queued"] == 1 and past_sweep_age(bridge.rt) == 0
    bridge.drain()
    clock.now += 8 * DAY
    before = len(intercom.requests)
    assert bridge.reconcile()["queued"] == 0 and past_sweep_age(bridge.rt) == 1
    bridge.drain()
    assert not [r for r in intercom.requests[before:] if r["method"] == "GET" and r["path"].startswith("/contacts/")]
    intercom.update_contact(contact["id"], signed_up="Yes")
    bridge.notify("contact.lead.updated", contact["id"])
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]


def test_a_run_queues_nothing_again_that_an_earlier_run_queued_and_still_waits(bridge, intercom, rf, clock):
    """Three pending leads (one of them mid-qualification when its worker died) and a join whose worker
    died. The first run queues a check per lead and the join again; while all of that still waits in
    the queue, the next runs queue only their search of changed contacts. Once the retry interval has
    passed, what is still unfinished is queued again, and nothing is lost."""
    bridge.apply(qualifying_settings())
    referrer = rf.add_user(42, "rita@example.com", "Rita")
    for i in range(3):
        bridge.post_join(join_body(rf.add_user(42, f"lead{i}@example.com", "Lead", referrer_id=referrer["id"])))
    bridge.drain()
    links = bridge.rt.store.links
    dying = links.pending(None, 10).links[0]
    intercom.update_contact(dying.contact_id, signed_up="Yes")
    assert links.start_qualifying(dying)                             # ...and its worker died
    stuck = rf.add_user(42, "stuck@example.com", "Stuck", referrer_id=referrer["id"])
    links.claim(PersonRef("42", str(stuck["id"])), WORKSPACE)        # ...and its worker died
    clock.now += 121
    assert bridge.queued() == 0
    runs = [bridge.reconcile()]
    assert bridge.queued() == 5                                      # 2 overdue, 2 pending checks, 1 search
    for _ in range(3):                                               # the schedule runs on; nothing was handled
        clock.now += 15 * 60
        runs.append(bridge.reconcile())
    assert [(r["overdue"], r["queued"], r["searches"]) for r in runs] == [(2, 2, 1)] + [(0, 0, 1)] * 3
    assert bridge.queued() == 5 + 3
    clock.now += bridge.rt.config.reconcile_retry                    # their chance to run has passed
    again = bridge.reconcile()
    assert (again["overdue"], again["queued"], again["searches"]) == (2, 2, 1)
    assert bridge.queued() == 8 + 5
    for _ in range(4):                              # the dead worker may have created the contact: the search lag
        bridge.poller.drain(retry_failures=True)
        clock.now += 60
        bridge.poller.release_delayed()
    assert links.overdue(clock() + 10**6, 10) == [] and bridge.dead_letters() == []
    assert qualified_ids(rf) == [int(dying.rf_user_id)]
    assert bridge.history(42, stuck["id"])["link"]["status"] == "linked"
    stuck_entries = [h for h in bridge.history(42, stuck["id"])["history"] if h["outcome"] == "stuck_join"]
    assert len(stuck_entries) == 2 and "did not finish it" in stuck_entries[1]["reason"]


RF_REFUSES_ONCE = {
    "401": (lambda rf: rf.use_token("rf-token-2"), ("rf", "connect", "--token", "rf-token-2")),
    "422": (lambda rf: rf.fail_next("PUT", r"^/users/qualification$", 422,
                                    body={"code": 422, "message": "Campaign is paused"}), ()),
}


@pytest.mark.parametrize("refusal", RF_REFUSES_ONCE)
def test_a_lead_qualified_through_a_duplicate_whose_qualification_rf_refused_is_qualified_once_by_the_replay(
        bridge, intercom, rf, clock, joined, capsys, refusal):
    """`match: email`: Ann's duplicate contact (her email, another contact) reaches the target, its webhook
    lost; the search of changed contacts finds it, and RF refuses her qualification (a revoked RF token, or a
    422). Her letter is a check of her: replayed once RF is set right, it must judge the contact that met the
    target, and qualify her once. (A check of her own contact, still "No", found nothing: once the duplicate's
    change left the search's window, no search would find it again, and the reward was lost.)"""
    from tests.support.cli import run_cli
    breaks, reconnect = RF_REFUSES_ONCE[refusal]
    lead, contact = joined(qualifying_settings(match="email"))
    duplicate = intercom.add_contact("ann@example.com", role="user", custom_attributes={"signed_up": "No"})
    clock.now += 900
    intercom.update_contact(duplicate["id"], signed_up="Yes")        # its webhook is lost
    breaks(rf)
    bridge.reconcile()
    bridge.drain()
    [letter] = bridge.dead_letters()
    assert (letter["body"]["kind"], letter["body"]["rf_user_id"]) == ("intercom.check", str(lead["id"]))
    assert bridge.history(42, lead["id"])["link"]["qualification"] == "failed" and qualified_ids(rf) == []
    # asked about the contact they saw reach the target, explain names the letter, and its replay
    code, out, _ = run_cli(bridge.operator(), capsys, "explain", duplicate["id"], "--json")
    [said] = [e for e in json.loads(out)["trail"] if e["event"] == "dead_letter"]
    assert said["details"]["kind"] == "intercom.check" and "dlq replay" in said["fix"], said

    if reconnect:                                                    # the RF side set right, as the advice says
        rf.use_token("rf-token-2")
        assert run_cli(bridge.operator(), capsys, *reconnect)[0] == 0
    rf.clear_faults()
    clock.now += 8 * DAY                                             # the duplicate's change is long past
    code, out, _ = run_cli(bridge.operator(), capsys, "dlq", "replay", "--campaign", "42", "--json")
    assert code == 0 and json.loads(out)["replayed"] == 1, out
    bridge.drain()
    bridge.reconcile()                                               # and nothing qualifies her twice
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]] and bridge.dead_letters() == []
    assert [c["status"] for c in rf.qualification_calls].count(200) == 1
    assert bridge.history(42, lead["id"])["link"]["qualification"] == "qualified"


@pytest.mark.parametrize("target,reached", [("Yes ", "Yes"), ("Yes", " yes ")],
                         ids=["rule value with a space", "contact value with spaces"])
def test_a_lost_webhook_of_a_lead_past_the_sweep_age_is_caught_whatever_the_spaces_around_the_value(
        bridge, intercom, rf, clock, joined, target, reached):
    """The rule compares text without the spaces around it (and its case): the search of changed contacts, the
    only catch of a lost webhook once a lead is past the sweep's age, finds what the rule would qualify."""
    lead, contact = joined(qualifying_settings(value=target))
    bridge.reconcile()
    bridge.drain()
    clock.now += 8 * DAY
    intercom.update_contact(contact["id"], signed_up=reached)        # its webhook is lost
    bridge.reconcile()
    bridge.drain()
    assert qualified_ids(rf) == [lead["id"]]
