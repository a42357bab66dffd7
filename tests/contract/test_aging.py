"""What outlives the table's TTL: a deployment that has run for months, its items past `expires_at` deleted as
DynamoDB deletes them (moto never does; the twin keeps what it keeps as the contract says)."""
from __future__ import annotations

import pytest

from chalicelib.adapters.memory import MemoryStore

DAY = 86400


def ttl_pass(store, now: float) -> int:
    """DynamoDB's TTL, run at `now`: every item whose `expires_at` has passed is deleted. How many."""
    if isinstance(store, MemoryStore):
        return 0
    from chalicelib.adapters.dynamo.models import EdgeItem, _client
    client, table, start, gone = _client(), EdgeItem.Meta.table_name, None, 0
    while True:
        page = client.scan(TableName=table, FilterExpression="expires_at < :now",
                           ExpressionAttributeValues={":now": {"N": str(int(now))}},
                           **({"ExclusiveStartKey": start} if start else {}))
        for item in page.get("Items", ()):
            client.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})
            gone += 1
        start = page.get("LastEvaluatedKey")
        if not start:
            return gone


def test_when_a_webhook_was_last_heard_outlives_a_quiet_season(store, clock):
    """A campaign that ended in spring (no join since, its leads still waiting to convert): in autumn `doctor` said
    `no join of campaign 42 was ever received` (a problem, exit 1, with the advice to set up RF's webhook), and of a
    quiet workspace `no Intercom contact notification was ever received … the topics are probably not subscribed`:
    the edge's note of the last one had expired 90 days after it was written."""
    store.edge.heard("campaign:42", "join")
    store.edge.heard("workspace:ws1", "notification")
    joined, notified = store.edge.last_heard("campaign:42", "join"), store.edge.last_heard("workspace:ws1", "notification")
    clock.now += 200 * DAY
    ttl_pass(store, clock())
    assert store.edge.last_heard("campaign:42", "join") == joined
    assert store.edge.last_heard("workspace:ws1", "notification") == notified


def test_a_last_heard_note_written_to_expire_before_is_kept_once_heard_again(store, clock):
    """A stage upgraded after months: its notes were written to expire 90 days on; the next webhook keeps it."""
    if isinstance(store, MemoryStore):
        pytest.skip("the twin has no note written by an earlier version")
    from chalicelib.adapters.dynamo.keys import edge_pk, heard_sk
    from chalicelib.adapters.dynamo.models import EdgeItem
    EdgeItem(edge_pk("campaign:42"), heard_sk("join"), at="2026-01-01T00:00:00.000Z",
             expires_at=int(clock()) + 90 * DAY).save()
    store.edge.heard("campaign:42", "join")
    heard = store.edge.last_heard("campaign:42", "join")
    clock.now += 200 * DAY
    assert ttl_pass(store, clock()) == 0 and store.edge.last_heard("campaign:42", "join") == heard


def _items(store) -> dict[tuple[str, str], int]:
    """Every item of the table (DynamoDB's) by key, with its size as stored (its JSON's length)."""
    import json
    from chalicelib.adapters.dynamo.models import EdgeItem, _client
    client, table, start, out = _client(), EdgeItem.Meta.table_name, None, {}
    while True:
        page = client.scan(TableName=table, **({"ExclusiveStartKey": start} if start else {}))
        out.update({(i["pk"]["S"], i["sk"]["S"]): len(json.dumps(i)) for i in page.get("Items", ())})
        start = page.get("LastEvaluatedKey")
        if not start:
            return out


def test_a_person_worked_through_months_of_repeats_keeps_a_bounded_set_of_items(store, clock):
    """Months of one lead: her join sent again and again, notifications repeated, waits, her email changed and her
    contact merged back and forth. Each repeat is counted in one item, each pointer follows her: no item grows with
    them, nor their number."""
    if isinstance(store, MemoryStore):
        pytest.skip("sizes as DynamoDB stores them")
    from chalicelib.domain.link import PersonRef
    from tests.contract.test_store import joined
    ann = PersonRef("42", "7")
    link = joined(store, ann)

    def year() -> dict[tuple[str, str], int]:
        nonlocal link
        for day in range(8):
            clock.now += 86400
            store.links.note_repeat(ann, "join", "the same join arrived again and was ignored")
            store.links.note_repeat(ann, "intercom_notification", "the same Intercom notification arrived again")
            store.links.note_repeat(ann, "waiting", f"Intercom unavailable since day {day} (waits in the queue)",
                                    outcome="deferred", restart_after=3600)
            link = store.links.set_contact(link, [], email=f"ann+{day % 2}@example.com") or link
            link = store.links.move(link, f"c{day % 2}", [])          # merged into another contact, and back
        return _items(store)
    first = year()
    later = year()
    assert set(later) == set(first)
    assert {k: v for k, v in later.items() if v > first[k] + 16} == {}


def _contact_pointers(store) -> set[str]:
    """The contacts a pointer item is kept for."""
    if isinstance(store, MemoryStore):
        return {contact for _, contact in store.tables.contacts}
    return {pk.split("#", 2)[2] for pk, _ in _items(store) if pk.startswith("CONTACT#")}


def test_a_link_that_followed_merges_keeps_no_pointer_of_the_contacts_merged_away(store):
    """Each merge a link followed (a lead signing up as a user, duplicates merged) left the merged contact's pointer
    behind, naming nobody, for good: an item a merge, and `bridge forget` left them, keyed by her former contact
    ids. Another person's link on a merged contact keeps its pointer."""
    from chalicelib.domain.link import PersonRef
    from tests.contract.test_store import joined
    joined(store, PersonRef("43", "8"), contact="c_lead", email="ann@example.com")     # her join of another campaign
    link = joined(store, PersonRef("42", "7"), contact="c_lead")
    link = store.links.move(link, "c_user", [])
    link = store.links.move(link, "c_user2", [])
    assert _contact_pointers(store) == {"c_lead", "c_user2"}
    store.links.erase(link)
    assert _contact_pointers(store) == {"c_lead"}
